"""``emotion-ai evaluate``: score the pushed models on any CSV in the real formats.

Rows go through the same validation as pipeline input (bad rows are counted as rejected),
then through the served models' signatures in batches. The metrics are each branch's own
(``components.<branch>.metrics``, numpy and scikit-learn), the ones the report shows.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from emotion_ai.components import spec
from emotion_ai.components.emotion import metrics as emotion_metrics
from emotion_ai.components.keypoints import metrics as keypoint_metrics
from emotion_ai.data import readers

BATCH = 64


def _valid_rows(kind: str, path: Path):
    good, rejected = [], []
    for line, record, reason, _ in readers.iter_rows(kind, path):
        (good if record is not None else rejected).append(record if record is not None else (line, reason))
    return good, rejected


def _predict(model, strings, desc):
    outputs = []
    for start in tqdm(range(0, len(strings), BATCH), desc=desc, unit="batch", leave=False):
        outputs.append(model.predict_pixel_strings(strings[start:start + BATCH]))
    return outputs


def evaluate(model_repo: Path, keypoints_csv: Path | None = None, emotion_csv: Path | None = None) -> dict:
    from emotion_ai.serving.local_model import ServedModel  # loads TensorFlow

    result: dict = {}
    if keypoints_csv:
        rows, rejected = _valid_rows("keypoints", keypoints_csv)
        model = ServedModel(model_repo, "keypoints")
        outs = _predict(model, [r[-1] for r in rows], "keypoints")
        n = keypoint_metrics.N_COORDINATES  # a staged record: the coordinates, then the image
        pred = np.concatenate([o[spec.KEYPOINTS_OUTPUT] for o in outs]) if outs else np.zeros((0, n))
        truth = np.array([[float(v) for v in r[:n]] for r in rows]).reshape(-1, n)
        result["keypoints"] = {"model_version": model.version, "csv": str(keypoints_csv),
                               "rows_scored": len(rows), "rows_rejected": len(rejected),
                               **keypoint_metrics.keypoint_metrics(truth, pred)}
    if emotion_csv:
        rows, rejected = _valid_rows("emotion", emotion_csv)
        model = ServedModel(model_repo, "emotion")
        outs = _predict(model, [r[1] for r in rows], "emotion")
        probs = (np.concatenate([o[spec.EMOTION_OUTPUT] for o in outs]) if outs
                 else np.zeros((0, len(spec.EMOTION_CLASSES))))
        truth = np.array([int(r[0]) for r in rows], dtype=int)
        result["emotion"] = {"model_version": model.version, "csv": str(emotion_csv),
                             "rows_scored": len(rows), "rows_rejected": len(rejected),
                             **emotion_metrics.classification_metrics(truth, probs.argmax(-1))}
    return result


def format_table(result: dict) -> str:
    lines = []
    if "keypoints" in result:
        k = result["keypoints"]
        lines += [f"key points (version {k['model_version']}): {k['rows_scored']} rows scored, "
                  f"{k['rows_rejected']} rejected",
                  f"  RMSE {k['rmse_px']:.3f} px   mean point error {k['mean_point_error_px'] or float('nan'):.3f} px"]
        for name, v in k["per_point_rmse_px"].items():
            lines.append(f"    {name:<26} {'n/a' if v is None else f'{v:.3f}'}")
    if "emotion" in result:
        e = result["emotion"]
        lines += [f"expressions (version {e['model_version']}): {e['rows_scored']} rows scored, "
                  f"{e['rows_rejected']} rejected",
                  f"  accuracy {e['accuracy']:.4f}   macro F1 {e['macro_f1']:.4f}",
                  f"    {'class':<10} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}"]
        for name, v in e["per_class"].items():
            lines.append(f"    {name:<10} {v['precision']:9.3f} {v['recall']:7.3f} {v['f1']:6.3f} {v['support']:8d}")
    return "\n".join(lines)


def write_json(result: dict, out: Path) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2))
