"""Distillation: the view average of a frozen copy taught to the network itself, then served in one pass."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from emotion_ai.components import spec
from emotion_ai.components.branches import EMOTION
from emotion_ai.components.common import training
from emotion_ai.components.common import views as tta
from emotion_ai.components.emotion import trainer as emotion_trainer
from emotion_ai.components.keypoints import trainer as keypoint_trainer
from emotion_ai.pipelines import config

SIZE = spec.EMOTION_IMAGE_SIZE
N_CLASSES = len(spec.EMOTION_CLASSES)


def _params(**changes) -> spec.ModelParams:
    return dataclasses.replace(config.PROFILES["smoke"].params_for(EMOTION), **changes)


def test_a_distilled_model_is_served_in_one_pass_and_an_undistilled_one_over_its_views():
    assert tta.served_views(_params(flip_tta=True, tta_shift_px=3, distill_epochs=0), SIZE) == tta.tta_views(
        _params(flip_tta=True, tta_shift_px=3), SIZE)
    assert len(tta.served_views(_params(flip_tta=True, tta_shift_px=3), SIZE)) == 18
    assert tta.served_views(_params(flip_tta=True, tta_shift_px=3, distill_epochs=2), SIZE) == [(False, (0.0, 0.0))]


def test_expression_targets_blend_the_label_with_the_teachers_probabilities():
    one_hot = tf.constant([[0, 0, 1, 0, 0]], tf.float32)
    taught = tf.constant([[0.1, 0.1, 0.4, 0.3, 0.1]], tf.float32)
    np.testing.assert_allclose(emotion_trainer._blend(one_hot, taught, 0.25).numpy(),
                               [[0.025, 0.025, 0.85, 0.075, 0.025]], atol=1e-6)


def test_key_point_targets_blend_known_coordinates_and_take_the_teachers_for_missing_ones():
    n = len(spec.KEYPOINT_COLUMNS)
    targets = np.full((1, n), 0.5, np.float32)
    mask = np.ones((1, n), np.float32)
    mask[0, 2:4] = 0.0  # one point unlabelled: its target is 0 and does not count
    targets[0, 2:4] = 0.0
    taught = np.full((1, n), -0.5, np.float32)
    out = keypoint_trainer._blend(tf.constant(np.concatenate([targets, mask], 1)), tf.constant(taught), 0.5).numpy()
    expected = np.zeros(n, np.float32)  # halfway between 0.5 and -0.5
    expected[2:4] = -0.5  # the teacher's
    np.testing.assert_allclose(out[0, :n], expected, atol=1e-6)
    np.testing.assert_array_equal(out[0, n:], np.ones(n))  # every coordinate now counts


def test_no_distillation_epochs_leave_the_network_alone():
    network = tf.keras.Sequential([tf.keras.Input((SIZE * SIZE,)), tf.keras.layers.Dense(N_CLASSES)])
    before = [w.copy() for w in network.get_weights()]
    assert training.distill(network, _params(distill_epochs=0), (None, None), (None, None), loss=None, metrics=[],
                            monitor="val_loss", mode="min", size=SIZE, unview=emotion_trainer._unview,
                            blend=emotion_trainer._blend) is None
    for a, b in zip(before, network.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_distillation_moves_the_one_pass_answer_onto_the_teachers_view_average():
    """A linear 'network' on random images: its mirror average is itself a linear map, so one
    pass can learn it exactly. Taught by its own frozen copy (weight 1: the teacher only),
    the network's one-pass probabilities must end much nearer the copy's mirror average than
    they started; with weight 0 (labels that say nothing of the average) they must not."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, SIZE * SIZE)).astype(np.float32)
    labels = np.eye(N_CLASSES, dtype=np.float32)[rng.integers(0, N_CLASSES, len(x))]
    mirror = [(False, (0.0, 0.0)), (True, (0.0, 0.0))]

    def distilled(weight: float) -> tuple[float, float]:
        tf.keras.utils.set_random_seed(3)
        network = tf.keras.Sequential([tf.keras.Input((SIZE * SIZE,)), tf.keras.layers.Dense(
            N_CLASSES, activation="softmax", kernel_initializer=tf.keras.initializers.RandomNormal(stddev=0.05))])
        average = tta.predict_views(network, x, SIZE, mirror, emotion_trainer._unview)
        start = np.abs(network(x).numpy() - average).mean()
        params = _params(flip_tta=True, tta_shift_px=0, augmentation=None, distill_epochs=15, distill_weight=weight,
                         learning_rate=0.01, distill_learning_rate_scale=1.0, batch_size=32)
        # The eval split scores closeness to the average, so the kept epoch is the closest one.
        history = training.distill(network, params, (x, labels), (x, average),
                                   loss=tf.keras.losses.CategoricalCrossentropy(), metrics=[], monitor="val_loss",
                                   mode="min", size=SIZE, unview=emotion_trainer._unview, blend=emotion_trainer._blend)
        assert len(history.history["loss"]) >= 1
        return start, np.abs(network(x).numpy() - average).mean()

    start, taught = distilled(1.0)
    assert taught < 0.3 * start, (start, taught)
    start, untaught = distilled(0.0)
    assert untaught > 2 * taught, (taught, untaught)


def test_distillation_keeps_the_schedules_weights_unless_an_epoch_beats_the_schedules_best():
    """The schedule's best eval figure is the bar: the same distillation as above (which moves
    the weights every epoch) is kept when no bar is given or the bar is easy, and undone,
    weights as they were, when the schedule reached an eval loss no epoch can."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, SIZE * SIZE)).astype(np.float32)
    labels = np.eye(N_CLASSES, dtype=np.float32)[rng.integers(0, N_CLASSES, len(x))]
    params = _params(flip_tta=True, tta_shift_px=0, augmentation=None, distill_epochs=3, distill_weight=1.0,
                     learning_rate=0.01, distill_learning_rate_scale=1.0, batch_size=32)

    class Schedule:
        def __init__(self, val_loss):
            self.history = {"val_loss": val_loss}

    def changed(schedule) -> bool:
        tf.keras.utils.set_random_seed(3)
        network = tf.keras.Sequential([tf.keras.Input((SIZE * SIZE,)), tf.keras.layers.Dense(
            N_CLASSES, activation="softmax", kernel_initializer=tf.keras.initializers.RandomNormal(stddev=0.05))])
        before = network.get_weights()
        training.distill(network, params, (x, labels), (x, labels), loss=tf.keras.losses.CategoricalCrossentropy(),
                         metrics=[], monitor="val_loss", mode="min", size=SIZE, unview=emotion_trainer._unview,
                         blend=emotion_trainer._blend, schedule=schedule)
        return any(not np.array_equal(a, b) for a, b in zip(before, network.get_weights()))

    assert changed(None)
    assert changed(Schedule([50.0, 40.0]))  # any epoch beats a loss of 40
    assert not changed(Schedule([5.0, 1e-6]))  # none reaches 1e-6


def test_the_history_carries_the_distillation_epochs_after_the_schedules(tmp_path):
    class History:
        def __init__(self, curves):
            self.history = curves

    class FnArgs:
        model_run_dir = str(tmp_path)

    training.save_history(History({"loss": [3.0, 2.0], "val_loss": [3.5, 2.5]}), FnArgs(),
                          History({"loss": [1.0], "val_loss": [1.5]}))
    import json

    curves = json.loads((tmp_path / "history.json").read_text())
    assert curves["loss"] == [3.0, 2.0, 1.0] and curves["val_loss"] == [3.5, 2.5, 1.5]
    assert curves["distilling"] == [0.0, 0.0, 1.0]



@pytest.mark.slow
def test_each_trainer_distils_after_its_schedule_when_its_parameters_ask(caplog):
    """The branches' ``train`` (what run_fn and the plain-Keras benchmark call): the schedule,
    then the distillation epochs, on a tiny network and a few images; the progress lines
    (what the console's epoch lines and ETA read) count them as one run of 3 epochs."""
    import logging
    import re

    caplog.set_level(logging.INFO, logger="absl")
    rng = np.random.default_rng(0)
    small = dict(stage_filters=(4, 8), blocks_per_stage=1, epochs=2, batch_size=16, learning_rate=1e-3,
                 stem_stride=2, augmentation=None, flip_tta=True, warmup_epochs=0, distill_epochs=1)
    x = rng.normal(size=(32, SIZE * SIZE)).astype(np.float32)
    _, history, distilled = emotion_trainer.train(spec.ModelParams(**small), (x, rng.integers(0, N_CLASSES, 32)),
                                                  (x[:8], rng.integers(0, N_CLASSES, 8)))
    assert len(history.history["loss"]) == 2 and len(distilled.history["loss"]) == 1
    assert re.findall(r"epoch (\d+/\d+) done in", caplog.text) == ["1/3", "2/3", "3/3"]
    n, size = len(spec.KEYPOINT_COLUMNS), spec.KEYPOINT_IMAGE_SIZE
    x = rng.normal(size=(32, size * size)).astype(np.float32)
    y = np.concatenate([rng.uniform(-0.5, 0.5, (32, n)), np.ones((32, n))], 1).astype(np.float32)
    _, history, distilled = keypoint_trainer.train(spec.ModelParams(**small), (x, y), (x[:8], y[:8]))
    assert len(history.history["loss"]) == 2 and len(distilled.history["loss"]) == 1
    _, _, none = keypoint_trainer.train(spec.ModelParams(**{**small, "distill_epochs": 0}), (x, y), (x[:8], y[:8]))
    assert none is None
