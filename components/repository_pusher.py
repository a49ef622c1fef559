"""Pusher executor that maintains a TF Serving model repository safely.

Differences from TFX's filesystem Pusher, which copies files straight into the final
version directory:

* a version directory appears atomically: the model is copied to a hidden sibling
  directory, then renamed, so a server polling the repository never sees half a model (on
  an object store, which cannot rename a folder atomically, ``saved_model.pb`` is written
  last instead);
* all I/O through TFX's ``fileio``: the repository can be local or on ``gs://``;
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
import time

from absl import logging
from tfx.components.pusher import executor as tfx_pusher
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import json_utils, proto_utils

from emotion_ai.components import file_modes, model_repository


class RepositoryOwnedError(Exception):
    """The repository belongs to another profile."""


def claim(repo_root: str, profile: str, allow_other_profile: bool = False) -> None:
    """Record ``profile`` as the repository's owner on its first push; refuse another
    profile's push unless allowed (then the repository changes hands)."""
    path = model_repository.join(repo_root, model_repository.OWNER_FILE)
    owner = None
    if fileio.exists(path):
        with fileio.open(path, "r") as f:
            try:
                owner = json.loads(f.read()).get("profile")
            except (ValueError, AttributeError):
                owner = None  # not ours to keep: the next push records its profile
    if owner and owner != profile and not allow_other_profile:
        raise RepositoryOwnedError(
            f"{repo_root} belongs to profile {owner!r}; a {profile!r} run does not push there "
            f"(give it a --model-repo of its own, or pass --allow-other-profile)")
    if owner != profile:
        fileio.makedirs(os.fspath(repo_root))
        model_repository.write_atomically(path, json.dumps({"profile": profile}) + "\n")


def _files(root: str) -> list[str]:
    """Paths of every file under ``root``, relative to it, sorted."""
    root = os.fspath(root).rstrip("/")
    found = []
    for folder, _, names in fileio.walk(root):
        folder = os.fspath(folder).rstrip("/")
        prefix = folder[len(root):].lstrip("/")
        found += [f"{prefix}/{n}" if prefix else n for n in (name.rstrip("/") for name in names)]
    return sorted(found)


def model_digest(path: str) -> str:
    """Content hash of a SavedModel directory (relative paths and bytes)."""
    digest = hashlib.sha256()
    for name in _files(path):
        digest.update(name.encode())
        with fileio.open(model_repository.join(path, name), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def copy_tree(src: str, dst: str) -> None:
    """Copy a SavedModel folder file by file, ``saved_model.pb`` last: on an object store
    (no atomic rename) a reader that waits for that file never sees half a model."""
    names = _files(src)
    names.sort(key=lambda n: n == model_repository.SAVED_MODEL)  # stable: the rest keeps its order
    for name in names:
        target = model_repository.join(dst, name)
        fileio.makedirs(os.path.dirname(target))
        fileio.copy(model_repository.join(src, name), target, overwrite=True)


def is_local(path: str) -> bool:
    return "://" not in os.fspath(path) or os.fspath(path).startswith("file://")


versions = model_repository.version_dirs


def push_atomically(model_path: str, base: str, keep_versions: int) -> tuple[str, bool]:
    """Copy ``model_path`` into ``base/<version>`` unless the newest version is identical.

    On a local filesystem the version folder appears by one rename of a finished copy; on
    an object store (``gs://``), where a folder rename is a copy of each object, the files
    go straight to the version folder with ``saved_model.pb`` last (see ``copy_tree``).
    Returns ``(version, pushed)``.
    """
    model_path, base = os.fspath(model_path), os.fspath(base).rstrip("/")
    fileio.makedirs(base)
    existing = versions(base)
    if existing and model_digest(model_repository.join(base, str(existing[-1]))) == model_digest(model_path):
        return str(existing[-1]), False
    version = max([int(time.time())] + [v + 1 for v in existing])
    final = model_repository.join(base, str(version))
    if is_local(base):
        staging = model_repository.join(base, f".incoming-{version}-{os.getpid()}")
        if fileio.exists(staging):
            fileio.rmtree(staging)
        copy_tree(model_path, staging)
        file_modes.served(staging, tree=True)  # whatever the Trainer's umask: a serving user reads it
        fileio.rename(staging, final)  # atomic on one filesystem
    else:
        copy_tree(model_path, final)
    repo_root = os.path.dirname(base)
    pinned = model_repository.read_pins(repo_root).get(os.path.basename(base))
    for old in versions(base)[:-keep_versions] if keep_versions > 0 else []:
        if old == pinned:
            continue  # a rollback is serving it
        fileio.rmtree(model_repository.join(base, str(old)))
        logging.info("removed old version %s/%s (keeping %d)", base, old, keep_versions)
    model_repository.write_configs(repo_root)
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
        base = destination.filesystem.base_directory.rstrip("/")
        custom = json_utils.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "null") or {}
        model_path = self.GetModelPath(input_dict)
        if custom.get("profile"):
            try:
                claim(os.path.dirname(base), custom["profile"], bool(custom.get("allow_other_profile")))
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
        copy_tree(model_path, model_push.uri)  # archive, as TFX does
        destination_dir = model_repository.join(base, version)
        self._MarkPushed(model_push, pushed_destination=destination_dir, pushed_version=version)
        logging.info("model pushed to %s", destination_dir)
