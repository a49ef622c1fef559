"""Load the newest pushed models from a TF Serving model repository and call them through
their serving signatures, exactly as a server would."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from pipelines import config


def latest_version(model_repo: Path, model: str) -> tuple[int, Path]:
    """The highest numeric version directory of ``model`` that holds a SavedModel."""
    base = Path(model_repo) / model
    candidates = sorted((int(p.name), p) for p in base.glob("*") if p.name.isdigit()
                        and (p / "saved_model.pb").exists()) if base.is_dir() else []
    if not candidates:
        raise FileNotFoundError(f"{base}: no pushed version of the {model} model (run the pipeline first)")
    return candidates[-1]


def serialize_pixel_examples(feature: str, pixel_strings) -> tf.Tensor:
    """Serialized raw tf.Examples holding one pixel-string feature each."""
    return tf.constant([tf.train.Example(features=tf.train.Features(feature={
        feature: tf.train.Feature(bytes_list=tf.train.BytesList(value=[s.encode()]))})).SerializeToString()
        for s in pixel_strings])


class ServedModel:
    """One pushed model version, called through ``serving_default`` on raw tf.Examples."""

    def __init__(self, model_repo: Path, name: str):
        self.name = name
        self.version, self.path = latest_version(model_repo, name)
        self._model = tf.saved_model.load(str(self.path))
        self._serve = self._model.signatures["serving_default"]
        self._feature = config.KEYPOINT_IMAGE_COLUMN if name == "keypoints" else config.EMOTION_PIXELS_COLUMN

    def predict_pixel_strings(self, pixel_strings) -> dict[str, np.ndarray]:
        out = self._serve(examples=serialize_pixel_examples(self._feature, pixel_strings))
        return {k: v.numpy() for k, v in out.items()}
