"""The expression branch's data at the edges: a raw FER2013-style CSV row in, a served output out."""
from __future__ import annotations

import numpy as np

from emotion_ai.components import spec
from emotion_ai.components.common import image_stats, rows


def check_row(row: dict[str, str]) -> list[str]:
    """Validate one raw row (``ValueError`` says what is wrong); return the staged record:
    the class index (an integer; its range is the schema's), then the pixels."""
    raw = (row.get(spec.EMOTION_LABEL_COLUMN) or "").strip()
    try:
        label = int(raw)
    except ValueError:
        raise ValueError(f"emotion: label {raw[:20]!r} is not an integer") from None
    # A label outside the classes is not refused here: it is the whole span's problem (see the
    # label's Domain in the registry), which ExampleValidator flags against the curated schema.
    rows.parse_pixels(row[spec.EMOTION_PIXELS_COLUMN], spec.EMOTION_IMAGE_SIZE)
    return [str(label), " ".join(row[spec.EMOTION_PIXELS_COLUMN].split())]


def derived_features(record: list[str]) -> list[str]:
    """The numbers data validation sees of a staged record (``derived_columns``): the image's
    statistics."""
    return [image_stats.format_feature(v) for v in image_stats.image_features(record[1], spec.EMOTION_IMAGE_SIZE)]


def truth(records: list[list[str]]) -> np.ndarray:
    """Class indices of staged records."""
    return np.array([int(r[0]) for r in records], dtype=int)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def points(outputs: dict[str, np.ndarray], i: int) -> None:
    """No points: nothing to frame a second crop on."""
    return None


def describe(outputs: dict[str, np.ndarray], i: int, to_photo=None) -> dict:
    """One input's served output as JSON: the label and each class's probability."""
    del to_photo  # a class does not move with the crop
    probabilities = outputs[spec.EMOTION_OUTPUT][i]
    return {"label": _text(outputs["label"][i]),
            "probabilities": {c: round(float(p), 4) for c, p in zip(spec.EMOTION_CLASSES, probabilities)}}


def caption(described: dict) -> str | None:
    """The label and its probability, e.g. ``Happy 0.93``."""
    return f"{described['label']} {max(described['probabilities'].values()):.2f}"


def draw(image: np.ndarray, described: dict, thickness: int) -> None:
    """Nothing to draw on the face: the caption says it."""
