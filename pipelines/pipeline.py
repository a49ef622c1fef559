"""``create_pipeline``: the two-branch TFX DAG, wiring only.

Per branch (key points, expressions), with unique component ids:
CsvExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator -> Transform -> Trainer
-> Resolver (latest blessed model of this branch) -> Evaluator -> Pusher.

All ML logic lives in the module files under ``components/``; all names, sizes and
thresholds in ``pipelines.config``. Local runners and the Kubeflow runner call this one
function.
"""
from __future__ import annotations

from collections.abc import Sequence

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import config_pb2
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts

from emotion_ai.components import repository_pusher, spec
from emotion_ai.pipelines import config

_MODULES = {
    name: (f"emotion_ai.components.{name}.transform.preprocessing_fn", f"emotion_ai.components.{name}.trainer.run_fn")
    for name in ("keypoints", "emotion")
}


def _model_spec(label_key: str, prediction_key: str) -> tfma.ModelSpec:
    """Raw tf.Examples through ``serving_examples``; labels from the Transform graph."""
    return tfma.ModelSpec(signature_name="serving_examples", preprocessing_function_names=["transform_features"],
                          label_key=label_key, prediction_key=prediction_key)


def keypoints_eval_config(thresholds: config.Thresholds) -> tfma.EvalConfig:
    """Gate: RMSE in pixels over known key points, absolute bound and no regression."""
    return tfma.EvalConfig(
        model_specs=[_model_spec(spec.KEYPOINTS_PIXELS, spec.KEYPOINTS_OUTPUT)],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(
                class_name="MaskedPixelRMSE", module="emotion_ai.components.keypoints.metrics",
                config='"name": "rmse_px"',
                per_slice_thresholds=overall_only(tfma.MetricThreshold(
                    value_threshold=tfma.GenericValueThreshold(
                        upper_bound={"value": thresholds.keypoints_max_rmse_px}),
                    change_threshold=tfma.GenericChangeThreshold(
                        direction=tfma.MetricDirection.LOWER_IS_BETTER,
                        absolute={"value": thresholds.keypoints_rmse_change_px})))),
            tfma.MetricConfig(class_name="ExampleCount"),
        ])],
    )


def overall_only(threshold: tfma.MetricThreshold) -> list[config_pb2.PerSliceMetricThreshold]:
    """Gate on the overall slice only: a plain ``threshold`` would also apply to every
    per-class slice, failing the model whenever one class's recall is under the floor."""
    return [config_pb2.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)]


def _floor_and_no_regression(floor: float, allowed_drop: float) -> list[config_pb2.PerSliceMetricThreshold]:
    return overall_only(tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": floor}),
        change_threshold=tfma.GenericChangeThreshold(direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                                                     absolute={"value": -allowed_drop})))


def emotion_eval_config(thresholds: config.Thresholds) -> tfma.EvalConfig:
    """Gates: accuracy and macro-averaged recall, each with an absolute floor and no
    regression against the baseline. Slicing by the true class reports per-class recall
    (accuracy within a true-class slice is that class's recall)."""
    return tfma.EvalConfig(
        model_specs=[_model_spec(spec.EMOTION_LABEL, spec.EMOTION_OUTPUT)],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[spec.EMOTION_LABEL_COLUMN])],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(
                class_name="SparseCategoricalAccuracy", config='"name": "accuracy"',
                per_slice_thresholds=_floor_and_no_regression(thresholds.emotion_min_accuracy,
                                                   thresholds.emotion_accuracy_change)),
            tfma.MetricConfig(
                class_name="MacroRecall", module="emotion_ai.components.emotion.metrics",
                per_slice_thresholds=_floor_and_no_regression(thresholds.emotion_min_macro_recall,
                                                   thresholds.emotion_macro_recall_change)),
            tfma.MetricConfig(class_name="ExampleCount"),
        ])],
    )


_EVAL_CONFIGS = {"keypoints": keypoints_eval_config, "emotion": emotion_eval_config}


def _branch(branch: spec.Branch, input_base: str, profile: config.Profile, model_repo: str,
            allow_other_profile: bool) -> list:
    """The nine components of one model branch."""
    code_version = config.code_fingerprint(branch.name)
    cid = branch.component_id
    params = getattr(profile, branch.name)
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
    preprocessing_fn, run_fn = _MODULES[branch.name]
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=preprocessing_fn,
        custom_config={"code_version": code_version},
        # The test split is not transformed: the Trainer cannot read what does not exist.
        splits_config=tfx.proto.SplitsConfig(analyze=[config.TRAIN_SPLIT],
                                             transform=[config.TRAIN_SPLIT, config.EVAL_SPLIT]),
        disable_statistics=True,
    ).with_id(cid("Transform"))
    trainer = tfx.components.Trainer(
        run_fn=run_fn,
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
        eval_config=_EVAL_CONFIGS[branch.name](profile.thresholds),
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
    keypoints_input: str,
    emotion_input: str,
    model_repo: str,
    profile: config.Profile,
    metadata_connection_config=None,
    beam_pipeline_args: Sequence[str] = config.BEAM_PIPELINE_ARGS,
    enable_cache: bool = True,
    pipeline_name: str = config.PIPELINE_NAME,
    allow_other_profile: bool = False,
) -> tfx.dsl.Pipeline:
    """Both branches in one pipeline. Inputs are folders of staged CSVs (or URIs).
    ``allow_other_profile`` lets the Pushers write into a repository another profile owns."""
    components = [c for branch, input_base in ((spec.KEYPOINTS, keypoints_input), (spec.EMOTION, emotion_input))
                  for c in _branch(branch, input_base, profile, model_repo, allow_other_profile)]
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args),
    )
