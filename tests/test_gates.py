"""The Evaluator's gates as the pipeline configures them, run by TFMA on predictions of known
quality (``tfma.analyze_raw_data``: TFMA's own metrics, slicing and validation, no model)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emotion_ai.components import spec
from emotion_ai.components.branches import EMOTION
from emotion_ai.pipelines import pipeline


def _validate(eval_config, labels, predicted, tmp_path):
    """TFMA's metrics per slice and its validation of ``eval_config`` on class predictions."""
    import tensorflow_model_analysis as tfma

    probabilities = np.eye(len(spec.EMOTION_CLASSES))[predicted] * 0.9 + 0.02
    result = tfma.analyze_raw_data(pd.DataFrame({"label": labels, "prediction": list(probabilities)}),
                                   eval_config, output_path=str(tmp_path))
    by_slice = {key: metrics[""][""] for key, metrics in result.slicing_metrics}
    return by_slice, tfma.load_validation_result(str(tmp_path))


def _on_raw_predictions(config):
    """The pipeline's config pointed at a DataFrame's columns, without the change rule (no
    baseline here); thresholds, slices and metrics stay as the pipeline made them."""
    del config.model_specs[:]
    config.model_specs.add(label_key="label", prediction_key="prediction")
    config.slicing_specs[1].feature_keys[:] = ["label"]  # the label column, as the pipeline slices it
    for metrics_spec in config.metrics_specs:
        for metric in metrics_spec.metrics:
            for per_slice in metric.per_slice_thresholds:
                per_slice.threshold.ClearField("change_threshold")
    return config


@pytest.mark.slow
@pytest.mark.parametrize("overall_only", [True, False])
def test_an_accuracy_floor_gates_the_overall_slice_not_each_class(overall_only, tmp_path):
    """A model right on 4 of 5 classes and always wrong on Disgust: overall accuracy 0.8,
    Disgust's recall (its true-class slice) 0. The pipeline's floor of 0.5 passes; the same
    threshold on every slice, as a plain ``threshold`` would apply it, fails on Disgust."""
    config = _on_raw_predictions(pipeline.eval_config(EMOTION, {"accuracy": spec.Gate(bound=0.5, max_worse=1.0)}))
    if not overall_only:
        accuracy = next(m for m in config.metrics_specs[0].metrics if '"accuracy"' in m.config)
        accuracy.threshold.CopyFrom(accuracy.per_slice_thresholds[0].threshold)
        del accuracy.per_slice_thresholds[:]
    labels = np.repeat(np.arange(len(spec.EMOTION_CLASSES)), 4)
    predicted = np.where(labels == 1, 0, labels)
    by_slice, validation = _validate(config, labels, predicted, tmp_path)
    assert by_slice[()]["accuracy"]["boundedValue"]["value"] == pytest.approx(0.8)
    assert by_slice[(("label", 1),)]["accuracy"]["boundedValue"]["value"] == 0.0
    assert validation.validation_ok is overall_only
    if not overall_only:
        failed = [s.slice_key.single_slice_keys[0].int64_value for s in validation.metric_validations_per_slice]
        assert failed == [1]
