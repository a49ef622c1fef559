"""Training-only augmentation, as batched TensorFlow ops for the Trainers' tf.data pipelines.

Never part of the Transform graph, so evaluation and serving see unaugmented images.

Geometry is expressed in normalized coordinates (pixel-centre coordinates mapped to
[-1, 1] about the image centre), where a horizontal flip is ``x -> -x`` and rotation,
scale and shift act linearly; the image is resampled with the inverse of the same map, so
a drawn feature and its key point move together.
"""
from __future__ import annotations

import math

import tensorflow as tf

from emotion_ai.components import spec

# Horizontal flip swaps the subject's left and right: index permutation of the key points.
_SWAP_NAMES = {**dict(spec.KEYPOINT_MIRROR_PAIRS), **{b: a for a, b in spec.KEYPOINT_MIRROR_PAIRS}}
FLIP_POINT_ORDER = [spec.KEYPOINT_NAMES.index(_SWAP_NAMES.get(n, n)) for n in spec.KEYPOINT_NAMES]
# The same permutation on the 30 interleaved x, y columns.
FLIP_COLUMN_ORDER = [2 * p + axis for p in FLIP_POINT_ORDER for axis in (0, 1)]


def flip_coordinates(coords: tf.Tensor) -> tf.Tensor:
    """Mirror normalized ``[batch, 30]`` coordinates and swap left/right points."""
    coords = tf.gather(coords, FLIP_COLUMN_ORDER, axis=-1)
    sign = tf.constant([-1.0, 1.0] * len(spec.KEYPOINT_NAMES))
    return coords * sign


def flip_mask(mask: tf.Tensor) -> tf.Tensor:
    return tf.gather(mask, FLIP_COLUMN_ORDER, axis=-1)


def _affine_matrices(angle, log_scale, shift_x, shift_y):
    """Forward maps ``p' = s R p + t`` in normalized coordinates, as [batch, 2, 2] and [batch, 2]."""
    s = tf.exp(log_scale)
    cos, sin = tf.cos(angle) * s, tf.sin(angle) * s
    linear = tf.stack([tf.stack([cos, -sin], -1), tf.stack([sin, cos], -1)], -2)
    return linear, tf.stack([shift_x, shift_y], -1)


def transform_images(images: tf.Tensor, linear: tf.Tensor, offset: tf.Tensor) -> tf.Tensor:
    """Resample ``[batch, H, W, C]`` images so content at p moves to ``linear @ p + offset``."""
    size = tf.cast(tf.shape(images)[1], tf.float32)
    half = (size - 1.0) / 2.0
    inverse = tf.linalg.inv(linear)
    # Output pixel q (pixels) -> normalized -> inverse map -> input pixel.
    # in = half * inv((q - half)/half - t) + half = inv q + (half - inv (half*1 + half*t))
    ones = tf.ones_like(offset)
    bias = half * ones - tf.linalg.matvec(inverse, half * ones + half * offset)
    transforms = tf.concat([
        inverse[:, 0, :], bias[:, 0:1], inverse[:, 1, :], bias[:, 1:2],
        tf.zeros_like(offset)], axis=-1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")


def transform_coordinates(coords: tf.Tensor, linear: tf.Tensor, offset: tf.Tensor) -> tf.Tensor:
    """Apply the forward map to normalized ``[batch, 30]`` coordinates."""
    points = tf.reshape(coords, [-1, len(spec.KEYPOINT_NAMES), 2])
    moved = tf.einsum("bij,bpj->bpi", linear, points) + offset[:, None, :]
    return tf.reshape(moved, [-1, 2 * len(spec.KEYPOINT_NAMES)])


def _random_geometry(batch, params: spec.Augmentation):
    angle = tf.random.uniform([batch], -1.0, 1.0) * params.max_rotation_deg * 3.141592653589793 / 180.0
    log_scale = tf.random.uniform([batch], -params.max_log_scale, params.max_log_scale)
    shift = tf.random.uniform([batch, 2], -params.max_shift, params.max_shift)
    return _affine_matrices(angle, log_scale, shift[:, 0], shift[:, 1])


def _photometric(images, params: spec.Augmentation):
    batch = tf.shape(images)[0]
    contrast = 1.0 + tf.random.uniform([batch, 1, 1, 1], -params.contrast, params.contrast)
    brightness = tf.random.uniform([batch, 1, 1, 1], -params.brightness, params.brightness)
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    return (images - mean) * contrast + mean + brightness


def _flip_choice(batch, params):
    return tf.random.uniform([batch]) < params.flip_probability


def augment_keypoints(images, coords, mask, params: spec.Augmentation = spec.Augmentation()):
    """Random flip, rotation, scale, shift and brightness/contrast of a key-point batch.

    ``images``: [batch, H, W, 1] standardized; ``coords``/``mask``: [batch, 30] normalized.
    Returns the augmented triple; missing coordinates stay masked.
    """
    batch = tf.shape(images)[0]
    flip = _flip_choice(batch, params)
    images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
    coords = tf.where(flip[:, None], flip_coordinates(coords), coords)
    mask = tf.where(flip[:, None], flip_mask(mask), mask)
    linear, offset = _random_geometry(batch, params)
    images = transform_images(images, linear, offset)
    coords = transform_coordinates(coords, linear, offset) * mask
    return _photometric(images, params), coords, mask


def random_erase(images, params: spec.Augmentation):
    """Random erasing (Zhong et al., 2017): with ``erase_probability``, one rectangle of
    random area and aspect ratio per image is replaced by noise, so the classifier cannot
    lean on one region (mouth or eyes) alone."""
    shape = tf.shape(images)
    batch, height, width = shape[0], tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    area = tf.random.uniform([batch], *params.erase_area) * height * width
    log_aspect = tf.random.uniform([batch], *[math.log(a) for a in params.erase_aspect])
    h = tf.minimum(tf.sqrt(area * tf.exp(log_aspect)), height)
    w = tf.minimum(tf.sqrt(area / tf.exp(log_aspect)), width)
    top = tf.random.uniform([batch]) * (height - h)
    left = tf.random.uniform([batch]) * (width - w)
    rows = tf.range(height)[None, :, None]
    cols = tf.range(width)[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < (top + h)[:, None, None])
              & (cols >= left[:, None, None]) & (cols < (left + w)[:, None, None]))
    inside &= (tf.random.uniform([batch]) < params.erase_probability)[:, None, None]
    return tf.where(inside[..., None], tf.random.normal(shape), images)


def augment_images(images, params: spec.Augmentation = spec.Augmentation()):
    """The same jitter for label-free images (expressions do not move with geometry), plus
    random erasing when ``params.erase_probability`` is set."""
    batch = tf.shape(images)[0]
    flip = _flip_choice(batch, params)
    images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
    linear, offset = _random_geometry(batch, params)
    images = _photometric(transform_images(images, linear, offset), params)
    if params.erase_probability:
        images = random_erase(images, params)
    return images
