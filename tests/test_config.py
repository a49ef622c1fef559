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


def test_the_sample_profile_is_the_production_one_with_short_schedules():
    import dataclasses

    full, sample = config.PROFILES["full"], config.PROFILES[config.SAMPLE_PROFILE]
    assert not sample.production and config.model_repo_for(sample) != config.MODEL_REPO
    for branch in BRANCHES:
        mine, theirs = sample.params_for(branch), full.params_for(branch)
        assert mine.epochs < theirs.epochs and mine.warmup_epochs < mine.epochs, branch.name
        # Everything else about the networks and their recipe is the production profile's.
        assert dataclasses.replace(mine, epochs=theirs.epochs, warmup_epochs=theirs.warmup_epochs) == theirs
        assert f"{branch.name} {mine.epochs} epochs" in sample.about
    same = dataclasses.replace(sample, name=full.name, params=full.params, production=True, about=full.about)
    assert same == full, "gates, split, sample sizes and the rest as in production"


def test_a_run_without_a_profile_takes_sample_only_for_the_embedded_sample_data(tmp_path):
    from emotion_ai.data import generator
    from emotion_ai.pipelines.local_runner import choose_profile

    def chosen(*args):
        return choose_profile(*args)[0].name

    assert chosen(tmp_path / "empty") == config.SAMPLE_PROFILE  # generated there by the run
    keypoints, emotion = generator.generate(tmp_path / "data", 4, 6, seed=3)
    assert chosen(tmp_path / "data") == config.SAMPLE_PROFILE
    profile, why = choose_profile(tmp_path / "data", {"keypoints": [keypoints], "emotion": [emotion]})
    assert profile.name == config.DEFAULT_PROFILE and "command line" in why  # named files are the user's
    (tmp_path / "data" / "more").mkdir()
    generator.write_emotion_csv(tmp_path / "data" / "more" / "emotion.csv", 6, seed=4)  # not recorded: the user's
    assert chosen(tmp_path / "data") == config.DEFAULT_PROFILE
    (tmp_path / "data" / "more" / "emotion.csv").unlink()
    emotion.write_text(emotion.read_text() + emotion.read_text().splitlines()[1] + "\n")  # edited since
    profile, why = choose_profile(tmp_path / "data")
    assert profile.name == config.DEFAULT_PROFILE and "your data" in why
