"""Residual building blocks shared by the key-point and expression networks."""
from __future__ import annotations

import tensorflow as tf

from emotion_ai.components import spec

layers = tf.keras.layers
# Keras' default 0.99 averages BatchNorm statistics over ~100 steps; an epoch of the key-point
# data is about 90 steps, so eval-mode statistics lagged the weights and the eval error
# jumped by 10x between epochs (measured). 0.9 tracks the weights within ~10 steps.
BN_MOMENTUM = 0.9


def norm_layer(name: str, kind: str) -> layers.Layer:
    """BatchNorm, or GroupNorm (``kind="group"``: per-image statistics, so training and
    evaluation compute the same thing and no moving statistics are estimated)."""
    if kind == "group":
        return layers.GroupNormalization(groups=8, name=name.replace("_bn", "_gn"))
    return layers.BatchNormalization(momentum=BN_MOMENTUM, name=name)


def residual_block(x: tf.Tensor, filters: int, stride: int, name: str, norm: str = "batch") -> tf.Tensor:
    """Basic residual block: conv-BN-ReLU-conv-BN + shortcut, then ReLU.

    The shortcut is the identity when shapes match, otherwise a projection: average
    pooling then a 1x1 conv ("ResNet-D", which keeps the information a strided 1x1 conv
    would skip; TF 2.21's oneDNN kernels also crash on the gradient of a strided 1x1 conv).
    """
    shortcut = x
    if stride != 1:
        shortcut = layers.AveragePooling2D(stride, padding="same", name=f"{name}_pool")(shortcut)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_proj")(shortcut)
        shortcut = norm_layer(f"{name}_proj_bn", norm)(shortcut)
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = norm_layer(f"{name}_bn1", norm)(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = norm_layer(f"{name}_bn2", norm)(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y)


def residual_stages(inputs: tf.Tensor, params: spec.ModelParams) -> list[tf.Tensor]:
    """Each residual stage's output, finest first (``stem_and_stages`` without the stem)."""
    return stem_and_stages(inputs, params)[1]


def stem_and_stages(inputs: tf.Tensor, params: spec.ModelParams) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """Conv stem (optionally followed by a 3x3/2 max pool, as in ResNet), then residual
    stages (the first block of each later stage halves the resolution through a projection
    shortcut); returns the stem's output before the pool and each stage's output, finest first.

    Training cost on 2 CPU cores is dominated by the convolutions at the stem's resolution;
    the stem pool quarters it (measured about 4x more images/s for the same stages).
    """
    x = layers.Conv2D(params.stage_filters[0], 3, strides=params.stem_stride, padding="same", use_bias=False,
                      name="stem_conv")(inputs)
    x = norm_layer("stem_bn", params.norm)(x)
    x = stem = layers.ReLU(name="stem_relu")(x)
    if params.stem_pool:
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    stages = []
    for s, filters in enumerate(params.stage_filters):
        for b in range(params.blocks_per_stage):
            stride = 2 if b == 0 and s > 0 else 1
            x = residual_block(x, filters, stride, name=f"stage{s + 1}_block{b + 1}", norm=params.norm)
        stages.append(x)
    return stem, stages


def image_input(size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The flat standardized ``size*size`` image input, and it as a ``[size, size, 1]`` map."""
    inputs = tf.keras.Input(shape=(size * size,), name=spec.IMAGE_FEATURE)
    return inputs, layers.Reshape((size, size, 1))(inputs)


def residual_network(size: int, head: layers.Layer, name: str, params: spec.ModelParams) -> tf.keras.Model:
    """Flat standardized image -> residual stages -> global average pooling (or, with
    ``params.head == "flatten"``, the flattened last feature map) -> optional dropout -> ``head``.
    """
    inputs, x = image_input(size)
    x = residual_stages(x, params)[-1]
    x = layers.Flatten(name="flatten")(x) if params.head == "flatten" else layers.GlobalAveragePooling2D(name="pool")(x)
    if params.dropout:
        x = layers.Dropout(params.dropout)(x)
    return tf.keras.Model(inputs, head(x), name=name)
