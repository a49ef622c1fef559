"""The expression network: a residual CNN with 5 softmax outputs."""
from __future__ import annotations

import tensorflow as tf

from emotion_ai.components import spec
from emotion_ai.components.common.resnet import residual_network


def build(params: spec.ModelParams) -> tf.keras.Model:
    """Input: standardized image ``[batch, 48*48]``; output: class probabilities ``[batch, 5]``."""
    if params.head == "soft_argmax":
        raise ValueError("the soft-argmax head locates points; the expression classifier takes pool or flatten")
    head = tf.keras.layers.Dense(len(spec.EMOTION_CLASSES), activation="softmax", name="probabilities")
    return residual_network(spec.EMOTION_IMAGE_SIZE, head, "emotion_resnet", params)
