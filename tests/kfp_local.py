"""Warm interpreters for ``emotion_ai.kubeflow.spec_runner``: the compiled spec's tasks as
processes here, fast enough for the test suite.

``spec_runner`` plays open-source KFP's backend (executor input, cache, outputs); how a task
starts is its launcher's. In a pod, and with ``spec_runner.ProcessLauncher``, each task is a
fresh ``python`` that spends about 20 s of CPU importing TensorFlow, TFX, TFMA and Beam
before it does anything: 26 of them are most of a run's time on 2 cores. ``ZygoteLauncher``
keeps one "zygote" interpreter per worker, started with the same environment and working
directory, that has imported the ``-m`` modules the spec names and nothing else of the
project; each task is then a process forked from it that runs the command's module as
``__main__`` with the command's arguments (``runpy``, what ``python -m`` does), its own log,
exit code and working directory, and exits. Only the interpreter's start-up is shared; no
task runs in a process another task touched. Commands not of the form ``python -m <module>``
are refused. Tasks named in ``fresh`` get a new interpreter. The proof in fresh containers
of the image is ``make kubeflow-e2e`` (``emotion_ai.kubeflow.container_e2e``).
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
from pathlib import Path

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
    """Every module the spec's executors run with ``python -m`` (lifecycle hooks are never
    run: open-source KFP does not)."""
    found = []
    for executor in spec["deploymentSpec"]["executors"].values():
        module = python_module(executor["container"]["command"])
        if module not in found:
            found.append(module)
    return found


class ZygoteLauncher:
    """``spec_runner``'s launcher through warm interpreters (one per worker); tasks named in
    ``fresh`` get a new ``python`` as a pod would. Use as a context manager."""

    def __init__(self, spec: dict, env: dict, cwd: Path, log_dir: Path, workers: int = 2,
                 fresh: set[str] = frozenset()):
        from emotion_ai.kubeflow import spec_runner

        self.env, self.cwd, self.fresh = env, Path(cwd), set(fresh)
        self.process = spec_runner.ProcessLauncher(env, self.cwd)
        log_dir.mkdir(parents=True, exist_ok=True)
        modules = spec_modules(spec)
        self.zygotes = [Zygote(modules, env, self.cwd, log_dir / f"zygote-{i}.log") for i in range(workers)]
        self.zygote_threads = [z.ready() for z in self.zygotes]
        self._free: queue.Queue[Zygote] = queue.Queue()
        for zygote in self.zygotes:
            self._free.put(zygote)

    def launch(self, task: str, container: dict, args: list[str], log: Path) -> int:
        if task in self.fresh:
            return self.process.launch(task, container, args, log)
        zygote = self._free.get()
        try:
            return zygote.run(python_module(container["command"]), args, self.env, self.cwd, log)
        finally:
            self._free.put(zygote)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for zygote in self.zygotes:
            zygote.close()
