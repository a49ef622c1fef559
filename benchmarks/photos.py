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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("fit", "measure"))
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--fer-images", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-repo", type=Path)
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
    raise SystemExit("measure: not written yet")


if __name__ == "__main__":
    sys.exit(main())
