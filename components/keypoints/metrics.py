"""TFMA metric of the key-point branch: RMSE in pixels that honours missing key points.

TFMA's built-in MSE cannot skip missing targets; this Keras metric reads the pixel labels
(``MISSING_COORDINATE`` where unknown) and the served pixel predictions, and is named in
the Evaluator's EvalConfig by class and module.
"""
from __future__ import annotations

import tensorflow as tf

from pipelines import config


class MaskedPixelRMSE(tf.keras.metrics.Metric):
    """sqrt(mean squared error) over the coordinates whose label is known, in pixels."""

    def __init__(self, name="rmse_px", **kwargs):
        super().__init__(name=name, **kwargs)
        self.sse = self.add_weight(name="sse", initializer="zeros", dtype=tf.float64)
        self.count = self.add_weight(name="count", initializer="zeros", dtype=tf.float64)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = tf.cast(tf.reshape(y_true, [-1]), tf.float64)
        y_pred = tf.cast(tf.reshape(y_pred, [-1]), tf.float64)
        known = tf.cast(y_true > config.MISSING_COORDINATE + 0.5, tf.float64)
        self.sse.assign_add(tf.reduce_sum(tf.square(y_true - y_pred) * known))
        self.count.assign_add(tf.reduce_sum(known))

    def result(self):
        return tf.sqrt(tf.math.divide_no_nan(self.sse, self.count))
