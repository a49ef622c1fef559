"""Training augmentation moves key points with the image features they label."""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from emotion_ai.components import spec
from emotion_ai.components.common import augment
from emotion_ai.components.keypoints.transform import denormalize_coordinates, normalize_coordinates

LEFT_EYE = spec.KEYPOINT_NAMES.index("left_eye_center")
RIGHT_EYE = spec.KEYPOINT_NAMES.index("right_eye_center")


def _dot_image(x, y, size=96):
    image = np.zeros((1, size, size, 1), np.float32)
    image[0, y - 1:y + 2, x - 1:x + 2, 0] = 1.0
    return tf.constant(image)


def _coords_with(point_index, x, y):
    px = np.full(30, 47.5, np.float32)
    px[2 * point_index: 2 * point_index + 2] = [x, y]
    return normalize_coordinates(tf.constant(px[None]))


def _brightest(image):
    """Centre of mass of the dot."""
    img = np.clip(image.numpy()[0, :, :, 0], 0, None)
    ys, xs = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    return round(float((xs * img).sum() / img.sum()), 2), round(float((ys * img).sum() / img.sum()), 2)


def test_flip_moves_the_dot_and_relabels_left_as_right():
    image = _dot_image(70, 30)  # subject's left eye is on the image's right
    coords = _coords_with(LEFT_EYE, 70, 30)
    flipped_image = tf.reverse(image, axis=[2])
    flipped = denormalize_coordinates(augment.flip_coordinates(coords)).numpy()[0]
    assert _brightest(flipped_image) == (25.0, 30.0)
    # The point now sits on the dot, and is called the right eye.
    np.testing.assert_allclose(flipped[2 * RIGHT_EYE: 2 * RIGHT_EYE + 2], [25, 30], atol=1e-4)
    np.testing.assert_allclose(flipped[2 * LEFT_EYE: 2 * LEFT_EYE + 2], [47.5, 47.5], atol=1e-4)


def test_flip_twice_is_identity_and_mask_follows():
    coords = tf.random.uniform([4, 30], -1, 1)
    np.testing.assert_allclose(augment.flip_coordinates(augment.flip_coordinates(coords)), coords, atol=1e-6)
    mask = np.ones((1, 30), np.float32)
    mask[0, 2 * LEFT_EYE: 2 * LEFT_EYE + 2] = 0
    flipped = augment.flip_mask(tf.constant(mask)).numpy()[0]
    assert flipped[2 * RIGHT_EYE] == 0 and flipped[2 * LEFT_EYE] == 1


def test_rotation_scale_shift_move_the_dot_and_its_label_together():
    for angle_deg, log_scale, sx, sy in [(10, 0.0, 0, 0), (-12, 0.07, 0.05, -0.04), (0, -0.08, -0.06, 0.06)]:
        image = _dot_image(66, 38)
        coords = _coords_with(LEFT_EYE, 66, 38)
        linear, offset = augment._affine_matrices(tf.constant([float(math.radians(angle_deg))]),
                                                  tf.constant([float(log_scale)]),
                                                  tf.constant([float(sx)]), tf.constant([float(sy)]))
        moved_image = augment.transform_images(image, linear, offset)
        moved = denormalize_coordinates(augment.transform_coordinates(coords, linear, offset)).numpy()[0]
        bx, by = _brightest(moved_image)
        assert abs(bx - moved[2 * LEFT_EYE]) <= 1.0 and abs(by - moved[2 * LEFT_EYE + 1]) <= 1.0
        if angle_deg:
            assert (bx, by) != (66, 38), "the dot actually moved"


def test_random_augmentation_keeps_missing_points_masked_and_shapes():
    images = tf.random.normal([8, 96, 96, 1])
    coords = tf.random.uniform([8, 30], -0.8, 0.8)
    mask = tf.cast(tf.random.uniform([8, 30]) > 0.3, tf.float32)
    mask = tf.reshape(tf.repeat(tf.reshape(mask, [8, 15, 2])[:, :, :1], 2, axis=-1), [8, 30])
    out_images, out_coords, out_mask = augment.augment_keypoints(images, coords * mask, mask)
    assert out_images.shape == images.shape and out_coords.shape == coords.shape
    assert float(tf.reduce_sum(mask)) == float(tf.reduce_sum(out_mask))
    assert np.all(out_coords.numpy()[out_mask.numpy() == 0] == 0)
    assert augment.augment_images(tf.random.normal([3, 48, 48, 1])).shape == (3, 48, 48, 1)


def test_random_erasing_covers_one_rectangle_of_the_configured_area():
    tf.random.set_seed(3)
    images = tf.zeros([64, 48, 48, 1])
    params = spec.Augmentation(erase_probability=1.0, erase_area=(0.05, 0.1))
    erased = augment.random_erase(images, params).numpy()[..., 0] != 0
    area = erased.mean(axis=(1, 2))
    # The rectangle is cut to whole pixels, so allow a couple of rows/columns either side.
    assert area.min() > 0.03 and area.max() < 0.13, (area.min(), area.max())
    for mask in erased:
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        # One axis-aligned rectangle: every pixel in its bounding box is erased.
        assert mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()
    untouched = augment.random_erase(images, spec.Augmentation(erase_probability=0.0)).numpy()
    assert not untouched.any()
