"""The sample-data generator: deterministic, exact real formats, labels on the drawn features."""
from __future__ import annotations

import csv
import hashlib

import numpy as np

from emotion_ai.components import csv_rows, spec
from emotion_ai.data import generator


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = generator.generate(tmp_path / "a", 12, 12, seed=3)
    b = generator.generate(tmp_path / "b", 12, 12, seed=3)
    c = generator.generate(tmp_path / "c", 12, 12, seed=4)
    assert [_md5(p) for p in a] == [_md5(p) for p in b]
    assert _md5(a[0]) != _md5(c[0]) and _md5(a[1]) != _md5(c[1])


def test_keypoint_file_has_kaggle_layout_and_valid_rows(tiny_data):
    path = tiny_data["keypoints"]
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == [*spec.KEYPOINT_COLUMNS, "Image"]
    body = rows[1:]
    assert len(body) == 80
    for row in body:
        assert len(row) == 31
        assert len(row[30].split()) == 96 * 96
        coords = [float(v) for v in row[:30] if v]
        assert all(0 <= v <= 95 for v in coords)
    sparse = sum(1 for row in body if "" in row[:30])
    assert 0.1 * len(body) < sparse < 0.5 * len(body), "about 30% of rows keep only four points"
    # Every row still passes the same validation real files go through.
    assert all(reason is None for _, _, reason, _ in csv_rows.iter_rows("keypoints", path))


def test_emotion_file_layout_and_class_mix(tiny_data):
    with open(tiny_data["emotion"], newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["emotion", "pixels"]
    labels = [int(r[0]) for r in rows[1:]]
    assert set(labels) <= set(range(5))
    assert len(set(labels)) >= 4
    assert all(len(r[1].split()) == 48 * 48 for r in rows[1:])


def test_pupils_are_drawn_at_the_eye_centre_labels():
    """The label is where the feature is: the eye-centre pixel is darker than the skin
    around the eye (the iris is drawn there)."""
    rng = np.random.default_rng(7)
    darker = 0
    for _ in range(20):
        image, kp = generator.render_face(rng, 96)
        for name in ("left_eye_center", "right_eye_center"):
            x, y = np.rint(kp[spec.KEYPOINT_NAMES.index(name)]).astype(int)
            centre = image[y - 1:y + 2, x - 1:x + 2].mean()
            ring = np.concatenate([image[y - 8, x - 8:x + 9], image[y + 8, x - 8:x + 9]]).mean()
            darker += centre < ring
    assert darker >= 36  # of 40 eyes


def test_expressions_move_the_mouth_corners():
    rng = np.random.default_rng(1)
    corner = spec.KEYPOINT_NAMES.index("mouth_left_corner")
    top = spec.KEYPOINT_NAMES.index("mouth_center_top_lip")

    def lift(expression):
        values = []
        for _ in range(30):
            _, kp = generator.render_face(rng, 96, expression)
            values.append(kp[top][1] - kp[corner][1])  # > 0: corner above the lip centre
        return np.mean(values)

    assert lift("Happy") > lift("Neutral") > lift("Sad")
