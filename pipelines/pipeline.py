"""``create_pipeline``: the TFX DAG, wiring only.

Per model branch of the registry (``components/branches.py``: key points, expressions),
with unique component ids: CsvExampleGen (checks every row first:
``validating_example_gen``) -> StatisticsGen -> ExampleValidator (against the branch's
curated schema, imported by ImportSchemaGen: ``curated_schema``) -> DataGate -> Transform
-> Trainer (trains only on data that passed: ``data_gate``) -> ServedModel (the version this
branch's repository serves now, the baseline) -> Evaluator -> Pusher; then, over both
branches, RunReport (the HTML report as an artifact) -> TrackRun (MLflow):
``record_components``.

All ML logic lives in the branches' module files under ``components/``; hyperparameters
and gate values per profile in ``pipelines.config``. Local runners and the Kubeflow runner
call this one function.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import tensorflow_model_analysis as tfma
from google.protobuf import wrappers_pb2
from tensorflow_model_analysis.proto import config_pb2
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from emotion_ai.components import (
    curated_schema,
    data_gate,
    drift,
    model_repository,
    repository_pusher,
    served_baseline,
    validating_example_gen,
)
from emotion_ai.components.branches import BRANCHES, Metric, ModelBranch
from emotion_ai.components.spec import Gate
from emotion_ai.components.validating_example_gen import BranchInput
from emotion_ai.pipelines import config, record_components


def _model_spec(branch: ModelBranch) -> tfma.ModelSpec:
    """Raw tf.Examples through ``serving_examples``; labels from the Transform graph."""
    return tfma.ModelSpec(signature_name="serving_examples", preprocessing_function_names=["transform_features"],
                          label_key=branch.label, prediction_key=branch.output)


def overall_only(threshold: tfma.MetricThreshold) -> list[config_pb2.PerSliceMetricThreshold]:
    """Gate on the overall slice only: a plain ``threshold`` would also apply to every
    per-class slice, failing the model whenever one class's recall is under the floor."""
    return [config_pb2.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)]


def _threshold(metric: Metric, gate: Gate) -> tfma.MetricThreshold:
    """The absolute bound and the allowed change against the baseline, in TFMA's terms."""
    if metric.higher_is_better:
        return tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(lower_bound={"value": gate.bound}),
            change_threshold=tfma.GenericChangeThreshold(direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                                                         absolute={"value": -gate.max_worse}))
    return tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(upper_bound={"value": gate.bound}),
        change_threshold=tfma.GenericChangeThreshold(direction=tfma.MetricDirection.LOWER_IS_BETTER,
                                                     absolute={"value": gate.max_worse}))


def eval_config(branch: ModelBranch, gates: Mapping[str, Gate]) -> tfma.EvalConfig:
    """The branch's metrics, each gated (on the overall slice) when ``gates`` names it, plus
    the example count; sliced overall and by the branch's slice columns."""
    unknown = set(gates) - {m.name for m in branch.metrics}
    if unknown:
        raise ValueError(f"{branch.name}: gates on unknown metric(s) {sorted(unknown)}; "
                         f"it computes {[m.name for m in branch.metrics]}")
    metrics = []
    for metric in branch.metrics:
        config_json = f'"name": "{metric.name}"'
        thresholds = overall_only(_threshold(metric, gates[metric.name])) if metric.name in gates else []
        metrics.append(tfma.MetricConfig(class_name=metric.class_name, module=metric.module or "",
                                         config=config_json, per_slice_thresholds=thresholds))
    metrics.append(tfma.MetricConfig(class_name="ExampleCount"))
    return tfma.EvalConfig(
        model_specs=[_model_spec(branch)],
        slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[c]) for c in branch.slice_columns],
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)],
        # 95 % intervals for every metric, candidate, baseline and change: a gate on a small
        # test split (a rare class's recall) is a noisy point estimate, and the report says how
        # noisy. The gates themselves compare TFMA's point estimates.
        options=config_pb2.Options(compute_confidence_intervals=wrappers_pb2.BoolValue(value=True),
                             confidence_intervals=config_pb2.ConfidenceIntervalOptions(
                                 method=config_pb2.ConfidenceIntervalOptions.ConfidenceIntervalMethod.Value(
                                     config.CONFIDENCE_INTERVAL_METHOD))),
    )


def _branch(branch: ModelBranch, source: BranchInput | str, profile: config.Profile, model_repo: str,
            allow_other_profile: bool, baseline_key: str, serving_log: str, serving_log_key: str) -> list:
    """The eleven components of one model branch."""
    code_version = config.code_fingerprint(branch.name)
    cid = branch.component_id
    params = profile.params_for(branch)
    # Every row is checked inside the DAG; rejected rows and counts travel with the examples.
    example_gen = validating_example_gen.ValidatingCsvExampleGen(
        branch.name, source, span_window=profile.span_window,
        output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
            tfx.proto.SplitConfig.Split(name=name, hash_buckets=buckets)
            for name, buckets in profile.split_buckets.items()])),
    ).with_id(cid("CsvExampleGen"))
    # The schema kept in the repository, not one inferred from the data it is to check.
    schema_gen = curated_schema.ImportCuratedSchema(branch).with_id(cid("ImportSchemaGen"))
    # Given the schema, TFDV counts a categorical label's values (class mix), not only its mean.
    statistics_gen = tfx.components.StatisticsGen(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"]).with_id(cid("StatisticsGen"))
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"]).with_id(cid("ExampleValidator"))
    # The newest span against the previous one, and the data against serving traffic: findings
    # for the report, not a gate (a new kind of photo is often the reason to retrain).
    data_drift = drift.DataDrift(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"], branch=branch.name,
        drift_threshold=config.DRIFT_JS_THRESHOLD, class_mix_threshold=config.CLASS_MIX_LINF_THRESHOLD,
        skew_threshold=config.SKEW_JS_THRESHOLD, serving_log=serving_log, serving_log_key=serving_log_key,
    ).with_id(cid("DataDrift"))
    # Transform and the Trainer get the schema with the validator's verdict: the Trainer trains
    # only on data that passed (data_gate), the run goes on to its report either way.
    gate = data_gate.DataGate(schema=schema_gen.outputs["schema"], anomalies=example_validator.outputs["anomalies"],
                              statistics=statistics_gen.outputs["statistics"],
                              trained_split=config.TRAIN_SPLIT).with_id(cid("DataGate"))
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=gate.outputs["gated_schema"],
        preprocessing_fn=branch.preprocessing_fn,
        custom_config={"code_version": code_version},
        # The test split is not transformed: the Trainer cannot read what does not exist.
        splits_config=tfx.proto.SplitsConfig(analyze=[config.TRAIN_SPLIT],
                                             transform=[config.TRAIN_SPLIT, config.EVAL_SPLIT]),
        disable_statistics=True,
    ).with_id(cid("Transform"))
    # The baseline is what this branch's repository serves now, not the last blessed model
    # in this pipeline root's metadata: the same answer on every orchestrator.
    served = served_baseline.ServedModel(model_repo=model_repo, model=branch.name,
                                         cache_key=baseline_key).with_id(cid("ServedModel"))
    warm = ({"warm_start": {"epochs": profile.warm_start_epochs,
                            "learning_rate_scale": profile.warm_start_learning_rate_scale}}
            if profile.warm_start_epochs else {})
    trainer = tfx.components.Trainer(
        run_fn=branch.run_fn,
        # Warm start: from the served model (nothing served: from scratch, the full schedule).
        base_model=served.outputs["baseline"] if warm else None,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=gate.outputs["gated_schema"],
        train_args=tfx.proto.TrainArgs(splits=[config.TRAIN_SPLIT]),
        eval_args=tfx.proto.EvalArgs(splits=[config.EVAL_SPLIT]),
        custom_config={"model": params.to_dict(), "code_version": code_version, **warm},
        custom_executor_spec=executor_spec.ExecutorClassSpec(data_gate.GatedTrainerExecutor),
    ).with_id(cid("Trainer"))
    evaluator = served_baseline.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=served.outputs["baseline"],
        eval_config=eval_config(branch, profile.gates_for(branch)),
        example_splits=[config.TEST_SPLIT],  # held out: the Trainer chose its epoch on eval
    ).with_id(cid("Evaluator"))
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=model_repository.join(model_repo, branch.name))),
        custom_config={"keep_versions": config.MODEL_REPO_KEEP_VERSIONS, "profile": profile.name,
                       "allow_other_profile": allow_other_profile},
        custom_executor_spec=executor_spec.ExecutorClassSpec(repository_pusher.Executor),
    ).with_id(cid("Pusher"))
    return [example_gen, statistics_gen, schema_gen, example_validator, data_drift, gate, transform, trainer,
            served, evaluator, pusher]


def create_pipeline(
    *,
    pipeline_root: str,
    inputs: Mapping[str, BranchInput | str],
    model_repo: str,
    profile: config.Profile,
    metadata_connection_config=None,
    beam_pipeline_args: Sequence[str] = config.BEAM_PIPELINE_ARGS,
    enable_cache: bool = True,
    pipeline_name: str = config.PIPELINE_NAME,
    allow_other_profile: bool = False,
    baseline_keys: Mapping[str, str] | None = None,
    run_key: str | None = None,
    tracking_uri: str = "",
    code_version: str | None = None,
    serving_log: str = "",
    serving_log_key: str = "",
) -> tfx.dsl.Pipeline:
    """Every branch of the registry in one pipeline. ``inputs``: per branch name, the folder
    (or URI) of its raw CSVs, or a ``BranchInput``. ``allow_other_profile`` lets the Pushers write into a repository
    another profile owns. ``baseline_keys``: per branch name, the version served when the
    pipeline is built (``served_now``), the cache key of its ``ServedModel``; without it a
    fresh key each build (the Kubeflow compilation passes a fixed one and turns caching off
    for that task instead). ``run_key``: the cache key of the report and tracking steps,
    which must never come from a cache (default: the build time). ``tracking_uri``: the
    MLflow store (default: ``MLFLOW_TRACKING_URI`` where the step runs, else SQLite under a
    local pipeline root, else not tracked). ``code_version``: default the checkout's.
    ``serving_log``: the folder (or URI) ``emotion-ai serve --log-requests`` records requests
    in, for skew (none: no skew measured); ``serving_log_key``: its state, the cache key."""
    missing = [b.name for b in BRANCHES if b.name not in inputs]
    if missing:
        raise ValueError(f"no input for the {', '.join(missing)} branch(es)")
    built = f"built at {dt.datetime.now(dt.UTC).isoformat()}"
    if baseline_keys is None:  # a fresh key: no runner may answer "what is served" from its cache
        baseline_keys = dict.fromkeys((b.name for b in BRANCHES), built)
    components, outputs = [], {}
    for branch in BRANCHES:
        parts = _branch(branch, inputs[branch.name], profile, model_repo, allow_other_profile,
                        baseline_keys[branch.name], serving_log, serving_log_key)
        components += parts
        by_id = {c.id: c for c in parts}
        outputs[branch.name] = {key: by_id[branch.component_id(kind)].outputs[key]
                                for kind, key, _ in record_components.RECORDED}
    run_report = record_components.RunReport(
        outputs, profile=profile.name, model_repo=model_repo, pipeline_root=pipeline_root,
        code_version=code_version if code_version is not None else config.code_version(),
        run_key=run_key or built).with_id(record_components.REPORT_ID)
    track_run = record_components.TrackRun(outputs, run_report.outputs["report"], tracking_uri=tracking_uri,
                                           run_key=run_key or built).with_id(record_components.TRACKING_ID)
    components += [run_report, track_run]
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args),
    )


def served_now(model_repo: str) -> dict[str, str]:
    """Per branch, the version its repository serves now (``baseline_keys`` for a local run)."""
    found = {}
    for branch in BRANCHES:
        try:
            found[branch.name] = f"version {model_repository.served_version(model_repo, branch.name)[0]}"
        except FileNotFoundError:
            found[branch.name] = "nothing served"
    return found
