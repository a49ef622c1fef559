"""Compile the same pipeline definition for Kubeflow Pipelines (TFX KubeflowV2DagRunner).

No second copy of the wiring: ``pipelines.pipeline.create_pipeline`` is compiled into a
KFP v2 pipeline spec (JSON) with the container image, pipeline root, input and model
repository URIs and Beam arguments as parameters of the compilation.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as v2

from emotion_ai.components import spec
from emotion_ai.components.branches import BRANCHES
from emotion_ai.pipelines import config
from emotion_ai.pipelines.pipeline import create_pipeline

DEFAULT_IMAGE = "ghcr.io/emotion-ai/emotion-ai-pipeline:latest"
# In a pod, the DirectRunner uses the pod's cores; point these at Dataflow, Flink or Spark
# (e.g. --runner=DataflowRunner --project=... --region=... --temp_location=gs://...) to scale out.
DEFAULT_BEAM_ARGS = ("--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=0")


def compile_pipeline(out: Path, *, image: str = DEFAULT_IMAGE, pipeline_root: str,
                     inputs: Mapping[str, str] | None = None,
                     model_repo: str | None = None, profile: config.Profile | None = None,
                     beam_args: Sequence[str] = DEFAULT_BEAM_ARGS) -> Path:
    """Write the KFP v2 pipeline spec of every branch to ``out``; return its path. ``inputs``:
    per branch name, its staged CSVs' folder (default ``<root>/staged/<branch>``)."""
    root = pipeline_root.rstrip("/")
    pipeline = create_pipeline(
        pipeline_root=root,
        inputs={b.name: (inputs or {}).get(b.name) or f"{root}/{spec.STAGING_DIR}/{b.name}" for b in BRANCHES},
        model_repo=model_repo or f"{root}/model_repository",
        profile=profile or config.PROFILES[config.DEFAULT_PROFILE],
        beam_pipeline_args=beam_args,
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runner = v2.KubeflowV2DagRunner(config=v2.KubeflowV2DagRunnerConfig(default_image=image),
                                    output_dir=str(out.parent), output_filename=out.name)
    runner.run(pipeline, write_out=True)
    return out
