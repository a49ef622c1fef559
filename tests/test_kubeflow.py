"""The Kubeflow V2 spec compiled from the one pipeline definition."""
from __future__ import annotations

import json

from click.testing import CliRunner

from emotion_ai.components.branches import BRANCHES
from emotion_ai.pipelines.cli import main

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


def test_kserve_manifests_parse_and_point_at_the_pushed_models(tmp_path):
    import yaml

    from emotion_ai.kubeflow import kserve

    committed = list(yaml.safe_load_all(kserve.MANIFEST_FILE.read_text()))
    assert committed == list(yaml.safe_load_all(kserve.render()))  # the committed file is current
    out = tmp_path / "isvc.yaml"
    result = CliRunner().invoke(main, ["kserve-manifests", "--model-repo", "s3://models/emotion-ai/model_repository/",
                                       "--namespace", "team-a", "--out", str(out)])
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(out.read_text()))
    assert [d["kind"] for d in docs] == ["InferenceService", "InferenceService"]
    by_model = {d["metadata"]["labels"]["emotion-ai/model"]: d for d in docs}
    assert set(by_model) == {b.name for b in BRANCHES}
    for model, doc in by_model.items():
        assert doc["apiVersion"] == "serving.kserve.io/v1beta1"
        assert doc["metadata"]["name"] == f"emotion-ai-{model}" and doc["metadata"]["namespace"] == "team-a"
        predictor = doc["spec"]["predictor"]["model"]
        assert predictor["modelFormat"]["name"] == "tensorflow"
        # The base path the Pusher writes versions under: <repo>/<model>/<version>/
        assert predictor["storageUri"] == f"s3://models/emotion-ai/model_repository/{model}"


def test_dockerfile_installs_the_pinned_stack_and_the_project():
    """The image copies every folder setup.py maps under ``emotion_ai`` before ``pip install .``,
    and checks the module files import under their installed names."""
    import ast
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    text = (root / "kubeflow" / "Dockerfile").read_text()
    tree = ast.parse((root / "setup.py").read_text())
    folders = ast.literal_eval(next(n for n in tree.body if isinstance(n, ast.Assign)
                                    and n.targets[0].id == "FOLDERS").value)
    copied = set(re.findall(r"^COPY (\w+)/ \1/$", text, re.M))
    assert set(folders) <= copied, f"setup.py maps {sorted(set(folders) - copied)} but the image does not copy them"
    install = text.index("tools/install_pinned.sh uv --system")
    project = text.index("uv pip install --system --no-cache --no-deps .")
    assert install < project and all(text.index(f"COPY {f}/") < project for f in folders)
    check = re.search(r'python -c "import ([^"]+)"', text).group(1)
    for module in ("emotion_ai.components.keypoints.trainer", "emotion_ai.components.emotion.trainer"):
        assert module in check
