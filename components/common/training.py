"""The training recipe both branches (and the plain-Keras benchmark) share, and the training
curves it leaves for MLflow and the report.

The model-specific parts (network, loss, targets, outputs) stay in each branch's
``trainer.py``.
"""
from __future__ import annotations

import json
import math

import tensorflow as tf
from tfx import v1 as tfx

from emotion_ai.components import spec
from emotion_ai.components.common.callbacks import BestWeights, EpochTimer, RecalibrateBatchNorm, timed
from emotion_ai.components.common.datasets import batches


def fit(network: tf.keras.Model, params: spec.ModelParams, train: tuple, evaluation: tuple, loss, metrics,
        monitor: str, mode: str, augment=None, class_weight=None, log_dir: str | None = None
        ) -> tf.keras.callbacks.History:
    """The training recipe both branches (and the plain-Keras benchmark) share: AdamW with
    decoupled weight decay (not on BatchNorm or biases), linear warm-up then cosine decay to
    zero, BatchNorm statistics re-estimated on clean images before each eval, early
    stopping, and the best eval epoch's weights kept."""
    steps = math.ceil(len(train[0]) / params.batch_size)
    warmup = min(params.warmup_epochs, max(params.epochs - 1, 0)) * steps
    schedule = tf.keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=params.learning_rate / 10 if warmup else params.learning_rate,
        decay_steps=max(params.epochs * steps - warmup, 1), alpha=0.0,
        warmup_target=params.learning_rate if warmup else None, warmup_steps=warmup)
    optimizer = tf.keras.optimizers.AdamW(learning_rate=schedule, weight_decay=params.weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["bn", "gn", "bias", "offset"])
    network.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    callbacks = [EpochTimer(len(train[0])), BestWeights(monitor, mode),
                 tf.keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=max(5, params.epochs // 3))]
    if any(isinstance(layer, tf.keras.layers.BatchNormalization) for layer in network.submodules):
        # GroupNorm networks have no moving statistics to re-estimate
        callbacks.insert(0, RecalibrateBatchNorm(batches(*train, 64, shuffle=True, seed=1)))
    if log_dir:
        callbacks.append(tf.keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"))
    with timed("training"):
        return network.fit(
            batches(*train, params.batch_size, shuffle=True, augment=augment if params.augmentation else None),
            validation_data=batches(*evaluation, params.batch_size, shuffle=False),
            epochs=params.epochs, verbose=2, class_weight=class_weight, callbacks=callbacks)


def save_history(history: tf.keras.callbacks.History, fn_args: tfx.components.FnArgs) -> None:
    """Per-epoch training curves beside the TensorBoard logs, for MLflow and reports."""
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(f"{fn_args.model_run_dir}/history.json", "w") as f:
        f.write(json.dumps({k: [float(v) for v in values] for k, values in history.history.items()}))

