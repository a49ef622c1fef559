"""The model repository Pusher: atomic versions, no duplicate pushes, retention."""
from __future__ import annotations

from components.repository_pusher import push_atomically, versions


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
