"""What the view and distillation benchmarks read from a served model: its network's input
(images standardized by the model's own Transform layer) and its served output, both from
the CSV's image strings, in batches."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from emotion_ai.components import spec

BATCH = 256


def standardized(saved, branch, strings: list[str]) -> np.ndarray:
    """The network's input for each image string: the SavedModel's ``tft_layer``, exactly
    what the served graph feeds its network."""
    return np.concatenate([
        saved.tft_layer({branch.image_column: tf.constant([[s] for s in strings[i:i + BATCH]])})[spec.IMAGE_FEATURE]
        .numpy() for i in range(0, len(strings), BATCH)])


def served(saved, branch, strings: list[str]) -> np.ndarray:
    """What the served model answers for each image string (``serving_pixels``)."""
    return np.concatenate([
        saved.signatures["serving_pixels"](pixels=tf.constant(strings[i:i + BATCH]))[branch.output].numpy()
        for i in range(0, len(strings), BATCH)])
