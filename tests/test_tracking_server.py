"""MLflow tracking against a real ``mlflow server`` on 127.0.0.1, as a team's shared server."""
from __future__ import annotations

import copy
import dataclasses
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest

from emotion_ai.components import spec
from emotion_ai.components.branches import BRANCHES
from emotion_ai.pipelines import config, tracking


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """``mlflow server`` in its own process (stopped by its PID), its artifacts proxied."""
    port = _free_port()
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url, tmp_path / "server-artifacts"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_a_run_is_tracked_and_its_models_registered_on_a_real_mlflow_server(first_run, mlflow_server, monkeypatch):
    """The models are logged with MLflow's own model logging into the server's artifact store
    and registered from ``runs:/``, which a server accepts (a ``file://`` source is refused);
    a registered version loads and answers through MLflow alone."""
    import mlflow

    url, artifact_store = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    smoke = config.PROFILES["smoke"]
    result = copy.copy(first_run)
    result.context = dataclasses.replace(first_run.context)
    result.context.mlflow_run_id, location = tracking.open_run(first_run.summary.run_id, smoke,
                                                               first_run.pipeline_root)
    assert location == f"{url}/#/experiments/{mlflow.get_experiment_by_name(config.PIPELINE_NAME).experiment_id}" \
                       f"/runs/{result.context.mlflow_run_id}"
    tracking.track(result, smoke, first_run.pipeline_root)

    client = mlflow.MlflowClient(url)
    assert client.get_run(result.context.mlflow_run_id).data.tags["tfx_run_id"] == first_run.summary.run_id
    for branch in BRANCHES:
        pushed = first_run.summary.branches[branch.name].pushed_version
        (version,) = client.search_model_versions(f"name = '{tracking.registered_name(branch.name)}'")
        assert version.tags["tf_serving_version"] == pushed
        assert version.source.startswith("models:/"), version.source
        assert client.get_run(version.run_id).info.run_name == branch.name
    assert any(p.name == "saved_model.pb" for p in artifact_store.rglob("*")), "the models live in the server's store"

    model = mlflow.pyfunc.load_model(f"models:/{tracking.registered_name('emotion')}/1")
    pixels = [" ".join(["120"] * 48 * 48), " ".join(["30"] * 48 * 48)]
    out = model.predict(pd.DataFrame({"pixels": pixels}))
    probabilities = np.asarray(out[spec.EMOTION_OUTPUT])
    assert probabilities.shape == (2, len(spec.EMOTION_CLASSES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
