"""TFMA metric of the expression branch: macro-averaged recall over the five classes.

Accuracy alone rewards ignoring rare Disgust; the mean of per-class recalls does not.
Named in the Evaluator's EvalConfig by class and module.
"""
from __future__ import annotations

import tensorflow as tf

from pipelines import config

N_CLASSES = len(config.EMOTION_CLASSES)


class MacroRecall(tf.keras.metrics.Metric):
    """Mean over the classes present in the labels of (correct in class / labelled class)."""

    def __init__(self, name="macro_recall", **kwargs):
        super().__init__(name=name, **kwargs)
        self.hits = self.add_weight(name="hits", shape=(N_CLASSES,), initializer="zeros", dtype=tf.float64)
        self.support = self.add_weight(name="support", shape=(N_CLASSES,), initializer="zeros", dtype=tf.float64)

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
        predicted = tf.cast(tf.argmax(tf.reshape(y_pred, [-1, N_CLASSES]), axis=-1), tf.int32)
        onehot = tf.one_hot(labels, N_CLASSES, dtype=tf.float64)
        correct = tf.cast(tf.equal(labels, predicted), tf.float64)[:, None]
        self.hits.assign_add(tf.reduce_sum(onehot * correct, axis=0))
        self.support.assign_add(tf.reduce_sum(onehot, axis=0))

    def result(self):
        present = tf.cast(self.support > 0, tf.float64)
        recalls = tf.math.divide_no_nan(self.hits, self.support)
        return tf.math.divide_no_nan(tf.reduce_sum(recalls * present), tf.reduce_sum(present))

    def reset_state(self):
        self.hits.assign(tf.zeros_like(self.hits))
        self.support.assign(tf.zeros_like(self.support))
