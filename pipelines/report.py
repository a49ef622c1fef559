"""One self-contained HTML evaluation report per pipeline run (images embedded, no network).

Sources: the run's artifacts (examples and their rejected rows, statistics, anomalies,
models, TFMA's evaluation output with its thresholds and failures, blessings, pushes), the
run's context (profile, data, code version, model repository), and the candidate models
themselves, run on the test split the Evaluator gated on. Written inside the DAG by the
``RunReport`` component (``record_components``) as an artifact; ``emotion-ai report``
re-renders any run from ML Metadata.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import html
import io
import json
from pathlib import Path

import numpy as np
from tfx.dsl.io import fileio

from emotion_ai.components import file_modes
from emotion_ai.components.branches import BRANCHES
from emotion_ai.components.common import report_parts as rp
from emotion_ai.data import generator
from emotion_ai.pipelines import config, run_summary

MAX_EVAL_EXAMPLES = 512


# --- data gathering -------------------------------------------------------------------

def _split_examples(examples_uri: str, split: str, limit: int = MAX_EVAL_EXAMPLES) -> list[dict]:
    """Raw features of the first ``limit`` examples of one split (tf.Example, gzip)."""
    import tensorflow as tf

    files = sorted(fileio.glob(f"{examples_uri.rstrip('/')}/Split-{split}/*.gz"))
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


def _rejected(b: run_summary.BranchSummary) -> list[dict]:
    """The rows this run's ExampleGen rejected (file, line, reason, record)."""
    if not b.rejected_rows:
        return []
    with fileio.open(b.rejected_rows, "r") as f:
        return list(csv.DictReader(io.StringIO(f.read())))


def _predict(model_uri: str, examples: list[dict], feature: str) -> dict[str, np.ndarray]:
    from emotion_ai.serving.local_model import LoadedModel  # loads TensorFlow

    return LoadedModel(model_uri).predict_pixel_strings([e[feature] for e in examples])


# --- sections -------------------------------------------------------------------------

def _badge(ok: bool | None, yes="PASS", no="FAIL") -> str:
    if ok is None:
        return '<span class="badge na">n/a</span>'
    return f'<span class="badge {"pass" if ok else "fail"}">{yes if ok else no}</span>'


def _section(branch, b, examples) -> str:
    """``<h2>`` the branch's title and its report section on the candidate's outputs, or a
    note that this run evaluated no model."""
    title = html.escape(branch.title)
    if b.not_trained:
        return (f"<h2>{title}</h2><p>{_badge(False, no='NOT TRAINED')} {html.escape(b.not_trained)}. "
                "The Trainer trains only on data that passes validation against the curated schema "
                "(see Data below); nothing was evaluated or pushed.</p>")
    if not b.model_uri or not examples or b.evaluation is None:
        return f"<h2>{title}</h2><p>No evaluated model in this run.</p>"
    outputs = _predict(b.model_uri, examples, branch.image_column)
    return f"<h2>{title}</h2>" + branch.part("report").section(b.evaluation, examples, outputs)


def _read_numbers(uri: str, name: str) -> dict[str, np.ndarray]:
    path = f"{uri.rstrip('/')}/{name}"
    if not fileio.exists(path):
        return {}
    with fileio.open(path, "r") as f:
        rows = list(csv.DictReader(io.StringIO(f.read())))
    return {k: np.array([float(r[k]) for r in rows]) for k in (rows[0] if rows else {})}


def _drift_section(summary) -> str:
    """Per branch: each number that describes the images, newest span against the previous
    one and against serving traffic, as pictures, with TFDV's measures under them."""
    parts = []
    for branch in BRANCHES:
        b = summary.branches[branch.name]
        if not b.drift_uri or not (b.drift or b.skew):
            continue
        compared = b.compared or {}
        samples = {f"newest: {compared.get('newest')}": _read_numbers(b.drift_uri, "newest.csv")}
        if compared.get("previous"):
            samples[f"previous: {compared['previous']}"] = _read_numbers(b.drift_uri, "previous.csv")
        if b.skew:
            samples["serving requests"] = _read_numbers(b.drift_uri, "serving.csv")
        features = {name: {label: numbers[name] for label, numbers in samples.items() if name in numbers}
                    for name in branch.derived_columns}
        titles = {}
        for name in features:
            measured = [f"{kind} {m['value']:.3g}{' > ' if m['flagged'] else ' ≤ '}{m['threshold']:g}"
                        for kind, found in (("drift", b.drift), ("skew", b.skew)) if (m := found.get(name))]
            titles[name] = "; ".join(measured)
        rows = [[html.escape(kind), html.escape(name), html.escape(m["measure"]), rp.fmt(m["value"]),
                 rp.fmt(m["threshold"]), _badge(not m["flagged"], "within", "FOUND")]
                for kind, found in (("drift", b.drift), ("skew", b.skew)) for name, m in found.items()]
        parts.append(f"<h3>Drift and skew ({html.escape(branch.name)})</h3><p class=meta>Drift: the newest span "
                     f"({html.escape(str(compared.get('newest')))}) against the one before it "
                     f"({html.escape(str(compared.get('previous') or 'none in the window'))}); skew: the run's data "
                     f"against {compared.get('serving_requests', 0)} request(s) the server logged. TFDV's "
                     "Jensen-Shannon divergence (numbers) and L-infinity distance (class mix); thresholds in "
                     "pipelines/config.py. Findings do not stop training.</p>"
                     + rp.img(rp.distributions(features, titles), f"{branch.name} drift and skew")
                     + rp.table(["", "number", "measure", "value", "threshold", "result"], rows))
    return "\n".join(parts)


def _data_section(summary, examples: dict[str, list[dict]]) -> str:
    parts = ["<h2>Data</h2>"]
    rows = []
    splits = (config.TRAIN_SPLIT, config.EVAL_SPLIT, config.TEST_SPLIT)
    rejected_of = {branch.name: _rejected(summary.branches[branch.name]) for branch in BRANCHES}
    for branch in BRANCHES:
        b = summary.branches[branch.name]
        rejected = rejected_of[branch.name]
        n_anom = sum(len(v) for v in b.anomalies.values())
        rows.append([branch.name] + [rp.fmt(b.split_counts.get(s)) for s in splits]
                    + [len(rejected), f"{n_anom} " + _badge(n_anom == 0, "none", "found")])
    parts.append(rp.table(["dataset"] + [f"{s} examples" for s in splits] + ["rows rejected", "anomalies"], rows))
    parts.append("<p class=meta>" + "; ".join(f"<b>{s}</b> {html.escape(config.SPLIT_ROLES[s])}" for s in splits)
                 + ".</p>")
    span_rows = [[branch.name, html.escape(sp["name"]), sp["rows_read"], sp["rows_rejected"], len(sp["files"])]
                 for branch in BRANCHES for sp in summary.branches[branch.name].spans]
    if span_rows:
        parts.append("<h3>Spans read (oldest first)</h3>"
                     + rp.table(["dataset", "span", "rows read", "rows rejected", "files"], span_rows))
        left = [f"{branch.name}: {', '.join(summary.branches[branch.name].spans_left_out)}" for branch in BRANCHES
                if summary.branches[branch.name].spans_left_out]
        if left:
            parts.append(f"<p class=meta>Older spans outside the profile's window, not read: "
                         f"{html.escape('; '.join(left))}.</p>")
    for branch in BRANCHES:
        b = summary.branches[branch.name]
        items = [f"<li>[{html.escape(s)}] {html.escape(a)}</li>" for s, v in b.anomalies.items() for a in v]
        if items:
            parts.append(f"<h3>Anomalies ({branch.name})</h3><ul>{''.join(items)}</ul>")
        rejected = rejected_of[branch.name]
        if rejected:
            parts.append(f"<h3>Rejected rows ({branch.name}): {len(rejected)}</h3>" + rp.table(
                ["file", "line", "reason"],
                [[html.escape(r["file"]), r["line"], html.escape(r["reason"])] for r in rejected[:20]])
                + (f"<p>… and {len(rejected) - 20} more in the rejected-rows file.</p>" if len(rejected) > 20 else ""))
        parts.append(branch.part("report").data_samples(examples[branch.name], config.TEST_SPLIT))
    return "\n".join(parts)


def _context_rows(context, summary) -> list[list[str]]:
    if context is None:
        return [["context", "not recorded for this run (rendered from ML Metadata alone)"]]
    about = config.PROFILES[context["profile"]].about if context["profile"] in config.PROFILES else ""
    rows = [["profile", html.escape(context["profile"] + (f" ({about})" if about else ""))],
            ["code version", html.escape(context["code_version"])]]
    for name, d in context["data"].items():
        counts = summary.branches[name].split_counts if name in summary.branches else {}
        split_text = ", ".join(f"{s} {n}" for s, n in counts.items())
        files = ", ".join(html.escape(Path(f).name) for f in d["files"])
        rows.append([f"{html.escape(name)} data", f"{html.escape(d['source'])}: {files}; {d['rows_read']} rows read, "
                     f"{d['rows_rejected']} rejected; examples per split: {html.escape(split_text) or 'n/a'}"])
    rows.append(["model repository", html.escape(context["model_repo"])])
    rows.append(["pipeline root", html.escape(context["pipeline_root"])])
    # The report is an input of the tracking step, so it cannot name the MLflow run itself.
    rows.append(["MLflow", "the TrackRun step logs this run and this report after it, when a tracking store is "
                 f"configured: the MLflow run tagged <code>tfx_run_id = {html.escape(summary.run_id)}</code>"])
    return rows


def _ci(bounds) -> str:
    """A 95 % confidence interval, small, after its value."""
    return f' <span class=ci>[{bounds[0]:.4g}, {bounds[1]:.4g}]</span>' if bounds else ""


def _gate_rows(summary) -> list[list[str]]:
    rows = []
    for branch in BRANCHES:
        e = summary.branches[branch.name].evaluation
        if e is None:
            continue
        for g in e.gates:
            change = "n/a" if g.change is None else f"{g.change:+.4g}" + _ci(e.interval("change", g.metric))
            rows.append([branch.name, html.escape(e.split), html.escape(g.metric),
                         rp.fmt(g.candidate) + _ci(e.interval("candidate", g.metric)),
                         rp.fmt(g.baseline) + _ci(e.interval("baseline", g.metric)), change, html.escape(g.bound),
                         html.escape(g.change_rule or "none"), _badge(g.passed)])
    return rows


def _baseline_notes(summary) -> str:
    notes = []
    for branch in BRANCHES:
        e = summary.branches[branch.name].evaluation
        if e is None:
            continue
        if e.baseline:
            which = f"version {e.baseline_version}" if e.baseline_version else "the served model"
            notes.append(f"<li><b>{branch.name}</b>: baseline is {html.escape(which)} of this branch, the one "
                         "its model repository served when the run started, scored on "
                         f"the same {html.escape(e.split)} examples as the candidate.</li>")
        else:
            notes.append(f"<li><b>{branch.name}</b>: no baseline (the model repository served no "
                         f"{branch.name} model when the run started), so the change rules do not apply and "
                         "only the absolute bounds gate this run: change columns read n/a.</li>")
    return f"<ul class=meta>{''.join(notes)}</ul>" if notes else ""


def _header(summary, context, run_time: str) -> str:
    rows = []
    for branch in BRANCHES:
        b = summary.branches[branch.name]
        push = (f"version {b.pushed_version}" if b.pushed and not b.identical_to_version
                else f"nothing new (same as version {b.identical_to_version})" if b.identical_to_version
                else f"not pushed: {b.push_refused}" if b.push_refused
                else "not trained: the data failed validation" if b.not_trained else "not pushed")
        w = b.warm_start
        trained = ("not trained" if b.not_trained else
                   f"warm start from served version {w.get('from_version')}, {w.get('epochs')} epoch(s)"
                   if w.get("warm") else f"from scratch ({w['reason']})" if w else "from scratch")
        rows.append([branch.name, html.escape(trained), _badge(b.blessed, "BLESSED", "NOT BLESSED"),
                     html.escape(push)])
    return (f"<h1>Emotion AI Pipeline — run {html.escape(summary.run_id)}</h1>"
            f"<p class=meta>Run started {html.escape(run_time)}; report written "
            f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M:%S')}.</p>"
            + rp.table(None, _context_rows(context, summary))
            + rp.table(["model", "trained", "gate", "push"], rows)
            + "<h2>Thresholds</h2>"
            + rp.table(["model", "split", "metric", "candidate", "baseline", "change", "bound", "change rule",
                        "result"], _gate_rows(summary))
            + "<p class=meta>In brackets: TFMA's 95 % confidence intervals (Poisson bootstrap of the test "
              "split). The gates compare the point estimates; a change inside its interval is within the "
              "noise of the split, so a change rule tighter than the interval's half-width blocks or "
              "blesses by chance.</p>"
            + _baseline_notes(summary))


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:22px}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:32px}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ddd;padding:4px 10px;font-size:13px}
th{background:#f4f4f4;text-align:left}.badge{padding:2px 8px;border-radius:10px;font-weight:600;font-size:12px}
.pass{background:#c8e6c9;color:#1b5e20}.fail{background:#ffcdd2;color:#b71c1c}.na{background:#eee}
.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}img{max-width:100%}.meta{color:#666}.ci{color:#666;font-size:85%}
"""


REPORT_FILE = "report.html"
CONTEXT_FILE = "context.json"  # beside the report in its artifact: what the report's header shows
SUMMARY_FILE = "summary.json"  # beside the report: the run's figures for machines


@dataclasses.dataclass
class RunContext:
    """Where a run's figures come from: shown in the report and the summary, logged to MLflow."""

    run_id: str
    profile: str
    data: dict[str, dict]  # dataset -> {"source", "files", "rows_read", "rows_rejected"}
    code_version: str  # git commit of the project (+ "-dirty"), and the component code hash
    model_repo: str
    pipeline_root: str

    @classmethod
    def load(cls, report_uri: str) -> RunContext:
        with fileio.open(f"{report_uri.rstrip('/')}/{CONTEXT_FILE}", "r") as f:
            return cls(**json.loads(f.read()))


def describe_data(summary: run_summary.RunSummary) -> dict[str, dict]:
    """Per dataset: generated sample data (with its seed) or the user's files, and the
    counts its ExampleGen recorded."""
    described = {}
    for name, b in summary.branches.items():
        generated = [generator.provenance(Path(p)) if "://" not in p else None for p in b.sources]
        if generated and all(generated):
            seeds = sorted({g["seed"] for g in generated})
            source = f"generated sample data (seed {', '.join(map(str, seeds))})"
        else:
            source = "user files" if not any(generated) else "user files and generated sample data"
        described[name] = {"source": source, "files": list(b.sources), "rows_read": b.rows_read,
                           "rows_rejected": b.rows_rejected}
    return described


def render_summary(summary: run_summary.RunSummary, context: RunContext | None) -> str:
    """The report of one run as one HTML page."""
    examples = {}
    for branch in BRANCHES:
        gen = summary.component(branch.component_id("CsvExampleGen"))
        examples[branch.name] = (_split_examples(gen.outputs["examples"][0].uri, config.TEST_SPLIT)
                                 if gen and gen.outputs.get("examples") else [])
    body = [_header(summary, dataclasses.asdict(context) if context else None, _run_time(summary.run_id)),
            *(_section(branch, summary.branches[branch.name], examples[branch.name]) for branch in BRANCHES),
            _data_section(summary, examples), _drift_section(summary)]
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>Run {html.escape(summary.run_id)}"
            f"</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>")


def write_artifact(summary: run_summary.RunSummary, context: RunContext, uri: str) -> str:
    """The report, its context and the run's figures (``summary.json``) into the report
    artifact at ``uri`` (any filesystem TensorFlow has); returns the report's path."""
    uri = uri.rstrip("/")
    fileio.makedirs(uri)
    figures = {"run_id": summary.run_id, "context": dataclasses.asdict(context),
               "branches": {name: {**dataclasses.asdict(b), "rows_staged": b.rows_staged}
                            for name, b in summary.branches.items()}}
    for name, text in ((REPORT_FILE, render_summary(summary, context)),
                       (CONTEXT_FILE, json.dumps(dataclasses.asdict(context), indent=1)),
                       (SUMMARY_FILE, json.dumps(figures, indent=1, default=str))):
        with fileio.open(f"{uri}/{name}", "w") as f:
            f.write(text)
        file_modes.private(f"{uri}/{name}")  # the report shows faces
    return f"{uri}/{REPORT_FILE}"


def report_artifact_uri(summary: run_summary.RunSummary) -> str | None:
    """Where the run's ``RunReport`` component wrote its report, if it ran."""
    component = summary.component(REPORT_COMPONENT)
    reports = component.outputs.get("report") if component else None
    return reports[0].uri if reports else None


REPORT_COMPONENT = "RunReport"


def render(pipeline_root: Path, run_id: str | None = None) -> tuple[str, str]:
    """Re-render the report of one run (latest by default) from ML Metadata; return
    ``(run_id, html)``. The context comes from the run's own report artifact, when it has one."""
    summary = run_summary.summarize(pipeline_root, run_id)
    uri = report_artifact_uri(summary)
    try:
        context = RunContext.load(uri) if uri else None
    except (OSError, ValueError, TypeError, fileio.NotFoundError):
        context = None
    return summary.run_id, render_summary(summary, context)


def _run_time(run_id: str) -> str:
    try:
        return datetime.datetime.strptime(run_id, "%Y%m%d-%H%M%S.%f").strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return run_id


def write(pipeline_root: Path, run_id: str | None = None, out: Path | None = None) -> Path:
    """Render and write the report; default path ``<pipeline_root>/reports/<run id>/report.html``."""
    run_id, page = render(Path(pipeline_root), run_id)
    out = Path(out) if out else Path(pipeline_root) / "reports" / run_id / REPORT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    file_modes.private(out)  # the report shows faces
    return out
