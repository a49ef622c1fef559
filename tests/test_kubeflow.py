"""The Kubeflow V2 spec compiled from the one pipeline definition."""
from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from emotion_ai.components.branches import BRANCHES
from emotion_ai.pipelines.cli import main

BRANCH_CHAIN = ["CsvExampleGen", "ImportSchemaGen", "StatisticsGen", "ExampleValidator", "DataDrift", "DataGate",
                "Transform", "Trainer",
                "ServedModel", "Evaluator", "Pusher"]
RECORD = ["RunReport", "TrackRun"]  # after both branches


def test_compiled_spec_is_a_bare_pipeline_spec_kfp_loads_with_both_branches_on_the_image(tmp_path):
    import yaml
    from kfp import components

    out = tmp_path / "spec.yaml"
    result = CliRunner().invoke(main, ["compile-kubeflow", "--out", str(out), "--image", "registry.example/emotion:1.2",
                                       "--pipeline-root", "gs://bucket/root", "--profile", "smoke",
                                       "--beam-arg", "--runner=DataflowRunner", "--trainer-cpu", "4",
                                       "--trainer-memory", "16G", "--trainer-gpus", "1",
                                       "--tracking-uri", "http://mlflow.mlflow:5000"])
    assert result.exit_code == 0, result.output
    spec = yaml.safe_load(out.read_text())
    assert spec["schemaVersion"] == "2.1.0" and "pipelineInfo" in spec and "runtimeConfig" not in spec
    assert spec["defaultPipelineRoot"] == "gs://bucket/root"
    loaded = components.load_component_from_file(str(out))  # kfp's own loader
    assert set(loaded.pipeline_spec.root.dag.tasks) == set(spec["root"]["dag"]["tasks"])
    tasks = spec["root"]["dag"]["tasks"]
    assert len(tasks) == len(BRANCH_CHAIN) * len(BRANCHES) + len(RECORD)
    executors = spec["deploymentSpec"]["executors"]
    assert not [name for name, e in executors.items() if set(e) - {"container"}], "only container tasks"
    assert {e["container"]["image"] for e in executors.values()} == {"registry.example/emotion:1.2"}
    for branch in ("keypoints", "emotion"):
        other = "emotion" if branch == "keypoints" else "keypoints"
        deps = {k: set(v.get("dependentTasks", [])) for k, v in tasks.items()}
        for upstream, task in [("CsvExampleGen", "StatisticsGen"), ("ImportSchemaGen", "StatisticsGen"),
                               ("ImportSchemaGen", "ExampleValidator"), ("StatisticsGen", "DataGate"),
                               ("ExampleValidator", "DataGate"), ("DataGate", "Transform"), ("DataGate", "Trainer"),
                               ("Transform", "Trainer"),
                               ("Trainer", "Evaluator"), ("ServedModel", "Evaluator"), ("Evaluator", "Pusher")]:
            assert deps[f"{task}_{branch}"] >= {f"{upstream}_{branch}"}
        assert not any(d.endswith(other) for d in deps[f"Evaluator_{branch}"]), "a baseline of this branch only"
        served = tasks[f"ServedModel_{branch}"]
        assert served["cachingOptions"] == {"enableCache": False}, "what is served changes between runs"
        parameters = {k: v["runtimeValue"]["constant"] for k, v in served["inputs"]["parameters"].items()}
        assert parameters["model"] == branch and parameters["model_repo"] == "gs://bucket/root/model_repository"
        component = spec["components"][tasks[f"Trainer_{branch}"]["componentRef"]["name"]]
        resources = executors[component["executorLabel"]]["container"]["resources"]
        assert resources["resourceCpuLimit"] == "4" and resources["cpuLimit"] == 4.0
        assert resources["resourceMemoryLimit"] == "16G" and resources["memoryLimit"] == 16.0
        assert resources["accelerator"]["type"] == "nvidia.com/gpu" and resources["accelerator"]["count"] == "1"
    assert "--runner=DataflowRunner" in out.read_text()
    # The report and the tracking run inside the DAG, after both Pushers, never from KFP's cache.
    deps = {k: set(v.get("dependentTasks", [])) for k, v in tasks.items()}
    assert deps["RunReport"] >= {f"Pusher_{b.name}" for b in BRANCHES} and deps["TrackRun"] >= {"RunReport"}
    for name in RECORD:
        assert tasks[name]["cachingOptions"] == {"enableCache": False}, name
    tracking = {k: v["runtimeValue"]["constant"] for k, v in tasks["TrackRun"]["inputs"]["parameters"].items()}
    assert tracking["tracking_uri"] == "http://mlflow.mlflow:5000"


def test_the_default_image_is_tagged_with_the_checkout_not_latest(tmp_path):
    import subprocess

    from emotion_ai.kubeflow import runner

    commit = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    assert commit and runner.default_image() == f"{runner.IMAGE_REPOSITORY}:{commit}"
    bad = CliRunner().invoke(main, ["compile-kubeflow", "--out", str(tmp_path / "s.yaml"), "--pipeline-root",
                                    "gs://b/r", "--trainer-memory", "16 gigs"])
    assert bad.exit_code == 1 and "is not a Kubernetes quantity" in bad.output


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


def test_the_image_needs_no_glibc_shim_and_boots_beam_workers():
    """Debian 13 (glibc 2.41 >= the 2.38 the manylinux_2_39 wheels need): no compiler for a
    shim; Beam's boot entry point of the pinned Beam version, so the image can serve as
    ``--sdk_container_image``."""
    import re

    root = Path(__file__).resolve().parent.parent
    text = (root / "kubeflow" / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert bases[-1] == "python:3.11-slim-trixie"
    assert "g++" not in text and "apt-get" not in text
    beam = re.search(r"^apache-beam==(\S+)$", (root / "constraints.txt").read_text(), re.M).group(1)
    assert f"apache/beam_python3.11_sdk:{beam}" in bases[0]
    assert "COPY --from=beam /opt/apache/beam /opt/apache/beam" in text
    assert text.rstrip().endswith('ENTRYPOINT ["/opt/apache/beam/boot"]')
