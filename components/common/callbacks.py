"""What a Trainer logs and keeps while it fits: step timings, epoch progress (the CLI's
progress lines read it), the best eval epoch's weights, BatchNorm statistics re-estimated
on clean images."""
from __future__ import annotations

import contextlib
import math
import time

import tensorflow as tf
from absl import logging


@contextlib.contextmanager
def timed(what: str):
    """Log how long a Trainer step took (not every runner's log has timestamps)."""
    start = time.time()
    yield
    logging.info("%s took %.1f s", what, time.time() - start)


class BestWeights(tf.keras.callbacks.Callback):
    """Keep the weights of the best epoch on the eval split and restore them at the end
    (Keras' EarlyStopping only restores when it stops early). With ``bar`` (an eval figure
    the weights the model starts with already reached), an epoch must beat it, or those
    weights come back."""

    def __init__(self, monitor: str, mode: str, bar: float | None = None):
        super().__init__()
        self.monitor, self.sign = monitor, (1.0 if mode == "min" else -1.0)
        self.bar = bar
        self.best, self.best_epoch, self.weights = math.inf, None, None

    def on_train_begin(self, logs=None):
        if self.bar is not None:
            self.best, self.weights = self.sign * self.bar, self.model.get_weights()

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and self.sign * value < self.best:
            self.best, self.best_epoch, self.weights = self.sign * value, epoch, self.model.get_weights()

    def on_train_end(self, logs=None):
        if self.weights is None:
            return
        self.model.set_weights(self.weights)
        if self.best_epoch is None:
            logging.info("no epoch beat %s %.4f: restored the weights it started with", self.monitor, self.bar)
        else:
            logging.info("restored the weights of epoch %d (%s %.4f)", self.best_epoch + 1, self.monitor,
                         self.sign * self.best)


class EpochTimer(tf.keras.callbacks.Callback):
    """Adds ``epoch_seconds`` (training and eval), ``images_per_second`` (training images /
    epoch seconds) and ``train_images_per_second`` (training images / the seconds of the
    training steps alone, what ``reference_rate`` compares with) to each epoch's logs, so
    they land in the history and MLflow. First among the callbacks: the eval's own
    preparation (``RecalibrateBatchNorm``) counts as eval."""

    def __init__(self, train_images: int, count: tuple[int, int] | None = None):
        super().__init__()
        self.train_images, self.start, self.trained = train_images, 0.0, None
        # (epochs before this fit, epochs in all): a Trainer's schedule and distillation are
        # two fits, numbered as one run of epochs so that progress and its ETA add up.
        self.count = count

    def on_epoch_begin(self, epoch, logs=None):
        self.start, self.trained = time.perf_counter(), None

    def on_test_begin(self, logs=None):
        if self.trained is None:
            self.trained = time.perf_counter() - self.start

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.start
        if logs is not None:
            logs["epoch_seconds"] = seconds
            logs["images_per_second"] = self.train_images / seconds
            logs["train_images_per_second"] = self.train_images / (self.trained or seconds)
        # The CLI's progress lines read this one (pipelines/console.py).
        before, total = self.count or (0, self.params.get("epochs") or 0)
        logging.info("epoch %d/%d done in %.1f s", before + epoch + 1, total, seconds)


class RecalibrateBatchNorm(tf.keras.callbacks.Callback):
    """Before each evaluation, re-estimate BatchNorm's moving statistics on clean
    (unaugmented) training batches ("precise BN").

    Measured on real key points: the moving statistics gathered during augmented training
    made eval-mode predictions jump (eval RMSE 4.7 -> 27.8 -> 4.7 px between epochs, single
    outputs 20x out of range) while the same weights with batch statistics improved every
    epoch. Recalibrating on clean images makes eval mode agree with training; about 1,300
    forward passes per epoch.
    """

    def __init__(self, clean_batches: tf.data.Dataset, steps: int = 20):
        super().__init__()
        self.clean_batches, self.steps = clean_batches, steps

    def on_test_begin(self, logs=None):
        for x, _ in self.clean_batches.take(self.steps):
            self.model(x, training=True)

