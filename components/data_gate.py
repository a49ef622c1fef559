"""Training only on data that passed validation.

ExampleValidator compares each split's statistics with the curated schema and records what
is wrong (its ``anomalies``, with a ``blessed`` flag per split), but it stops nothing: TFX
leaves it to the pipeline to act on it. Here:

* ``DataGate`` passes the curated schema on to Transform and the Trainer, marked with the
  verdict (``DATA_BLESSED``) and the anomalies in words (``DATA_ANOMALIES``). It adds the one
  check TFDV has no schema rule for: a class of a categorical label that never occurs in the
  split the Trainer learns from (``absent_classes``): a model cannot learn a class it never
  sees, and would be gated on a class mix it was not trained for;
* ``GatedTrainer`` (TFX's Trainer executor) trains only on blessed data; otherwise its model
  artifact records why it was not trained (``NOT_TRAINED``) and holds no model;
* the Evaluator (``served_baseline``) then blesses nothing, so the Pusher pushes nothing,
  while the run's report and tracking still run and show the anomalies.

The same on every orchestrator: ordinary tasks and artifact properties, no conditional
node (a skipped KFP task would also skip the report that depends on it).
"""
# No ``from __future__ import annotations``: the component decorator reads the real types.
import json
import os

from absl import logging
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2
from tfx import v1 as tfx
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import io_utils

DATA_BLESSED = "data_blessed"  # on the gated schema: 1 when every split passed validation
DATA_ANOMALIES = "data_anomalies"  # on the gated schema: JSON, split -> ["feature: what is wrong"]
NOT_TRAINED = "not_trained"  # on a Trainer's model artifact: why no model was trained


def describe_anomalies(uri: str) -> dict[str, list[str]]:
    """Per split of an ``ExampleAnomalies`` artifact, ``"feature: what is wrong"`` lines."""
    found = {}
    for path in sorted(fileio.glob(f"{uri.rstrip('/')}/Split-*/SchemaDiff.pb")):
        split = path.rstrip("/").rsplit("/", 2)[-2][len("Split-"):]
        anomalies = anomalies_pb2.Anomalies()
        anomalies.ParseFromString(io_utils.read_bytes_file(path))
        found[split] = [f"{name}: {info.short_description or info.description}"
                        for name, info in sorted(anomalies.anomaly_info.items())]
    return found


def absent_classes(statistics_uri: str, schema: schema_pb2.Schema, split: str) -> list[str]:
    """``"feature: what is wrong"`` for each value of a categorical integer domain (a class
    label's ``min..max``) that no example of ``split`` has. Needs statistics computed with the
    schema (StatisticsGen given it): only then does TFDV count a categorical integer's values."""
    path = f"{statistics_uri.rstrip('/')}/Split-{split}/FeatureStats.pb"
    if not fileio.exists(path):
        return []
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    stats.ParseFromString(io_utils.read_bytes_file(path))
    if not stats.datasets or not stats.datasets[0].num_examples:
        return []
    by_name = {f.path.step[-1] if f.path.step else f.name: f for f in stats.datasets[0].features}
    found = []
    for feature in schema.feature:
        domain = feature.int_domain
        if (feature.WhichOneof("domain_info") != "int_domain" or not domain.is_categorical
                or feature.name not in by_name):
            continue
        string_stats = by_name[feature.name].string_stats
        seen = {b.label for b in string_stats.rank_histogram.buckets} | {v.value for v in string_stats.top_values}
        if not seen:  # computed without the schema: TFDV described it as a number
            continue
        missing = [v for v in range(domain.min, domain.max + 1) if str(v) not in seen]
        if missing:
            found.append(f"{feature.name}: no {split} example of class{'es' if len(missing) > 1 else ''} "
                         f"{', '.join(map(str, missing))} (domain {domain.min}..{domain.max}): "
                         "the model could not learn it")
    return found


@tfx.dsl.components.component
def DataGate(schema: tfx.dsl.components.InputArtifact[standard_artifacts.Schema],
             anomalies: tfx.dsl.components.InputArtifact[standard_artifacts.ExampleAnomalies],
             statistics: tfx.dsl.components.InputArtifact[standard_artifacts.ExampleStatistics],
             gated_schema: tfx.dsl.components.OutputArtifact[standard_artifacts.Schema],
             trained_split: tfx.dsl.components.Parameter[str] = "train") -> None:
    """Copy ``schema`` into ``gated_schema`` with ExampleValidator's verdict on the data, and
    whether every class occurs in ``trained_split``."""
    io_utils.copy_dir(schema.uri, gated_schema.uri)
    found = {split: lines for split, lines in describe_anomalies(anomalies.uri).items() if lines}
    blessed = anomalies.get_json_value_custom_property("blessed") if anomalies.has_custom_property("blessed") else None
    # ExampleValidator's flag per split where it set one; its anomalies where it did not.
    ok = all(int(v) == 1 for v in blessed.values()) if blessed else not found
    absent = absent_classes(statistics.uri, io_utils.SchemaReader().read(os.path.join(schema.uri, "schema.pbtxt")),
                            trained_split)
    if absent:
        found.setdefault(trained_split, []).extend(absent)
        ok = False
    gated_schema.set_int_custom_property(DATA_BLESSED, int(ok))
    gated_schema.set_string_custom_property(DATA_ANOMALIES, json.dumps(found))
    if not ok:
        logging.warning("data validation found anomalies; the Trainer will not train: %s", found)


def data_verdict(schema) -> tuple[bool, dict]:
    """``(passed, anomalies)`` of a schema artifact; a schema no gate marked passes."""
    if not schema.has_custom_property(DATA_BLESSED):
        return True, {}
    return bool(schema.get_int_custom_property(DATA_BLESSED)), json.loads(
        schema.get_string_custom_property(DATA_ANOMALIES) or "{}")


def not_trained(model) -> str | None:
    """Why a Trainer's model artifact holds no model, or None when it holds one."""
    return model.get_string_custom_property(NOT_TRAINED) or None if model.has_custom_property(NOT_TRAINED) else None


class GatedTrainerExecutor(trainer_executor.GenericExecutor):
    """TFX's Trainer executor (``run_fn``), run only when the gated schema passed."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        passed, anomalies = data_verdict(input_dict[standard_component_specs.SCHEMA_KEY][0])
        if passed:
            super().Do(input_dict, output_dict, exec_properties)
            return
        lines = [f"[{split}] {line}" for split, items in anomalies.items() for line in items]
        reason = f"data validation found {len(lines)} anomal{'y' if len(lines) == 1 else 'ies'}: " + "; ".join(lines)
        model = output_dict[standard_component_specs.MODEL_KEY][0]
        model.set_string_custom_property(NOT_TRAINED, reason)
        fileio.makedirs(model.uri)
        io_utils.write_string_file(os.path.join(model.uri, "NOT_TRAINED.txt"), reason + "\n")
        for run in output_dict.get(standard_component_specs.MODEL_RUN_KEY, []):
            fileio.makedirs(run.uri)
        logging.warning("not training: %s", reason)
