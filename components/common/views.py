"""Test-time augmentation: the views (mirrored, shifted) the served graph averages over."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from emotion_ai.components import spec
from emotion_ai.components.common import augment


def mirror_images(flat: tf.Tensor, size: int) -> tf.Tensor:
    """Horizontally mirror flat ``[batch, size*size]`` images."""
    return tf.reshape(tf.reverse(tf.reshape(flat, [-1, size, size]), axis=[2]), [-1, size * size])


def tta_views(params: spec.ModelParams, size: int) -> list[tuple[bool, tuple[float, float]]]:
    """The test-time views the served model averages over, as ``(mirrored, shift)``; the
    shift in normalized coordinates (``params.tta_shift_px`` pixels on a 3x3 grid)."""
    half = (size - 1) / 2.0
    steps = (0, params.tta_shift_px, -params.tta_shift_px) if params.tta_shift_px else (0,)
    mirrors = (False, True) if params.flip_tta else (False,)
    return [(m, (dx / half, dy / half)) for m in mirrors for dx in steps for dy in steps]


def served_views(params: spec.ModelParams, size: int) -> list[tuple[bool, tuple[float, float]]]:
    """The views the exported graph averages: one when the view average was distilled into
    the network (``params.distill_epochs``), else ``tta_views``."""
    return [(False, (0.0, 0.0))] if params.distill_epochs else tta_views(params, size)


def view_images(flat: tf.Tensor, size: int, mirrored: bool, shift: tuple[float, float]) -> tf.Tensor:
    """One test-time view of flat images: mirrored, then shifted (border reflected, as the
    training augmentation fills it)."""
    if mirrored:
        flat = mirror_images(flat, size)
    if shift == (0.0, 0.0):
        return flat
    batch = tf.shape(flat)[0]
    images = augment.transform_images(tf.reshape(flat, [-1, size, size, 1]), tf.eye(2, batch_shape=[batch]),
                                      tf.tile(tf.constant([shift], tf.float32), [batch, 1]))
    return tf.reshape(images, [-1, size * size])


def average_views(network: tf.keras.Model, images: tf.Tensor, size: int, views, unview) -> tf.Tensor:
    """The mean over the test-time ``views`` of the network's outputs on flat transformed
    images, each mapped back to the original image by ``unview(outputs, mirrored, shift)``."""
    # All views in one call: on CPU one batch of views*n images is much faster than a call
    # per view (measured 35 vs 50 ms for one image and 18 views).
    n = tf.shape(images)[0]
    stacked = tf.concat([view_images(images, size, mirrored, shift) for mirrored, shift in views], axis=0)
    outputs = network(stacked, training=False)
    return tf.add_n([unview(outputs[i * n:(i + 1) * n], mirrored, shift)
                     for i, (mirrored, shift) in enumerate(views)]) / len(views)


def predict_views(network: tf.keras.Model, x: np.ndarray, size: int, views, unview, batch_size: int = 64
                  ) -> np.ndarray:
    """What the served graph computes from already-transformed image arrays."""
    return np.concatenate([average_views(network, tf.constant(x[i:i + batch_size]), size, views, unview).numpy()
                           for i in range(0, len(x), batch_size)])

