"""Serving latency and throughput: `emotion-ai serve` over REST vs the same SavedModel in-process.

    .venv/bin/python benchmarks/serving.py [--model-repo serving/model_repository] [--seconds 10]

Starts ``emotion-ai serve`` as a separate process on a free port and measures, in one run on
this machine, for each model and for 1 image and batches of 32 (96x96 PNG face images,
base64 in ``instances``): p50/p99 latency of sequential requests through ``requests``
(keep-alive), throughput with 4 concurrent clients, and the same calls of the
``serving_default`` signature in-process. Writes ``benchmarks/results/serving.{json,md}``.
"""
from __future__ import annotations

import argparse
import base64
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import local_server  # noqa: E402
import results_io  # noqa: E402

from emotion_ai.pipelines import config  # noqa: E402

config.set_runtime_environment()
from emotion_ai.serving.local_model import ServedModel  # noqa: E402

# Issue 19: one image in <= 10 ms p99 over REST per model, batches at >= 400 images/s (2 cores).
TARGET_P99_MS = 10.0
TARGET_BATCH_IMAGES_PER_SECOND = 400.0
CONCURRENT_CLIENTS = 4


def _stats(latencies: list[float], wall: float, images_per_call: int) -> dict:
    ms = np.array(latencies) * 1000
    return {"calls": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "mean_ms": round(float(ms.mean()), 2),
            "images_per_second": round(len(ms) * images_per_call / wall, 1)}


def _timed(call, seconds: float, warmup: int = 5) -> tuple[list[float], float]:
    for _ in range(warmup):
        call()
    latencies, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - t)
    return latencies, time.perf_counter() - start


def _concurrent(make_call, seconds: float, clients: int) -> tuple[list[float], float]:
    latencies, lock, stop = [], threading.Lock(), threading.Event()

    def worker():
        call = make_call()
        call()
        while not stop.is_set():
            t = time.perf_counter()
            call()
            with lock:
                latencies.append(time.perf_counter() - t)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-repo", type=Path, default=config.MODEL_REPO)
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)

    images = local_server.face_pngs(32)
    bodies = {n: json.dumps({"instances": [{"b64": base64.b64encode(i).decode()} for i in images[:n]]})
              for n in (1, 32)}
    process, url = local_server.start(args.model_repo)
    results = []
    try:
        for model_name in local_server.MODELS:
            model = ServedModel(args.model_repo, model_name)
            for n in (1, 32):
                row = {"model": model_name, "version": model.version, "batch": n}
                row["in_process"] = _stats(*_timed(lambda model=model, n=n: model.predict_images(images[:n]),
                                                   args.seconds), n)
                session = requests.Session()
                endpoint = f"{url}/v1/models/{model_name}:predict"

                def rest(session=session, body=bodies[n], endpoint=endpoint):
                    r = session.post(endpoint, data=body, headers={"Content-Type": "application/json"})
                    r.raise_for_status()

                row["rest"] = _stats(*_timed(rest, args.seconds), n)

                def make_client(body=bodies[n], endpoint=endpoint):
                    s = requests.Session()
                    headers = {"Content-Type": "application/json"}
                    return lambda: s.post(endpoint, data=body, headers=headers).raise_for_status()

                row["rest_concurrent"] = _stats(*_concurrent(make_client, args.seconds, CONCURRENT_CLIENTS), n)
                row["rest_p99_over_in_process_p99"] = round(row["rest"]["p99_ms"] / row["in_process"]["p99_ms"], 2)
                print(json.dumps(row), flush=True)
                results.append(row)
    finally:
        process.terminate()
        process.wait(timeout=30)

    result = {**results_io.provenance("serving.py", argv),
              "seconds_per_measurement": args.seconds, "concurrent_clients": CONCURRENT_CLIENTS,
              "target": {"rest_p99_ms_single_image": TARGET_P99_MS, "rest_p99_over_in_process": 2.0,
                         "batch_images_per_second": TARGET_BATCH_IMAGES_PER_SECOND},
              "results": results}
    results_io.write(args.out, "serving", result, markdown)
    return 0


def markdown(r: dict) -> str:
    lines = ["# Serving latency: `emotion-ai serve` (REST) vs in-process", "",
             f"Command: `{r['command']}` at commit {r.get('commit')} ({r['machine']['cores']} cores, "
             f"{r['seconds_per_measurement']} s per "
             f"measurement). 96x96 PNG faces, base64 `instances`; sequential keep-alive requests for latency, "
             f"{r['concurrent_clients']} concurrent clients for throughput. Targets: REST p99 <= "
             f"{r['target']['rest_p99_ms_single_image']:.0f} ms for one image and <= 2x in-process; batches of 32 "
             f">= {r['target'].get('batch_images_per_second', 0):.0f} images/s.", "",
             "| model | version |", "|---|---|",
             *sorted({f"| {row['model']} | {row['version']} |" for row in r["results"]}), "",
             "| model | batch | in-process p50 / p99 ms | REST p50 / p99 ms | REST p99 / in-process p99 | "
             "in-process img/s | REST img/s (1 client) | REST img/s (4 clients) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in r["results"]:
        i, s, c = row["in_process"], row["rest"], row["rest_concurrent"]
        lines.append(f"| {row['model']} | {row['batch']} | {i['p50_ms']} / {i['p99_ms']} | {s['p50_ms']} / "
                     f"{s['p99_ms']} | {row['rest_p99_over_in_process_p99']} | {i['images_per_second']} | "
                     f"{s['images_per_second']} | {c['images_per_second']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
