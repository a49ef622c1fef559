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


class ServedModel:
    """One pushed model version, called through its serving signatures."""

    def __init__(self, model_repo: Path, name: str):
        self.name = name
        self.version, self.path = latest_version(model_repo, name)
        self._model = tf.saved_model.load(str(self.path))

    def predict_pixel_strings(self, pixel_strings) -> dict[str, np.ndarray]:
        """The datasets' pixel strings, through ``serving_pixels``."""
        out = self._model.signatures["serving_pixels"](pixels=tf.constant(list(pixel_strings)))
        return {k: v.numpy() for k, v in out.items()}

    def predict_images(self, encoded_images) -> dict[str, np.ndarray]:
        """Encoded image bytes (PNG/JPEG/...), through ``serving_default``."""
        out = self._model.signatures["serving_default"](images=tf.constant(list(encoded_images)))
        return {k: v.numpy() for k, v in out.items()}
