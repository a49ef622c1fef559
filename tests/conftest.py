"""Shared fixtures: tiny generated datasets and one session-wide pipeline run."""
from __future__ import annotations

import contextlib
import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quieter than the CLI's default

import pytest  # noqa: E402

from emotion_ai.data import generator  # noqa: E402
from emotion_ai.pipelines import config  # noqa: E402

config.set_runtime_environment()  # before any test imports TensorFlow

TINY_KEYPOINT_ROWS = 80
TINY_EMOTION_ROWS = 120


E2E_FIXTURES = {"first_run", "first_run_cli", "workspace"}  # a test using these runs (or serves) the whole pipeline


def pytest_collection_modifyitems(items):
    """Every test is ``unit``, ``slow`` or ``e2e``: ``e2e`` when it is marked so or uses a
    pipeline run, ``slow`` when marked so (it trains a network or starts interpreters that
    import TensorFlow), ``unit`` otherwise."""
    for item in items:
        if item.get_closest_marker("e2e") is None and E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
        if item.get_closest_marker("e2e") is None and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Generated key-point and expression CSVs (seed 0), small enough for 1-epoch runs."""
    out = tmp_path_factory.mktemp("data")
    keypoints, emotion = generator.generate(out, TINY_KEYPOINT_ROWS, TINY_EMOTION_ROWS, seed=0)
    return {"dir": out, "keypoints": keypoints, "emotion": emotion}


@pytest.fixture(scope="session")
def workspace(tiny_data, tmp_path_factory):
    """Tiny data plus a file of malformed rows, a pipeline root and a model repository."""
    root = tmp_path_factory.mktemp("pipeline")
    data_dir = root / "data"
    shutil.copytree(tiny_data["dir"], data_dir)
    (data_dir / "emotion_extra.csv").write_text(  # line 3: bad label; line 4: short image
        f"emotion,pixels\n1,{textured_pixels(48)}\nx,{textured_pixels(48)}\n2,1 2 3\n")
    return {"data": data_dir, "root": root / "root", "repo": root / "repo"}


def textured_pixels(size: int, seed: int = 0) -> str:
    """A valid pixel string of an image with some contrast: a uniform one is no face, and the
    curated schema says so (``image_contrast``), which would stop the branch's training."""
    import numpy as np

    return " ".join(map(str, np.random.default_rng(seed).integers(40, 220, size * size)))


def cli(*args, timeout: float = 600, env: dict | None = None):
    """``emotion-ai ARGS`` in its own process, as a person types it; its completed process."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "emotion_ai.pipelines.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(env or os.environ, PYTHONUNBUFFERED="1"))


@pytest.fixture(scope="session")
def first_run_cli(workspace):
    """One smoke-profile run of the whole pipeline, started as a person starts it:
    ``emotion-ai run`` in its own process, with the default (in-process) Beam runner, as
    ``make run``. The later runs on this root, in-process through ``local_runner.run``, use
    the same Beam arguments: TFX keys its cache on them. Returns the finished process and
    the run as ``local_runner`` reads it back from ML Metadata."""
    from emotion_ai.pipelines import local_runner

    done = cli("run", "--profile", "smoke", "--data-dir", str(workspace["data"]),
               "--pipeline-root", str(workspace["root"]), "--model-repo", str(workspace["repo"]), timeout=1500)
    if done.returncode:
        pytest.fail(f"the first run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    inputs = local_runner.resolve_inputs(workspace["data"], None, config.PROFILES["smoke"])
    return {"process": done, "result": local_runner.finished(workspace["root"], inputs)}


@pytest.fixture(scope="session")
def first_run(first_run_cli):
    """The first run (see ``first_run_cli``); its pushed models serve the serving tests."""
    return first_run_cli["result"]


def record_components_inputs(summary) -> dict[str, list]:
    """What the orchestrator hands the RunReport / TrackRun executors of a finished run: every
    recorded output of both branches, and the run's report, as TFX artifacts (from ML Metadata)."""
    from emotion_ai.components.branches import BRANCHES
    from emotion_ai.pipelines import record_components

    def artifact(cls, mlmd):
        found = cls()
        found.set_mlmd_artifact(mlmd)
        return found

    inputs = {}
    for branch in BRANCHES:
        for kind, key, cls in record_components.RECORDED:
            outputs = summary.component(branch.component_id(kind)).outputs[key]
            inputs[record_components.input_key(branch.name, key)] = [artifact(cls, m) for m in outputs]
    report = summary.component(record_components.REPORT_ID).outputs["report"]
    inputs["report"] = [artifact(record_components.ReportArtifact, m) for m in report]
    return inputs


def declared_png(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header declares ``width`` x ``height`` grey pixels:
    what a decoder would allocate for, as a compressed bomb does."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1))) + chunk(b"IEND", b""))


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the OS's pick)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_in_thread(app, **limits):
    """``app`` on uvicorn with the server's own configuration (``server.uvicorn_config``;
    ``limits`` scale its connection limits down) in a thread on a free 127.0.0.1 port;
    yields ``(host, port)`` and stops it after."""
    import threading
    import time

    import uvicorn

    from emotion_ai.serving import server

    port = free_port()
    uv = uvicorn.Server(server.uvicorn_config(app, "127.0.0.1", port, log_level="warning", **limits))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not uv.started:
        assert time.time() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    try:
        yield "127.0.0.1", port
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def beam_worker_pool(folder):
    """``emotion-ai beam-worker-pool`` in its own process on 127.0.0.1, stopped by its PID
    (it stops its workers); yields the Beam arguments that send a pipeline's work to it, and
    its log. Started without the project's runtime environment and with this interpreter off
    ``PATH``, as a user's shell would: the command itself must give its workers both."""
    import subprocess
    import sys
    import time

    from emotion_ai.pipelines import beam_workers

    port = free_port()
    log_path = folder / "worker_pool.log"
    venv_bin = os.path.dirname(sys.executable)
    env = {k: v for k, v in os.environ.items() if k not in config.RUNTIME_ENVIRONMENT}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    with open(log_path, "w") as log:
        pool = subprocess.Popen([sys.executable, "-m", "emotion_ai.pipelines.cli", "beam-worker-pool", "--port",
                                 str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 90
        while "Beam worker pool on" not in log_path.read_text():
            if pool.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Beam worker pool did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.5)
        yield {"args": beam_workers.beam_args("127.0.0.1", port), "log": log_path}
    finally:
        stop(pool, timeout=60)


def stop(process, timeout: float = 30) -> None:
    """Stop a process a test started, by its PID: SIGTERM, then SIGKILL after ``timeout``."""
    import subprocess

    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
