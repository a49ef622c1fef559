"""``emotion-ai predict``: faces in photos -> key points and expression, JSON + annotated image.

Faces are found by BlazeFace (``faces``: a score and six landmarks per face; its weights ship
in its package, nothing is downloaded). Each branch's model gets the crop it was trained on,
made from the landmarks (``framing``: the fitted template of that branch's training crops),
and the key-point model a second crop framed on its own first answer; the points come back
into the photo through the inverse of the crop's transform. Both models are called through
their ``serving_default`` signature (encoded images), in-process from the model repository or
through a TF Serving REST endpoint (``--server``), so the output is what a served client
would get. CSVs in either dataset format are scored row by row through the ``serving_pixels``
signature instead.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np

from emotion_ai.components import file_modes, spec
from emotion_ai.components.branches import BRANCHES, by_name
from emotion_ai.serving import framing, request_checks
from emotion_ai.serving.faces import FaceFinder

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class PredictError(Exception):
    """A file that cannot be used, with the reason."""


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
    """The photo as RGB ``uint8``, upright (its EXIF orientation applied); a clear error for a
    missing, empty, oversized, truncated or undecodable file. The size is read from the header
    first (nothing decoded): a PNG of a few hundred kB may declare 20000 x 20000 pixels. What
    the file says it is counts, not its name (a PNG named .jpg is a PNG); transparency is
    laid on white, 16-bit samples keep their top 8 bits, CMYK and palettes become RGB."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path.is_file():
        raise PredictError(f"{path}: no such file")
    data = path.read_bytes()
    if not data:
        raise PredictError(f"{path}: empty file")
    try:  # the server's own checks of one image (any format Pillow reads, not only the served ones)
        _kind, width, height, _mode = request_checks.image_header(data, 0)
        request_checks.check_image_size(width, height, 0)
    except request_checks.RequestRefused as refused:
        reason = refused.message.removeprefix("instance 0: ")
        raise PredictError(f"{path}: {reason}" if refused.status == 413 else
                           f"{path}: not a readable image ({reason})") from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # a truncated file fails here, not half-drawn later
            image = ImageOps.exif_transpose(image)
            return to_rgb(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise PredictError(f"{path}: not a readable image, truncated or damaged ({error})") from None


def to_rgb(image) -> np.ndarray:
    """A Pillow image of any mode as RGB ``uint8``."""
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grey: scale to 8 bits
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        grey = np.clip(np.rint(values * 255.0 / top), 0, 255).astype(np.uint8)
        return np.stack([grey] * 3, axis=-1)
    if image.mode == "F":
        grey = np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8)
        return np.stack([grey] * 3, axis=-1)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


class PhotoPredictor:
    """Faces of one photo through both models: the finder, each branch's crop, the key points'
    second pass, everything mapped back into photo pixels."""

    def __init__(self, models, finder: FaceFinder | None = None, rotate: bool = True, refine: bool = True):
        self.models, self.finder = models, finder or FaceFinder()
        self.templates, self.rotate, self.refine = framing.load_templates(), rotate, refine
        self.landmarks = framing.landmark_names()

    def faces(self, rgb: np.ndarray) -> list[dict]:
        found = self.finder.find(rgb)
        if not found:
            return []
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        faces = [{"score": round(f.score, 4),
                  "box": {k: round(v, 1) for k, v in zip(("x", "y", "width", "height"), f.box)},
                  "crops": {}} for f in found]
        for branch in BRANCHES:
            template = self.templates[branch.name]
            matrices = [framing.similarity(f.points(self.landmarks), template.array(self.landmarks), self.rotate)
                        for f in found]
            outputs = self._run(branch, grey, matrices)
            formats = branch.part("formats")
            if self.refine and template.shape and formats.points(outputs, 0) is not None:
                # Second pass: a crop framed on the first answer's points, as the training
                # crops were framed on the labelled points.
                names = list(template.shape)
                matrices = [framing.similarity(framing.apply(framing.invert(m), formats.points(outputs, i)),
                                               template.shape_array(names), self.rotate)
                            for i, m in enumerate(matrices)]
                outputs = self._run(branch, grey, matrices)
            for i, (face, matrix) in enumerate(zip(faces, matrices)):
                back = framing.invert(matrix)
                face["crops"][branch.name] = framing.crop_box(matrix, branch.image_size)
                face[branch.name] = formats.describe(outputs, i, lambda xy, back=back: framing.apply(back, xy))
        return faces

    def _run(self, branch, grey: np.ndarray, matrices: list[np.ndarray]) -> dict[str, np.ndarray]:
        crops = [cv2.imencode(".png", framing.warp(grey, m, branch.image_size))[1].tobytes() for m in matrices]
        return self.models.images(branch.name, crops)


def predict_photo(path: Path, predictor: PhotoPredictor) -> tuple[dict, np.ndarray]:
    """Faces with their score, box, crops, key points in photo pixels and the expression;
    and the annotated image (BGR)."""
    rgb = read_photo(path)
    result = {"photo": str(path), "width": rgb.shape[1], "height": rgb.shape[0],
              "models": predictor.models.source, "min_score": predictor.finder.min_score,
              "faces": predictor.faces(rgb)}
    return result, annotate(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), result["faces"])


def caption(face: dict) -> str:
    """What the branches say about one face in words, e.g. ``Happy 0.93``."""
    captions = [branch.part("formats").caption(face[branch.name]) for branch in BRANCHES]
    return " ".join(c for c in captions if c)


def annotate(image: np.ndarray, faces: list[dict]) -> np.ndarray:
    """The photo with each face's box, what each branch draws, and a caption on a filled band
    above the box, sized to the face so that it reads at any photo size."""
    out = image.copy()
    for face in faces:
        b = face["box"]
        x0, y0, x1, y1 = (round(b["x"]), round(b["y"]), round(b["x"] + b["width"]), round(b["y"] + b["height"]))
        thickness = max(1, round(b["width"] / 60))
        cv2.rectangle(out, (x0, y0), (x1, y1), (0, 200, 0), thickness)
        for branch in BRANCHES:
            branch.part("formats").draw(out, face[branch.name], thickness)
        label = f"{caption(face)} ({face['score']:.2f})".strip()
        scale = max(0.35, b["width"] / 220)
        (w, h), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        band_w, band_h = w + 2 * thickness, h + base + 2 * thickness
        # Above the box, inside the photo: moved left at the right edge, below the top edge.
        left = int(min(max(0, x0), max(0, out.shape[1] - band_w)))
        top = int(max(0, y0 - band_h))
        cv2.rectangle(out, (left, top), (left + band_w, top + band_h), (0, 200, 0), -1)
        cv2.putText(out, label, (left + thickness, top + h + thickness), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (0, 0, 0), thickness, cv2.LINE_AA)
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
        progress=None, min_score: float = spec.FACE_MIN_SCORE) -> tuple[list[dict], list[str]]:
    """Predict every input with the models of ``model_repo`` (in-process) or of ``server``;
    returns the per-file summaries and the per-file errors."""
    if (model_repo is None) == (server is None):
        raise ValueError("give a model repository or a server, not both or neither")
    models = RemoteModels(server) if server else LocalModels(model_repo)
    predictor = PhotoPredictor(models, FaceFinder(min_score=min_score))
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
                result, annotated = predict_photo(path, predictor)
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
