"""From a detected face to the crop a model was trained on, and from the crop back to the photo.

Each model learned one framing: the key-point crops put the eyes near y = 38 of 96 at a
nearly fixed face width, the expression crops (FER) are looser. A detector's box is framed
its own way, so the crop is made from its landmarks instead: the similarity transform
(scale, rotation, shift; least squares) that takes the face's landmarks to where that
branch's training crops have them (a ``Template``, fitted on data by ``benchmarks/photos.py
fit``, kept in ``serving/framing.json``). The model answers in crop pixels; the inverse
transform puts its points back into the photo, so a tilted face is straightened for the
model and its points come back tilted.

Coordinates everywhere: pixel centres at integers, x right, y down (OpenCV's and the key-point
data's convention).
"""
from __future__ import annotations

import dataclasses
import functools
import json
from importlib import resources

import cv2
import numpy as np

FRAMING_FILE = "framing.json"


@dataclasses.dataclass(frozen=True)
class Template:
    """Where a branch's training crops have the face finder's landmarks: ``points`` (name ->
    x, y) in a ``size`` x ``size`` crop; for key points also the data's mean ``shape`` (its
    own points), which a second pass frames the first pass's points to."""

    size: int
    points: dict[str, tuple[float, float]]
    shape: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    source: str = ""  # what it was fitted on

    def array(self, names) -> np.ndarray:
        return np.array([self.points[n] for n in names], dtype=np.float64)

    def shape_array(self, names) -> np.ndarray:
        return np.array([self.shape[n] for n in names], dtype=np.float64)


@functools.lru_cache(maxsize=1)
def _fitted() -> dict:
    """``serving/framing.json`` (shipped in the package), read once."""
    return json.loads(resources.files("emotion_ai.serving").joinpath(FRAMING_FILE).read_text())


def load_templates() -> dict[str, Template]:
    """The fitted templates, per branch name."""
    raw = _fitted()
    return {name: Template(t["size"], {k: tuple(v) for k, v in t["points"].items()},
                           {k: tuple(v) for k, v in t.get("shape", {}).items()}, t.get("source", ""))
            for name, t in raw["templates"].items()}


def landmark_names() -> tuple[str, ...]:
    """The face finder's landmarks the templates were fitted on (the ears are left out: often
    hidden, then guessed)."""
    return tuple(_fitted()["landmarks"])


def similarity(source: np.ndarray, target: np.ndarray, rotate: bool = True) -> np.ndarray:
    """The 2x3 matrix of the similarity transform taking ``source`` points (N x 2) closest to
    ``target`` in least squares (Umeyama's solution); without ``rotate``, scale and shift only."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    s, t = source - mu_s, target - mu_t
    variance = (s ** 2).sum()
    if variance <= 0:
        raise ValueError("the landmarks coincide: no framing")
    if rotate:
        u, d, vt = np.linalg.svd(t.T @ s)
        sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
        rotation = u @ sign @ vt
        scale = float(np.trace(np.diag(d) @ sign)) / variance
        linear = scale * rotation
    else:
        scale = float((s * t).sum()) / variance
        linear = scale * np.eye(2)
    return np.hstack([linear, (mu_t - linear @ mu_s)[:, None]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]


def invert(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(matrix)


def warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` crop that ``matrix`` (photo -> crop) defines. A large face is
    first shrunk with area averaging (warpAffine alone samples and would alias); outside the
    photo the edge pixels are repeated, as a padded dataset crop would be."""
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.5:
        factor = 1.0 / (2 * scale)  # shrink to about twice the crop's resolution
        small = cv2.resize(image, (max(1, round(image.shape[1] / factor)), max(1, round(image.shape[0] / factor))),
                           interpolation=cv2.INTER_AREA)
        fx, fy = image.shape[1] / small.shape[1], image.shape[0] / small.shape[0]
        # small pixel centre u maps to original (u + 0.5) * f - 0.5
        to_original = np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5]])
        matrix = compose(matrix, to_original)
        image = small
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 matrix of ``outer`` after ``inner``."""
    full = np.vstack([outer, [0, 0, 1]]) @ np.vstack([inner, [0, 0, 1]])
    return full[:2]


def crop_box(matrix: np.ndarray, size: int) -> list[list[float]]:
    """The crop's four corners in photo pixels (clockwise from top left): a tilted crop is
    not an axis-aligned box."""
    corners = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [size - 0.5, size - 0.5], [-0.5, size - 0.5]])
    return [[round(float(x), 1), round(float(y), 1)] for x, y in apply(invert(matrix), corners)]
