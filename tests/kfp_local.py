"""Execute a compiled KFP PipelineSpec here, task by task, the way a KFP backend would.

No cluster and no Docker: every task of ``root.dag`` runs in dependency order (two at a
time: the branches are independent) as a process running the exact ``command`` + ``args`` its
executor names in ``deploymentSpec`` (TFX's v2 container entry point,
``python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor``), with the
``{{$}}`` placeholder replaced by a KFP ``ExecutorInput`` built from the spec: parameter
values from the task's constants, input artifacts from the upstream tasks' executor outputs,
output artifact URIs under the pipeline root. A ``lifecycle.preCacheCheck`` (TFX's
ExampleGen driver) runs first with the same input, as the KFP launcher runs it.

Anything the harness does not implement (an ``importer`` or ``resolver`` executor, a
condition, another placeholder) raises ``NotImplementedError``: the test fails, nothing is
skipped. Layout: ``<root>/<run id>/<task>/<output key>`` and ``.../executor_output.json``.

Warm interpreters (``warm=True``). A fresh ``python`` spends about 20 s of CPU importing
TensorFlow, TFX, TFMA and Beam before the task does anything, so 24 of them (22 tasks, 2
driver hooks) are most of the harness's time on 2 cores. With ``warm``, each worker keeps
one "zygote" interpreter, started with the same environment and working directory, that
has imported the ``-m`` modules the spec names and nothing else of the project; each
task is then a process forked from it that runs the command's module as ``__main__``
with the command's arguments (``runpy``, what ``python -m`` does), its own log, exit code
and working directory, and exits. Only the interpreter's start-up is shared; no task runs
in a process another task touched. Commands not of the form ``python -m <module>`` are
refused. Tasks named in ``fresh`` always get a new interpreter, as a pod would.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path


def load_spec(path) -> dict:
    """Through ``kfp``'s own loader (a strict PipelineSpec proto parse), as a camelCase dict."""
    from google.protobuf import json_format
    from kfp import components

    return json_format.MessageToDict(components.load_component_from_file(str(path)).pipeline_spec)


def _producer(name: str, tasks: dict) -> str:
    # TFX writes taskOutputParameter.producerTask as '<component id>_task'.
    return name if name in tasks or not name.endswith("_task") else name[: -len("_task")]


def upstreams(task: dict, tasks: dict) -> set[str]:
    """``dependentTasks`` plus every task whose outputs this one reads."""
    found = set(task.get("dependentTasks", []))
    inputs = task.get("inputs", {})
    found |= {a["taskOutputArtifact"]["producerTask"] for a in inputs.get("artifacts", {}).values()
              if "taskOutputArtifact" in a}
    found |= {_producer(p["taskOutputParameter"]["producerTask"], tasks)
              for p in inputs.get("parameters", {}).values() if "taskOutputParameter" in p}
    return found


@dataclasses.dataclass
class TaskResult:
    artifacts: dict[str, list[dict]]  # output key -> RuntimeArtifact dicts (name, uri, type, metadata)
    parameters: dict
    seconds: float


# Runs in the zygote: import the modules, then per request line fork a child that runs one
# of them as ``python -m`` would, wait for it, and answer its exit code.
_ZYGOTE = r"""
import atexit, json, os, runpy, sys, traceback

modules = sys.argv[1:]
for name in modules:
    __import__(name)
    del sys.modules[name]  # its imports stay loaded; the module itself runs afresh as __main__
sys.stdout.write(json.dumps({"ready": len(os.listdir("/proc/self/task"))}) + "\n")
sys.stdout.flush()
for line in sys.stdin:
    request = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(log)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
            os.chdir(request["cwd"])
            sys.path[0] = os.getcwd()  # python -m puts the working directory first; -c put ""
            os.environ.clear()
            os.environ.update(request["env"])
            sys.argv = [request["module"], *request["args"]]
            try:
                runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as stop:
                if stop.code is None or isinstance(stop.code, int):
                    code = stop.code or 0
                else:
                    print(stop.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
            import threading
            threading._shutdown()  # as at interpreter exit: wait for the task's non-daemon threads
            atexit._run_exitfuncs()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    sys.stdout.write(json.dumps({"exit": os.waitstatus_to_exitcode(status)}) + "\n")
    sys.stdout.flush()
"""


class Zygote:
    """One warm interpreter (see the module docstring); ``run`` is one task at a time."""

    def __init__(self, modules: list[str], env: dict, cwd: Path, log: Path):
        self.modules = modules
        with open(log, "w") as out:
            self.process = subprocess.Popen([sys.executable, "-c", _ZYGOTE, *modules], cwd=cwd, env=env, text=True,
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=out)
        self.log = log

    def ready(self) -> int:
        """Wait until the modules are imported; the number of OS threads it then has."""
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the warm interpreter did not start; log {self.log}:\n{self.log.read_text()[-3000:]}")
        return json.loads(line)["ready"]

    def run(self, module: str, args: list[str], env: dict, cwd: Path, log: Path) -> int:
        if module not in self.modules:
            raise NotImplementedError(f"{module} was not imported by the warm interpreter")
        self.process.stdin.write(json.dumps({"module": module, "args": args, "env": env, "cwd": str(cwd),
                                             "log": str(log)}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the warm interpreter died; log {self.log}:\n{self.log.read_text()[-3000:]}")
        return json.loads(line)["exit"]

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def python_module(command: list[str]) -> str:
    """The module of a ``python -m <module>`` command; anything else is refused."""
    if len(command) != 3 or os.path.basename(command[0]) not in ("python", "python3") or command[1] != "-m":
        raise NotImplementedError(f"not a 'python -m <module>' command: {command}")
    return command[2]


def spec_modules(spec: dict) -> list[str]:
    """Every module the spec's executors and their lifecycle hooks run with ``python -m``."""
    found = []
    for executor in spec["deploymentSpec"]["executors"].values():
        container = executor.get("container", {})
        for command in (container.get("command"),
                        container.get("lifecycle", {}).get("preCacheCheck", {}).get("command")):
            if command and python_module(command) not in found:
                found.append(python_module(command))
    return found


class LocalRun:
    def __init__(self, spec: dict, run_id: str, env: dict, cwd: Path, workers: int = 2, warm: bool = False,
                 fresh: set[str] = frozenset()):
        self.spec, self.run_id, self.env, self.cwd, self.workers = spec, run_id, env, Path(cwd), workers
        self.warm, self.fresh = warm, set(fresh)
        self._zygotes: queue.Queue[Zygote] | None = None
        self.root = Path(spec["defaultPipelineRoot"])
        self.run_root = self.root / run_id
        self.results: dict[str, TaskResult] = {}
        self.order: list[str] = []  # tasks in the order they finished
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def _parameter(self, name: str, p: dict):
        if "runtimeValue" in p:
            return p["runtimeValue"]["constant"]
        if "taskOutputParameter" in p:
            src = p["taskOutputParameter"]
            return self.results[_producer(src["producerTask"], self.results)].parameters[src["outputParameterKey"]]
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
        outputs = {}
        for key, o in component.get("outputDefinitions", {}).get("artifacts", {}).items():
            uri = task_root / key
            uri.mkdir(parents=True, exist_ok=True)  # the KFP launcher prepares output locations
            with self._lock:
                artifact_name = f"local/{self.run_id}/{name}/{key}/{next(self._ids)}"  # unique: TFX maps ids by it
            outputs[key] = {"artifacts": [{"name": artifact_name, "uri": str(uri), "type": o["artifactType"],
                                           "metadata": {}}]}
        return {"inputs": {"parameterValues": {k: self._parameter(k, p) for k, p in
                                               task.get("inputs", {}).get("parameters", {}).items()},
                           "artifacts": artifacts},
                "outputs": {"artifacts": outputs, "outputFile": str(task_root / "executor_output.json")}}

    def _exec(self, name: str, phase: str, command: list[str], args: list[str], executor_input: dict) -> None:
        payload = json.dumps(executor_input)
        argv = [*command, *(a.replace("{{$}}", payload) for a in args)]
        left = [a for a in argv if "{{$" in a]
        if left:
            raise NotImplementedError(f"{name}: placeholders the harness does not fill: {left}")
        log = self.run_root / name / f"{phase}.log"
        if self._zygotes is not None and name not in self.fresh:
            zygote = self._zygotes.get()
            try:
                code = zygote.run(python_module(command), argv[len(command):], self.env, self.cwd, log)
            finally:
                self._zygotes.put(zygote)
        else:
            with open(log, "w") as out:
                code = subprocess.run(argv, cwd=self.cwd, env=self.env, stdout=out,
                                      stderr=subprocess.STDOUT).returncode
        if code:
            tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
            raise RuntimeError(f"task {name} ({phase}) exited {code}; log {log}:\n{tail}")

    def run_task(self, name: str) -> TaskResult:
        import time

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
        out_file = Path(executor_input["outputs"]["outputFile"])
        driver_metadata = {}
        hook = container.get("lifecycle", {}).get("preCacheCheck")
        if hook:  # ExampleGen's driver: span and input fingerprint into the same output file
            self._exec(name, "driver", hook["command"], hook.get("args", []), executor_input)
            for key, produced in json.loads(out_file.read_text()).get("artifacts", {}).items():
                if produced.get("artifacts") and key in executor_input["outputs"]["artifacts"]:
                    driver_metadata[key] = produced["artifacts"][0].get("metadata", {})
                    executor_input["outputs"]["artifacts"][key]["artifacts"][0]["metadata"].update(driver_metadata[key])
        self._exec(name, "executor", container["command"], container.get("args", []), executor_input)
        output = json.loads(out_file.read_text())
        artifacts = {}
        for key, declared in executor_input["outputs"]["artifacts"].items():
            base = declared["artifacts"][0]
            produced = (output.get("artifacts", {}).get(key, {}).get("artifacts") or [{}])[0]
            artifacts[key] = [{"name": base["name"], "uri": produced.get("uri", base["uri"]), "type": base["type"],
                               "metadata": {**driver_metadata.get(key, {}), **produced.get("metadata", {})}}]
        return TaskResult(artifacts, dict(output.get("parameterValues", {})), time.time() - start)

    def run(self, only: set[str] | None = None) -> dict[str, TaskResult]:
        tasks = self.spec["root"]["dag"]["tasks"]
        wanted = set(tasks) if only is None else set(only)
        deps = {n: upstreams(tasks[n], tasks) & wanted for n in wanted}
        unknown = {d for ds in deps.values() for d in ds} - set(tasks)
        if unknown:
            raise ValueError(f"tasks depend on unknown tasks {sorted(unknown)}")
        done: set[str] = set(self.results) & wanted
        running: dict[concurrent.futures.Future, str] = {}
        zygotes = self._start_zygotes() if self.warm and wanted - self.fresh else []
        try:
            self._run(wanted, deps, done, running)
        finally:
            for zygote in zygotes:
                zygote.close()
            self._zygotes = None
        return self.results

    def _start_zygotes(self) -> list[Zygote]:
        self.run_root.mkdir(parents=True, exist_ok=True)
        modules = spec_modules(self.spec)
        zygotes = [Zygote(modules, self.env, self.cwd, self.run_root / f"zygote-{i}.log") for i in range(self.workers)]
        self.zygote_threads = [z.ready() for z in zygotes]
        self._zygotes = queue.Queue()
        for zygote in zygotes:
            self._zygotes.put(zygote)
        return zygotes

    def _run(self, wanted: set[str], deps: dict, done: set[str], running: dict) -> None:
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


def environment(extra: dict | None = None) -> dict:
    """The spec's command is a bare ``python``: this venv's interpreter first on PATH, as the
    image's is."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra or {})
    return env
