"""Residual building blocks shared by the key-point and expression networks."""
from __future__ import annotations

import tensorflow as tf

from pipelines import config

layers = tf.keras.layers
# Keras' default 0.99 averages BatchNorm statistics over ~100 steps; an epoch of the key-point
# data is about 90 steps, so eval-mode statistics lagged the weights and the eval error
# jumped by 10x between epochs (measured). 0.9 tracks the weights within ~10 steps.
BN_MOMENTUM = 0.9


def _bn(name: str) -> layers.Layer:
    return layers.BatchNormalization(momentum=BN_MOMENTUM, name=name)


def residual_block(x: tf.Tensor, filters: int, stride: int, name: str) -> tf.Tensor:
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
        shortcut = _bn(f"{name}_proj_bn")(shortcut)
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = _bn(f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = _bn(f"{name}_bn2")(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y)


def residual_trunk(inputs: tf.Tensor, stage_filters, blocks_per_stage: int, stem_stride: int = 1,
                   stem_pool: bool = False, spatial_head: bool = False) -> tf.Tensor:
    """Conv stem (optionally followed by a 3x3/2 max pool, as in ResNet), then residual
    stages (the first block of each later stage halves the resolution through a projection
    shortcut), then global average pooling, or, with ``spatial_head``, the flattened last
    feature map: regression of positions keeps where a feature was, which pooling discards.

    Training cost on 2 CPU cores is dominated by the convolutions at the stem's resolution;
    the stem pool quarters it (measured about 4x more images/s for the same stages).
    """
    x = layers.Conv2D(stage_filters[0], 3, strides=stem_stride, padding="same", use_bias=False,
                      name="stem_conv")(inputs)
    x = _bn("stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    if stem_pool:
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for s, filters in enumerate(stage_filters):
        for b in range(blocks_per_stage):
            stride = 2 if b == 0 and s > 0 else 1
            x = residual_block(x, filters, stride, name=f"stage{s + 1}_block{b + 1}")
    if spatial_head:
        return layers.Flatten(name="flatten")(x)
    return layers.GlobalAveragePooling2D(name="pool")(x)


def residual_network(size: int, head: layers.Layer, name: str, params: config.ModelParams) -> tf.keras.Model:
    """Flat standardized ``size*size`` image -> residual trunk -> optional dropout -> ``head``.

    Both branches' networks are this, differing only in image size and head.
    """
    inputs = tf.keras.Input(shape=(size * size,), name=config.IMAGE_FEATURE)
    x = layers.Reshape((size, size, 1))(inputs)
    x = residual_trunk(x, params.stage_filters, params.blocks_per_stage, params.stem_stride, params.stem_pool,
                       params.spatial_head)
    if params.dropout:
        x = layers.Dropout(params.dropout)(x)
    return tf.keras.Model(inputs, head(x), name=name)
