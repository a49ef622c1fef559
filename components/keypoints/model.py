"""The key-point network: a residual CNN regressing 30 normalized coordinates."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from emotion_ai.components import spec
from emotion_ai.components.common import resnet

N_OUTPUTS = len(spec.KEYPOINT_COLUMNS)
N_POINTS = len(spec.KEYPOINT_NAMES)
HEATMAP_CHANNELS = 64
layers = tf.keras.layers


def build(params: spec.ModelParams) -> tf.keras.Model:
    """Input: standardized image ``[batch, 96*96]``; output: normalized coordinates ``[batch, 30]``."""
    if params.head == "soft_argmax":
        return _soft_argmax_network(params)
    return resnet.residual_network(spec.KEYPOINT_IMAGE_SIZE, layers.Dense(N_OUTPUTS, name="coordinates"),
                                   "keypoint_resnet", params)


class SoftArgmax(layers.Layer):
    """Heatmap logits ``[batch, R, R, points]`` -> expected positions as normalized
    ``[batch, 2*points]`` (x, y interleaved), plus a learned per-coordinate offset.

    Cell ``j`` of an ``R``-wide map covers pixels ``j*s .. j*s+s-1`` of the image (``s =
    size / R``); its centre in the normalized coordinates of the targets is the grid value.
    The offset absorbs the half-cell the strided "same" convolutions shift features by.
    """

    def __init__(self, image_size: int, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size

    def build(self, input_shape):
        self.offset = self.add_weight(name="offset", shape=(2 * input_shape[-1],), initializer="zeros")
        # Cell centres are fixed by the map's size: computed once, not on every call.
        resolution = input_shape[1]
        cell = self.image_size / resolution
        half = (self.image_size - 1) / 2.0
        grid = (np.arange(resolution) * cell + (cell - 1.0) / 2.0 - half) / half
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        self.positions = tf.constant(np.stack([xs.ravel(), ys.ravel()], axis=-1), tf.float32)  # [R*R, 2]

    def call(self, logits):
        resolution, points = logits.shape[1], logits.shape[-1]
        weights = tf.nn.softmax(tf.reshape(logits, [-1, resolution * resolution, points]), axis=1)
        expected = tf.einsum("brp,rc->bpc", weights, self.positions)  # [batch, points, 2]
        return tf.reshape(expected, [-1, 2 * points]) + self.offset

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size}


def _soft_argmax_network(params: spec.ModelParams) -> tf.keras.Model:
    """Integral regression: a small top-down decoder (FPN-style lateral 1x1 convs, upsampled
    and summed) brings the deepest features back to the first stage's resolution, one
    heatmap per point, and each point is its heatmap's expected position. A dense head on
    pooled features has to encode position in channel values; here position stays spatial.
    """
    inputs, x = resnet.image_input(spec.KEYPOINT_IMAGE_SIZE)
    stem, stages = resnet.stem_and_stages(x, params)
    top = layers.Conv2D(HEATMAP_CHANNELS, 1, name=f"lateral{len(stages)}")(stages[-1])
    for i in range(len(stages) - 2, -1, -1):
        top = layers.UpSampling2D(2, interpolation="bilinear", name=f"up{i + 1}")(top)
        lateral = layers.Conv2D(HEATMAP_CHANNELS, 1, name=f"lateral{i + 1}")(stages[i])
        top = layers.Add(name=f"merge{i + 1}")([top, lateral])
    top = layers.Conv2D(HEATMAP_CHANNELS, 3, padding="same", use_bias=False, name="heatmap_conv")(top)
    top = resnet.norm_layer("heatmap_bn", params.norm)(top)
    top = layers.ReLU(name="heatmap_relu")(top)
    if params.dropout:
        top = layers.SpatialDropout2D(params.dropout, name="heatmap_dropout")(top)
    if params.fine_heatmaps and stem.shape[1] > top.shape[1]:
        # Twice the resolution (48x48 with the full profile's stem): the decoded features
        # upsampled, plus the stem's own (before its pool) through a 1x1 conv. Only 1x1
        # convolutions at the fine resolution: a 3x3 there would cost more than all stages.
        top = layers.UpSampling2D(stem.shape[1] // top.shape[1], interpolation="bilinear", name="up_fine")(top)
        fine = layers.Conv2D(HEATMAP_CHANNELS, 1, name="lateral_stem")(stem)
        top = layers.ReLU(name="fine_relu")(layers.Add(name="merge_fine")([top, fine]))
    logits = layers.Conv2D(N_POINTS, 1, name="heatmaps")(top)
    return tf.keras.Model(inputs, SoftArgmax(spec.KEYPOINT_IMAGE_SIZE, name="coordinates")(logits),
                          name="keypoint_soft_argmax")


# Wing loss (Feng et al., CVPR 2018) in the targets' units (1 = half the image, 48 px): log-
# shaped below WING_WIDTH so that errors of a pixel or two keep a strong gradient (Huber's
# vanishes there), linear beyond. 10 px and 2 px are the paper's values for faces this size.
WING_WIDTH = 10.0 / (spec.KEYPOINT_IMAGE_SIZE / 2)
WING_CURVATURE = 2.0 / (spec.KEYPOINT_IMAGE_SIZE / 2)
HUBER_DELTA = 0.05  # 2.4 px


def _wing(error: tf.Tensor) -> tf.Tensor:
    size = tf.abs(error)
    linear_offset = WING_WIDTH - WING_WIDTH * np.log1p(WING_WIDTH / WING_CURVATURE)
    return tf.where(size < WING_WIDTH, WING_WIDTH * tf.math.log1p(size / WING_CURVATURE), size - linear_offset)


def _huber(error: tf.Tensor) -> tf.Tensor:
    return tf.keras.losses.huber(tf.zeros_like(error)[..., None], error[..., None], delta=HUBER_DELTA)


POINTWISE_LOSSES = {"huber": _huber, "wing": _wing}


def masked_loss(y_true: tf.Tensor, y_pred: tf.Tensor, kind: str = "huber") -> tf.Tensor:
    """``kind`` (Huber or wing, ``POINTWISE_LOSSES``) over the known coordinates only.

    ``y_true`` is ``[targets(30), mask(30)]``: a missing key point contributes nothing,
    so rows with partial labels still teach the points they do have.
    """
    target, mask = y_true[:, :N_OUTPUTS], y_true[:, N_OUTPUTS:]
    err = POINTWISE_LOSSES[kind](y_pred - target)
    return tf.reduce_sum(err * mask, axis=-1) / tf.maximum(tf.reduce_sum(mask, axis=-1), 1.0)


def loss_for(params: spec.ModelParams):
    """The training loss ``params.keypoint_loss`` names, as a Keras loss function."""
    def loss(y_true, y_pred):
        return masked_loss(y_true, y_pred, params.keypoint_loss)
    loss.__name__ = f"masked_{params.keypoint_loss}"
    return loss
