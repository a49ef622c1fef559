"""The deploy helper against a local fake of the KFP v2beta1 REST endpoints it calls."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from emotion_ai.kubeflow import deploy


class FakeKfp:
    """Records every request; keeps pipelines, versions, experiments and recurring runs."""

    def __init__(self):
        self.requests: list[dict] = []
        self.pipelines: dict[str, str] = {}  # name -> id
        self.versions: dict[str, list[str]] = {}
        self.experiments: dict[str, str] = {}
        self.recurring: dict[str, dict] = {}

    def handle(self, method: str, path: str, query: dict, body: bytes):
        self.requests.append({"method": method, "path": path, "query": query, "body": body})
        q = {k: v[0] for k, v in query.items()}
        if path == "/apis/v2beta1/healthz":
            return {"multi_user": False}
        if method == "GET" and path == "/apis/v2beta1/pipelines":
            name = json.loads(q["filter"])["predicates"][0]["stringValue"]
            return {"pipelines": [{"pipeline_id": self.pipelines[name], "display_name": name}]} \
                if name in self.pipelines else {}
        if path == "/apis/v2beta1/pipelines/upload":
            pid = f"pipeline-{len(self.pipelines) + 1}"
            self.pipelines[q["name"]] = pid
            self.versions[pid] = [f"{pid}-v1"]
            return {"pipeline_id": pid, "display_name": q["name"]}
        if path == "/apis/v2beta1/pipelines/upload_version":
            pid = q["pipelineid"]
            self.versions[pid].append(f"{pid}-v{len(self.versions[pid]) + 1}")
            return {"pipeline_id": pid, "pipeline_version_id": self.versions[pid][-1], "display_name": q["name"]}
        if method == "GET" and path.endswith("/versions"):
            pid = path.split("/")[4]
            return {"pipeline_versions": [{"pipeline_id": pid, "pipeline_version_id": self.versions[pid][-1]}]}
        if method == "GET" and path == "/apis/v2beta1/experiments":
            name = json.loads(q["filter"])["predicates"][0]["stringValue"]
            return {"experiments": [{"experiment_id": self.experiments[name], "display_name": name}],
                    "total_size": 1} if name in self.experiments else {}
        if method == "POST" and path == "/apis/v2beta1/experiments":
            payload = json.loads(body)
            self.experiments[payload["display_name"]] = eid = f"experiment-{len(self.experiments) + 1}"
            return {**payload, "experiment_id": eid}
        if method == "GET" and path == "/apis/v2beta1/recurringruns":
            runs = [r for r in self.recurring.values() if r["experiment_id"] == q.get("experiment_id")]
            return {"recurringRuns": runs, "total_size": len(runs)} if runs else {}
        if method == "DELETE" and path.startswith("/apis/v2beta1/recurringruns/"):
            self.recurring.pop(path.rsplit("/", 1)[1])
            return {}
        if method == "POST" and path == "/apis/v2beta1/recurringruns":
            payload = json.loads(body)
            rid = f"recurring-{len(self.requests)}"
            self.recurring[rid] = {**payload, "recurring_run_id": rid}
            return self.recurring[rid]
        return None


@pytest.fixture()
def fake_kfp():
    fake = FakeKfp()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self):
            url = urlparse(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            reply = fake.handle(self.command, url.path, parse_qs(url.query), body)
            data = json.dumps(reply if reply is not None else {"error": "not faked"}).encode()
            self.send_response(200 if reply is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _calls(fake, method, path):
    return [r for r in fake.requests if r["method"] == method and r["path"] == path]


def test_deploy_uploads_the_spec_and_schedules_it_then_redeploy_replaces_the_schedule(fake_kfp, tmp_path):
    fake, host = fake_kfp
    spec = tmp_path / "emotion-ai-pipeline.json"
    spec.write_text(json.dumps({"pipelineSpec": {"pipelineInfo": {"name": "emotion-ai"}}, "marker": "SPEC-42"}))

    first = deploy.deploy(spec, host, "0 3 * * *")
    (upload,) = _calls(fake, "POST", "/apis/v2beta1/pipelines/upload")
    assert upload["query"]["name"] == ["emotion-ai"]
    assert b"SPEC-42" in upload["body"]  # the spec file itself is uploaded (multipart)
    (experiment,) = _calls(fake, "POST", "/apis/v2beta1/experiments")
    assert json.loads(experiment["body"])["display_name"] == "emotion-ai"
    (created,) = _calls(fake, "POST", "/apis/v2beta1/recurringruns")
    job = json.loads(created["body"])
    assert job["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"  # KFP's seconds-first form
    assert job["pipeline_version_reference"] == {"pipeline_id": "pipeline-1", "pipeline_version_id": "pipeline-1-v1"}
    assert job["experiment_id"] == first.experiment_id == "experiment-1"
    assert int(job["max_concurrency"]) == 1 and job["no_catchup"] is True and job["mode"] == "ENABLE"
    assert first.replaced_recurring_runs == ()

    assert not job.get("service_account"), "the installation's default unless one is named"

    second = deploy.deploy(spec, host, "30 2 * * 1-5", service_account="emotion-ai-runner")
    (version_upload,) = _calls(fake, "POST", "/apis/v2beta1/pipelines/upload_version")
    assert version_upload["query"]["pipelineid"] == ["pipeline-1"] and b"SPEC-42" in version_upload["body"]
    assert len(_calls(fake, "POST", "/apis/v2beta1/pipelines/upload")) == 1  # no second pipeline
    assert len(_calls(fake, "POST", "/apis/v2beta1/experiments")) == 1  # experiment reused
    assert second.replaced_recurring_runs == (first.recurring_run_id,)
    assert [r["path"] for r in _calls(fake, "DELETE", f"/apis/v2beta1/recurringruns/{first.recurring_run_id}")]
    assert list(fake.recurring) == [second.recurring_run_id]  # exactly one schedule left
    job = fake.recurring[second.recurring_run_id]
    assert job["trigger"]["cron_schedule"]["cron"] == "0 30 2 * * 1-5"
    assert job["pipeline_version_reference"]["pipeline_version_id"] == "pipeline-1-v2"
    assert job["service_account"] == "emotion-ai-runner", "the runs' pods use the named service account"


def test_cron_translation_and_errors(tmp_path):
    assert deploy.kfp_cron("*/15 * * * *") == "0 */15 * * * *"
    assert deploy.kfp_cron("0 3 * * * 30") == "30 0 3 * * *"  # croniter's seconds-last -> seconds-first
    with pytest.raises(ValueError, match="invalid cron"):
        deploy.kfp_cron("every day")
    with pytest.raises(FileNotFoundError, match="compile-kubeflow"):
        deploy.deploy(tmp_path / "missing.json", "http://127.0.0.1:9", "0 3 * * *")
