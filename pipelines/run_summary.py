"""What one pipeline run did, read back from ML Metadata.

Used for the end-of-run summary (and later by reports and run history): per component
its state (complete, cached, failed) and wall time; per branch the final metrics, the
blessing, the push and the data validation anomalies.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx

from pipelines import config

_STATES = {metadata_store_pb2.Execution.COMPLETE: "complete", metadata_store_pb2.Execution.CACHED: "cached",
           metadata_store_pb2.Execution.FAILED: "failed", metadata_store_pb2.Execution.RUNNING: "running",
           metadata_store_pb2.Execution.CANCELED: "canceled", metadata_store_pb2.Execution.NEW: "new"}


@dataclasses.dataclass
class ComponentRun:
    node_id: str
    state: str
    seconds: float
    outputs: dict[str, list[metadata_store_pb2.Artifact]]


@dataclasses.dataclass
class BranchSummary:
    name: str
    metrics: dict[str, float]
    blessed: bool | None
    validation_failures: list[str]
    pushed: bool
    pushed_to: str | None
    pushed_version: str | None
    identical_to_version: str | None  # blessed, but already the newest version: not pushed
    anomalies: dict[str, list[str]]  # split -> anomaly descriptions
    model_uri: str | None


@dataclasses.dataclass
class RunSummary:
    run_id: str
    components: list[ComponentRun]
    branches: dict[str, BranchSummary]

    def component(self, node_id: str) -> ComponentRun | None:
        return next((c for c in self.components if c.node_id == node_id), None)


def open_store(pipeline_root: Path) -> metadata_store.MetadataStore:
    path = Path(pipeline_root) / config.METADATA_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no ML Metadata store (has the pipeline run here?)")
    return metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(str(path)))


def latest_run_id(store: metadata_store.MetadataStore) -> str | None:
    runs = store.get_contexts_by_type("pipeline_run")
    return max(runs, key=lambda c: (c.create_time_since_epoch, c.name)).name if runs else None


def _custom(artifact: metadata_store_pb2.Artifact, key: str):
    if key not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[key]
    return getattr(value, value.WhichOneof("value"))


def _component_runs(store, run_id: str) -> list[ComponentRun]:
    run_ctx = store.get_context_by_type_and_name("pipeline_run", run_id)
    if run_ctx is None:
        raise KeyError(f"no pipeline run {run_id!r} in ML Metadata")
    executions = store.get_executions_by_context(run_ctx.id)
    result = []
    for execution in sorted(executions, key=lambda e: e.create_time_since_epoch):
        node = next((c.name.split(".", 1)[-1] for c in store.get_contexts_by_execution(execution.id)
                     if store.get_context_types_by_id([c.type_id])[0].name == "node"), str(execution.id))
        outputs: dict[str, list] = {}
        events = [e for e in store.get_events_by_execution_ids([execution.id])
                  if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)]
        artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
        for event in events:
            key = event.path.steps[0].key if event.path.steps else "output"
            outputs.setdefault(key, []).append(artifacts[event.artifact_id])
        seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000.0
        result.append(ComponentRun(node, _STATES.get(execution.last_known_state, "unknown"), seconds, outputs))
    return result


def _anomalies(uri: str) -> dict[str, list[str]]:
    found = {}
    for split_dir in sorted(Path(uri).glob("Split-*")):
        path = split_dir / "SchemaDiff.pb"
        if not path.exists():
            continue
        anomalies = anomalies_pb2.Anomalies()
        anomalies.ParseFromString(path.read_bytes())
        found[split_dir.name[len("Split-"):]] = [
            f"{name}: {info.short_description or info.description}" for name, info in anomalies.anomaly_info.items()]
    return found


def _evaluation(uri: str) -> tuple[dict[str, float], list[str]]:
    import tensorflow_model_analysis as tfma  # heavy; only when there is an evaluation

    metrics: dict[str, float] = {}
    for slice_metrics in tfma.load_metrics(uri):
        if slice_metrics.slice_key.single_slice_keys:
            continue  # overall slice only here; reports show the rest
        for kv in slice_metrics.metric_keys_and_values:
            if kv.key.is_diff:
                metrics[f"{kv.key.name}_change"] = kv.value.double_value.value
            elif kv.value.HasField("double_value"):
                metrics[kv.key.name] = kv.value.double_value.value
    failures = []
    validation = tfma.load_validation_result(uri)
    for per_slice in validation.metric_validations_per_slice:
        where = ", ".join(f"{k.column}={k.int64_value if k.HasField('int64_value') else k.bytes_value.decode()}"
                          for k in per_slice.slice_key.single_slice_keys) or "overall"
        for f in per_slice.failures:
            value = f.metric_value.double_value.value if f.metric_value.HasField("double_value") else None
            detail = f.message or (f"value {value:.4g} outside {_bounds(f.metric_threshold)}" if value is not None else "")
            failures.append(f"{f.metric_key.name}{' (change)' if f.metric_key.is_diff else ''}: {detail} [{where}]")
    return metrics, failures


def _bounds(threshold) -> str:
    parts = []
    value = threshold.value_threshold
    if value.HasField("lower_bound"):
        parts.append(f">= {value.lower_bound.value:g}")
    if value.HasField("upper_bound"):
        parts.append(f"<= {value.upper_bound.value:g}")
    if threshold.change_threshold.HasField("absolute"):
        parts.append(f"change bound {threshold.change_threshold.absolute.value:g}")
    return " and ".join(parts) or "threshold"


def summarize(pipeline_root: Path, run_id: str | None = None) -> RunSummary:
    """Read one run (the latest by default) from the pipeline root's ML Metadata."""
    store = open_store(pipeline_root)
    run_id = run_id or latest_run_id(store)
    if run_id is None:
        raise KeyError(f"{pipeline_root}: no pipeline run recorded")
    components = _component_runs(store, run_id)
    summary = RunSummary(run_id, components, {})
    for branch in config.BRANCHES:
        cid = branch.component_id
        metrics, failures, blessed = {}, [], None
        evaluator = summary.component(cid("Evaluator"))
        if evaluator and evaluator.outputs.get("evaluation"):
            metrics, failures = _evaluation(evaluator.outputs["evaluation"][0].uri)
            blessing = evaluator.outputs.get("blessing")
            blessed = bool(_custom(blessing[0], "blessed")) if blessing else None
        pusher = summary.component(cid("Pusher"))
        pushed_model = pusher.outputs.get("pushed_model", [None])[0] if pusher else None
        validator = summary.component(cid("ExampleValidator"))
        anomalies = _anomalies(validator.outputs["anomalies"][0].uri) if validator and validator.outputs.get("anomalies") else {}
        trainer = summary.component(cid("Trainer"))
        model = trainer.outputs.get("model", [None])[0] if trainer else None
        summary.branches[branch.name] = BranchSummary(
            name=branch.name, metrics=metrics, blessed=blessed, validation_failures=failures,
            pushed=bool(pushed_model and _custom(pushed_model, "pushed")),
            pushed_to=_custom(pushed_model, "pushed_destination") if pushed_model else None,
            pushed_version=_custom(pushed_model, "pushed_version") if pushed_model else None,
            identical_to_version=_custom(pushed_model, "identical_to_version") if pushed_model else None,
            anomalies=anomalies,
            model_uri=os.path.join(model.uri, "Format-Serving") if model else None,
        )
    return summary
