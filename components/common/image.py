"""Image parsing shared by both branches, as TensorFlow ops (used in Transform and serving)."""
from __future__ import annotations

import tensorflow as tf

from emotion_ai.components import spec


def decode_pixel_strings(pixels: tf.Tensor, size: int) -> tf.Tensor:
    """Space-separated pixel strings ``[batch]`` or ``[batch, 1]`` -> float32 ``[batch, size*size]``.

    Values stay in 0..255. A string with the wrong number of values, or a value that is not
    a finite number in 0..255 (``nan``, ``inf``, ``-1``, ``256``), fails loudly with an
    invalid-argument error instead of becoming a wrong image: this graph is the Transform's
    and every served signature's, so TF Serving and KServe refuse such a request as
    ``emotion-ai serve`` does, and the values are parsed once.
    """
    pixels = tf.reshape(pixels, [-1])
    tokens = tf.strings.split(pixels)
    values = tf.strings.to_number(tokens, out_type=tf.float32)
    expected = tf.constant(size * size, dtype=values.row_splits.dtype)
    count = tf.debugging.assert_equal(
        values.row_lengths(), expected,
        message=f"pixel string must hold {size * size} values ({size}x{size})")
    with tf.control_dependencies([count]):
        dense = tf.reshape(values.to_tensor(shape=[None, size * size]), [-1, size * size])
    bad = ~tf.math.is_finite(dense) | (dense < 0.0) | (dense > 255.0)
    # [instance, pixel] of the first bad value ([0, 0] when there is none: the message is unused)
    first = tf.concat([tf.cast(tf.where(bad)[:1], tf.int32), tf.zeros([1, 2], tf.int32)], axis=0)[0]
    in_range = tf.debugging.Assert(~tf.reduce_any(bad), [tf.strings.format(
        "instance {}: pixel {} is {}; pixels are numbers in 0..255", (first[0], first[1], dense[first[0], first[1]]))])
    with tf.control_dependencies([in_range]):
        return tf.identity(dense)


def image_features(pixels: tf.Tensor, size: int) -> dict[str, tf.Tensor]:
    """The image outputs of a branch's ``preprocessing_fn`` from its raw pixel strings: the
    standardized image (``scale_images`` with the dataset's mean and deviation, tft analyzers),
    and those two constants per row (``IMAGE_SCALING``), so the exported model can scale an
    image it decoded itself exactly as the Transform does, without writing pixel strings."""
    import tensorflow_transform as tft  # Transform graphs only: serving reads the constants

    raw = decode_pixel_strings(pixels, size)
    per_image = normalize_per_image(raw)
    mean, std = tft.mean(per_image), tf.sqrt(tft.var(per_image))
    ones = tf.ones_like(raw[:, :1])
    mean_name, std_name = spec.IMAGE_SCALING
    return {spec.IMAGE_FEATURE: standardize(per_image, mean, std), mean_name: ones * mean, std_name: ones * std}


def scale_images(raw: tf.Tensor, mean, std) -> tf.Tensor:
    """Flat 0..255 images -> the network's input: each image normalized, then the dataset-wide
    ``mean`` and ``std`` (what ``image_features`` does in the Transform)."""
    return standardize(normalize_per_image(raw), mean, std)


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
    """Encoded images (PNG, JPEG, BMP, GIF; any size, colour or grey) -> float32 pixels
    ``[batch, size*size]`` of ``size`` x ``size`` grey images, whole numbers in 0..255 as in
    the datasets, and each input's ``(height, width)``."""

    def one(encoded):
        # Three channels, then grey: decode_image refuses one channel for GIF and BMP, and
        # fails on CMYK JPEGs asked for one. The grey weights are OpenCV's (0.299, 0.587, 0.114).
        image = tf.image.rgb_to_grayscale(tf.io.decode_image(encoded, channels=3, expand_animations=False))
        hw = tf.shape(image)[:2]
        grey = tf.cast(image, tf.float32)
        # A face already at the model's size (what clients of this model mostly send) is not
        # resized: at scale 1 the resize would give its pixels back, at a third of the batch's time.
        resized = tf.cond(tf.reduce_all(hw == size), lambda: grey,
                          lambda: tf.image.resize(grey, [size, size], method="bilinear", antialias=True))
        return tf.reshape(tf.clip_by_value(tf.round(resized), 0.0, 255.0), [size * size]), hw

    return tf.map_fn(one, images, fn_output_signature=(tf.TensorSpec([size * size], tf.float32),
                                                       tf.TensorSpec([2], tf.int32)))
