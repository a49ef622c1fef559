"""Compile the same pipeline definition for Kubeflow Pipelines (TFX KubeflowV2DagRunner).

No second copy of the wiring: ``pipelines.pipeline.create_pipeline`` is compiled into a
bare KFP ``PipelineSpec`` (YAML, schema 2.1.0: what the open-source KFP API server and
``kfp``'s own loader accept; TFX's default is a Vertex ``PipelineJob`` wrapper, schema
2.0.0). The compilation fixes the container image, the pipeline root (as the spec's
``defaultPipelineRoot``), the input and model repository URIs, the Beam arguments and the
Trainer pods' resources.
"""
from __future__ import annotations

import dataclasses
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml
from google.protobuf import json_format
from kfp.compiler import compiler_utils
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as v2

from emotion_ai.components.branches import BRANCHES
from emotion_ai.pipelines import config, record_components
from emotion_ai.pipelines.pipeline import create_pipeline

IMAGE_REPOSITORY = "ghcr.io/emotion-ai/emotion-ai-pipeline"
# In a pod: Beam's FnApiRunner in the pod's own process, with an explicit worker count (the
# DirectRunner would first try to download the Prism runner; --direct_num_workers=0 takes
# every core of the node). Point these at Dataflow, Flink or Spark to scale out (README).
DEFAULT_BEAM_ARGS = ("--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2")
SCHEMA_VERSION = "2.1.0"
DATA_DIR = "data"  # under the pipeline root: the raw CSVs of both formats (each ExampleGen takes its own)
# Tasks whose answer depends on the world, not on their inputs: never taken from KFP's cache.
UNCACHED = ("ServedModel",)  # per branch
UNCACHED_RECORD = (record_components.REPORT_ID, record_components.TRACKING_ID)  # a report names its run


@dataclasses.dataclass(frozen=True)
class Resources:
    """A pod's CPU and memory (Kubernetes quantities, request = limit) and accelerators."""

    cpu: str | None = None  # e.g. "4" or "500m"
    memory: str | None = None  # e.g. "16G" or "12Gi"
    gpus: int = 0
    gpu_type: str = "nvidia.com/gpu"

    def __post_init__(self):
        if self.cpu and not re.fullmatch(r"\d+(\.\d+)?m?", self.cpu):
            raise ValueError(f"CPU {self.cpu!r} is not a Kubernetes quantity (e.g. 4, 1.5 or 500m)")
        if self.memory and not re.fullmatch(r"\d+(\.\d+)?([EPTGMK]i?)?", self.memory):
            raise ValueError(f"memory {self.memory!r} is not a Kubernetes quantity (e.g. 16G, 12Gi or 512Mi)")

    def to_spec(self) -> dict:
        """The container's ``resources`` as KFP's compiler writes them: the newer string
        fields and the numeric ones older KFP backends read."""
        out = {}
        if self.cpu:
            cpu = compiler_utils._cpu_to_float(self.cpu)  # kfp's own conversion of set_cpu_limit()
            out.update(cpuLimit=cpu, cpuRequest=cpu, resourceCpuLimit=self.cpu, resourceCpuRequest=self.cpu)
        if self.memory:
            memory = compiler_utils._memory_to_float(self.memory)
            out.update(memoryLimit=memory, memoryRequest=memory, resourceMemoryLimit=self.memory,
                       resourceMemoryRequest=self.memory)
        if self.gpus:
            out["accelerator"] = {"type": self.gpu_type, "count": str(self.gpus),
                                  "resourceType": self.gpu_type, "resourceCount": str(self.gpus)}
        return out


def project_version() -> str:
    """The image tag a compilation uses by default: the checkout's commit (the image is built
    from it), else the installed package's version. Never ``latest``: a stale image must not
    run under a fresh cache key."""
    try:
        commit = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "--short=10",
                                 "HEAD"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    if commit:
        return commit
    from importlib import metadata

    return metadata.version("emotion-ai-pipeline")


def default_image() -> str:
    return f"{IMAGE_REPOSITORY}:{project_version()}"


def _executor_of(pipeline_spec: dict, task_name: str) -> dict:
    component = pipeline_spec["root"]["dag"]["tasks"][task_name]["componentRef"]["name"]
    label = pipeline_spec["components"][component]["executorLabel"]
    return pipeline_spec["deploymentSpec"]["executors"][label]


def build_spec(*, image: str, pipeline_root: str, inputs: Mapping[str, str] | None = None,
               model_repo: str | None = None, profile: config.Profile | None = None,
               beam_args: Sequence[str] = DEFAULT_BEAM_ARGS, trainer: Resources = Resources(),
               tracking_uri: str = "", serving_log: str = "") -> dict:
    """The bare KFP PipelineSpec of every branch, as a dict. ``inputs``: per branch name, the
    folder of its raw CSVs (default ``<root>/data``, both formats side by side).
    ``serving_log``: where the server records requests, for skew (its task is then never
    taken from the cache: the log grows between runs)."""
    root = pipeline_root.rstrip("/")
    pipeline = create_pipeline(
        pipeline_root=root,
        inputs={b.name: (inputs or {}).get(b.name) or f"{root}/{DATA_DIR}" for b in BRANCHES},
        model_repo=model_repo or f"{root}/model_repository",
        profile=profile or config.PROFILES[config.DEFAULT_PROFILE],
        beam_pipeline_args=beam_args,
        baseline_keys=dict.fromkeys((b.name for b in BRANCHES), "never cached on Kubeflow"),  # see UNCACHED
        run_key="never cached on Kubeflow",
        tracking_uri=tracking_uri,
        serving_log=serving_log,
        serving_log_key="never cached on Kubeflow" if serving_log else "",
    )
    runner = v2.KubeflowV2DagRunner(config=v2.KubeflowV2DagRunnerConfig(default_image=image,
                                                                        use_pipeline_spec_2_1=True))
    pipeline_spec = runner.run(pipeline, write_out=False)["pipelineSpec"]
    pipeline_spec["schemaVersion"] = SCHEMA_VERSION
    pipeline_spec["defaultPipelineRoot"] = root
    tasks = pipeline_spec["root"]["dag"]["tasks"]
    for name in UNCACHED_RECORD:
        tasks[name]["cachingOptions"] = {"enableCache": False}
    for branch in BRANCHES:
        for kind in UNCACHED + (("DataDrift",) if serving_log else ()):
            tasks[branch.component_id(kind)]["cachingOptions"] = {"enableCache": False}
        resources = trainer.to_spec()
        if resources:
            _executor_of(pipeline_spec, branch.component_id("Trainer"))["container"]["resources"] = resources
    json_format.ParseDict(pipeline_spec, pipeline_spec_pb2.PipelineSpec())  # every field is KFP's
    return pipeline_spec


def compile_pipeline(out: Path, *, image: str | None = None, pipeline_root: str, **kwargs) -> Path:
    """Write the bare PipelineSpec YAML to ``out`` (see ``build_spec``); return its path."""
    pipeline_spec = build_spec(image=image or default_image(), pipeline_root=pipeline_root, **kwargs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# {config.PIPELINE_NAME}: KFP PipelineSpec {SCHEMA_VERSION}, compiled by "
                   "`emotion-ai compile-kubeflow`\n" + yaml.safe_dump(pipeline_spec, sort_keys=True))
    return out
