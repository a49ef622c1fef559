"""The networks: every head/normalization combination builds, and the soft-argmax head
reads positions in the targets' coordinate convention."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from emotion_ai.components import spec
from emotion_ai.components.branches import by_name
from emotion_ai.components.common import training
from emotion_ai.components.emotion import model as emotion_model
from emotion_ai.components.emotion import trainer as emotion_trainer
from emotion_ai.components.keypoints import metrics as keypoint_metrics
from emotion_ai.components.keypoints import model as keypoint_model
from emotion_ai.components.keypoints.transform import normalize_coordinates
from emotion_ai.pipelines import config

SIZE = spec.KEYPOINT_IMAGE_SIZE
TINY = spec.ModelParams(stage_filters=(8, 16), blocks_per_stage=1, epochs=1, batch_size=16,
                          learning_rate=3e-3, stem_stride=2)


def test_wing_loss_keeps_a_gradient_at_small_errors_and_skips_missing_points():
    """Wing: about zero at zero, continuous where it turns linear, steeper than Huber for
    a 1-pixel error (why it is tried), and, like Huber, blind to missing coordinates."""
    n = len(spec.KEYPOINT_COLUMNS)
    pixel = 1.0 / (SIZE / 2)  # one pixel in the targets' units

    def loss(kind, error, mask=1.0):
        y_true = tf.constant([[0.0] * n + [mask] * n])
        y_pred = tf.Variable([[error] * n])
        with tf.GradientTape() as tape:
            value = keypoint_model.loss_for(dataclasses.replace(TINY, keypoint_loss=kind))(y_true, y_pred)
        return float(value[0]), float(tape.gradient(value, y_pred)[0, 0])

    assert loss("wing", 0.0)[0] == pytest.approx(0.0, abs=1e-9)
    width = keypoint_model.WING_WIDTH
    assert loss("wing", width - 1e-6)[0] == pytest.approx(loss("wing", width + 1e-6)[0], abs=1e-5)
    assert loss("wing", pixel)[1] > 5 * loss("huber", pixel)[1] > 0
    assert loss("wing", 0.3, mask=0.0) == (0.0, 0.0)
    with pytest.raises(ValueError, match="keypoint_loss"):
        dataclasses.replace(TINY, keypoint_loss="l2")


def test_class_weight_power_moves_between_balanced_and_unweighted():
    """Power 1: every class weighs as much in total; 0: every row weighs 1; in between the
    rare class still weighs more per row, less than balanced. The mean weight over the rows
    stays 1 so the loss (and the learning rate that suits it) keeps its size."""
    labels = np.repeat(np.arange(len(spec.EMOTION_CLASSES)), [40, 4, 50, 90, 30])
    counts = np.bincount(labels)

    def weights(power):
        found = emotion_trainer.class_weights(counts, power)
        w = np.array([found[i] for i in range(len(counts))])
        assert np.dot(counts, w) / len(labels) == pytest.approx(1.0)
        return w

    balanced, tempered, none = weights(1.0), weights(0.5), weights(0.0)
    np.testing.assert_allclose(counts * balanced, len(labels) / len(counts))
    np.testing.assert_allclose(none, 1.0)
    assert balanced[1] > tempered[1] > none[1] == pytest.approx(1.0)  # rare Disgust
    assert balanced[3] < tempered[3] < 1.0  # common Happy
    with pytest.raises(ValueError, match="class_weight_power"):
        dataclasses.replace(TINY, class_weight_power=-0.5)


@pytest.mark.parametrize("head", ["pool", "flatten", "soft_argmax"])
@pytest.mark.parametrize("norm", ["batch", "group"])
def test_keypoint_network_outputs_30_coordinates(head, norm):
    network = keypoint_model.build(dataclasses.replace(TINY, head=head, norm=norm))
    out = network(np.random.default_rng(0).normal(size=(3, SIZE * SIZE)).astype(np.float32))
    assert out.shape == (3, len(spec.KEYPOINT_COLUMNS))
    assert np.all(np.isfinite(out.numpy()))
    kinds = {type(layer).__name__ for layer in network.layers}
    assert ("GroupNormalization" in kinds) == (norm == "group")
    assert ("BatchNormalization" in kinds) == (norm == "batch")


@pytest.mark.parametrize("fine", [False, True])
def test_fine_heatmaps_are_read_at_the_stems_resolution(fine):
    """The full profile's stem (stride 2, then a pool) works at 48x48 and the first stage at
    24x24: the heatmaps, and the grid soft-argmax reads positions on, are 48x48 with
    ``fine_heatmaps`` (2-pixel cells), else 24x24."""
    params = dataclasses.replace(config.PROFILES["full"].params_for(by_name("keypoints")), fine_heatmaps=fine)
    network = keypoint_model.build(params)
    resolution = 48 if fine else 24
    assert network.get_layer("heatmaps").output.shape[1:] == (resolution, resolution, len(spec.KEYPOINT_NAMES))
    assert network.get_layer("coordinates").positions.shape == (resolution * resolution, 2)
    assert network(np.zeros((1, SIZE * SIZE), np.float32)).shape == (1, len(spec.KEYPOINT_COLUMNS))


def test_emotion_network_with_group_norm_outputs_probabilities():
    network = emotion_model.build(dataclasses.replace(TINY, norm="group"))
    probs = network(np.zeros((2, spec.EMOTION_IMAGE_SIZE ** 2), np.float32)).numpy()
    assert probs.shape == (2, len(spec.EMOTION_CLASSES))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_unknown_head_or_norm_is_refused_by_name():
    with pytest.raises(ValueError, match="head.*'heatmap'"):
        dataclasses.replace(TINY, head="heatmap")
    with pytest.raises(ValueError, match="norm.*'layer'"):
        dataclasses.replace(TINY, norm="layer")
    with pytest.raises(ValueError, match="soft-argmax"):
        emotion_model.build(dataclasses.replace(TINY, head="soft_argmax"))


@pytest.mark.parametrize("row, col", [(0, 0), (5, 10), (23, 17)])
def test_soft_argmax_of_a_peaked_heatmap_is_that_cells_centre(row, col):
    logits = np.full((1, 24, 24, 15), -1e4, np.float32)
    logits[0, row, col, :] = 0.0
    out = keypoint_model.SoftArgmax(SIZE)(logits).numpy()[0]
    cell = SIZE / 24  # 4 pixels; a cell's centre is halfway between its first and last pixel
    expected = normalize_coordinates(np.array([col * cell + (cell - 1) / 2, row * cell + (cell - 1) / 2]))
    np.testing.assert_allclose(out.reshape(15, 2), np.tile(expected, (15, 1)), atol=1e-5)


def test_soft_argmax_of_a_flat_heatmap_is_the_image_centre():
    out = keypoint_model.SoftArgmax(SIZE)(np.zeros((2, 12, 12, 15), np.float32)).numpy()
    np.testing.assert_allclose(out, 0.0, atol=1e-6)


def _dot_images(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Images with one bright 5x5 square; every key point's target is its centre."""
    images = rng.normal(0.0, 0.1, size=(n, SIZE, SIZE)).astype(np.float32)
    centres = rng.uniform(10, SIZE - 11, size=(n, 2)).round()
    for image, (x, y) in zip(images, centres.astype(int)):
        image[y - 2:y + 3, x - 2:x + 3] += 3.0
    targets = np.tile(normalize_coordinates(centres), (1, len(spec.KEYPOINT_NAMES))).astype(np.float32)
    return images.reshape(n, -1), np.concatenate([targets, np.ones_like(targets)], axis=1), centres


@pytest.mark.slow
def test_soft_argmax_network_learns_where_a_dot_is():
    """A few hundred steps on a dot-finding task: the head must map heatmap cells to x and y
    the right way round (a transposed grid cannot be learned by convolutions)."""
    rng = np.random.default_rng(0)
    x, y, _ = _dot_images(512, rng)
    ex, ey, centres = _dot_images(64, rng)
    tf.keras.utils.set_random_seed(0)
    params = dataclasses.replace(TINY, head="soft_argmax", epochs=6, warmup_epochs=0, augmentation=None)
    network = keypoint_model.build(params)
    training.fit(network, params, (x, y), (ex, ey), loss=keypoint_model.masked_loss,
                 metrics=[keypoint_metrics.TrainingPixelRMSE], monitor="val_rmse_px", mode="min")
    predicted = network(ex, training=False).numpy()
    half = (SIZE - 1) / 2
    x_px, y_px = predicted[:, 0] * half + half, predicted[:, 1] * half + half
    errors = np.hypot(x_px - centres[:, 0], y_px - centres[:, 1])
    assert np.median(errors) < 4.0, f"median error {np.median(errors):.2f} px"


@pytest.mark.parametrize("profile", sorted(config.PROFILES))
@pytest.mark.parametrize("branch", ["keypoints", "emotion"])
def test_model_params_survive_the_trainers_custom_config(profile, branch):
    """The pipeline hands hyperparameters to the Trainer as JSON; what arrives must be the
    profile's, nested augmentation settings and tuples included."""
    params = config.PROFILES[profile].params_for(by_name(branch))
    assert spec.ModelParams.from_dict(json.loads(json.dumps(params.to_dict()))) == params
    off = dataclasses.replace(params, augmentation=None)
    assert spec.ModelParams.from_dict(json.loads(json.dumps(off.to_dict()))) == off
    flat = params.flat()
    assert flat["augmentation.erase_probability"] == str(params.augmentation.erase_probability)
    assert flat["stage_filters"] == str(params.stage_filters)
