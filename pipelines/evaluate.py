"""``emotion-ai evaluate``: score the pushed models on any CSV in the real formats.

Rows go through the same validation as pipeline input (bad rows are counted as rejected),
then through the served models' signatures in batches. Metrics are computed here (numpy for
the key points, scikit-learn for the classes), independent of the training code.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data import readers
from pipelines import config

BATCH = 64


def _valid_rows(kind: str, path: Path):
    good, rejected = [], []
    for line, record, reason, _ in readers.iter_rows(kind, path):
        (good if record is not None else rejected).append(record if record is not None else (line, reason))
    return good, rejected


def keypoint_metrics(truth: np.ndarray, pred: np.ndarray) -> dict:
    """RMSE over known coordinates (Kaggle's metric), per point, and mean point distance."""
    known = truth > config.MISSING_COORDINATE + 0.5
    err = np.where(known, pred - truth, 0.0)
    per_point = {}
    for i, name in enumerate(config.KEYPOINT_NAMES):
        k = known[:, 2 * i:2 * i + 2]
        per_point[name] = float(np.sqrt((err[:, 2 * i:2 * i + 2] ** 2).sum() / k.sum())) if k.any() else None
    both = known.reshape(-1, 15, 2).all(-1)
    dist = np.sqrt((err.reshape(-1, 15, 2) ** 2).sum(-1))[both]
    return {
        "rmse_px": float(np.sqrt((err ** 2).sum() / max(known.sum(), 1))),
        "per_point_rmse_px": per_point,
        "mean_point_error_px": float(dist.mean()) if dist.size else None,
        "coordinates_scored": int(known.sum()),
    }


def emotion_metrics(truth: np.ndarray, pred: np.ndarray) -> dict:
    """Accuracy, macro F1 (over the classes that occur), per-class precision/recall/F1/support,
    confusion matrix (scikit-learn; a class never predicted has precision 0)."""
    from sklearn import metrics

    labels = list(range(len(config.EMOTION_CLASSES)))
    cm = metrics.confusion_matrix(truth, pred, labels=labels) if len(truth) else np.zeros((len(labels),) * 2, int)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        truth, pred, labels=labels, zero_division=0) if len(truth) else np.zeros((4, len(labels)))
    per_class = {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                        "support": int(support[i])} for i, name in enumerate(config.EMOTION_CLASSES)}
    occurring = [i for i in labels if support[i]]
    return {
        "accuracy": float(metrics.accuracy_score(truth, pred)) if len(truth) else 0.0,
        "macro_f1": float(np.mean(f1[occurring])) if occurring else 0.0,
        "per_class": per_class,
        "confusion_matrix": {"labels": list(config.EMOTION_CLASSES), "rows_true_columns_predicted": cm.tolist()},
    }


def _predict(model, strings, desc):
    outputs = []
    for start in tqdm(range(0, len(strings), BATCH), desc=desc, unit="batch", leave=False):
        outputs.append(model.predict_pixel_strings(strings[start:start + BATCH]))
    return outputs


def evaluate(model_repo: Path, keypoints_csv: Path | None = None, emotion_csv: Path | None = None) -> dict:
    from serving.local_model import ServedModel  # loads TensorFlow

    result: dict = {}
    if keypoints_csv:
        rows, rejected = _valid_rows("keypoints", keypoints_csv)
        model = ServedModel(model_repo, "keypoints")
        outs = _predict(model, [r[-1] for r in rows], "keypoints")
        pred = np.concatenate([o[config.KEYPOINTS_OUTPUT] for o in outs]) if outs else np.zeros((0, 30))
        truth = np.array([[float(v) for v in r[:30]] for r in rows]).reshape(-1, 30)
        result["keypoints"] = {"model_version": model.version, "csv": str(keypoints_csv),
                               "rows_scored": len(rows), "rows_rejected": len(rejected),
                               **keypoint_metrics(truth, pred)}
    if emotion_csv:
        rows, rejected = _valid_rows("emotion", emotion_csv)
        model = ServedModel(model_repo, "emotion")
        outs = _predict(model, [r[1] for r in rows], "emotion")
        probs = np.concatenate([o[config.EMOTION_OUTPUT] for o in outs]) if outs else np.zeros((0, 5))
        truth = np.array([int(r[0]) for r in rows], dtype=int)
        result["emotion"] = {"model_version": model.version, "csv": str(emotion_csv),
                             "rows_scored": len(rows), "rows_rejected": len(rejected),
                             **emotion_metrics(truth, probs.argmax(-1))}
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
