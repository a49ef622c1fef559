"""The whole two-branch pipeline on tiny data (smoke profile, 1 epoch).

The session's two shared runs (conftest ``session_runs``) are only read here:
1. first run with a file of malformed rows beside the good data: both models blessed and
   pushed, bad rows counted and reported;
2. the same data again: cached up to the Trainers, nothing new pushed.

Every test that runs the pipeline again does so on its own copy of that root and repository
(``run_copy``), so the tests pass in any order and on any worker:
3. profiles whose gates cannot pass, and a clearly worse candidate: not blessed, not pushed
   (its own figures and the baseline's, side by side);
4. a gate just under the overall accuracy: the cached model is blessed again;
5. a smoke run pointed at a repository the full profile owns: refused, nothing changed;
6. new spans (relabelled, darker), and a warm start.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from emotion_ai.components import csv_rows, model_repository, spec
from emotion_ai.components.branches import EMOTION, KEYPOINTS
from emotion_ai.pipelines import config, local_runner

SMOKE = config.PROFILES["smoke"]


def _versions(repo, model):
    return sorted(p.name for p in (repo / model).iterdir() if p.name.isdigit())


def test_first_run_blesses_and_pushes_both_models(first_run, workspace):
    summary = first_run.summary
    for name in ("keypoints", "emotion"):
        branch = summary.branches[name]
        assert branch.blessed is True, branch.validation_failures
        assert branch.pushed and branch.pushed_version
        assert (workspace["repo"] / name / branch.pushed_version / "saved_model.pb").exists()
    assert all(c.state == "complete" for c in summary.components)
    assert len(summary.components) == 11 * 2 + 2  # eleven per branch, then RunReport and TrackRun
    for name in ("keypoints", "emotion"):
        branch = summary.branches[name]
        # The gate scored the held-out test split, all of it, and there was no baseline yet.
        assert branch.evaluation.split == "test"
        assert branch.evaluation.candidate["example_count"] == branch.split_counts["test"] > 0
        assert sum(branch.split_counts.values()) == branch.rows_staged
        assert branch.evaluation.baseline == {} and all(g.baseline is None for g in branch.evaluation.gates)
        for gate in branch.evaluation.gates:  # TFMA's bootstrap interval around each gated metric
            low, high = branch.evaluation.interval("candidate", gate.metric)
            assert low - (high - low) <= gate.candidate <= high + (high - low), (gate, low, high)
            # Every resample of a split the model gets all right (or all wrong) scores the
            # same: only then is the interval a point (a 1-epoch smoke model can be that bad).
            assert low < high or gate.candidate in (0.0, 1.0), (gate, low, high)
    assert summary.branches["keypoints"].metrics["rmse_px"] > 0
    text = local_runner.format_summary(first_run)
    assert "BLESSED" in text and "pushed: version" in text
    assert "Evaluator on the test split" in text and "baseline: none (nothing of this branch served yet)" in text
    assert "generated sample data (seed 0)" in text and "profile smoke" in text
    # Flat data folders are one span, read whole, and the summary says so.
    assert [s["name"] for s in summary.branches["emotion"].spans] == ["(no span folder)"]
    assert summary.branches["emotion"].spans[0]["rows_read"] == summary.branches["emotion"].rows_read
    assert "spans: (no span folder)" in text


def test_malformed_rows_are_counted_not_fatal(first_run):
    emotion = first_run.summary.branches["emotion"]  # as the ExampleGen recorded it
    assert emotion.rows_rejected == 2
    assert emotion.rows_read == 120 + 3
    assert emotion.rejected_rows.startswith(first_run.summary.component("CsvExampleGen_emotion")
                                            .outputs["examples"][0].uri)  # this run's, not the root's
    assert emotion.rejected_reasons == {"emotion": 1, "expected 2304 pixels (48x48), got 3": 1}
    rejected = Path(emotion.rejected_rows).read_text()
    assert "emotion_extra.csv,3,emotion: label 'x' is not an integer" in rejected
    assert "emotion_extra.csv,4,\"expected 2304 pixels (48x48), got 3\"" in rejected
    assert "2 rejected" in local_runner.format_summary(first_run)


def _encode(array, fmt, size=None, mode="L"):
    import io

    from PIL import Image

    image = Image.fromarray(array).convert(mode)
    if size:
        image = image.resize(size, Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_pushed_models_serve_examples_pixels_and_encoded_images(first_run, workspace):
    kp_version = first_run.summary.branches["keypoints"].pushed_version
    em_version = first_run.summary.branches["emotion"].pushed_version
    kp = model_repository.load(workspace["repo"] / "keypoints" / kp_version)
    em = model_repository.load(workspace["repo"] / "emotion" / em_version)
    assert {"serving_default", "serving_pixels", "serving_examples", "transform_features"} <= set(kp.signatures)
    rows = list(csv_rows.iter_rows("keypoints", workspace["data"] / "keypoints.csv"))[:3]
    pixel_strings = [rec[-1] for _, rec, _, _ in rows]
    examples = [tf.train.Example(features=tf.train.Features(feature={
        "Image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[p.encode()]))})).SerializeToString()
        for p in pixel_strings]
    by_example = kp.signatures["serving_examples"](examples=tf.constant(examples))[spec.KEYPOINTS_OUTPUT].numpy()
    by_pixels = kp.signatures["serving_pixels"](pixels=tf.constant(pixel_strings))[spec.KEYPOINTS_OUTPUT].numpy()
    assert by_example.shape == (3, 30)
    assert np.all(np.isfinite(by_example)) and -48 < by_example.mean() < 144  # pixel units, not normalized
    np.testing.assert_allclose(by_pixels, by_example, atol=1e-4)
    # Encoded images: the same face as PNG at 96x96, and as a colour JPEG stretched to 192x144.
    face = np.asarray(pixel_strings[0].split(), dtype=np.uint8).reshape(96, 96)
    served = kp.signatures["serving_default"](images=tf.constant([
        _encode(face, "PNG"), _encode(face, "JPEG", size=(192, 144), mode="RGB")]))[spec.KEYPOINTS_OUTPUT].numpy()
    np.testing.assert_allclose(served[0], by_pixels[0], atol=1e-3)  # lossless PNG: identical input
    stretched = served[1].reshape(15, 2)
    expected = (by_pixels[0].reshape(15, 2) + 0.5) * [2.0, 1.5] - 0.5  # in the caller's image coordinates
    assert np.abs(stretched - expected).mean() < 4.0
    pixels = " ".join(["120"] * 48 * 48).encode()
    example = tf.train.Example(features=tf.train.Features(feature={
        "pixels": tf.train.Feature(bytes_list=tf.train.BytesList(value=[pixels]))})).SerializeToString()
    out = em.signatures["serving_examples"](examples=tf.constant([example, example]))
    probs = out[spec.EMOTION_OUTPUT].numpy()
    assert probs.shape == (2, 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert out["label"].numpy()[0].decode() in spec.EMOTION_CLASSES
    colour = np.stack([face] * 3, axis=-1)
    image_out = em.signatures["serving_default"](images=tf.constant([_encode(colour, "JPEG", mode="RGB")]))
    assert image_out[spec.EMOTION_OUTPUT].numpy().shape == (1, 5)
    assert image_out["label"].numpy()[0].decode() in spec.EMOTION_CLASSES


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "-1", "256"])
def test_the_exported_signatures_refuse_pixels_that_are_not_numbers_in_0_to_255(first_run, workspace, bad):
    """The SavedModel itself, as TF Serving or KServe would call it (no ``emotion-ai serve``
    in front): an invalid-argument error that says which value, for pixel strings and for
    tf.Examples alike."""
    from emotion_ai.components.branches import BRANCHES

    for branch in BRANCHES:
        column, size = branch.image_column, branch.image_size
        saved = model_repository.load(workspace["repo"] / branch.name
                                      / first_run.summary.branches[branch.name].pushed_version)
        values = ["100"] * size * size
        values[7] = bad
        good, wrong = " ".join(["100"] * size * size), " ".join(values)
        with pytest.raises(tf.errors.InvalidArgumentError, match=f"instance 1: pixel 7 is {bad}; pixels are numbers "
                                                                  "in 0..255"):
            saved.signatures["serving_pixels"](pixels=tf.constant([good, wrong]))
        example = tf.train.Example(features=tf.train.Features(feature={
            column: tf.train.Feature(bytes_list=tf.train.BytesList(value=[wrong.encode()]))})).SerializeToString()
        with pytest.raises(tf.errors.InvalidArgumentError, match="instance 0: pixel 7 is"):
            saved.signatures["serving_examples"](examples=tf.constant([example]))
        assert saved.signatures["serving_pixels"](pixels=tf.constant([good]))[branch.output].shape[0] == 1


def test_second_run_on_unchanged_data_is_cached_and_pushes_nothing(second_run, first_run, workspace):
    states = {c.node_id: c.state for c in second_run.summary.components}
    for kind in ("CsvExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "Transform", "Trainer"):
        for branch in ("keypoints", "emotion"):
            assert states[f"{kind}_{branch}"] == "cached", (kind, branch, states)
    for name in ("keypoints", "emotion"):
        branch = second_run.summary.branches[name]
        assert not branch.pushed
        assert branch.identical_to_version == first_run.summary.branches[name].pushed_version
        assert _versions(workspace["repo"], name) == [first_run.summary.branches[name].pushed_version]
    assert "nothing new" in local_runner.format_summary(second_run)
    # The record of a run is never taken from the cache: this run's own report and MLflow run.
    for node in ("RunReport", "TrackRun"):
        assert states[node] == "complete", (node, states)
    assert second_run.context.run_id == second_run.summary.run_id != first_run.summary.run_id
    assert second_run.report_path != first_run.report_path
    assert second_run.mlflow_run_id and second_run.mlflow_run_id != first_run.mlflow_run_id


@pytest.fixture(scope="session")
def blocked_run(run_copy, tmp_path_factory):
    """One run whose gates cannot pass: the key points' absolute bound (RMSE under 0.001 px)
    and the expressions' change rule (beat the served model, the same weights, by 1.0). Made
    once, on a copy of the shared runs, by whichever worker asks first (conftest ``once``)."""
    from conftest import once

    def make(_):
        own = run_copy("blocked")
        before = {m: _versions(own["repo"], m) for m in ("keypoints", "emotion")}
        blocking = SMOKE.with_gate(KEYPOINTS, "rmse_px", bound=0.001).with_gate(EMOTION, "accuracy", max_worse=-1.0)
        result = local_runner.run(blocking, own["root"], own["repo"], own["data"])
        return {"before": before, "run_id": result.summary.run_id, **{k: str(v) for k, v in own.items()}}

    _, made = once(tmp_path_factory, "blocked_run", make)
    own = {k: Path(made[k]) for k in ("root", "repo", "data")}
    inputs = local_runner.resolve_inputs(own["data"], None, SMOKE)
    return local_runner.finished(own["root"], inputs, made["run_id"]), made["before"], own


def test_failing_gates_block_the_push(blocked_run):
    result, before, own = blocked_run
    branch = result.summary.branches["keypoints"]
    assert branch.blessed is False
    value_failures = [f for f in branch.validation_failures if f.startswith("rmse_px: ")]  # not "rmse_px (change)"
    assert value_failures, branch.validation_failures
    assert not branch.pushed and _versions(own["repo"], "keypoints") == before["keypoints"]
    kp_text = local_runner.format_summary(result).split("  emotion:")[0]
    assert "gate: NOT BLESSED" in kp_text and "FAIL" in kp_text


def test_evaluate_scores_plain_gzip_and_malformed_csvs_through_the_served_models(first_run, workspace, tmp_path):
    import gzip
    import json

    from click.testing import CliRunner

    from emotion_ai.pipelines.cli import main

    kp_plain = workspace["data"] / "keypoints.csv"
    em_lines = (workspace["data"] / "emotion.csv").read_text().splitlines()
    em_gz = tmp_path / "emotion.csv.gz"
    with gzip.open(em_gz, "wt") as f:  # gzip, CRLF, plus two malformed rows
        f.write("\r\n".join(em_lines[:41] + ["9," + em_lines[1].split(",")[1], "1,1 2 3"]) + "\r\n")
    out = tmp_path / "metrics.json"
    result = CliRunner().invoke(main, ["evaluate", "--model-repo", str(workspace["repo"]), "--keypoints-csv",
                                       str(kp_plain), "--emotion-csv", str(em_gz), "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    kp, em = metrics["keypoints"], metrics["emotion"]
    assert (kp["rows_scored"], kp["rows_rejected"]) == (80, 0)
    assert (em["rows_scored"], em["rows_rejected"]) == (40, 2)
    assert set(kp["per_point_rmse_px"]) == set(spec.KEYPOINT_NAMES)
    assert 0 < kp["rmse_px"] < 96 and kp["mean_point_error_px"] > 0
    assert set(em["per_class"]) == set(spec.EMOTION_CLASSES)
    cm = np.array(em["confusion_matrix"]["rows_true_columns_predicted"])
    assert cm.sum() == 40 and em["accuracy"] == pytest.approx(np.trace(cm) / 40)
    assert em["macro_f1"] == pytest.approx(np.mean([v["f1"] for v in em["per_class"].values() if v["support"]]))
    assert sum(v["support"] for v in em["per_class"].values()) == 40
    assert "RMSE" in result.output and "macro F1" in result.output


def _render_in_chromium(report_path, tmp_path):
    """Load the report in headless Chromium and return the DOM after load, with a probe
    that records how many images decoded."""
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("headless Chromium is needed to check the report; `make test` installs Debian's "
                    "`chromium` package (apt-get install chromium)")
    probe = ("<script>window.addEventListener('load',()=>{const i=[...document.images];"
             "document.body.setAttribute('data-images',i.length);"
             "document.body.setAttribute('data-loaded',i.filter(x=>x.complete&&x.naturalWidth>0).length);});</script>")
    page = tmp_path / "probe.html"
    page.write_text(report_path.read_text().replace("</body>", probe + "</body>"))
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout


def test_report_renders_in_a_browser_with_every_image_and_the_gates(first_run, tmp_path):
    import re

    report = first_run.report_path
    assert report is not None and report.exists()
    # Written inside the DAG: the RunReport component's artifact, beside its context and figures.
    (artifact,) = first_run.summary.component("RunReport").outputs["report"]
    assert report.parent == Path(artifact.uri)
    figures = json.loads((report.parent / "summary.json").read_text())
    assert figures["run_id"] == figures["context"]["run_id"] == first_run.summary.run_id
    for name, b in first_run.summary.branches.items():
        assert figures["branches"][name]["pushed_version"] == b.pushed_version
        assert figures["branches"][name]["rows_rejected"] == b.rows_rejected
    assert figures["branches"]["emotion"]["rows_staged"] == first_run.summary.branches["emotion"].rows_read - 2
    text = report.read_text()
    assert "http://" not in text and "https://" not in text, "self-contained: no network"
    for section in ("<h2>Thresholds", "<h2>Expressions", 'alt="confusion matrix"',
                    'alt="per-class precision and recall"',
                    "Misclassified examples", "<h2>Key points", 'alt="per-key-point error"',
                    'alt="faces with predicted and true key points"', "Worst cases", "<h2>Data",
                    'alt="class balance"', "Rejected rows (emotion): 2"):
        assert section in text, section
    dom = _render_in_chromium(report, tmp_path)
    images = int(re.search(r'data-images="(\d+)"', dom).group(1))
    loaded = int(re.search(r'data-loaded="(\d+)"', dom).group(1))
    assert images >= 8 and loaded == images
    assert 'class="badge pass">PASS' in dom and "BLESSED" in dom


def test_mlflow_tracks_the_run_models_and_registry(first_run, workspace):
    from mlflow.tracking import MlflowClient

    from emotion_ai.pipelines import tracking

    assert first_run.summary.component("TrackRun").state == "complete"  # tracked inside the DAG
    uri = tracking.tracking_uri(workspace["root"])  # a client of its own: set_tracking_uri is process-wide
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    parent = client.get_run(first_run.mlflow_run_id)
    assert parent.data.tags["tfx_run_id"] == first_run.summary.run_id
    assert parent.data.metrics["emotion_rows_rejected"] == 2
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    by_name = {c.info.run_name: c for c in children}
    assert set(by_name) == {"keypoints", "emotion"}
    assert "tfma_rmse_px" in by_name["keypoints"].data.metrics
    assert "tfma_macro_recall" in by_name["emotion"].data.metrics
    kp = by_name["keypoints"].data.metrics  # with TFMA's 95 % interval around it
    assert kp["tfma_rmse_px_ci_low"] < kp["tfma_rmse_px_ci_high"]
    assert by_name["emotion"].data.params["epochs"] == "1"
    assert by_name["emotion"].data.tags["blessed"] == "True"
    history = client.get_metric_history(by_name["emotion"].info.run_id, "train_loss")
    assert len(history) == 1  # one epoch
    artifacts = [a.path for a in client.list_artifacts(parent.info.run_id)]
    assert "report.html" in artifacts
    for name in ("keypoints", "emotion"):
        versions = client.search_model_versions(f"name = '{tracking.registered_name(name)}'")
        assert [v.tags["tf_serving_version"] for v in versions] == [first_run.summary.branches[name].pushed_version]


def test_change_threshold_against_an_equal_baseline_blocks_the_push(blocked_run):
    """The candidate must beat the served model (the same weights) by a margin it cannot reach."""
    result, before, own = blocked_run
    branch = result.summary.branches["emotion"]
    assert branch.blessed is False
    assert any("(change)" in f for f in branch.validation_failures), branch.validation_failures
    assert not branch.pushed and _versions(own["repo"], "emotion") == before["emotion"]
    assert branch.evaluation.baseline_version == before["emotion"][-1]
    assert 'class="badge fail">FAIL' in result.report_path.read_text()


def test_a_floor_just_under_the_overall_accuracy_blesses_the_cached_model_again(second_run, run_copy):
    """The gate reads the overall slice (that a class under the floor does not fail it is
    shown, independently of how well a 1-epoch model learnt, in test_gates.py)."""
    accuracy = second_run.summary.branches["emotion"].metrics["accuracy"]
    assert second_run.summary.branches["emotion"].evaluation.per_slice, "per-class recall is reported"
    floor = accuracy - 0.01
    profile = SMOKE.with_gate(EMOTION, "accuracy", bound=floor)
    own = run_copy("floor")
    before = {m: _versions(own["repo"], m) for m in ("keypoints", "emotion")}
    result = local_runner.run(profile, own["root"], own["repo"], own["data"])
    assert result.summary.branches["emotion"].blessed is True, result.summary.branches["emotion"].validation_failures
    # The Trainer was cached: the same model blessed again, nothing new in the repository.
    assert {m: _versions(own["repo"], m) for m in ("keypoints", "emotion")} == before


def _tfma_by_model(result, branch: str) -> dict[str, dict[str, float]]:
    """The overall slice of one Evaluator output, straight from TFMA, keyed by model name."""
    import tensorflow_model_analysis as tfma

    uri = result.summary.component(f"Evaluator_{branch}").outputs["evaluation"][0].uri
    found: dict[str, dict[str, float]] = {}
    for m in tfma.load_metrics(uri):
        if not m.slice_key.single_slice_keys:
            for kv in m.metric_keys_and_values:
                if not kv.key.is_diff and kv.value.HasField("double_value"):
                    found.setdefault(kv.key.model_name, {})[kv.key.name] = kv.value.double_value.value
    return found


def test_a_worse_candidate_shows_its_own_figures_beside_the_baselines_and_is_not_blessed(run_copy):
    """An untrained candidate against the blessed first model, with a no-regression gate:
    the summary, the report and MLflow show the candidate's RMSE (not the baseline's), the
    baseline's next to it, and NOT BLESSED."""
    from mlflow.tracking import MlflowClient

    from emotion_ai.pipelines import tracking

    untrained = {"learning_rate": 1e-9, "calibrate_offsets": False}
    # The expression gate cannot pass either: a pushed candidate would become the served
    # version, every later test's baseline.
    worse = (SMOKE.with_params(KEYPOINTS, **untrained).with_params(EMOTION, learning_rate=1e-9)
             .with_gate(KEYPOINTS, "rmse_px", max_worse=0.0).with_gate(EMOTION, "accuracy", bound=1.01))
    own = run_copy("worse")
    before = _versions(own["repo"], "keypoints")
    emotion_before = _versions(own["repo"], "emotion")
    result = local_runner.run(worse, own["root"], own["repo"], own["data"])
    kp = result.summary.branches["keypoints"]
    tfma_values = _tfma_by_model(result, "keypoints")
    candidate, baseline = tfma_values["candidate"]["rmse_px"], tfma_values["baseline"]["rmse_px"]
    assert candidate > baseline + 0.5, "precondition: the untrained candidate is clearly worse"
    assert kp.metrics["rmse_px"] == pytest.approx(candidate)
    assert kp.evaluation.baseline["rmse_px"] == pytest.approx(baseline)
    assert kp.evaluation.change["rmse_px"] == pytest.approx(candidate - baseline, abs=1e-4)
    assert kp.evaluation.baseline_version == before[-1]
    assert kp.blessed is False and not kp.pushed and _versions(own["repo"], "keypoints") == before
    gate = next(g for g in kp.evaluation.gates if g.metric == "rmse_px")
    assert not gate.passed and gate.change_rule.startswith("change <= 0")
    assert result.summary.branches["emotion"].blessed is False
    assert _versions(own["repo"], "emotion") == emotion_before
    em_values = _tfma_by_model(result, "emotion")
    assert result.summary.branches["emotion"].metrics["accuracy"] == pytest.approx(em_values["candidate"]["accuracy"])
    assert result.summary.branches["emotion"].evaluation.baseline["accuracy"] == pytest.approx(
        em_values["baseline"]["accuracy"])

    text = local_runner.format_summary(result)
    kp_text = text[text.index("  keypoints:"):text.index("  emotion:")]
    line = next(line for line in kp_text.splitlines() if line.strip().startswith("rmse_px"))
    intervals = re.findall(r"\[([-+\d.e]+), ([-+\d.e]+)\]", line)  # TFMA's 95 % intervals, candidate and change
    assert len(intervals) == 2 and all(float(low) < float(high) for low, high in intervals), line
    row = re.sub(r"\s*\[[^\]]*\]", "", line).split()
    assert row[1:4] == [f"{candidate:.4g}", f"{baseline:.4g}", f"{candidate - baseline:+.4g}"], row
    assert "NOT BLESSED" in kp_text and f"baseline: version {before[-1]}" in kp_text

    page = re.sub(r" <span class=ci>\[[^\]]*\]</span>", "", result.report_path.read_text())
    assert f"<td>{candidate:.4g}</td><td>{baseline:.4g}</td><td>{candidate - baseline:+.4g}</td>" in page
    assert "NOT BLESSED" in page

    client = MlflowClient(tracking_uri=tracking.tracking_uri(own["root"]))  # the copy's own store
    child = client.search_runs(
        [client.get_experiment_by_name("emotion-ai").experiment_id],
        f"tags.mlflow.parentRunId = '{result.mlflow_run_id}' and tags.mlflow.runName = 'keypoints'")[0]
    assert child.data.metrics["tfma_rmse_px"] == pytest.approx(candidate)
    assert child.data.metrics["tfma_baseline_rmse_px"] == pytest.approx(baseline)


def test_the_trainer_never_reads_the_test_split(first_run):
    """The Transform materializes train and eval only, so the Trainer has no test examples
    to read; the Evaluator scored the test split of the same ExampleGen output."""
    from pathlib import Path

    for name in ("keypoints", "emotion"):
        transform = first_run.summary.component(f"Transform_{name}")
        transformed = transform.outputs["transformed_examples"][0]
        assert sorted(p.name for p in Path(transformed.uri).iterdir()) == ["Split-eval", "Split-train"]
        examples = first_run.summary.component(f"CsvExampleGen_{name}").outputs["examples"][0]
        splits = sorted(p.name for p in Path(examples.uri).iterdir() if p.is_dir())  # beside: rejected_rows.csv
        assert splits == ["Split-eval", "Split-test", "Split-train"]


def test_a_smoke_run_cannot_change_the_full_profiles_repository(run_copy, tmp_path):
    """By default each non-production profile pushes to a repository of its own; pointed at
    a repository the full profile owns, its Pusher refuses and nothing there changes."""
    import json

    full = config.PROFILES["full"]
    assert config.model_repo_for(full) == config.MODEL_REPO
    assert config.model_repo_for(SMOKE) != config.MODEL_REPO
    assert config.model_repo_for(SMOKE).parent == config.MODEL_REPO.parent
    own = run_copy("full_owned")
    production = own["repo"]
    (production / model_repository.OWNER_FILE).write_text(json.dumps({"profile": "full"}))
    before = {p.relative_to(production): p.stat().st_mtime for p in production.rglob("*")}
    # New weights (one more epoch), so there would be something to push.
    other = SMOKE.with_params(KEYPOINTS, epochs=2)
    result = local_runner.run(other, own["root"], production, own["data"])
    kp = result.summary.branches["keypoints"]
    assert kp.blessed is True and not kp.pushed
    assert "belongs to profile 'full'" in kp.push_refused
    assert "belongs to profile 'full'" in local_runner.format_summary(result)
    assert {p.relative_to(production): p.stat().st_mtime for p in production.rglob("*")} == before


def test_a_span_labelled_with_other_classes_is_flagged_and_trains_nothing(run_copy, tmp_path):
    """FER2013's seven-class numbering where five classes are expected: every row parses, so
    none is rejected, but ExampleValidator finds labels outside the curated schema's domain.
    The expression Trainer trains nothing, nothing is blessed or pushed, and the summary and
    the report say why; the key-point branch, its data unchanged, comes from the cache."""
    from emotion_ai.data import generator, readers

    good = generator.write_emotion_csv(tmp_path / "good.csv", 130, seed=5)
    lines = good.read_text().splitlines()
    relabelled = [lines[0]] + [f"{i % 7},{line.split(',', 1)[1]}" for i, line in enumerate(lines[1:])]
    (tmp_path / "span" / "fer7.csv").parent.mkdir()
    (tmp_path / "span" / "fer7.csv").write_text("\n".join(relabelled) + "\n")
    own = run_copy("relabelled")
    before = {m: _versions(own["repo"], m) for m in ("keypoints", "emotion")}
    csvs = {"keypoints": readers.find_csvs(own["data"])["keypoints"],
            "emotion": [tmp_path / "span" / "fer7.csv"]}

    result = local_runner.run(SMOKE, own["root"], own["repo"], own["data"], csvs=csvs)

    emotion = result.summary.branches["emotion"]
    assert (emotion.rows_read, emotion.rows_rejected) == (130, 0)
    flagged = [a for items in emotion.anomalies.values() for a in items if a.startswith("emotion: ")]
    assert flagged and "Out-of-range" in flagged[0], emotion.anomalies
    assert emotion.not_trained and "anomal" in emotion.not_trained
    assert emotion.blessed is False and not emotion.pushed and emotion.evaluation is None
    assert _versions(own["repo"], "emotion") == before["emotion"]
    states = {c.node_id: c.state for c in result.summary.components}
    assert states["Trainer_emotion"] == "complete" and states["Trainer_keypoints"] == "cached", states
    assert states["RunReport"] == "complete", "the run still reports what it found"
    text = local_runner.format_summary(result).split("  emotion:")[1]
    assert "not trained: data validation found" in text and "Out-of-range" in text
    html = result.report_path.read_text()
    assert "NOT TRAINED" in html and "Out-of-range" in html
    assert _versions(own["repo"], "keypoints") == before["keypoints"]


def test_a_new_darker_blurrier_span_shows_drift_and_the_served_photos_skew(run_copy, tmp_path):
    """Span 1 is the expression data the earlier runs trained on; span 2 arrives, its faces
    photographed darker and out of focus, and the server (a real ``emotion-ai serve
    --log-requests`` on 127.0.0.1) has been sent such photos. The next run reads both spans,
    reports drift of span 2 against span 1 and skew of the data against the requests, with
    the figures in the summary and pictures in the report; it still trains (findings do not
    gate). On a copy of the shared root and repository."""
    import io
    import subprocess
    import sys
    import time

    from conftest import free_port, stop
    from PIL import Image
    from test_drift import darker_blurrier

    from emotion_ai.data import generator, readers
    from emotion_ai.serving.client import ServingClient

    own = run_copy("darker")
    data = tmp_path / "emotion"
    (data / "span-1").mkdir(parents=True)
    shutil.copy(readers.find_csvs(own["data"])["emotion"][0], data / "span-1" / "emotion.csv")
    fresh = generator.write_emotion_csv(tmp_path / "fresh.csv", 120, seed=9).read_text().splitlines()
    dim = [fresh[0]] + [f"{label},{darker_blurrier(pixels, 48)}"
                        for label, pixels in (r.split(",", 1) for r in fresh[1:])]
    (data / "span-2").mkdir()
    (data / "span-2" / "emotion.csv").write_text("\n".join(dim) + "\n")
    repo = own["repo"]

    log_dir, port = tmp_path / "request_log", free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "emotion-ai"), "serve", "--model-repo", str(repo),
                               "--port", str(port), "--log-requests", "--request-log", str(log_dir),
                               "--log-sample", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        client = ServingClient(f"http://127.0.0.1:{port}", timeout=30)
        deadline = time.time() + 120
        while True:
            try:
                client.status("emotion")
                break
            except Exception:  # noqa: BLE001 - not up yet
                assert time.time() < deadline and server.poll() is None, "the server did not come up"
                time.sleep(0.5)
        photos = []
        for row in dim[1:41]:  # 40 photos, 96x96 PNGs: the server resizes them, and so does its log
            face = np.array(row.split(",", 1)[1].split(), dtype=np.uint8).reshape(48, 48)
            buffer = io.BytesIO()
            Image.fromarray(face).resize((96, 96)).save(buffer, format="PNG")
            photos.append(buffer.getvalue())
        for photo in photos:
            assert client.predict_images("emotion", [photo])[spec.EMOTION_OUTPUT].shape == (1, 5)
        deadline = time.time() + 60
        while sum(max(0, len(p.read_text().splitlines()) - 1) for p in log_dir.glob("emotion/*.csv")) < 40:
            assert time.time() < deadline, "the request log did not get the 40 photos"
            time.sleep(0.2)
    finally:
        stop(server)

    csvs = {"keypoints": readers.find_csvs(own["data"])["keypoints"],
            "emotion": sorted(data.rglob("*.csv"))}
    result = local_runner.run(SMOKE, own["root"], repo, tmp_path, csvs=csvs, serving_log=log_dir)

    emotion = result.summary.branches["emotion"]
    assert [s["name"] for s in emotion.spans] == ["span-1", "span-2"]
    assert [s["rows_read"] for s in emotion.spans] == [120, 120]
    brightness, _, sharpness = spec.IMAGE_STATISTICS
    assert emotion.compared == {"newest": "span-2", "previous": "span-1", "serving_requests": 40}
    assert emotion.drift[brightness]["flagged"] and emotion.drift[sharpness]["flagged"], emotion.drift
    assert emotion.skew[brightness]["flagged"], emotion.skew
    assert f"drift {brightness}" in emotion.drifted and f"skew {brightness}" in emotion.drifted
    assert emotion.evaluation is not None and not emotion.not_trained, "drift is reported, it does not gate"
    text = local_runner.format_summary(result).split("  emotion:")[1]
    assert "spans: span-1, span-2" in text
    assert f"drift, span-2 vs span-1: FOUND {brightness}" in text
    assert "skew vs serving (40 requests logged): FOUND" in text
    html = result.report_path.read_text()
    assert "Drift and skew (emotion)" in html and 'alt="emotion drift and skew"' in html
    assert "Spans read (oldest first)" in html
    keypoints = result.summary.branches["keypoints"]
    assert keypoints.spans[0]["name"] == "(no span folder)" and keypoints.drift == {}
    assert "drift: one span read, nothing to compare it with" in local_runner.format_summary(result)


def test_a_warm_started_run_starts_from_the_served_models_and_still_has_to_pass_the_gates(
        run_copy):
    """``warm_start_epochs``: each Trainer starts from the network its branch serves (the
    summary and the report name the version) and trains the short schedule; the candidate is
    still gated: the key points' impossible bound blocks its push, the expressions' model is
    pushed (into a copy of the shared repository)."""
    import dataclasses

    own = run_copy("warm")
    repo = own["repo"]
    served = {m: max(int(v) for v in _versions(repo, m)) for m in ("keypoints", "emotion")}
    warm = dataclasses.replace(SMOKE, warm_start_epochs=1).with_gate(KEYPOINTS, "rmse_px", bound=0.001)

    result = local_runner.run(warm, own["root"], repo, own["data"])

    for name in ("keypoints", "emotion"):
        b = result.summary.branches[name]
        assert b.warm_start["warm"] is True and b.warm_start["from_version"] == served[name], b.warm_start
        assert b.warm_start["epochs"] == 1
    keypoints, emotion = result.summary.branches["keypoints"], result.summary.branches["emotion"]
    assert keypoints.blessed is False and not keypoints.pushed
    assert max(int(v) for v in _versions(repo, "keypoints")) == served["keypoints"]
    assert emotion.blessed is True and emotion.pushed and int(emotion.pushed_version) > served["emotion"]
    text = local_runner.format_summary(result)
    assert f"trained: warm start from served version {served['emotion']}, 1 epoch(s)" in text
    assert "warm start from served version" in result.report_path.read_text()
