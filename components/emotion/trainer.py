"""Trainer module of the expression branch: ``run_fn`` for the TFX Trainer."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from absl import logging
from tfx import v1 as tfx

from components.common import augment, training
from components.emotion import model as model_lib
from pipelines import config

SIZE = config.EMOTION_IMAGE_SIZE
N_CLASSES = len(config.EMOTION_CLASSES)


def _to_xy(features):
    return features[config.IMAGE_FEATURE], features[config.EMOTION_LABEL]


def _augment(x, y):
    images = augment.augment_images(tf.reshape(x, [-1, SIZE, SIZE, 1]))
    return tf.reshape(images, [-1, SIZE * SIZE]), y


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Inverse-frequency weights (mean 1 over the data), so rare Disgust is not ignored."""
    counts = np.bincount(labels, minlength=N_CLASSES).astype(float)
    weights = len(labels) / (N_CLASSES * np.maximum(counts, 1.0))
    return {i: float(w) for i, w in enumerate(weights)}


def _postprocess(probabilities, image_hw):
    del image_hw  # class probabilities do not depend on the input size
    class_id = tf.argmax(probabilities, axis=-1)
    return {
        config.EMOTION_OUTPUT: probabilities,
        "class_id": class_id,
        "label": tf.gather(tf.constant(config.EMOTION_CLASSES), class_id),
    }


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    params, tft_output, train, evaluation = training.prepare(fn_args, _to_xy)
    labels = np.concatenate([y.numpy() for _, y in train])
    weights = class_weights(labels)
    if params.augment:
        train = train.map(_augment, num_parallel_calls=tf.data.AUTOTUNE)
    logging.info("emotion class counts %s, weights %s", np.bincount(labels, minlength=N_CLASSES).tolist(), weights)
    network = model_lib.build(params.stage_filters, params.blocks_per_stage, params.dropout,
                             params.stem_stride)
    network.compile(optimizer=tf.keras.optimizers.Adam(params.learning_rate),
                    loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    logging.info("expression network: %d parameters", network.count_params())
    history = network.fit(train, validation_data=evaluation, epochs=params.epochs, verbose=2, class_weight=weights,
                          callbacks=training.keras_callbacks(fn_args, monitor="val_accuracy"))
    training.save_history(history, fn_args)
    training.export_saved_model(network, tft_output, fn_args.serving_model_dir,
                                pixel_column=config.EMOTION_PIXELS_COLUMN, image_size=SIZE, postprocess=_postprocess)
