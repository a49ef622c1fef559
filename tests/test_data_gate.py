"""The data gate's own check: a class of the label that the training split never shows."""
from __future__ import annotations

import pandas as pd
import pytest

from emotion_ai.components import data_gate, spec
from emotion_ai.components.branches import EMOTION
from emotion_ai.components.curated_schema import source_path
from emotion_ai.pipelines import config

config.set_runtime_environment()
tfdv = pytest.importorskip("tensorflow_data_validation")


def _statistics_dir(tmp_path, labels, schema=None):
    """A StatisticsGen-like artifact folder with one ``train`` split of these labels."""
    frame = pd.DataFrame({spec.EMOTION_LABEL_COLUMN: labels, "image_brightness": [80.0] * len(labels)})
    stats = tfdv.generate_statistics_from_dataframe(frame, tfdv.StatsOptions(schema=schema))
    (tmp_path / "Split-train").mkdir(parents=True)
    (tmp_path / "Split-train" / "FeatureStats.pb").write_bytes(stats.SerializeToString())
    return str(tmp_path)


def test_a_class_missing_from_the_training_split_is_named(tmp_path):
    schema = tfdv.load_schema_text(source_path(EMOTION))
    every = _statistics_dir(tmp_path / "every", [0, 1, 2, 3, 4, 3], schema)
    some = _statistics_dir(tmp_path / "some", [0, 2, 3, 3, 0], schema)
    assert data_gate.absent_classes(every, schema, "train") == []
    assert data_gate.absent_classes(some, schema, "train") == [
        f"{spec.EMOTION_LABEL_COLUMN}: no train example of classes 1, 4 (domain 0..4): the model could not learn it"]
    assert data_gate.absent_classes(some, schema, "eval") == [], "a split that was not computed says nothing"


def test_statistics_computed_without_the_schema_are_not_read_as_a_missing_class(tmp_path):
    """Without the schema TFDV describes the label as a number: no class counts to check."""
    schema = tfdv.load_schema_text(source_path(EMOTION))
    assert data_gate.absent_classes(_statistics_dir(tmp_path, [0, 0, 2]), schema, "train") == []
