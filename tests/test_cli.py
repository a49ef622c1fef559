"""The ``emotion-ai`` command line: clear one-line errors for unusable inputs."""
from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from conftest import cli

from emotion_ai.pipelines.cli import main


def test_run_with_a_missing_file_names_the_file(tmp_path):
    result = CliRunner().invoke(main, ["run", "--profile", "smoke", "--keypoints-csv", str(tmp_path / "kp.csv"),
                                       "--emotion-csv", str(tmp_path / "em.csv"),
                                       "--pipeline-root", str(tmp_path / "root"), "--model-repo", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert f"Error: {tmp_path / 'kp.csv'}: file not found" in result.output
    assert "Traceback" not in result.output


def test_generate_data_writes_both_formats(tmp_path):
    result = CliRunner().invoke(main, ["generate-data", "--out", str(tmp_path), "--keypoint-rows", "3",
                                       "--emotion-rows", "4"])
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "keypoints.csv").read_text().splitlines()) == 4
    assert len((tmp_path / "emotion.csv").read_text().splitlines()) == 5


@pytest.mark.produces_runs
def test_a_manual_run_is_quiet_shows_progress_is_recorded_and_holds_the_lock(first_run_cli, workspace):
    """`emotion-ai run` as a person sees it (the session's first run, ``first_run_cli``):
    progress lines and the summary on the console, the thousands of TFX/Beam/TensorFlow
    lines in a log file; the run is in `runs`; and a second run while the lock is held fails
    at once with one line."""
    from filelock import FileLock

    from emotion_ai.pipelines import scheduler

    done, root, run_id = first_run_cli["process"], workspace["root"], first_run_cli["result"].summary.run_id
    console = done.stdout.splitlines() + done.stderr.splitlines()
    assert len(console) < 150, "\n".join(console)
    assert f"run, profile smoke: models to {workspace['repo']}; full log in" in done.stdout  # a named profile
    assert any(line.startswith("[24/24] TrackRun done") for line in console)
    assert any("Trainer_keypoints done in" in line for line in console)
    assert "gate: BLESSED (Evaluator on the test split" in done.stdout
    assert "2 rejected" in done.stdout, "the malformed rows beside the good data are counted on the console"
    result = first_run_cli["result"]
    private = [result.report_path] + [b.rejected_rows for b in result.summary.branches.values() if b.rejected_rows]
    assert len(private) >= 2 and all(os.stat(p).st_mode & 0o007 == 0 for p in private), "faces: not world-readable"
    assert os.stat(workspace["repo"] / "models.config").st_mode & 0o004, "a serving user reads the configs"
    logs = [p for p in (root / "logs").glob("run-*.log") if run_id in p.read_text()]
    assert len(logs) == 1 and len(logs[0].read_text().splitlines()) > 10 * len(console)
    # Beam ran in this process: no component copied TFX into /tmp to build an sdist for workers
    assert "Creating temporary sdist package" not in logs[0].read_text()
    first = scheduler.read_history(root)[0]
    assert (first["trigger"], first["status"], first["profile"], first["run_id"]) == (
        "manual", "succeeded", "smoke", run_id)
    listing = cli("runs", "--pipeline-root", str(root), timeout=60)
    assert "manual" in listing.stdout and "succeeded" in listing.stdout
    assert "keypoints:BP[(no span folder)]" in listing.stdout, "blessed, pushed, the spans read"

    entries = len(scheduler.read_history(root))
    with FileLock(str(root / scheduler.LOCK_FILE)):  # as a scheduled run would hold it
        busy = cli("run", "--profile", "smoke", "--data-dir", str(workspace["data"]), "--pipeline-root", str(root),
                   "--model-repo", str(workspace["repo"]), timeout=60)
    assert busy.returncode == 1
    assert "Error: another run is going in" in busy.stderr and "Traceback" not in busy.stderr
    assert [e["status"] for e in scheduler.read_history(root)[entries:]] == ["skipped"]


def test_argument_errors_come_before_tensorflow_is_imported(tmp_path):
    """Each is one line, in well under the seconds TensorFlow's import would take."""
    import time

    spec = tmp_path / "spec.json"
    spec.write_text("{}")
    cases = [(("schedule", "--cron", "bad"), "invalid cron expression 'bad'"),
             (("report", "--pipeline-root", str(tmp_path / "empty")), "no pipeline run here"),
             (("deploy-kubeflow", "--host", "http://127.0.0.1:9", "--cron", "0 3 * * *", "--spec", str(spec)),
              "cannot reach the KFP API at http://127.0.0.1:9")]
    for args, message in cases:
        start = time.monotonic()
        result = cli(*args, timeout=60)
        seconds = time.monotonic() - start
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert seconds < 5, (args, seconds)


def test_generate_data_defaults_to_a_fresh_draw_and_kserve_manifests_to_stdout(tmp_path):
    from emotion_ai.data import generator

    result = CliRunner().invoke(main, ["generate-data", "--out", str(tmp_path), "--keypoint-rows", "3",
                                       "--emotion-rows", "4"])
    assert result.exit_code == 0, result.output
    seed = int(result.output.split("seed ")[1].split()[0])
    assert seed != generator.TRAINING_SEED
    assert generator.provenance(tmp_path / "keypoints.csv") == {"seed": seed, "rows": 3}
    training = tmp_path / "training"
    generator.generate(training, 3, 4)
    assert (training / "emotion.csv").read_text() != (tmp_path / "emotion.csv").read_text()
    manifests = CliRunner().invoke(main, ["kserve-manifests", "--model-repo", "gs://b/repo"])
    assert manifests.exit_code == 0 and "kind: InferenceService" in manifests.output
    assert "storageUri: gs://b/repo/emotion" in manifests.output


@pytest.mark.e2e  # a real `emotion-ai run`, stopped by its ExampleGen
def test_run_on_a_truncated_gzip_names_the_file_and_line(tmp_path):
    """The issue's probe printed only 'Aborted!' (click's answer to gzip's EOFError): the
    ExampleGen's error comes out of the DAG as one line naming the file and where it broke."""
    import gzip

    from emotion_ai.data import generator

    generator.generate(tmp_path / "data", 40, 40, seed=3)
    cut = {}
    for name in ("keypoints", "emotion"):
        whole = gzip.compress((tmp_path / "data" / f"{name}.csv").read_bytes())
        cut[name] = tmp_path / f"{name}.csv.gz"
        cut[name].write_bytes(whole[:len(whole) // 2])
    result = cli("run", "--profile", "smoke", "--keypoints-csv", str(cut["keypoints"]), "--emotion-csv",
                 str(cut["emotion"]), "--pipeline-root", str(tmp_path / "root"), "--model-repo", str(tmp_path / "r"))
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Aborted" not in result.stderr and "Traceback" not in result.stderr
    assert any(line.startswith(f"Error: {cut[name]}: gzip data ends early (truncated or still being copied?) "
                               "after line ") for name in cut for line in result.stderr.splitlines()), result.stderr
