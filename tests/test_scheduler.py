"""Scheduled runs: cron ticks, no overlap (a busy tick is skipped), history, failures recorded."""
from __future__ import annotations

import datetime as dt
import shutil
import time

import pytest

from emotion_ai.pipelines import config, local_runner, scheduler


@pytest.mark.e2e
def test_two_smoke_runs_on_second_ticks_never_overlap_and_are_recorded(tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data["dir"], data)
    root, repo = tmp_path / "root", tmp_path / "repo"

    def run():
        return local_runner.run(config.PROFILES["smoke"], root, repo, data)

    entries = scheduler.schedule("* * * * * */5", root, run, max_runs=2)
    history = scheduler.read_history(root)
    assert history == entries
    done = [e for e in history if e["status"] == "succeeded"]
    assert len(done) == 2
    assert any(e["status"] == "skipped" for e in history), "a tick during a run is skipped"
    first, second = (dt.datetime.fromisoformat(e["start"]) for e in done)
    assert dt.datetime.fromisoformat(done[0]["end"]) <= second, "runs do not overlap"
    assert done[0]["models"]["emotion"]["pushed"] is True
    assert done[1]["models"]["emotion"]["pushed"] is False  # unchanged data: nothing new
    assert done[1]["report"].endswith("report.html")


def test_a_failing_run_is_recorded_and_the_scheduler_goes_on(tmp_path):
    calls = []

    def run():
        calls.append(time.time())
        if len(calls) == 1:
            raise RuntimeError("data went missing")
        return None

    entries = scheduler.schedule("* * * * * *", tmp_path, run, max_runs=2)
    assert [e["status"] for e in entries] == ["failed", "succeeded"]
    assert "RuntimeError: data went missing" in entries[0]["error"]


def test_a_run_held_by_another_process_skips_the_tick(tmp_path):
    from filelock import FileLock

    with FileLock(str(tmp_path / scheduler.LOCK_FILE)):  # as another process's run would hold it
        entry = scheduler.run_locked(tmp_path, lambda: pytest.fail("must not run"))
    assert entry["status"] == "skipped"


def test_invalid_cron_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="invalid cron expression"):
        scheduler.schedule("every day", tmp_path, lambda: None, max_runs=1)
