"""Pusher executor that maintains a TF Serving model repository safely.

Differences from TFX's filesystem Pusher, which copies files straight into the final
version directory:

* a version directory appears atomically: the model is copied to a hidden sibling
  directory, then renamed, so a server polling the repository never sees half a model;
* a blessed model identical to the newest pushed version is not pushed again (a re-run
  on unchanged data re-blesses the same model against itself);
* versions are increasing integers (Unix time, bumped on a same-second clash), and only
  the newest ``keep_versions`` are kept;
* TF Serving's ``models.config``, ``monitoring.config`` and ``batching.config`` are
  (re)written at the repository root after each push.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

from absl import logging
from tfx.components.pusher import executor as tfx_pusher
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import json_utils, proto_utils
from tfx.proto import pusher_pb2

from serving import repository_config


def model_digest(path: Path) -> str:
    """Content hash of a SavedModel directory (relative paths and bytes)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def versions(base: Path) -> list[int]:
    """Version numbers present in one model's repository directory, ascending."""
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


def push_atomically(model_path: Path, base: Path, keep_versions: int) -> tuple[str, bool]:
    """Copy ``model_path`` into ``base/<version>`` unless the newest version is identical.

    Returns ``(version, pushed)``.
    """
    base.mkdir(parents=True, exist_ok=True)
    existing = versions(base)
    if existing and model_digest(base / str(existing[-1])) == model_digest(model_path):
        return str(existing[-1]), False
    version = max([int(time.time())] + [v + 1 for v in existing])
    staging = base / f".incoming-{version}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(model_path, staging)
    os.rename(staging, base / str(version))  # atomic on one filesystem
    for old in versions(base)[:-keep_versions] if keep_versions > 0 else []:
        shutil.rmtree(base / str(old), ignore_errors=True)
        logging.info("removed old version %s/%s (keeping %d)", base, old, keep_versions)
    repository_config.write_configs(base.parent)
    return str(version), True


class Executor(tfx_pusher.Executor):
    """Filesystem push into a TF Serving repository, atomic and idempotent."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        base = Path(destination.filesystem.base_directory)
        custom = json_utils.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "null") or {}
        model_path = Path(self.GetModelPath(input_dict))
        version, pushed = push_atomically(model_path, base, int(custom.get("keep_versions", 0)))
        if not pushed:
            logging.info("model identical to version %s in %s: nothing new to push", version, base)
            self._MarkNotPushed(model_push)
            model_push.set_string_custom_property("identical_to_version", version)
            return
        shutil.copytree(model_path, model_push.uri, dirs_exist_ok=True)  # archive, as TFX does
        self._MarkPushed(model_push, pushed_destination=str(base / version), pushed_version=version)
        logging.info("model pushed to %s", base / version)
