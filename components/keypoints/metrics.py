"""Key-point metrics, defined once: RMSE in pixels over the known coordinates (Kaggle's metric).

Used by the Trainer (``TrainingPixelRMSE``, on the training encoding), by the Evaluator
(``MaskedPixelRMSE``, named in the EvalConfig by class and module), and, as numpy, by
``emotion-ai evaluate`` and the report (``keypoint_metrics``, ``rmse_per_row``). TFMA's
built-in MSE cannot skip missing targets; all of these do: a coordinate whose label is
``MISSING_COORDINATE`` counts nowhere.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from emotion_ai.components import spec

N_POINTS = len(spec.KEYPOINT_NAMES)
N_COORDINATES = len(spec.KEYPOINT_COLUMNS)


def known(truth: np.ndarray) -> np.ndarray:
    """Where a pixel label holds a coordinate (not ``MISSING_COORDINATE``)."""
    return truth > spec.MISSING_COORDINATE + 0.5


def rmse_per_row(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Each face's RMSE over its known coordinates, in pixels."""
    mask = known(truth)
    return np.sqrt((np.where(mask, pred - truth, 0.0) ** 2).sum(1) / np.maximum(mask.sum(1), 1))


def keypoint_metrics(truth: np.ndarray, pred: np.ndarray) -> dict:
    """RMSE over known coordinates, per point, and the mean distance of fully labelled points."""
    mask = known(truth)
    err = np.where(mask, pred - truth, 0.0)
    per_point = {}
    for i, name in enumerate(spec.KEYPOINT_NAMES):
        k = mask[:, 2 * i:2 * i + 2]
        per_point[name] = float(np.sqrt((err[:, 2 * i:2 * i + 2] ** 2).sum() / k.sum())) if k.any() else None
    both = mask.reshape(-1, N_POINTS, 2).all(-1)
    dist = np.sqrt((err.reshape(-1, N_POINTS, 2) ** 2).sum(-1))[both]
    return {
        "rmse_px": float(np.sqrt((err ** 2).sum() / max(mask.sum(), 1))),
        "per_point_rmse_px": per_point,
        "mean_point_error_px": float(dist.mean()) if dist.size else None,
        "coordinates_scored": int(mask.sum()),
    }


def summarize(truth: np.ndarray, outputs: dict[str, np.ndarray]) -> dict:
    """``keypoint_metrics`` of the served outputs against pixel labels (``formats.truth``)."""
    pred = outputs.get(spec.KEYPOINTS_OUTPUT, np.zeros((0, N_COORDINATES)))
    return keypoint_metrics(truth, pred)


def summary_lines(result: dict) -> list[str]:
    """``summarize``'s result for a terminal."""
    lines = [f"  RMSE {result['rmse_px']:.3f} px   mean point error "
             f"{result['mean_point_error_px'] or float('nan'):.3f} px"]
    lines += [f"    {name:<26} {'n/a' if v is None else f'{v:.3f}'}" for name, v in result["per_point_rmse_px"].items()]
    return lines


class MaskedPixelRMSE(tf.keras.metrics.Metric):
    """sqrt(mean squared error) over the known coordinates, in pixels, from pixel labels
    (``MISSING_COORDINATE`` where unknown) and pixel predictions: the Evaluator's metric."""

    def __init__(self, name="rmse_px", **kwargs):
        super().__init__(name=name, **kwargs)
        self.sse = self.add_weight(name="sse", initializer="zeros", dtype=tf.float64)
        self.count = self.add_weight(name="count", initializer="zeros", dtype=tf.float64)

    def errors(self, y_true, y_pred) -> tuple[tf.Tensor, tf.Tensor]:
        """``(error in pixels, 1 where known)``, both float64."""
        y_true = tf.cast(tf.reshape(y_true, [-1]), tf.float64)
        y_pred = tf.cast(tf.reshape(y_pred, [-1]), tf.float64)
        return y_pred - y_true, tf.cast(y_true > spec.MISSING_COORDINATE + 0.5, tf.float64)

    def update_state(self, y_true, y_pred, sample_weight=None):
        err, mask = self.errors(y_true, y_pred)
        self.sse.assign_add(tf.reduce_sum(tf.square(err) * mask))
        self.count.assign_add(tf.reduce_sum(mask))

    def result(self):
        return tf.sqrt(tf.math.divide_no_nan(self.sse, self.count))


class TrainingPixelRMSE(MaskedPixelRMSE):
    """The same RMSE on the training encoding: ``y_true`` is ``[targets, mask]`` with targets
    normalized to [-1, 1] across the image (what the Trainer monitors to pick its epoch)."""

    def errors(self, y_true, y_pred) -> tuple[tf.Tensor, tf.Tensor]:
        target, mask = y_true[:, :N_COORDINATES], y_true[:, N_COORDINATES:]
        half = (spec.KEYPOINT_IMAGE_SIZE - 1) / 2.0
        return tf.cast((y_pred - target) * half, tf.float64), tf.cast(mask, tf.float64)
