"""The expression branch's section of the evaluation report."""
from __future__ import annotations

import collections
import html

import numpy as np

from emotion_ai.components import spec
from emotion_ai.components.common import report_parts as rp
from emotion_ai.components.emotion import metrics


def section(e, examples: list[dict], out: dict[str, np.ndarray]) -> str:
    """Per-class table (scikit-learn and TFMA's per-true-class slices), confusion matrix,
    precision/recall bars and misclassified faces: the candidate ``e`` on ``examples`` (raw
    features of the test split) with its served outputs ``out``."""
    parts = []
    truth = np.array([int(x[spec.EMOTION_LABEL_COLUMN]) for x in examples])
    pred = out[spec.EMOTION_OUTPUT].argmax(-1)
    m = metrics.classification_metrics(truth, pred)
    per = m["per_class"]
    rows = [[html.escape(n), rp.fmt(v["precision"]), rp.fmt(v["recall"]), rp.fmt(v["f1"]), v["support"],
             rp.fmt(e.per_slice.get(f"{spec.EMOTION_LABEL_COLUMN}={i}", {}).get("accuracy"))]
            for i, (n, v) in enumerate(per.items())]
    parts.append(f"<p>Candidate, TFMA on {rp.evaluated_on(e)}: {rp.metrics_line(e.candidate)}. "
                 f"Tables and plots below: the first {len(examples)} examples of the same split, through the "
                 f"candidate's serving signature (accuracy {m['accuracy']:.3f}, macro F1 {m['macro_f1']:.3f}).</p>")
    parts.append(rp.table(["class", "precision", "recall", "F1", "support", "TFMA recall (slice by true class)"], rows))
    cm = np.array(m["confusion_matrix"]["rows_true_columns_predicted"])
    confusion = rp.img(rp.confusion_plot(cm, spec.EMOTION_CLASSES, e.split), "confusion matrix")
    parts.append('<div class="row">' + confusion + rp.img(rp.bars(
        list(per), {"precision": [v["precision"] for v in per.values()],
                    "recall": [v["recall"] for v in per.values()]},
        "Per-class precision and recall", "score", limit=1.0), "per-class precision and recall") + "</div>")
    wrong = np.flatnonzero(pred != truth)[:rp.GRID]
    if len(wrong):
        images = [rp.image(examples[i][spec.EMOTION_PIXELS_COLUMN], spec.EMOTION_IMAGE_SIZE) for i in wrong]
        titles = [f"true {spec.EMOTION_CLASSES[truth[i]]}\npred {spec.EMOTION_CLASSES[pred[i]]}" for i in wrong]
        parts.append("<h3>Misclassified examples</h3>" + rp.img(rp.face_grid(images, titles), "misclassified examples"))
    else:
        parts.append("<p>No misclassified example among those plotted.</p>")
    return "\n".join(parts)


def _class_name(label: int) -> str:
    """The class of a label; a label that is none (data the schema flags) says so."""
    return spec.EMOTION_CLASSES[label] if 0 <= label < len(spec.EMOTION_CLASSES) else f"label {label}?"


def data_samples(examples: list[dict], split: str) -> str:
    """Class balance of the plotted examples and a few faces with their labels; labels that
    are no class (a batch the schema flags) get bars of their own, so they show."""
    if not examples:
        return ""
    counts = collections.Counter(int(x[spec.EMOTION_LABEL_COLUMN]) for x in examples)
    labels = sorted(set(range(len(spec.EMOTION_CLASSES))) | set(counts))
    balance = rp.img(rp.bars([_class_name(i) for i in labels], {"examples": [counts[i] for i in labels]},
                             f"Class balance ({split} examples plotted)", "examples"), "class balance")
    sample = examples[:6]
    faces = rp.img(rp.face_grid([rp.image(x[spec.EMOTION_PIXELS_COLUMN], spec.EMOTION_IMAGE_SIZE) for x in sample],
                                [_class_name(int(x[spec.EMOTION_LABEL_COLUMN])) for x in sample]),
                   "sample expression images")
    return f'<div class="row">{balance}{faces}</div>'
