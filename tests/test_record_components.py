"""The report step reads and writes through ``fileio`` only: with every artifact it is given
and its own output on TensorFlow's in-memory ``ram://`` filesystem (standing in for
``gs://``), it writes the same report, context and figures as on a local disk."""
from __future__ import annotations

import json
import uuid

import tensorflow as tf
from conftest import record_components_inputs

from emotion_ai.pipelines import record_components


def _to_ram(local: str, ram: str) -> None:
    for folder, _, files in tf.io.gfile.walk(local):
        target = ram + folder[len(local):]
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(f"{folder}/{name}", f"{target}/{name}", overwrite=True)


def test_the_report_step_reads_and_writes_artifacts_on_ram(first_run):
    bucket = f"ram://bucket-{uuid.uuid4().hex[:8]}"
    inputs = record_components_inputs(first_run.summary)
    del inputs["report"]
    for key, artifacts in inputs.items():
        for artifact in artifacts:
            moved = f"{bucket}/{key}/{artifact.id}"
            _to_ram(artifact.uri, moved)
            artifact.uri = moved
    out = record_components.ReportArtifact()
    out.uri = f"{bucket}/RunReport/report/1"
    record_components.ReportExecutor().Do(inputs, {"report": [out]}, {
        "profile": "smoke", "model_repo": f"{bucket}/model_repository", "pipeline_root": bucket,
        "code_version": "test", "run_key": "test"})

    assert not tf.io.gfile.exists(str(first_run.pipeline_root / bucket.replace("://", ":/"))), "nothing local"
    page = tf.io.gfile.GFile(f"{out.uri}/report.html").read()
    for section in ("<h2>Thresholds", "<h2>Key points", "<h2>Expressions", "Rejected rows (emotion): 2",
                    'alt="confusion matrix"', f"{bucket}/model_repository"):
        assert section in page, section
    figures = json.loads(tf.io.gfile.GFile(f"{out.uri}/summary.json").read())
    assert figures["context"]["pipeline_root"] == bucket
    for name, b in first_run.summary.branches.items():
        mine = figures["branches"][name]
        assert (mine["rows_read"], mine["rows_rejected"]) == (b.rows_read, b.rows_rejected)
        assert mine["evaluation"]["candidate"] == b.evaluation.candidate, "the same figures, read from ram://"
        assert mine["model_uri"].startswith(bucket)


def test_properties_handed_in_by_kfp_read_as_they_do_locally():
    """KFP hands an upstream task's output metadata to the next task as JSON (TFX turns it
    into struct properties, numbers as floats): the summary reads the same counts, versions
    and reasons as from a local run's ML Metadata."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils

    from emotion_ai.pipelines import run_summary

    executor_input = json_format.ParseDict({"inputs": {"artifacts": {"examples": {"artifacts": [{
        "name": "local/run/CsvExampleGen_emotion/examples/1", "uri": "/tmp/examples",
        "type": {"schemaTitle": "tfx.Examples"},
        "metadata": {"rows_read": 122, "rows_rejected": 1, "rejected_reasons": '{"emotion": 1}',
                     "sources": '["data/emotion.csv"]', "served_version": 1796209978}}]}}}},
        pipeline_spec_pb2.ExecutorInput())
    (examples,) = kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(executor_input.inputs.artifacts)["examples"]
    mlmd = examples.mlmd_artifact
    assert mlmd.custom_properties["rows_read"].WhichOneof("value") == "struct_value", "precondition: JSON"
    data = run_summary._data(mlmd)
    assert data["rows_read"] == 122 and data["rows_rejected"] == 1
    assert data["rejected_reasons"] == {"emotion": 1} and data["sources"] == ["data/emotion.csv"]
    assert data["rejected_rows"] == "/tmp/examples/rejected_rows.csv"
    version = run_summary.custom_property(mlmd, "served_version")
    assert version == 1796209978 and str(version) == "1796209978"
