"""Transform module of the expression branch: ``preprocessing_fn`` for TFX Transform.

Raw features: ``emotion`` (0..4) and ``pixels`` (2304 space-separated ints). Outputs: the
standardized image and the class index. No augmentation: serving applies this graph.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from components.common import image
from pipelines import config


def preprocessing_fn(inputs, custom_config=None):
    del custom_config  # carries the code fingerprint only (cache invalidation)
    raw = image.decode_pixel_strings(inputs[config.EMOTION_PIXELS_COLUMN], config.EMOTION_IMAGE_SIZE)
    per_image = image.normalize_per_image(raw)  # then dataset-wide scaling by tft analyzers
    return {
        config.IMAGE_FEATURE: image.standardize(per_image, tft.mean(per_image), tf.sqrt(tft.var(per_image))),
        config.EMOTION_LABEL: tf.reshape(tf.cast(inputs[config.EMOTION_LABEL_COLUMN], tf.int64), [-1]),
    }
