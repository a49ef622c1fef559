"""Open-source KFP's cache, as ``spec_runner`` computes it, over the compiled spec: new data
re-runs the branch that reads it; the same data keeps the cache."""
from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from emotion_ai.components.branches import BRANCHES
from emotion_ai.kubeflow import data_fingerprint, spec_runner
from emotion_ai.pipelines.cli import main


class InProcess:
    """Runs the DataFingerprint tasks' entry point in this process (the only tasks asked for)."""

    def launch(self, task, container, args, log) -> int:
        assert container["command"][-1] == "emotion_ai.kubeflow.data_fingerprint", task
        data_fingerprint.main(args)
        return 0


def _example_gen_keys(spec, run_id) -> dict[str, str]:
    run = spec_runner.LocalRun(spec, run_id, InProcess())
    tasks = spec["root"]["dag"]["tasks"]
    run.run(only={name for name in tasks if name.startswith("datafingerprint-")})
    keys = {}
    for branch in BRANCHES:
        name = f"csvexamplegen-{branch.name}"
        component = spec["components"][tasks[name]["componentRef"]["name"]]
        container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
        assert tasks[name]["cachingOptions"] == {"enableCache": True}
        key = spec_runner.cache_key(run.executor_input(name, tasks[name], component), component, container)
        keys[branch.name] = spec_runner.cache_fingerprint(key)
    return keys


def test_example_gen_cache_keys_change_with_the_data_and_only_with_it(tiny_data, tmp_path):
    root = tmp_path / "bucket"
    shutil.copytree(tiny_data["dir"], root / "data")
    out = tmp_path / "spec.yaml"
    result = CliRunner().invoke(main, ["compile-kubeflow", "--out", str(out), "--pipeline-root", str(root),
                                       "--profile", "smoke", "--image", "registry.example/e:1"])
    assert result.exit_code == 0, result.output
    spec = spec_runner.load_spec(out)
    for name, task in spec["root"]["dag"]["tasks"].items():
        if name.startswith("datafingerprint-"):
            assert not task.get("cachingOptions", {}).get("enableCache"), "it must look at the data every run"

    first = _example_gen_keys(spec, "run-1")
    assert _example_gen_keys(spec, "run-2") == first, "same data: the cache is kept"
    emotion_csv = root / "data" / tiny_data["emotion"].name
    lines = emotion_csv.read_text().splitlines(keepends=True)
    emotion_csv.write_text("".join(lines + lines[1:2]))  # one more expression row
    third = _example_gen_keys(spec, "run-3")
    assert third["emotion"] != first["emotion"], "new expression data re-runs the expression branch"
    assert third["keypoints"] == first["keypoints"], "the key-point branch keeps its cache"
    (root / "data" / "more").mkdir()
    shutil.copy(tiny_data["dir"] / tiny_data["keypoints"].name, root / "data" / "more" / "keypoints_2.csv")
    assert _example_gen_keys(spec, "run-4")["keypoints"] != first["keypoints"], "a new file in a sub-folder counts"


@pytest.mark.unit
def test_the_fingerprint_is_taken_over_json_as_go_writes_it():
    """cache.go: protojson, then encoding/json (keys sorted, compact, HTML characters escaped)."""
    key = {"containerSpec": {"image": "i", "cmdArgs": ["<a&b>"]}, "inputParameterValues": {"n": 6.0, "s": "é"}}
    assert spec_runner._go_json(key) == (
        '{"containerSpec":{"cmdArgs":["\\u003ca\\u0026b\\u003e"],"image":"i"},"inputParameterValues":{"n":6,"s":"é"}}')
    import hashlib

    assert spec_runner.cache_fingerprint(key) == hashlib.sha256(spec_runner._go_json(key).encode()).hexdigest()
