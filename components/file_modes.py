"""Who may read what the project writes, decided here and nowhere else.

Two kinds of files, whatever the umask of the process that writes them:

* **served**: the model repository's configs (``models.config``, ``batching.config``,
  ``monitoring.config``) and pushed versions. TF Serving often runs as a user of its own,
  so they are readable by everyone (files 0644, folders 0755).
* **private**: files holding people's faces or derived from them: rejected rows (raw
  pixels), staged rows, reports (face crops, per-person errors), ``predict``'s annotated
  images and JSON. Owner and group only (files 0640, folders 0750): never world-readable.

Modes exist on local filesystems only; on an object store (``gs://``) access is the
bucket's IAM, so these are no-ops there.
"""
from __future__ import annotations

import os
import stat

SERVED_FILE, SERVED_DIR = 0o644, 0o755
PRIVATE_FILE, PRIVATE_DIR = 0o640, 0o750


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _apply(path, file_mode: int, dir_mode: int, tree: bool) -> None:
    path = os.fspath(path)
    if not _is_local(path):
        return
    path = path.removeprefix("file://")
    if os.path.isdir(path) and tree:
        for folder, _, files in os.walk(path):
            os.chmod(folder, dir_mode)
            for name in files:
                target = os.path.join(folder, name)
                if not os.path.islink(target):
                    os.chmod(target, file_mode)
    elif os.path.isdir(path):
        os.chmod(path, dir_mode)
    elif os.path.exists(path) and not stat.S_ISLNK(os.lstat(path).st_mode):
        os.chmod(path, file_mode)


def served(path, tree: bool = False) -> None:
    """Readable by the serving user: a config file, or (``tree``) a model version folder."""
    _apply(path, SERVED_FILE, SERVED_DIR, tree)


def private(path, tree: bool = False) -> None:
    """Owner and group only: a file of face data or a report, or (``tree``) a folder of them."""
    _apply(path, PRIVATE_FILE, PRIVATE_DIR, tree)
