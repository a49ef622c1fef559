"""The Kubeflow harness's warm interpreters run a ``python -m`` command as a fresh one does."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import kfp_local
import pytest

# A stand-in for TFX's entry point: what it sees of its process, then an exit code, an
# atexit hook and a non-daemon thread, which a fresh interpreter waits for before exiting.
PROBE = '''
import atexit, json, os, sys, threading, time
if __name__ == "__main__":
    threading.Thread(target=lambda: (time.sleep(0.2), print("thread done", flush=True))).start()
    atexit.register(lambda: print("atexit ran", flush=True))
    print(json.dumps({"name": __name__, "argv": sys.argv[1:], "cwd": os.getcwd(),
                      "probe": os.environ.get("PROBE"), "path0": sys.path[0], "stdin": sys.stdin.read()}))
    sys.exit(int(sys.argv[1]))
'''


@pytest.mark.unit
def test_a_warm_interpreter_runs_a_module_as_python_dash_m_does(tmp_path):
    (tmp_path / "probe_entry.py").write_text(PROBE)
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(tmp_path), PROBE="x")
    zygote = kfp_local.Zygote(["probe_entry"], env, tmp_path, tmp_path / "zygote.log")
    try:
        assert zygote.ready() >= 1
        for code in (0, 3):
            fresh = subprocess.run([sys.executable, "-m", "probe_entry", str(code), "{{a b}}"], cwd=work,
                                   env=dict(env, PROBE=f"run {code}"), capture_output=True, text=True,
                                   stdin=subprocess.DEVNULL)
            log = tmp_path / f"warm-{code}.log"
            warm = zygote.run("probe_entry", [str(code), "{{a b}}"], dict(env, PROBE=f"run {code}"), work, log)
            assert (warm, log.read_text()) == (fresh.returncode, fresh.stdout + fresh.stderr)
            seen = json.loads(log.read_text().splitlines()[0])
            assert seen["name"] == "__main__" and seen["argv"] == [str(code), "{{a b}}"] and seen["cwd"] == str(work)
            assert seen["probe"] == f"run {code}" and log.read_text().splitlines()[1:] == ["thread done", "atexit ran"]
        with pytest.raises(NotImplementedError):
            zygote.run("another_module", [], env, work, tmp_path / "x.log")
    finally:
        zygote.close()
    assert zygote.process.returncode == 0


@pytest.mark.unit
def test_only_python_dash_m_commands_are_taken():
    assert kfp_local.python_module(["python", "-m", "tfx.x"]) == "tfx.x"
    for command in (["sh", "-c", "x"], ["python", "x.py"], ["python", "-m", "a", "b"]):
        with pytest.raises(NotImplementedError):
            kfp_local.python_module(command)
