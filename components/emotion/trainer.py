"""Trainer module of the expression branch: ``run_fn`` for the TFX Trainer."""
from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf
from absl import logging
from tfx import v1 as tfx

from emotion_ai.components import spec
from emotion_ai.components.common import augment, datasets, export, training, views
from emotion_ai.components.emotion import model as model_lib

SIZE = spec.EMOTION_IMAGE_SIZE
N_CLASSES = len(spec.EMOTION_CLASSES)


def _to_xy(features):
    return features[spec.IMAGE_FEATURE], features[spec.EMOTION_LABEL]


def augmenter(params: spec.ModelParams):
    """Training-only augmentation of one batch ``(x, y)``."""
    def augment_batch(x, y):
        images = augment.augment_images(tf.reshape(x, [-1, SIZE, SIZE, 1]), params.augmentation)
        return tf.reshape(images, [-1, SIZE * SIZE]), y

    return augment_batch


def _one_hot(split):
    """Integer labels -> one-hot, which label smoothing needs."""
    x, labels = split
    return x, np.eye(N_CLASSES, dtype=np.float32)[labels]


def class_weights(counts: np.ndarray, power: float = 1.0) -> dict[int, float]:
    """Per-class weights from the training rows' class ``counts``: inverse frequency raised
    to ``power``, scaled so that the mean weight over the rows is 1 (the loss keeps its
    size): with 1 every class weighs as much in total, so rare Disgust is not ignored;
    below 1 the common classes keep more of their weight, which buys precision on the rare
    ones at some of their recall."""
    counts = np.asarray(counts, dtype=float)
    rows = counts.sum()
    weights = (rows / (len(counts) * np.maximum(counts, 1.0))) ** power
    weights *= rows / float(np.dot(counts, weights))
    return {i: float(w) for i, w in enumerate(weights)}


def _unview(probabilities, mirrored, shift):
    del mirrored, shift  # an expression does not move with the image
    return probabilities


def _postprocess(probabilities, image_hw):
    del image_hw  # class probabilities do not depend on the input size
    class_id = tf.argmax(probabilities, axis=-1)
    return {
        spec.EMOTION_OUTPUT: probabilities,
        "class_id": class_id,
        "label": tf.gather(tf.constant(spec.EMOTION_CLASSES), class_id),
    }


def _blend(one_hot, taught, weight):
    """Distillation targets: the label blended with the teacher's view-averaged probabilities."""
    return (1.0 - weight) * one_hot + weight * taught


def train(params: spec.ModelParams, train_split, eval_split, log_dir: str | None = None, start=None,
          strategy: tf.distribute.Strategy | None = None):
    """Build and train the expression network on ``(images, class ids)`` arrays, then distil
    its view average into it if ``params`` say so; the pipeline's ``run_fn`` and the
    plain-Keras benchmark both call this. Returns the network, the schedule's history and
    the distillation's (or None). ``strategy``: where it trains (default: every visible GPU,
    ``training.distribution_strategy``)."""
    counts = np.bincount(train_split[1], minlength=N_CLASSES)
    weights = class_weights(counts, params.class_weight_power)
    logging.info("emotion class counts %s, weights %s", counts.tolist(), weights)
    with (strategy or training.distribution_strategy()).scope():
        network = model_lib.build(params)
    logging.info("expression network: %d parameters", network.count_params())
    if start is not None:  # warm start: ``start(network, params)`` loads weights, returns the schedule
        params = start(network, params)
    recipe = dict(loss=tf.keras.losses.CategoricalCrossentropy(label_smoothing=params.label_smoothing),
                  monitor="val_accuracy", mode="max", augment=augmenter(params), class_weight=weights, log_dir=log_dir)
    accuracy = functools.partial(tf.keras.metrics.CategoricalAccuracy, name="accuracy")
    train_split, eval_split = _one_hot(train_split), _one_hot(eval_split)
    history = training.fit(network, params, train_split, eval_split, metrics=[accuracy], **recipe)
    distilled = training.distill(network, params, train_split, eval_split, metrics=[accuracy], size=SIZE,
                                 unview=_unview, blend=_blend, schedule=history, **recipe)
    return network, history, distilled


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    params, tft_output, train_split, eval_split = datasets.prepare(fn_args, _to_xy)
    network, history, distilled = train(params, train_split, eval_split, log_dir=fn_args.model_run_dir,
                                        start=functools.partial(training.warm_start, fn_args=fn_args))
    training.save_history(history, fn_args, distilled)
    export.export_saved_model(network, tft_output, fn_args.serving_model_dir,
                                pixel_column=spec.EMOTION_PIXELS_COLUMN, image_size=SIZE, postprocess=_postprocess,
                                views=views.served_views(params, SIZE), unview=_unview)
    training.save_network_weights(network, fn_args.serving_model_dir)  # a later run may start from it
