"""Shared fixtures: tiny generated datasets and one session-wide pipeline run."""
from __future__ import annotations

import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quieter than the CLI's default

import pytest  # noqa: E402

from emotion_ai.data import generator  # noqa: E402
from emotion_ai.pipelines import config  # noqa: E402

config.set_runtime_environment()  # before any test imports TensorFlow

TINY_KEYPOINT_ROWS = 80
TINY_EMOTION_ROWS = 120


E2E_FIXTURES = {"first_run", "workspace"}  # a test using these runs (or serves) the whole pipeline


def pytest_collection_modifyitems(items):
    """Every test is ``unit`` or ``e2e``: ``e2e`` when it is marked so or uses a pipeline run
    (``pytest -m unit`` then runs in about a minute and a half)."""
    for item in items:
        if item.get_closest_marker("e2e") is None and E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
        if item.get_closest_marker("e2e") is None:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Generated key-point and expression CSVs (seed 0), small enough for 1-epoch runs."""
    out = tmp_path_factory.mktemp("data")
    keypoints, emotion = generator.generate(out, TINY_KEYPOINT_ROWS, TINY_EMOTION_ROWS, seed=0)
    return {"dir": out, "keypoints": keypoints, "emotion": emotion}


@pytest.fixture(scope="session")
def workspace(tiny_data, tmp_path_factory):
    """Tiny data plus a file of malformed rows, a pipeline root and a model repository."""
    root = tmp_path_factory.mktemp("pipeline")
    data_dir = root / "data"
    shutil.copytree(tiny_data["dir"], data_dir)
    pixels = " ".join(["5"] * 48 * 48)
    (data_dir / "emotion_extra.csv").write_text(
        f"emotion,pixels\n1,{pixels}\n7,{pixels}\n2,1 2 3\n")  # line 3: bad label; line 4: short image
    return {"data": data_dir, "root": root / "root", "repo": root / "repo"}


@pytest.fixture(scope="session")
def first_run(workspace):
    """One smoke-profile run of the whole pipeline; its pushed models serve the serving tests."""
    from emotion_ai.pipelines import config, local_runner

    return local_runner.run(config.PROFILES["smoke"], workspace["root"], workspace["repo"], workspace["data"])
