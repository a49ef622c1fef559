"""Checks shared by the branches' raw CSV rows (``components.<branch>.formats``)."""
from __future__ import annotations

import numpy as np


def parse_pixels(text: str, size: int) -> np.ndarray:
    """Parse a space-separated pixel string into a uint8 [size, size] image.

    Raises ValueError with a specific message on a wrong count, a non-integer or a value
    outside 0..255.
    """
    tokens = text.split()
    if len(tokens) != size * size:
        raise ValueError(f"expected {size * size} pixels ({size}x{size}), got {len(tokens)}")
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        bad = next(t for t in tokens if not _is_number(t))
        raise ValueError(f"non-numeric pixel value {bad[:20]!r}") from None
    if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
        raise ValueError("pixel values must be integers")
    if values.min() < 0 or values.max() > 255:
        raise ValueError(f"pixel value out of range 0..255 (min {values.min():g}, max {values.max():g})")
    return values.astype(np.uint8).reshape(size, size)


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def format_float(value: float) -> str:
    # Always with a decimal point, so CsvExampleGen infers FLOAT for every coordinate.
    return f"{value:.4f}"
