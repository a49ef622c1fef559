"""The expression network: a residual CNN with 5 softmax outputs."""
from __future__ import annotations

import tensorflow as tf

from components.common.resnet import residual_trunk
from pipelines import config


def build(stage_filters, blocks_per_stage: int, dropout: float = 0.0, stem_stride: int = 1) -> tf.keras.Model:
    """Input: standardized image ``[batch, 48*48]``; output: class probabilities ``[batch, 5]``."""
    size = config.EMOTION_IMAGE_SIZE
    inputs = tf.keras.Input(shape=(size * size,), name=config.IMAGE_FEATURE)
    x = tf.keras.layers.Reshape((size, size, 1))(inputs)
    x = residual_trunk(x, stage_filters, blocks_per_stage, stem_stride)
    if dropout:
        x = tf.keras.layers.Dropout(dropout)(x)
    outputs = tf.keras.layers.Dense(len(config.EMOTION_CLASSES), activation="softmax", name="probabilities")(x)
    return tf.keras.Model(inputs, outputs, name="emotion_resnet")
