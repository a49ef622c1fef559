"""MLflow tracking of pipeline runs: one parent run per pipeline run, one child run per model.

Run inside the DAG by the ``TrackRun`` component (``record_components``), from the run's
artifacts and its report. The store: the URI the pipeline was built with, else
``MLFLOW_TRACKING_URI``, else an embedded SQLite file under a local pipeline root; with none
of them (a pipeline root on an object store and no server named) the run is not tracked.
A tracking server keeps the artifacts in its own store. Blessed, newly pushed models are
logged with MLflow's model logging (a pyfunc around the pushed SavedModel, copied into the
run's artifacts) and registered from ``runs:/`` as ``emotion-ai-<model>``.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from tfx.dsl.io import fileio

from emotion_ai.components import credentials, repository_pusher
from emotion_ai.components.branches import BRANCHES
from emotion_ai.pipelines import config, run_summary


def tracking_uri(pipeline_root: str | Path, explicit: str | None = None) -> str | None:
    """The store a run is tracked in, or None when none is configured (see the module)."""
    chosen = explicit or os.environ.get("MLFLOW_TRACKING_URI")
    if chosen:
        return chosen
    if repository_pusher.is_local(str(pipeline_root)):
        return f"sqlite:///{Path(pipeline_root).resolve() / 'mlflow.db'}"
    return None


def registered_name(branch: str) -> str:
    return f"{config.PIPELINE_NAME}-{branch}"


def uri_is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def _experiment(mlflow, pipeline_root: str) -> str:
    experiment = mlflow.get_experiment_by_name(config.PIPELINE_NAME)
    if experiment is not None:
        return experiment.experiment_id
    if uri_is_server(mlflow.get_tracking_uri()):  # the server's artifact store (proxied or its own)
        return mlflow.create_experiment(config.PIPELINE_NAME)
    return mlflow.create_experiment(config.PIPELINE_NAME,
                                    artifact_location=(Path(pipeline_root).resolve() / "mlartifacts").as_uri())


def run_location(uri: str, experiment_id: str, run_id: str) -> str:
    """A link to the run for a tracking server; for a local store, how to look at it."""
    uri = credentials.redact(uri)
    if uri_is_server(uri):
        return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"mlflow ui --backend-store-uri {uri}"


def track(summary: run_summary.RunSummary, context, report_uri: str | None, uri: str) -> tuple[str, str]:
    """Log one pipeline run (``context``: the report's ``RunContext``; ``report_uri``: its
    artifact folder) into a new parent run in ``uri``; return ``(run id, location)``."""
    import mlflow

    with tracking_store(mlflow, uri):
        return _track(mlflow, summary, context, report_uri, uri)


@contextlib.contextmanager
def tracking_store(mlflow, uri: str):
    """``uri`` as MLflow's store while a run is logged, then what it was. MLflow's
    ``set_tracking_uri`` also exports ``MLFLOW_TRACKING_URI``, which the next run in this
    process (another pipeline root) would then take for the user's own setting."""
    before_env, before = os.environ.get("MLFLOW_TRACKING_URI"), mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)
        if before_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before_env


def _track(mlflow, summary: run_summary.RunSummary, context, report_uri: str | None, uri: str) -> tuple[str, str]:
    profile = config.PROFILES[context.profile]
    experiment_id = _experiment(mlflow, context.pipeline_root)
    with tempfile.TemporaryDirectory() as scratch, mlflow.start_run(
            experiment_id=experiment_id, run_name=summary.run_id,
            tags={"tfx_run_id": summary.run_id, "profile": profile.name}) as parent:
        report = None
        if report_uri:  # mlflow logs local files: the report may be on gs://
            report = os.path.join(scratch, "report.html")
            fileio.copy(f"{report_uri.rstrip('/')}/report.html", report)
        mlflow.log_params({"profile": profile.name, "pipeline_root": context.pipeline_root,
                           "code_version": context.code_version, "model_repo": context.model_repo})
        mlflow.set_tags({f"data.{kind}": d["source"] for kind, d in context.data.items()})
        mlflow.log_metrics({f"{kind}_rows_{what}": getattr(b, f"rows_{what}")
                            for kind, b in summary.branches.items() for what in ("read", "rejected")})
        if report:
            mlflow.log_artifact(report)
        for branch in BRANCHES:
            b = summary.branches[branch.name]
            with mlflow.start_run(experiment_id=experiment_id, run_name=branch.name, nested=True) as child:
                mlflow.log_params(profile.params_for(branch).flat())
                mlflow.log_metrics({f"examples_{split}": n for split, n in b.split_counts.items()})
                mlflow.set_tags({"blessed": str(b.blessed), "pushed": str(b.pushed and not b.identical_to_version),
                                 "pushed_version": b.pushed_version or b.identical_to_version or "",
                                 "validation_failures": "; ".join(b.validation_failures)[:4000]})
                e = b.evaluation
                if e is not None:
                    # The candidate's figures are tfma_*; the baseline's and the change have their own names.
                    mlflow.set_tags({"evaluation_split": e.split,
                                     "baseline_version": e.baseline_version or ("none" if not e.baseline else "")})
                    mlflow.log_metrics({f"tfma_{k}": v for k, v in e.candidate.items()})
                    mlflow.log_metrics({f"tfma_baseline_{k}": v for k, v in e.baseline.items()})
                    mlflow.log_metrics({f"tfma_change_{k}": v for k, v in e.change.items()})
                    for which, prefix in (("candidate", "tfma_"), ("baseline", "tfma_baseline_"),
                                          ("change", "tfma_change_")):  # TFMA's 95 % intervals
                        for k, (low, high) in e.intervals.get(which, {}).items():
                            mlflow.log_metrics({f"{prefix}{k}_ci_low": low, f"{prefix}{k}_ci_high": high})
                for name, values in run_summary.trainer_history(summary, branch).items():
                    for step, value in enumerate(values):
                        mlflow.log_metric(f"train_{name}", float(value), step=step)
                if report:
                    mlflow.log_artifact(report)
                if b.pushed and not b.identical_to_version and b.pushed_to:
                    log_and_register(branch.name, b.pushed_to, child.info.run_id,
                                     {"tf_serving_version": b.pushed_version, "tfx_run_id": summary.run_id})
        return parent.info.run_id, run_location(uri, experiment_id, parent.info.run_id)


def _pushed_saved_model():
    """The pushed TF Serving SavedModel as an MLflow pyfunc model: ``predict`` takes a frame
    with the branch's pixel-string column and returns its ``serving_pixels`` outputs."""
    import mlflow

    class PushedSavedModel(mlflow.pyfunc.PythonModel):
        def load_context(self, context):
            import tensorflow as tf

            self._model = tf.saved_model.load(context.artifacts["saved_model"])

        def predict(self, context, model_input, params=None):
            import tensorflow as tf

            column = model_input.columns[0]
            pixels = tf.constant([str(v) for v in model_input[column]])
            out = self._model.signatures["serving_pixels"](pixels=pixels)
            return {k: v.numpy() for k, v in out.items()}

    return PushedSavedModel()


def log_and_register(branch: str, saved_model: str, run_id: str, tags: dict[str, str]):
    """Log ``saved_model`` (a pushed version folder) as the model of the active run
    ``run_id``, with MLflow's own model logging (the SavedModel copied into the tracking
    store's artifacts: a registry entry never points at a version the Pusher later prunes),
    and register it from ``runs:/<run>/model``, which a tracking server accepts. Returns the
    model version."""
    import mlflow

    active = mlflow.active_run()
    if active is None or active.info.run_id != run_id:
        raise RuntimeError(f"log_and_register: run {run_id} is not the active MLflow run")
    with tempfile.TemporaryDirectory() as scratch:
        local = saved_model
        if not repository_pusher.is_local(saved_model):  # mlflow copies local folders: fetch it first
            local = os.path.join(scratch, "saved_model")
            repository_pusher.copy_tree(saved_model, local)
        mlflow.pyfunc.log_model(name="model", python_model=_pushed_saved_model(),
                                artifacts={"saved_model": local},
                                pip_requirements=[f"tensorflow=={_version('tensorflow')}"])
    return mlflow.register_model(f"runs:/{run_id}/model", registered_name(branch), tags=tags)


def _version(dist: str) -> str:
    from importlib import metadata

    return metadata.version(dist)
