"""The branch registry: a third model is one registry entry and its package.

A toy branch (the mean brightness of a 48x48 face, its own CSV format ``brightness,face``)
is registered with a package written here; the DAG, the readers, ``evaluate``, ``predict``,
the report and the KServe manifests then all carry it without any other change.
"""
from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest

from emotion_ai.components import branches, spec
from emotion_ai.components.branches import Metric, ModelBranch
from emotion_ai.pipelines import config

TOY_PACKAGE = {
    "formats.py": '''
        import numpy as np
        from emotion_ai.components.common import rows

        def check_row(row):
            value = float(row["brightness"])
            if not 0 <= value <= 255:
                raise ValueError(f"brightness: {value} outside 0..255")
            rows.parse_pixels(row["face"], 48)
            return [rows.format_float(value), " ".join(row["face"].split())]

        def derived_features(record):
            return [rows.format_float(float(np.array(record[1].split(), dtype=float).std()))]

        def truth(records):
            return np.array([float(r[0]) for r in records])

        def points(outputs, i):
            return None

        def describe(outputs, i, to_photo=None):
            return {"brightness": round(float(outputs["brightness"][i]), 1)}

        def caption(described):
            return f"bright {described['brightness']:.0f}"

        def draw(image, described, thickness):
            pass
    ''',
    # its curated schema (what `emotion-ai schema` writes, with the registry's domains)
    "schema.pbtxt": '''
        feature { name: "brightness" type: FLOAT float_domain { min: 0.0 max: 255.0 } }
        feature { name: "face" type: BYTES }
        feature { name: "face_contrast" type: FLOAT }
    ''',
    "metrics.py": '''
        import numpy as np

        def summarize(truth, outputs):
            return {"mae": float(np.abs(outputs["brightness"] - truth).mean())}

        def summary_lines(result):
            return [f"  toy MAE {result['mae']:.2f}"]
    ''',
    "report.py": '''
        def section(evaluation, examples, outputs):
            return f"<p>toy section: {len(examples)} examples</p>"

        def data_samples(examples, split):
            return f"<p>toy samples of {split}</p>"
    ''',
}

TOY = ModelBranch(
    name="toy",
    title="Brightness",
    package="toy_branch",
    header_column="face",
    staged_columns=("brightness", "face"),
    derived_columns=("face_contrast",),
    image_column="face",
    image_size=48,
    label="brightness_label",
    output="brightness",
    metrics=(Metric("mae", "MeanAbsoluteError", higher_is_better=False),),
    default_params=spec.ModelParams(stage_filters=(4,), blocks_per_stage=1, epochs=1, batch_size=8,
                                    learning_rate=1e-3),
    default_gates={"mae": spec.Gate(bound=40.0, max_worse=2.0)},
    domains={"brightness": spec.Domain(0.0, 255.0)},
)


@pytest.fixture
def toy(tmp_path, monkeypatch):
    package = tmp_path / "toy_branch"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in TOY_PACKAGE.items():
        (package / name).write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    branches.register(TOY)
    yield TOY
    branches.unregister(TOY.name)
    for name in [m for m in sys.modules if m.startswith("toy_branch")]:
        del sys.modules[name]


def by_id_schema_file(pipeline, component_id: str) -> str:
    return next(c for c in pipeline.components if c.id == component_id).exec_properties["schema_file"]


def _face(value: int) -> str:
    return " ".join([str(value)] * 48 * 48)


def test_the_pipeline_gets_eleven_components_for_the_new_branch(toy, tmp_path):
    from emotion_ai.pipelines.pipeline import create_pipeline
    from emotion_ai.pipelines.record_components import RECORDED

    inputs = {b.name: str(tmp_path / b.name) for b in branches.BRANCHES}
    pipeline = create_pipeline(pipeline_root=str(tmp_path / "root"), inputs=inputs, model_repo=str(tmp_path / "repo"),
                               profile=config.PROFILES["smoke"])
    ids = {c.id for c in pipeline.components}
    assert len(ids) == 11 * 3 + 2  # and the run's report and tracking, over every branch
    report_inputs = next(c for c in pipeline.components if c.id == "RunReport").inputs
    assert {k for k in report_inputs if k.startswith("toy_")} == {f"toy_{key}" for _, key, _ in RECORDED}
    toy_ids = {i for i in ids if i.endswith("_toy")}
    assert len(toy_ids) == 11
    assert by_id_schema_file(pipeline, "ImportSchemaGen_toy") == "package:toy_branch/schema.pbtxt"
    by_id = {c.id: c for c in pipeline.components}
    assert by_id["Transform_toy"].exec_properties["preprocessing_fn"] == "toy_branch.transform.preprocessing_fn"
    assert by_id["Trainer_toy"].exec_properties["run_fn"] == "toy_branch.trainer.run_fn"
    assert '"epochs": 1' in by_id["Trainer_toy"].exec_properties["custom_config"]  # the branch's defaults
    eval_config = json.loads(by_id["Evaluator_toy"].exec_properties["eval_config"])
    assert eval_config["model_specs"][0]["label_key"] == "brightness_label"
    assert eval_config["model_specs"][0]["prediction_key"] == "brightness"
    mae = eval_config["metrics_specs"][0]["metrics"][0]
    assert mae["class_name"] == "MeanAbsoluteError"
    threshold = mae["per_slice_thresholds"][0]["threshold"]  # lower is better: a ceiling, a bounded rise
    assert threshold["value_threshold"]["upper_bound"] == 40.0
    assert threshold["change_threshold"] == {"absolute": 2.0, "direction": "LOWER_IS_BETTER"}
    with pytest.raises(ValueError, match="toy"):
        create_pipeline(pipeline_root=str(tmp_path / "root"), inputs={k: v for k, v in inputs.items() if k != "toy"},
                        model_repo=str(tmp_path / "repo"), profile=config.PROFILES["smoke"])


def test_the_readers_find_check_and_stage_the_new_format(toy, tmp_path):
    from emotion_ai.components import csv_rows
    from emotion_ai.data import readers

    data = tmp_path / "data"
    data.mkdir()
    rows = [f"{v},{_face(v)}" for v in range(0, 240, 20)] + [f"300,{_face(1)}", f"12,{_face(1)} 7"]
    (data / "bright.csv").write_text("brightness,face\n" + "\n".join(rows) + "\n")
    assert readers.find_csvs(data)["toy"] == [data / "bright.csv"]
    result = csv_rows.stage("toy", [data / "bright.csv"], tmp_path / "staged.csv", tmp_path / "rejected.csv")
    assert (result.rows_read, result.rows_rejected) == (14, 2)
    assert (tmp_path / "staged.csv").read_text().splitlines()[0] == "brightness,face,face_contrast"
    reasons = (tmp_path / "rejected.csv").read_text()
    assert "brightness: 300.0 outside 0..255" in reasons and "expected 2304 pixels" in reasons


def test_evaluate_predict_report_and_kserve_carry_the_new_branch(toy, monkeypatch):
    from emotion_ai.kubeflow import kserve
    from emotion_ai.pipelines import evaluate, report
    from emotion_ai.serving import predict

    assert "  toy MAE 1.50" in evaluate.format_table({"toy": {"model_version": 7, "rows_scored": 2, "rows_rejected": 0,
                                                               "mae": 1.5}})
    described = toy.part("formats").describe({"brightness": np.array([99.94])}, 0)
    face = {"box": {"x": 0, "y": 0, "width": 8, "height": 8}, "toy": described,
            "keypoints": {n: [1.0, 1.0] for n in spec.KEYPOINT_NAMES},
            "emotion": {"label": "Happy", "probabilities": {"Happy": 0.9}}}
    assert predict.caption(face) == "Happy 0.90 bright 100"

    class Branch:  # what the report reads of a run's branch
        model_uri, evaluation, not_trained = "unused", object(), None

    monkeypatch.setattr(report, "_predict", lambda uri, examples, column: {"brightness": np.zeros(len(examples))})
    html = report._section(toy, Branch(), [{"face": _face(3)}] * 2)
    assert html == "<h2>Brightness</h2><p>toy section: 2 examples</p>"
    assert "emotion-ai/model: toy" in kserve.render("gs://bucket/repo")


def test_a_profile_without_values_for_a_branch_uses_its_defaults(toy):
    smoke, full = config.PROFILES["smoke"], config.PROFILES["full"]
    assert full.params_for(toy) == toy.default_params and full.gates_for(toy) == toy.default_gates
    assert smoke.with_gate(toy, "mae", bound=10.0).gates_for(toy)["mae"] == spec.Gate(bound=10.0, max_worse=2.0)
    with pytest.raises(ValueError, match="clashes"):
        branches.register(TOY)
