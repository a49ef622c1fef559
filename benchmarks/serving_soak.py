"""Serving soak: `emotion-ai serve` under steady load while its repository changes under it.

    .venv/bin/python benchmarks/serving_soak.py [--model-repo serving/model_repository]
                                                [--clients 4] [--seconds 120]

Copies the newest version of each model in ``--model-repo`` into a scratch repository and
starts ``emotion-ai serve`` on it (its own process, a free port on 127.0.0.1, polling every
0.5 s). Then, for ``--seconds``, ``--clients`` keep-alive clients each post one 96x96 PNG face
at a time to both models in turn, and one hostile client sends what the server must refuse
(33 instances, a PNG whose header claims 20000x20000 pixels, NaN pixel strings, a request
whose body never arrives whole). Meanwhile the repository changes, as pushes and careless
copies change it:

* at 20 % of the time, a **version swap**: a new key-point version appears by one rename;
* at 40 %, a **corrupt version**: a new expression version whose ``saved_model.pb`` is junk
  (the server must keep serving the version before it);
* at 55 %, a **slow non-atomic copy**: a new key-point version copied file by file over about
  10 s, ``saved_model.pb`` first (as ``cp -r`` may), so the server sees it half-copied; it
  must be served once the copy is complete.

A monitor asks each model's status every 0.25 s. Reported: requests, failures (any non-200
answer or error on a good request; any answer other than the expected 4xx, or a 5xx, on a bad
one), p50/p99 latency, the server's RSS (``/proc``) after warm-up, at its peak and at the end,
and when each new version was served. Writes ``benchmarks/results/serving_soak.{json,md}``.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import math
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import local_server  # noqa: E402
import results_io  # noqa: E402

from emotion_ai.components import model_repository, spec  # noqa: E402
from emotion_ai.pipelines import config  # noqa: E402

config.set_runtime_environment()
from emotion_ai.data import generator  # noqa: E402

MODELS = local_server.MODELS
SLOW_COPY_SECONDS = 10.0
TARGET_RSS_GROWTH_MB = 500  # a model version loaded at a time per model; the swaps may add a loaded copy each


def _face_png(seed: int, size: int = spec.KEYPOINT_IMAGE_SIZE) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(generator.render_face(np.random.default_rng(seed), size, "Happy")[0]).save(buffer, "PNG")
    return buffer.getvalue()


def _png_bomb_header() -> bytes:
    """A small PNG whose header claims 20000x20000 pixels (the issue's 389 kB probe, in 1 kB)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def _scratch_repo(source: Path, scratch: Path) -> dict[str, int]:
    """Newest version of each model into ``scratch``; returns them."""
    newest = {}
    for model in MODELS:
        versions = model_repository.version_dirs(source / model)
        if not versions:
            raise SystemExit(f"{source / model}: no version; run the pipeline first (make run) or pass --model-repo")
        newest[model] = versions[-1]
        shutil.copytree(source / model / str(versions[-1]), scratch / model / str(versions[-1]))
    model_repository.write_configs(scratch)
    return newest


class Load:
    """Good clients and one hostile client until ``stop``; every answer recorded."""

    def __init__(self, url: str, clients: int):
        self.url, self.clients = url, clients
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.refused: dict[str, int] = {}
        faces = [base64.b64encode(_face_png(i)).decode() for i in range(8)]
        self.bodies = [json.dumps({"instances": [{"b64": f}]}) for f in faces]
        self.threads = [threading.Thread(target=self._good, args=(i,)) for i in range(clients)]
        self.threads.append(threading.Thread(target=self._hostile))

    def _record_failure(self, what: str) -> None:
        with self.lock:
            if len(self.failures) < 50:
                self.failures.append(what)
            else:
                self.failures.append("...")

    def _good(self, index: int) -> None:
        session = requests.Session()
        headers = {"Content-Type": "application/json"}
        n = index
        while not self.stop.is_set():
            model, body = MODELS[n % 2], self.bodies[n % len(self.bodies)]
            n += 1
            start = time.perf_counter()
            try:
                answer = session.post(f"{self.url}/v1/models/{model}:predict", data=body, headers=headers, timeout=30)
                ok = answer.status_code == 200 and "predictions" in answer.json()
                what = f"{model}: HTTP {answer.status_code} {answer.text[:200]}"
            except requests.RequestException as error:
                ok, what = False, f"{model}: {type(error).__name__}: {error}"
            elapsed = time.perf_counter() - start
            with self.lock:
                self.latencies.append(elapsed)
            if not ok:
                self._record_failure(what)

    def _hostile(self) -> None:
        face = json.loads(self.bodies[0])["instances"][0]
        bomb = {"b64": base64.b64encode(_png_bomb_header()).decode()}
        nan_pixels = " ".join(["nan"] + ["7"] * (spec.EMOTION_IMAGE_SIZE ** 2 - 1))
        cases = [
            ("33 instances", "keypoints", {"instances": [face] * (spec.SERVING_MAX_BATCH + 1)}, 413),
            ("png bomb header", "emotion", {"instances": [bomb]}, 413),
            ("NaN pixels", "emotion", {"signature_name": "serving_pixels",
                                       "inputs": {spec.SERVING_PIXELS_INPUT: [nan_pixels]}}, 400),
        ]
        session = requests.Session()
        n = 0
        while not self.stop.wait(0.2):
            name, model, body, expected = cases[n % len(cases)]
            n += 1
            try:
                answer = session.post(f"{self.url}/v1/models/{model}:predict", json=body, timeout=30)
                ok = answer.status_code == expected and "error" in answer.json()
                what = f"hostile {name}: HTTP {answer.status_code} (expected {expected}) {answer.text[:200]}"
            except requests.RequestException as error:
                ok, what = False, f"hostile {name}: {type(error).__name__}: {error}"
            if ok:
                with self.lock:
                    self.refused[name] = self.refused.get(name, 0) + 1
            else:
                self._record_failure(what)
            if n % 10 == 0:  # a body that never arrives whole: the server cuts it off, the others go on
                host, port = self.url.removeprefix("http://").split(":")
                with socket.create_connection((host, int(port)), timeout=5) as sock:
                    sock.sendall(b"POST /v1/models/emotion:predict HTTP/1.1\r\nHost: x\r\ncontent-length: 999\r\n\r\n{")
                with self.lock:
                    self.refused["abandoned body"] = self.refused.get("abandoned body", 0) + 1

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


class Monitor(threading.Thread):
    """Which version each model serves, every 0.25 s; and the server's peak RSS."""

    def __init__(self, url: str, pid: int):
        super().__init__(daemon=True)
        self.url, self.pid = url, pid
        self.stop = threading.Event()
        self.first_seen: dict[tuple[str, int], float] = {}
        self.peak_rss = 0.0
        self.start_time = time.monotonic()

    def run(self) -> None:
        session = requests.Session()
        while not self.stop.wait(0.25):
            self.peak_rss = max(self.peak_rss, _rss_mb(self.pid))
            for model in MODELS:
                try:
                    status = session.get(f"{self.url}/v1/models/{model}", timeout=5).json()
                    version = int(status["model_version_status"][0]["version"])
                except (requests.RequestException, KeyError, ValueError, IndexError):
                    continue
                self.first_seen.setdefault((model, version), time.monotonic() - self.start_time)


def _slow_copy(source: Path, target: Path, seconds: float) -> None:
    """Copy a SavedModel file by file, ``saved_model.pb`` first, spread over ``seconds``: what a
    slow ``cp -r`` or bucket sync looks like to a poller."""
    files = sorted((p for p in source.rglob("*") if p.is_file()), key=lambda p: (p.name != "saved_model.pb", str(p)))
    for path in files:
        (target / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
    for path in files:
        destination = target / path.relative_to(source)
        data = path.read_bytes()
        with open(destination, "wb") as f:
            for i in range(0, max(len(data), 1), max(len(data) // 4, 1)):
                f.write(data[i:i + max(len(data) // 4, 1)])
                f.flush()
                time.sleep(seconds / len(files) / 4)


def _error_kinds(log_lines: list[str]) -> dict[str, int]:
    """The server's ERROR lines by kind (their text up to the first digit or colon), to show
    they are one per failed load, not a flood."""
    import re

    kinds: dict[str, int] = {}
    for line in log_lines:
        if " ERROR " in line:
            message = line.split(" ERROR ", 1)[1]
            text = message.split(": ", 1)[-1]
            kind = re.split(r"[0-9:(]", text, maxsplit=1)[0].strip()[:80] or text[:80]
            kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-repo", type=Path, default=config.MODEL_REPO)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="serving-soak-") as scratch_dir:
        repo = Path(scratch_dir) / "model_repository"
        newest = _scratch_repo(args.model_repo, repo)
        swap, corrupt, slow = newest["keypoints"] + 1, newest["emotion"] + 1, newest["keypoints"] + 2
        log = repo.parent / "serve.log"
        process, url = local_server.start(repo, log=log, extra_args=("--poll-seconds", "0.5"))
        try:
            load = Load(url, args.clients)
            load.start()
            time.sleep(min(10.0, args.seconds * 0.1))  # warm-up: the first calls trace the graphs
            rss_start = _rss_mb(process.pid)
            with load.lock:
                warmup = len(load.latencies)
            monitor = Monitor(url, process.pid)
            monitor.start()
            events = {}
            t0 = monitor.start_time

            def at(fraction: float) -> None:
                time.sleep(max(0.0, t0 + args.seconds * fraction - time.monotonic()))

            at(0.2)
            staging = repo / "keypoints" / f".incoming-{swap}"
            shutil.copytree(repo / "keypoints" / str(newest["keypoints"]), staging)
            staging.rename(repo / "keypoints" / str(swap))
            events["version swap"] = {"model": "keypoints", "version": swap, "at": time.monotonic() - t0}
            at(0.4)
            # a bad push: corrupt when it appears (made aside, then renamed in), so the poller
            # cannot load the good copy before the damage is done
            broken = repo / "emotion" / f".incoming-{corrupt}"
            shutil.copytree(repo / "emotion" / str(newest["emotion"]), broken)
            (broken / "saved_model.pb").write_bytes(b"not a SavedModel" * 64)
            broken.rename(repo / "emotion" / str(corrupt))
            events["corrupt version"] = {"model": "emotion", "version": corrupt, "at": time.monotonic() - t0}
            at(0.55)
            started = time.monotonic() - t0
            _slow_copy(repo / "keypoints" / str(newest["keypoints"]), repo / "keypoints" / str(slow),
                       SLOW_COPY_SECONDS)
            events["slow non-atomic copy"] = {"model": "keypoints", "version": slow, "started": started,
                                              "at": time.monotonic() - t0}
            at(1.0)
            load.join()
            monitor.stop.set()
            monitor.join()
            rss_end = _rss_mb(process.pid)
            alive = process.poll() is None
        finally:
            process.terminate()
            process.wait(timeout=30)
        log_lines = log.read_text().splitlines()

    for event in events.values():
        seen = monitor.first_seen.get((event["model"], event["version"]))
        event["served_after_s"] = round(seen - event["at"], 2) if seen is not None else None
        event["at"] = round(event["at"], 2)
        if "started" in event:
            event["started"] = round(event["started"], 2)
    ms = np.array(load.latencies[warmup:]) * 1000
    result = {
        **results_io.provenance("serving_soak.py", argv),
        "model_repo": str(args.model_repo), "versions_at_start": newest,
        "clients": args.clients, "seconds": args.seconds,
        "requests": len(load.latencies), "failures": len(load.failures), "failure_samples": load.failures[:10],
        "p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "refused_as_expected": load.refused,
        "rss_mb": {"after_warmup": round(rss_start, 1), "peak": round(monitor.peak_rss, 1), "end": round(rss_end, 1),
                   "growth": round(rss_end - rss_start, 1)},
        "target": {"failures": 0, "rss_growth_mb": TARGET_RSS_GROWTH_MB,
                   "slow_copy": "served once complete, never while half-copied"},
        "events": events,
        "server_alive_at_end": alive,
        "server_log_error_lines": sum(" ERROR " in line for line in log_lines),
        "server_log_error_kinds": _error_kinds(log_lines),
        "server_log_error_samples": [line[:300] for line in log_lines if " ERROR " in line][:12],
        "server_log_lines": len(log_lines),
    }
    slow_event = events["slow non-atomic copy"]
    result["slow_copy_served_only_when_complete"] = (
        slow_event["served_after_s"] is not None and slow_event["served_after_s"] >= 0)
    result["corrupt_version_never_served"] = ("emotion", corrupt) not in monitor.first_seen
    results_io.write(args.out, "serving_soak", result, markdown)
    ok = (result["failures"] == 0 and alive and result["rss_mb"]["growth"] <= TARGET_RSS_GROWTH_MB
          and result["slow_copy_served_only_when_complete"] and result["corrupt_version_never_served"])
    return 0 if ok else 1


def markdown(r: dict) -> str:
    rss = r["rss_mb"]
    lines = ["# Serving soak: `emotion-ai serve` under load while its repository changes", "",
             f"Command: `{r['command']}` at {r['commit']} ({r['machine']['cores']} cores). {r['clients']} keep-alive "
             f"clients posting one 96x96 PNG face at a time to both models for {r['seconds']:g} s, one hostile client "
             "(33 instances, a 20000x20000 PNG header, NaN pixel strings, abandoned bodies), a version swap, a corrupt "
             f"version and a slow non-atomic copy (~{SLOW_COPY_SECONDS:g} s, `saved_model.pb` first). Models: "
             f"{r['model_repo']} (versions {r['versions_at_start']}).", "",
             "| requests | failures | p50 ms | p99 ms | RSS after warm-up MB | peak MB | end MB | growth MB |",
             "|---|---|---|---|---|---|---|---|",
             f"| {r['requests']} | {r['failures']} | {r['p50_ms']} | {r['p99_ms']} | {rss['after_warmup']} | "
             f"{rss['peak']} | {rss['end']} | {rss['growth']} |", "",
             "| event | model | version | at s | served after s |", "|---|---|---|---|---|"]
    for name, e in r["events"].items():
        served = "never (as it must)" if e["served_after_s"] is None else e["served_after_s"]
        lines.append(f"| {name} | {e['model']} | {e['version']} | {e['at']} | {served} |")
    lines += ["", f"Hostile requests refused as expected: {r['refused_as_expected']}. Server alive at the end: "
              f"{r['server_alive_at_end']}; its log: {r['server_log_lines']} lines, {r['server_log_error_lines']} "
              f"ERROR ({r['server_log_error_kinds']}). Slow copy served only once complete: "
              f"{r['slow_copy_served_only_when_complete']}; corrupt "
              f"version never served: {r['corrupt_version_never_served']}.",
              f"Targets: {r['target']['failures']} failures, RSS growth <= {r['target']['rss_growth_mb']} MB."]
    if r["failure_samples"]:
        lines += ["", "Failures (first 10):", *[f"- {f}" for f in r["failure_samples"]]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
