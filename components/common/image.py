"""Image parsing shared by both branches, as TensorFlow ops (used in Transform and serving)."""
from __future__ import annotations

import tensorflow as tf


def decode_pixel_strings(pixels: tf.Tensor, size: int) -> tf.Tensor:
    """Space-separated pixel strings ``[batch]`` or ``[batch, 1]`` -> float32 ``[batch, size*size]``.

    Values stay in 0..255. A string with the wrong number of values fails loudly instead
    of being padded into a wrong image.
    """
    pixels = tf.reshape(pixels, [-1])
    tokens = tf.strings.split(pixels)
    values = tf.strings.to_number(tokens, out_type=tf.float32)
    expected = tf.constant(size * size, dtype=values.row_splits.dtype)
    check = tf.debugging.assert_equal(
        values.row_lengths(), expected,
        message=f"pixel string must hold {size * size} values ({size}x{size})")
    with tf.control_dependencies([check]):
        dense = values.to_tensor(shape=[None, size * size])
    return tf.reshape(dense, [-1, size * size])


def standardize(images: tf.Tensor, mean: tf.Tensor, std: tf.Tensor) -> tf.Tensor:
    """Scale by dataset statistics (computed by tft analyzers)."""
    return (images - mean) / tf.maximum(std, 1e-3)


def normalize_per_image(images: tf.Tensor) -> tf.Tensor:
    """Each flat ``[batch, pixels]`` image (0..255) to zero mean and unit deviation.

    Lighting and camera contrast vary by video and person far more than within one, and
    the evaluation faces are other people: measured on real key points, per-image
    normalization removed the eval-mode outliers that dataset-wide scaling left.
    """
    mean = tf.reduce_mean(images, axis=-1, keepdims=True)
    std = tf.math.reduce_std(images, axis=-1, keepdims=True)
    return (images - mean) / tf.maximum(std, 1.0)


def decode_images(images: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Encoded images (PNG, JPEG, BMP, GIF; any size, colour or grey) -> pixel strings of
    ``size`` x ``size`` grey images, as in the datasets, and each input's ``(height, width)``."""

    def one(encoded):
        # Three channels, then grey: decode_image refuses one channel for GIF and BMP, and
        # fails on CMYK JPEGs asked for one. The grey weights are OpenCV's (0.299, 0.587, 0.114).
        image = tf.image.rgb_to_grayscale(tf.io.decode_image(encoded, channels=3, expand_animations=False))
        hw = tf.shape(image)[:2]
        resized = tf.image.resize(tf.cast(image, tf.float32), [size, size], method="bilinear", antialias=True)
        pixels = tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.int32)
        return tf.strings.reduce_join(tf.strings.as_string(tf.reshape(pixels, [-1])), separator=" "), hw

    return tf.map_fn(one, images, fn_output_signature=(tf.TensorSpec([], tf.string), tf.TensorSpec([2], tf.int32)))

