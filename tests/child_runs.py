"""Runs for the scheduler's child processes in tests: a module importing nothing heavy, so
a spawned child starts in well under a second (the test modules import TensorFlow)."""
from __future__ import annotations

import os
from pathlib import Path


def crash_on_first_call(marker: Path) -> dict:
    """The first call dies natively (SIGABRT, as a crash in TensorFlow's C++ would); the
    next one succeeds."""
    if not marker.exists():
        marker.write_text("crashed once")
        os.abort()
    return {"run_id": "after-the-crash", "pid": os.getpid()}


def raise_in_child(message: str) -> dict:
    raise RuntimeError(message)
