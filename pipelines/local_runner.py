"""Run the pipeline on the local Beam runner (BeamDagRunner, DirectRunner in memory).

Inputs are found (or generated), the DAG runs with SQLite ML Metadata under the pipeline
root (everything a run does happens in it: row checks, training, gates, pushes, the report,
MLflow tracking), and a summary of the run is read back from it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from absl import logging as absl_logging
from tfx import v1 as tfx
from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

from emotion_ai.components.branches import BRANCHES
from emotion_ai.components.csv_rows import InputDataError
from emotion_ai.components.validating_example_gen import BranchInput, fingerprint
from emotion_ai.data import generator, readers
from emotion_ai.pipelines import config, console, record_components, report, run_summary
from emotion_ai.pipelines.pipeline import create_pipeline, served_now

log = logging.getLogger("emotion_ai")


@dataclasses.dataclass
class RunResult:
    summary: run_summary.RunSummary
    inputs: dict[str, BranchInput]
    pipeline_root: Path
    report_path: Path | None = None  # report.html in the run's RunReport artifact
    context: report.RunContext | None = None  # what that report says the run used
    mlflow_run_id: str | None = None  # the TrackRun step's MLflow run, when it tracked the run
    mlflow_location: str | None = None
    untracked_reason: str | None = None  # why it did not


def _record(summary: run_summary.RunSummary) -> dict:
    """What the run's RunReport and TrackRun steps produced (read from ML Metadata)."""
    found = {}
    uri = report.report_artifact_uri(summary)
    if uri:
        found["report_path"] = Path(uri) / report.REPORT_FILE  # a local run: a local root
        found["context"] = report.RunContext.load(uri)
    tracked = summary.component(record_components.TRACKING_ID)
    runs = tracked.outputs.get("mlflow_run") if tracked else None
    if runs:
        tracked = runs[0]
        if run_summary.custom_property(tracked, "tracked"):
            found["mlflow_run_id"] = run_summary.custom_property(tracked, "mlflow_run_id")
            found["mlflow_location"] = run_summary.custom_property(tracked, "location")
        else:
            found["untracked_reason"] = run_summary.custom_property(tracked, "reason") or "unknown"
    return found


def choose_profile(data_dir: Path, csvs: Mapping[str, Sequence[Path]] | None = None) -> tuple[config.Profile, str]:
    """The profile of a run that names none, and why: ``sample`` (``config.SAMPLE_PROFILE``)
    when the data is the embedded sample data (no CSV yet, so it will be generated, or every
    CSV generated and unchanged since), else the production profile."""
    production = config.PROFILES[config.DEFAULT_PROFILE]
    if csvs and any(csvs.values()):
        return production, "CSVs named on the command line"
    found = [str(p) for paths in readers.find_csvs(data_dir).values() for p in paths]
    sample = config.PROFILES[config.SAMPLE_PROFILE]
    if not found:
        return sample, f"no CSV in {data_dir}: the embedded sample data is generated there"
    if all("://" not in p and generator.provenance(Path(p)) for p in found):
        return sample, f"the data in {data_dir} is the embedded sample data"
    return production, f"your data in {data_dir}"


def resolve_inputs(data_dir: Path, csvs: Mapping[str, Sequence[Path]] | None = None,
                   profile: config.Profile | None = None) -> dict[str, BranchInput]:
    """Per branch, the CSVs its ExampleGen reads (and checks, row by row, in the DAG): the
    explicit ``csvs`` win; otherwise every CSV of its format in ``data_dir``; with no CSV at
    all, generate the embedded sample data there first."""
    csvs = csvs or {}
    # The data folder is searched only for the branches given no CSVs: files of any kind may
    # sit beside explicitly named ones.
    explicit = all(csvs.get(b.name) for b in BRANCHES)
    found = {b.name: [] for b in BRANCHES} if explicit else readers.find_csvs(data_dir)
    if not any(csvs.values()) and not any(found.values()):
        profile = profile or config.PROFILES[config.DEFAULT_PROFILE]
        log.info("no CSV in %s: generating sample data (%d key-point rows, %d expression rows)",
                 data_dir, profile.sample_keypoint_rows, profile.sample_emotion_rows)
        generator.generate(data_dir, profile.sample_keypoint_rows, profile.sample_emotion_rows)
        found = readers.find_csvs(data_dir)
    inputs = {}
    for branch in BRANCHES:
        paths = [Path(p).resolve() for p in (csvs.get(branch.name) or found[branch.name])]
        if not paths:
            raise InputDataError(f"no {branch.name} CSV: pass --{branch.name}-csv or put one in {data_dir}")
        for path in paths:
            if not path.is_file():
                raise InputDataError(f"{path}: file not found")
        # Relative to the data folder, so that span folders under it (span-3/, 2026-12-01/) are
        # seen as such even when only one span is there.
        found_here = not csvs.get(branch.name) and Path(data_dir).resolve()
        base = found_here or Path(os.path.commonpath([p.parent for p in paths]))
        inputs[branch.name] = BranchInput(str(base), tuple(str(p.relative_to(base)) for p in paths),
                                          fingerprint(paths))
    return inputs


def beam_pipeline_args(beam_args: Sequence[str] = ()) -> list[str]:
    """``config.BEAM_PIPELINE_ARGS``, then ``beam_args`` (which win); with
    ``config.IN_PROCESS_BEAM_ARGS`` when Beam stays in this process (``beam_args`` name no
    runner, worker environment or job endpoint of their own)."""
    elsewhere = any(a.split("=")[0] in ("--runner", "--environment_type", "--job_endpoint", "--sdk_container_image")
                    for a in beam_args)
    return [*config.BEAM_PIPELINE_ARGS, *beam_args, *(() if elsewhere else config.IN_PROCESS_BEAM_ARGS)]


def run(profile: config.Profile, pipeline_root: Path, model_repo: Path, data_dir: Path = config.DATA_DIR,
        csvs: Mapping[str, Sequence[Path]] | None = None, enable_cache: bool = True, allow_other_profile: bool = False,
        progress: Callable[[str], None] | None = None, beam_args: Sequence[str] = (),
        serving_log: Path | None = None) -> RunResult:
    """Stage inputs, run the whole pipeline locally, and summarize the run. ``csvs``: per
    branch name, the CSVs to use instead of the data dir's. ``progress`` receives one line
    per step (component i of n, elapsed, ETA). ``beam_args`` come after the defaults of
    ``config.BEAM_PIPELINE_ARGS``, so they win. ``serving_log``: the folder ``emotion-ai
    serve --log-requests`` records requests in, for skew (None or missing: no skew)."""
    absl_logging.set_verbosity(absl_logging.INFO)
    say = progress or (lambda line: None)
    pipeline_root, model_repo = Path(pipeline_root).resolve(), Path(model_repo).resolve()
    pipeline_root.mkdir(parents=True, exist_ok=True)
    inputs = resolve_inputs(Path(data_dir), csvs, profile)
    pipeline = create_pipeline(
        pipeline_root=str(pipeline_root),
        inputs=inputs,
        model_repo=str(model_repo),
        profile=profile,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(pipeline_root / config.METADATA_FILE)),
        enable_cache=enable_cache,
        allow_other_profile=allow_other_profile,
        beam_pipeline_args=beam_pipeline_args(beam_args),
        baseline_keys=served_now(str(model_repo)),
        **_serving_log(serving_log),
    )
    watcher = console.ComponentProgress(len(pipeline.components), console.expected_seconds(pipeline_root), say)
    absl_log = logging.getLogger("absl")
    absl_log.addHandler(watcher)
    try:
        BeamDagRunner().run(pipeline)
    except Exception as error:  # noqa: BLE001 - an unusable input is one line, not Beam's traceback
        cause = error
        while cause is not None and not isinstance(cause, InputDataError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise InputDataError(str(cause).split(" [while running")[0]) from None
        raise
    finally:
        absl_log.removeHandler(watcher)
    result = finished(pipeline_root, inputs)
    for name, b in result.summary.branches.items():
        say(f"  {name}: {b.rows_read} rows read, {b.rows_rejected} rejected")
    log.info("evaluation report: %s", result.report_path)
    return result


def _serving_log(folder: Path | None) -> dict[str, str]:
    """``create_pipeline``'s ``serving_log`` and its cache key (the log files' names, sizes
    and times: new requests re-run the skew measurement, nothing else)."""
    if folder is None or not Path(folder).is_dir():
        return {}
    files = sorted(Path(folder).resolve().glob("*/*.csv"))
    state = hashlib.sha256("\n".join(f"{f} {f.stat().st_size} {f.stat().st_mtime_ns}" for f in files).encode())
    return {"serving_log": str(Path(folder).resolve()), "serving_log_key": state.hexdigest()[:16]}


def finished(pipeline_root: Path, inputs: dict[str, BranchInput], run_id: str | None = None) -> RunResult:
    """A finished run (the newest, by default) as ML Metadata records it: its summary, and
    what its RunReport and TrackRun steps produced."""
    summary = run_summary.summarize(Path(pipeline_root), run_id)
    return RunResult(summary, inputs, Path(pipeline_root), **_record(summary))


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _ci(bounds) -> str:
    return f" [{bounds[0]:.4g}, {bounds[1]:.4g}]" if bounds else ""


def _change(value) -> str:
    return "n/a" if value is None else f"{value:+.4g}"


def format_drift(b: run_summary.BranchSummary) -> list[str]:
    """Drift of the newest span against the previous one, skew against serving traffic."""
    lines = []
    compared = b.compared or {}
    if b.drift:
        lines.append(f"    drift, {compared.get('newest')} vs {compared.get('previous')}: "
                     + _measures(b.drift))
    elif b.spans:
        lines.append("    drift: one span read, nothing to compare it with")
    if b.skew:
        lines.append(f"    skew vs serving ({compared.get('serving_requests')} requests logged): " + _measures(b.skew))
    return lines


def _measures(found: dict) -> str:
    flagged = [f"{n} {m['value']:.3g} > {m['threshold']:g} ({m['measure']})" for n, m in found.items() if m["flagged"]]
    return ("FOUND " + "; ".join(flagged)) if flagged else f"none over the thresholds ({len(found)} numbers compared)"


def format_evaluation(b: run_summary.BranchSummary) -> list[str]:
    """Gate lines: the candidate's and the baseline's figures side by side, with the change
    and the rule, each named by the split they were measured on."""
    e = b.evaluation
    gate = {True: "BLESSED", False: "NOT BLESSED", None: "not evaluated"}[b.blessed]
    if e is None:
        return [f"    gate: {gate}"]
    n = e.candidate.get("example_count")
    lines = [f"    gate: {gate} (Evaluator on the {e.split} split, {_num(n)} examples)"]
    if e.baseline:
        which = f"version {e.baseline_version}" if e.baseline_version else "the served model"
        lines.append(f"      baseline: {which} of this branch (served when the run started), "
                     "scored on the same examples")
    else:
        lines.append("      baseline: none (nothing of this branch served yet): absolute bounds only")
    rows = [("metric", "candidate [95% CI]", "baseline", "change [95% CI]", "rule", "result")]
    for g in e.gates:
        rule = g.bound if not g.change_rule else f"{g.bound}; {g.change_rule}"
        rows.append((g.metric, _num(g.candidate) + _ci(e.interval("candidate", g.metric)), _num(g.baseline),
                     _change(g.change) + _ci(e.interval("change", g.metric)) if g.change is not None else "n/a",
                     rule, "pass" if g.passed else "FAIL"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        lines.append("      " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[5])
    lines += [f"      failed: {f}" for f in e.failures]
    return lines


def format_throughput(history: dict[str, list[float]]) -> list[str]:
    """The Trainer's training images/s beside the plain-Keras reference it measured (when the
    profile asks for one: ``ModelParams.reference_steps``)."""
    trained, reference = history.get("train_images_per_second"), history.get("reference_images_per_second")
    if not trained or not reference:
        return []
    mean = sum(trained) / len(trained)
    return [f"    throughput: {mean:.1f} training images/s; the same network in plain Keras on random tensors "
            f"{reference[0]:.1f} ({mean / reference[0]:.2f} of it)"]


def format_summary(result: RunResult) -> str:
    """The end-of-run text: where the figures come from, per model data, metrics (candidate
    and baseline), gate and push; then component times."""
    ctx = result.context
    lines = [f"Run {result.summary.run_id}"]
    if ctx:
        about = config.PROFILES[ctx.profile].about if ctx.profile in config.PROFILES else ""
        lines.append(f"  profile {ctx.profile}" + (f" ({about})" if about else "") + f"; code {ctx.code_version}")
    for branch in BRANCHES:
        b = result.summary.branches[branch.name]
        lines.append(f"  {branch.name}:")
        source = ctx.data[branch.name]["source"] if ctx else "data"
        lines.append(f"    data: {source}; {b.rows_read} rows read, {b.rows_rejected} rejected"
                     + (f" ({b.rejected_rows})" if b.rejected_rows else ""))
        if b.spans:
            lines.append(f"    spans: {b.span_names}" + "".join(
                f"\n      {s['name']}: {s['rows_read']} rows read, {s['rows_rejected']} rejected, "
                f"{len(s['files'])} file(s)" for s in b.spans))
        if b.split_counts:
            lines.append("    splits: " + ", ".join(f"{k} {v}" for k, v in b.split_counts.items())
                         + f" (the Trainer reads {config.TRAIN_SPLIT} and {config.EVAL_SPLIT}; "
                         f"the gate {config.TEST_SPLIT})")
        n_anomalies = sum(len(v) for v in b.anomalies.values())
        lines.append(f"    data validation: {n_anomalies} anomal{'y' if n_anomalies == 1 else 'ies'}"
                     + "".join(f"\n      [{split}] {a}" for split, items in b.anomalies.items() for a in items))
        lines += format_drift(b)
        if b.warm_start:
            w = b.warm_start
            lines.append(f"    trained: warm start from served version {w.get('from_version')}, {w['epochs']} epoch(s)"
                         if w.get("warm") else f"    trained: from scratch ({w.get('reason')})")
        lines += format_throughput(run_summary.trainer_history(result.summary, branch))
        if b.not_trained:
            lines.append(f"    not trained: {b.not_trained.split(':')[0]} (listed above); fix the data, then run again")
        lines += format_evaluation(b)
        pusher = result.summary.component(branch.component_id("Pusher"))
        if b.pushed and pusher and pusher.state == "cached":
            lines.append(f"    pushed: nothing new (cached; version {b.pushed_version} is already in {b.pushed_to})")
        elif b.pushed:
            lines.append(f"    pushed: version {b.pushed_version} -> {b.pushed_to}")
        elif b.identical_to_version:
            lines.append(f"    pushed: nothing new (identical to version {b.identical_to_version})")
        elif b.push_refused:
            lines.append(f"    pushed: no ({b.push_refused})")
        else:
            lines.append("    pushed: no" + (" (not blessed)" if b.blessed is False else ""))
    lines.append("  components (state, seconds):")
    for c in result.summary.components:
        lines.append(f"    {c.node_id:<40} {c.state:<9} {c.seconds:8.1f}")
    total = sum(c.seconds for c in result.summary.components)
    lines.append(f"    {'total':<40} {'':<9} {total:8.1f}")
    if result.report_path:
        lines.append(f"  report: {result.report_path}")
    if result.mlflow_run_id:
        lines.append(f"  mlflow: run {result.mlflow_run_id} ({result.mlflow_location})")
    elif result.untracked_reason:
        lines.append(f"  mlflow: not tracked ({result.untracked_reason})")
    return "\n".join(lines)
