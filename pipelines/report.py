"""One self-contained HTML evaluation report per pipeline run (images embedded, no network).

Sources: the run's ML Metadata (components, blessing, pushes), TFMA's evaluation output
(metrics, per-slice metrics, thresholds and failures), the statistics and anomalies, the
rejected-rows files, the run's context (profile, data, code version, MLflow run; saved by
the runner beside the report), and the candidate models themselves, run on the test split
the Evaluator gated on.
"""
from __future__ import annotations

import base64
import csv
import datetime
import html
import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global backend or figure registry to set up

from emotion_ai.components import spec
from emotion_ai.components.emotion import metrics as emotion_metrics
from emotion_ai.components.keypoints import metrics as keypoint_metrics
from emotion_ai.pipelines import config, run_summary

MAX_EVAL_EXAMPLES = 512
GRID = 12


# --- data gathering -------------------------------------------------------------------

def _split_examples(examples_uri: str, split: str, limit: int = MAX_EVAL_EXAMPLES) -> list[dict]:
    """Raw features of the first ``limit`` examples of one split (tf.Example, gzip)."""
    import tensorflow as tf

    files = sorted(str(p) for p in Path(examples_uri, f"Split-{split}").glob("*.gz"))
    rows = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit):
        example = tf.train.Example.FromString(record.numpy())
        row = {}
        for key, feature in example.features.feature.items():
            kind = feature.WhichOneof("kind")
            values = list(getattr(feature, kind).value) if kind else []
            row[key] = values[0] if len(values) == 1 else values
        rows.append(row)
    return rows


def _rejected(pipeline_root: Path, kind: str) -> list[dict]:
    path = Path(pipeline_root) / spec.REJECTED_DIR / f"{kind}.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _predict(model_uri: str, examples: list[dict], feature: str) -> dict[str, np.ndarray]:
    from emotion_ai.serving.local_model import LoadedModel  # loads TensorFlow

    return LoadedModel(model_uri).predict_pixel_strings([e[feature] for e in examples])


# --- plots ----------------------------------------------------------------------------

def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _img(src: str, alt: str) -> str:
    return f'<img src="{src}" alt="{html.escape(alt)}">'


def _image(pixels: bytes | str, size: int) -> np.ndarray:
    text = pixels.decode() if isinstance(pixels, bytes) else pixels
    return np.asarray(text.split(), dtype=np.uint8).reshape(size, size)


def _face_grid(images, titles, points_true=None, points_pred=None, cols=6, colors=None) -> str:
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
        known = keypoint_metrics.known(true[:, 0]) if true is not None else None
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
    return _png(fig)


def _confusion_plot(cm: np.ndarray) -> str:
    fig = Figure(figsize=(4.6, 3.9))
    ax = fig.subplots()
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    labels = spec.EMOTION_CLASSES
    ax.set_xticks(range(5), labels, rotation=35, fontsize=8)
    ax.set_yticks(range(5), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(5):
        for j in range(5):
            ax.text(j, i, f"{cm[i, j]}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of true class")
    ax.set_title(f"Confusion matrix ({config.TEST_SPLIT} split)")
    return _png(fig)


def _bars(names, series: dict[str, list[float]], title: str, ylabel: str, horizontal=False, limit=None) -> str:
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
    return _png(fig)


# --- sections -------------------------------------------------------------------------

def _table(headers, rows) -> str:
    """``headers`` None: a key-value table, the first cell of each row as its header."""
    if headers is None:
        body = "".join(f"<tr><th>{row[0]}</th>" + "".join(f"<td>{c}</td>" for c in row[1:]) + "</tr>" for row in rows)
        return f"<table><tbody>{body}</tbody></table>"
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(v) -> str:
    return "n/a" if v is None else (f"{v:.4g}" if isinstance(v, float) else html.escape(str(v)))


def _badge(ok: bool | None, yes="PASS", no="FAIL") -> str:
    if ok is None:
        return '<span class="badge na">n/a</span>'
    return f'<span class="badge {"pass" if ok else "fail"}">{yes if ok else no}</span>'


def _evaluated_on(e) -> str:
    n = e.candidate.get("example_count")
    return f"the {e.split} split ({_fmt(n)} examples, never seen by the Trainer)"


def _section(title: str, b, examples, pixel_column: str, body) -> str:
    """``<h2>title</h2>`` and ``body(evaluation, examples, candidate outputs)``, or a note
    that this run evaluated no model."""
    if not b.model_uri or not examples or b.evaluation is None:
        return f"<h2>{title}</h2><p>No evaluated model in this run.</p>"
    return f"<h2>{title}</h2>" + body(b.evaluation, examples, _predict(b.model_uri, examples, pixel_column))


def _emotion_body(e, examples, out) -> str:
    parts = []
    truth = np.array([int(x[spec.EMOTION_LABEL_COLUMN]) for x in examples])
    pred = out[spec.EMOTION_OUTPUT].argmax(-1)
    m = emotion_metrics.classification_metrics(truth, pred)
    per = m["per_class"]
    rows = [[html.escape(n), _fmt(v["precision"]), _fmt(v["recall"]), _fmt(v["f1"]), v["support"],
             _fmt(e.per_slice.get(f"{spec.EMOTION_LABEL_COLUMN}={i}", {}).get("accuracy"))]
            for i, (n, v) in enumerate(per.items())]
    parts.append(f"<p>Candidate, TFMA on {_evaluated_on(e)}: {_metrics_line(e.candidate)}. "
                 f"Tables and plots below: the first {len(examples)} examples of the same split, through the "
                 f"candidate's serving signature (accuracy {m['accuracy']:.3f}, macro F1 {m['macro_f1']:.3f}).</p>")
    parts.append(_table(["class", "precision", "recall", "F1", "support", "TFMA recall (slice by true class)"], rows))
    cm = np.array(m["confusion_matrix"]["rows_true_columns_predicted"])
    parts.append('<div class="row">' + _img(_confusion_plot(cm), "confusion matrix") + _img(_bars(
        list(per), {"precision": [v["precision"] for v in per.values()],
                    "recall": [v["recall"] for v in per.values()]},
        "Per-class precision and recall", "score", limit=1.0), "per-class precision and recall") + "</div>")
    wrong = np.flatnonzero(pred != truth)[:GRID]
    if len(wrong):
        images = [_image(examples[i][spec.EMOTION_PIXELS_COLUMN], spec.EMOTION_IMAGE_SIZE) for i in wrong]
        titles = [f"true {spec.EMOTION_CLASSES[truth[i]]}\npred {spec.EMOTION_CLASSES[pred[i]]}" for i in wrong]
        parts.append("<h3>Misclassified examples</h3>" + _img(_face_grid(images, titles), "misclassified examples"))
    else:
        parts.append("<p>No misclassified example among those plotted.</p>")
    return "\n".join(parts)


def _keypoints_body(e, examples, out) -> str:
    parts = []
    pred = out[spec.KEYPOINTS_OUTPUT]
    truth = np.array([[float(x[c]) for c in spec.KEYPOINT_COLUMNS] for x in examples])
    m = keypoint_metrics.keypoint_metrics(truth, pred)
    parts.append(f"<p>Candidate, TFMA on {_evaluated_on(e)}: {_metrics_line(e.candidate)}. Plots below: the first "
                 f"{len(examples)} examples of the same split through the candidate's serving signature "
                 f"(RMSE {m['rmse_px']:.3f} px, "
                 f"mean point error {m['mean_point_error_px'] or float('nan'):.3f} px).</p>")
    names = list(m["per_point_rmse_px"])
    parts.append(_img(_bars(names, {"RMSE (px)": list(m["per_point_rmse_px"].values())},
                            "Per-key-point error (RMSE, px)", "px", horizontal=True), "per-key-point error"))
    row_err = keypoint_metrics.rmse_per_row(truth, pred)
    images = [_image(x[spec.KEYPOINT_IMAGE_COLUMN], spec.KEYPOINT_IMAGE_SIZE) for x in examples]
    sample = list(range(min(GRID, len(examples))))
    legend = "true: green rings; predicted: red crosses; yellow line: the error"
    parts.append(f"<h3>Predicted vs true key points</h3><p class=meta>{legend}</p>" + _img(_face_grid(
        [images[i] for i in sample], [f"RMSE {row_err[i]:.2f} px" for i in sample],
        truth[sample], pred[sample]), "faces with predicted and true key points"))
    worst = list(np.argsort(-row_err)[:6])
    parts.append("<h3>Worst cases</h3>" + _img(_face_grid(
        [images[i] for i in worst], [f"RMSE {row_err[i]:.2f} px" for i in worst], truth[worst], pred[worst],
        colors=["#b71c1c"] * len(worst)), "worst cases"))
    return "\n".join(parts)


def _metrics_line(metrics: dict) -> str:
    return ", ".join(f"{html.escape(k)} = {v:.4g}" for k, v in sorted(metrics.items())) or "none"


def _data_section(pipeline_root, summary, kp_examples, em_examples) -> str:
    parts = ["<h2>Data</h2>"]
    rows = []
    splits = (config.TRAIN_SPLIT, config.EVAL_SPLIT, config.TEST_SPLIT)
    for branch in spec.BRANCHES:
        b = summary.branches[branch.name]
        rejected = _rejected(pipeline_root, branch.name)
        n_anom = sum(len(v) for v in b.anomalies.values())
        rows.append([branch.name] + [_fmt(b.split_counts.get(s)) for s in splits]
                    + [len(rejected), f"{n_anom} " + _badge(n_anom == 0, "none", "found")])
    parts.append(_table(["dataset"] + [f"{s} examples" for s in splits] + ["rows rejected", "anomalies"], rows))
    parts.append("<p class=meta>" + "; ".join(f"<b>{s}</b> {html.escape(config.SPLIT_ROLES[s])}" for s in splits)
                 + ".</p>")
    for branch in spec.BRANCHES:
        b = summary.branches[branch.name]
        items = [f"<li>[{html.escape(s)}] {html.escape(a)}</li>" for s, v in b.anomalies.items() for a in v]
        if items:
            parts.append(f"<h3>Anomalies ({branch.name})</h3><ul>{''.join(items)}</ul>")
        rejected = _rejected(pipeline_root, branch.name)
        if rejected:
            parts.append(f"<h3>Rejected rows ({branch.name}): {len(rejected)}</h3>" + _table(
                ["file", "line", "reason"],
                [[html.escape(r["file"]), r["line"], html.escape(r["reason"])] for r in rejected[:20]])
                + (f"<p>… and {len(rejected) - 20} more in the rejected-rows file.</p>" if len(rejected) > 20 else ""))
    if em_examples:
        labels = np.bincount([int(x[spec.EMOTION_LABEL_COLUMN]) for x in em_examples],
                             minlength=len(spec.EMOTION_CLASSES))
        parts.append('<div class="row">' + _img(_bars(list(spec.EMOTION_CLASSES), {"examples": labels.tolist()},
                                                      f"Class balance ({config.TEST_SPLIT} examples plotted)",
                                                      "examples"), "class balance"))
        sample = em_examples[:6]
        parts.append(_img(_face_grid([_image(x[spec.EMOTION_PIXELS_COLUMN], spec.EMOTION_IMAGE_SIZE)
                                      for x in sample],
                                     [spec.EMOTION_CLASSES[int(x[spec.EMOTION_LABEL_COLUMN])] for x in sample]),
                          "sample expression images") + "</div>")
    if kp_examples:
        sample = kp_examples[:6]
        truth = np.array([[float(x[c]) for c in spec.KEYPOINT_COLUMNS] for x in sample])
        parts.append("<h3>Sample key-point images with their labels</h3>" + _img(_face_grid(
            [_image(x[spec.KEYPOINT_IMAGE_COLUMN], spec.KEYPOINT_IMAGE_SIZE) for x in sample],
            [f"example {i}" for i in range(len(sample))], truth), "sample key-point images"))
    return "\n".join(parts)


def _context_rows(context, summary) -> list[list[str]]:
    if context is None:
        return [["context", "not recorded for this run (rendered from ML Metadata alone)"]]
    rows = [["profile", html.escape(context["profile"])], ["code version", html.escape(context["code_version"])]]
    for name, d in context["data"].items():
        counts = summary.branches[name].split_counts if name in summary.branches else {}
        split_text = ", ".join(f"{s} {n}" for s, n in counts.items())
        files = ", ".join(html.escape(Path(f).name) for f in d["files"])
        rows.append([f"{html.escape(name)} data", f"{html.escape(d['source'])}: {files}; {d['rows_read']} rows read, "
                     f"{d['rows_rejected']} rejected; examples per split: {html.escape(split_text) or 'n/a'}"])
    rows.append(["model repository", html.escape(context["model_repo"])])
    if context.get("mlflow_run_id"):
        where = context.get("mlflow_location") or ""
        link = (f'<a href="{html.escape(where)}">{html.escape(where)}</a>' if where.startswith(("http://", "https://"))
                else f"<code>{html.escape(where)}</code>")
        rows.append(["MLflow run", f"{html.escape(context['mlflow_run_id'])} ({link})"])
    else:
        rows.append(["MLflow run", "not tracked"])
    return rows


def _gate_rows(summary) -> list[list[str]]:
    rows = []
    for branch in spec.BRANCHES:
        e = summary.branches[branch.name].evaluation
        if e is None:
            continue
        for g in e.gates:
            rows.append([branch.name, html.escape(e.split), html.escape(g.metric), _fmt(g.candidate),
                         _fmt(g.baseline), "n/a" if g.change is None else f"{g.change:+.4g}", html.escape(g.bound),
                         html.escape(g.change_rule or "none"), _badge(g.passed)])
    return rows


def _baseline_notes(summary) -> str:
    notes = []
    for branch in spec.BRANCHES:
        e = summary.branches[branch.name].evaluation
        if e is None:
            continue
        if e.baseline:
            which = f"version {e.baseline_version}" if e.baseline_version else "the last blessed model"
            notes.append(f"<li><b>{branch.name}</b>: baseline is {html.escape(which)} of this branch, scored on "
                         f"the same {html.escape(e.split)} examples as the candidate.</li>")
        else:
            notes.append(f"<li><b>{branch.name}</b>: no baseline (no blessed {branch.name} model in this pipeline root "
                         "yet), so the change rules do not apply and only the absolute bounds gate this run: "
                         "change columns read n/a.</li>")
    return f"<ul class=meta>{''.join(notes)}</ul>" if notes else ""


def _header(summary, context, run_time: str) -> str:
    rows = []
    for branch in spec.BRANCHES:
        b = summary.branches[branch.name]
        push = (f"version {b.pushed_version}" if b.pushed and not b.identical_to_version
                else f"nothing new (same as version {b.identical_to_version})" if b.identical_to_version
                else f"not pushed: {b.push_refused}" if b.push_refused else "not pushed")
        rows.append([branch.name, _badge(b.blessed, "BLESSED", "NOT BLESSED"), html.escape(push)])
    return (f"<h1>Emotion AI Pipeline — run {html.escape(summary.run_id)}</h1>"
            f"<p class=meta>Run started {html.escape(run_time)}; report written "
            f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M:%S')}.</p>"
            + _table(None, _context_rows(context, summary))
            + _table(["model", "gate", "push"], rows)
            + "<h2>Thresholds</h2>"
            + _table(["model", "split", "metric", "candidate", "baseline", "change", "bound", "change rule", "result"],
                     _gate_rows(summary))
            + _baseline_notes(summary))


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:22px}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:32px}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ddd;padding:4px 10px;font-size:13px}
th{background:#f4f4f4;text-align:left}.badge{padding:2px 8px;border-radius:10px;font-weight:600;font-size:12px}
.pass{background:#c8e6c9;color:#1b5e20}.fail{background:#ffcdd2;color:#b71c1c}.na{background:#eee}
.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}img{max-width:100%}.meta{color:#666}
"""


CONTEXT_FILE = "context.json"  # in run_dir, beside report.html: written by the runner


def run_dir(pipeline_root: Path, run_id: str) -> Path:
    """``<pipeline root>/reports/<run id>``: the report and the run's context."""
    return Path(pipeline_root) / "reports" / run_id


def _context(pipeline_root: Path, run_id: str) -> dict | None:
    import json

    try:
        return json.loads((run_dir(pipeline_root, run_id) / CONTEXT_FILE).read_text())
    except (OSError, ValueError):
        return None


def render(pipeline_root: Path, run_id: str | None = None) -> tuple[str, str]:
    """Build the report of one run (latest by default); return ``(run_id, html)``."""
    summary = run_summary.summarize(pipeline_root, run_id)
    examples = {}
    for branch in spec.BRANCHES:
        gen = summary.component(branch.component_id("CsvExampleGen"))
        examples[branch.name] = (_split_examples(gen.outputs["examples"][0].uri, config.TEST_SPLIT)
                                 if gen and gen.outputs.get("examples") else [])
    body = [_header(summary, _context(pipeline_root, summary.run_id), _run_time(summary.run_id)),
            _section("Expressions", summary.branches["emotion"], examples["emotion"], spec.EMOTION_PIXELS_COLUMN,
                     _emotion_body),
            _section("Key points", summary.branches["keypoints"], examples["keypoints"],
                     spec.KEYPOINT_IMAGE_COLUMN, _keypoints_body),
            _data_section(pipeline_root, summary, examples["keypoints"], examples["emotion"])]
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>Run {html.escape(summary.run_id)}"
            f"</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>")
    return summary.run_id, page


def _run_time(run_id: str) -> str:
    try:
        return datetime.datetime.strptime(run_id, "%Y%m%d-%H%M%S.%f").strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return run_id


def write(pipeline_root: Path, run_id: str | None = None, out: Path | None = None) -> Path:
    """Render and write the report; default path ``<pipeline_root>/reports/<run id>/report.html``."""
    run_id, page = render(Path(pipeline_root), run_id)
    out = Path(out) if out else run_dir(pipeline_root, run_id) / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
