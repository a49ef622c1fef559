"""Call a SavedModel through its serving signatures in-process, as a server would: the
version a server of a model repository would serve (pinned, else newest: ``predict``,
``evaluate``), or any exported model (a Trainer's output: the report)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from emotion_ai.components import model_repository


class LoadedModel:
    """One exported model, called through its serving signatures."""

    def __init__(self, path: Path | str):
        self.path = path
        self._model = model_repository.load(path)

    def predict_pixel_strings(self, pixel_strings) -> dict[str, np.ndarray]:
        """The datasets' pixel strings, through ``serving_pixels``."""
        out = self._model.signatures["serving_pixels"](pixels=tf.constant(list(pixel_strings)))
        return {k: v.numpy() for k, v in out.items()}

    def predict_images(self, encoded_images) -> dict[str, np.ndarray]:
        """Encoded image bytes (PNG/JPEG/...), through ``serving_default``."""
        out = self._model.signatures["serving_default"](images=tf.constant(list(encoded_images)))
        return {k: v.numpy() for k, v in out.items()}


class ServedModel(LoadedModel):
    """The version of one model a server of ``model_repo`` would serve."""

    def __init__(self, model_repo: Path, name: str):
        self.name = name
        self.version, path = model_repository.served_version(model_repo, name)
        super().__init__(path)
