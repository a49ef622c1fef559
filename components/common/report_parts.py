"""Building blocks of the HTML evaluation report: embedded matplotlib figures (faces with
points, confusion matrix, bars) and tables. Used by each branch's report section
(``components.<branch>.report``) and by the run report (``pipelines.report``)."""
from __future__ import annotations

import base64
import html
import io

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global backend or figure registry to set up

from emotion_ai.components import spec

MISSING = spec.MISSING_COORDINATE
GRID = 12  # faces per picture grid


def evaluated_on(evaluation) -> str:
    n = evaluation.candidate.get("example_count")
    return f"the {evaluation.split} split ({fmt(n)} examples, never seen by the Trainer)"


def png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def img(src: str, alt: str) -> str:
    return f'<img src="{src}" alt="{html.escape(alt)}">'


def image(pixels: bytes | str, size: int) -> np.ndarray:
    text = pixels.decode() if isinstance(pixels, bytes) else pixels
    return np.asarray(text.split(), dtype=np.uint8).reshape(size, size)


def face_grid(images, titles, points_true=None, points_pred=None, cols=6, colors=None) -> str:
    n = len(images)
    rows = max(1, (n + cols - 1) // cols)
    fig = Figure(figsize=(cols * 1.7, rows * 1.9))
    axes = fig.subplots(rows, cols)
    for i, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
        true = points_true[i].reshape(-1, 2) if points_true is not None else None
        known = true[:, 0] > MISSING + 0.5 if true is not None else None
        if points_pred is not None:
            pred = points_pred[i].reshape(-1, 2)
            if true is not None:  # an error line from each true point to its prediction
                for (tx, ty), (px, py) in zip(true[known], pred[known]):
                    ax.plot([tx, px], [ty, py], color="#ffd600", linewidth=0.8)
            ax.scatter(pred[:, 0], pred[:, 1], s=14, c="#ff1744", marker="x", linewidths=1.0, label="predicted")
        if true is not None:  # hollow rings on top, so a prediction never hides the truth
            ax.scatter(true[known, 0], true[known, 1], s=22, facecolors="none", edgecolors="#00e676",
                       linewidths=1.0, label="true")
        ax.set_title(titles[i], fontsize=7, color=(colors[i] if colors else "black"))
    return png(fig)


def confusion_plot(cm: np.ndarray, labels, split: str) -> str:
    """Rows: true class; columns: predicted; colour: share of the true class."""
    fig = Figure(figsize=(4.6, 3.9))
    ax = fig.subplots()
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=35, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{cm[i, j]}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of true class")
    ax.set_title(f"Confusion matrix ({split} split)")
    return png(fig)


def bars(names, series: dict[str, list[float]], title: str, ylabel: str, horizontal=False, limit=None) -> str:
    fig = Figure(figsize=(6.4, 3.2 if not horizontal else 4.4))
    ax = fig.subplots()
    idx = np.arange(len(names))
    width = 0.8 / len(series)
    for k, (label, values) in enumerate(series.items()):
        values = [np.nan if v is None else v for v in values]
        if horizontal:
            ax.barh(idx + k * width, values, height=width, label=label)
        else:
            ax.bar(idx + k * width, values, width=width, label=label)
    if horizontal:
        ax.set_yticks(idx + width * (len(series) - 1) / 2, names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(ylabel)
    else:
        ax.set_xticks(idx + width * (len(series) - 1) / 2, names, fontsize=8)
        ax.set_ylabel(ylabel)
    if limit:
        (ax.set_xlim if horizontal else ax.set_ylim)(0, limit)
    if len(series) > 1:
        ax.legend(fontsize=8)
    ax.set_title(title)
    ax.grid(axis="x" if horizontal else "y", alpha=0.3)
    return png(fig)


def distributions(features: dict[str, dict[str, np.ndarray]], titles: dict[str, str]) -> str:
    """One small panel per feature: each named sample's histogram (as a density, so samples
    of different sizes compare), on shared bins; ``titles`` under each panel (the measure)."""
    names = list(features)
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig = Figure(figsize=(3.3 * cols, 2.5 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, name in zip(axes, names):
        samples = {k: v for k, v in features[name].items() if len(v)}
        values = np.concatenate(list(samples.values())) if samples else np.zeros(1)
        bins = np.histogram_bin_edges(values, bins=24)
        for label, sample in samples.items():
            ax.hist(sample, bins=bins, density=True, histtype="step", linewidth=1.6, label=f"{label} ({len(sample)})")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(titles.get(name, ""), fontsize=7)
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
    for ax in axes[len(names):]:
        ax.axis("off")
    if names:
        axes[0].legend(fontsize=7)
    fig.tight_layout()
    return png(fig)


def table(headers, rows) -> str:
    """``headers`` None: a key-value table, the first cell of each row as its header."""
    if headers is None:
        body = "".join(f"<tr><th>{row[0]}</th>" + "".join(f"<td>{c}</td>" for c in row[1:]) + "</tr>" for row in rows)
        return f"<table><tbody>{body}</tbody></table>"
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def fmt(v) -> str:
    return "n/a" if v is None else (f"{v:.4g}" if isinstance(v, float) else html.escape(str(v)))


def metrics_line(metrics: dict) -> str:
    return ", ".join(f"{html.escape(k)} = {v:.4g}" for k, v in sorted(metrics.items())) or "none"
