"""Transform module of the expression branch: ``preprocessing_fn`` for TFX Transform.

Raw features: ``emotion`` (0..4) and ``pixels`` (2304 space-separated ints). Outputs: the
standardized image and the class index. No augmentation: serving applies this graph.
"""
from __future__ import annotations

import tensorflow as tf

from emotion_ai.components import spec
from emotion_ai.components.common import image


def preprocessing_fn(inputs, custom_config=None):
    del custom_config  # carries the code fingerprint only (cache invalidation)
    # Each image normalized, then scaled by dataset-wide statistics (tft analyzers).
    return {
        **image.image_features(inputs[spec.EMOTION_PIXELS_COLUMN], spec.EMOTION_IMAGE_SIZE),
        spec.EMOTION_LABEL: tf.reshape(tf.cast(inputs[spec.EMOTION_LABEL_COLUMN], tf.int64), [-1]),
    }
