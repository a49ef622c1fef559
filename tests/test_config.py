"""The configuration module: per-profile repositories and per-branch code fingerprints."""
from __future__ import annotations

import shutil

from emotion_ai.components.branches import BRANCHES
from emotion_ai.components.common import views
from emotion_ai.pipelines import config


def test_editing_one_branch_changes_only_that_branchs_fingerprint(tmp_path, monkeypatch):
    shutil.copytree(config.COMPONENTS_DIR, tmp_path / "components")
    monkeypatch.setattr(config, "COMPONENTS_DIR", tmp_path / "components")
    before = {b: config.code_fingerprint(b) for b in ("keypoints", "emotion")}
    model = tmp_path / "components" / "emotion" / "model.py"
    model.write_text(model.read_text() + "\n# an edit\n")
    after = {b: config.code_fingerprint(b) for b in ("keypoints", "emotion")}
    assert after["keypoints"] == before["keypoints"]
    assert after["emotion"] != before["emotion"]
    common = tmp_path / "components" / "common" / "resnet.py"
    common.write_text(common.read_text() + "\n# shared code changes both\n")
    assert all(config.code_fingerprint(b) != after[b] for b in ("keypoints", "emotion"))
    leaf = tmp_path / "components" / "spec.py"
    leaf.write_text(leaf.read_text() + "\n# the leaf's names and parameters are every branch's\n")
    assert all(config.code_fingerprint(b) != before[b] for b in ("keypoints", "emotion"))


def test_only_the_production_profile_uses_the_default_repository():
    assert config.model_repo_for(config.PROFILES["full"]) == config.MODEL_REPO
    for name, profile in config.PROFILES.items():
        if not profile.production:
            assert config.model_repo_for(profile).name == f"{config.MODEL_REPO.name}-{name}"


def test_the_production_profile_serves_each_network_in_one_pass():
    # Issue 19: each served graph runs its network once per image (latency, batch throughput).
    full = config.PROFILES["full"]
    assert BRANCHES
    for branch in BRANCHES:
        params = full.params[branch.name]
        assert views.served_views(params, branch.image_size) == [(False, (0.0, 0.0))], branch.name
