"""Test-time views of the served graph map back onto the original image."""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from emotion_ai.components import spec
from emotion_ai.components.branches import KEYPOINTS
from emotion_ai.components.common import views as tta
from emotion_ai.components.keypoints import trainer as keypoint_trainer
from emotion_ai.components.keypoints.transform import denormalize_coordinates, normalize_coordinates
from emotion_ai.pipelines import config

SIZE = spec.KEYPOINT_IMAGE_SIZE
LEFT_EYE = spec.KEYPOINT_NAMES.index("left_eye_center")
RIGHT_EYE = spec.KEYPOINT_NAMES.index("right_eye_center")


def _params(flip: bool, shift: int) -> spec.ModelParams:
    return dataclasses.replace(config.PROFILES["smoke"].params_for(KEYPOINTS), flip_tta=flip, tta_shift_px=shift)


def test_views_are_a_grid_of_shifts_times_mirrors():
    assert tta.tta_views(_params(False, 0), SIZE) == [(False, (0.0, 0.0))]
    assert len(tta.tta_views(_params(True, 0), SIZE)) == 2
    views = tta.tta_views(_params(True, 3), SIZE)
    assert len(views) == 18 and len(set(views)) == 18
    assert {shift for _, shift in views} == {(dx * 3 / 47.5, dy * 3 / 47.5) for dx in (0, 1, -1) for dy in (0, 1, -1)}


def test_each_view_moves_a_dot_where_unview_says():
    """A 'network' that reads the dot's position off each view as the left eye; after
    unview every view must agree on where the dot is in the original image."""
    x, y = 70, 30
    image = np.zeros((1, SIZE, SIZE), np.float32)
    image[0, y, x] = 1.0
    flat = tf.constant(image.reshape(1, -1))
    for mirrored, shift in tta.tta_views(_params(True, 3), SIZE):
        view = tta.view_images(flat, SIZE, mirrored, shift).numpy().reshape(SIZE, SIZE)
        vy, vx = np.unravel_index(np.argmax(view), view.shape)
        # Mirrored, the subject's left eye is what the network would call the right eye.
        point = RIGHT_EYE if mirrored else LEFT_EYE
        seen = np.full(30, 47.5, np.float32)
        seen[2 * point: 2 * point + 2] = [vx, vy]
        back = denormalize_coordinates(keypoint_trainer._unview(normalize_coordinates(tf.constant(seen[None])),
                                                                mirrored, shift)).numpy()[0]
        np.testing.assert_allclose(back[2 * LEFT_EYE: 2 * LEFT_EYE + 2], [x, y], atol=1e-3,
                                   err_msg=f"view mirrored={mirrored} shift={shift}")


def test_offset_correction_is_the_mean_error_of_known_coordinates():
    """A 'network' that always predicts the same coordinates: the correction is the mean
    target minus that, per coordinate, and 0 where too few rows are labelled."""
    rng = np.random.default_rng(0)
    predicted = rng.uniform(-0.5, 0.5, 30).astype(np.float32)
    network = tf.keras.Sequential([tf.keras.Input((SIZE * SIZE,)), tf.keras.layers.Dense(
        30, kernel_initializer="zeros", bias_initializer=tf.keras.initializers.Constant(predicted))])
    rows = 40
    targets = rng.uniform(-0.8, 0.8, (rows, 30)).astype(np.float32)
    mask = np.ones((rows, 30), np.float32)
    mask[:30, 4:6] = 0.0  # one point labelled in only 10 rows
    mask[:5, 0] = 0.0
    x = rng.normal(size=(rows, SIZE * SIZE)).astype(np.float32)
    correction = keypoint_trainer.offset_correction(network, _params(False, 0), (x, np.concatenate([targets, mask], 1)))
    expected = (targets * mask).sum(0) / mask.sum(0) - predicted
    expected[4:6] = 0.0
    np.testing.assert_allclose(correction, expected, atol=1e-5)


def test_all_views_in_one_call_equal_one_call_per_view():
    """The served graph runs every view in one batch; splitting it back must give each
    image its own views (a batch of 3 different images, 18 views)."""
    tf.keras.utils.set_random_seed(1)
    network = tf.keras.Sequential([tf.keras.Input((SIZE * SIZE,)), tf.keras.layers.Dense(30, activation="tanh")])
    views = tta.tta_views(_params(True, 3), SIZE)
    images = tf.constant(np.random.default_rng(1).normal(size=(3, SIZE * SIZE)).astype(np.float32))
    one_call = tta.average_views(network, images, SIZE, views, keypoint_trainer._unview).numpy()
    per_view = np.mean([keypoint_trainer._unview(network(tta.view_images(images, SIZE, m, s)), m, s).numpy()
                        for m, s in views], axis=0)
    np.testing.assert_allclose(one_call, per_view, atol=1e-5)
    assert np.abs(one_call[0] - one_call[1]).max() > 1e-3  # rows are not mixed up or averaged together
    np.testing.assert_allclose(tta.predict_views(network, images.numpy(), SIZE, views, keypoint_trainer._unview,
                                                      batch_size=2), one_call, atol=1e-5)
