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
  (re)written at the repository root after each push; a pinned version (``emotion-ai
  rollback``) stays pinned and is never pruned;
* a repository belongs to the profile that first pushed into it (``repository.json``):
  another profile's push is refused unless the run allows it, so a smoke run cannot
  replace a production model by pointing at the wrong folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from absl import logging
from tfx.components.pusher import executor as tfx_pusher
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import json_utils, proto_utils

from emotion_ai.components import model_repository


class RepositoryOwnedError(Exception):
    """The repository belongs to another profile."""


def claim(repo_root: Path, profile: str, allow_other_profile: bool = False) -> None:
    """Record ``profile`` as the repository's owner on its first push; refuse another
    profile's push unless allowed (then the repository changes hands)."""
    path = Path(repo_root) / model_repository.OWNER_FILE
    try:
        owner = json.loads(path.read_text()).get("profile")
    except (OSError, ValueError):
        owner = None
    if owner and owner != profile and not allow_other_profile:
        raise RepositoryOwnedError(
            f"{repo_root} belongs to profile {owner!r}; a {profile!r} run does not push there "
            f"(give it a --model-repo of its own, or pass --allow-other-profile)")
    if owner != profile:
        Path(repo_root).mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"profile": profile}) + "\n")


def model_digest(path: Path) -> str:
    """Content hash of a SavedModel directory (relative paths and bytes)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


versions = model_repository.version_dirs


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
    pinned = model_repository.read_pins(base.parent).get(base.name)
    for old in versions(base)[:-keep_versions] if keep_versions > 0 else []:
        if old == pinned:
            continue  # a rollback is serving it
        shutil.rmtree(base / str(old), ignore_errors=True)
        logging.info("removed old version %s/%s (keeping %d)", base, old, keep_versions)
    model_repository.write_configs(base.parent)
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
        if custom.get("profile"):
            try:
                claim(base.parent, custom["profile"], bool(custom.get("allow_other_profile")))
            except RepositoryOwnedError as refused:
                logging.warning("not pushed: %s", refused)
                self._MarkNotPushed(model_push)
                model_push.set_string_custom_property("push_refused", str(refused))
                return
        version, pushed = push_atomically(model_path, base, int(custom.get("keep_versions", 0)))
        if not pushed:
            logging.info("model identical to version %s in %s: nothing new to push", version, base)
            self._MarkNotPushed(model_push)
            model_push.set_string_custom_property("identical_to_version", version)
            return
        shutil.copytree(model_path, model_push.uri, dirs_exist_ok=True)  # archive, as TFX does
        self._MarkPushed(model_push, pushed_destination=str(base / version), pushed_version=version)
        logging.info("model pushed to %s", base / version)
