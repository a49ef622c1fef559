"""The Kubeflow V2 spec compiled from the one pipeline definition."""
from __future__ import annotations

import json

from click.testing import CliRunner

from pipelines.cli import main

BRANCH_CHAIN = ["CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform", "Trainer",
                "Evaluator", "Pusher"]


def test_compiled_spec_has_both_branches_wired_with_the_image(tmp_path):
    out = tmp_path / "spec.json"
    result = CliRunner().invoke(main, ["compile-kubeflow", "--out", str(out), "--image", "registry.example/emotion:1.2",
                                       "--pipeline-root", "gs://bucket/root", "--profile", "smoke",
                                       "--beam-arg", "--runner=DataflowRunner"])
    assert result.exit_code == 0, result.output
    spec = json.loads(out.read_text())
    tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
    for branch in ("keypoints", "emotion"):
        for kind in BRANCH_CHAIN:
            assert f"{kind}_{branch}" in tasks
        deps = {k: set(v.get("dependentTasks", [])) for k, v in tasks.items()}
        assert f"CsvExampleGen_{branch}" in deps[f"StatisticsGen_{branch}"]
        assert f"SchemaGen_{branch}" in deps[f"Transform_{branch}"]
        assert f"Transform_{branch}" in deps[f"Trainer_{branch}"]
        assert f"Trainer_{branch}" in deps[f"Evaluator_{branch}"]
        assert f"Evaluator_{branch}" in deps[f"Pusher_{branch}"]
        # The baseline resolver of a branch never reads the other branch's models.
        other = "emotion" if branch == "keypoints" else "keypoints"
        resolver = json.dumps({k: v for k, v in tasks.items() if k.startswith(f"LatestBlessedModelResolver_{branch}")})
        assert f"Trainer_{other}" not in resolver
    executors = spec["pipelineSpec"]["deploymentSpec"]["executors"]
    images = {e["container"]["image"] for e in executors.values() if "container" in e}
    assert images == {"registry.example/emotion:1.2"}
    assert "gs://bucket/root" in json.dumps(spec["runtimeConfig"]) or "gs://bucket/root" in out.read_text()
    assert "--runner=DataflowRunner" in out.read_text()
