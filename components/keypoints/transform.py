"""Transform module of the key-point branch: ``preprocessing_fn`` for TFX Transform.

Raw features: 30 coordinate columns (pixels, ``MISSING_COORDINATE`` where unlabelled) and
``Image`` (9216 space-separated ints). Outputs: the standardized image, normalized targets
with their mask for training, and pixel targets for evaluation. No augmentation here:
this graph is the one serving applies.
"""
from __future__ import annotations

import tensorflow as tf

from emotion_ai.components import spec
from emotion_ai.components.common import image

_HALF = (spec.KEYPOINT_IMAGE_SIZE - 1) / 2.0  # pixel-centre coordinates -> [-1, 1]


def normalize_coordinates(pixels: tf.Tensor) -> tf.Tensor:
    return (pixels - _HALF) / _HALF


def denormalize_coordinates(normalized: tf.Tensor) -> tf.Tensor:
    return normalized * _HALF + _HALF


def preprocessing_fn(inputs, custom_config=None):
    del custom_config  # carries the code fingerprint only (cache invalidation)
    # Each image normalized, then scaled by dataset-wide statistics (tft analyzers).
    outputs = image.image_features(inputs[spec.KEYPOINT_IMAGE_COLUMN], spec.KEYPOINT_IMAGE_SIZE)
    coords = tf.concat([tf.reshape(tf.cast(inputs[c], tf.float32), [-1, 1])
                        for c in spec.KEYPOINT_COLUMNS], axis=1)
    known = coords >= 0.0
    outputs[spec.KEYPOINTS_PIXELS] = coords
    outputs[spec.KEYPOINTS_MASK] = tf.cast(known, tf.float32)
    outputs[spec.KEYPOINTS_TARGET] = tf.where(known, normalize_coordinates(coords), 0.0)
    return outputs
