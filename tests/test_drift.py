"""Drift between spans and skew against serving traffic (components/drift.py), and the
server's request log it reads (serving/request_log.py); on generated faces, in-process."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image, ImageFilter

from emotion_ai.components import csv_rows, drift, spec
from emotion_ai.components.branches import EMOTION
from emotion_ai.data import generator
from emotion_ai.pipelines import config

config.set_runtime_environment()


def darker_blurrier(pixels: str, size: int) -> str:
    """The same face photographed in dim light, out of focus."""
    image = Image.fromarray(np.array(pixels.split(), dtype=np.uint8).reshape(size, size))
    dim = image.filter(ImageFilter.GaussianBlur(1.5)).point(lambda v: int(v * 0.45))
    return " ".join(map(str, np.asarray(dim).ravel()))


def spans_of(tmp_path, rows: int = 150):
    """Span 1: generated faces; span 2: other generated faces, darker and blurrier."""
    (tmp_path / "data" / "span-1").mkdir(parents=True)
    first = generator.write_emotion_csv(tmp_path / "data" / "span-1" / "a.csv", rows, seed=1)
    second = generator.write_emotion_csv(tmp_path / "gen2.csv", rows, seed=2)
    lines = second.read_text().splitlines()
    changed = [lines[0]] + [f"{label},{darker_blurrier(pixels, 48)}"
                            for label, pixels in (line.split(",", 1) for line in lines[1:])]
    (tmp_path / "data" / "span-2").mkdir()
    (tmp_path / "data" / "span-2" / "b.csv").write_text("\n".join(changed) + "\n")
    return first, tmp_path / "data" / "span-2" / "b.csv"


def _compare(tmp_path, sources, spans, serving_rows=()):
    examples = tmp_path / "examples"
    csv_rows.stage("emotion", sources, tmp_path / "staged" / "s.csv", examples / spec.REJECTED_ROWS_FILE,
                   features_path=examples / spec.SPAN_FEATURES_FILE)
    out = tmp_path / "drift"
    out.mkdir()
    return drift.compare("emotion", str(examples), spans, _schema(), list(serving_rows), str(out),
                         config.DRIFT_JS_THRESHOLD, config.CLASS_MIX_LINF_THRESHOLD, config.SKEW_JS_THRESHOLD), out


def _schema():
    import tensorflow_data_validation as tfdv

    from emotion_ai.components import curated_schema

    return tfdv.load_schema_text(curated_schema.source_path(EMOTION))


def test_a_darker_blurrier_span_drifts_from_the_previous_one(tmp_path):
    first, second = spans_of(tmp_path)
    spans = [{"name": "span-1", "files": [str(first)]}, {"name": "span-2", "files": [str(second)]}]
    found, out = _compare(tmp_path, [first, second], spans)
    measured = found[drift.DRIFT]
    assert set(measured) == {spec.EMOTION_LABEL_COLUMN, *spec.IMAGE_STATISTICS}
    brightness, contrast, sharpness = spec.IMAGE_STATISTICS
    assert measured[brightness]["flagged"] and measured[brightness]["value"] > 0.3, measured
    assert measured[sharpness]["flagged"], measured
    assert measured[spec.EMOTION_LABEL_COLUMN]["measure"] == "L-infinity distance"
    assert found[drift.COMPARED] == {"newest": "span-2", "previous": "span-1", "serving_requests": 0}
    with open(out / "newest.csv") as f:
        newest = list(csv.DictReader(f))
    assert len(newest) == 150 and float(newest[0][brightness]) < 100  # the dim span's own numbers

    # Two draws of the same kind of faces: nothing over the thresholds.
    (tmp_path / "data" / "span-3").mkdir()
    again = generator.write_emotion_csv(tmp_path / "data" / "span-3" / "c.csv", 150, seed=3)
    spans = [{"name": "span-1", "files": [str(first)]}, {"name": "span-3", "files": [str(again)]}]
    (tmp_path / "x").mkdir()
    found, _ = _compare(tmp_path / "x", [first, again], spans)
    assert not [n for n, m in found[drift.DRIFT].items() if m["flagged"]], found[drift.DRIFT]


def test_serving_traffic_unlike_the_training_data_is_skew(tmp_path):
    first, second = spans_of(tmp_path)
    spans = [{"name": "span-1", "files": [str(first)]}]
    with open(second) as f:  # the server was sent the dim, blurred faces
        sent = [row["pixels"] for row in csv.DictReader(f)][:60]
    log = drift_log(tmp_path / "log", sent)
    found, out = _compare(tmp_path, [first], spans, drift.serving_rows(str(log), "emotion"))
    assert found[drift.COMPARED]["serving_requests"] == 60 and found[drift.DRIFT] == {}
    assert found[drift.SKEW][spec.IMAGE_STATISTICS[0]]["flagged"], found[drift.SKEW]
    assert spec.EMOTION_LABEL_COLUMN not in found[drift.SKEW], "requests carry no labels"
    assert (out / "serving.csv").is_file()


def drift_log(folder, pixel_strings):
    """What ``serve --log-requests`` records when sent ``pixel_strings`` (every request sampled)."""
    from emotion_ai.serving.request_log import RequestLog

    log = RequestLog(folder, sample=1.0)
    for pixels in pixel_strings:
        log.offer("emotion", "serving_pixels", [pixels.encode()])
    log.close()
    assert log.logged == len(pixel_strings) and log.failed == 0
    return folder


def test_the_request_log_samples_measures_encoded_images_and_stays_bounded(tmp_path):
    import io

    from emotion_ai.serving.request_log import RequestLog

    face = np.array(generator.write_emotion_csv(tmp_path / "e.csv", 1, seed=4).read_text().splitlines()[1]
                    .split(",", 1)[1].split(), dtype=np.uint8).reshape(48, 48)
    png = io.BytesIO()
    Image.fromarray(face).resize((480, 480)).convert("RGB").save(png, format="PNG")
    log = RequestLog(tmp_path / "log", sample=0.5, max_bytes=2000, seed=0)
    for _ in range(200):
        log.offer("emotion", "serving_default", [png.getvalue()])
    log.offer("emotion", "serving_examples", [b"x"])  # TFMA's signature: not user traffic
    log.offer("no-such-model", "serving_pixels", [b"1 2 3"])  # no branch to compare it with: ignored
    log.close()
    assert 60 < log.logged < 140, "about half of the requests are sampled"
    assert log.failed == 0
    (path,) = (tmp_path / "log" / "emotion").glob("requests-*.csv")
    assert path.stat().st_size <= 2000 + 200, "bounded: the older records go"
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) == {"time", *spec.IMAGE_STATISTICS}
    measured = float(rows[0][spec.IMAGE_STATISTICS[0]])
    assert measured == pytest.approx(float(face.mean()), abs=3), "measured on the image as the model sees it"
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)
    assert json.dumps(rows)  # plain numbers and times, nothing of the image
