"""MLflow tracking of pipeline runs: one parent run per pipeline run, one child run per model.

Default store: embedded SQLite under the pipeline root (no server); ``MLFLOW_TRACKING_URI``
points it elsewhere. Blessed, newly pushed models are registered in the MLflow model
registry as ``emotion-ai-<model>``, their source being the TF Serving version directory.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from emotion_ai.components.branches import BRANCHES
from emotion_ai.pipelines import config


def tracking_uri(pipeline_root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(pipeline_root).resolve() / 'mlflow.db'}"


def registered_name(branch: str) -> str:
    return f"{config.PIPELINE_NAME}-{branch}"


def _experiment(mlflow, pipeline_root: Path) -> str:
    experiment = mlflow.get_experiment_by_name(config.PIPELINE_NAME)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow.create_experiment(config.PIPELINE_NAME,
                                    artifact_location=(Path(pipeline_root).resolve() / "mlartifacts").as_uri())


def _history(summary, branch) -> dict[str, list[float]]:
    trainer = summary.component(branch.component_id("Trainer"))
    runs = trainer.outputs.get("model_run") if trainer else None
    path = Path(runs[0].uri) / "history.json" if runs else None
    return json.loads(path.read_text()) if path and path.exists() else {}


def run_location(uri: str, experiment_id: str, run_id: str) -> str:
    """A link to the run for a tracking server; for a local store, how to look at it."""
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"mlflow ui --backend-store-uri {uri}"


def open_run(tfx_run_id: str, profile: config.Profile, pipeline_root: Path) -> tuple[str, str]:
    """Create the parent MLflow run of one pipeline run; return ``(run id, location)``."""
    import mlflow

    uri = tracking_uri(pipeline_root)
    mlflow.set_tracking_uri(uri)
    experiment_id = _experiment(mlflow, pipeline_root)
    run = mlflow.MlflowClient().create_run(experiment_id, run_name=tfx_run_id,
                                           tags={"tfx_run_id": tfx_run_id, "profile": profile.name})
    return run.info.run_id, run_location(uri, experiment_id, run.info.run_id)


def track(result, profile: config.Profile, pipeline_root: Path) -> str:
    """Log one pipeline run into the parent run ``open_run`` made; return its id."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(tracking_uri(pipeline_root))
    client = MlflowClient()
    summary, context = result.summary, result.context
    with mlflow.start_run(run_id=context.mlflow_run_id) as parent:
        experiment_id = parent.info.experiment_id
        mlflow.log_params({"profile": profile.name, "pipeline_root": str(pipeline_root),
                           "code_version": context.code_version, "model_repo": context.model_repo})
        mlflow.set_tags({f"data.{kind}": d["source"] for kind, d in context.data.items()})
        mlflow.log_metrics({f"{kind}_rows_{what}": getattr(b, f"rows_{what}")
                            for kind, b in summary.branches.items() for what in ("read", "rejected")})
        mlflow.log_metric("wall_seconds", sum(c.seconds for c in summary.components))
        if result.report_path:
            mlflow.log_artifact(str(result.report_path))
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
                for name, values in _history(summary, branch).items():
                    for step, value in enumerate(values):
                        mlflow.log_metric(f"train_{name}", float(value), step=step)
                if result.report_path:
                    mlflow.log_artifact(str(result.report_path))
                if b.pushed and not b.identical_to_version and b.pushed_to:
                    name = registered_name(branch.name)
                    if not _exists(client, name):
                        client.create_registered_model(name, description=f"{branch.name} model pushed by the pipeline")
                    client.create_model_version(
                        name, source=Path(b.pushed_to).resolve().as_uri(), run_id=child.info.run_id,
                        tags={"tf_serving_version": b.pushed_version, "tfx_run_id": summary.run_id})
        return parent.info.run_id


def _exists(client, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
        return True
    except MlflowException:
        return False
