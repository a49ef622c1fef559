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
