"""The key-point branch's section of the evaluation report."""
from __future__ import annotations

import numpy as np

from emotion_ai.components import spec
from emotion_ai.components.common import report_parts as rp
from emotion_ai.components.keypoints import metrics


def _truth(examples: list[dict]) -> np.ndarray:
    """Pixel labels ``[n, 30]`` of raw test-split examples (``MISSING_COORDINATE`` where unknown)."""
    return np.array([[float(x[c]) for c in spec.KEYPOINT_COLUMNS] for x in examples])


def section(e, examples: list[dict], out: dict[str, np.ndarray]) -> str:
    """Per-point error bars, faces with true (rings) and predicted (crosses) points, and the
    worst faces: the candidate ``e`` on ``examples`` (raw features of the test split) with its
    served outputs ``out``."""
    parts = []
    pred = out[spec.KEYPOINTS_OUTPUT]
    truth = _truth(examples)
    m = metrics.keypoint_metrics(truth, pred)
    parts.append(f"<p>Candidate, TFMA on {rp.evaluated_on(e)}: {rp.metrics_line(e.candidate)}. Plots below: the first "
                 f"{len(examples)} examples of the same split through the candidate's serving signature "
                 f"(RMSE {m['rmse_px']:.3f} px, "
                 f"mean point error {m['mean_point_error_px'] or float('nan'):.3f} px).</p>")
    names = list(m["per_point_rmse_px"])
    parts.append(rp.img(rp.bars(names, {"RMSE (px)": list(m["per_point_rmse_px"].values())},
                            "Per-key-point error (RMSE, px)", "px", horizontal=True), "per-key-point error"))
    row_err = metrics.rmse_per_row(truth, pred)
    images = [rp.image(x[spec.KEYPOINT_IMAGE_COLUMN], spec.KEYPOINT_IMAGE_SIZE) for x in examples]
    sample = list(range(min(rp.GRID, len(examples))))
    legend = "true: green rings; predicted: red crosses; yellow line: the error"
    parts.append(f"<h3>Predicted vs true key points</h3><p class=meta>{legend}</p>" + rp.img(rp.face_grid(
        [images[i] for i in sample], [f"RMSE {row_err[i]:.2f} px" for i in sample],
        truth[sample], pred[sample]), "faces with predicted and true key points"))
    worst = list(np.argsort(-row_err)[:6])
    parts.append("<h3>Worst cases</h3>" + rp.img(rp.face_grid(
        [images[i] for i in worst], [f"RMSE {row_err[i]:.2f} px" for i in worst], truth[worst], pred[worst],
        colors=["#b71c1c"] * len(worst)), "worst cases"))
    return "\n".join(parts)


def data_samples(examples: list[dict], split: str) -> str:
    """A few faces with their labelled points."""
    if not examples:
        return ""
    sample = examples[:6]
    truth = _truth(sample)
    return f"<h3>Sample key-point images ({split} split) with their labels</h3>" + rp.img(rp.face_grid(
        [rp.image(x[spec.KEYPOINT_IMAGE_COLUMN], spec.KEYPOINT_IMAGE_SIZE) for x in sample],
        [f"example {i}" for i in range(len(sample))], truth), "sample key-point images")
