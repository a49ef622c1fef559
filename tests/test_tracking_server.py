"""MLflow tracking against a real ``mlflow server`` on 127.0.0.1, as a team's shared server."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest
from conftest import free_port, record_components_inputs, stop

from emotion_ai.components import spec
from emotion_ai.components.branches import BRANCHES
from emotion_ai.pipelines import config, record_components, tracking


@pytest.fixture
def mlflow_server(tmp_path):
    """``mlflow server`` in its own process (stopped by its PID), its artifacts proxied."""
    port = free_port()
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
        stop(server)
        log.close()


def _track(first_run, out_dir, tracking_uri: str, report_uri: str | None = None):
    """The TrackRun component's executor on the first run's artifacts (read from ML
    Metadata, as the orchestrator hands them in); returns its ``mlflow_run`` output, written
    under ``out_dir`` (the shared root is only read)."""
    inputs = record_components_inputs(first_run.summary)
    if report_uri:
        inputs["report"][0].uri = report_uri
    out = record_components.MlflowRunArtifact()
    out.uri = str(out_dir / "test-tracking")
    record_components.TrackingExecutor().Do(inputs, {"mlflow_run": [out]},
                                            {"tracking_uri": tracking_uri, "run_key": "test"})
    return out


def test_a_run_is_tracked_and_its_models_registered_on_a_real_mlflow_server(first_run, mlflow_server, tmp_path):
    """The models are logged with MLflow's own model logging into the server's artifact store
    and registered from ``runs:/``, which a server accepts (a ``file://`` source is refused);
    a registered version loads and answers through MLflow alone."""
    import mlflow

    url, artifact_store = mlflow_server
    out = _track(first_run, tmp_path, url)
    assert out.get_int_custom_property("tracked") == 1, out.get_string_custom_property("reason")
    run_id = out.get_string_custom_property("mlflow_run_id")
    experiment = mlflow.MlflowClient(url).get_experiment_by_name(config.PIPELINE_NAME).experiment_id
    assert out.get_string_custom_property("location") == f"{url}/#/experiments/{experiment}/runs/{run_id}"
    result = first_run
    client = mlflow.MlflowClient(url)
    run = client.get_run(run_id)
    assert run.data.tags["tfx_run_id"] == first_run.summary.run_id
    assert "report.html" in [a.path for a in client.list_artifacts(run_id)]
    del result
    for branch in BRANCHES:
        pushed = first_run.summary.branches[branch.name].pushed_version
        (version,) = client.search_model_versions(f"name = '{tracking.registered_name(branch.name)}'")
        assert version.tags["tf_serving_version"] == pushed
        assert version.source.startswith("models:/"), version.source
        assert client.get_run(version.run_id).info.run_name == branch.name
    assert any(p.name == "saved_model.pb" for p in artifact_store.rglob("*")), "the models live in the server's store"

    # From the server's registry, as a user who points MLflow at it (for this call only: MLflow's
    # tracking URI is process-wide, and the TrackRun step has set and restored it before).
    with tracking.tracking_store(mlflow, url):
        model = mlflow.pyfunc.load_model(f"models:/{tracking.registered_name('emotion')}/1")
    pixels = [" ".join(["120"] * 48 * 48), " ".join(["30"] * 48 * 48)]
    out = model.predict(pd.DataFrame({"pixels": pixels}))
    probabilities = np.asarray(out[spec.EMOTION_OUTPUT])
    assert probabilities.shape == (2, len(spec.EMOTION_CLASSES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_tracking_never_fails_a_run_that_pushed(first_run, tmp_path, monkeypatch):
    """No store configured (a pipeline root on an object store, no URI): one log line and the
    reason on the output; an unreachable server: a warning and the reason, not an error."""
    report = tmp_path / "report"
    shutil.copytree(first_run.report_path.parent, report)
    context = json.loads((report / "context.json").read_text())
    (report / "context.json").write_text(json.dumps({**context, "pipeline_root": "gs://bucket/emotion-ai"}))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = _track(first_run, tmp_path, "", str(report))
    assert out.get_int_custom_property("tracked") == 0
    assert "no tracking store configured" in out.get_string_custom_property("reason")

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    out = _track(first_run, tmp_path, f"http://user:secret@127.0.0.1:{free_port()}")  # nothing listens there
    assert out.get_int_custom_property("tracked") == 0
    reason = out.get_string_custom_property("reason")
    assert reason.startswith("tracking failed") and "secret" not in reason, reason
