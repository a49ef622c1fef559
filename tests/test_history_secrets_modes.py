"""The run history survives a crash mid-write, no credential is printed or logged, and who may
read a written file does not depend on the umask (issue 16's probes)."""
from __future__ import annotations

import json
import logging
import os
import stat

import pytest
from click.testing import CliRunner

from emotion_ai.components import credentials, csv_rows, file_modes, model_repository, repository_pusher
from emotion_ai.pipelines import scheduler
from emotion_ai.pipelines.cli import main

SECRET_URI = "https://alice:s3cr3t@mlflow.example.com:5000/path?token=abc123&x=1"


def _record(n: int) -> dict:
    return {"start": f"2026-12-02T0{n}:00:00+00:00", "end": f"2026-12-02T0{n}:10:00+00:00", "trigger": "manual",
            "status": "succeeded", "profile": "smoke", "models": {}}


def test_a_torn_history_line_is_reported_skipped_and_not_glued_to_the_next(tmp_path):
    scheduler.append_history(tmp_path, _record(1))
    with open(scheduler.history_path(tmp_path), "a") as f:  # a writer killed mid-line
        f.write(json.dumps(_record(2))[:25])
    scheduler.append_history(tmp_path, _record(3))
    lines = scheduler.history_path(tmp_path).read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2]) == _record(3), "the next record starts a line of its own"
    entries, problems = scheduler.history_entries(tmp_path)
    assert entries == [_record(1), _record(3)]
    assert len(problems) == 1 and problems[0].startswith("line 2: not a whole JSON record")

    result = CliRunner().invoke(main, ["runs", "--pipeline-root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert f"warning: {scheduler.history_path(tmp_path)} line 2: not a whole JSON record" in result.output
    assert "2026-12-02T01:00:00" in result.output and "2026-12-02T03:00:00" in result.output


def test_history_lines_that_are_json_but_not_records_are_skipped(tmp_path):
    path = scheduler.history_path(tmp_path)
    path.write_text('[1, 2]\n{"start": "x"}\n\xff\n' + json.dumps(_record(4)) + "\n")
    entries, problems = scheduler.history_entries(tmp_path)
    assert entries == [_record(4)]
    assert [p.split(":")[0] for p in problems] == ["line 1", "line 2", "line 3"]


def test_runs_last_counts_from_one(tmp_path):
    for n in range(1, 4):
        scheduler.append_history(tmp_path, _record(n))
    result = CliRunner().invoke(main, ["runs", "--pipeline-root", str(tmp_path), "--last", "1"])
    assert result.exit_code == 0 and "T03:00" in result.output and "T02:00" not in result.output
    result = CliRunner().invoke(main, ["runs", "--pipeline-root", str(tmp_path), "--last", "0"])
    assert result.exit_code == 2 and "T01:00" not in result.output, "0 is refused, not 'everything'"


def test_history_is_fsynced_whole_lines(tmp_path, monkeypatch):
    synced, writes = [], []
    real_write, real_fsync = os.write, os.fsync
    monkeypatch.setattr(os, "write", lambda fd, data: writes.append(data) or real_write(fd, data))
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    scheduler.append_history(tmp_path, _record(1))
    assert len(writes) == 1 and writes[0].endswith(b"\n") and len(synced) == 1


def test_redact_removes_user_info_and_secret_query_values():
    clean = credentials.redact(f"cannot reach {SECRET_URI} (and gs://bucket/x, http://host:80/a?page=2)")
    assert "alice" not in clean and "s3cr3t" not in clean and "abc123" not in clean
    assert "https://mlflow.example.com:5000/path?token=***&x=1" in clean
    assert "gs://bucket/x" in clean and "http://host:80/a?page=2" in clean


def test_log_records_are_redacted_whoever_logs_them(caplog):
    credentials.redact_log_records()
    credentials.redact_log_records()  # idempotent
    with caplog.at_level(logging.INFO):
        logging.getLogger("some.library").info("connecting to %s", SECRET_URI)
        logging.getLogger("absl").warning(f"retrying {SECRET_URI}")
    assert len(caplog.records) == 2
    assert all("s3cr3t" not in r.getMessage() and "abc123" not in r.getMessage() for r in caplog.records)


def test_a_failed_run_records_and_reports_no_credentials(tmp_path):
    def run():
        raise ConnectionError(f"MLflow at {SECRET_URI} refused")

    with pytest.raises(ConnectionError):
        scheduler.run_locked(tmp_path, run, trigger="manual", raise_errors=True)
    (entry,) = scheduler.read_history(tmp_path)
    assert entry["status"] == "failed" and "s3cr3t" not in entry["error"] and "mlflow.example.com" in entry["error"]


def test_the_cli_prints_no_credentials_in_its_errors(tmp_path):
    """`predict --server` and `deploy-kubeflow --host` with a password in the URL: the errors
    name the server, not the password."""
    photo = tmp_path / "a.png"
    photo.write_bytes(b"")
    result = CliRunner().invoke(main, ["predict", str(photo), "--server", "http://bob:hunter2@127.0.0.1:9",
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "hunter2" not in result.output and "127.0.0.1" in result.output
    result = CliRunner().invoke(main, ["deploy-kubeflow", "--host", "http://bob:hunter2@127.0.0.1:9", "--cron",
                                       "0 3 * * *", "--spec", str(photo)])
    assert result.exit_code == 1 and "hunter2" not in result.output, result.output


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    def set_umask(value):
        previous.append(os.umask(value))
    previous = []
    yield set_umask
    if previous:
        os.umask(previous[0])


def test_configs_and_pushed_models_are_readable_by_a_serving_user_under_any_umask(tmp_path, umask):
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"pb")
    (model / "variables" / "variables.index").write_bytes(b"ix")
    umask(0o077)  # a careful operator's umask: everything written would be 0600
    version, pushed = repository_pusher.push_atomically(str(model), str(tmp_path / "repo" / "emotion"), 0)
    assert pushed
    for name in (model_repository.MODELS_CONFIG, "batching.config", "monitoring.config"):
        assert _mode(tmp_path / "repo" / name) == file_modes.SERVED_FILE, name
    folder = tmp_path / "repo" / "emotion" / version
    assert _mode(folder) == _mode(folder / "variables") == file_modes.SERVED_DIR
    assert _mode(folder / "saved_model.pb") == _mode(folder / "variables" / "variables.index") == 0o644


def test_face_data_and_reports_are_not_world_readable_under_any_umask(tmp_path, umask):
    umask(0o022)  # the common default: everything written would be 0644
    lines = ["emotion,pixels"] + [f"1,{' '.join(['7'] * 2304)}"] * 10 + ["9,1 2 3"]
    source = tmp_path / "e.csv"
    source.write_text("\n".join(lines) + "\n")
    result = csv_rows.stage("emotion", [source], tmp_path / "s" / "staged.csv", tmp_path / "x" / "rejected.csv")
    assert _mode(result.rejected_path) == _mode(result.staged_path) == file_modes.PRIVATE_FILE
    assert _mode(result.rejected_path) & stat.S_IROTH == 0


def test_modes_are_left_alone_on_object_stores(tmp_path):
    file_modes.private("gs://bucket/report.html")  # no chmod, no error: the bucket's IAM decides
    file_modes.served("ram://repo/models.config", tree=True)


def test_tracking_leaves_no_store_behind_for_the_next_run(monkeypatch, tmp_path):
    """MLflow's ``set_tracking_uri`` exports ``MLFLOW_TRACKING_URI``: a second run in the same
    process, on another pipeline root, would be tracked in the first root's store."""
    import os

    import mlflow

    from emotion_ai.pipelines import tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with tracking.tracking_store(mlflow, f"sqlite:///{tmp_path / 'a.db'}"):
        assert mlflow.get_tracking_uri().endswith("a.db")
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert tracking.tracking_uri(tmp_path / "second") == f"sqlite:///{(tmp_path / 'second').resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")  # the user's own: kept
    with tracking.tracking_store(mlflow, f"sqlite:///{tmp_path / 'b.db'}"):
        pass
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
