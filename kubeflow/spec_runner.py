"""Run a compiled KFP PipelineSpec here, task by task, as open-source KFP's backend runs it.

What the backend does, and so what this does (kubeflow/pipelines, ``backend/src/v2/``):

* every task of ``root.dag`` in dependency order (``dependentTasks`` and the producers of its
  inputs), two at a time here, each through the exact ``command`` + ``args`` of its executor,
  with ``{{$}}`` replaced by the task's ``ExecutorInput`` (``component/launcher_v2.go``; any
  other placeholder is refused, as this spec has none): input parameters from constants and
  upstream output parameters, input artifacts from upstream outputs, named by their MLMD id;
  output artifacts named by their key, under ``<root>/<pipeline>/<run>/<task>/<key>``, and
  ``outputFile`` beside them (``driver/driver.go`` ``provisionOutputs``);
* ``lifecycle.preCacheCheck`` is never run: only Vertex runs it;
* after the container exits, the executor output file's ``parameterValues`` and each output
  artifact's ``uri`` and ``metadata`` are taken (``launcher_v2.go``); each output artifact gets
  a new id, as MLMD gives it;
* the cache: a task whose ``cachingOptions.enableCache`` is set is looked up by the
  fingerprint ``cache_key``/``cache_fingerprint`` compute, which follow
  ``cacheutils/cache.go`` (``GenerateCacheKey``, ``GenerateFingerPrint``) and its caller
  ``driver/cache.go``: input artifact ids, input parameter values, output artifact names and
  types, output parameter types, the image and the unresolved command and args. A hit reuses
  the stored outputs, the same artifact ids included, and the task does not run; a miss runs
  it and stores its outputs when it succeeds. Entries never expire and are kept per pipeline
  name, under ``<root>/.kfp-local/``.

How a task is started is the ``launcher``'s: ``ProcessLauncher`` (a process here, the
project's Python first on ``PATH``) or ``ContainerLauncher`` (a fresh container of the image
the spec names, with only the pipeline root mounted and no network). The Kubernetes parts
(pods, resources, the platform section) are not emulated.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol


def load_spec(path) -> dict:
    """Through ``kfp``'s own loader (a strict PipelineSpec proto parse), as a camelCase dict."""
    from google.protobuf import json_format
    from kfp import components

    return json_format.MessageToDict(components.load_component_from_file(str(path)).pipeline_spec)


def upstreams(task: dict) -> set[str]:
    """``dependentTasks`` plus every task whose outputs this one reads."""
    found = set(task.get("dependentTasks", []))
    inputs = task.get("inputs", {})
    found |= {a["taskOutputArtifact"]["producerTask"] for a in inputs.get("artifacts", {}).values()
              if "taskOutputArtifact" in a}
    found |= {p["taskOutputParameter"]["producerTask"] for p in inputs.get("parameters", {}).values()
              if "taskOutputParameter" in p}
    return found


def _go_json(value) -> str:
    """``value`` as Go's ``encoding/json`` writes it after protojson: keys sorted, compact,
    ``<``, ``>`` and ``&`` escaped, whole numbers without a fraction."""
    def plain(v):
        if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
            return int(v)
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v

    text = json.dumps(plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def cache_key(executor_input: dict, component: dict, container: dict) -> dict:
    """The ``CacheKey`` (``api/v2alpha1/cache_key.proto``, protojson names) of a task about to
    run, as ``GenerateCacheKey`` builds it: empty fields left out, as protojson leaves them."""
    inputs, outputs = executor_input["inputs"], executor_input["outputs"]
    key: dict = {}
    names = {k: {"artifactNames": [a["name"] for a in v["artifacts"]]} for k, v in inputs.get("artifacts", {}).items()}
    if names:
        key["inputArtifactNames"] = names
    if inputs.get("parameterValues"):
        key["inputParameterValues"] = dict(inputs["parameterValues"])
    specs = {}
    for k, v in outputs.get("artifacts", {}).items():
        if v["artifacts"]:
            first = v["artifacts"][0]
            specs[k] = {f: first[f] for f in ("name", "type", "metadata") if first.get(f)}  # the URI wiped
    if specs:
        key["outputArtifactsSpec"] = specs
    declared = component.get("outputDefinitions", {}).get("parameters", {})
    if outputs.get("parameters"):
        key["outputParametersSpec"] = {k: declared[k]["parameterType"] for k in outputs["parameters"]}
    key["containerSpec"] = {"image": container["image"],
                            "cmdArgs": [*container.get("command", []), *container.get("args", [])]}
    return key


def cache_fingerprint(key: dict) -> str:
    """``GenerateFingerPrint``: sha256 of the key's JSON, in hex."""
    return hashlib.sha256(_go_json(key).encode()).hexdigest()


class Launcher(Protocol):
    def launch(self, task: str, container: dict, args: list[str], log: Path) -> int:
        """Run ``container``'s command with ``args`` (placeholders filled); its exit code."""


@dataclasses.dataclass
class ProcessLauncher:
    """A process here: the spec's bare ``python`` is this interpreter (first on ``PATH``)."""

    env: dict
    cwd: Path

    def launch(self, task: str, container: dict, args: list[str], log: Path) -> int:
        with open(log, "w") as out:
            return subprocess.run([*container["command"], *args], cwd=self.cwd, env=self.env, stdout=out,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode


def process_environment(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra or {})
    return env


@dataclasses.dataclass
class ContainerLauncher:
    """A fresh container per task, of the image the task's executor names, as a pod: its
    command replaces the image's entry point; only ``mounts`` (the pipeline root, at the
    same path) are shared with the host, and no network (``network``)."""

    mounts: Sequence[Path]
    env: dict = dataclasses.field(default_factory=dict)
    network: str = "none"
    docker: str = "docker"
    timeout: float | None = None

    def launch(self, task: str, container: dict, args: list[str], log: Path) -> int:
        command = container["command"]
        name = f"kfp-{task}-{uuid.uuid4().hex[:8]}"
        argv = [self.docker, "run", "--rm", "--name", name, "--network", self.network,
                *(f"--volume={m}:{m}" for m in self.mounts), *(f"--env={k}={v}" for k, v in self.env.items()),
                "--entrypoint", command[0], container["image"], *command[1:], *args]
        with open(log, "w") as out:
            try:
                return subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      timeout=self.timeout).returncode
            except subprocess.TimeoutExpired:
                subprocess.run([self.docker, "rm", "-f", name], capture_output=True)
                out.write(f"\n[spec_runner] {task} did not finish in {self.timeout} s: container removed\n")
                return 124


@dataclasses.dataclass
class TaskResult:
    artifacts: dict[str, list[dict]]  # output key -> RuntimeArtifact dicts (name = id, uri, type, metadata)
    parameters: dict
    seconds: float
    cached: bool  # taken from the cache: the task did not run
    fingerprint: str  # its cache key's fingerprint ("" when caching is off for it)


class _State:
    """What MLMD and the API server's task table keep between runs: artifact ids, cache."""

    def __init__(self, folder: Path, pipeline: str):
        self.folder = folder
        self.cache_dir = folder / "cache" / pipeline
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._ids = folder / "next_artifact_id"
        self._lock = threading.Lock()

    def new_id(self) -> int:
        with self._lock:
            value = int(self._ids.read_text()) if self._ids.exists() else 1
            self._ids.write_text(str(value + 1))
            return value

    def cached(self, fingerprint: str) -> dict | None:
        path = self.cache_dir / f"{fingerprint}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def store(self, fingerprint: str, outputs: dict) -> None:
        (self.cache_dir / f"{fingerprint}.json").write_text(json.dumps(outputs))


class LocalRun:
    """One run of ``spec`` (run id ``run_id``); ``run()`` executes it and returns the results."""

    def __init__(self, spec: dict, run_id: str, launcher: Launcher, workers: int = 2):
        self.spec, self.run_id, self.launcher, self.workers = spec, run_id, launcher, workers
        self.root = Path(spec["defaultPipelineRoot"])
        pipeline = spec["pipelineInfo"]["name"]
        self.run_root = self.root / pipeline / run_id
        self.state = _State(self.root / ".kfp-local", pipeline)
        self.results: dict[str, TaskResult] = {}
        self.order: list[str] = []  # tasks in the order they finished

    @property
    def cached(self) -> list[str]:
        return [n for n in self.order if self.results[n].cached]

    @property
    def executed(self) -> list[str]:
        return [n for n in self.order if not self.results[n].cached]

    def _parameter(self, name: str, p: dict):
        if "runtimeValue" in p:
            return p["runtimeValue"]["constant"]
        if "taskOutputParameter" in p:
            src = p["taskOutputParameter"]
            return self.results[src["producerTask"]].parameters[src["outputParameterKey"]]
        raise NotImplementedError(f"input parameter {name}: {p}")

    def executor_input(self, name: str, task: dict, component: dict) -> dict:
        task_root = self.run_root / name
        artifacts = {}
        for key, a in task.get("inputs", {}).get("artifacts", {}).items():
            if "taskOutputArtifact" not in a:
                raise NotImplementedError(f"{name}: input artifact {key}: {a}")
            src = a["taskOutputArtifact"]
            artifacts[key] = {"artifacts": [dict(x) for x in self.results[src["producerTask"]].artifacts[
                src["outputArtifactKey"]]]}
        outputs: dict = {"artifacts": {}}
        for key, o in component.get("outputDefinitions", {}).get("artifacts", {}).items():
            outputs["artifacts"][key] = {"artifacts": [{"name": key, "uri": str(task_root / key),
                                                        "type": o["artifactType"], "metadata": {}}]}
        declared = component.get("outputDefinitions", {}).get("parameters", {})
        if declared:
            outputs["parameters"] = {k: {"outputFile": str(task_root / "parameters" / k)} for k in declared}
        outputs["outputFile"] = str(task_root / "output_metadata.json")
        parameters = {k: self._parameter(k, p) for k, p in task.get("inputs", {}).get("parameters", {}).items()}
        return {"inputs": {"parameterValues": parameters, "artifacts": artifacts}, "outputs": outputs}

    def run_task(self, name: str) -> TaskResult:
        start = time.time()
        task = self.spec["root"]["dag"]["tasks"][name]
        if task.get("triggerPolicy", {}).get("condition"):
            raise NotImplementedError(f"{name}: conditional task")
        component = self.spec["components"][task["componentRef"]["name"]]
        executor = self.spec["deploymentSpec"]["executors"][component["executorLabel"]]
        if set(executor) != {"container"}:
            raise NotImplementedError(f"{name}: a {'/'.join(executor)} executor, not a container")
        container = executor["container"]
        executor_input = self.executor_input(name, task, component)
        fingerprint = ""
        if task.get("cachingOptions", {}).get("enableCache"):
            fingerprint = cache_fingerprint(cache_key(executor_input, component, container))
            hit = self.state.cached(fingerprint)
            if hit is not None:
                return TaskResult(hit["artifacts"], hit["parameters"], time.time() - start, True, fingerprint)
        payload = json.dumps(executor_input)
        args = [a.replace("{{$}}", payload) for a in container.get("args", [])]
        left = [a for a in args if "{{$" in a]
        if left:
            raise NotImplementedError(f"{name}: placeholders this runner does not fill: {left}")
        for declared in executor_input["outputs"]["artifacts"].values():
            Path(declared["artifacts"][0]["uri"]).mkdir(parents=True, exist_ok=True)  # as the launcher prepares them
        (self.run_root / name / "parameters").mkdir(parents=True, exist_ok=True)
        log = self.run_root / name / "task.log"
        code = self.launcher.launch(name, container, args, log)
        if code:
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-40:])
            raise RuntimeError(f"task {name} exited {code}; log {log}:\n{tail}")
        out_file = Path(executor_input["outputs"]["outputFile"])
        output = json.loads(out_file.read_text()) if out_file.exists() else {}
        artifacts = {}
        for key, declared in executor_input["outputs"]["artifacts"].items():
            base = declared["artifacts"][0]
            produced = (output.get("artifacts", {}).get(key, {}).get("artifacts") or [{}])[0]
            artifacts[key] = [{"name": str(self.state.new_id()), "uri": produced.get("uri") or base["uri"],
                               "type": base["type"], "metadata": {**base["metadata"], **produced.get("metadata", {})}}]
        parameters = {}
        for key, declared in executor_input["outputs"].get("parameters", {}).items():
            if key in output.get("parameterValues", {}):
                parameters[key] = output["parameterValues"][key]
            elif Path(declared["outputFile"]).exists():
                parameters[key] = Path(declared["outputFile"]).read_text()
            else:
                raise RuntimeError(f"task {name} wrote no output parameter {key}; log {log}")
        if fingerprint:
            self.state.store(fingerprint, {"artifacts": artifacts, "parameters": parameters})
        return TaskResult(artifacts, parameters, time.time() - start, False, fingerprint)

    def run(self, only: set[str] | None = None, progress=None) -> dict[str, TaskResult]:
        """Every task (or those in ``only``, whose upstreams outside it must have run in this
        object already); ``progress(name, result)`` after each."""
        tasks = self.spec["root"]["dag"]["tasks"]
        wanted = set(tasks) if only is None else set(only)
        deps = {n: upstreams(tasks[n]) & wanted for n in wanted}
        unknown = {d for n in wanted for d in upstreams(tasks[n])} - set(tasks)
        if unknown:
            raise ValueError(f"tasks depend on unknown tasks {sorted(unknown)}")
        done: set[str] = set(self.results) & wanted
        running: dict[concurrent.futures.Future, str] = {}
        with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
            while len(done) < len(wanted):
                ready = sorted(n for n in wanted - done - set(running.values()) if deps[n] <= done)
                for name in ready[: self.workers - len(running)]:
                    (self.run_root / name).mkdir(parents=True, exist_ok=True)
                    running[pool.submit(self.run_task, name)] = name
                if not running:
                    raise ValueError(f"dependency cycle among {sorted(wanted - done)}")
                finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    name = running.pop(future)
                    self.results[name] = future.result()  # a failed task fails the run here
                    self.order.append(name)
                    done.add(name)
                    if progress:
                        progress(name, self.results[name])
        return self.results
