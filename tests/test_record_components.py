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
