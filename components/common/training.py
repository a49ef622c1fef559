"""Trainer plumbing shared by both branches: input datasets and SavedModel export.

The model-specific parts (network, loss, targets, outputs) stay in each branch's
``trainer.py``; this module only holds what is identical for the two.
"""
from __future__ import annotations

import json

import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from pipelines import config


def transformed_dataset(file_pattern, data_accessor, tf_transform_output: tft.TFTransformOutput,
                        batch_size: int, shuffle: bool, seed: int = 0) -> tf.data.Dataset:
    """Batches of transformed feature dicts, one pass over the files."""
    return data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, num_epochs=1, shuffle=shuffle,
                                       shuffle_seed=seed, shuffle_buffer_size=2048),
        tf_transform_output.transformed_metadata.schema,
    ).prefetch(tf.data.AUTOTUNE)


def prepare(fn_args: tfx.components.FnArgs, to_xy):
    """Hyperparameters, the Transform output, and the train and eval datasets of
    ``(inputs, targets)`` pairs made by ``to_xy`` from transformed feature dicts."""
    params = config.ModelParams(**fn_args.custom_config["model"])
    tf.keras.utils.set_random_seed(0)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)

    def load(files, shuffle):
        return transformed_dataset(files, fn_args.data_accessor, tft_output, params.batch_size, shuffle).map(to_xy)

    return params, tft_output, load(fn_args.train_files, True), load(fn_args.eval_files, False)


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
                       serving_model_dir: str, pixel_column: str, image_size: int, postprocess) -> None:
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
    ``image_hw`` is None unless the input was an encoded image.
    """
    inputs = tf.keras.Input(shape=network.input_shape[1:], name=config.IMAGE_FEATURE)
    model = tf.keras.Model({config.IMAGE_FEATURE: inputs}, network(inputs))
    model.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    serving_spec = {pixel_column: raw_spec[pixel_column]}

    def run(features):
        return model(model.tft_layer(features), training=False)

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


def keras_callbacks(fn_args: tfx.components.FnArgs, monitor: str) -> list:
    """TensorBoard logs where TFX expects them; on the eval split, halve the learning rate
    on a plateau and stop early, keeping the best weights."""
    return [
        tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq="epoch"),
        tf.keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=2, min_lr=1e-5),
        tf.keras.callbacks.EarlyStopping(monitor=monitor, patience=5, restore_best_weights=True),
    ]
