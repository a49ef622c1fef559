"""The model repository Pusher: atomic versions, no duplicate pushes, retention."""
from __future__ import annotations

from emotion_ai.components.repository_pusher import push_atomically, versions


def _model(path, content):
    (path / "variables").mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(content)
    (path / "variables" / "variables.index").write_bytes(content[::-1])
    return path


def test_push_skips_a_model_identical_to_the_newest_version(tmp_path):
    repo = tmp_path / "repo" / "emotion"
    a = _model(tmp_path / "a", b"model-a")
    version, pushed = push_atomically(a, repo, keep_versions=3)
    assert pushed and (repo / version / "saved_model.pb").read_bytes() == b"model-a"
    again, pushed_again = push_atomically(_model(tmp_path / "a2", b"model-a"), repo, keep_versions=3)
    assert (again, pushed_again) == (version, False)
    assert versions(repo) == [int(version)]


def test_versions_increase_within_one_second_and_old_ones_are_pruned(tmp_path):
    repo = tmp_path / "repo" / "keypoints"
    pushed = [push_atomically(_model(tmp_path / f"m{i}", f"model-{i}".encode()), repo, keep_versions=2)[0]
              for i in range(4)]
    assert [int(v) for v in pushed] == sorted(int(v) for v in pushed)
    assert len(set(pushed)) == 4
    assert versions(repo) == [int(v) for v in pushed[-2:]]
    assert not [p for p in repo.iterdir() if p.name.startswith(".")], "no staging directory left behind"


def test_push_writes_tf_serving_configs_for_every_model(tmp_path):
    import re

    import yaml

    repo = tmp_path / "model_repository"
    push_atomically(_model(tmp_path / "k", b"k"), repo / "keypoints", keep_versions=2)
    assert re.findall(r'name: "(\w+)"', (repo / "models.config").read_text()) == ["keypoints"]
    push_atomically(_model(tmp_path / "e", b"e"), repo / "emotion", keep_versions=2)
    text = (repo / "models.config").read_text()
    assert re.findall(r'name: "(\w+)"', text) == ["emotion", "keypoints"]
    assert 'base_path: "/models/emotion"' in text and 'model_platform: "tensorflow"' in text
    # TF Serving's own parser reads it: both models, their base paths, the newest version each.
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    parsed = text_format.Parse(text, model_server_config_pb2.ModelServerConfig()).model_config_list.config
    assert [(c.name, c.base_path, c.model_version_policy.latest.num_versions) for c in parsed] == [
        ("emotion", "/models/emotion", 1), ("keypoints", "/models/keypoints", 1)]
    assert "prometheus_config" in (repo / "monitoring.config").read_text()
    assert "max_batch_size { value: 32 }" in (repo / "batching.config").read_text()
    # The compose file serves exactly this repository layout on the standard ports.
    from pathlib import Path

    compose = yaml.safe_load((Path(__file__).parent.parent / "serving" / "docker-compose.yml").read_text())
    service = compose["services"]["tf-serving"]
    assert service["image"].startswith("tensorflow/serving:")
    assert {"8500:8500", "8501:8501"} == set(service["ports"])
    assert "./model_repository:/models:ro" in service["volumes"]
    assert "--model_config_file=/models/models.config" in service["command"]
    assert "--monitoring_config_file=/models/monitoring.config" in service["command"]


def _ram_listing(root):
    from tfx.dsl.io import fileio

    return sorted(str(path)[len(root):] for path, _, files in fileio.walk(root) for path in
                  [f"{path.rstrip('/')}/{f}" for f in files])


def test_the_pusher_writes_through_filesystem_uris_not_into_a_local_folder(tmp_path, monkeypatch):
    """The Executor pushes into a repository on TensorFlow's in-memory ``ram://`` filesystem
    (standing in for ``gs://``): the version, the configs and the owner file are there,
    and nothing lands in a local folder named after the URI (pathlib turns ``gs://b`` into
    ``gs:/b``)."""
    import json
    import uuid

    from tfx.dsl.io import fileio
    from tfx.types import standard_artifacts

    from emotion_ai.components import model_repository
    from emotion_ai.components.repository_pusher import Executor

    monkeypatch.chdir(tmp_path)
    run = uuid.uuid4().hex[:8]
    repo, archive = f"ram://repo-{run}", f"ram://archive-{run}"  # ram:// lists by prefix: no shared one
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "trainer")
    _model(tmp_path / "trainer" / "Format-Serving", b"weights")
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    blessing.set_int_custom_property("blessed", 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = f"{archive}/pushed"
    properties = {"push_destination": json.dumps({"filesystem": {"base_directory": f"{repo}/emotion"}}),
                  "custom_config": json.dumps({"keep_versions": 2, "profile": "smoke"})}
    Executor().Do({"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]}, properties)

    version = pushed.get_string_custom_property("pushed_version")
    assert pushed.get_int_custom_property("pushed") == 1
    assert pushed.get_string_custom_property("pushed_destination") == f"{repo}/emotion/{version}"
    assert model_repository.version_dirs(f"{repo}/emotion") == [int(version)]
    assert _ram_listing(repo) == sorted([
        f"/emotion/{version}/saved_model.pb", f"/emotion/{version}/variables/variables.index",
        "/batching.config", "/models.config", "/monitoring.config", "/repository.json"])
    with fileio.open(f"{repo}/emotion/{version}/saved_model.pb", "rb") as f:
        assert f.read() == b"weights"
    assert model_repository.served_version(repo, "emotion") == (int(version), f"{repo}/emotion/{version}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trainer"], "nothing written to a local 'ram:' folder"
    # A second push of other weights: a newer version; an identical one is not pushed again.
    again = standard_artifacts.PushedModel()
    again.uri = f"{archive}/again"
    Executor().Do({"model": [model], "model_blessing": [blessing]}, {"pushed_model": [again]}, properties)
    assert again.get_int_custom_property("pushed") == 0
    assert again.get_string_custom_property("identical_to_version") == version
    # Another profile's push is refused on the object store too.
    refused = standard_artifacts.PushedModel()
    refused.uri = f"{archive}/refused"
    other = dict(properties, custom_config=json.dumps({"keep_versions": 2, "profile": "full"}))
    Executor().Do({"model": [model], "model_blessing": [blessing]}, {"pushed_model": [refused]}, other)
    assert "belongs to profile 'smoke'" in refused.get_string_custom_property("push_refused")


def test_a_version_on_an_object_store_gets_its_saved_model_last(tmp_path, monkeypatch):
    """No atomic folder rename on an object store: ``saved_model.pb`` (what makes a folder a
    version for ``serve``) is copied after every other file."""
    from tfx.dsl.io import fileio

    from emotion_ai.components import repository_pusher

    order = []
    real_copy = fileio.copy
    monkeypatch.setattr(repository_pusher.fileio, "copy",
                        lambda src, dst, overwrite=False: (order.append(dst.rsplit("/", 1)[-1]),
                                                           real_copy(src, dst, overwrite))[1])
    source = _model(tmp_path / "m", b"m")
    (source / "assets").mkdir()
    (source / "assets" / "vocab.txt").write_text("z")
    (source / "zz_fingerprint.pb").write_bytes(b"f")
    push_atomically(str(source), "ram://ordered/emotion", keep_versions=1)
    assert order[-1] == "saved_model.pb" and len(order) == 4, order
