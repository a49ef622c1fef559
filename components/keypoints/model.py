"""The key-point network: a residual CNN regressing 30 normalized coordinates."""
from __future__ import annotations

import tensorflow as tf

from components.common.resnet import residual_network
from pipelines import config

N_OUTPUTS = len(config.KEYPOINT_COLUMNS)


def build(params: config.ModelParams) -> tf.keras.Model:
    """Input: standardized image ``[batch, 96*96]``; output: normalized coordinates ``[batch, 30]``."""
    return residual_network(config.KEYPOINT_IMAGE_SIZE, tf.keras.layers.Dense(N_OUTPUTS, name="coordinates"),
                            "keypoint_resnet", params)


def masked_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Huber loss over the known coordinates only.

    ``y_true`` is ``[targets(30), mask(30)]``: a missing key point contributes nothing,
    so rows with partial labels still teach the points they do have.
    """
    target, mask = y_true[:, :N_OUTPUTS], y_true[:, N_OUTPUTS:]
    err = tf.keras.losses.huber(target[..., None], y_pred[..., None], delta=0.05)
    return tf.reduce_sum(err * mask, axis=-1) / tf.maximum(tf.reduce_sum(mask, axis=-1), 1.0)


class TrainingPixelRMSE(tf.keras.metrics.Metric):
    """RMSE in pixels over known coordinates, on the training encoding ``[targets, mask]``."""

    def __init__(self, name="rmse_px", **kwargs):
        super().__init__(name=name, **kwargs)
        self.sse = self.add_weight(name="sse", initializer="zeros")
        self.count = self.add_weight(name="count", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        target, mask = y_true[:, :N_OUTPUTS], y_true[:, N_OUTPUTS:]
        half = (config.KEYPOINT_IMAGE_SIZE - 1) / 2.0
        self.sse.assign_add(tf.reduce_sum(tf.square((target - y_pred) * half) * mask))
        self.count.assign_add(tf.reduce_sum(mask))

    def result(self):
        return tf.sqrt(tf.math.divide_no_nan(self.sse, self.count))
