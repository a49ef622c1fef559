"""Shared fixtures: tiny generated datasets and one session-wide pipeline run."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quieter than the CLI's default

import pytest  # noqa: E402

from emotion_ai.data import generator  # noqa: E402
from emotion_ai.pipelines import config  # noqa: E402

config.set_runtime_environment()  # before any test imports TensorFlow

TINY_KEYPOINT_ROWS = 80
TINY_EMOTION_ROWS = 120


# A test using these runs (or serves) the whole pipeline.
E2E_FIXTURES = {"first_run", "first_run_cli", "second_run", "run_copy", "workspace"}
RUN_FIXTURES = E2E_FIXTURES - {"workspace"}  # ... and waits for the session's two shared runs


def pytest_collection_modifyitems(items):
    """Every test is ``unit``, ``slow`` or ``e2e``: ``e2e`` when it is marked so or uses a
    pipeline run, ``slow`` when marked so (it trains a network or starts interpreters that
    import TensorFlow), ``unit`` otherwise.

    Then the order the workers (pytest-xdist, ``-n``) take tests in: the session's shared
    runs (``session_runs``) start at once, on one worker, while the other takes the long
    tests that need no shared run, then the unit tests; the tests that run the pipeline on a
    copy of the shared runs come after, then those that only read them. Within each kind the
    ``heaviest`` go first, so that both workers finish at about the same time. The order only
    keeps both cores busy: no test depends on another having run."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("e2e") is None and E2E_FIXTURES & names:
            item.add_marker(pytest.mark.e2e)
        if item.get_closest_marker("e2e") is None and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.unit)

    def rank(item):
        names = set(getattr(item, "fixturenames", ()))
        heaviest = item.get_closest_marker("heaviest") is None  # False sorts first
        if item.get_closest_marker("produces_runs"):
            return 0, heaviest
        if "run_copy" in names:
            return 4, heaviest  # runs the pipeline again, on a copy
        if RUN_FIXTURES & names:
            return 5, heaviest  # only reads the shared runs
        return (1 if item.get_closest_marker("e2e") else 2 if item.get_closest_marker("slow") else 3), heaviest
    items.sort(key=rank)  # stable: within a rank, files and tests keep their order


def shared_folder(tmp_path_factory) -> Path:
    """A folder all workers of this session share (under xdist each worker has its own base
    temp folder inside the session's; without xdist, the session's)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def once(tmp_path_factory, name: str, make):
    """``make(folder)`` once per session, whichever worker asks first; the others wait for it
    and get the same JSON-able result (or the same failure). Returns ``(folder, result)``."""
    from filelock import FileLock

    shared = shared_folder(tmp_path_factory)
    folder, done = shared / name, shared / f"{name}.json"
    with FileLock(str(shared / f"{name}.lock")):
        if not done.exists():
            folder.mkdir(parents=True, exist_ok=True)
            try:
                result = {"ok": make(folder)}
            except BaseException as error:  # noqa: BLE001 - recorded for the other workers, then raised
                done.write_text(json.dumps({"error": f"{type(error).__name__}: {error}"[-6000:]}))
                raise
            done.write_text(json.dumps(result))
    result = json.loads(done.read_text())
    if "error" in result:
        pytest.fail(f"{name} failed in another worker: {result['error']}")
    return folder, result["ok"]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Generated key-point and expression CSVs (seed 0), small enough for 1-epoch runs."""
    def make(out):
        keypoints, emotion = generator.generate(out, TINY_KEYPOINT_ROWS, TINY_EMOTION_ROWS, seed=0)
        return {"keypoints": str(keypoints), "emotion": str(emotion)}

    out, made = once(tmp_path_factory, "data", make)
    return {"dir": out, "keypoints": Path(made["keypoints"]), "emotion": Path(made["emotion"])}


@pytest.fixture(scope="session")
def workspace(tiny_data, tmp_path_factory):
    """Tiny data plus a file of malformed rows, a pipeline root and a model repository: the
    session's shared runs write here (``session_runs``), nothing else does."""
    def make(root):
        data_dir = root / "data"
        shutil.copytree(tiny_data["dir"], data_dir)
        (data_dir / "emotion_extra.csv").write_text(  # line 3: bad label; line 4: short image
            f"emotion,pixels\n1,{textured_pixels(48)}\nx,{textured_pixels(48)}\n2,1 2 3\n")
        return {}

    root, _ = once(tmp_path_factory, "pipeline", make)
    return {"data": root / "data", "root": root / "root", "repo": root / "repo"}


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
def session_runs(workspace, tmp_path_factory):
    """The session's two runs of the whole pipeline (smoke profile), made once for all
    workers on the shared root and repository:

    1. ``emotion-ai run`` in its own process, started as a person starts it, with the default
       (in-process) Beam runner, as ``make run``;
    2. the same data again, in-process through ``local_runner.run`` with the same Beam
       arguments (TFX keys its cache on them): cached up to the Trainers, nothing pushed.

    Both are done before any test reads them, so no test reads a root another run is writing.
    After them the shared root and repository are only read; a test that runs the pipeline
    again works on its own copy (``run_copy``). Returns the first run's console and both run ids."""
    import subprocess

    from emotion_ai.pipelines import local_runner

    def make(_):
        done = cli("run", "--profile", "smoke", "--data-dir", str(workspace["data"]),
                   "--pipeline-root", str(workspace["root"]), "--model-repo", str(workspace["repo"]), timeout=1500)
        if done.returncode:
            raise RuntimeError(f"the first run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        first = local_runner.finished(workspace["root"], _smoke_inputs(workspace)).summary.run_id
        second = local_runner.run(config.PROFILES["smoke"], workspace["root"], workspace["repo"], workspace["data"])
        return {"args": done.args, "returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr,
                "first": first, "second": second.summary.run_id}

    _, made = once(tmp_path_factory, "session_runs", make)
    made["process"] = subprocess.CompletedProcess(made["args"], made["returncode"], made["stdout"], made["stderr"])
    return made


def _smoke_inputs(workspace):
    from emotion_ai.pipelines import local_runner

    return local_runner.resolve_inputs(workspace["data"], None, config.PROFILES["smoke"])


@pytest.fixture(scope="session")
def first_run_cli(session_runs, workspace):
    """The first of the session's runs (``session_runs``): the finished ``emotion-ai run``
    process, and the run as ``local_runner`` reads it back from ML Metadata."""
    from emotion_ai.pipelines import local_runner

    return {"process": session_runs["process"],
            "result": local_runner.finished(workspace["root"], _smoke_inputs(workspace), session_runs["first"])}


@pytest.fixture(scope="session")
def first_run(first_run_cli):
    """The first run (see ``first_run_cli``); its pushed models serve the serving tests."""
    return first_run_cli["result"]


@pytest.fixture(scope="session")
def second_run(session_runs, workspace):
    """The second of the session's runs: unchanged data, so cached and nothing pushed."""
    from emotion_ai.pipelines import local_runner

    return local_runner.finished(workspace["root"], _smoke_inputs(workspace), session_runs["second"])


@pytest.fixture(scope="session")
def run_copy(session_runs, workspace, tmp_path_factory):
    """``run_copy(name)``: a private pipeline root and model repository as the session's two
    runs left them, for a test that runs the pipeline again (its cache hits as on the shared
    root; what it records and pushes stays its own). The MLflow store is left out: its
    experiment's artifact location is the shared root's, and a copy starts its own."""
    def make(name: str) -> dict:
        base = tmp_path_factory.mktemp(name)
        shutil.copytree(workspace["root"], base / "root",
                        ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", "*.lock"))
        shutil.copytree(workspace["repo"], base / "repo")
        return {"root": base / "root", "repo": base / "repo", "data": workspace["data"]}
    return make


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
