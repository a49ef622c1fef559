"""Progress lines from TFX's log records: component i of n, elapsed time, ETA."""
from __future__ import annotations

import logging

from emotion_ai.pipelines.console import ComponentProgress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("absl", logging.INFO, __file__, 1, message, None, None)


def test_progress_lines_count_components_and_the_eta_uses_earlier_times_and_epochs():
    clock, lines = Clock(), []
    progress = ComponentProgress(3, {"A": 10.0, "Trainer_x": 100.0, "C": 5.0}, lines.append, clock)
    progress.emit(_record("node A is running."))
    assert lines[-1] == "[1/3] A running (elapsed 0:00, ETA 1:55)"
    clock.now = 4.0
    progress.emit(_record("node A is finished."))
    assert lines[-1] == "[1/3] A done in 4.0 s (elapsed 0:04, ETA 1:45)"
    progress.emit(_record("node Trainer_x is running."))
    clock.now = 64.0  # 60 s of training for 2 of 10 epochs: 240 s left, not the 40 s the last run suggests
    progress.emit(_record("epoch 2/10 done in 30.0 s"))
    assert lines[-1] == "      Trainer_x epoch 2/10 (elapsed 1:04, ETA 4:05)"
    progress.emit(_record("epoch 3/10 done in 30.0 s"))  # not a fifth: no line
    assert len(lines) == 4
    progress.emit(_record("some other log line"))
    clock.now = 100.0
    progress.emit(_record("node Trainer_x is finished."))
    assert lines[-1] == "[2/3] Trainer_x done in 96.0 s (elapsed 1:40, ETA 0:05)"


def test_without_earlier_runs_there_is_no_eta():
    lines = []
    progress = ComponentProgress(1, {}, lines.append, Clock())
    progress.emit(_record("node A is running."))
    assert lines == ["[1/1] A running (elapsed 0:00, no ETA: no earlier run)"]
