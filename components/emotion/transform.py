"""Transform module of the expression branch: ``preprocessing_fn`` for TFX Transform.

Raw features: ``emotion`` (0..4) and ``pixels`` (2304 space-separated ints). Outputs: the
standardized image and the class index. No augmentation: serving applies this graph.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from emotion_ai.components import spec
from emotion_ai.components.common import image


def preprocessing_fn(inputs, custom_config=None):
    del custom_config  # carries the code fingerprint only (cache invalidation)
    raw = image.decode_pixel_strings(inputs[spec.EMOTION_PIXELS_COLUMN], spec.EMOTION_IMAGE_SIZE)
    per_image = image.normalize_per_image(raw)  # then dataset-wide scaling by tft analyzers
    return {
        spec.IMAGE_FEATURE: image.standardize(per_image, tft.mean(per_image), tf.sqrt(tft.var(per_image))),
        spec.EMOTION_LABEL: tf.reshape(tf.cast(inputs[spec.EMOTION_LABEL_COLUMN], tf.int64), [-1]),
    }
