"""The Kubeflow V2 spec compiled from the one pipeline definition."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from emotion_ai.components.branches import BRANCHES
from emotion_ai.kubeflow.runner import task_name
from emotion_ai.pipelines.cli import main

BRANCH_CHAIN = ["DataFingerprint", "CsvExampleGen", "ImportSchemaGen", "StatisticsGen", "ExampleValidator",
                "DataDrift", "DataGate", "Transform", "Trainer",
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
    assert set(tasks) == {task_name(f"{kind}_{b.name}") for kind in BRANCH_CHAIN for b in BRANCHES} | {
        task_name(r) for r in RECORD}
    executors = spec["deploymentSpec"]["executors"]
    assert not [name for name, e in executors.items() if set(e) - {"container"}], "only container tasks"
    trainers = {spec["components"][tasks[f"trainer-{b.name}"]["componentRef"]["name"]]["executorLabel"]
                for b in BRANCHES}
    assert {e["container"]["image"] for n, e in executors.items() if n not in trainers} == {
        "registry.example/emotion:1.2"}
    # Trainers asking for a GPU run the GPU variant of the image (`make image IMAGE_VARIANT=gpu`).
    assert {executors[n]["container"]["image"] for n in trainers} == {"registry.example/emotion:1.2-gpu"}
    for branch in ("keypoints", "emotion"):
        other = "emotion" if branch == "keypoints" else "keypoints"
        deps = {k: set(v.get("dependentTasks", [])) for k, v in tasks.items()}
        for upstream, task in [("DataFingerprint", "CsvExampleGen"), ("CsvExampleGen", "StatisticsGen"),
                               ("ImportSchemaGen", "StatisticsGen"),
                               ("ImportSchemaGen", "ExampleValidator"), ("StatisticsGen", "DataGate"),
                               ("ExampleValidator", "DataGate"), ("DataGate", "Transform"), ("DataGate", "Trainer"),
                               ("Transform", "Trainer"),
                               ("Trainer", "Evaluator"), ("ServedModel", "Evaluator"), ("Evaluator", "Pusher")]:
            assert deps[task_name(f"{task}_{branch}")] >= {task_name(f"{upstream}_{branch}")}
        assert not any(d.endswith(other) for d in deps[f"evaluator-{branch}"]), "a baseline of this branch only"
        served = tasks[f"servedmodel-{branch}"]
        assert served["cachingOptions"] == {"enableCache": False}, "what is served changes between runs"
        parameters = {k: v["runtimeValue"]["constant"] for k, v in served["inputs"]["parameters"].items()}
        assert parameters["model"] == branch and parameters["model_repo"] == "gs://bucket/root/model_repository"
        component = spec["components"][tasks[f"trainer-{branch}"]["componentRef"]["name"]]
        resources = executors[component["executorLabel"]]["container"]["resources"]
        assert resources["resourceCpuLimit"] == "4" and resources["cpuLimit"] == 4.0
        assert resources["resourceMemoryLimit"] == "16G" and resources["memoryLimit"] == 16.0
        assert resources["accelerator"]["type"] == "nvidia.com/gpu" and resources["accelerator"]["count"] == "1"
    assert "--runner=DataflowRunner" in out.read_text()
    # The report and the tracking run inside the DAG, after both Pushers, never from KFP's cache.
    deps = {k: set(v.get("dependentTasks", [])) for k, v in tasks.items()}
    assert deps["runreport"] >= {f"pusher-{b.name}" for b in BRANCHES} and deps["trackrun"] >= {"runreport"}
    for name in RECORD:
        assert tasks[task_name(name)]["cachingOptions"] == {"enableCache": False}, name
    tracking = {k: v["runtimeValue"]["constant"] for k, v in tasks["trackrun"]["inputs"]["parameters"].items()}
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
        # served as /v1/models/<model>:predict, the repository's name, on KServe as on `serve`
        assert doc["metadata"]["name"] == model and doc["metadata"]["namespace"] == "team-a"
        predictor = doc["spec"]["predictor"]["model"]
        assert predictor["modelFormat"]["name"] == "tensorflow"
        # The base path the Pusher writes versions under: <repo>/<model>/<version>/
        assert predictor["storageUri"] == f"s3://models/emotion-ai/model_repository/{model}"


def test_deploy_kserve_rolls_each_service_out_to_the_version_the_repository_serves(tmp_path):
    """KServe copies ``storageUri`` once per pod: a rollout names the served version's own
    release folder, so each push (or rollback) is a new revision, with a canary share if asked."""
    import yaml

    from emotion_ai.components import model_repository

    repo = tmp_path / "repo"
    for branch in BRANCHES:
        for version in (100, 200):
            folder = repo / branch.name / str(version)
            (folder / "variables").mkdir(parents=True)
            (folder / "saved_model.pb").write_bytes(f"{branch.name} {version}".encode())
            (folder / "variables" / "variables.index").write_bytes(b"i")
    model_repository.write_configs(str(repo))

    def rollout(*args):
        result = CliRunner().invoke(main, ["deploy-kserve", "--model-repo", str(repo), *args])
        assert result.exit_code == 0, result.output
        return {d["metadata"]["name"]: d for d in yaml.safe_load_all(result.output)}

    docs = rollout()
    assert set(docs) == {b.name for b in BRANCHES}
    for model, doc in docs.items():
        uri = doc["spec"]["predictor"]["model"]["storageUri"]
        assert uri == f"{repo}/.kserve-releases/{model}-200"
        assert doc["metadata"]["labels"]["emotion-ai/version"] == "200"
        assert (Path(uri) / "200" / "saved_model.pb").read_bytes() == f"{model} 200".encode()
        assert [p.name for p in Path(uri).iterdir()] == ["200"], "TF Serving's base path: that version only"
        assert "canaryTrafficPercent" not in doc["spec"]["predictor"]
    assert model_repository.served_version(str(repo), "emotion")[0] == 200, "the repository itself is untouched"

    model_repository.write_configs(str(repo), pins={"emotion": 100})  # `emotion-ai rollback emotion --version 100`
    docs = rollout("--model", "emotion", "--canary-percent", "10", "--namespace", "team-a")
    (doc,) = docs.values()
    assert doc["spec"]["predictor"]["model"]["storageUri"] == f"{repo}/.kserve-releases/emotion-100"
    assert doc["spec"]["predictor"]["canaryTrafficPercent"] == 10 and doc["metadata"]["namespace"] == "team-a"

    bad = CliRunner().invoke(main, ["deploy-kserve", "--model-repo", str(repo), "--model", "faces"])
    assert bad.exit_code == 1 and "choose from keypoints, emotion" in bad.output


def _compile(tmp_path, *args, name="spec.yaml"):
    out = tmp_path / name
    result = CliRunner().invoke(main, ["compile-kubeflow", "--out", str(out), "--image", "registry.example/e:1",
                                       "--pipeline-root", str(tmp_path / "root"), "--profile", "smoke", *args])
    return result, out


def test_every_task_component_and_executor_name_passes_argo(tmp_path):
    """KFP's backend hands spec names to Argo unchanged (argocompiler/argo.go ``templateName``),
    and run creation validates the workflow with Argo's rule (workflow/validate/validate.go):
    ``[a-zA-Z0-9][-a-zA-Z0-9]*``, at most 128 characters, no leading digit with ``depends``,
    and KFP adds ``<task>-driver`` beside each task."""
    import re

    import yaml

    result, out = _compile(tmp_path)
    assert result.exit_code == 0, result.output
    spec = yaml.safe_load(out.read_text())
    names = [*spec["root"]["dag"]["tasks"], *spec["components"], *spec["deploymentSpec"]["executors"],
             *(t["taskInfo"]["name"] for t in spec["root"]["dag"]["tasks"].values())]
    assert len(names) == 4 * len(spec["root"]["dag"]["tasks"])
    refused = [n for n in names + [f"{t}-driver" for t in spec["root"]["dag"]["tasks"]]
               if not re.fullmatch(r"[a-zA-Z][-a-zA-Z0-9]*", n) or len(n) > 128]
    assert not refused, refused
    # as kfp's SDK names them: task, comp-<task>, exec-<task>
    for name, task in spec["root"]["dag"]["tasks"].items():
        component = task["componentRef"]["name"]
        assert component == f"comp-{name}" and spec["components"][component]["executorLabel"] == f"exec-{name}"


def test_no_secret_is_compiled_into_the_spec_credentials_come_from_a_kubernetes_secret(tmp_path):
    import yaml

    token = "s3cr3t-t0ken-9f8e"
    refused, out = _compile(tmp_path, "--tracking-uri", f"https://alice:{token}@mlflow.example:5000")
    assert refused.exit_code == 1 and not out.exists()
    lines = refused.output.strip().splitlines()
    assert len(lines) == 1 and "carries credentials" in lines[0] and token not in refused.output
    result, out = _compile(tmp_path, "--tracking-uri", "https://mlflow.example:5000",
                           "--secret-env", "mlflow-auth:token=MLFLOW_TRACKING_TOKEN",
                           "--secret-env", "mlflow-auth:user=MLFLOW_TRACKING_USERNAME",
                           "--image-pull-secret", "registry-auth", "--node-selector", "pool=pipelines",
                           "--trainer-node-selector", "cloud.google.com/gke-accelerator=nvidia-l4")
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert token not in text and "alice" not in text
    spec, platform = yaml.safe_load_all(text)  # the two documents kfp's SDK writes
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == set(spec["deploymentSpec"]["executors"]), "every task's pod"
    for label, config in executors.items():
        assert config["secretAsEnv"] == [{"secretName": "mlflow-auth", "keyToEnv": [
            {"secretKey": "token", "envVar": "MLFLOW_TRACKING_TOKEN"},
            {"secretKey": "user", "envVar": "MLFLOW_TRACKING_USERNAME"}]}]
        assert config["imagePullSecret"] == [{"secretName": "registry-auth"}]
        expected = {"pool": "pipelines"}
        if label.startswith("exec-trainer-"):
            expected["cloud.google.com/gke-accelerator"] = "nvidia-l4"
        assert config["nodeSelector"]["labels"] == expected, label
    from kfp import components

    loaded = components.load_component_from_file(str(out))  # kfp's loader takes both documents
    assert set(loaded.platform_spec.platforms["kubernetes"].deployment_spec.executors) == set(executors)
    bad = CliRunner().invoke(main, ["compile-kubeflow", "--out", str(tmp_path / "x.yaml"), "--pipeline-root", "gs://b",
                                    "--secret-env", "mlflow-auth"])
    assert bad.exit_code == 1 and "is not SECRET:KEY=ENV_VAR" in bad.output


@pytest.mark.unit
def test_beam_args_add_to_the_defaults_and_a_later_value_of_a_flag_wins():
    from emotion_ai.kubeflow.runner import DEFAULT_BEAM_ARGS, merge_beam_args

    merged = merge_beam_args(DEFAULT_BEAM_ARGS, ["--direct_num_workers=8"])
    assert merged == ("--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=8")
    merged = merge_beam_args(DEFAULT_BEAM_ARGS, ["--runner=DataflowRunner", "--project", "p", "--temp_location=gs://t"])
    assert merged[-4:] == ("--runner=DataflowRunner", "--project", "p", "--temp_location=gs://t")
    assert "--runner=FnApiRunner" not in merged and "--direct_num_workers=2" in merged
    with pytest.raises(ValueError, match="is not a --flag"):
        merge_beam_args((), ["oops"])


def test_one_extra_beam_arg_keeps_the_runner_in_the_compiled_spec(tmp_path):
    import yaml

    result, out = _compile(tmp_path, "--beam-arg=--direct_num_workers=8")
    assert result.exit_code == 0, result.output
    spec = yaml.safe_load(out.read_text())
    args = spec["deploymentSpec"]["executors"]["exec-transform-emotion"]["container"]["args"]
    assert "--runner=FnApiRunner" in args and "--direct_num_workers=8" in args and "--direct_num_workers=2" not in args


def test_the_dockerfile_compiles_in_a_build_stage_and_the_final_image_carries_no_compiler():
    """The final stage copies one virtual environment from the build stage and installs only
    the Python runtime: no compiler, headers or build-time certificate reach the image (the
    container run, ``make kubeflow-e2e``, checks the built image itself)."""
    import ast
    import re

    root = Path(__file__).resolve().parent.parent
    text = (root / "kubeflow" / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    by_name = {re.match(r"\S+ AS (\S+)", s).group(1): s for s in stages}
    assert list(by_name) == ["build", "pipeline", "beam", "beam-worker"]
    build, final = by_name["build"], by_name["pipeline"]
    assert "g++" in build and "python3.11-dev" in build and "tools/install_pinned.sh uv" in build
    for absent in ("g++", "-dev", "build-ca", "install_pinned", "uv pip install"):
        assert absent not in final, absent
    assert "COPY --from=build /opt/venv /opt/venv" in final
    tree = ast.parse((root / "setup.py").read_text())
    folders = ast.literal_eval(next(n for n in tree.body if isinstance(n, ast.Assign)
                                    and n.targets[0].id == "FOLDERS").value)
    copied = set(re.findall(r"^COPY (\w+)/ \1/$", build, re.M))
    assert set(folders) <= copied, f"setup.py maps {sorted(set(folders) - copied)} but the image does not copy them"
    check = re.search(r'python -c "import ([^"]+)"', final).group(1)
    for module in ("emotion_ai.components.keypoints.trainer", "emotion_ai.components.emotion.trainer"):
        assert module in check
    beam = re.search(r"^apache-beam==(\S+)$", (root / "constraints.txt").read_text(), re.M).group(1)
    assert stages[2].startswith(f"apache/beam_python3.11_sdk:{beam} AS beam")
    assert by_name["beam-worker"].rstrip().endswith('ENTRYPOINT ["/opt/apache/beam/boot"]')
