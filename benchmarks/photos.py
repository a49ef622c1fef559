"""Predictions on real photos: the face finder, the framing, the photo path measured.

    .venv/bin/python benchmarks/photos.py fit [--shared ../shared/data]
    .venv/bin/python benchmarks/photos.py measure --model-repo REPO [--shared ../shared/data]

``fit`` writes ``serving/framing.json``: for each branch, where its training crops have the
face finder's landmarks (``serving/framing.py``), fitted on data, not drawn by hand:

* key points: the 564 whole frames in ``photos/`` are the source frames of training rows,
  and ``keypoints_train_meta.csv.gz`` gives each row's crop box in the frame; the finder's
  landmarks on the frame, moved into that crop's 96x96 pixels, averaged (median) over the
  frames: the template. The key-point data's mean shape (15 points) is kept too, for the
  second pass that re-crops on the first pass's points.
* expressions: FER's crops come from its own face detector; the finder's landmarks on FER
  training images (padded, as the finder wants some background) give the template in 48x48.

``measure`` runs the real ``predict`` path on the frames and writes
``benchmarks/results/photos.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from emotion_ai.pipelines import config  # noqa: E402

config.set_runtime_environment()

from emotion_ai.components import spec  # noqa: E402

# The finder's landmarks the framing uses: the ears are often hidden or guessed.
FRAMING_LANDMARKS = ("right_eye", "left_eye", "nose_tip", "mouth_center")


def frames_table(shared: Path):
    """The frames with their points (frame pixels) and the training row each is the source of:
    its crop box and its 96x96 labels. A file name used in both of Udacity's folders is
    resolved by which row's crop, mapped back, lands on the frame's points."""
    import pandas as pd

    photos = pd.read_csv(shared / "photos" / "photos.csv")
    meta = pd.read_csv(shared / "keypoints_train_meta.csv.gz")
    labels = pd.read_csv(shared / "keypoints_train.csv.gz", usecols=lambda c: c != "Image")
    meta["base"] = meta["source_path"].map(os.path.basename)
    columns = [c for c in photos.columns if c != "file"]
    rows = []
    for _, photo in photos.iterrows():
        truth = photo[columns].to_numpy(float).reshape(-1, 2)
        best = None
        for _, row in meta[meta["base"] == os.path.basename(photo["file"])].iterrows():
            crop = labels.loc[row["row"], columns].to_numpy(float).reshape(-1, 2)
            in_frame = to_frame(crop, row)
            error = float(np.abs(in_frame - truth).mean())
            if best is None or error < best[0]:
                best = (error, row, crop)
        rows.append({"file": photo["file"], "truth": truth, "row": best[1], "crop_labels": best[2],
                     "match_error": best[0]})
    return rows


def to_crop(points: np.ndarray, row) -> np.ndarray:
    """Frame pixels -> the training crop's 96x96 pixels (pixel centres at integers on both
    sides; the crop box's corner and side are in continuous frame coordinates)."""
    size = spec.KEYPOINT_IMAGE_SIZE
    return (points + 0.5 - np.array([row["crop_x0"], row["crop_y0"]])) * size / row["crop_side"] - 0.5


def to_frame(points: np.ndarray, row) -> np.ndarray:
    size = spec.KEYPOINT_IMAGE_SIZE
    return (points + 0.5) * row["crop_side"] / size + np.array([row["crop_x0"], row["crop_y0"]]) - 0.5


def read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def fit(shared: Path, fer_images: int, seed: int) -> dict:
    import pandas as pd

    from emotion_ai.serving.faces import FaceFinder

    finder = FaceFinder(min_score=0.0)
    frames = frames_table(shared)
    match = np.array([f["match_error"] for f in frames])
    print(f"{len(frames)} frames; their training rows' labels mapped back land {match.mean():.2f} px "
          f"(max {match.max():.2f}) from the frames' points", flush=True)
    in_crop, misses = [], 0
    for f in frames:
        faces = finder.find(read_rgb(shared / "photos" / f["file"]))
        centre = f["truth"].mean(0)
        found = [face for face in faces if face.box[0] <= centre[0] <= face.box[0] + face.box[2]
                 and face.box[1] <= centre[1] <= face.box[1] + face.box[3]]
        if not found:
            misses += 1
            continue
        in_crop.append(to_crop(found[0].points(FRAMING_LANDMARKS), f["row"]))
    in_crop = np.array(in_crop)
    keypoint_template = np.median(in_crop, axis=0)
    spread = np.median(np.abs(in_crop - keypoint_template), axis=0)
    labels = pd.read_csv(shared / "keypoints_train.csv.gz", usecols=lambda c: c != "Image")
    mean_shape = labels.to_numpy(float).reshape(len(labels), -1, 2).mean(0)

    # FER: each 48x48 image padded to 3x its side with its edge pixels, upscaled (the finder
    # looks at 128x128) and the landmarks moved back into the 48x48 frame.
    emotion = pd.read_csv(shared / "emotion_train.csv.gz", nrows=fer_images * 2)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(emotion), size=min(fer_images, len(emotion)), replace=False)
    size, pad, up = spec.EMOTION_IMAGE_SIZE, spec.EMOTION_IMAGE_SIZE, 4
    fer_points, fer_found = [], 0
    import cv2

    for i in chosen:
        face = np.array(emotion["pixels"].iloc[i].split(), dtype=np.uint8).reshape(size, size)
        padded = cv2.copyMakeBorder(face, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        big = cv2.resize(padded, None, fx=up, fy=up, interpolation=cv2.INTER_CUBIC)
        faces = finder.find(np.stack([big] * 3, axis=-1))
        if not faces:
            continue
        fer_found += 1
        fer_points.append((faces[0].points(FRAMING_LANDMARKS) + 0.5) / up - 0.5 - pad)
    fer_points = np.array(fer_points)
    emotion_template = np.median(fer_points, axis=0)
    fer_spread = np.median(np.abs(fer_points - emotion_template), axis=0)

    def named(points, names):
        return {n: [round(float(x), 3), round(float(y), 3)] for n, (x, y) in zip(names, points)}

    templates = {
        "keypoints": {"size": spec.KEYPOINT_IMAGE_SIZE, "points": named(keypoint_template, FRAMING_LANDMARKS),
                      "shape": named(mean_shape, spec.KEYPOINT_NAMES),
            "source": f"face finder on {len(in_crop)} of {len(frames)} frames of photos/ moved into their training "
                      f"rows' crops (median; median absolute deviation {named(spread, FRAMING_LANDMARKS)}); "
                      f"mean shape of {len(labels)} rows of keypoints_train.csv.gz"},
        "emotion": {"size": size, "points": named(emotion_template, FRAMING_LANDMARKS),
                    "source": f"face finder on {fer_found} of {len(chosen)} FER training images, padded "
                              f"(median; median absolute deviation {named(fer_spread, FRAMING_LANDMARKS)})"},
    }
    return {"landmarks": list(FRAMING_LANDMARKS), "templates": templates,
            "fitted_by": "python benchmarks/photos.py fit", "frames_missed": misses}


class HaarBoxes:
    """What ``predict`` did before: OpenCV's Haar cascade (the project's settings), each box
    cropped as it is (the "before" of the benchmark)."""

    def __init__(self):
        import cv2

        self._cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")

    def boxes(self, rgb: np.ndarray) -> list[tuple[float, tuple[float, float, float, float]]]:
        import cv2

        grey = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        found = self._cascade.detectMultiScale(grey, scaleFactor=1.05, minNeighbors=4, minSize=(24, 24))
        return [(1.0, tuple(float(v) for v in box)) for box in found]


def box_crop_points(models, rgb: np.ndarray, box) -> np.ndarray:
    """The old path: the box's pixels to the key-point model, its points shifted back."""
    import cv2

    x, y, w, h = (int(round(v)) for v in box)
    x, y = max(0, x), max(0, y)
    crop = cv2.cvtColor(np.ascontiguousarray(rgb[y:y + h, x:x + w]), cv2.COLOR_RGB2GRAY)
    out = models.images("keypoints", [cv2.imencode(".png", crop)[1].tobytes()])
    return np.asarray(out[spec.KEYPOINTS_OUTPUT][0], float).reshape(-1, 2) + [x, y]


def _labelled(boxes, truth: np.ndarray) -> int | None:
    """Which box is the labelled face: the best-scored one holding the labelled points' centre."""
    centre = truth.mean(0)
    for i, (x, y, w, h) in enumerate(boxes):
        if x <= centre[0] <= x + w and y <= centre[1] <= y + h:
            return i
    return None


OTHER_PEOPLE = ROOT / "benchmarks" / "photos_other_people.json"


def count_boxes(boxes, which: int | None, others: list) -> tuple[int, int]:
    """``(other people, phantoms)`` among the boxes that are not the labelled face: a box on a
    reviewed second person (``photos_other_people.json``) is a face, any other is a phantom."""
    from emotion_ai.serving.faces import _iou

    people = phantoms = 0
    for i, box in enumerate(boxes):
        if i == which:
            continue
        if any(_iou(box, other) > 0.3 for other in others):
            people += 1
        else:
            phantoms += 1
    return people, phantoms


def detectors(frames, images, others) -> dict:
    """Each face finder alone on the frames: the labelled face found or missed, other people,
    phantom boxes, time."""
    from emotion_ai.serving import faces as faces_lib

    finder, haar = faces_lib.FaceFinder(), HaarBoxes()
    candidates = {"OpenCV Haar cascade (predict before)": lambda rgb: [b for _, b in haar.boxes(rgb)],
                  "BlazeFace short range, whole photo": lambda rgb: [
                      f.box for f in faces_lib.suppress_inner(sorted(finder._find(rgb, 0, 0), key=lambda f: -f.score))],
                  "BlazeFace short range, whole photo and tiles (predict now)": lambda rgb: [
                      f.box for f in finder.find(rgb)]}
    try:  # MTCNN, when installed (pip install mtcnn lz4): compared, not used
        from mtcnn import MTCNN

        mtcnn = MTCNN()
        candidates["MTCNN (mtcnn 1.0)"] = lambda rgb: [tuple(map(float, f["box"])) for f in mtcnn.detect_faces(rgb)]
    except ImportError:
        pass
    out = {}
    for name, find in candidates.items():
        found = people = phantoms = phantom_frames = 0
        start = time.time()
        for f in frames:
            boxes = find(images[f["file"]])
            which = _labelled(boxes, f["truth"])
            found += which is not None
            p, q = count_boxes(boxes, which, others.get(f["file"], []))
            people, phantoms, phantom_frames = people + p, phantoms + q, phantom_frames + (q > 0)
        out[name] = {"found": found, "missed": len(frames) - found, "other_people": people, "phantoms": phantoms,
                     "frames_with_phantoms": phantom_frames,
                     "ms_per_frame": round(1000 * (time.time() - start) / len(frames), 1)}
        print(name, out[name], flush=True)
    return out


def measure(shared: Path, model_repo: Path, limit: int | None) -> dict:
    from emotion_ai.serving import predict
    from emotion_ai.serving.faces import FaceFinder

    frames = frames_table(shared)[:limit]
    models = predict.LocalModels(model_repo)
    variants = {
        "haar box (before)": None,
        "blazeface, framed, no rotation": dict(rotate=False, refine=False),
        "blazeface, framed, rotation": dict(rotate=True, refine=False),
        "blazeface, framed, rotation, second pass": dict(rotate=True, refine=True),
    }
    finder = FaceFinder()
    haar = HaarBoxes()
    images = {f["file"]: read_rgb(shared / "photos" / f["file"]) for f in frames}
    others = {k: [tuple(b) for b in v] for k, v in json.loads(OTHER_PEOPLE.read_text())["faces"].items()}
    result = {"frames": len(frames), "models": models.source, "detectors": detectors(frames, images, others),
              "variants": {}}
    for name, options in variants.items():
        errors, errors96, found, extra_frames, extra_boxes = [], [], 0, [], 0
        start = time.time()
        for f in frames:
            rgb, truth, row = images[f["file"]], f["truth"], f["row"]
            if options is None:
                detections = haar.boxes(rgb)
                boxes = [b for _, b in detections]
                which = _labelled(boxes, truth)
                points = box_crop_points(models, rgb, boxes[which]) if which is not None else None
            else:
                predictor = predict.PhotoPredictor(models, finder, **options)
                faces = predictor.faces(rgb)
                boxes = [tuple(face["box"][k] for k in ("x", "y", "width", "height")) for face in faces]
                which = _labelled(boxes, truth)
                points = (np.array(list(faces[which]["keypoints"].values())) if which is not None else None)
            _people, phantoms = count_boxes(boxes, which, others.get(f["file"], []))
            if phantoms:
                extra_frames.append(f["file"])
                extra_boxes += phantoms
            if points is None:
                continue
            found += 1
            eyes = float(np.linalg.norm(truth[0] - truth[1]))
            distance = np.linalg.norm(points - truth, axis=1)
            errors.append(distance / eyes)
            errors96.append(distance * spec.KEYPOINT_IMAGE_SIZE / row["crop_side"])
        seconds = time.time() - start
        errors, errors96 = np.array(errors), np.array(errors96)
        result["variants"][name] = {
            "found": found, "missed": len(frames) - found, "frames_with_phantoms": len(extra_frames),
            "phantoms": extra_boxes, "phantom_frames": extra_frames,
            "nme": float(errors.mean()), "error_px96": float(errors96.mean()),
            "per_point_px96": {n: round(float(v), 3) for n, v in zip(spec.KEYPOINT_NAMES, errors96.mean(0))},
            "photos_per_second": round(len(frames) / seconds, 2)}
        print(name, {k: v for k, v in result["variants"][name].items() if k not in ("phantom_frames",
                                                                                   "per_point_px96")}, flush=True)
    # The same models on the training crops of these frames (96x96 pixel strings, labels).
    import pandas as pd

    pixels = pd.read_csv(shared / "keypoints_train.csv.gz", usecols=["Image"])["Image"]
    crop_errors = []
    for start in range(0, len(frames), 64):
        chunk = frames[start:start + 64]
        out = models.pixel_strings("keypoints", [pixels[f["row"]["row"]] for f in chunk])
        for i, f in enumerate(chunk):
            predicted = np.asarray(out[spec.KEYPOINTS_OUTPUT][i], float).reshape(-1, 2)
            labels = f["crop_labels"]
            crop_errors.append(np.linalg.norm(predicted - labels, axis=1) / np.linalg.norm(labels[0] - labels[1]))
    crop_errors = np.array(crop_errors)
    result["crops"] = {"nme": float(crop_errors.mean()), "frames": len(crop_errors)}
    print("training crops of the same frames: NME", round(result["crops"]["nme"], 4), flush=True)
    return result


def markdown(r: dict) -> str:
    lines = ["# Predictions on photos: finding faces, framing them, mapping points back", "",
             f"Command: `{r['command']}`" + (f" at commit {r['commit'][:7]}" if r.get("commit") else "")
             + f" ({r['machine']['cores']} cores); models: {r['models']}.", "",
             f"{r['frames']} whole frames of the training people (`photos/`; in-sample people: this measures "
             "the photo path, not generalisation). NME: mean point error over the distance between the "
             "labelled eye centres; px96: the same error in the pixels of the frame's 96x96 training crop.", "",
             "## Face finders", "",
             "Other people: boxes on a second real person (reviewed by eye: `benchmarks/photos_other_people.json`); "
             "phantoms: every other box that is not the labelled face.", "",
             "| finder | found | missed | other people | phantom boxes | frames with phantoms | ms/frame |",
             "|---|---|---|---|---|---|---|"]
    for name, v in r["detectors"].items():
        lines.append(f"| {name} | {v['found']} | {v['missed']} | {v['other_people']} | {v['phantoms']} | "
                     f"{v['frames_with_phantoms']} | {v['ms_per_frame']} |")
    lines += ["", "## The photo path (`predict`), step by step", "",
              "| path | found | missed | frames with phantoms | NME | error px96 | photos/s |",
              "|---|---|---|---|---|---|---|"]
    for name, v in r["variants"].items():
        lines.append(f"| {name} | {v['found']} | {v['missed']} | {v['frames_with_phantoms']} | {v['nme']:.4f} | "
                     f"{v['error_px96']:.3f} | {v['photos_per_second']} |")
    lines += ["", f"The same models on these frames' 96x96 training crops: NME {r['crops']['nme']:.4f}.", ""]
    best = list(r["variants"].values())[-1]
    lines += ["Per point, last path (px96): " + ", ".join(f"{k} {v}" for k, v in best["per_point_px96"].items()),
              ""]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("fit", "measure"))
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--fer-images", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-repo", type=Path)
    parser.add_argument("--limit", type=int, default=None, help="only the first N frames (a quick look)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.what == "fit":
        start = time.time()
        fitted = fit(args.shared, args.fer_images, args.seed)
        target = ROOT / "serving" / "framing.json"
        target.write_text(json.dumps(fitted, indent=2) + "\n")
        print(json.dumps(fitted["templates"], indent=1))
        print(f"wrote {target} in {time.time() - start:.0f} s")
        return 0
    import results_io

    if args.model_repo is None:
        parser.error("measure needs --model-repo (models trained on the real data)")
    result = {**results_io.provenance("photos.py", argv), **measure(args.shared, args.model_repo, args.limit)}
    results_io.write(args.out, "photos", result, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
