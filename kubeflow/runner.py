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
import json
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml
from google.protobuf import json_format
from kfp.compiler import compiler_utils
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as v2

from emotion_ai.components import credentials
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


def merge_beam_args(defaults: Sequence[str], extra: Sequence[str]) -> tuple[str, ...]:
    """``defaults`` then ``extra``, where a flag given again (``--flag=value``, or ``--flag``
    followed by its value) replaces the earlier one: a later value of the same flag wins, and
    one extra flag never drops the runner."""
    def options(args: Sequence[str]) -> list[tuple[str, list[str]]]:
        out: list[tuple[str, list[str]]] = []
        for arg in args:
            if arg.startswith("--"):
                out.append((arg[2:].split("=", 1)[0], [arg]))
            elif out:
                out[-1][1].append(arg)  # the value of the flag before it
            else:
                raise ValueError(f"Beam argument {arg!r} is not a --flag or a flag's value")
        return out

    merged: dict[str, list[str]] = {}
    for name, tokens in options(defaults) + options(extra):
        merged.pop(name, None)  # re-inserted last: the later value wins
        merged[name] = tokens
    return tuple(token for tokens in merged.values() for token in tokens)


def task_name(component_id: str) -> str:
    """A component's task name in the spec, as KFP's SDK names tasks (``CsvExampleGen_emotion``
    -> ``csvexamplegen-emotion``): Argo takes only ``[a-zA-Z0-9][-a-zA-Z0-9]*`` for task and
    template names, and KFP's backend passes spec names to Argo unchanged."""
    from kfp.dsl import utils

    return utils.maybe_rename_for_k8s(component_id)


ARGO_NAME = re.compile(r"[a-zA-Z][-a-zA-Z0-9]*")  # Argo's rule; no leading digit with `depends`
ARGO_NAME_MAX = 128 - len("-driver")  # KFP adds a `<task>-driver` task beside each task


def argo_name_errors(pipeline_spec: dict) -> list[str]:
    """Every task, component and executor name of the spec that Argo would refuse."""
    names = [*pipeline_spec["root"]["dag"]["tasks"], *pipeline_spec["components"],
             *pipeline_spec["deploymentSpec"]["executors"]]
    return [name for name in names if not ARGO_NAME.fullmatch(name) or len(name) > ARGO_NAME_MAX]


def _rename_for_kfp(pipeline_spec: dict) -> None:
    """TFX names tasks, components and executors after component ids (``Trainer_emotion``,
    ``Trainer_emotion_executor``); rename them the way KFP's SDK does (``trainer-emotion``,
    ``comp-trainer-emotion``, ``exec-trainer-emotion``), references included."""
    from kfp.dsl import utils

    tasks = pipeline_spec["root"]["dag"]["tasks"]
    components = pipeline_spec["components"]
    executors = pipeline_spec["deploymentSpec"]["executors"]
    new_task = {old: task_name(old) for old in tasks}
    new_component, new_executor = {}, {}
    for old, task in tasks.items():
        component = task["componentRef"]["name"]
        new_component[component] = utils.sanitize_component_name(new_task[old])
        new_executor[components[component]["executorLabel"]] = utils.sanitize_executor_label(new_task[old])
    for mapping in (new_task, new_component, new_executor):
        if len(set(mapping.values())) != len(set(mapping)):
            raise ValueError(f"two names would become one: {mapping}")
    renamed = {}
    for old, task in tasks.items():
        task["taskInfo"]["name"] = new_task[old]
        task["componentRef"]["name"] = new_component[task["componentRef"]["name"]]
        if "dependentTasks" in task:
            task["dependentTasks"] = sorted(new_task[d] for d in task["dependentTasks"])
        for spec in task.get("inputs", {}).get("artifacts", {}).values():
            if "taskOutputArtifact" in spec:
                spec["taskOutputArtifact"]["producerTask"] = new_task[spec["taskOutputArtifact"]["producerTask"]]
        for spec in task.get("inputs", {}).get("parameters", {}).values():
            if "taskOutputParameter" in spec:
                spec["taskOutputParameter"]["producerTask"] = new_task[spec["taskOutputParameter"]["producerTask"]]
        renamed[new_task[old]] = task
    pipeline_spec["root"]["dag"]["tasks"] = renamed
    for component in components.values():
        component["executorLabel"] = new_executor[component["executorLabel"]]
    pipeline_spec["components"] = {new_component[k]: v for k, v in components.items()}
    pipeline_spec["deploymentSpec"]["executors"] = {new_executor[k]: v for k, v in executors.items()}


def _executor_label(pipeline_spec: dict, task: str) -> str:
    component = pipeline_spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]
    return pipeline_spec["components"][component]["executorLabel"]


def _executor_of(pipeline_spec: dict, task: str) -> dict:
    return pipeline_spec["deploymentSpec"]["executors"][_executor_label(pipeline_spec, task)]


def _add_data_fingerprints(pipeline_spec: dict, image: str) -> None:
    """Before each ExampleGen, an uncached task that fingerprints its data and passes the
    fingerprint in as an input parameter (``kubeflow/data_fingerprint.py`` says why)."""
    from kfp.dsl import utils

    from emotion_ai.components.validating_example_gen import DATA_FINGERPRINT, read_custom_config
    from emotion_ai.kubeflow import data_fingerprint

    tasks = pipeline_spec["root"]["dag"]["tasks"]
    string = {"parameterType": "STRING"}
    for branch in BRANCHES:
        example_gen = task_name(branch.component_id("CsvExampleGen"))
        name = task_name(branch.component_id("DataFingerprint"))
        constants = {k: v["runtimeValue"]["constant"] for k, v in tasks[example_gen]["inputs"]["parameters"].items()
                     if "runtimeValue" in v}
        custom = read_custom_config(constants)
        values = {"branch": branch.name, "input_base": constants["input_base"],
                  "files": json.dumps(list(custom.get("files") or []))}
        component, executor = utils.sanitize_component_name(name), utils.sanitize_executor_label(name)
        pipeline_spec["components"][component] = {
            "executorLabel": executor,
            "inputDefinitions": {"parameters": {k: dict(string) for k in data_fingerprint.INPUTS}},
            "outputDefinitions": {"parameters": {data_fingerprint.OUTPUT: dict(string)}}}
        pipeline_spec["deploymentSpec"]["executors"][executor] = {"container": {
            "image": image, "command": ["python", "-m", "emotion_ai.kubeflow.data_fingerprint"],
            "args": ["--executor_input", "{{$}}"]}}
        tasks[name] = {"taskInfo": {"name": name}, "componentRef": {"name": component},
                       "cachingOptions": {"enableCache": False},
                       "inputs": {"parameters": {k: {"runtimeValue": {"constant": v}} for k, v in values.items()}}}
        tasks[example_gen]["inputs"]["parameters"][DATA_FINGERPRINT] = {
            "taskOutputParameter": {"producerTask": name, "outputParameterKey": data_fingerprint.OUTPUT}}
        tasks[example_gen]["dependentTasks"] = sorted({*tasks[example_gen].get("dependentTasks", []), name})
        definitions = pipeline_spec["components"][tasks[example_gen]["componentRef"]["name"]]["inputDefinitions"]
        definitions["parameters"][DATA_FINGERPRINT] = dict(string)


def build_spec(*, image: str, pipeline_root: str, inputs: Mapping[str, str] | None = None,
               model_repo: str | None = None, profile: config.Profile | None = None,
               beam_args: Sequence[str] = (), trainer: Resources = Resources(), gpu_image: str | None = None,
               tracking_uri: str = "", serving_log: str = "") -> dict:
    """The bare KFP PipelineSpec of every branch, as a dict. ``inputs``: per branch name, the
    folder of its raw CSVs (default ``<root>/data``, both formats side by side).
    ``beam_args`` add to ``DEFAULT_BEAM_ARGS`` (``merge_beam_args``). Trainers asking for GPUs
    run ``gpu_image`` (default ``<image>-gpu``: ``make image IMAGE_VARIANT=gpu``).
    ``serving_log``: where the server records requests, for skew (its task is then never
    taken from the cache: the log grows between runs). Credentials never go into the spec:
    a ``tracking_uri`` carrying any is refused; they reach the pods through the platform
    section (``platform_spec``)."""
    if credentials.redact(tracking_uri) != tracking_uri:
        raise ValueError(f"the tracking URI {credentials.redact(tracking_uri)} carries credentials, which the "
                         "compiled spec would show to anyone who can read it: pass the URI without them and "
                         "give the pods MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) "
                         "from a Kubernetes secret (--secret-env)")
    root = pipeline_root.rstrip("/")
    pipeline = create_pipeline(
        pipeline_root=root,
        inputs={b.name: (inputs or {}).get(b.name) or f"{root}/{DATA_DIR}" for b in BRANCHES},
        model_repo=model_repo or f"{root}/model_repository",
        profile=profile or config.PROFILES[config.DEFAULT_PROFILE],
        beam_pipeline_args=merge_beam_args(DEFAULT_BEAM_ARGS, beam_args),
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
    _rename_for_kfp(pipeline_spec)
    _add_data_fingerprints(pipeline_spec, image)
    tasks = pipeline_spec["root"]["dag"]["tasks"]
    for name in UNCACHED_RECORD:
        tasks[task_name(name)]["cachingOptions"] = {"enableCache": False}
    for branch in BRANCHES:
        for kind in UNCACHED + (("DataDrift",) if serving_log else ()):
            tasks[task_name(branch.component_id(kind))]["cachingOptions"] = {"enableCache": False}
        container = _executor_of(pipeline_spec, task_name(branch.component_id("Trainer")))["container"]
        resources = trainer.to_spec()
        if resources:
            container["resources"] = resources
        if trainer.gpus:
            container["image"] = gpu_image or f"{image}-gpu"
    json_format.ParseDict(pipeline_spec, pipeline_spec_pb2.PipelineSpec())  # every field is KFP's
    errors = argo_name_errors(pipeline_spec)
    if errors:
        raise AssertionError(f"names Argo would refuse: {errors}")
    return pipeline_spec


@dataclasses.dataclass(frozen=True)
class SecretEnv:
    """One key of a Kubernetes secret as one environment variable of every task's pod."""

    secret: str
    key: str
    env: str

    @classmethod
    def parse(cls, text: str) -> SecretEnv:
        """``SECRET:KEY=ENV``, e.g. ``mlflow-auth:password=MLFLOW_TRACKING_PASSWORD``."""
        found = re.fullmatch(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?):([-._a-zA-Z0-9]+)=([A-Za-z_][A-Za-z0-9_]*)", text)
        if not found:
            raise ValueError(f"secret environment {text!r} is not SECRET:KEY=ENV_VAR "
                             "(e.g. mlflow-auth:password=MLFLOW_TRACKING_PASSWORD)")
        return cls(found.group(1), found.group(3), found.group(4))


@dataclasses.dataclass(frozen=True)
class Platform:
    """The spec's Kubernetes platform section (``kfp-kubernetes``' ``KubernetesExecutorConfig``,
    applied to each pod by KFP's driver). The service account is not part of a spec: KFP sets
    it per run (``deploy-kubeflow --service-account``)."""

    secret_env: tuple[SecretEnv, ...] = ()  # every task
    image_pull_secrets: tuple[str, ...] = ()  # every task
    node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)  # every task
    trainer_node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)  # Trainers (e.g. GPU nodes)

    def executor_config(self, trainer: bool) -> dict:
        from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s

        config = k8s.KubernetesExecutorConfig()
        by_secret: dict[str, list[SecretEnv]] = {}
        for item in self.secret_env:
            by_secret.setdefault(item.secret, []).append(item)
        for secret, items in by_secret.items():
            config.secret_as_env.append(k8s.SecretAsEnv(
                secret_name=secret, key_to_env=[k8s.SecretAsEnv.SecretKeyToEnvMap(secret_key=i.key, env_var=i.env)
                                                for i in items]))
        config.image_pull_secret.extend(k8s.ImagePullSecret(secret_name=n) for n in self.image_pull_secrets)
        labels = {**self.node_selector, **(self.trainer_node_selector if trainer else {})}
        if labels:
            config.node_selector.labels.update(labels)
        return json_format.MessageToDict(config)

    def spec(self, pipeline_spec: dict) -> dict | None:
        """The platform document for ``pipeline_spec``, or None when nothing is set."""
        trainers = {_executor_label(pipeline_spec, task_name(b.component_id("Trainer"))) for b in BRANCHES}
        executors = {}
        for label in pipeline_spec["deploymentSpec"]["executors"]:
            config = self.executor_config(label in trainers)
            if config:
                executors[label] = config
        if not executors:
            return None
        platform = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}
        json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())  # every field is KFP's
        return platform


def compile_pipeline(out: Path, *, image: str | None = None, pipeline_root: str, platform: Platform = Platform(),
                     **kwargs) -> Path:
    """Write the bare PipelineSpec YAML to ``out`` (see ``build_spec``), followed by the
    platform section when ``platform`` sets anything (the two documents KFP's SDK writes);
    return its path."""
    pipeline_spec = build_spec(image=image or default_image(), pipeline_root=pipeline_root, **kwargs)
    documents = [pipeline_spec]
    platform_spec = platform.spec(pipeline_spec)
    if platform_spec:
        documents.append(platform_spec)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# {config.PIPELINE_NAME}: KFP PipelineSpec {SCHEMA_VERSION}, compiled by "
                   "`emotion-ai compile-kubeflow`\n" + yaml.safe_dump_all(documents, sort_keys=True))
    return out
