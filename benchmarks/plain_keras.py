"""The pipeline's two models trained by a plain Keras script, outside TFX.

Same networks (``components/*/model.py``), same augmentation and training recipe
(``components/common/training.fit``), same scaling as the Transform graphs (pixels / 255
standardized by the training split's mean and standard deviation; coordinates mapped to
[-1, 1]). Only the plumbing differs: pandas reads the CSV, numpy parses the pixels. Used by
``benchmarks/overhead.py`` as the reference, and handy for trying a model change quickly:

    .venv/bin/python benchmarks/plain_keras.py keypoints TRAIN.csv.gz VAL.csv.gz --epochs 10 --param head=soft_argmax
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emotion_ai.components import spec  # noqa: E402
from emotion_ai.components.branches import by_name  # noqa: E402
from emotion_ai.pipelines import config  # noqa: E402

config.set_runtime_environment()  # before TensorFlow: the trainers need the legacy Keras
from emotion_ai.components.common import image  # noqa: E402
from emotion_ai.components.emotion import trainer as emotion_trainer  # noqa: E402
from emotion_ai.components.keypoints import trainer as keypoint_trainer  # noqa: E402
from emotion_ai.components.keypoints.transform import normalize_coordinates  # noqa: E402


def _pixels(strings) -> np.ndarray:
    return np.stack([np.asarray(s.split(), dtype=np.float32) for s in strings])


def load_keypoints(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[n, 9216]`` in 0..255, and ``[targets(30), mask(30)]`` as the trainer encodes them."""
    frame = pd.read_csv(path)
    coords = frame[list(spec.KEYPOINT_COLUMNS)].to_numpy(np.float32)
    known = ~np.isnan(coords)
    targets = np.where(known, normalize_coordinates(np.nan_to_num(coords)), 0.0).astype(np.float32)
    return _pixels(frame[spec.KEYPOINT_IMAGE_COLUMN]), np.concatenate([targets, known.astype(np.float32)], 1)


def load_emotion(path: Path) -> tuple[np.ndarray, np.ndarray]:
    frame = pd.read_csv(path)
    frame.columns = [c.strip() for c in frame.columns]
    return _pixels(frame[spec.EMOTION_PIXELS_COLUMN]), frame[spec.EMOTION_LABEL_COLUMN].to_numpy(np.int64)


def _standardize(train_x: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """As the Transform graphs: per-image normalization (the same op), then the training
    split's scaling."""
    def per_image(x):
        return image.normalize_per_image(x).numpy()
    train_x = per_image(train_x)
    mean, std = train_x.mean(), max(train_x.std(), 1e-3)
    return [(x - mean) / std for x in (train_x, *map(per_image, others))]


def train(kind: str, train_csv: Path, eval_csv: Path, params: spec.ModelParams) -> dict:
    """Train one model; returns wall seconds, images per second, per-epoch history."""
    t0 = time.time()
    load = load_keypoints if kind == "keypoints" else load_emotion
    (tx, ty), (ex, ey) = load(train_csv), load(eval_csv)
    tx, ex = _standardize(tx, ex)
    load_seconds = time.time() - t0
    t1 = time.time()
    trainer = keypoint_trainer if kind == "keypoints" else emotion_trainer
    _, history, _ = trainer.train(params, (tx, ty), (ex, ey))
    fit_seconds = time.time() - t1
    epochs = len(history.history["loss"])
    return {"kind": kind, "train_rows": len(tx), "eval_rows": len(ex), "epochs": epochs,
            "load_seconds": round(load_seconds, 1), "fit_seconds": round(fit_seconds, 1),
            "seconds_per_epoch": round(fit_seconds / epochs, 1),
            "train_images_per_second": round(len(tx) * epochs / fit_seconds, 1),
            "history": {k: [round(float(v), 4) for v in vs] for k, vs in history.history.items()}}


def parse_overrides(items) -> dict:
    """``["head=soft_argmax", "epochs=3", "augmentation.max_shift=0.1"]`` -> a dict of
    ModelParams overrides; each value is a Python literal (``true``/``false`` as booleans),
    else a bare string."""
    found = {}
    for item in items:
        name, _, value = item.partition("=")
        value = {"true": "True", "false": "False"}.get(value.lower(), value)
        try:
            found[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            found[name] = value  # a bare word is a string: head=soft_argmax
    return found


def with_overrides(params: spec.ModelParams, overrides: dict) -> spec.ModelParams:
    """``params`` with ``overrides`` applied; ``augmentation.FIELD`` changes one field of the
    augmentation (starting from the defaults if the profile has none)."""
    for name, value in overrides.items():
        if name.startswith("augmentation."):
            value = dataclasses.replace(params.augmentation or spec.Augmentation(),
                                        **{name.partition(".")[2]: value})
            name = "augmentation"
        params = dataclasses.replace(params, **{name: value})
    return params


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["keypoints", "emotion"])
    parser.add_argument("train_csv", type=Path)
    parser.add_argument("eval_csv", type=Path)
    parser.add_argument("--profile", default="full", choices=sorted(config.PROFILES))
    parser.add_argument("--epochs", type=int, help="override the profile's epochs")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="override a ModelParams field (Python literal or bare string), "
                             "e.g. --param head=soft_argmax, "
                             "--param augmentation.max_shift=0.1, --param augmentation=None")
    args = parser.parse_args(argv)
    params = config.PROFILES[args.profile].params_for(by_name(args.kind))
    if args.epochs:
        params = dataclasses.replace(params, epochs=args.epochs)
    params = with_overrides(params, parse_overrides(args.param))
    print(params)
    result = train(args.kind, args.train_csv, args.eval_csv, params)
    history = result.pop("history")
    print(result)
    for key in sorted(history):
        if key.startswith("val_"):
            print(key, history[key])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
