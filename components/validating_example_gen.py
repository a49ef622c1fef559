"""ExampleGen that checks every input row first: row validation inside the DAG.

TFX's ``CsvExampleGen`` needs one clean, homogeneous table; the raw files are neither (see
``csv_rows``). This executor finds the branch's CSVs under ``input_base`` (sub-folders too;
files of another branch's format are left to that branch and counted), checks every row,
writes the good ones to one staged CSV in its temporary folder and hands that to TFX's CSV
executor, which splits and writes the examples. What it did travels with the ``Examples``
artifact, so the summary, the report and MLflow read it on every orchestrator:

* ``rejected_rows.csv`` in the artifact's folder (file, line, reason, raw record), only when
  a row was rejected; ``span_features.csv`` beside it: per staged row its file and the
  numbers drift is measured on (``drift``);
* custom properties ``rows_read``, ``rows_rejected``, ``rejected_reasons`` (JSON: reason ->
  rows), ``sources`` (JSON list of the files read), ``other_files`` (JSON list of files of
  another branch's format), ``spans`` (JSON list, oldest first, of the spans read: name,
  files, rows read and rejected) and ``spans_left_out`` (JSON list of the older spans'
  names, outside the window: ``spans``).

Only the newest ``span_window`` spans (custom config) are read; the artifact's ``span`` is
the newest one's number, as TFX's span-aware ExampleGen sets it.

ExampleGen's driver fingerprints the top level of ``input_base`` (span, version, cache); a
runner that knows more (sub-folders, an explicit file list) passes its own ``fingerprint``
in the custom config, so a changed file anywhere re-runs the branch.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os

from absl import logging
from google.protobuf import any_pb2, json_format, struct_pb2
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from emotion_ai.components import csv_rows, spans, spec

STAGED_FILE = "staged.csv"
# The input parameter a Kubeflow spec adds (``kubeflow/runner.py``): the fingerprint of the
# data, taken by an uncached task before this one, so that KFP's cache key changes with it.
DATA_FINGERPRINT = "data_fingerprint"


@dataclasses.dataclass(frozen=True)
class BranchInput:
    """Where one branch's raw CSVs are: a folder (or URI), optionally only some files in it
    (paths relative to it), and a fingerprint of them for the cache."""

    base: str
    files: tuple[str, ...] = ()
    fingerprint: str = ""


def _custom_config(branch: str, source: BranchInput, span_window: int) -> example_gen_pb2.CustomConfig:
    struct = struct_pb2.Struct()
    struct.update({"branch": branch, "files": list(source.files), "fingerprint": source.fingerprint,
                   "span_window": span_window})
    packed = any_pb2.Any()
    packed.Pack(struct)
    return example_gen_pb2.CustomConfig(custom_config=packed)


def read_custom_config(exec_properties) -> dict:
    config = example_gen_pb2.CustomConfig()
    proto_utils.json_to_proto(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "{}", config)
    struct = struct_pb2.Struct()
    if config.custom_config.Is(struct.DESCRIPTOR):
        config.custom_config.Unpack(struct)
    return json_format.MessageToDict(struct)


def branch_files(branch: str, source_base: str, files: list[str]) -> tuple[list[str], list[str]]:
    """``(this branch's CSVs, other branches' CSVs)`` among ``files`` (relative to
    ``source_base``; all CSVs under it when empty), told apart by their header."""
    base = source_base.rstrip("/")
    paths = [f"{base}/{f}" for f in files] if files else csv_rows.find_csvs(base)
    ours, others = [], []
    for path in paths:
        (ours if csv_rows.detect_kind(path) == branch else others).append(path)
    return ours, others


def fingerprint(paths) -> str:
    """What the files hold, not where or when: each path (relative to their common folder)
    and its bytes, read through ``fileio`` (local paths and ``gs://`` alike). The data's part
    of a cache key: a changed file changes it, a copy of the same files does not."""
    paths = sorted(os.fspath(p) for p in paths)
    common = os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else ""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{os.path.relpath(path, common)}\n".encode())
        with fileio.open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def branch_fingerprint(branch: str, base: str, files=()) -> str:
    """The ``fingerprint`` of the CSVs this branch's ExampleGen would read under ``base``."""
    ours, _ = branch_files(branch, base, list(files))
    return fingerprint(ours)


class Executor(csv_executor.Executor):
    """Check every row, then TFX's CSV ExampleGen on the good ones."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        custom = read_custom_config(exec_properties)
        branch = custom["branch"]
        base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        ours, others = branch_files(branch, base, list(custom.get("files") or []))
        if not ours:
            raise csv_rows.InputDataError(f"no {branch} CSV in {base}"
                                          + (f" (only other formats: {', '.join(others)})" if others else ""))
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        read = fingerprint(ours)  # every file of the branch, the older spans too, as branch_fingerprint
        try:
            kept, left_out = spans.window(spans.group(base, ours), int(custom.get("span_window") or 1))
        except spans.SpanError as error:
            raise csv_rows.InputDataError(str(error)) from None
        ours = [path for span in kept for path in span.files]
        staged_dir = os.path.join(self._get_tmp_dir(), "staged")
        result = csv_rows.stage(branch, ours, f"{staged_dir}/{STAGED_FILE}",
                                f"{examples.uri}/{spec.REJECTED_ROWS_FILE}",
                                features_path=f"{examples.uri}/{spec.SPAN_FEATURES_FILE}")
        logging.info("%s: %d rows read from %d file(s) of %d span(s) (%s), %d rejected%s%s", branch,
                     result.rows_read, len(ours), len(kept), ", ".join(s.name for s in kept), result.rows_rejected,
                     f" (see {result.rejected_path})" if result.rejected_path else "",
                     f"; older spans left out: {', '.join(s.name for s in left_out)}" if left_out else "")
        staged = dict(exec_properties)
        staged[standard_component_specs.INPUT_BASE_KEY] = staged_dir
        staged[standard_component_specs.INPUT_CONFIG_KEY] = proto_utils.proto_to_json(example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name="single_split", pattern=STAGED_FILE)]))
        super().Do(input_dict, output_dict, staged)
        examples.set_int_custom_property("rows_read", result.rows_read)
        examples.set_int_custom_property("rows_rejected", result.rows_rejected)
        examples.set_string_custom_property("rejected_reasons", json.dumps(result.reasons))
        examples.set_string_custom_property("sources", json.dumps(ours))
        examples.set_string_custom_property("other_files", json.dumps(others))
        examples.set_string_custom_property("spans", json.dumps([
            {"name": span.name, "number": span.number, "files": list(span.files),
             "rows_read": sum(result.per_source[f][0] for f in span.files),
             "rows_rejected": sum(result.per_source[f][1] for f in span.files)} for span in kept]))
        examples.set_string_custom_property("spans_left_out", json.dumps([span.name for span in left_out]))
        examples.span = kept[-1].number
        # What was read, as a cache key sees it; a Kubeflow run passes the fingerprint its
        # DataFingerprint task took (the key this task was cached under), which differs only
        # when the files changed between the two tasks.
        examples.set_string_custom_property("data_fingerprint", read)
        given = exec_properties.get(DATA_FINGERPRINT)
        if given and given != read:
            logging.warning("%s: the data changed since the run began (fingerprint %s, now %s); this run "
                            "read the newer files", branch, given, read)


def ValidatingCsvExampleGen(branch: str, source: BranchInput | str,  # noqa: N802 - a component, as TFX's are
                            output_config: example_gen_pb2.Output, span_window: int) -> FileBasedExampleGen:
    """The ExampleGen of one branch, reading the newest ``span_window`` spans of ``source``
    (a folder or a ``BranchInput``)."""
    source = BranchInput(source) if isinstance(source, str) else source
    return FileBasedExampleGen(
        input_base=source.base,
        custom_config=_custom_config(branch, source, span_window),
        output_config=output_config,
        custom_executor_spec=executor_spec.BeamExecutorSpec(Executor),
    )
