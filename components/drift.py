"""Drift between spans and skew against serving traffic, measured by TFDV on the numbers
that describe each image (``branch.drift_columns``: brightness, contrast, sharpness, the
face's framing for key points, and the class mix).

``DataDrift`` reads the span of every staged row (``span_features.csv``, written by the
row-checking ExampleGen) and compares:

* **drift**: the newest span of the run's window with the one before it (TFDV's drift
  comparators: Jensen-Shannon divergence for a number, the L-infinity distance for the
  class mix), over the thresholds the pipeline passes (``pipelines/config.py``);
* **skew**: the whole window with what ``emotion-ai serve --log-requests`` recorded of the
  images it was sent (``serving/request_log.py``: the same image numbers, computed on the
  model's input), when the pipeline is given that log (TFDV's skew comparator).

Findings do not stop training: a new kind of photo is often the reason to retrain. They go
to the run's summary, report (a histogram per number: newest span, previous span, serving)
and MLflow. The output is an ``ExampleAnomalies`` artifact whose splits are ``drift`` and
``skew`` (``Split-drift/SchemaDiff.pb``), with the compared numbers beside them
(``newest.csv``, ``previous.csv``, ``serving.csv``) and the measurements in its custom
properties (``DRIFT``, ``SKEW``: JSON, feature -> measure, value, threshold, flagged;
``COMPARED``: which spans, how many requests).
"""
# No ``from __future__ import annotations``: the component decorator reads the real types.
import csv
import io
import json
import os

from absl import logging
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx import v1 as tfx
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts
from tfx.utils import io_utils

from emotion_ai.components import spec
from emotion_ai.components.branches import by_name

DRIFT, SKEW, COMPARED = "drift", "skew", "compared"  # custom properties (JSON)
_MEASURES = {anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE: "Jensen-Shannon divergence",
             anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY: "L-infinity distance"}


def _read_rows(path: str) -> list[dict]:
    with fileio.open(path, "r") as f:
        return list(csv.DictReader(io.StringIO(f.read())))


def _frame(rows: list[dict], columns: list[str]):
    import pandas as pd

    frame = pd.DataFrame({c: [float(r[c]) for r in rows] for c in columns})
    for column in columns:  # a class index stays an integer, so that TFDV counts its values
        if all(v.is_integer() for v in frame[column]):
            frame[column] = frame[column].astype("int64")
    return frame


def comparison_schema(schema, columns: list[str], drift_threshold: float, class_mix_threshold: float,
                      skew_threshold: float):
    """The curated schema cut to ``columns``, without their domains (ExampleValidator checks
    those), with TFDV's drift and skew comparators set."""
    cut = schema_pb2.Schema()
    for feature in schema.feature:
        if feature.name not in columns:
            continue
        copy = cut.feature.add()
        copy.CopyFrom(feature)
        categorical = feature.WhichOneof("domain_info") == "int_domain" and feature.int_domain.is_categorical
        copy.ClearField("domain_info")
        if categorical:
            copy.int_domain.is_categorical = True
            copy.drift_comparator.infinity_norm.threshold = class_mix_threshold
        else:
            copy.drift_comparator.jensen_shannon_divergence.threshold = drift_threshold
            copy.skew_comparator.jensen_shannon_divergence.threshold = skew_threshold
    return cut


def _measurements(anomalies, kind: str) -> dict:
    found = {}
    for info in anomalies.drift_skew_info:
        for m in (info.drift_measurements if kind == DRIFT else info.skew_measurements):
            found[info.path.step[-1]] = {"measure": _MEASURES.get(m.type, str(m.type)), "value": round(m.value, 4),
                                         "threshold": m.threshold, "flagged": m.value > m.threshold}
    return found


def _write(uri: str, name: str, columns: list[str], frame) -> None:
    io_utils.write_string_file(os.path.join(uri, name), frame[columns].to_csv(index=False))


def compare(branch_name: str, examples_uri: str, spans: list[dict], schema, serving_rows: list[dict],
            out_uri: str, drift_threshold: float, class_mix_threshold: float, skew_threshold: float) -> dict:
    """Measure drift (newest span vs the one before it, when the window holds two) and skew
    (window vs ``serving_rows``, when there are any); write the artifact's files; return its
    custom properties."""
    import tensorflow_data_validation as tfdv

    branch = by_name(branch_name)
    columns = list(branch.drift_columns)
    cut = comparison_schema(schema, columns, drift_threshold, class_mix_threshold, skew_threshold)
    options = tfdv.StatsOptions(schema=cut)
    rows = _read_rows(os.path.join(examples_uri, spec.SPAN_FEATURES_FILE))
    span_of = {path: s["name"] for s in spans for path in s["files"]}
    window = _frame(rows, columns)
    compared = {"newest": spans[-1]["name"] if spans else None, "previous": None, "serving_requests": 0}
    properties = {DRIFT: {}, SKEW: {}}
    if len(spans) >= 2:
        newest, previous = spans[-1]["name"], spans[-2]["name"]
        compared["previous"] = previous
        by_span = [span_of.get(r["file"]) for r in rows]
        newest_frame = window[[s == newest for s in by_span]]
        previous_frame = window[[s == previous for s in by_span]]
        _write(out_uri, "newest.csv", columns, newest_frame)
        _write(out_uri, "previous.csv", columns, previous_frame)
        anomalies = tfdv.validate_statistics(tfdv.generate_statistics_from_dataframe(newest_frame, options), cut,
                                             previous_statistics=tfdv.generate_statistics_from_dataframe(
                                                 previous_frame, options))
        io_utils.write_bytes_file(os.path.join(out_uri, f"Split-{DRIFT}", "SchemaDiff.pb"),
                                  anomalies.SerializeToString())
        properties[DRIFT] = _measurements(anomalies, DRIFT)
    else:
        _write(out_uri, "newest.csv", columns, window)
    served = [c for c in columns if serving_rows and c in serving_rows[0]]
    if served:
        serving = _frame(serving_rows, served)
        compared["serving_requests"] = len(serving)
        _write(out_uri, "serving.csv", served, serving)
        skew_schema = comparison_schema(schema, served, drift_threshold, class_mix_threshold, skew_threshold)
        skew_options = tfdv.StatsOptions(schema=skew_schema)
        anomalies = tfdv.validate_statistics(
            tfdv.generate_statistics_from_dataframe(window[served], skew_options), skew_schema,
            serving_statistics=tfdv.generate_statistics_from_dataframe(serving, skew_options))
        io_utils.write_bytes_file(os.path.join(out_uri, f"Split-{SKEW}", "SchemaDiff.pb"),
                                  anomalies.SerializeToString())
        properties[SKEW] = _measurements(anomalies, SKEW)
    properties[COMPARED] = compared
    return properties


def serving_rows(serving_log: str, branch_name: str) -> list[dict]:
    """What ``emotion-ai serve --log-requests`` recorded for ``branch_name`` under ``serving_log``."""
    if not serving_log:
        return []
    rows = []
    for path in sorted(fileio.glob(f"{serving_log.rstrip('/')}/{branch_name}/*.csv")):
        try:
            rows += _read_rows(path)
        except (OSError, csv.Error, UnicodeDecodeError) as error:  # a log being written: skip, say so
            logging.warning("%s: not read (%s)", path, error)
    return rows


@tfx.dsl.components.component
def DataDrift(examples: tfx.dsl.components.InputArtifact[standard_artifacts.Examples],
              schema: tfx.dsl.components.InputArtifact[standard_artifacts.Schema],
              drift: tfx.dsl.components.OutputArtifact[standard_artifacts.ExampleAnomalies],
              branch: tfx.dsl.components.Parameter[str],
              drift_threshold: tfx.dsl.components.Parameter[float],
              class_mix_threshold: tfx.dsl.components.Parameter[float],
              skew_threshold: tfx.dsl.components.Parameter[float],
              serving_log: tfx.dsl.components.Parameter[str] = "",
              serving_log_key: tfx.dsl.components.Parameter[str] = "") -> None:
    """Drift of the newest span against the previous one, skew of the window against what
    the server received (see the module docstring). ``serving_log_key`` is what TFX's cache
    sees of the log (a local runner passes its files' sizes and times; a compiled Kubeflow
    spec turns caching off for this task instead)."""
    del serving_log_key
    spans = json.loads(examples.get_string_custom_property("spans") or "[]")
    properties = compare(branch, examples.uri, spans, io_utils.SchemaReader().read(
        os.path.join(schema.uri, "schema.pbtxt")), serving_rows(serving_log, branch), drift.uri,
        drift_threshold, class_mix_threshold, skew_threshold)
    drift.split_names = json.dumps([k for k in (DRIFT, SKEW) if properties[k]])
    for key, value in properties.items():
        drift.set_string_custom_property(key, json.dumps(value))
    flagged = [f"{kind} {name}" for kind in (DRIFT, SKEW) for name, m in properties[kind].items() if m["flagged"]]
    if flagged:
        logging.warning("%s: %s", branch, ", ".join(flagged))
