"""The TF Serving model repository: its versions, its configuration files, loading a version.

One module for everything that reads or writes ``<repo>/<model>/<version>/``: the Pusher
(``repository_pusher``), ``emotion-ai serve``, ``predict``/``evaluate`` (``serving.local_model``),
the report and ``emotion-ai rollback``.

Configuration files generated beside the versions: ``models.config`` (model_config_list of
every model with a pushed version), ``monitoring.config`` (Prometheus endpoint) and
``batching.config``. Base paths are the repository as mounted in the serving container
(``/models`` by default, see ``serving/docker-compose.yml``). Files are replaced
atomically, so a server polling ``models.config`` never reads half a file.

``models.config`` is also where a version is pinned (``emotion-ai rollback``): a pinned
model gets TF Serving's ``specific`` version policy instead of ``latest``, pushes keep the
pin and never prune the pinned version, and ``emotion-ai serve`` honours it as TF Serving
does. It is read and written with TF Serving's own ``ModelServerConfig`` proto.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

MODELS_CONFIG = "models.config"
OWNER_FILE = "repository.json"  # at the repository's root: the profile that pushes there

CONTAINER_ROOT = "/models"

MONITORING = """prometheus_config {
  enable: true
  path: "/monitoring/prometheus/metrics"
}
"""

SERVING_MAX_BATCH = 32  # TF Serving batching.config
BATCHING = f"""max_batch_size {{ value: {SERVING_MAX_BATCH} }}
batch_timeout_micros {{ value: 2000 }}
max_enqueued_batches {{ value: 100 }}
num_batch_threads {{ value: {os.cpu_count() or 2} }}
"""


def models_config(model_names, base_root: str = CONTAINER_ROOT, keep_serving: int = 1,
                  pins: dict[str, int] | None = None) -> str:
    """``model_config_list`` text: each model serves its newest version, or its pinned one."""
    message = model_server_config_pb2.ModelServerConfig()
    for name in model_names:
        entry = message.model_config_list.config.add(
            name=name, base_path=f"{base_root.rstrip('/')}/{name}", model_platform="tensorflow")
        if pins and name in pins:
            entry.model_version_policy.specific.versions.append(int(pins[name]))
        else:
            entry.model_version_policy.latest.num_versions = keep_serving
    return text_format.MessageToString(message)


def read_pins(repo_root: Path) -> dict[str, int]:
    """``model -> pinned version`` from the repository's ``models.config`` (none if absent)."""
    path = Path(repo_root) / MODELS_CONFIG
    if not path.is_file():
        return {}
    message = text_format.Parse(path.read_text(), model_server_config_pb2.ModelServerConfig())
    pins = {}
    for entry in message.model_config_list.config:
        policy = entry.model_version_policy
        if policy.WhichOneof("policy_choice") == "specific" and policy.specific.versions:
            pins[entry.name] = max(policy.specific.versions)
    return pins


def version_dirs(base: Path) -> list[int]:
    """Numbered version folders holding a SavedModel in one model's folder, ascending."""
    base = Path(base)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file())


def latest_version(model_repo: Path, model: str) -> tuple[int, Path]:
    """The highest numeric version directory of ``model`` that holds a SavedModel."""
    base = Path(model_repo) / model
    versions = version_dirs(base)
    if not versions:
        raise FileNotFoundError(f"{base}: no pushed version of the {model} model (run the pipeline first)")
    return versions[-1], base / str(versions[-1])


def served_version(model_repo: Path, model: str) -> tuple[int, Path]:
    """The version a server of this repository serves: the one pinned in ``models.config``
    (``emotion-ai rollback``) if it is on disk, else the newest."""
    pinned = read_pins(model_repo).get(model)
    path = Path(model_repo) / model / str(pinned)
    if pinned is not None and (path / "saved_model.pb").exists():
        return pinned, path
    return latest_version(model_repo, model)


def load(path: Path | str):
    """A pushed (or Trainer-written) SavedModel, ready to call through its signatures."""
    import tensorflow as tf  # here, not at import: rollback and the Pusher's checks need no TensorFlow

    return tf.saved_model.load(str(path))


def set_pin(repo_root: Path, model: str, version: int | None, base_root: str = CONTAINER_ROOT) -> dict[str, int]:
    """Pin ``model`` to ``version`` (None: back to the newest); return the pins."""
    repo_root = Path(repo_root)
    available = version_dirs(repo_root / model)
    if not available:
        raise FileNotFoundError(f"{repo_root / model}: no pushed version of {model!r}")
    if version is not None and version not in available:
        raise ValueError(f"{model} has no version {version} in {repo_root} (versions: "
                         f"{', '.join(map(str, available))})")
    pins = read_pins(repo_root)
    if version is None:
        pins.pop(model, None)
    else:
        pins[model] = version
    write_configs(repo_root, base_root, pins)
    return pins


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_configs(repo_root: Path, base_root: str = CONTAINER_ROOT, pins: dict[str, int] | None = None) -> list[Path]:
    """(Re)write the three config files for the models that have a numeric version; pins
    default to the ones already in ``models.config`` (a push keeps a rollback in force)."""
    repo_root = Path(repo_root)
    repo_root.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in repo_root.iterdir()
                   if p.is_dir() and not p.name.startswith(".") and any(v.name.isdigit() for v in p.iterdir()))
    pins = read_pins(repo_root) if pins is None else pins
    pins = {m: v for m, v in pins.items() if m in names}
    files = {MODELS_CONFIG: models_config(names, base_root, pins=pins), "monitoring.config": MONITORING,
             "batching.config": BATCHING}
    for name, text in files.items():
        _atomic_write(repo_root / name, text)
    return [repo_root / n for n in files]
