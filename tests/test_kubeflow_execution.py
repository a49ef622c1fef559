"""The compiled Kubeflow spec, executed here task by task through its own container commands.

``spec_runner`` plays open-source KFP's backend (executor input, output handling, the cache),
here with warm interpreters (``kfp_local.ZygoteLauncher``) so that the suite stays fast; the
same spec in fresh containers of the built image is ``make kubeflow-e2e``.

The spec is compiled with ``--beam-arg`` sending every Beam job to an ``emotion-ai
beam-worker-pool`` in another process (PortableRunner, EXTERNAL environment), as a Flink or
Spark cluster runs them: the workers must import everything the jobs need themselves.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import kfp_local
import pytest
from click.testing import CliRunner
from conftest import beam_worker_pool, textured_pixels

from emotion_ai.components.branches import BRANCHES
from emotion_ai.kubeflow import spec_runner
from emotion_ai.kubeflow.runner import task_name
from emotion_ai.pipelines.cli import main


@pytest.mark.e2e
@pytest.mark.heaviest
def test_the_compiled_spec_runs_task_by_task_until_both_models_are_pushed(tiny_data, tmp_path):
    root = tmp_path / "bucket" / "emotion-ai"  # stands in for gs://bucket/emotion-ai
    shutil.copytree(tiny_data["dir"], root / "data")  # the raw CSVs, both formats side by side
    pixels = textured_pixels(48)
    (root / "data" / "emotion_extra.csv").write_text(f"emotion,pixels\n1,{pixels}\nx,{pixels}\n")
    spec_path = tmp_path / "spec.yaml"
    env = spec_runner.process_environment()
    with beam_worker_pool(tmp_path) as pool:
        beam = [f"--beam-arg={arg}" for arg in pool["args"]]
        compiled = CliRunner().invoke(main, ["compile-kubeflow", "--out", str(spec_path), "--pipeline-root", str(root),
                                             "--profile", "smoke", "--image", "local/emotion-ai:test", *beam])
        assert compiled.exit_code == 0, compiled.output
        spec = spec_runner.load_spec(spec_path)
        tasks = spec["root"]["dag"]["tasks"]
        fingerprints = {task_name(b.component_id("DataFingerprint")) for b in BRANCHES}
        served_models = {task_name(b.component_id("ServedModel")) for b in BRANCHES}
        example_gens = {task_name(b.component_id("CsvExampleGen")) for b in BRANCHES}
        with kfp_local.ZygoteLauncher(spec, env, tmp_path, tmp_path / "zygotes") as launcher:
            run = spec_runner.LocalRun(spec, "run-1", launcher)
            results = run.run()
            # The next run, on the same data, as open-source KFP runs it: the fingerprints and
            # what is served are looked at again (never cached), the examples come from the
            # cache, and the baseline is the version the repository now serves (each task in a
            # process of its own, as a pod; checked below).
            again = spec_runner.LocalRun(spec, "run-2", launcher)
            baselines = again.run(only=fingerprints | served_models | example_gens)
        pool_log = pool["log"].read_text()
    # Each Beam job ran in a worker of the pool, which imports the project's modules itself:
    # 2 ExampleGens, 2 StatisticsGens, 2 Transforms, 2 Evaluators (their custom TFMA metrics).
    assert pool_log.count("starting worker") >= 8, pool_log[-3000:]
    assert set(run.order) == set(tasks) and len(run.order) == len(tasks), "every task ran, once"
    assert run.cached == [], "a first run: nothing in the cache"
    position = {name: i for i, name in enumerate(run.order)}
    for name, task in tasks.items():
        assert all(position[up] < position[name] for up in spec_runner.upstreams(task)), name
    repo = root / "model_repository"
    for branch in BRANCHES:
        def cid(kind, branch=branch):
            return task_name(branch.component_id(kind))
        examples = results[cid("CsvExampleGen")].artifacts["examples"][0]
        rows = {"keypoints": 80, "emotion": 120 + 2}[branch.name]
        assert examples["metadata"]["rows_read"] == rows, "every row was checked inside the DAG"
        assert examples["metadata"]["rows_rejected"] == (branch.name == "emotion")
        # what the ExampleGen read is what its DataFingerprint task fingerprinted (its cache key)
        assert examples["metadata"]["data_fingerprint"] == results[cid("DataFingerprint")].parameters["fingerprint"]
        if branch.name == "emotion":
            assert "emotion_extra.csv,3,emotion: label 'x' is not an integer" in (
                Path(examples["uri"]) / "rejected_rows.csv").read_text()
        served = results[cid("ServedModel")].artifacts["baseline"][0]["metadata"]
        assert served["served_version"] == 0, "a first run: nothing served, no baseline"
        blessing = results[cid("Evaluator")].artifacts["blessing"][0]["metadata"]
        assert blessing["blessed"] == 1 and "baseline_model" not in blessing
        pushed = results[cid("Pusher")].artifacts["pushed_model"][0]["metadata"]
        assert pushed["pushed"] == 1, pushed
        version = pushed["pushed_version"]
        assert pushed["pushed_destination"] == f"{repo}/{branch.name}/{version}"
        assert (repo / branch.name / version / "saved_model.pb").is_file()
        assert (run.run_root / cid("Evaluator") / "evaluation").is_dir()
    assert (repo / "models.config").is_file()
    # The record of the run, made inside the DAG as on the local runner.
    report = Path(results["runreport"].artifacts["report"][0]["uri"])
    assert "<h2>Thresholds" in (report / "report.html").read_text()
    figures = json.loads((report / "summary.json").read_text())
    assert {n: b["pushed_version"] for n, b in figures["branches"].items()} == {
        b.name: results[task_name(b.component_id("Pusher"))].artifacts["pushed_model"][0]["metadata"]["pushed_version"]
        for b in BRANCHES}
    assert figures["branches"]["emotion"]["rows_rejected"] == 1 and figures["context"]["pipeline_root"] == str(root)
    tracked = results["trackrun"].artifacts["mlflow_run"][0]["metadata"]
    assert tracked["tracked"] == 1 and (root / "mlflow.db").is_file(), tracked

    # The second run (above): only the uncached tasks ran.
    assert set(again.cached) == example_gens and set(again.executed) == fingerprints | served_models
    for name in example_gens:
        assert baselines[name].artifacts == results[name].artifacts, "the same examples, the same artifact ids"
    for branch in BRANCHES:
        served = baselines[task_name(branch.component_id("ServedModel"))].artifacts["baseline"][0]
        pushed = results[task_name(branch.component_id("Pusher"))].artifacts["pushed_model"][0]["metadata"]
        assert served["metadata"]["served_version"] == int(pushed["pushed_version"])
        assert (again.run_root / task_name(branch.component_id("ServedModel")) / "baseline" / "Format-Serving"
                / "saved_model.pb").is_file()
