"""What one pipeline run did: per component its state (complete, cached, failed) and wall
time; per branch the rows read and rejected, the final metrics, the blessing, the push and
the data validation anomalies.

Read back from ML Metadata after a run (``summarize``: the end-of-run text, ``emotion-ai
report`` of any run), or, inside the DAG, from the artifacts a component was given
(``summarize_components``: the ``RunReport`` and ``TrackRun`` components). All file reads go
through ``fileio``, so artifacts on ``gs://`` (or ``ram://``) read alike.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from google.protobuf import json_format
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.dsl.io import fileio

from emotion_ai.components import data_gate, spec
from emotion_ai.components.branches import BRANCHES
from emotion_ai.pipelines import config

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
    evaluation: Evaluation | None  # None when the Evaluator did not run
    blessed: bool | None
    pushed: bool
    pushed_to: str | None
    pushed_version: str | None
    identical_to_version: str | None  # blessed, but already the newest version: not pushed
    anomalies: dict[str, list[str]]  # split -> anomaly descriptions
    model_uri: str | None
    split_counts: dict[str, int] = dataclasses.field(default_factory=dict)  # examples per split
    push_refused: str | None = None  # why a blessed model was not pushed (repository of another profile)
    # What the branch's ExampleGen read and rejected (``validating_example_gen``).
    rows_read: int = 0
    rows_rejected: int = 0
    rejected_rows: str | None = None  # the rejected-rows CSV of this run, when a row was rejected
    rejected_reasons: dict[str, int] = dataclasses.field(default_factory=dict)
    sources: list[str] = dataclasses.field(default_factory=list)  # the CSVs read
    not_trained: str | None = None  # why the Trainer trained no model (its data failed validation)
    # The spans read, oldest first (name, number, files, rows_read, rows_rejected), and the
    # older ones outside the window (``components/spans.py``).
    spans: list[dict] = dataclasses.field(default_factory=list)
    spans_left_out: list[str] = dataclasses.field(default_factory=list)
    # DataDrift (components/drift.py): per compared number, its measure, value, threshold and
    # whether it is over; which spans and how many served requests were compared; its folder.
    drift: dict[str, dict] = dataclasses.field(default_factory=dict)
    skew: dict[str, dict] = dataclasses.field(default_factory=dict)
    compared: dict = dataclasses.field(default_factory=dict)
    drift_uri: str | None = None
    # How the Trainer started (components/common/training.warm_start): {} when warm start was
    # not asked for; else warm (True/False), the served version it started from, epochs, why not.
    warm_start: dict = dataclasses.field(default_factory=dict)

    @property
    def drifted(self) -> list[str]:
        """``drift image_brightness`` ... for each number over its threshold."""
        return [f"{kind} {name}" for kind, found in (("drift", self.drift), ("skew", self.skew))
                for name, m in found.items() if m["flagged"]]

    @property
    def span_names(self) -> str:
        """``span-2, span-3`` (and what was left out), for one line of text."""
        named = ", ".join(s["name"] for s in self.spans) or "?"
        return named + (f" (older, left out: {', '.join(self.spans_left_out)})" if self.spans_left_out else "")

    @property
    def rows_staged(self) -> int:
        return self.rows_read - self.rows_rejected

    @property
    def metrics(self) -> dict[str, float]:
        """The candidate's metrics on the overall slice (never the baseline's)."""
        return self.evaluation.candidate if self.evaluation else {}

    @property
    def validation_failures(self) -> list[str]:
        return self.evaluation.failures if self.evaluation else []


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


def custom_property(artifact: metadata_store_pb2.Artifact, key: str):
    if key not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[key]
    kind = value.WhichOneof("value")
    if kind == "struct_value":  # a property that came through KFP's executor input: JSON, numbers as floats
        decoded = json_format.MessageToDict(value.struct_value)
        decoded = decoded.get("__value__", decoded)  # how TFX wraps a JSON value that is not an object
        return int(decoded) if isinstance(decoded, float) and decoded.is_integer() else decoded
    return getattr(value, kind)


def component_runs(store, run_id: str) -> list[ComponentRun]:
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


def _split_counts(statistics_uri: str) -> dict[str, int]:
    """Examples per split, from StatisticsGen's output."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    counts = {}
    for split, path in _split_files(statistics_uri, "FeatureStats.pb"):
        stats = statistics_pb2.DatasetFeatureStatisticsList()
        stats.ParseFromString(_read_bytes(path))
        counts[split] = int(stats.datasets[0].num_examples) if stats.datasets else 0
    order = (config.TRAIN_SPLIT, config.EVAL_SPLIT, config.TEST_SPLIT)
    return dict(sorted(counts.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0])))


def _split_files(uri: str, name: str) -> list[tuple[str, str]]:
    """``(split, path)`` of each ``<uri>/Split-<split>/<name>`` that exists."""
    found = []
    for path in sorted(fileio.glob(f"{uri.rstrip('/')}/Split-*/{name}")):
        split_dir = path[:-len(name)].rstrip("/").rsplit("/", 1)[-1]
        found.append((split_dir[len("Split-"):], path))
    return found


def _read_json(path: str) -> dict:
    if not fileio.exists(path):
        return {}
    with fileio.open(path, "r") as f:
        return json.loads(f.read())


def _read_bytes(path: str) -> bytes:
    with fileio.open(path, "rb") as f:
        return f.read()


@dataclasses.dataclass
class Gate:
    """One gated metric of one model: the candidate's value, the baseline's, the change and
    the rules TFMA applied (overall slice)."""

    metric: str
    candidate: float | None
    baseline: float | None  # None on a first run: no blessed model to compare with
    change: float | None  # candidate - baseline, as TFMA computes it
    bound: str  # the absolute rule, e.g. "<= 6"
    change_rule: str  # e.g. "change >= -0.005 (higher is better)"; "" when the metric has none
    passed: bool


@dataclasses.dataclass
class Evaluation:
    """What the Evaluator measured, per model: TFMA names the models ``candidate`` and
    ``baseline`` when there is a baseline, and leaves the name empty when there is none."""

    split: str  # the ExampleGen split the Evaluator scored
    candidate: dict[str, float]  # overall slice
    baseline: dict[str, float]  # overall slice; {} on a first run
    change: dict[str, float]  # candidate - baseline
    per_slice: dict[str, dict[str, float]]  # candidate, "column=value" -> metrics
    gates: list[Gate]
    failures: list[str]
    baseline_model_uri: str | None = None  # the repository version folder the baseline came from
    baseline_version: str | None = None  # that version: the one served when the run started
    # TFMA's 95 % confidence intervals, (lower, upper) per metric name, overall slice: the
    # candidate's, the baseline's and the change's (config.CONFIDENCE_INTERVAL_METHOD).
    intervals: dict[str, dict[str, tuple[float, float]]] = dataclasses.field(default_factory=dict)

    def interval(self, which: str, metric: str) -> tuple[float, float] | None:
        return self.intervals.get(which, {}).get(metric)


def _data(examples) -> dict:
    """Counts, reasons and files the validating ExampleGen recorded on its examples."""
    rejected = custom_property(examples, "rows_rejected") or 0
    return {"rows_read": int(custom_property(examples, "rows_read") or 0), "rows_rejected": int(rejected),
            "rejected_rows": f"{examples.uri}/{spec.REJECTED_ROWS_FILE}" if rejected else None,
            "rejected_reasons": json.loads(custom_property(examples, "rejected_reasons") or "{}"),
            "sources": json.loads(custom_property(examples, "sources") or "[]"),
            "spans": json.loads(custom_property(examples, "spans") or "[]"),
            "spans_left_out": json.loads(custom_property(examples, "spans_left_out") or "[]")}


def _value(kv) -> float | None:
    return kv.value.double_value.value if kv.value.HasField("double_value") else None


def _interval(kv) -> tuple[float, float] | None:
    """TFMA's confidence interval of a metric, when it computed one."""
    if not kv.HasField("confidence_interval"):
        return None
    ci = kv.confidence_interval
    if not (ci.lower_bound.HasField("double_value") and ci.upper_bound.HasField("double_value")):
        return None
    return ci.lower_bound.double_value.value, ci.upper_bound.double_value.value


def _slice_name(slice_key) -> str:
    return ", ".join(f"{k.column}={k.int64_value if k.HasField('int64_value') else k.bytes_value.decode()}"
                     for k in slice_key.single_slice_keys)


def read_evaluation(uri: str, split: str = config.TEST_SPLIT) -> Evaluation:
    """Candidate and baseline metrics, changes, per-slice metrics and gate outcomes of one
    Evaluator output, each read under its own TFMA model name."""
    import tensorflow_model_analysis as tfma  # heavy; only when there is an evaluation

    eval_config = tfma.load_eval_result(uri).config
    baseline_names = {model.name for model in eval_config.model_specs if model.is_baseline}
    candidate, baseline, change, per_slice, intervals = {}, {}, {}, {}, {}
    for slice_metrics in tfma.load_metrics(uri):
        where = _slice_name(slice_metrics.slice_key)
        for kv in slice_metrics.metric_keys_and_values:
            value = _value(kv)
            if value is None:
                continue
            is_baseline = kv.key.model_name in baseline_names
            if where:
                if not is_baseline and not kv.key.is_diff:
                    per_slice.setdefault(where, {})[kv.key.name] = value
            else:
                which = "change" if kv.key.is_diff else "baseline" if is_baseline else "candidate"
                {"change": change, "baseline": baseline, "candidate": candidate}[which][kv.key.name] = value
                if (bounds := _interval(kv)) is not None:
                    intervals.setdefault(which, {})[kv.key.name] = bounds
    failures, failed_metrics = [], set()
    validation = tfma.load_validation_result(uri)
    for per_slice_result in validation.metric_validations_per_slice:
        where = _slice_name(per_slice_result.slice_key) or "overall"
        for f in per_slice_result.failures:
            value = f.metric_value.double_value.value if f.metric_value.HasField("double_value") else None
            outside = f"value {value:.4g} outside {_bounds(f.metric_threshold)}" if value is not None else ""
            detail = f.message or outside
            failures.append(f"{f.metric_key.name}{' (change)' if f.metric_key.is_diff else ''}: {detail} [{where}]")
            failed_metrics.add(f.metric_key.name)
    gates = [Gate(name, candidate.get(name), baseline.get(name) if baseline else None,
                  change.get(name) if baseline else None, bound, rule, name not in failed_metrics)
             for name, bound, rule in _gated_metrics(eval_config)]
    return Evaluation(split, candidate, baseline, change, per_slice, gates, failures, intervals=intervals)


def _gated_metrics(eval_config) -> list[tuple[str, str, str]]:
    """``(metric name, absolute rule, change rule)`` of every metric with a threshold."""
    import json

    found = []
    for metrics_spec in eval_config.metrics_specs:
        for metric in metrics_spec.metrics:
            thresholds = ([metric.threshold] if metric.HasField("threshold") else []) + [
                t.threshold for t in metric.per_slice_thresholds]
            if not thresholds:
                continue
            name = json.loads("{" + metric.config + "}").get("name") if metric.config else None
            name = name or _DEFAULT_METRIC_NAMES.get(metric.class_name, metric.class_name)
            found.append((name, *_rules(thresholds[0])))
    return found


def _rules(threshold) -> tuple[str, str]:
    """A TFMA threshold as text: ``(absolute rule or "none", change rule or "")``."""
    import tensorflow_model_analysis as tfma

    value_t, change_t = threshold.value_threshold, threshold.change_threshold
    bounds = [f">= {value_t.lower_bound.value:g}"] if value_t.HasField("lower_bound") else []
    bounds += [f"<= {value_t.upper_bound.value:g}"] if value_t.HasField("upper_bound") else []
    rule = ""
    if change_t.HasField("absolute"):
        higher = change_t.direction == tfma.MetricDirection.HIGHER_IS_BETTER
        rule = (f"change {'>=' if higher else '<='} {change_t.absolute.value:g} "
                f"({'higher' if higher else 'lower'} is better)")
    return " and ".join(bounds) or "none", rule


def _bounds(threshold) -> str:
    return " and ".join(r for r in _rules(threshold) if r and r != "none") or "threshold"


_DEFAULT_METRIC_NAMES = {"MaskedPixelRMSE": "rmse_px", "MacroRecall": "macro_recall",
                         "SparseCategoricalAccuracy": "sparse_categorical_accuracy"}


def summarize(pipeline_root: Path, run_id: str | None = None) -> RunSummary:
    """Read one run (the latest by default) from the pipeline root's ML Metadata."""
    store = open_store(pipeline_root)
    run_id = run_id or latest_run_id(store)
    if run_id is None:
        raise KeyError(f"{pipeline_root}: no pipeline run recorded")
    return summarize_components(run_id, component_runs(store, run_id))


def summarize_components(run_id: str, components: list[ComponentRun]) -> RunSummary:
    """The run's summary from its components' output artifacts (ML Metadata protos)."""
    summary = RunSummary(run_id, components, {})
    for branch in BRANCHES:
        cid = branch.component_id
        evaluation, blessed = None, None
        evaluator = summary.component(cid("Evaluator"))
        trainer = summary.component(cid("Trainer"))
        model = trainer.outputs.get("model", [None])[0] if trainer else None
        not_trained = custom_property(model, data_gate.NOT_TRAINED) if model is not None else None
        if evaluator and evaluator.outputs.get("blessing") and not_trained:
            blessed = False  # nothing to evaluate: the Evaluator blessed nothing
        elif evaluator and evaluator.outputs.get("evaluation"):
            evaluation = read_evaluation(evaluator.outputs["evaluation"][0].uri)
            blessing = evaluator.outputs.get("blessing")
            blessed = bool(custom_property(blessing[0], "blessed")) if blessing else None
            served = summary.component(cid("ServedModel"))
            baseline = served.outputs.get("baseline", [None])[0] if served else None
            if baseline is not None and evaluation.baseline:
                evaluation.baseline_model_uri = custom_property(baseline, spec.SERVED_FROM)
                version = custom_property(baseline, spec.SERVED_VERSION)
                evaluation.baseline_version = str(version) if version else None
        pusher = summary.component(cid("Pusher"))
        pushed_model = pusher.outputs.get("pushed_model", [None])[0] if pusher else None
        # The gate's findings (ExampleValidator's and a class no training example has); the
        # validator's own when the gate did not run.
        gate_step = summary.component(cid("DataGate"))
        gated = gate_step.outputs.get("gated_schema", [None])[0] if gate_step else None
        verdict = custom_property(gated, data_gate.DATA_ANOMALIES) if gated is not None else None
        validator = summary.component(cid("ExampleValidator"))
        if verdict:
            anomalies = verdict if isinstance(verdict, dict) else json.loads(verdict)
        elif validator and validator.outputs.get("anomalies"):
            anomalies = data_gate.describe_anomalies(validator.outputs["anomalies"][0].uri)
        else:
            anomalies = {}
        drift_step = summary.component(cid("DataDrift"))
        drift_artifact = drift_step.outputs.get("drift", [None])[0] if drift_step else None
        drift_found = {key: json.loads(custom_property(drift_artifact, key) or "{}") if drift_artifact else {}
                       for key in ("drift", "skew", "compared")}
        stats = summary.component(cid("StatisticsGen"))
        counts = _split_counts(stats.outputs["statistics"][0].uri) if stats and stats.outputs.get("statistics") else {}
        model_run = trainer.outputs.get("model_run", [None])[0] if trainer else None
        warm_start = _read_json(f"{model_run.uri}/warm_start.json") if model_run is not None else {}
        if warm_start.get("warm"):
            served_step = summary.component(cid("ServedModel"))
            served_artifact = served_step.outputs.get("baseline", [None])[0] if served_step else None
            warm_start["from_version"] = custom_property(served_artifact, spec.SERVED_VERSION) if served_artifact \
                else None
        example_gen = summary.component(cid("CsvExampleGen"))
        examples = example_gen.outputs.get("examples", [None])[0] if example_gen else None
        data = _data(examples) if examples is not None else {}
        summary.branches[branch.name] = BranchSummary(
            name=branch.name, evaluation=evaluation, blessed=blessed,
            pushed=bool(pushed_model and custom_property(pushed_model, "pushed")),
            pushed_to=custom_property(pushed_model, "pushed_destination") if pushed_model else None,
            pushed_version=custom_property(pushed_model, "pushed_version") if pushed_model else None,
            identical_to_version=custom_property(pushed_model, "identical_to_version") if pushed_model else None,
            anomalies=anomalies,
            split_counts=counts,
            push_refused=custom_property(pushed_model, "push_refused") if pushed_model else None,
            model_uri=os.path.join(model.uri, "Format-Serving") if model and not not_trained else None,
            not_trained=not_trained,
            drift_uri=drift_artifact.uri if drift_artifact else None,
            warm_start=warm_start,
            **drift_found,
            **data,
        )
    return summary


def trainer_history(summary: RunSummary, branch) -> dict[str, list[float]]:
    """The Trainer's per-epoch history (``history.json`` in its ``model_run``)."""
    trainer = summary.component(branch.component_id("Trainer"))
    runs = trainer.outputs.get("model_run") if trainer else None
    path = f"{runs[0].uri.rstrip('/')}/history.json" if runs else None
    if not path or not fileio.exists(path):
        return {}
    with fileio.open(path, "r") as f:
        return json.loads(f.read())
