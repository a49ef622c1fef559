"""The key-point branch's data at the edges: a raw Kaggle CSV row in, a served output out."""
from __future__ import annotations

import numpy as np

from emotion_ai.components import spec
from emotion_ai.components.common import image_stats, rows


def check_row(row: dict[str, str]) -> list[str]:
    """Validate one raw row (``ValueError`` says what is wrong); return the staged record:
    the coordinates (``MISSING_COORDINATE`` where unlabelled), then the pixels."""
    size = spec.KEYPOINT_IMAGE_SIZE
    coords = []
    for column in spec.KEYPOINT_COLUMNS:
        raw = (row.get(column) or "").strip()
        if raw == "":
            coords.append(spec.MISSING_COORDINATE)
            continue
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{column}: non-numeric value {raw[:20]!r}") from None
        if not np.isfinite(value) or value < 0 or value > size:
            raise ValueError(f"{column}: coordinate {raw} outside the {size}x{size} image")
        coords.append(value)
    if all(c == spec.MISSING_COORDINATE for c in coords):
        raise ValueError("no key point is labelled")
    rows.parse_pixels(row[spec.KEYPOINT_IMAGE_COLUMN], size)
    return [rows.format_float(c) for c in coords] + [" ".join(row[spec.KEYPOINT_IMAGE_COLUMN].split())]


def derived_features(record: list[str]) -> list[str]:
    """The numbers data validation sees of a staged record (``derived_columns``): the image's
    statistics, then the face's framing from its labels (``MISSING_COORDINATE`` for the eye
    distance when an eye centre is unlabelled)."""
    coords = np.array([float(v) for v in record[:len(spec.KEYPOINT_COLUMNS)]]).reshape(-1, 2)
    known = (coords >= 0).all(axis=1)
    left, right = coords[0], coords[1]  # the eye centres (KEYPOINT_NAMES order)
    eyes = float(np.hypot(*(left - right))) if known[0] and known[1] else spec.MISSING_COORDINATE
    centre = coords[known].mean(axis=0)  # check_row refuses a row with no labelled point
    values = image_stats.image_features(record[-1], spec.KEYPOINT_IMAGE_SIZE) + [eyes, *centre]
    return [image_stats.format_feature(v) for v in values]


def truth(records: list[list[str]]) -> np.ndarray:
    """Pixel labels ``[n, 30]`` of staged records (``MISSING_COORDINATE`` where unknown)."""
    n = len(spec.KEYPOINT_COLUMNS)
    return np.array([[float(v) for v in r[:n]] for r in records], dtype=float).reshape(-1, n)


def points(outputs: dict[str, np.ndarray], i: int) -> np.ndarray:
    """One input's points ``[15, 2]`` in the pixels of the image it was given (``predict``
    frames a second crop on them, and maps them back into the photo)."""
    return np.asarray(outputs[spec.KEYPOINTS_OUTPUT][i], dtype=float).reshape(-1, 2)


def describe(outputs: dict[str, np.ndarray], i: int, to_photo=None) -> dict:
    """One input's served output as JSON: ``point -> [x, y]`` in pixels; ``to_photo`` maps
    them (``[n, 2]`` -> ``[n, 2]``) from the crop the model saw into the photo."""
    xy = points(outputs, i)
    if to_photo is not None:
        xy = to_photo(xy)
    return {name: [round(float(x), 2), round(float(y), 2)] for name, (x, y) in zip(spec.KEYPOINT_NAMES, xy)}


def caption(described: dict) -> str | None:
    """Nothing to caption: the points are drawn."""
    return None


def draw(image: np.ndarray, described: dict, thickness: int) -> None:
    """Mark the points on a photo (BGR, in place)."""
    import cv2  # only predict draws

    for x, y in described.values():
        cv2.circle(image, (round(x), round(y)), max(2, thickness + 1), (0, 0, 255), -1)
