"""Trainer module of the key-point branch: ``run_fn`` for the TFX Trainer."""
from __future__ import annotations

import tensorflow as tf
from absl import logging
from tfx import v1 as tfx

from components.common import augment, training
from components.keypoints import model as model_lib
from components.keypoints.transform import denormalize_coordinates
from pipelines import config

SIZE = config.KEYPOINT_IMAGE_SIZE


def _to_xy(features):
    x = features[config.IMAGE_FEATURE]
    y = tf.concat([features[config.KEYPOINTS_TARGET], features[config.KEYPOINTS_MASK]], axis=-1)
    return x, y


def augmenter(params: config.ModelParams):
    """Training-only augmentation of one batch ``(x, [targets, mask])``."""
    def augment_batch(x, y):
        images = tf.reshape(x, [-1, SIZE, SIZE, 1])
        n = len(config.KEYPOINT_COLUMNS)
        images, targets, mask = augment.augment_keypoints(images, y[:, :n], y[:, n:], params.augmentation)
        return tf.reshape(images, [-1, SIZE * SIZE]), tf.concat([targets, mask], axis=-1)

    return augment_batch


def _postprocess(normalized, image_hw):
    """Pixels of the 96x96 frame, or of the caller's image when it sent one (scaled per axis,
    pixel-centre convention)."""
    coords = denormalize_coordinates(normalized)
    if image_hw is not None:
        hw = tf.cast(image_hw, tf.float32)
        scale = tf.tile(tf.stack([hw[:, 1], hw[:, 0]], axis=-1) / SIZE, [1, len(config.KEYPOINT_NAMES)])
        coords = (coords + 0.5) * scale - 0.5
    return {config.KEYPOINTS_OUTPUT: coords}


def train(params: config.ModelParams, train_split, eval_split, log_dir: str | None = None):
    """Build and train the key-point network on ``(images, [targets, mask])`` arrays; the
    pipeline's ``run_fn`` and the plain-Keras benchmark both call this."""
    network = model_lib.build(params)
    logging.info("key-point network: %d parameters", network.count_params())
    history = training.fit(network, params, train_split, eval_split, loss=model_lib.masked_loss,
                           metrics=[model_lib.TrainingPixelRMSE()], monitor="val_rmse_px", mode="min",
                           augment=augmenter(params), log_dir=log_dir)
    return network, history


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    params, tft_output, train_split, eval_split = training.prepare(fn_args, _to_xy)
    network, history = train(params, train_split, eval_split, log_dir=fn_args.model_run_dir)
    training.save_history(history, fn_args)
    # Trained as a plain image->coordinates network; export wraps it with the Transform
    # graph and maps its outputs back to pixels. A mirrored face's points come back
    # mirrored and with left/right swapped; unmirror undoes both.
    training.export_saved_model(network, tft_output, fn_args.serving_model_dir,
                                pixel_column=config.KEYPOINT_IMAGE_COLUMN, image_size=SIZE, postprocess=_postprocess,
                                unmirror=augment.flip_coordinates if params.flip_tta else None)
