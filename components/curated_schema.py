"""Each branch's curated schema: kept in the repository, imported by the pipeline.

TFX's SchemaGen infers a schema from the very statistics ExampleValidator then checks against
it, so a broken span passes. Here, as TFX recommends, the schema is reviewed and kept under
version control (``components/<branch>/schema.pbtxt``) and the pipeline imports it
(``ImportCuratedSchema``, TFX's ``ImportSchemaGen`` with two differences, below). The file is
TFDV's inference on the sample data (``emotion-ai schema`` regenerates it) with what the data
can only get wrong written in by ``curate``: each staged column's ``Domain`` from the
branch registry (label classes, coordinates with their missing marker, the derived image
numbers), and no value list for an image column.

``ImportSchemaGen`` takes a file path, which a compiled Kubeflow spec would carry from the
machine that compiled it into a container where it does not exist, and its cache key is
that path, so an edited schema would come from the cache. ``ImportCuratedSchema`` takes a
``package:`` reference resolved where the task runs (the installed package holds the file)
and the file's hash, which is checked there and is the cache key.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import os

from absl import logging
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.utils import io_utils

from emotion_ai.components.branches import ModelBranch

SCHEMA_FILE = "schema.pbtxt"  # in each branch's package
_PACKAGE = "package:"


def reference(branch: ModelBranch) -> str:
    """``package:<branch package>/schema.pbtxt``: where the branch's curated schema is."""
    return f"{_PACKAGE}{branch.package}/{SCHEMA_FILE}"


def resolve(schema_file: str) -> str:
    """A ``package:`` reference as a path in the installed package; a path or URI as is."""
    if not schema_file.startswith(_PACKAGE):
        return schema_file
    package, _, name = schema_file[len(_PACKAGE):].rpartition("/")
    return os.fspath(importlib.resources.files(package) / name)


def file_hash(path: str) -> str:
    return hashlib.sha256(io_utils.read_bytes_file(path)).hexdigest()[:16]


def curate(schema, branch: ModelBranch):
    """Write the branch's domains into an inferred ``schema`` (a TFMD ``Schema``, changed in
    place and returned): float or int ranges, class indices as categorical, and no string
    domain on the image column (inference makes one when the sample repeats an image)."""
    features = {f.name: f for f in schema.feature}
    missing = sorted(set(branch.domains) - set(features))
    if missing:
        raise ValueError(f"{branch.name}: the schema has no feature {', '.join(missing)}")
    for name, domain in branch.domains.items():
        feature = features[name]
        feature.ClearField("domain_info")
        if feature.type == schema_pb2.INT:
            feature.int_domain.min, feature.int_domain.max = int(domain.min), int(domain.max)
            feature.int_domain.is_categorical = domain.categorical
        elif feature.type == schema_pb2.FLOAT:
            feature.float_domain.min, feature.float_domain.max = domain.min, domain.max
        else:
            raise ValueError(f"{branch.name}: feature {name} is not numeric, it cannot have a range")
    image = features[branch.image_column]
    image.ClearField("domain_info")
    for unused in [d for d in schema.string_domain if d.name == branch.image_column]:
        schema.string_domain.remove(unused)
    return schema


class Executor(base_executor.BaseExecutor):
    """Copy the curated schema file into the ``schema`` artifact, after checking it parses
    and is the file the pipeline was built with."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        path = resolve(exec_properties["schema_file"])
        found = file_hash(path)
        if found != exec_properties["file_hash"]:
            raise ValueError(f"{path}: the schema file changed since the pipeline was built (hash {found}, "
                             f"built with {exec_properties['file_hash']}); rebuild or recompile the pipeline")
        io_utils.SchemaReader().read(path)  # a readable Schema proto, or a clear error here
        out = os.path.join(artifact_utils.get_single_uri(output_dict["schema"]), SCHEMA_FILE)
        io_utils.copy_file(path, out)
        logging.info("imported the curated schema %s (%s)", path, found)


class ImportCuratedSchemaSpec(ComponentSpec):
    PARAMETERS = {"schema_file": ExecutionParameter(type=str), "file_hash": ExecutionParameter(type=str)}
    INPUTS = {}
    OUTPUTS = {"schema": ChannelParameter(type=standard_artifacts.Schema)}


class ImportCuratedSchema(base_component.BaseComponent):
    """The branch's curated schema as a ``Schema`` artifact (TFX's ``ImportSchemaGen``, see above)."""

    SPEC_CLASS = ImportCuratedSchemaSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, branch: ModelBranch):
        schema_file = reference(branch)
        super().__init__(spec=ImportCuratedSchemaSpec(
            schema_file=schema_file, file_hash=file_hash(resolve(schema_file)),
            schema=types.Channel(type=standard_artifacts.Schema)))


def infer(branch: ModelBranch, sources: list[str], workdir: str):
    """The branch's schema as TFDV infers it from ``sources`` (raw CSVs, checked and staged as
    the ExampleGen does, derived columns included), then ``curate``d: what SchemaGen would
    infer in a run, plus the domains. Returns ``(schema, StageResult)``."""
    import tensorflow_data_validation as tfdv

    from emotion_ai.components import csv_rows

    staged = csv_rows.stage(branch.name, sources, f"{workdir}/staged.csv", f"{workdir}/rejected_rows.csv")
    statistics = tfdv.generate_statistics_from_csv(staged.staged_path)
    return curate(tfdv.infer_schema(statistics, infer_feature_shape=True), branch), staged


def source_path(branch: ModelBranch) -> str:
    """The branch's schema file in this checkout (what ``emotion-ai schema`` writes)."""
    return resolve(reference(branch))
