"""The training recipe both branches (and the plain-Keras benchmark) share, and the training
curves it leaves for MLflow and the report.

The model-specific parts (network, loss, targets, outputs) stay in each branch's
``trainer.py``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time

import numpy as np
import tensorflow as tf
from absl import logging
from tfx import v1 as tfx

from emotion_ai.components import spec
from emotion_ai.components.common import views
from emotion_ai.components.common.callbacks import BestWeights, EpochTimer, RecalibrateBatchNorm, timed
from emotion_ai.components.common.datasets import batches


def distribution_strategy(devices: list[str] | None = None) -> tf.distribute.Strategy:
    """How a Trainer spreads training over ``devices`` (default: every visible GPU): one
    replica per device with ``MirroredStrategy`` when there are two or more (each batch split
    between them, gradients summed), else TensorFlow's default (one GPU or the CPU). The
    network is built in its scope; ``fit`` then runs on it with no other change."""
    if devices is None:
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    if len(devices) > 1:
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def fit(network: tf.keras.Model, params: spec.ModelParams, train: tuple, evaluation: tuple, loss, metrics,
        monitor: str, mode: str, augment=None, class_weight=None, log_dir: str | None = None,
        bar: float | None = None, count: tuple[int, int] | None = None, reference: bool = True
        ) -> tf.keras.callbacks.History:
    """The training recipe both branches (and the plain-Keras benchmark) share: AdamW with
    decoupled weight decay (not on BatchNorm or biases), linear warm-up then cosine decay to
    zero, BatchNorm statistics re-estimated on clean images before each eval, early
    stopping, and the best eval epoch's weights kept. ``augment(x, y)`` maps each training
    batch when ``params.augmentation`` is set. ``metrics`` are made by calling each of them
    (classes or partials): metrics, like the optimizer, are created in the network's
    distribution strategy scope, which Keras requires with ``MirroredStrategy``. ``bar``: an
    eval figure the network's current weights already reach; an epoch must beat it to
    replace them (``distill``). ``count``: (epochs before, epochs in all) for the progress
    lines; by default the schedule's epochs and the distillation's to come. ``reference``:
    measure the plain-Keras throughput reference after training (``params.reference_steps``)."""
    if params.epochs <= 0:  # nothing scheduled (a start hook may ask for none: straight to distillation)
        history = tf.keras.callbacks.History()
        history.history = {}
        return history
    steps = math.ceil(len(train[0]) / params.batch_size)
    warmup = min(params.warmup_epochs, max(params.epochs - 1, 0)) * steps
    schedule = tf.keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=params.learning_rate / 10 if warmup else params.learning_rate,
        decay_steps=max(params.epochs * steps - warmup, 1), alpha=0.0,
        warmup_target=params.learning_rate if warmup else None, warmup_steps=warmup)
    with network.distribute_strategy.scope():  # optimizer and metrics belong to the strategy they are made in
        optimizer = tf.keras.optimizers.AdamW(learning_rate=schedule, weight_decay=params.weight_decay)
        metrics = [make() for make in metrics]
    optimizer.exclude_from_weight_decay(var_names=["bn", "gn", "bias", "offset"])
    network.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    callbacks = [EpochTimer(len(train[0]), count or (0, params.epochs + params.distill_epochs)),
                 BestWeights(monitor, mode, bar),
                 tf.keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=max(5, params.epochs // 3))]
    if any(isinstance(layer, tf.keras.layers.BatchNormalization) for layer in network.submodules):
        # GroupNorm networks have no moving statistics to re-estimate; after the EpochTimer,
        # which counts this as eval time
        callbacks.insert(1, RecalibrateBatchNorm(batches(*train, 64, shuffle=True, seed=1)))
    if log_dir:
        callbacks.append(tf.keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"))
    with timed("training"):
        history = network.fit(
            batches(*train, params.batch_size, shuffle=True, augment=augment if params.augmentation else None),
            validation_data=batches(*evaluation, params.batch_size, shuffle=False),
            epochs=params.epochs, verbose=2, class_weight=class_weight, callbacks=callbacks)
    if params.reference_steps and reference:
        trained = history.history["train_images_per_second"]
        reference = reference_rate(network, params, train, loss, class_weight)
        history.history["reference_images_per_second"] = [reference] * len(trained)
        mean = sum(trained) / len(trained)
        logging.info("throughput: training %.1f images/s (training steps, mean of %d epochs); the same network in "
                     "plain Keras on random tensors, batch %d: %.1f images/s; ratio %.2f", mean, len(trained),
                     params.batch_size, reference, mean / reference)
    return history


def reference_rate(network: tf.keras.Model, params: spec.ModelParams, train: tuple, loss, class_weight=None
                   ) -> float:
    """Training images/s of a fresh copy of ``network`` (same architecture, new weights) in
    plain Keras: ``params.reference_steps`` batches of random images with targets of the
    training split's shapes, the same batch size, optimizer (AdamW), loss and class weights,
    after two batches that build the training step; timed twice, the faster kept, so that one
    stall of the host does not decide the figure (one untimed-twice reference read 62 img/s
    for a network its Trainer had just run at 122). What this CPU does with the network
    today, with none of the Trainer's input pipeline (shuffling, augmentation) around it."""
    batch, steps = params.batch_size, params.reference_steps
    with network.distribute_strategy.scope():
        twin = tf.keras.models.clone_model(network)
        twin.compile(optimizer=tf.keras.optimizers.AdamW(params.learning_rate, weight_decay=params.weight_decay),
                     loss=loss)
    images = np.random.default_rng(0).standard_normal((batch * steps, *train[0].shape[1:])).astype(np.float32)
    targets = np.resize(train[1], (batch * steps, *train[1].shape[1:]))
    twin.fit(images[:2 * batch], targets[:2 * batch], batch_size=batch, epochs=1, verbose=0, shuffle=False,
             class_weight=class_weight)
    fastest = math.inf
    for _ in range(2):
        start = time.perf_counter()
        twin.fit(images, targets, batch_size=batch, epochs=1, verbose=0, shuffle=False, class_weight=class_weight)
        fastest = min(fastest, time.perf_counter() - start)
    return batch * steps / fastest


class _Distiller(tf.keras.Model):
    """The network being taught, with its frozen teacher: each training step blends the
    teacher's view average on the (augmented) batch into the targets, then trains the
    network on them as usual. Calls, evaluation and BatchNorm recalibration see the network
    alone. The teacher runs inside the step, so on accelerators it runs where training does."""

    def __init__(self, network, teacher, size, teacher_views, unview, blend, weight):
        super().__init__(name="distiller")
        self.network, self.teacher = network, teacher
        self.size, self.teacher_views, self.unview, self.blend, self.weight = size, teacher_views, unview, blend, weight

    def call(self, x, training=False):
        return self.network(x, training=training)

    def train_step(self, data):
        x, y, sample_weight = tf.keras.utils.unpack_x_y_sample_weight(data)
        taught = views.average_views(self.teacher, x, self.size, self.teacher_views, self.unview)
        y = self.blend(y, tf.stop_gradient(taught), self.weight)
        return super().train_step((x, y) if sample_weight is None else (x, y, sample_weight))


def distill(network: tf.keras.Model, params: spec.ModelParams, train: tuple, evaluation: tuple, loss, metrics,
            monitor: str, mode: str, size: int, unview, blend, augment=None, class_weight=None,
            log_dir: str | None = None, schedule: tf.keras.callbacks.History | None = None
            ) -> tf.keras.callbacks.History | None:
    """Distil the test-time view average into ``network`` itself (``params.distill_epochs``).

    A frozen copy of the trained network is the teacher: on every augmented training batch
    its mean over ``views.tta_views`` (mapped back by ``unview``) is blended into the targets
    by ``blend(targets, taught, weight)``, and the network trains on them for a short
    schedule at a fraction of the learning rate (no warm-up), the best eval epoch kept: with
    the ``schedule``'s history, only if it beats that schedule's best eval figure (both are
    the network in one pass), else the network keeps the schedule's weights (on real key
    points the 5 distillation epochs ended at 1.5548 px on the eval split where the schedule
    had reached 1.5520). The network then answers in one pass what the average answered in many (the served graph
    uses ``views.served_views``). Returns the distillation's history, or None when the
    parameters ask for none.
    """
    if not params.distill_epochs:
        return None
    with network.distribute_strategy.scope():  # the teacher's variables where the network's are
        teacher = tf.keras.models.clone_model(network)
        teacher.set_weights(network.get_weights())
        teacher.trainable = False
        taught = _Distiller(network, teacher, size, views.tta_views(params, size), unview, blend,
                            params.distill_weight)
    short = dataclasses.replace(params, epochs=params.distill_epochs, warmup_epochs=0,
                                learning_rate=params.learning_rate * params.distill_learning_rate_scale)
    scheduled = (schedule.history.get(monitor) if schedule is not None else None) or None
    before = len(schedule.history.get("loss", [])) if schedule is not None else 0
    bar = (min(scheduled) if mode == "min" else max(scheduled)) if scheduled else None
    logging.info("distilling %d view(s) into one pass: %d epoch(s) at learning rate %.3g, teacher weight %.2f",
                 len(taught.teacher_views), short.epochs, short.learning_rate, params.distill_weight)
    with timed("distillation"):
        return fit(taught, short, train, evaluation, loss, metrics, monitor, mode, augment=augment,
                   class_weight=class_weight, log_dir=log_dir, bar=bar, count=(before, before + short.epochs),
                   reference=False)  # the distiller holds a teacher: the schedule's reference says it


def save_history(history: tf.keras.callbacks.History, fn_args: tfx.components.FnArgs,
                 distilled: tf.keras.callbacks.History | None = None) -> None:
    """Per-epoch training curves beside the TensorBoard logs, for MLflow and reports. The
    distillation's epochs (if any) follow the schedule's; ``distilling`` is 1 on those."""
    curves = {k: [float(v) for v in values] for k, values in history.history.items()}
    scheduled = len(history.history.get("loss", []))
    extra = len(distilled.history.get("loss", [])) if distilled is not None else 0
    if extra:
        curves = {k: v + [float(x) for x in distilled.history.get(k, [])] for k, v in curves.items()}
    curves["distilling"] = [0.0] * scheduled + [1.0] * extra
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(f"{fn_args.model_run_dir}/history.json", "w") as f:
        f.write(json.dumps(curves))



# Beside each exported SavedModel (TF Serving's folder for extra files): the trained network's
# own weights, which a later run's Trainer can start from (``warm_start``).
NETWORK_WEIGHTS = "assets.extra/network.weights.h5"
WARM_START_FILE = "warm_start.json"  # beside the training curves: whether and from what a run started


def save_network_weights(network: tf.keras.Model, serving_model_dir: str) -> None:
    """The network's weights beside its SavedModel (h5 is written locally, then copied: any
    filesystem ``fileio`` reaches, ``gs://`` too)."""
    with tempfile.TemporaryDirectory() as local:
        network.save_weights(os.path.join(local, "w.h5"))
        target = os.path.join(serving_model_dir, NETWORK_WEIGHTS)
        tf.io.gfile.makedirs(os.path.dirname(target))
        tf.io.gfile.copy(os.path.join(local, "w.h5"), target, overwrite=True)


def load_network_weights(network: tf.keras.Model, model_dir: str) -> None:
    """Load the weights ``save_network_weights`` left beside the SavedModel in ``model_dir``
    into ``network`` (same architecture, else Keras raises ValueError or KeyError). Copied
    to a local ``w.h5`` first: from any filesystem ``fileio`` reaches, and because tf-keras
    reads a ``*.weights.h5`` name as the Keras 3 format."""
    with tempfile.TemporaryDirectory() as local:
        tf.io.gfile.copy(os.path.join(model_dir, NETWORK_WEIGHTS), os.path.join(local, "w.h5"))
        network.load_weights(os.path.join(local, "w.h5"))


def warm_start(network: tf.keras.Model, params: spec.ModelParams, fn_args: tfx.components.FnArgs
               ) -> spec.ModelParams:
    """Start ``network`` from the served model's weights when the run asks for it
    (``custom_config["warm_start"]``: epochs and a learning-rate scale) and its ``base_model``
    (the model the branch serves now, ``ServedModel``) has weights of the same architecture;
    return the schedule to train with: the short one when warm, ``params`` when cold. What
    happened is written to ``warm_start.json`` beside the training curves (the summary and
    the report say it)."""
    warm = (fn_args.custom_config or {}).get("warm_start")
    if not warm:
        return params
    if not fn_args.base_model or not tf.io.gfile.exists(os.path.join(fn_args.base_model, NETWORK_WEIGHTS)):
        return _cold(fn_args, params, "no served model with network weights")
    try:
        load_network_weights(network, fn_args.base_model)
    except (ValueError, KeyError) as error:  # another architecture (the profile's parameters changed)
        return _cold(fn_args, params, f"the served network does not fit this one ({str(error)[:200]})")
    warm_params = dataclasses.replace(params, epochs=int(warm["epochs"]), warmup_epochs=0,
                                      learning_rate=params.learning_rate * float(warm["learning_rate_scale"]))
    logging.info("warm start: from %s, %d epoch(s) at learning rate %.3g", fn_args.base_model, warm_params.epochs,
                 warm_params.learning_rate)
    _record(fn_args, {"warm": True, "base_model": fn_args.base_model, "epochs": warm_params.epochs,
                      "learning_rate": warm_params.learning_rate})
    return warm_params


def _cold(fn_args, params: spec.ModelParams, reason: str) -> spec.ModelParams:
    logging.warning("warm start: %s; training from scratch", reason)
    _record(fn_args, {"warm": False, "reason": reason, "epochs": params.epochs})
    return params


def _record(fn_args, found: dict) -> None:
    if fn_args.model_run_dir:
        tf.io.gfile.makedirs(fn_args.model_run_dir)
        with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, WARM_START_FILE), "w") as f:
            f.write(json.dumps(found))
