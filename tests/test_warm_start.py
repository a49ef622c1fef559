"""Warm start: a Trainer starts from the network its branch serves (components/common/training).

The branch's own ``train`` on a small learnable task: trained from scratch, its weights saved
beside a SavedModel as the exporter does; a warm-started run loads them, so its first epoch's
loss is far below a cold start's, and it trains the short schedule. Where the served network
does not fit (the profile's architecture changed) or nothing is served, it trains from scratch
and says why."""
from __future__ import annotations

import dataclasses
import functools
import json
import types

import numpy as np
import pytest

from emotion_ai.components import spec
from emotion_ai.components.common import training
from emotion_ai.components.emotion import trainer
from emotion_ai.pipelines import config

config.set_runtime_environment()

PARAMS = spec.ModelParams(stage_filters=(8, 16), blocks_per_stage=1, epochs=12, batch_size=32, learning_rate=3e-3,
                          stem_stride=2, augmentation=None, flip_tta=False, warmup_epochs=1)
WARM = {"warm_start": {"epochs": 2, "learning_rate_scale": 0.3}}


def _faces(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Standardized 48x48 images whose class is where a bright square sits."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, n)
    images = rng.normal(0, 0.3, (n, 48, 48)).astype(np.float32)
    for i, label in enumerate(labels):
        images[i, 8 * label:8 * label + 10, 8 * label:8 * label + 10] += 2.0
    return images.reshape(n, -1), labels


def _fn_args(tmp_path, base_model):
    return types.SimpleNamespace(custom_config=WARM, base_model=base_model, model_run_dir=str(tmp_path / "run"))


@pytest.mark.slow
def test_a_warm_start_begins_where_the_served_network_ended(tmp_path):
    train, evaluation = _faces(400, 0), _faces(100, 1)
    cold_network, cold, _ = trainer.train(PARAMS, train, evaluation)
    served = tmp_path / "served" / "Format-Serving"  # the ServedModel artifact's serving folder
    training.save_network_weights(cold_network, str(served))

    fn_args = _fn_args(tmp_path, str(served))
    _, warm, _ = trainer.train(PARAMS, train, evaluation, start=functools.partial(training.warm_start, fn_args=fn_args))
    assert len(warm.history["loss"]) == 2, "the short schedule"
    curves = (warm.history, cold.history)
    # It begins where the served network ended, far below where a cold start begins.
    assert warm.history["loss"][0] < 0.7 * cold.history["loss"][0], curves
    assert warm.history["loss"][0] < 1.1 * min(cold.history["loss"]), curves
    assert warm.history["val_accuracy"][0] >= max(cold.history["val_accuracy"]) - 0.05 > cold.history["val_accuracy"][0]
    record = json.loads((tmp_path / "run" / training.WARM_START_FILE).read_text())
    assert record == {"warm": True, "base_model": str(served), "epochs": 2, "learning_rate": 0.3 * PARAMS.learning_rate}

    other = dataclasses.replace(PARAMS, stage_filters=(4, 8))  # the profile's network changed since
    _, history, _ = trainer.train(other, train, evaluation,
                                  start=functools.partial(training.warm_start, fn_args=fn_args))
    assert len(history.history["loss"]) == other.epochs
    record = json.loads((tmp_path / "run" / training.WARM_START_FILE).read_text())
    assert record["warm"] is False and "does not fit" in record["reason"]


def test_with_nothing_served_a_warm_start_trains_the_full_schedule(tmp_path):
    network = trainer.model_lib.build(PARAMS)
    empty = tmp_path / "baseline" / "Format-Serving"  # ServedModel found nothing: an empty artifact
    empty.mkdir(parents=True)
    assert training.warm_start(network, PARAMS, _fn_args(tmp_path, str(empty))) is PARAMS
    record = json.loads((tmp_path / "run" / training.WARM_START_FILE).read_text())
    assert record == {"warm": False, "reason": "no served model with network weights", "epochs": PARAMS.epochs}
    not_asked = types.SimpleNamespace(custom_config={}, base_model=None, model_run_dir=str(tmp_path / "other"))
    assert training.warm_start(network, PARAMS, not_asked) is PARAMS
    assert not (tmp_path / "other").exists(), "nothing to say when warm start was not asked for"
