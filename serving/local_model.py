"""Load pushed models from a TF Serving model repository, the version a server would serve
(pinned, else newest), and call them through their serving signatures, as a server would."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from serving import repository_config


def latest_version(model_repo: Path, model: str) -> tuple[int, Path]:
    """The highest numeric version directory of ``model`` that holds a SavedModel."""
    base = Path(model_repo) / model
    versions = repository_config.version_dirs(base)
    if not versions:
        raise FileNotFoundError(f"{base}: no pushed version of the {model} model (run the pipeline first)")
    return versions[-1], base / str(versions[-1])


def served_version(model_repo: Path, model: str) -> tuple[int, Path]:
    """The version a server of this repository serves: the one pinned in ``models.config``
    (``emotion-ai rollback``) if it is on disk, else the newest."""
    pinned = repository_config.read_pins(model_repo).get(model)
    path = Path(model_repo) / model / str(pinned)
    if pinned is not None and (path / "saved_model.pb").exists():
        return pinned, path
    return latest_version(model_repo, model)


class ServedModel:
    """The version of one model a server would serve, called through its serving signatures."""

    def __init__(self, model_repo: Path, name: str):
        self.name = name
        self.version, self.path = served_version(model_repo, name)
        self._model = tf.saved_model.load(str(self.path))

    def predict_pixel_strings(self, pixel_strings) -> dict[str, np.ndarray]:
        """The datasets' pixel strings, through ``serving_pixels``."""
        out = self._model.signatures["serving_pixels"](pixels=tf.constant(list(pixel_strings)))
        return {k: v.numpy() for k, v in out.items()}

    def predict_images(self, encoded_images) -> dict[str, np.ndarray]:
        """Encoded image bytes (PNG/JPEG/...), through ``serving_default``."""
        out = self._model.signatures["serving_default"](images=tf.constant(list(encoded_images)))
        return {k: v.numpy() for k, v in out.items()}
