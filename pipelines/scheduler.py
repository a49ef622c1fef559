"""Scheduled local runs: ``emotion-ai schedule --cron EXPR``, and the lock and run history
that every local run, manual (``emotion-ai run``) or scheduled, goes through (``runs``).

* Ticks come from a cron expression (croniter; a 6th field is seconds).
* Never two runs at once: each run holds an OS file lock under the pipeline root (released
  by the kernel if the holder dies), so a tick that finds a run going, from this scheduler
  or another process, is skipped and recorded.
* Every tick appends one JSON line to ``<pipeline root>/run_history.jsonl``: start, end,
  status (succeeded, failed, skipped, aborted), models blessed/pushed, report path, error.
  A failed run is recorded and the scheduler goes on.
* Each scheduled run runs in a child process of its own (``isolated``: a fresh interpreter,
  its own process group), so TensorFlow/Beam state never carries from one run to the next
  and a native crash (a segfault, an abort, the OOM killer) ends that run, not the scheduler.
  The history records how each run ended (``exit``: ok, exception, killed by signal ...).
* SIGINT/SIGTERM: the current run is allowed to finish, then the scheduler exits; a second
  signal aborts at once (the run's process group is killed; recorded as aborted).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import multiprocessing
import os
import signal
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

from croniter import croniter
from filelock import FileLock, Timeout

from emotion_ai.components import credentials

log = logging.getLogger("emotion_ai.scheduler")
HISTORY_FILE = "run_history.jsonl"
LOCK_FILE = ".run.lock"


def _now() -> dt.datetime:
    return dt.datetime.now().astimezone()


def history_path(pipeline_root: Path) -> Path:
    return Path(pipeline_root) / HISTORY_FILE


def append_history(pipeline_root: Path, record: dict) -> None:
    """Append ``record`` as one whole line: one ``write`` in append mode, then ``fsync``, so
    a crash loses at most this line, never glues two together. If an earlier writer died
    mid-line, this one starts on a new line (the torn line is then reported and skipped)."""
    path = history_path(pipeline_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record).encode() + b"\n"
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


REQUIRED_KEYS = ("start", "status")


def history_entries(pipeline_root: Path) -> tuple[list[dict], list[str]]:
    """``(records, problems)``: every whole record of the history, and for every line that
    is not one (torn by a crash, edited by hand), ``"line N: why"``."""
    path = history_path(pipeline_root)
    if not path.exists():
        return [], []
    entries, problems = [], []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw)
            except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
                problems.append(f"line {number}: not a whole JSON record ({error})")
                continue
            missing = [k for k in REQUIRED_KEYS if not isinstance(entry, dict) or k not in entry]
            if missing:
                problems.append(f"line {number}: record lacks {', '.join(missing)}")
                continue
            entries.append(entry)
    return entries, problems


def read_history(pipeline_root: Path) -> list[dict]:
    """The whole records of the history; each broken line is logged once and skipped."""
    entries, problems = history_entries(pipeline_root)
    for problem in problems:
        log.warning("%s %s: skipped", history_path(pipeline_root), problem)
    return entries


class RunBusyError(RuntimeError):
    """Another run holds the pipeline root's lock."""


class ChildRunError(RuntimeError):
    """A run in a child process failed; ``exit`` says how it ended."""

    def __init__(self, message: str, exit: str):  # noqa: A002 - the history's field
        super().__init__(message)
        self.exit = exit


_children: set[multiprocessing.process.BaseProcess] = set()  # runs going now, killed on a second signal


def _child_main(run: Callable[[], object], sender) -> None:
    os.setpgrp()  # a terminal's Ctrl-C reaches the scheduler, which decides; a kill reaches the run's helpers
    try:
        fields = describe(run())
    except BaseException as exc:  # noqa: BLE001 - reported to the scheduler, then this process exits 1
        sender.send(("error", credentials.redact(f"{type(exc).__name__}: {exc}"),
                     credentials.redact(traceback.format_exc())))
        raise SystemExit(1) from None
    sender.send(("ok", fields))


def isolated(run: Callable[[], object]) -> Callable[[], dict]:
    """``run`` (picklable: a module-level function or a ``functools.partial`` of one) made to
    run in a fresh Python process (``spawn``) in its own process group. The returned callable
    returns the run's history fields, or raises ``ChildRunError`` saying how it ended."""
    def in_child() -> dict:
        context = multiprocessing.get_context("spawn")
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=_child_main, args=(run, sender), name="emotion-ai-run", daemon=False)
        process.start()
        sender.close()
        _children.add(process)
        message = None
        try:
            while message is None and (process.is_alive() or receiver.poll()):
                try:
                    if receiver.poll(0.5):
                        message = receiver.recv()
                except EOFError:  # the child died without a word
                    break
            process.join()
        finally:
            _children.discard(process)
            receiver.close()
        if message is not None and message[0] == "ok":
            return message[1]
        if message is not None:
            log.error("run failed in its process (pid %d): %s\n%s", process.pid, message[1], message[2])
            raise ChildRunError(message[1], "exception")
        code = process.exitcode
        how = f"killed by signal {signal.Signals(-code).name}" if code is not None and code < 0 \
            else f"exit code {code}"
        raise ChildRunError(f"the run's process (pid {process.pid}) ended without a result: {how}", how)

    return in_child


def _kill_children() -> None:
    for process in list(_children):
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the run and whatever it started (Beam workers)
        except (ProcessLookupError, PermissionError):
            pass


def run_locked(pipeline_root: Path, run: Callable[[], object], trigger: str = "schedule",
               raise_errors: bool = False) -> dict:
    """Run ``run()`` under the pipeline root's lock; return (and record) its history entry.

    Scheduled ticks (``raise_errors=False``) record a busy lock as skipped and a failure as
    failed, and go on; a manual run records the same, then raises ``RunBusyError`` or the
    run's own error for its caller to report.
    """
    record = {"start": _now().isoformat(timespec="seconds"), "trigger": trigger}
    Path(pipeline_root).mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(Path(pipeline_root) / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        record.update(status="skipped", end=record["start"], error="a run is still going")
        log.warning("%s run at %s skipped: a run is still going in %s", trigger, record["start"], pipeline_root)
        append_history(pipeline_root, record)
        if raise_errors:
            raise RunBusyError(f"another run is going in {pipeline_root} (lock {Path(pipeline_root) / LOCK_FILE}); "
                               "wait for it or use another --pipeline-root") from None
        return record
    error = None
    try:
        result = run()
        record.update(status="succeeded", exit="ok", **describe(result))
    except BaseException as exc:  # noqa: BLE001 - recorded, and the scheduler goes on
        error = exc
        record.update(status="aborted" if isinstance(exc, KeyboardInterrupt) else "failed",
                      exit=getattr(exc, "exit", "interrupted" if isinstance(exc, KeyboardInterrupt) else "exception"),
                      error=credentials.redact(str(exc) if isinstance(exc, ChildRunError)
                                               else f"{type(exc).__name__}: {exc}"))
        if not raise_errors:
            log.error("run failed: %s\n%s", exc, credentials.redact(traceback.format_exc()))
    finally:
        record["end"] = _now().isoformat(timespec="seconds")
        lock.release()
        append_history(pipeline_root, record)
    if error is not None and raise_errors:
        raise error
    return record


def describe(result) -> dict:
    if isinstance(result, dict):  # already described, by a run in a child process
        return result
    summary = getattr(result, "summary", None)
    if summary is None:
        return {}
    context = getattr(result, "context", None)
    return {
        "run_id": summary.run_id,
        "profile": context.profile if context else None,
        "report": str(result.report_path) if getattr(result, "report_path", None) else None,
        "models": {name: {"blessed": b.blessed, "pushed": bool(b.pushed and not b.identical_to_version),
                          "version": b.pushed_version or b.identical_to_version,
                          "spans": [s["name"] for s in b.spans], "spans_left_out": b.spans_left_out,
                          "anomalies": sum(len(v) for v in b.anomalies.values()),
                          "drift": b.drifted,
                          **({"not_trained": b.not_trained} if b.not_trained else {})}
                   for name, b in summary.branches.items()},
    }


def schedule(cron: str, pipeline_root: Path, run: Callable[[], object], max_runs: int | None = None,
             stop: threading.Event | None = None, isolate: bool = True) -> list[dict]:
    """Tick on ``cron`` until stopped (or ``max_runs`` runs have finished); return this
    scheduler's history entries. Each run runs in a child process (``isolated``; ``run``
    must then be picklable) unless ``isolate`` is False."""
    if not croniter.is_valid(cron):
        raise ValueError(f"invalid cron expression: {cron!r}")
    run = isolated(run) if isolate else run
    stop = stop or threading.Event()
    entries: list[dict] = []
    worker: threading.Thread | None = None
    signals = {"count": 0}

    def on_signal(signum, _frame):
        signals["count"] += 1
        if signals["count"] > 1:
            log.error("second signal: aborting now")
            _kill_children()
            append_history(pipeline_root, {"start": _now().isoformat(timespec="seconds"), "status": "aborted",
                                           "end": _now().isoformat(timespec="seconds"), "error": "second signal",
                                           "exit": "killed by the scheduler"})
            os._exit(130)
        log.warning("signal %s: finishing the current run, then stopping", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

    def finished() -> int:
        return sum(1 for e in entries if e["status"] in ("succeeded", "failed"))

    ticks = croniter(cron, _now())
    log.info("scheduler started: %s", cron)
    while not stop.is_set() and (max_runs is None or finished() < max_runs):
        next_tick = ticks.get_next(dt.datetime)
        if stop.wait(max(0.0, (next_tick - _now()).total_seconds())):
            break
        if max_runs is not None and finished() + (1 if worker and worker.is_alive() else 0) >= max_runs:
            continue
        if worker and worker.is_alive():
            entries.append(run_locked(pipeline_root, run))  # lock held by the worker: recorded as skipped
            continue
        worker = threading.Thread(target=lambda: entries.append(run_locked(pipeline_root, run)), daemon=True)
        worker.start()
        log.info("tick %s: run started", next_tick.isoformat(timespec="seconds"))
    if worker and worker.is_alive():
        log.info("waiting for the current run to finish")
        worker.join()
    return entries
