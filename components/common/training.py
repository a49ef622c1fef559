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


def export_saved_model(network: tf.keras.Model, tf_transform_output: tft.TFTransformOutput,
                       serving_model_dir: str, label_columns, postprocess) -> None:
    """Save ``network`` (flat image -> outputs) with the signatures serving and TFMA use.

    * ``serving_default``: serialized raw ``tf.Example`` (no labels) -> Transform graph ->
      model -> ``postprocess(outputs)``, the model's outputs in user units.
    * ``transform_features``: serialized raw ``tf.Example`` -> transformed features; TFMA
      runs it to get the evaluation labels.
    """
    inputs = tf.keras.Input(shape=network.input_shape[1:], name=config.IMAGE_FEATURE)
    model = tf.keras.Model({config.IMAGE_FEATURE: inputs}, network(inputs))
    model.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    serving_spec = {k: v for k, v in raw_spec.items() if k not in label_columns}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(serialized):
        features = tf.io.parse_example(serialized, serving_spec)
        transformed = model.tft_layer(features)
        return postprocess(model(transformed, training=False))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(serialized):
        return model.tft_layer(tf.io.parse_example(serialized, raw_spec))

    model.save(serving_model_dir, save_format="tf", signatures={
        "serving_default": serve_examples,
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
