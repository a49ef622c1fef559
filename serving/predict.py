"""``emotion-ai predict``: faces in photos -> key points and expression, JSON + annotated image.

Faces are found with OpenCV's bundled Haar cascade (shipped inside opencv-python-headless
4.x; nothing is downloaded). Each face crop goes to both models through their
``serving_default`` signature (encoded image bytes), either in-process from the model
repository or through a TF Serving REST endpoint (``--server``), so the output is what a
served client would get. CSVs in either dataset format are scored row by row through the
``serving_pixels`` signature instead.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from emotion_ai.components import file_modes
from emotion_ai.components.branches import BRANCHES, by_name
from emotion_ai.serving import request_checks

CASCADE = "haarcascade_frontalface_default.xml"
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class PredictError(Exception):
    """A file that cannot be used, with the reason."""


class FaceDetector:
    def __init__(self, scale_factor: float = 1.05, min_neighbors: int = 4, min_size: int = 24):
        self._cascade = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
        if self._cascade.empty():
            raise RuntimeError(f"OpenCV could not load its bundled {CASCADE}")
        self.scale_factor, self.min_neighbors, self.min_size = scale_factor, min_neighbors, min_size

    def detect(self, grey: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Face boxes ``(x, y, w, h)`` in pixels, left to right."""
        boxes = self._cascade.detectMultiScale(cv2.equalizeHist(grey), scaleFactor=self.scale_factor,
                                               minNeighbors=self.min_neighbors,
                                               minSize=(self.min_size, self.min_size))
        return sorted((tuple(int(v) for v in box) for box in boxes), key=lambda b: b[0])


class LocalModels:
    """Both models in-process from the model repository (their serving signatures)."""

    def __init__(self, model_repo: Path):
        from emotion_ai.serving.local_model import ServedModel

        self._models = {b.name: ServedModel(model_repo, b.name) for b in BRANCHES}
        self.source = ", ".join(f"{m.name} v{m.version}" for m in self._models.values())

    def images(self, model: str, encoded: list[bytes]) -> dict[str, np.ndarray]:
        return self._models[model].predict_images(encoded)

    def pixel_strings(self, model: str, pixels: list[str]) -> dict[str, np.ndarray]:
        return self._models[model].predict_pixel_strings(pixels)


class RemoteModels:
    """Both models through a TF Serving REST endpoint."""

    def __init__(self, url: str):
        from emotion_ai.serving.client import ServingClient

        self._client = ServingClient(url)
        versions = {b.name: self._client.status(b.name)["model_version_status"][0]["version"]
                    for b in BRANCHES}
        self.source = f"{url} (" + ", ".join(f"{k} v{v}" for k, v in versions.items()) + ")"

    def images(self, model: str, encoded: list[bytes]) -> dict[str, np.ndarray]:
        return self._client.predict_images(model, encoded)

    def pixel_strings(self, model: str, pixels: list[str]) -> dict[str, np.ndarray]:
        return self._client.predict_pixel_strings(model, pixels)


def read_photo(path: Path) -> np.ndarray:
    """BGR image; a clear error for a missing, empty, oversized or undecodable file. The
    size is read from the header first (Pillow, nothing decoded): a PNG of a few hundred kB
    may declare 20000 x 20000 pixels."""
    if not path.is_file():
        raise PredictError(f"{path}: no such file")
    data = path.read_bytes()
    if not data:
        raise PredictError(f"{path}: empty file")
    try:  # the server's own checks of one image (any format OpenCV reads, not only the served ones)
        _kind, width, height, _mode = request_checks.image_header(data, 0)
        request_checks.check_image_size(width, height, 0)
    except request_checks.RequestRefused as refused:
        reason = refused.message.removeprefix("instance 0: ")
        raise PredictError(f"{path}: {reason}" if refused.status == 413 else
                           f"{path}: not a readable image ({reason})") from None
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise PredictError(f"{path}: not a readable image (PNG, JPEG, BMP, TIFF, WebP ...)")
    return image


def predict_photo(path: Path, models, detector: FaceDetector) -> tuple[dict, np.ndarray]:
    """Faces with boxes, key points in photo coordinates and the expression; and the
    annotated image."""
    image = read_photo(path)
    boxes = detector.detect(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    result = {"photo": str(path), "width": image.shape[1], "height": image.shape[0], "models": models.source,
              "faces": []}
    if boxes:
        crops = [cv2.imencode(".png", image[y:y + h, x:x + w])[1].tobytes() for x, y, w, h in boxes]
        outputs = {b.name: models.images(b.name, crops) for b in BRANCHES}
        for i, (x, y, w, h) in enumerate(boxes):
            # The served models answer in the crop's pixels; the offset moves them into the photo.
            face = {"box": {"x": x, "y": y, "width": w, "height": h}}
            face.update({b.name: b.part("formats").describe(outputs[b.name], i, (x, y)) for b in BRANCHES})
            result["faces"].append(face)
    return result, annotate(image, result["faces"])


def caption(face: dict) -> str:
    """What the branches say about one face in words, e.g. ``Happy 0.93``."""
    captions = [branch.part("formats").caption(face[branch.name]) for branch in BRANCHES]
    return " ".join(c for c in captions if c)


def annotate(image: np.ndarray, faces: list[dict]) -> np.ndarray:
    """The photo with each face's box, what each branch draws, and their captions above the box."""
    out = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for face in faces:
        b = face["box"]
        cv2.rectangle(out, (b["x"], b["y"]), (b["x"] + b["width"], b["y"] + b["height"]), (0, 200, 0), thickness)
        for branch in BRANCHES:
            branch.part("formats").draw(out, face[branch.name], thickness)
        label = caption(face)
        cv2.putText(out, label, (b["x"], max(12, b["y"] - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness + 0.1,
                    (0, 200, 0), thickness, cv2.LINE_AA)
    return out


def predict_csv(path: Path, models, batch: int = 64) -> dict:
    """Rows of a CSV in either dataset format through ``serving_pixels``; rows that fail the
    pipeline's own input checks are listed as rejected (line and reason), not scored."""
    from emotion_ai.components import csv_rows

    try:
        branch = by_name(csv_rows.detect_kind(path))
        index = branch.staged_columns.index(branch.image_column)
        rows, rejected = [], []
        for line, record, reason, _raw in csv_rows.iter_rows(branch.name, path):
            if record is None:
                rejected.append({"line": line, "reason": reason})
            else:
                rows.append((line, record[index]))
    except csv_rows.InputDataError as error:
        raise PredictError(str(error)) from error
    predictions = []
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        outputs = models.pixel_strings(branch.name, [p for _, p in chunk])
        describe = branch.part("formats").describe
        predictions += [{"line": line, branch.name: describe(outputs, i)} for i, (line, _) in enumerate(chunk)]
    return {"csv": str(path), "model": branch.name, "models": models.source, "rows_scored": len(predictions),
            "rows_rejected": len(rejected), "rejected": rejected, "predictions": predictions}


def run(inputs: list[Path], out_dir: Path, model_repo: Path | None = None, server: str | None = None,
        progress=None) -> tuple[list[dict], list[str]]:
    """Predict every input with the models of ``model_repo`` (in-process) or of ``server``;
    returns the per-file summaries and the per-file errors."""
    if (model_repo is None) == (server is None):
        raise ValueError("give a model repository or a server, not both or neither")
    models = RemoteModels(server) if server else LocalModels(model_repo)
    detector = FaceDetector()
    out_dir.mkdir(parents=True, exist_ok=True)
    names = output_names([Path(p) for p in inputs])
    summaries, errors = [], []
    for path in (progress(inputs) if progress else inputs):
        path = Path(path)
        stem = names[path]
        try:
            if path.name.lower().endswith((".csv", ".csv.gz")):
                result = predict_csv(path, models)
                target = out_dir / f"{stem}.predictions.json"
                summary = {"input": str(path), "json": str(target), "rows_scored": result["rows_scored"],
                           "rows_rejected": result["rows_rejected"]}
            else:
                result, annotated = predict_photo(path, models, detector)
                target = out_dir / f"{stem}.json"
                image_path = out_dir / f"{stem}.annotated.png"
                cv2.imwrite(str(image_path), annotated)
                file_modes.private(image_path)  # a person's photo
                summary = {"input": str(path), "json": str(target), "image": str(image_path),
                           "faces": len(result["faces"]),
                           "labels": [caption(f) for f in result["faces"]]}
                if not result["faces"]:
                    result["message"] = "no face found"
            target.write_text(json.dumps(result, indent=2))
            file_modes.private(target)
            summaries.append(summary)
        except PredictError as error:
            errors.append(str(error))
        except Exception as error:  # noqa: BLE001 - one file's problem (a 413 from --server, ...) never ends the batch
            errors.append(f"{path}: {type(error).__name__}: {error}")
    return summaries, errors


def output_names(paths: list[Path]) -> dict[Path, str]:
    """Each input's output name: its stem (``a`` for ``a.png``, ``some`` for ``some.csv.gz``);
    when another input has that stem, its file name (``a.jpg``), then a number: no output
    overwrites another's."""
    names: dict[Path, str] = {}
    taken: set[str] = set()
    stems = [p.name.split(".")[0] if p.name.lower().endswith((".csv", ".csv.gz")) else p.stem for p in paths]
    for path, stem in zip(paths, stems):
        if path in names:
            continue
        name = stem if stems.count(stem) == 1 else path.name
        number = 2
        while name in taken:
            name, number = f"{path.name}-{number}", number + 1
        names[path] = name
        taken.add(name)
    return names
