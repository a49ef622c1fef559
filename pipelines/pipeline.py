"""``create_pipeline``: the TFX DAG, wiring only.

Per model branch of the registry (``components/branches.py``: key points, expressions),
with unique component ids: CsvExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator
-> Transform -> Trainer -> Resolver (latest blessed model of this branch) -> Evaluator ->
Pusher.

All ML logic lives in the branches' module files under ``components/``; hyperparameters
and gate values per profile in ``pipelines.config``. Local runners and the Kubeflow runner
call this one function.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import config_pb2
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts

from emotion_ai.components import repository_pusher
from emotion_ai.components.branches import BRANCHES, Metric, ModelBranch
from emotion_ai.components.spec import Gate
from emotion_ai.pipelines import config


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
    )


def _branch(branch: ModelBranch, input_base: str, profile: config.Profile, model_repo: str,
            allow_other_profile: bool) -> list:
    """The nine components of one model branch."""
    code_version = config.code_fingerprint(branch.name)
    cid = branch.component_id
    params = profile.params_for(branch)
    example_gen = tfx.components.CsvExampleGen(
        input_base=input_base,
        output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
            tfx.proto.SplitConfig.Split(name=name, hash_buckets=buckets)
            for name, buckets in profile.split_buckets.items()])),
    ).with_id(cid("CsvExampleGen"))
    statistics_gen = tfx.components.StatisticsGen(
        examples=example_gen.outputs["examples"]).with_id(cid("StatisticsGen"))
    schema_gen = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True).with_id(cid("SchemaGen"))
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"]).with_id(cid("ExampleValidator"))
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=branch.preprocessing_fn,
        custom_config={"code_version": code_version},
        # The test split is not transformed: the Trainer cannot read what does not exist.
        splits_config=tfx.proto.SplitsConfig(analyze=[config.TRAIN_SPLIT],
                                             transform=[config.TRAIN_SPLIT, config.EVAL_SPLIT]),
        disable_statistics=True,
    ).with_id(cid("Transform"))
    trainer = tfx.components.Trainer(
        run_fn=branch.run_fn,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=[config.TRAIN_SPLIT]),
        eval_args=tfx.proto.EvalArgs(splits=[config.EVAL_SPLIT]),
        custom_config={"model": params.to_dict(), "code_version": code_version},
    ).with_id(cid("Trainer"))
    # Scoped to this branch's Trainer and Evaluator: unscoped, the strategy returns the
    # other branch's model as the baseline.
    model_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=standard_artifacts.Model, producer_component_id=trainer.id),
        model_blessing=tfx.dsl.Channel(type=standard_artifacts.ModelBlessing,
                                       producer_component_id=cid("Evaluator")),
    ).with_id(cid("LatestBlessedModelResolver"))
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        eval_config=eval_config(branch, profile.gates_for(branch)),
        example_splits=[config.TEST_SPLIT],  # held out: the Trainer chose its epoch on eval
    ).with_id(cid("Evaluator"))
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=f"{model_repo.rstrip('/')}/{branch.name}")),
        custom_config={"keep_versions": config.MODEL_REPO_KEEP_VERSIONS, "profile": profile.name,
                       "allow_other_profile": allow_other_profile},
        custom_executor_spec=executor_spec.ExecutorClassSpec(repository_pusher.Executor),
    ).with_id(cid("Pusher"))
    return [example_gen, statistics_gen, schema_gen, example_validator, transform, trainer,
            model_resolver, evaluator, pusher]


def create_pipeline(
    *,
    pipeline_root: str,
    inputs: Mapping[str, str],
    model_repo: str,
    profile: config.Profile,
    metadata_connection_config=None,
    beam_pipeline_args: Sequence[str] = config.BEAM_PIPELINE_ARGS,
    enable_cache: bool = True,
    pipeline_name: str = config.PIPELINE_NAME,
    allow_other_profile: bool = False,
) -> tfx.dsl.Pipeline:
    """Every branch of the registry in one pipeline. ``inputs``: per branch name, a folder of
    staged CSVs (or its URI). ``allow_other_profile`` lets the Pushers write into a repository
    another profile owns."""
    missing = [b.name for b in BRANCHES if b.name not in inputs]
    if missing:
        raise ValueError(f"no input for the {', '.join(missing)} branch(es)")
    components = [c for branch in BRANCHES
                  for c in _branch(branch, inputs[branch.name], profile, model_repo, allow_other_profile)]
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args),
    )
