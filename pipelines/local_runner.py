"""Run the pipeline on the local Beam runner (BeamDagRunner, DirectRunner in memory).

Inputs are found (or generated), validated and staged, then the DAG runs with SQLite ML
Metadata under the pipeline root, and a summary of the run is read back from it.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Sequence

from absl import logging as absl_logging
from tfx import v1 as tfx
from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

from data import generator, readers
from pipelines import config, report, run_summary, tracking
from pipelines.pipeline import create_pipeline

log = logging.getLogger("emotion_ai")


@dataclasses.dataclass
class RunResult:
    summary: run_summary.RunSummary
    staged: dict[str, readers.StageResult]
    pipeline_root: Path
    report_path: Path | None = None
    mlflow_run_id: str | None = None


def resolve_inputs(data_dir: Path, keypoints_csvs: Sequence[Path] = (), emotion_csvs: Sequence[Path] = (),
                   profile: config.Profile | None = None) -> dict[str, list[Path]]:
    """Explicit paths win; otherwise every CSV in ``data_dir``; with none there, generate
    the embedded sample data into ``data_dir`` first."""
    found = readers.find_csvs(data_dir)
    if not keypoints_csvs and not emotion_csvs and not any(found.values()):
        profile = profile or config.PROFILES[config.DEFAULT_PROFILE]
        log.info("no CSV in %s: generating sample data (%d key-point rows, %d expression rows)",
                 data_dir, profile.sample_keypoint_rows, profile.sample_emotion_rows)
        generator.generate(data_dir, profile.sample_keypoint_rows, profile.sample_emotion_rows)
        found = readers.find_csvs(data_dir)
    inputs = {"keypoints": list(keypoints_csvs) or found["keypoints"],
              "emotion": list(emotion_csvs) or found["emotion"]}
    for kind, paths in inputs.items():
        if not paths:
            raise readers.InputDataError(f"no {kind} CSV: pass --{kind}-csv or put one in {data_dir}")
    return inputs


def stage_inputs(inputs: dict[str, list[Path]], pipeline_root: Path) -> dict[str, readers.StageResult]:
    staged = {}
    for kind, paths in inputs.items():
        result = readers.stage(kind, paths, pipeline_root)
        log.info("%s: %d rows read, %d rejected%s -> %s", kind, result.rows_read, result.rows_rejected,
                 f" (see {result.rejected_path})" if result.rejected_path else "", result.staged_path)
        staged[kind] = result
    return staged


def run(profile: config.Profile, pipeline_root: Path, model_repo: Path, data_dir: Path = config.DATA_DIR,
        keypoints_csvs: Sequence[Path] = (), emotion_csvs: Sequence[Path] = (),
        enable_cache: bool = True) -> RunResult:
    """Stage inputs, run the whole two-branch pipeline locally, and summarize the run."""
    absl_logging.set_verbosity(absl_logging.INFO)
    pipeline_root, model_repo = Path(pipeline_root).resolve(), Path(model_repo).resolve()
    pipeline_root.mkdir(parents=True, exist_ok=True)
    inputs = resolve_inputs(Path(data_dir), keypoints_csvs, emotion_csvs, profile)
    staged = stage_inputs(inputs, pipeline_root)
    pipeline = create_pipeline(
        pipeline_root=str(pipeline_root),
        keypoints_input=str(staged["keypoints"].staged_path.parent),
        emotion_input=str(staged["emotion"].staged_path.parent),
        model_repo=str(model_repo),
        profile=profile,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(pipeline_root / config.METADATA_FILE)),
        enable_cache=enable_cache,
    )
    BeamDagRunner().run(pipeline)
    summary = run_summary.summarize(pipeline_root)
    report_path = report.write(pipeline_root, summary.run_id)
    log.info("evaluation report: %s", report_path)
    result = RunResult(summary, staged, pipeline_root, report_path)
    result.mlflow_run_id = tracking.track(result, profile, pipeline_root)
    return result


def format_summary(result: RunResult) -> str:
    """The end-of-run text: per model data, metrics, gate and push; then component times."""
    lines = [f"Run {result.summary.run_id}"]
    for branch in config.BRANCHES:
        b = result.summary.branches[branch.name]
        st = result.staged[branch.name]
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(b.metrics.items()))
        gate = {True: "BLESSED", False: "NOT BLESSED", None: "not evaluated"}[b.blessed]
        lines.append(f"  {branch.name}:")
        lines.append(f"    examples: {st.rows_read} read, {st.rows_rejected} rejected"
                     + (f" ({st.rejected_path})" if st.rejected_path else ""))
        n_anomalies = sum(len(v) for v in b.anomalies.values())
        lines.append(f"    data validation: {n_anomalies} anomal{'y' if n_anomalies == 1 else 'ies'}"
                     + "".join(f"\n      [{split}] {a}" for split, items in b.anomalies.items() for a in items))
        lines.append(f"    metrics: {metrics or 'none'}")
        lines.append(f"    gate: {gate}" + "".join(f"\n      failed: {f}" for f in b.validation_failures))
        pusher = result.summary.component(branch.component_id("Pusher"))
        if b.pushed and pusher and pusher.state == "cached":
            lines.append(f"    pushed: nothing new (cached; version {b.pushed_version} is already in {b.pushed_to})")
        elif b.pushed:
            lines.append(f"    pushed: version {b.pushed_version} -> {b.pushed_to}")
        elif b.identical_to_version:
            lines.append(f"    pushed: nothing new (identical to version {b.identical_to_version})")
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
        lines.append(f"  mlflow: run {result.mlflow_run_id} in {tracking.tracking_uri(result.pipeline_root)}")
    return "\n".join(lines)
