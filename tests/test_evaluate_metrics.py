"""The evaluate command's metrics, on hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from emotion_ai.components import spec
from emotion_ai.components.emotion.metrics import classification_metrics
from emotion_ai.components.keypoints.metrics import keypoint_metrics, rmse_per_row


def test_keypoint_rmse_skips_missing_coordinates():
    truth = np.full((2, 30), 50.0)
    pred = truth.copy()
    pred[0, 0] += 3.0  # left_eye_center_x off by 3
    pred[0, 1] += 4.0  # left_eye_center_y off by 4
    truth[1, 2:] = spec.MISSING_COORDINATE  # second row labels only the left eye centre
    pred[1, 2:] = 0.0  # wildly wrong, but unlabelled: must not count
    m = keypoint_metrics(truth, pred)
    assert m["coordinates_scored"] == 32
    assert m["rmse_px"] == pytest.approx(np.sqrt((9 + 16) / 32))
    assert m["per_point_rmse_px"]["left_eye_center"] == pytest.approx(np.sqrt(25 / 4))
    assert m["per_point_rmse_px"]["nose_tip"] == 0.0
    # Mean distance over fully labelled points: 16 points, one of them 5 px off.
    assert m["mean_point_error_px"] == pytest.approx(5 / 16)
    assert rmse_per_row(truth, pred) == pytest.approx([np.sqrt(25 / 30), 0.0])


def test_emotion_metrics_per_class_and_confusion():
    truth = np.array([0, 0, 1, 3, 3, 3])
    pred = np.array([0, 3, 1, 3, 3, 0])
    m = classification_metrics(truth, pred)
    assert m["accuracy"] == pytest.approx(4 / 6)
    cm = np.array(m["confusion_matrix"]["rows_true_columns_predicted"])
    assert cm[0, 3] == 1 and cm[3, 0] == 1 and cm.sum() == 6
    assert m["per_class"]["Angry"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert m["per_class"]["Happy"]["recall"] == pytest.approx(2 / 3)
    # Macro F1 over the classes that occur (Angry, Disgust, Happy).
    assert m["macro_f1"] == pytest.approx((0.5 + 1.0 + 2 / 3) / 3)
