"""What a person sees while a run goes: a progress line per component, the full log in a file.

TFX, Beam and TensorFlow write thousands of lines per run (proto dumps, "Using Any",
C++ start-up messages), from Python and from native code. ``quiet_logs`` sends file
descriptors 1 and 2, and so all of it, to a log file under the pipeline root, and hands
back a stream on the real terminal for the progress lines and the summary.
``ComponentProgress`` turns TFX's "node X is running/finished" log records into
"[i/n] component, elapsed, ETA" lines, the ETA from the components' times in earlier runs.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

LOG_DIR = "logs"  # under the pipeline root
_NODE = re.compile(r"node (\S+) is (running|finished)\.")
_EPOCH = re.compile(r"epoch (\d+)/(\d+) done in")  # components/common/callbacks.EpochTimer
EPOCH_LINES = 5  # progress lines per training, besides its start and end


def log_path(pipeline_root: Path) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(pipeline_root) / LOG_DIR / f"run-{stamp}.log"


@contextlib.contextmanager
def quiet_logs(path: Path, verbose: bool = False) -> Iterator[TextIO]:
    """Within the block, everything written to stdout/stderr (Python and native) goes to
    ``path``; yields a stream on the original stdout for what the user should see. With
    ``verbose`` nothing is redirected and the stream is stderr."""
    if verbose:
        yield sys.stderr
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    console = os.fdopen(os.dup(1), "w", buffering=1)
    saved = os.dup(1), os.dup(2)
    with open(path, "a", buffering=1) as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
        try:
            yield console
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            console.close()


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class ComponentProgress(logging.Handler):
    """A logging handler (on the ``absl`` logger) writing one line when a component starts
    and one when it finishes: ``[i/n] name ... elapsed, ETA``; a Trainer also every fifth of
    its epochs, its remaining time then extrapolated from its epochs so far."""

    def __init__(self, total: int, expected_seconds: dict[str, float], write: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(logging.INFO)
        self.total, self.expected, self.write, self.clock = total, dict(expected_seconds), write, clock
        self.start = clock()
        self.running: dict[str, float] = {}
        self.finished: list[str] = []
        self.epochs: dict[str, tuple[int, int]] = {}  # running Trainer -> (epochs done, of)

    def eta(self) -> float | None:
        """Seconds left: the expected time of every component not finished yet (the part a
        running one has already spent deducted); None without earlier times."""
        if not self.expected:
            return None
        now = self.clock()
        left = 0.0
        for node, seconds in self.expected.items():
            if node in self.finished:
                continue
            if node in self.epochs and self.epochs[node][0]:
                done, total = self.epochs[node]
                spent = now - self.running[node]
                left += spent / done * (total - done)
            elif node in self.running:
                left += max(seconds - (now - self.running[node]), 0.0)
            else:
                left += seconds
        return left

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        epoch = _EPOCH.search(message)
        if epoch:
            self._epoch(int(epoch.group(1)), int(epoch.group(2)))
            return
        match = _NODE.search(message)
        if not match:
            return
        node, what = match.groups()
        now = self.clock()
        if what == "running":
            self.running[node] = now
            index = len(self.finished) + len(self.running)
            line = f"[{index}/{self.total}] {node} running"
        else:
            took = now - self.running.pop(node, now)
            self.epochs.pop(node, None)
            self.finished.append(node)
            line = f"[{len(self.finished)}/{self.total}] {node} done in {took:.1f} s"
        self.write(line + self._times(now))

    def _times(self, now: float) -> str:
        eta = self.eta()
        return f" (elapsed {_clock(now - self.start)}, " + (
            f"ETA {_clock(eta)})" if eta is not None else "no ETA: no earlier run)")

    def _epoch(self, done: int, total: int) -> None:
        trainers = [n for n in self.running if n.startswith("Trainer")]
        if len(trainers) != 1 or total <= 0:
            return  # which Trainer it came from is unknown
        node = trainers[0]
        self.epochs[node] = (done, total)
        step = max(1, total // EPOCH_LINES)
        if done % step == 0 and done < total:
            self.write(f"      {node} epoch {done}/{total}" + self._times(self.clock()))


def expected_seconds(pipeline_root: Path, max_runs: int = 20) -> dict[str, float]:
    """Per component, its time in the newest earlier run where it really ran (not cached)."""
    from emotion_ai.pipelines import run_summary

    try:
        store = run_summary.open_store(pipeline_root)
    except FileNotFoundError:
        return {}
    runs = sorted(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.create_time_since_epoch, reverse=True)
    found: dict[str, float] = {}
    for ctx in runs[:max_runs]:
        for component in run_summary.component_runs(store, ctx.name):
            if component.state == "complete" and component.node_id not in found:
                found[component.node_id] = component.seconds
    return found
