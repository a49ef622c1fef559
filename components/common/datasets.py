"""The Trainers' input: the Transform's output splits, read once into arrays, then batched
(shuffled and augmented for training) with tf.data."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from emotion_ai.components import spec
from emotion_ai.components.common.callbacks import timed


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
    params = spec.ModelParams.from_dict(fn_args.custom_config["model"])
    tf.keras.utils.set_random_seed(0)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)

    def load(files):
        data = transformed_dataset(files, fn_args.data_accessor, tft_output, params.batch_size)
        return to_arrays(data.map(to_xy))

    with timed("reading the transformed splits"):
        return params, tft_output, load(fn_args.train_files), load(fn_args.eval_files)

