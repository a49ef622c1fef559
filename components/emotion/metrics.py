"""Expression metrics, defined once: the Evaluator's macro-averaged recall (``MacroRecall``,
named in the EvalConfig by class and module) and, with scikit-learn, the per-class summary
``emotion-ai evaluate`` and the report show (``classification_metrics``).

Accuracy alone rewards ignoring rare Disgust; the mean of per-class recalls does not.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from emotion_ai.components import spec

N_CLASSES = len(spec.EMOTION_CLASSES)


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


def classification_metrics(truth: np.ndarray, pred: np.ndarray) -> dict:
    """Accuracy, macro F1 (over the classes that occur), per-class precision/recall/F1/support,
    confusion matrix (scikit-learn; a class never predicted has precision 0)."""
    from sklearn import metrics  # only evaluate and the report need it, not the Evaluator's workers

    labels = list(range(N_CLASSES))
    cm = metrics.confusion_matrix(truth, pred, labels=labels) if len(truth) else np.zeros((N_CLASSES,) * 2, int)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        truth, pred, labels=labels, zero_division=0) if len(truth) else np.zeros((4, N_CLASSES))
    per_class = {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                        "support": int(support[i])} for i, name in enumerate(spec.EMOTION_CLASSES)}
    occurring = [i for i in labels if support[i]]
    return {
        "accuracy": float(metrics.accuracy_score(truth, pred)) if len(truth) else 0.0,
        "macro_f1": float(np.mean(f1[occurring])) if occurring else 0.0,
        "per_class": per_class,
        "confusion_matrix": {"labels": list(spec.EMOTION_CLASSES), "rows_true_columns_predicted": cm.tolist()},
    }


def summarize(truth: np.ndarray, outputs: dict[str, np.ndarray]) -> dict:
    """``classification_metrics`` of the served outputs' most probable class against the labels."""
    probabilities = outputs.get(spec.EMOTION_OUTPUT, np.zeros((0, N_CLASSES)))
    return classification_metrics(truth, probabilities.argmax(-1))


def summary_lines(result: dict) -> list[str]:
    """``summarize``'s result for a terminal."""
    lines = [f"  accuracy {result['accuracy']:.4f}   macro F1 {result['macro_f1']:.4f}",
             f"    {'class':<10} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}"]
    lines += [f"    {name:<10} {v['precision']:9.3f} {v['recall']:7.3f} {v['f1']:6.3f} {v['support']:8d}"
              for name, v in result["per_class"].items()]
    return lines
