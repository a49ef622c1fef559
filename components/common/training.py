"""Trainer plumbing shared by both branches: input datasets and SavedModel export.

The model-specific parts (network, loss, targets, outputs) stay in each branch's
``trainer.py``; this module only holds what is identical for the two.
"""
from __future__ import annotations

import contextlib
import json
import math
import time

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from components.common import augment
from pipelines import config


def transformed_dataset(file_pattern, data_accessor, tf_transform_output: tft.TFTransformOutput,
                        batch_size: int) -> tf.data.Dataset:
    """Batches of transformed feature dicts, one pass over the files in order."""
    return data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, num_epochs=1, shuffle=False),
        tf_transform_output.transformed_metadata.schema,
    ).prefetch(tf.data.AUTOTUNE)


def to_arrays(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """One pass over batches of ``(inputs, targets)`` into two arrays."""
    xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in dataset))
    return np.concatenate(xs), np.concatenate(ys)


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, augment=None, seed: int = 0
            ) -> tf.data.Dataset:
    """Batches from in-memory arrays, reshuffled every epoch over the whole split.

    The datasets of this project fit in memory many times over (the real ones are 110 MB
    and 150 MB as float32); parsing the transformed tf.Examples once instead of every
    epoch is what lets the many short epochs of the ``full`` profile run at model speed.
    ``augment(x, y)`` is applied per batch, to the training split only.
    """
    data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size)
    if augment is not None:
        data = data.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return data.prefetch(tf.data.AUTOTUNE)


def prepare(fn_args: tfx.components.FnArgs, to_xy):
    """Hyperparameters, the Transform output, and the train and eval splits as arrays of
    ``(inputs, targets)`` made by ``to_xy`` from transformed feature dicts."""
    params = config.ModelParams.from_dict(fn_args.custom_config["model"])
    tf.keras.utils.set_random_seed(0)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)

    def load(files):
        data = transformed_dataset(files, fn_args.data_accessor, tft_output, params.batch_size)
        return to_arrays(data.map(to_xy))

    with timed("reading the transformed splits"):
        return params, tft_output, load(fn_args.train_files), load(fn_args.eval_files)


@contextlib.contextmanager
def timed(what: str):
    """Log how long a Trainer step took (not every runner's log has timestamps)."""
    start = time.time()
    yield
    logging.info("%s took %.1f s", what, time.time() - start)


class BestWeights(tf.keras.callbacks.Callback):
    """Keep the weights of the best epoch on the eval split and restore them at the end
    (Keras' EarlyStopping only restores when it stops early)."""

    def __init__(self, monitor: str, mode: str):
        super().__init__()
        self.monitor, self.sign = monitor, (1.0 if mode == "min" else -1.0)
        self.best, self.best_epoch, self.weights = math.inf, None, None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and self.sign * value < self.best:
            self.best, self.best_epoch, self.weights = self.sign * value, epoch, self.model.get_weights()

    def on_train_end(self, logs=None):
        if self.weights is not None:
            self.model.set_weights(self.weights)
            logging.info("restored the weights of epoch %d (%s %.4f)", self.best_epoch + 1, self.monitor,
                         self.sign * self.best)


class EpochTimer(tf.keras.callbacks.Callback):
    """Adds ``epoch_seconds`` (training and eval) and ``images_per_second`` (training
    images / epoch seconds) to each epoch's logs, so they land in the history and MLflow."""

    def __init__(self, train_images: int):
        super().__init__()
        self.train_images, self.start = train_images, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.start
        if logs is not None:
            logs["epoch_seconds"] = seconds
            logs["images_per_second"] = self.train_images / seconds
        # The CLI's progress lines read this one (pipelines/console.py).
        logging.info("epoch %d/%d done in %.1f s", epoch + 1, self.params.get("epochs") or 0, seconds)


class RecalibrateBatchNorm(tf.keras.callbacks.Callback):
    """Before each evaluation, re-estimate BatchNorm's moving statistics on clean
    (unaugmented) training batches ("precise BN").

    Measured on real key points: the moving statistics gathered during augmented training
    made eval-mode predictions jump (eval RMSE 4.7 -> 27.8 -> 4.7 px between epochs, single
    outputs 20x out of range) while the same weights with batch statistics improved every
    epoch. Recalibrating on clean images makes eval mode agree with training; about 1,300
    forward passes per epoch.
    """

    def __init__(self, clean_batches: tf.data.Dataset, steps: int = 20):
        super().__init__()
        self.clean_batches, self.steps = clean_batches, steps

    def on_test_begin(self, logs=None):
        for x, _ in self.clean_batches.take(self.steps):
            self.model(x, training=True)


def fit(network: tf.keras.Model, params: config.ModelParams, train: tuple, evaluation: tuple, loss, metrics,
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


def mirror_images(flat: tf.Tensor, size: int) -> tf.Tensor:
    """Horizontally mirror flat ``[batch, size*size]`` images."""
    return tf.reshape(tf.reverse(tf.reshape(flat, [-1, size, size]), axis=[2]), [-1, size * size])


def tta_views(params: config.ModelParams, size: int) -> list[tuple[bool, tuple[float, float]]]:
    """The test-time views the served model averages over, as ``(mirrored, shift)``; the
    shift in normalized coordinates (``params.tta_shift_px`` pixels on a 3x3 grid)."""
    half = (size - 1) / 2.0
    steps = (0, params.tta_shift_px, -params.tta_shift_px) if params.tta_shift_px else (0,)
    mirrors = (False, True) if params.flip_tta else (False,)
    return [(m, (dx / half, dy / half)) for m in mirrors for dx in steps for dy in steps]


def view_images(flat: tf.Tensor, size: int, mirrored: bool, shift: tuple[float, float]) -> tf.Tensor:
    """One test-time view of flat images: mirrored, then shifted (border reflected, as the
    training augmentation fills it)."""
    if mirrored:
        flat = mirror_images(flat, size)
    if shift == (0.0, 0.0):
        return flat
    batch = tf.shape(flat)[0]
    images = augment.transform_images(tf.reshape(flat, [-1, size, size, 1]), tf.eye(2, batch_shape=[batch]),
                                      tf.tile(tf.constant([shift], tf.float32), [batch, 1]))
    return tf.reshape(images, [-1, size * size])


def average_views(network: tf.keras.Model, images: tf.Tensor, size: int, views, unview) -> tf.Tensor:
    """The mean over the test-time ``views`` of the network's outputs on flat transformed
    images, each mapped back to the original image by ``unview(outputs, mirrored, shift)``."""
    # All views in one call: on CPU one batch of views*n images is much faster than a call
    # per view (measured 35 vs 50 ms for one image and 18 views).
    n = tf.shape(images)[0]
    stacked = tf.concat([view_images(images, size, mirrored, shift) for mirrored, shift in views], axis=0)
    outputs = network(stacked, training=False)
    return tf.add_n([unview(outputs[i * n:(i + 1) * n], mirrored, shift)
                     for i, (mirrored, shift) in enumerate(views)]) / len(views)


def predict_views(network: tf.keras.Model, x: np.ndarray, size: int, views, unview, batch_size: int = 64
                  ) -> np.ndarray:
    """What the served graph computes from already-transformed image arrays."""
    return np.concatenate([average_views(network, tf.constant(x[i:i + batch_size]), size, views, unview).numpy()
                           for i in range(0, len(x), batch_size)])


def decode_images(images: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Encoded images (PNG, JPEG, BMP, GIF; any size, colour or grey) -> pixel strings of
    ``size`` x ``size`` grey images, as in the datasets, and each input's ``(height, width)``."""

    def one(encoded):
        image = tf.io.decode_image(encoded, channels=1, expand_animations=False)
        hw = tf.shape(image)[:2]
        resized = tf.image.resize(tf.cast(image, tf.float32), [size, size], method="bilinear", antialias=True)
        pixels = tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.int32)
        return tf.strings.reduce_join(tf.strings.as_string(tf.reshape(pixels, [-1])), separator=" "), hw

    return tf.map_fn(one, images, fn_output_signature=(tf.TensorSpec([], tf.string), tf.TensorSpec([2], tf.int32)))


def export_saved_model(network: tf.keras.Model, tf_transform_output: tft.TFTransformOutput,
                       serving_model_dir: str, pixel_column: str, image_size: int, postprocess,
                       views: list, unview) -> None:
    """Save ``network`` (flat standardized image -> outputs) with the signatures serving and
    TFMA use. Every signature runs the Transform graph, so preprocessing is the training one.

    * ``serving_default``: encoded image bytes (``images``; base64 in TF Serving's JSON) ->
      outputs in user units; key points in the input image's pixel coordinates.
    * ``serving_pixels``: the datasets' space-separated pixel strings (``pixels``), for batch
      scoring of CSV rows.
    * ``serving_examples``: serialized raw ``tf.Example`` (``examples``); TFMA evaluates it.
    * ``transform_features``: serialized raw ``tf.Example`` -> transformed features; TFMA
      takes the evaluation labels from it.

    ``postprocess(outputs, image_hw)`` turns network outputs into the served dict;
    ``image_hw`` is None unless the input was an encoded image. The served output is the
    mean of the network's outputs on each of ``views`` (``tta_views``), each mapped back to
    the original image by ``unview(outputs, mirrored, shift)``: test-time augmentation
    inside the graph, so every client (and the Evaluator) gets it.
    """
    inputs = tf.keras.Input(shape=network.input_shape[1:], name=config.IMAGE_FEATURE)
    model = tf.keras.Model({config.IMAGE_FEATURE: inputs}, network(inputs))
    model.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    serving_spec = {pixel_column: raw_spec[pixel_column]}

    def run(features):
        images = model.tft_layer(features)[config.IMAGE_FEATURE]
        return average_views(network, images, image_size, views, unview)

    def run_pixels(pixel_strings):
        return run({pixel_column: tf.reshape(pixel_strings, [-1, 1])})

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve_images(images):
        pixel_strings, image_hw = decode_images(images, image_size)
        return postprocess(run_pixels(pixel_strings), image_hw)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="pixels")])
    def serve_pixels(pixels):
        return postprocess(run_pixels(pixels), None)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(serialized):
        return postprocess(run(tf.io.parse_example(serialized, serving_spec)), None)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(serialized):
        return model.tft_layer(tf.io.parse_example(serialized, raw_spec))

    with timed("exporting the SavedModel"):
        model.save(serving_model_dir, save_format="tf", signatures={
            "serving_default": serve_images,
            "serving_pixels": serve_pixels,
            "serving_examples": serve_examples,
            "transform_features": transform_features,
        })


def save_history(history: tf.keras.callbacks.History, fn_args: tfx.components.FnArgs) -> None:
    """Per-epoch training curves beside the TensorBoard logs, for MLflow and reports."""
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(f"{fn_args.model_run_dir}/history.json", "w") as f:
        f.write(json.dumps({k: [float(v) for v in values] for k, values in history.history.items()}))
