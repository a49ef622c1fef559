"""Numbers that describe an image, for data validation: what TFDV can compare across spans.

A pixel string is one opaque value to StatisticsGen; these few numbers per example are what
a day of darker, blurrier or differently framed photos changes. They are computed once, by
the ExampleGen that checks the rows (``csv_rows.stage``), travel with the examples as
ordinary features, and never reach a model: no ``preprocessing_fn`` reads them and the
serving signatures parse only the image.
"""
from __future__ import annotations

import numpy as np


def image_features(pixels: str, size: int) -> list[float]:
    """``spec.IMAGE_STATISTICS`` of one space-separated pixel string (already checked):
    mean brightness and RMS contrast in grey levels, and sharpness as the standard deviation
    of the 4-neighbour Laplacian (it falls when an image is blurred; the usual focus
    measure, as a deviation so that it is in grey levels too)."""
    image = np.array(pixels.split(), dtype=np.float32).reshape(size, size)
    laplacian = (image[:-2, 1:-1] + image[2:, 1:-1] + image[1:-1, :-2] + image[1:-1, 2:]
                 - 4.0 * image[1:-1, 1:-1])
    return [float(image.mean()), float(image.std()), float(laplacian.std())]


def format_feature(value: float) -> str:
    # Always with a decimal point, so CsvExampleGen infers FLOAT for the column.
    return f"{value:.4f}"
