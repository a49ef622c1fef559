"""The DAG's last two steps, so that every orchestrator's run ends with the same record:

* ``RunReport``: the HTML evaluation report, its context and the run's figures
  (``summary.json``) as one artifact, built from the artifacts it is given (no ML Metadata
  query: a Kubeflow pod has no access to the pipeline's metadata store);
* ``TrackRun``: the run, its models and the report in MLflow. Tracking is an add-on to a run
  that has already pushed: with no store configured it logs one line and records why; an
  unreachable store is a warning, never a failed run.

Both take every branch's artifacts (``RECORDED``) and run after both Pushers. Neither may
come from a cache (a cached report would name an earlier run): the local runner gives them a
fresh ``run_key`` per build, the Kubeflow compilation turns caching off for their tasks.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.types.experimental import simple_artifacts

from emotion_ai.components import credentials
from emotion_ai.components.branches import BRANCHES
from emotion_ai.pipelines import report, run_summary, tracking

# TFX's generic ``File`` type for both outputs: the Kubeflow V2 compiler takes a custom type
# only when its name is a one-dot import path, and the container entry point imports it.
# The report: a folder with ``report.html``, ``context.json`` and ``summary.json``.
ReportArtifact = simple_artifacts.File
# Where a run was tracked: the custom properties ``tracked`` (1/0), ``mlflow_run_id``,
# ``location`` and, when it was not tracked, ``reason`` (no file: the run is in MLflow).
MlflowRunArtifact = simple_artifacts.File


# What each branch hands on to the record: (component kind, output key, artifact type).
RECORDED = (
    ("CsvExampleGen", "examples", standard_artifacts.Examples),
    ("StatisticsGen", "statistics", standard_artifacts.ExampleStatistics),
    ("ExampleValidator", "anomalies", standard_artifacts.ExampleAnomalies),
    ("DataDrift", "drift", standard_artifacts.ExampleAnomalies),
    ("Trainer", "model", standard_artifacts.Model),
    ("Trainer", "model_run", standard_artifacts.ModelRun),
    ("ServedModel", "baseline", standard_artifacts.Model),
    ("Evaluator", "evaluation", standard_artifacts.ModelEvaluation),
    ("Evaluator", "blessing", standard_artifacts.ModelBlessing),
    ("Pusher", "pushed_model", standard_artifacts.PushedModel),
)
REPORT_ID, TRACKING_ID = report.REPORT_COMPONENT, "TrackRun"


def input_key(branch: str, key: str) -> str:
    return f"{branch}_{key}"


def _recorded_inputs() -> dict[str, ChannelParameter]:
    return {input_key(b.name, key): ChannelParameter(type=kind) for b in BRANCHES for _, key, kind in RECORDED}


def _summary(run_id: str, input_dict: Mapping[str, list]) -> run_summary.RunSummary:
    """The run's summary from the artifacts handed in, as if read from ML Metadata."""
    components = []
    for branch in BRANCHES:
        outputs_of: dict[str, dict[str, list]] = {}
        for kind, key, _ in RECORDED:
            found = input_dict.get(input_key(branch.name, key), [])
            outputs_of.setdefault(kind, {})[key] = [a.mlmd_artifact for a in found]
        components += [run_summary.ComponentRun(branch.component_id(kind), "input", 0.0, outputs)
                       for kind, outputs in outputs_of.items()]
    return run_summary.summarize_components(run_id, components)


def _run_id(context) -> str:
    """The orchestrator's run id (the local runner's); KFP gives none to a task: then the
    time the record was made, in the same format."""
    given = getattr(context, "pipeline_run_id", None) if context else None
    return given or dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S.%f")


class ReportExecutor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        summary = _summary(_run_id(self._context), input_dict)
        context = report.RunContext(run_id=summary.run_id, profile=exec_properties["profile"],
                                    data=report.describe_data(summary),
                                    code_version=exec_properties["code_version"],
                                    model_repo=exec_properties["model_repo"],
                                    pipeline_root=exec_properties["pipeline_root"])
        (out,) = output_dict["report"]
        path = report.write_artifact(summary, context, out.uri)
        logging.info("evaluation report: %s", path)


class TrackingExecutor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        (out,) = output_dict["mlflow_run"]
        (report_artifact,) = input_dict["report"]
        context = report.RunContext.load(report_artifact.uri)
        uri = tracking.tracking_uri(context.pipeline_root, exec_properties.get("tracking_uri") or None)
        if uri is None:
            reason = ("no tracking store configured: the pipeline root is not local and neither --tracking-uri "
                      "nor MLFLOW_TRACKING_URI is set")
            logging.warning("MLflow: this run is not tracked (%s)", reason)
            return _untracked(out, reason)
        try:
            summary = _summary(context.run_id, input_dict)
            run_id, location = tracking.track(summary, context, report_artifact.uri, uri)
        except Exception as error:  # noqa: BLE001 - the models are pushed; tracking must not fail the run
            reason = f"tracking failed: {type(error).__name__}: {credentials.redact(str(error))[:500]}"
            logging.warning("MLflow: this run is not tracked (%s)", reason)
            return _untracked(out, reason)
        out.set_int_custom_property("tracked", 1)
        out.set_string_custom_property("mlflow_run_id", run_id)
        out.set_string_custom_property("location", location)
        logging.info("MLflow run %s (%s)", run_id, location)


def _untracked(out, reason: str) -> None:
    out.set_int_custom_property("tracked", 0)
    out.set_string_custom_property("reason", reason)



def _component(name: str, executor, parameters: dict, inputs: dict, outputs: dict, doc: str):
    """A component class whose inputs are every branch registered now (``branches.register``
    can add one after this module is imported)."""
    spec = type(f"{name}Spec", (ComponentSpec,), {"PARAMETERS": parameters, "INPUTS": inputs, "OUTPUTS": outputs,
                                                 "__module__": __name__})
    return type(name, (base_component.BaseComponent,), {
        "SPEC_CLASS": spec, "EXECUTOR_SPEC": executor_spec.ExecutorClassSpec(executor), "__module__": __name__,
        "__doc__": doc})


def _channels(branch_outputs: Mapping[str, Mapping[str, types.BaseChannel]]) -> dict[str, types.BaseChannel]:
    """``branch_outputs``: per branch name, per output key of ``RECORDED``, its channel."""
    return {input_key(b.name, key): branch_outputs[b.name][key] for b in BRANCHES for _, key, _ in RECORDED}


def RunReport(branch_outputs, *, profile: str, model_repo: str, pipeline_root: str, code_version: str,  # noqa: N802
              run_key: str) -> base_component.BaseComponent:
    """The run's HTML evaluation report, context and figures, as an artifact (``report``)."""
    cls = _component("RunReport", ReportExecutor,
                     {name: ExecutionParameter(type=str)
                      for name in ("profile", "model_repo", "pipeline_root", "code_version", "run_key")},
                     _recorded_inputs(), {"report": ChannelParameter(type=ReportArtifact)}, RunReport.__doc__)
    return cls(spec=cls.SPEC_CLASS(**_channels(branch_outputs), profile=profile, model_repo=model_repo,
                                   pipeline_root=pipeline_root, code_version=code_version, run_key=run_key,
                                   report=types.Channel(type=ReportArtifact)))


def TrackRun(branch_outputs, report_channel, *, tracking_uri: str = "",  # noqa: N802
             run_key: str) -> base_component.BaseComponent:
    """The run, its pushed models and its report in MLflow (``tracking``); output ``mlflow_run``."""
    cls = _component("TrackRun", TrackingExecutor,
                     {"tracking_uri": ExecutionParameter(type=str, optional=True),
                      "run_key": ExecutionParameter(type=str)},
                     {**_recorded_inputs(), "report": ChannelParameter(type=ReportArtifact)},
                     {"mlflow_run": ChannelParameter(type=MlflowRunArtifact)}, TrackRun.__doc__)
    return cls(spec=cls.SPEC_CLASS(**_channels(branch_outputs), report=report_channel, tracking_uri=tracking_uri,
                                   run_key=run_key, mlflow_run=types.Channel(type=MlflowRunArtifact)))
