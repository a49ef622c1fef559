"""Deterministic generator of synthetic faces in the two real CSV formats.

Faces are drawn (Pillow) from a parametric geometry: head, eyes, pupils, brows, nose and
lips, under a random similarity transform (scale, small rotation, shift), with skin tone,
background, lighting gradient, blur and noise varying per face. The 15 key points are the
geometry's own points, so labels are exact. Expressions change the geometry the way the
facial action units do (brows, mouth curvature and opening, eye opening), which gives the
classifier a learnable signal. A fraction of key-point rows lose all but four points, as
in Kaggle's file, where most rows label only eye centres, nose tip and bottom lip.

    emotion-ai generate-data --out DIR [--seed N]   (a fresh draw unless --seed is given)
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from emotion_ai.components import spec

RENDER_SCALE = 2  # draw at 2x, then downsample with Lanczos for anti-aliased edges
# Class frequencies close to the real FER-derived file (Disgust is rare there too).
EMOTION_FREQUENCIES = (0.20, 0.03, 0.25, 0.36, 0.16)
# Points kept in a "sparse" row, as in Kaggle's file: eye centres, nose tip, bottom lip.
SPARSE_POINTS = ("left_eye_center", "right_eye_center", "nose_tip", "mouth_center_bottom_lip")

# Canonical face in pixels of the key-point frame (Kaggle's 96x96; x right, y down); "left"
# is the subject's left, which is the image's right, as in Kaggle.
_FRAME = spec.KEYPOINT_IMAGE_SIZE
_CANONICAL = {
    "left_eye_center": (66.0, 38.0), "right_eye_center": (30.0, 38.0),
    "left_eye_inner_corner": (59.0, 38.5), "left_eye_outer_corner": (73.0, 38.5),
    "right_eye_inner_corner": (37.0, 38.5), "right_eye_outer_corner": (23.0, 38.5),
    "left_eyebrow_inner_end": (57.0, 29.0), "left_eyebrow_outer_end": (79.0, 30.0),
    "right_eyebrow_inner_end": (39.0, 29.0), "right_eyebrow_outer_end": (17.0, 30.0),
    "nose_tip": (48.0, 58.0),
    "mouth_left_corner": (62.0, 75.0), "mouth_right_corner": (34.0, 75.0),
    "mouth_center_top_lip": (48.0, 72.0), "mouth_center_bottom_lip": (48.0, 79.0),
}

# Per expression: (brow inner dy, brow outer dy, mouth corner dy, mouth open px,
# mouth width factor, eye opening factor, upper lip raise px). Negative dy is up.
_EXPRESSIONS = {
    "Neutral": (0.0, 0.0, 0.0, 0.0, 1.00, 1.0, 0.0),
    "Angry": (4.0, -1.5, 1.0, 0.0, 0.90, 0.75, 0.0),
    "Disgust": (3.0, 0.5, 2.5, 1.5, 0.92, 0.6, 3.0),
    "Sad": (-3.5, 2.5, 4.0, 0.0, 0.95, 0.85, 0.0),
    "Happy": (0.0, 0.0, -5.0, 2.0, 1.18, 0.9, 0.0),
    "Surprise": (-6.0, -5.0, 0.0, 9.0, 0.80, 1.45, 0.0),
}


def _face_geometry(rng: np.random.Generator, expression: str, strength: float) -> dict:
    """Key points plus drawing parameters of one face in the canonical frame."""
    brow_in, brow_out, corner_dy, mouth_open, width, eye_open, lip_raise = (
        v * strength if i not in (4, 5) else 1 + (v - 1) * strength
        for i, v in enumerate(_EXPRESSIONS[expression]))
    pts = {k: np.array(v, dtype=float) for k, v in _CANONICAL.items()}
    # Identity: eye spacing, eye height, nose length, mouth width and height.
    spacing = rng.normal(0, 1.5)
    for side, sign in (("left", 1), ("right", -1)):
        for part in ("eye_center", "eye_inner_corner", "eye_outer_corner",
                     "eyebrow_inner_end", "eyebrow_outer_end"):
            pts[f"{side}_{part}"][0] += sign * spacing
    eye_dy = rng.normal(0, 1.5)
    for k in pts:
        if "eye" in k:
            pts[k][1] += eye_dy
    pts["nose_tip"][1] += rng.normal(0, 2.0)
    mouth_dy = rng.normal(0, 2.0)
    for k in ("mouth_left_corner", "mouth_right_corner", "mouth_center_top_lip",
              "mouth_center_bottom_lip"):
        pts[k][1] += mouth_dy
    # Expression.
    for side in ("left", "right"):
        pts[f"{side}_eyebrow_inner_end"][1] += brow_in
        pts[f"{side}_eyebrow_outer_end"][1] += brow_out
    half_width = (pts["mouth_left_corner"][0] - pts["mouth_right_corner"][0]) / 2
    half_width *= width * rng.uniform(0.9, 1.1)
    pts["mouth_left_corner"] = np.array([_FRAME / 2 + half_width, pts["mouth_left_corner"][1] + corner_dy])
    pts["mouth_right_corner"] = np.array([_FRAME / 2 - half_width, pts["mouth_right_corner"][1] + corner_dy])
    pts["mouth_center_top_lip"][1] -= lip_raise + mouth_open * 0.3
    pts["mouth_center_bottom_lip"][1] += mouth_open * 0.7
    return {
        "points": pts,
        "eye_open": 3.2 * eye_open * rng.uniform(0.85, 1.15),
        "mouth_open": mouth_open,
        "brow_thickness": rng.uniform(2.0, 3.2),
        "head_rx": rng.uniform(34, 40), "head_ry": rng.uniform(44, 50),
        "gaze": rng.normal(0, 0.6, size=2),
    }


def _similarity(rng: np.random.Generator, size: int):
    """Random scale / rotation / shift about the frame centre, as a point function."""
    scale = math.exp(rng.normal(0, 0.06)) * size / _FRAME
    angle = math.radians(rng.normal(0, 6.0))
    shift = rng.normal(0, 2.5, size=2) * size / _FRAME
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    centre = np.array([(_FRAME - 1) / 2, (_FRAME - 1) / 2])
    out_centre = np.array([(size - 1) / 2, (size - 1) / 2]) + shift

    def apply(p):
        d = np.asarray(p, dtype=float) - centre
        return out_centre + np.array([c * d[0] - s * d[1], s * d[0] + c * d[1]])

    return apply, scale


def render_face(rng: np.random.Generator, size: int, expression: str = "Neutral",
                strength: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Draw one face; return (uint8 image [size, size], key points [15, 2] in pixels)."""
    geo = _face_geometry(rng, expression, strength)
    to_px, scale = _similarity(rng, size)
    r = RENDER_SCALE

    def big(p):  # pixel-centre coordinates -> drawing coordinates at render scale
        q = to_px(p)
        return ((q[0] + 0.5) * r, (q[1] + 0.5) * r)

    def poly(points):
        return [big(p) for p in points]

    bg = int(rng.integers(20, 236))
    skin = int(np.clip(rng.normal(150, 35), 70, 235))
    img = Image.new("L", (size * r, size * r), bg)
    draw = ImageDraw.Draw(img)
    pts = geo["points"]
    # Head and hair.
    head = [(_FRAME / 2 + geo["head_rx"] * math.cos(t), 50 + geo["head_ry"] * math.sin(t))
            for t in np.linspace(0, 2 * math.pi, 48, endpoint=False)]
    hair_tone = int(np.clip(skin - rng.uniform(40, 110), 5, 255))
    hair = [(_FRAME / 2 + (geo["head_rx"] + 2) * math.cos(t), 44 + (geo["head_ry"] - 6) * math.sin(t))
            for t in np.linspace(math.pi, 2 * math.pi, 24)]
    draw.polygon(poly(hair), fill=hair_tone)
    draw.polygon(poly(head), fill=skin)
    dark = max(skin - 90, 0)
    # Eyes: almond outline through the corners, iris at the centre.
    for side in ("left", "right"):
        inner, outer = pts[f"{side}_eye_inner_corner"], pts[f"{side}_eye_outer_corner"]
        centre = pts[f"{side}_eye_center"]
        opening = geo["eye_open"]
        upper = [centre + np.array([0, -opening]) + (t - 0.5) * (outer - inner) * np.array([1, 0])
                 for t in (0.25, 0.5, 0.75)]
        lower = [centre + np.array([0, opening * 0.8]) + (t - 0.5) * (outer - inner) * np.array([1, 0])
                 for t in (0.75, 0.5, 0.25)]
        outline = [inner, *upper, outer, *lower] if outer[0] > inner[0] else [outer, *upper[::-1], inner, *lower[::-1]]
        draw.polygon(poly(outline), fill=min(skin + 60, 250))
        iris = centre + geo["gaze"]
        rad = min(2.6, opening) * scale * r
        cx, cy = big(iris)
        draw.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], fill=int(rng.integers(10, 70)))
        # Brow: a thick line from inner to outer end with a slight arch.
        b_in, b_out = pts[f"{side}_eyebrow_inner_end"], pts[f"{side}_eyebrow_outer_end"]
        mid = (b_in + b_out) / 2 + np.array([0, -1.5])
        draw.line(poly([b_in, mid, b_out]), fill=hair_tone, width=max(1, int(geo["brow_thickness"] * scale * r)),
                  joint="curve")
    # Nose: bridge shadow and nostrils around the tip.
    tip = pts["nose_tip"]
    draw.line(poly([tip + np.array([-1.5, -16]), tip + np.array([-3, -2])]), fill=max(skin - 40, 0),
              width=max(1, int(1.5 * scale * r)))
    for dx in (-4, 4):
        c = big(tip + np.array([dx, 1.5]))
        rad = 1.4 * scale * r
        draw.ellipse([c[0] - rad, c[1] - rad, c[0] + rad, c[1] + rad], fill=dark)
    # Mouth: upper lip through the corners and top-lip point, lower lip through the bottom.
    lc, rc = pts["mouth_left_corner"], pts["mouth_right_corner"]
    top, bottom = pts["mouth_center_top_lip"], pts["mouth_center_bottom_lip"]
    lip_tone = int(np.clip(skin - rng.uniform(30, 60), 0, 255))
    upper_lip = [rc, (rc + top) / 2 + np.array([0, -0.8]), top, (lc + top) / 2 + np.array([0, -0.8]), lc]
    lower_lip = [lc, (lc + bottom) / 2 + np.array([0, 0.8]), bottom, (rc + bottom) / 2 + np.array([0, 0.8])]
    draw.polygon(poly(upper_lip + lower_lip), fill=lip_tone)
    if geo["mouth_open"] > 0.5:
        inner = [rc + np.array([2, 0]), top + np.array([0, 1.8]), lc + np.array([-2, 0]),
                 bottom + np.array([0, -1.8])]
        draw.polygon(poly(inner), fill=int(rng.integers(5, 40)))
    else:
        draw.line(poly([rc, (top + bottom) / 2, lc]), fill=dark, width=max(1, int(scale * r)))
    img = img.resize((size, size), Image.LANCZOS)
    img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.0, 0.7))))
    arr = np.asarray(img, dtype=np.float32)
    # Lighting gradient and sensor noise.
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    direction = rng.normal(0, 1, size=2)
    arr = arr * rng.uniform(0.75, 1.2) + 45 * rng.uniform(0, 1) * (direction[0] * xx + direction[1] * yy)
    arr = arr + rng.normal(0, rng.uniform(2, 8), size=arr.shape)
    image = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    keypoints = np.array([to_px(pts[name]) for name in spec.KEYPOINT_NAMES])
    return image, keypoints


def render_group_photo(seed: int = 0) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A 400x240 grey "photo" of two drawn faces (Happy, Surprise) for trying ``predict``;
    returns the image and each face's box ``(x, y, w, h)``. OpenCV's bundled frontal-face
    cascade finds both faces of the default seed."""
    rng = np.random.default_rng(seed)
    photo = np.full((240, 400), 90, np.uint8)
    boxes = [(30, 50, 150, 150), (220, 40, 150, 150)]
    for (x, y, w, h), expression in zip(boxes, ("Happy", "Surprise")):
        photo[y:y + h, x:x + w], _ = render_face(rng, w, expression)
    return photo, boxes


def render_photo(faces: list[tuple[int, int, int, float]], width: int, height: int, seed: int = 0,
                 expressions=("Happy", "Surprise", "Sad")) -> tuple[np.ndarray, list[np.ndarray]]:
    """A grey "photo" of drawn faces: each ``(x, y, size, degrees)`` puts a ``size`` px face
    with its centre at ``(x, y)``, turned in the image plane by ``degrees`` (counter-clockwise
    as seen). Returns the image and each face's 15 key points in photo pixels (pixel centres
    at integers), for testing ``predict`` end to end."""
    import cv2

    rng = np.random.default_rng(seed)
    photo = np.full((height, width), 90, np.uint8)
    truths = []
    for i, (cx, cy, size, degrees) in enumerate(faces):
        face, points = render_face(rng, size, expressions[i % len(expressions)])
        # The face's square onto the photo: turned about its centre, then moved to (cx, cy).
        centre = ((size - 1) / 2, (size - 1) / 2)
        matrix = cv2.getRotationMatrix2D(centre, degrees, 1.0)
        matrix[:, 2] += (cx - centre[0], cy - centre[1])
        turned = cv2.warpAffine(face, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=0)
        inside = cv2.warpAffine(np.full_like(face, 255), matrix, (width, height), flags=cv2.INTER_NEAREST,
                                borderValue=0) > 0
        photo[inside] = turned[inside]
        truths.append(points @ matrix[:, :2].T + matrix[:, 2])
    return photo, truths


def _pixels(image: np.ndarray) -> str:
    return " ".join(map(str, image.reshape(-1).tolist()))


def _open(path: Path):
    return gzip.open(path, "wt", newline="") if path.suffix == ".gz" else open(path, "w", newline="")


def write_keypoints_csv(path: Path, rows: int, seed: int = 0, sparse_fraction: float = 0.3) -> Path:
    """Write ``rows`` faces in the Kaggle layout; a fraction keeps only four points."""
    rng = np.random.default_rng([seed, 1])
    size = spec.KEYPOINT_IMAGE_SIZE
    sparse_idx = [spec.KEYPOINT_NAMES.index(n) for n in SPARSE_POINTS]
    expressions = list(_EXPRESSIONS)
    with _open(path) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow([*spec.KEYPOINT_COLUMNS, spec.KEYPOINT_IMAGE_COLUMN])
        for _ in range(rows):
            expression = expressions[int(rng.integers(len(expressions)))]
            image, kp = render_face(rng, size, expression, strength=float(rng.uniform(0, 1)))
            kp = np.clip(kp, 0, size - 1)
            values = [f"{v:.4f}" for v in kp.reshape(-1)]
            if rng.random() < sparse_fraction:
                keep = {c for i in sparse_idx for c in (2 * i, 2 * i + 1)}
                values = [v if i in keep else "" for i, v in enumerate(values)]
            writer.writerow([*values, _pixels(image)])
    return path


def write_emotion_csv(path: Path, rows: int, seed: int = 0) -> Path:
    """Write ``rows`` 48x48 faces in the FER-derived ``emotion,pixels`` layout."""
    rng = np.random.default_rng([seed, 2])
    with _open(path) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow([spec.EMOTION_LABEL_COLUMN, spec.EMOTION_PIXELS_COLUMN])
        for _ in range(rows):
            label = int(rng.choice(len(spec.EMOTION_CLASSES), p=EMOTION_FREQUENCIES))
            big, _ = render_face(rng, _FRAME, spec.EMOTION_CLASSES[label], strength=float(rng.uniform(0.6, 1.2)))
            small = np.asarray(Image.fromarray(big).resize((spec.EMOTION_IMAGE_SIZE,) * 2, Image.LANCZOS))
            writer.writerow([label, _pixels(small)])
    return path


TRAINING_SEED = 0  # the draw `make run` generates into an empty data/ and trains on
PROVENANCE_FILE = ".generated.json"  # beside generated CSVs: which files are sample data, and which draw


def generate(out_dir: Path, keypoint_rows: int, emotion_rows: int, seed: int = TRAINING_SEED) -> tuple[Path, Path]:
    """Write ``keypoints.csv`` and ``emotion.csv`` into ``out_dir``, and record them (name,
    seed, rows, content hash) in ``out_dir/.generated.json`` so a run can say its data is
    generated sample data rather than the user's."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = (write_keypoints_csv(out_dir / "keypoints.csv", keypoint_rows, seed),
             write_emotion_csv(out_dir / "emotion.csv", emotion_rows, seed))
    record = _read_provenance(out_dir)
    for path, rows in zip(paths, (keypoint_rows, emotion_rows)):
        record[path.name] = {"seed": seed, "rows": rows, "sha256": _sha256(path)}
    (out_dir / PROVENANCE_FILE).write_text(json.dumps(record, indent=1, sort_keys=True))
    return paths


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _read_provenance(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / PROVENANCE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def provenance(path: Path) -> dict | None:
    """``{"seed", "rows"}`` if ``path`` is a generated sample file, unchanged since; else None."""
    entry = _read_provenance(Path(path).parent).get(Path(path).name)
    if entry and Path(path).is_file() and _sha256(path) == entry["sha256"]:
        return {"seed": entry["seed"], "rows": entry["rows"]}
    return None
