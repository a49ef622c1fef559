"""The shared training recipe: BatchNorm recalibration on clean batches."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from components.common import training


def _bn_model():
    inputs = tf.keras.Input(shape=(3,))
    bn = tf.keras.layers.BatchNormalization(momentum=0.9, name="bn")
    model = tf.keras.Model(inputs, bn(inputs))
    return model, bn


def test_recalibration_sets_moving_statistics_to_the_mean_over_all_batches():
    rng = np.random.default_rng(0)
    # Batches with very different means: an exponential average would favour the last ones.
    x = np.concatenate([rng.normal(loc, 1.0, size=(16, 3)) for loc in (-5.0, 0.0, 2.0, 9.0)]).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices((x, np.zeros(len(x), np.float32))).batch(16)
    model, bn = _bn_model()
    callback = training.RecalibrateBatchNorm(data, steps=4)
    callback.set_model(model)
    callback.on_test_begin()
    batch_means = x.reshape(4, 16, 3).mean(axis=1)
    np.testing.assert_allclose(bn.moving_mean.numpy(), batch_means.mean(axis=0), rtol=1e-5, atol=1e-5)
    batch_vars = x.reshape(4, 16, 3).var(axis=1)  # tf.keras averages the biased batch variance
    np.testing.assert_allclose(bn.moving_variance.numpy(), batch_vars.mean(axis=0), rtol=1e-4)
    assert bn.momentum == 0.9, "the layer's own momentum is restored for training"
