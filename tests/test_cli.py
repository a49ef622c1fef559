"""The ``emotion-ai`` command line: clear one-line errors for unusable inputs."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

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


def _cli(*args, timeout=600):
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "emotion_ai.pipelines.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.e2e
def test_a_manual_run_on_a_beam_worker_pool_is_quiet_shows_progress_is_recorded_and_holds_the_lock(
        tiny_data, tmp_path, beam_worker_pool):
    """`emotion-ai run` as a person sees it: progress lines and the summary on the console,
    the thousands of TFX/Beam/TensorFlow lines in a log file; the run is in `runs`; and a
    second run while the lock is held fails at once with one line.

    Its Beam work goes through `--beam-arg` to a worker pool in another process
    (PortableRunner, EXTERNAL environment), as on Flink or Spark: each Beam job of the run
    (ExampleGen, StatisticsGen, Transform, the Evaluators with their custom metrics) runs in
    a worker that imports the project's modules itself."""
    import shutil

    from filelock import FileLock

    from emotion_ai.pipelines import scheduler

    data, root = tmp_path / "data", tmp_path / "root"
    shutil.copytree(tiny_data["dir"], data)
    done = _cli("run", "--profile", "smoke", "--data-dir", str(data), "--pipeline-root", str(root),
                "--model-repo", str(tmp_path / "repo"), *(f"--beam-arg={a}" for a in beam_worker_pool["args"]),
                timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    workers = beam_worker_pool["log"].read_text().count("starting worker")
    # one worker per Beam job: 2 ExampleGens, 2 StatisticsGens, 2 Transforms, 2 Evaluators
    assert workers >= 8, beam_worker_pool["log"].read_text()[-3000:]
    console = done.stdout.splitlines() + done.stderr.splitlines()
    assert len(console) < 150, "\n".join(console)
    assert any(line.startswith("[20/20] TrackRun done") for line in console)
    assert any("Trainer_keypoints done in" in line for line in console)
    assert "gate: BLESSED (Evaluator on the test split" in done.stdout
    logs = list((root / "logs").glob("run-*.log"))
    assert len(logs) == 1 and len(logs[0].read_text().splitlines()) > 10 * len(console)
    history = scheduler.read_history(root)
    assert [(e["trigger"], e["status"], e["profile"]) for e in history] == [("manual", "succeeded", "smoke")]
    listing = _cli("runs", "--pipeline-root", str(root), timeout=60)
    assert "manual" in listing.stdout and "succeeded" in listing.stdout and "keypoints:BP" in listing.stdout

    with FileLock(str(root / scheduler.LOCK_FILE)):  # as a scheduled run would hold it
        busy = _cli("run", "--profile", "smoke", "--data-dir", str(data), "--pipeline-root", str(root),
                    "--model-repo", str(tmp_path / "repo"), timeout=60)
    assert busy.returncode == 1
    assert "Error: another run is going in" in busy.stderr and "Traceback" not in busy.stderr
    assert [e["status"] for e in scheduler.read_history(root)] == ["succeeded", "skipped"]


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
        result = _cli(*args, timeout=60)
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
