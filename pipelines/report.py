"""One self-contained HTML evaluation report per pipeline run (images embedded, no network).

Sources: the run's ML Metadata (components, blessing, pushes), TFMA's evaluation output
(metrics, per-slice metrics, thresholds and failures), the statistics and anomalies, the
rejected-rows files, and the candidate models themselves, run on the eval split.
"""
from __future__ import annotations

import base64
import csv
import dataclasses
import datetime
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pipelines import config, run_summary  # noqa: E402
from pipelines.evaluate import emotion_metrics, keypoint_metrics  # noqa: E402

MAX_EVAL_EXAMPLES = 512
GRID = 12


@dataclasses.dataclass
class Gate:
    model: str
    metric: str
    value: float | None
    bound: str
    change: float | None
    change_rule: str
    passed: bool


# --- data gathering -------------------------------------------------------------------

def _eval_examples(examples_uri: str, limit: int = MAX_EVAL_EXAMPLES) -> list[dict]:
    """Raw features of the first ``limit`` examples of the eval split (tf.Example, gzip)."""
    import tensorflow as tf

    files = sorted(str(p) for p in Path(examples_uri, "Split-eval").glob("*.gz"))
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


def _thresholds(eval_result, model: str, metrics: dict, failures: list[str]) -> list[Gate]:
    import tensorflow_model_analysis as tfma

    gates = []
    for spec in eval_result.config.metrics_specs:
        for metric in spec.metrics:
            thresholds = [metric.threshold] if metric.HasField("threshold") else []
            thresholds += [t.threshold for t in metric.per_slice_thresholds]
            if not thresholds:
                continue
            name = _metric_name(metric)
            value_t, change_t = thresholds[0].value_threshold, thresholds[0].change_threshold
            bounds = []
            if value_t.HasField("lower_bound"):
                bounds.append(f">= {value_t.lower_bound.value:g}")
            if value_t.HasField("upper_bound"):
                bounds.append(f"<= {value_t.upper_bound.value:g}")
            rule = ""
            if change_t.HasField("absolute"):
                better = "higher" if change_t.direction == tfma.MetricDirection.HIGHER_IS_BETTER else "lower"
                rule = f"change vs baseline {'>=' if better == 'higher' else '<='} {change_t.absolute.value:g} ({better} is better)"
            failed = any(f.startswith(name) for f in failures)
            gates.append(Gate(model, name, metrics.get(name), " and ".join(bounds) or "none",
                              metrics.get(f"{name}_change"), rule, not failed))
    return gates


def _metric_name(metric) -> str:
    import json

    if metric.config:
        try:
            return json.loads("{" + metric.config + "}").get("name")
        except ValueError:
            pass
    names = {"MaskedPixelRMSE": "rmse_px", "MacroRecall": "macro_recall",
             "SparseCategoricalAccuracy": "sparse_categorical_accuracy"}
    return names.get(metric.class_name, metric.class_name)


def _slice_metrics(evaluation_uri: str) -> dict[str, dict[str, float]]:
    import tensorflow_model_analysis as tfma

    sliced = {}
    for m in tfma.load_metrics(evaluation_uri):
        if not m.slice_key.single_slice_keys:
            continue
        key = m.slice_key.single_slice_keys[0]
        value = key.int64_value if key.HasField("int64_value") else key.bytes_value.decode()
        sliced[f"{key.column}={value}"] = {
            kv.key.name: kv.value.double_value.value for kv in m.metric_keys_and_values
            if not kv.key.is_diff and kv.value.HasField("double_value")}
    return sliced


def _num_examples(statistics_uri: str | None) -> dict[str, int]:
    if not statistics_uri:
        return {}
    from tensorflow_metadata.proto.v0 import statistics_pb2

    counts = {}
    for split in sorted(Path(statistics_uri).glob("Split-*")):
        path = split / "FeatureStats.pb"
        if path.exists():
            stats = statistics_pb2.DatasetFeatureStatisticsList()
            stats.ParseFromString(path.read_bytes())
            counts[split.name[6:]] = int(stats.datasets[0].num_examples) if stats.datasets else 0
    return counts


def _rejected(pipeline_root: Path, kind: str) -> list[dict]:
    path = Path(pipeline_root) / config.REJECTED_DIR / f"{kind}.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _predict(model_uri: str, examples: list[dict], feature: str) -> dict[str, np.ndarray]:
    import tensorflow as tf

    model = tf.saved_model.load(model_uri)
    out = model.signatures["serving_pixels"](pixels=tf.constant([e[feature] for e in examples]))
    return {k: v.numpy() for k, v in out.items()}


# --- plots ----------------------------------------------------------------------------

def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _img(src: str, alt: str) -> str:
    return f'<img src="{src}" alt="{html.escape(alt)}">'


def _image(pixels: bytes | str, size: int) -> np.ndarray:
    text = pixels.decode() if isinstance(pixels, bytes) else pixels
    return np.asarray(text.split(), dtype=np.uint8).reshape(size, size)


def _face_grid(images, titles, points_true=None, points_pred=None, cols=6, colors=None) -> str:
    n = len(images)
    rows = max(1, (n + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.7, rows * 1.9))
    for i, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
        if points_true is not None:
            p = points_true[i].reshape(15, 2)
            known = p[:, 0] > config.MISSING_COORDINATE + 0.5
            ax.scatter(p[known, 0], p[known, 1], s=9, c="#00e676", marker="o", label="true")
        if points_pred is not None:
            p = points_pred[i].reshape(15, 2)
            ax.scatter(p[:, 0], p[:, 1], s=12, c="#ff1744", marker="x", label="predicted")
        ax.set_title(titles[i], fontsize=7, color=(colors[i] if colors else "black"))
    return _png(fig)


def _confusion_plot(cm: np.ndarray) -> str:
    fig, ax = plt.subplots(figsize=(4.6, 3.9))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    labels = config.EMOTION_CLASSES
    ax.set_xticks(range(5), labels, rotation=35, fontsize=8)
    ax.set_yticks(range(5), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(5):
        for j in range(5):
            ax.text(j, i, f"{cm[i, j]}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of true class")
    ax.set_title("Confusion matrix (eval split)")
    return _png(fig)


def _bars(names, series: dict[str, list[float]], title: str, ylabel: str, horizontal=False, limit=None) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 3.2 if not horizontal else 4.4))
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
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(v) -> str:
    return "n/a" if v is None else (f"{v:.4g}" if isinstance(v, float) else html.escape(str(v)))


def _badge(ok: bool | None, yes="PASS", no="FAIL") -> str:
    if ok is None:
        return '<span class="badge na">n/a</span>'
    return f'<span class="badge {"pass" if ok else "fail"}">{yes if ok else no}</span>'


def _emotion_section(summary, examples, model_uri, sliced) -> str:
    parts = ["<h2>Expressions</h2>"]
    if not model_uri or not examples:
        return parts[0] + "<p>No evaluated model in this run.</p>"
    out = _predict(model_uri, examples, config.EMOTION_PIXELS_COLUMN)
    truth = np.array([int(e[config.EMOTION_LABEL_COLUMN]) for e in examples])
    pred = out[config.EMOTION_OUTPUT].argmax(-1)
    m = emotion_metrics(truth, pred)
    per = m["per_class"]
    rows = [[html.escape(n), _fmt(v["precision"]), _fmt(v["recall"]), _fmt(v["f1"]), v["support"],
             _fmt(sliced.get(f"{config.EMOTION_LABEL_COLUMN}={i}", {}).get("accuracy"))]
            for i, (n, v) in enumerate(per.items())]
    parts.append(f"<p>TFMA on the whole eval split: {_metrics_line(summary.metrics)}. "
                 f"Plots below: the first {len(examples)} eval examples, through the candidate's serving signature "
                 f"(accuracy {m['accuracy']:.3f}, macro F1 {m['macro_f1']:.3f}).</p>")
    parts.append(_table(["class", "precision", "recall", "F1", "support", "TFMA recall (slice by true class)"], rows))
    cm = np.array(m["confusion_matrix"]["rows_true_columns_predicted"])
    parts.append('<div class="row">' + _img(_confusion_plot(cm), "confusion matrix") + _img(_bars(
        list(per), {"precision": [v["precision"] for v in per.values()],
                    "recall": [v["recall"] for v in per.values()]},
        "Per-class precision and recall", "score", limit=1.0), "per-class precision and recall") + "</div>")
    wrong = np.flatnonzero(pred != truth)[:GRID]
    if len(wrong):
        images = [_image(examples[i][config.EMOTION_PIXELS_COLUMN], config.EMOTION_IMAGE_SIZE) for i in wrong]
        titles = [f"true {config.EMOTION_CLASSES[truth[i]]}\npred {config.EMOTION_CLASSES[pred[i]]}" for i in wrong]
        parts.append("<h3>Misclassified examples</h3>" + _img(_face_grid(images, titles), "misclassified examples"))
    else:
        parts.append("<p>No misclassified example among those plotted.</p>")
    return "\n".join(parts)


def _keypoints_section(summary, examples, model_uri) -> str:
    parts = ["<h2>Key points</h2>"]
    if not model_uri or not examples:
        return parts[0] + "<p>No evaluated model in this run.</p>"
    out = _predict(model_uri, examples, config.KEYPOINT_IMAGE_COLUMN)
    pred = out[config.KEYPOINTS_OUTPUT]
    truth = np.array([[float(e[c]) for c in config.KEYPOINT_COLUMNS] for e in examples])
    m = keypoint_metrics(truth, pred)
    parts.append(f"<p>TFMA on the whole eval split: {_metrics_line(summary.metrics)}. Plots below: the first "
                 f"{len(examples)} eval examples through the candidate's serving signature (RMSE {m['rmse_px']:.3f} px, "
                 f"mean point error {m['mean_point_error_px'] or float('nan'):.3f} px).</p>")
    names = list(m["per_point_rmse_px"])
    parts.append(_img(_bars(names, {"RMSE (px)": list(m["per_point_rmse_px"].values())},
                            "Per-key-point error (RMSE, px)", "px", horizontal=True), "per-key-point error"))
    known = truth > config.MISSING_COORDINATE + 0.5
    row_err = np.sqrt((np.where(known, pred - truth, 0) ** 2).sum(1) / np.maximum(known.sum(1), 1))
    images = [_image(e[config.KEYPOINT_IMAGE_COLUMN], config.KEYPOINT_IMAGE_SIZE) for e in examples]
    sample = list(range(min(GRID, len(examples))))
    parts.append("<h3>Predicted (red x) vs true (green o)</h3>" + _img(_face_grid(
        [images[i] for i in sample], [f"RMSE {row_err[i]:.2f} px" for i in sample],
        truth[sample], pred[sample]), "faces with predicted and true key points"))
    worst = list(np.argsort(-row_err)[:6])
    parts.append("<h3>Worst cases</h3>" + _img(_face_grid(
        [images[i] for i in worst], [f"RMSE {row_err[i]:.2f} px" for i in worst], truth[worst], pred[worst],
        colors=["#b71c1c"] * len(worst)), "worst cases"))
    return "\n".join(parts)


def _metrics_line(metrics: dict) -> str:
    return ", ".join(f"{html.escape(k)} = {v:.4g}" for k, v in sorted(metrics.items()) if not k.endswith("_change")) \
        or "none"


def _data_section(pipeline_root, summary, kp_examples, em_examples, counts) -> str:
    parts = ["<h2>Data</h2>"]
    rows = []
    for branch in config.BRANCHES:
        b = summary.branches[branch.name]
        rejected = _rejected(pipeline_root, branch.name)
        n_anom = sum(len(v) for v in b.anomalies.values())
        rows.append([branch.name, _fmt(counts[branch.name].get("train")), _fmt(counts[branch.name].get("eval")),
                     len(rejected), f"{n_anom} " + _badge(n_anom == 0, "none", "found")])
    parts.append(_table(["dataset", "train examples", "eval examples", "rows rejected", "anomalies"], rows))
    for branch in config.BRANCHES:
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
        labels = np.bincount([int(e[config.EMOTION_LABEL_COLUMN]) for e in em_examples], minlength=5)
        parts.append('<div class="row">' + _img(_bars(list(config.EMOTION_CLASSES), {"examples": labels.tolist()},
                                                      "Class balance (eval examples plotted)", "examples"),
                                                "class balance"))
        sample = em_examples[:6]
        parts.append(_img(_face_grid([_image(e[config.EMOTION_PIXELS_COLUMN], 48) for e in sample],
                                     [config.EMOTION_CLASSES[int(e[config.EMOTION_LABEL_COLUMN])] for e in sample]),
                          "sample expression images") + "</div>")
    if kp_examples:
        sample = kp_examples[:6]
        truth = np.array([[float(e[c]) for c in config.KEYPOINT_COLUMNS] for e in sample])
        parts.append("<h3>Sample key-point images with their labels</h3>" + _img(_face_grid(
            [_image(e[config.KEYPOINT_IMAGE_COLUMN], 96) for e in sample], [f"example {i}" for i in range(len(sample))],
            truth), "sample key-point images"))
    return "\n".join(parts)


def _header(summary, gates: list[Gate], run_time: str) -> str:
    rows = []
    for branch in config.BRANCHES:
        b = summary.branches[branch.name]
        push = (f"version {b.pushed_version}" if b.pushed and not b.identical_to_version
                else f"nothing new (same as version {b.identical_to_version})" if b.identical_to_version else "not pushed")
        rows.append([branch.name, _badge(b.blessed, "BLESSED", "NOT BLESSED"), html.escape(push)])
    gate_rows = [[g.model, html.escape(g.metric), _fmt(g.value), html.escape(g.bound), _fmt(g.change),
                  html.escape(g.change_rule), _badge(g.passed)] for g in gates]
    return (f"<h1>Emotion AI Pipeline — run {html.escape(summary.run_id)}</h1>"
            f"<p class=meta>Run started {html.escape(run_time)}; report written "
            f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M:%S')}.</p>"
            + _table(["model", "gate", "push"], rows)
            + "<h2>Thresholds</h2>"
            + _table(["model", "metric", "value", "bound", "change vs baseline", "change rule", "result"], gate_rows))


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:22px}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:32px}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ddd;padding:4px 10px;font-size:13px}
th{background:#f4f4f4;text-align:left}.badge{padding:2px 8px;border-radius:10px;font-weight:600;font-size:12px}
.pass{background:#c8e6c9;color:#1b5e20}.fail{background:#ffcdd2;color:#b71c1c}.na{background:#eee}
.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}img{max-width:100%}.meta{color:#666}
"""


def render(pipeline_root: Path, run_id: str | None = None) -> tuple[str, str]:
    """Build the report of one run (latest by default); return ``(run_id, html)``."""
    import tensorflow_model_analysis as tfma

    summary = run_summary.summarize(pipeline_root, run_id)
    gates, sections, counts, examples = [], {}, {}, {}
    for branch in config.BRANCHES:
        cid = branch.component_id
        b = summary.branches[branch.name]
        gen = summary.component(cid("CsvExampleGen"))
        examples[branch.name] = _eval_examples(gen.outputs["examples"][0].uri) if gen and gen.outputs.get("examples") else []
        stats = summary.component(cid("StatisticsGen"))
        counts[branch.name] = _num_examples(stats.outputs["statistics"][0].uri if stats and stats.outputs.get("statistics") else None)
        evaluator = summary.component(cid("Evaluator"))
        sliced = {}
        if evaluator and evaluator.outputs.get("evaluation"):
            uri = evaluator.outputs["evaluation"][0].uri
            gates += _thresholds(tfma.load_eval_result(uri), branch.name, b.metrics, b.validation_failures)
            sliced = _slice_metrics(uri)
        sections[branch.name] = (sliced, b.model_uri if evaluator else None)
    body = [_header(summary, gates, _run_time(summary.run_id)),
            _emotion_section(summary.branches["emotion"], examples["emotion"], sections["emotion"][1],
                             sections["emotion"][0]),
            _keypoints_section(summary.branches["keypoints"], examples["keypoints"], sections["keypoints"][1]),
            _data_section(pipeline_root, summary, examples["keypoints"], examples["emotion"], counts)]
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
    out = Path(out) if out else Path(pipeline_root) / "reports" / run_id / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
