"""Shared fixtures: tiny generated datasets and one session-wide pipeline run."""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from data import generator  # noqa: E402

TINY_KEYPOINT_ROWS = 80
TINY_EMOTION_ROWS = 120


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Generated key-point and expression CSVs (seed 0), small enough for 1-epoch runs."""
    out = tmp_path_factory.mktemp("data")
    keypoints, emotion = generator.generate(out, TINY_KEYPOINT_ROWS, TINY_EMOTION_ROWS, seed=0)
    return {"dir": out, "keypoints": keypoints, "emotion": emotion}
