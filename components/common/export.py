"""The SavedModel contract of both branches: the signatures TF Serving, TFMA and the report call."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from emotion_ai.components import spec
from emotion_ai.components.common import image
from emotion_ai.components.common.callbacks import timed
from emotion_ai.components.common.views import average_views


def export_saved_model(network: tf.keras.Model, tf_transform_output: tft.TFTransformOutput,
                       serving_model_dir: str, pixel_column: str, image_size: int, postprocess,
                       views: list, unview) -> None:
    """Save ``network`` (flat standardized image -> outputs) with the signatures serving and
    TFMA use. Every signature runs the Transform graph, so preprocessing is the training one.

    * ``serving_default``: encoded image bytes (``images``; base64 in TF Serving's JSON) ->
      outputs in user units; key points in the input image's pixel coordinates. The decoded
      pixels go to the network scaled as the Transform scales them (``image_scaling``), not
      written out as pixel strings for the Transform layer to parse back.
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
    inputs = tf.keras.Input(shape=network.input_shape[1:], name=spec.IMAGE_FEATURE)
    model = tf.keras.Model({spec.IMAGE_FEATURE: inputs}, network(inputs))
    model.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    serving_spec = {pixel_column: raw_spec[pixel_column]}

    mean, std = image_scaling(model.tft_layer, pixel_column, image_size)

    def run(features):
        images = model.tft_layer(features)[spec.IMAGE_FEATURE]
        return average_views(network, images, image_size, views, unview)

    def run_pixels(pixel_strings):
        return run({pixel_column: tf.reshape(pixel_strings, [-1, 1])})

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=spec.SERVING_IMAGES_INPUT)])
    def serve_images(images):
        pixels, image_hw = image.decode_images(images, image_size)
        scaled = image.scale_images(pixels, mean, std)
        return postprocess(average_views(network, scaled, image_size, views, unview), image_hw)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=spec.SERVING_PIXELS_INPUT)])
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



def image_scaling(tft_layer, pixel_column: str, size: int) -> tuple[float, float]:
    """The dataset mean and deviation the Transform scales images by (``image.image_features``
    outputs them), read from the Transform layer itself; checked on a textured probe image:
    ``image.scale_images`` with them must give the Transform's own image output, else the
    export fails rather than serve images scaled otherwise than training saw them."""
    probe = np.random.default_rng(0).integers(0, 256, size * size)
    outputs = tft_layer({pixel_column: tf.constant([[" ".join(map(str, probe))]])})
    mean_name, std_name = spec.IMAGE_SCALING
    mean, std = float(outputs[mean_name].numpy().reshape(-1)[0]), float(outputs[std_name].numpy().reshape(-1)[0])
    ours = image.scale_images(tf.constant(probe[None, :], tf.float32), mean, std).numpy()
    theirs = outputs[spec.IMAGE_FEATURE].numpy()
    if not np.allclose(ours, theirs, atol=1e-4):
        raise ValueError(f"the Transform's image output is not image.scale_images(pixels, {mean}, {std}) "
                         f"(max difference {np.abs(ours - theirs).max():.3g}): keep both in step")
    return mean, std
