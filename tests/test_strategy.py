"""The Trainers use every device they are given: the same ``train`` under a two-replica
``MirroredStrategy``. No GPU here, so the replicas are two logical CPUs, set up in a child
process before TensorFlow starts (what a two-GPU machine would give ``MirroredStrategy``)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from emotion_ai.pipelines import config

SCRIPT = r"""
import json
import os
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from emotion_ai.components import spec
from emotion_ai.components.common import training
from emotion_ai.components.emotion import trainer

one = training.distribution_strategy(["/cpu:0"])
two = training.distribution_strategy(["/cpu:0", "/cpu:1"])
rng = np.random.default_rng(0)
labels = rng.integers(0, 5, 320)
images = rng.normal(0, 0.3, (320, 48, 48)).astype(np.float32)
for i, label in enumerate(labels):  # the class is where a bright square sits: learnable in a few epochs
    images[i, 8 * label:8 * label + 10, 8 * label:8 * label + 10] += 2.0
x = images.reshape(320, -1)
params = spec.ModelParams(stage_filters=(8, 16), blocks_per_stage=1, epochs=8, batch_size=32, learning_rate=3e-3,
                          stem_stride=2, augmentation=None, flip_tta=True, warmup_epochs=0, distill_epochs=1,
                          reference_steps=2)
runs = {}
for name, strategy in (("one", one), ("two", two)):
    tf.keras.utils.set_random_seed(0)
    network, history, distilled = trainer.train(params, (x[:256], labels[:256]), (x[256:], labels[256:]),
                                                strategy=strategy)
    runs[name] = {"strategy": type(network.distribute_strategy).__name__, "loss": history.history["loss"],
                  "distill_loss": distilled.history["loss"],
                  "throughput": {k: history.history[k] for k in ("images_per_second", "train_images_per_second",
                                                                  "reference_images_per_second")},
                  "accuracy": float((network.predict(x[256:], verbose=0).argmax(-1) == labels[256:]).mean())}
print("RESULT", json.dumps({"default_replicas": one.num_replicas_in_sync, "replicas": two.num_replicas_in_sync,
                            "runs": runs}))
"""


@pytest.mark.slow
def test_the_trainer_trains_and_distils_across_two_replicas_as_it_does_on_one_device():
    env = {**os.environ, **config.RUNTIME_ENVIRONMENT}
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["default_replicas"] == 1  # one device: TensorFlow's default strategy
    assert result["replicas"] == 2
    one, two = result["runs"]["one"], result["runs"]["two"]
    assert two["strategy"] == "MirroredStrategy", result
    assert len(two["distill_loss"]) == 1
    # Each batch split in two, gradients summed: the same training as on one device, up to
    # BatchNorm's statistics (per replica: 16 images instead of 32) and summation order.
    assert two["loss"][-1] < 0.85 * two["loss"][0], result  # it learns
    assert abs(two["loss"][-1] - one["loss"][-1]) < 0.05 * one["loss"][-1], result  # measured: 1 %
    assert two["accuracy"] > 0.4, result  # five classes: chance is 0.2
    for run in (one, two):  # each epoch's training rate beside the plain-Keras reference (issue 35)
        rates = run["throughput"]
        assert len(rates["reference_images_per_second"]) == len(rates["images_per_second"]) == len(run["loss"])
        assert all(r > 0 for r in rates["reference_images_per_second"]), rates
        # the training steps alone: faster than the whole epoch, which also evaluates
        assert all(t > e for t, e in zip(rates["train_images_per_second"], rates["images_per_second"])), rates
