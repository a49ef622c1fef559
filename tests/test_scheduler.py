"""Scheduled runs: cron ticks, no overlap (a busy tick is skipped), history, failures recorded."""
from __future__ import annotations

import datetime as dt
import functools
import os
import time

import child_runs
import pytest

from emotion_ai.pipelines import config, local_runner, scheduler


@pytest.mark.e2e
@pytest.mark.heaviest
def test_two_smoke_runs_on_second_ticks_never_overlap_and_are_recorded(first_run, run_copy):
    """Two scheduled runs of the whole pipeline on (a copy of) the first runs' root and data:
    nothing new to push, but each is a run of its own (its own report) and a tick that falls
    during a run is skipped."""
    own = run_copy("scheduled")
    run = functools.partial(local_runner.run, config.PROFILES["smoke"], own["root"], own["repo"],
                            own["data"])  # each run in a child process of its own, as `schedule` runs them

    earlier = len(scheduler.read_history(own["root"]))  # the session's first run's
    entries = scheduler.schedule("* * * * * */5", own["root"], run, max_runs=2)
    history = scheduler.read_history(own["root"])[earlier:]
    assert history == entries
    done = [e for e in history if e["status"] == "succeeded"]
    assert len(done) == 2 and all(e["exit"] == "ok" for e in done)
    assert any(e["status"] == "skipped" for e in history), "a tick during a run is skipped"
    first, second = (dt.datetime.fromisoformat(e["start"]) for e in done)
    assert dt.datetime.fromisoformat(done[0]["end"]) <= second, "runs do not overlap"
    for entry in done:  # unchanged data: nothing new; the history names the spans and the findings
        for name, b in first_run.summary.branches.items():
            assert entry["models"][name] == {"blessed": True, "pushed": False, "version": b.pushed_version,
                                             "spans": ["(no span folder)"], "spans_left_out": [],
                                             "anomalies": 0, "drift": []}
        assert entry["report"].endswith("report.html") and entry["profile"] == "smoke"
    assert len({e["run_id"] for e in done} | {first_run.summary.run_id}) == 3
    assert done[0]["report"] != done[1]["report"] != str(first_run.report_path)


def test_a_failing_run_is_recorded_and_the_scheduler_goes_on(tmp_path):
    calls = []

    def run():
        calls.append(time.time())
        if len(calls) == 1:
            raise RuntimeError("data went missing")
        return None

    entries = scheduler.schedule("* * * * * *", tmp_path, run, max_runs=2, isolate=False)
    assert [e["status"] for e in entries] == ["failed", "succeeded"]
    assert "RuntimeError: data went missing" in entries[0]["error"] and entries[0]["exit"] == "exception"


@pytest.mark.slow
def test_a_run_that_crashes_natively_ends_its_process_not_the_scheduler(tmp_path):
    """Each scheduled run is a child process: an abort is recorded with its signal, and the
    next tick runs in a fresh process; an exception in the child is recorded with its text."""
    entries = scheduler.schedule("* * * * * */2", tmp_path,
                                 functools.partial(child_runs.crash_on_first_call, tmp_path / "m"), max_runs=2)
    entries = [e for e in entries if e["status"] != "skipped"]  # a tick while a child starts up
    assert [e["status"] for e in entries] == ["failed", "succeeded"]
    assert entries[0]["exit"] == "killed by signal SIGABRT" and "ended without a result" in entries[0]["error"]
    assert entries[1]["exit"] == "ok" and entries[1]["run_id"] == "after-the-crash"
    assert entries[1]["pid"] != os.getpid(), "the run ran in a child process"
    assert [e for e in scheduler.read_history(tmp_path) if e["status"] != "skipped"] == entries

    entries = scheduler.schedule("* * * * * */2", tmp_path, functools.partial(child_runs.raise_in_child, "no data"),
                                 max_runs=1)
    entries = [e for e in entries if e["status"] != "skipped"]
    assert entries[0]["exit"] == "exception" and entries[0]["error"] == "RuntimeError: no data"


def test_a_run_held_by_another_process_skips_the_tick(tmp_path):
    from filelock import FileLock

    with FileLock(str(tmp_path / scheduler.LOCK_FILE)):  # as another process's run would hold it
        entry = scheduler.run_locked(tmp_path, lambda: pytest.fail("must not run"))
    assert entry["status"] == "skipped"


def test_invalid_cron_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="invalid cron expression"):
        scheduler.schedule("every day", tmp_path, lambda: None, max_runs=1)
