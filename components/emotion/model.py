"""The expression network: a residual CNN with 5 softmax outputs."""
from __future__ import annotations

import tensorflow as tf

from components.common.resnet import residual_network
from pipelines import config


def build(params: config.ModelParams) -> tf.keras.Model:
    """Input: standardized image ``[batch, 48*48]``; output: class probabilities ``[batch, 5]``."""
    if params.head == "soft_argmax":
        raise ValueError("the soft-argmax head locates points; the expression classifier takes pool or flatten")
    head = tf.keras.layers.Dense(len(config.EMOTION_CLASSES), activation="softmax", name="probabilities")
    return residual_network(config.EMOTION_IMAGE_SIZE, head, "emotion_resnet", params)
