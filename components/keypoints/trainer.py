"""Trainer module of the key-point branch: ``run_fn`` for the TFX Trainer."""
from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf
from absl import logging
from tfx import v1 as tfx

from emotion_ai.components import spec
from emotion_ai.components.common import augment, callbacks, datasets, export, training, views
from emotion_ai.components.keypoints import metrics
from emotion_ai.components.keypoints import model as model_lib
from emotion_ai.components.keypoints.transform import denormalize_coordinates

SIZE = spec.KEYPOINT_IMAGE_SIZE
N_OUTPUTS = len(spec.KEYPOINT_COLUMNS)
MIN_CALIBRATION_ROWS = 20


def _to_xy(features):
    x = features[spec.IMAGE_FEATURE]
    y = tf.concat([features[spec.KEYPOINTS_TARGET], features[spec.KEYPOINTS_MASK]], axis=-1)
    return x, y


def augmenter(params: spec.ModelParams):
    """Training-only augmentation of one batch ``(x, [targets, mask])``."""
    def augment_batch(x, y):
        images = tf.reshape(x, [-1, SIZE, SIZE, 1])
        images, targets, mask = augment.augment_keypoints(images, y[:, :N_OUTPUTS], y[:, N_OUTPUTS:],
                                                          params.augmentation)
        return tf.reshape(images, [-1, SIZE * SIZE]), tf.concat([targets, mask], axis=-1)

    return augment_batch


def _unview(coords, mirrored, shift):
    """A view's points back in the original image: shifted back, then (a mirrored face's
    points come back mirrored and with left/right swapped) mirrored back."""
    coords = coords - tf.tile(tf.constant(shift, tf.float32), [len(spec.KEYPOINT_NAMES)])
    return augment.flip_coordinates(coords) if mirrored else coords


def offset_correction(network: tf.keras.Model, params: spec.ModelParams, eval_split) -> np.ndarray:
    """The mean error per coordinate (normalized) of the served prediction on the eval split.

    Flip augmentation and flip TTA assume labels mirror about the image centre. Labels that
    carry a horizontal offset of their own (an annotation tool's or a resampling convention's)
    do not, and the mirrored half of the training data teaches the network the opposite
    offset: on the real key points every x came out about 1.1 px left on training faces
    and 1.2 px on unseen ones (the correction measured +0.88 px). y offsets and per-point
    ones are mostly learnt, but measured here too. The eval split also picks the best epoch
    and feeds the Evaluator, so its gate sees a slightly optimistic RMSE.
    """
    x, y = eval_split
    targets, mask = y[:, :N_OUTPUTS], y[:, N_OUTPUTS:]
    predicted = views.predict_views(network, x, SIZE, views.served_views(params, SIZE), _unview)
    counts = mask.sum(axis=0)
    mean_error = ((targets - predicted) * mask).sum(axis=0) / np.maximum(counts, 1.0)
    # A coordinate seen in too few eval rows keeps its prediction: its mean would be noise.
    return np.where(counts >= MIN_CALIBRATION_ROWS, mean_error, 0.0).astype(np.float32)


def _postprocess(normalized, image_hw, correction=None):
    """Pixels of the 96x96 frame, or of the caller's image when it sent one (scaled per axis,
    pixel-centre convention); ``correction`` (normalized, per coordinate) is added first."""
    if correction is not None:
        normalized = normalized + tf.constant(correction)
    coords = denormalize_coordinates(normalized)
    if image_hw is not None:
        hw = tf.cast(image_hw, tf.float32)
        scale = tf.tile(tf.stack([hw[:, 1], hw[:, 0]], axis=-1) / SIZE, [1, len(spec.KEYPOINT_NAMES)])
        coords = (coords + 0.5) * scale - 0.5
    return {spec.KEYPOINTS_OUTPUT: coords}


def _blend(y, taught, weight):
    """Distillation targets: a labelled coordinate blended with the teacher's view average; an
    unlabelled one (most real rows lack some points) is the teacher's, and now counts."""
    targets, mask = y[:, :N_OUTPUTS], y[:, N_OUTPUTS:]
    blended = tf.where(mask > 0, (1.0 - weight) * targets + weight * taught, taught)
    return tf.concat([blended, tf.ones_like(mask)], axis=-1)


def train(params: spec.ModelParams, train_split, eval_split, log_dir: str | None = None, start=None,
          strategy: tf.distribute.Strategy | None = None):
    """Build and train the key-point network on ``(images, [targets, mask])`` arrays, then
    distil its view average into it if ``params`` say so; the pipeline's ``run_fn`` and the
    plain-Keras benchmark both call this. Returns the network, the schedule's history and
    the distillation's (or None). ``strategy``: where it trains (default: every visible GPU,
    ``training.distribution_strategy``)."""
    with (strategy or training.distribution_strategy()).scope():
        network = model_lib.build(params)
    logging.info("key-point network: %d parameters", network.count_params())
    if start is not None:  # warm start: ``start(network, params)`` loads weights, returns the schedule
        params = start(network, params)
    recipe = dict(loss=model_lib.loss_for(params), monitor="val_rmse_px", mode="min", augment=augmenter(params),
                  log_dir=log_dir)
    history = training.fit(network, params, train_split, eval_split, metrics=[metrics.TrainingPixelRMSE], **recipe)
    distilled = training.distill(network, params, train_split, eval_split, metrics=[metrics.TrainingPixelRMSE],
                                 size=SIZE, unview=_unview, blend=_blend, schedule=history, **recipe)
    return network, history, distilled


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    params, tft_output, train_split, eval_split = datasets.prepare(fn_args, _to_xy)
    network, history, distilled = train(params, train_split, eval_split, log_dir=fn_args.model_run_dir,
                                        start=functools.partial(training.warm_start, fn_args=fn_args))
    training.save_history(history, fn_args, distilled)
    correction = None
    if params.calibrate_offsets:
        with callbacks.timed("offset calibration"):
            correction = offset_correction(network, params, eval_split)
        half = (SIZE - 1) / 2.0
        logging.info("key-point offset correction (px, x then y per point): %s",
                     np.round(correction * half, 2).tolist())
        logging.info("mean correction: x %.3f px, y %.3f px",
                     correction[0::2].mean() * half, correction[1::2].mean() * half)
    # Trained as a plain image->coordinates network; export wraps it with the Transform
    # graph, averages test-time views and maps its outputs back to pixels.
    export.export_saved_model(network, tft_output, fn_args.serving_model_dir,
                                pixel_column=spec.KEYPOINT_IMAGE_COLUMN, image_size=SIZE,
                                postprocess=functools.partial(_postprocess, correction=correction),
                                views=views.served_views(params, SIZE), unview=_unview)
    training.save_network_weights(network, fn_args.serving_model_dir)  # a later run may start from it
