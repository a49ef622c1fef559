"""Transform: the training path (tft_beam) and the serving path (the exported transform
graph applied to raw features) give the same features, and missing key points are masked."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from emotion_ai.components import spec
from emotion_ai.components.emotion import transform as emotion_transform
from emotion_ai.components.keypoints import transform as keypoints_transform


def _analyze_and_transform(preprocessing_fn, raw_spec, rows, tmp_path):
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(raw_spec))
    with tft_beam.Context(temp_dir=str(tmp_path / "tmp"), force_tf_compat_v1=False):
        (transformed, _), transform_fn = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn)
        _ = transform_fn | tft_beam.WriteTransformFn(str(tmp_path / "tft"))
    return transformed, tft.TFTransformOutput(str(tmp_path / "tft"))


def _serve(tft_output, rows, keys):
    batch = {k: tf.constant(np.stack([r[k] for r in rows])) for k in keys}
    return {k: v.numpy() for k, v in tft_output.transform_raw_features(batch).items()}


def test_keypoint_features_match_between_training_and_serving(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        coords = rng.uniform(5, 90, size=30).astype(np.float32)
        if i == 2:
            coords[4:] = spec.MISSING_COORDINATE
        row = {c: np.array([coords[j]], np.float32) for j, c in enumerate(spec.KEYPOINT_COLUMNS)}
        row["Image"] = np.array([" ".join(map(str, rng.integers(0, 256, 96 * 96)))])
        rows.append(row)
    raw_spec = {c: tf.io.FixedLenFeature([1], tf.float32) for c in spec.KEYPOINT_COLUMNS}
    raw_spec["Image"] = tf.io.FixedLenFeature([1], tf.string)
    transformed, tft_output = _analyze_and_transform(keypoints_transform.preprocessing_fn, raw_spec, rows, tmp_path)
    served = _serve(tft_output, rows, ["Image"])  # serving has no labels
    assert set(served) == {spec.IMAGE_FEATURE, *spec.IMAGE_SCALING}
    train_images = np.stack([t[spec.IMAGE_FEATURE] for t in transformed])
    np.testing.assert_allclose(served[spec.IMAGE_FEATURE], train_images, rtol=1e-5, atol=1e-5)
    # What serving_default does with the pixels it decodes from an image (no pixel strings):
    # the Transform's own constants, read by the export, scale them as the Transform did.
    from emotion_ai.components.common import export, image

    mean, std = export.image_scaling(tft_output.transform_features_layer(), "Image", 96)
    assert (mean, std) == pytest.approx(tuple(transformed[0][name][0] for name in spec.IMAGE_SCALING))
    raw = np.stack([np.array(r["Image"][0].split(), np.float32) for r in rows])
    np.testing.assert_allclose(image.scale_images(raw, mean, std).numpy(), train_images, rtol=1e-5, atol=1e-5)
    assert abs(train_images.mean()) < 0.05 and abs(train_images.std() - 1) < 0.05  # standardized by tft
    # Per-image normalization first: a darker, flatter copy of an image gives the same features.
    dim = dict(rows[0], Image=np.array([" ".join(str(int(v) // 2 + 10) for v in rows[0]["Image"][0].split())]))
    np.testing.assert_allclose(_serve(tft_output, [dim], ["Image"])[spec.IMAGE_FEATURE][0], train_images[0],
                               atol=0.02)
    sparse = transformed[2]
    assert sparse[spec.KEYPOINTS_MASK].tolist() == [1.0] * 4 + [0.0] * 26
    assert np.all(sparse[spec.KEYPOINTS_TARGET][4:] == 0.0)
    full = transformed[0]
    expected = (np.array([rows[0][c][0] for c in spec.KEYPOINT_COLUMNS]) - 47.5) / 47.5
    np.testing.assert_allclose(full[spec.KEYPOINTS_TARGET], expected, rtol=1e-5)
    np.testing.assert_allclose(keypoints_transform.denormalize_coordinates(full[spec.KEYPOINTS_TARGET]),
                               full[spec.KEYPOINTS_PIXELS], rtol=1e-5)


def test_emotion_features_match_between_training_and_serving(tmp_path):
    rng = np.random.default_rng(1)
    rows = [{"emotion": np.array([i % 5], np.int64),
             "pixels": np.array([" ".join(map(str, rng.integers(0, 256, 48 * 48)))])} for i in range(7)]
    raw_spec = {"emotion": tf.io.FixedLenFeature([1], tf.int64), "pixels": tf.io.FixedLenFeature([1], tf.string)}
    transformed, tft_output = _analyze_and_transform(emotion_transform.preprocessing_fn, raw_spec, rows, tmp_path)
    served = _serve(tft_output, rows, ["pixels"])
    np.testing.assert_allclose(served[spec.IMAGE_FEATURE], np.stack([t[spec.IMAGE_FEATURE] for t in transformed]),
                               rtol=1e-5, atol=1e-5)
    assert [int(t[spec.EMOTION_LABEL]) for t in transformed] == [i % 5 for i in range(7)]


def test_a_pixel_string_of_the_wrong_length_fails_loudly():
    from emotion_ai.components.common.image import decode_pixel_strings

    with pytest.raises(tf.errors.InvalidArgumentError, match="must hold 2304 values"):
        decode_pixel_strings(tf.constant(["1 2 3"]), 48)
