"""The TF Serving model repository: its versions, its configuration files, loading a version.

One module for everything that reads or writes ``<repo>/<model>/<version>/``: the Pusher
(``repository_pusher``), ``emotion-ai serve``, ``predict``/``evaluate`` (``serving.local_model``),
the report and ``emotion-ai rollback``.

Configuration files generated beside the versions: ``models.config`` (model_config_list of
every model with a pushed version), ``monitoring.config`` (Prometheus endpoint) and
``batching.config``. Base paths are the repository as mounted in the serving container
(``/models`` by default, see ``serving/docker-compose.yml``). Files are replaced
atomically, so a server polling ``models.config`` never reads half a file.

All I/O goes through TFX's ``fileio`` (``tf.io.gfile``), so the repository can be a local
folder or any filesystem TensorFlow has (``gs://``, ``ram://``); paths are strings.

``models.config`` is also where a version is pinned (``emotion-ai rollback``): a pinned
model gets TF Serving's ``specific`` version policy instead of ``latest``, pushes keep the
pin and never prune the pinned version, and ``emotion-ai serve`` honours it as TF Serving
does. It is read and written with TF Serving's own ``ModelServerConfig`` proto.
"""
from __future__ import annotations

import os
import uuid

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2
from tfx.dsl.io import fileio

from emotion_ai.components import file_modes, spec

PathLike = str | os.PathLike

MODELS_CONFIG = "models.config"
SAVED_MODEL = "saved_model.pb"  # its presence makes a version folder a model
OWNER_FILE = "repository.json"  # at the repository's root: the profile that pushes there

CONTAINER_ROOT = "/models"

MONITORING = """prometheus_config {
  enable: true
  path: "/monitoring/prometheus/metrics"
}
"""

BATCHING = f"""max_batch_size {{ value: {spec.SERVING_MAX_BATCH} }}
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


def read_pins(repo_root: PathLike) -> dict[str, int]:
    """``model -> pinned version`` from the repository's ``models.config`` (none if absent)."""
    path = join(repo_root, MODELS_CONFIG)
    if not fileio.exists(path):
        return {}
    with fileio.open(path, "r") as f:
        message = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    pins = {}
    for entry in message.model_config_list.config:
        policy = entry.model_version_policy
        if policy.WhichOneof("policy_choice") == "specific" and policy.specific.versions:
            pins[entry.name] = max(policy.specific.versions)
    return pins


def children(folder: PathLike) -> list[str]:
    """Names in ``folder`` (none if it does not exist), without the trailing slash that
    object stores give sub-folders."""
    folder = os.fspath(folder)
    if not fileio.isdir(folder):
        return []
    return sorted(name.rstrip("/") for name in fileio.listdir(folder))


def version_dirs(base: PathLike) -> list[int]:
    """Numbered version folders holding a SavedModel in one model's folder, ascending."""
    return sorted(int(name) for name in children(base)
                  if name.isdigit() and fileio.exists(join(base, name, SAVED_MODEL)))


def latest_version(model_repo: PathLike, model: str) -> tuple[int, str]:
    """The highest numeric version directory of ``model`` that holds a SavedModel."""
    base = join(model_repo, model)
    versions = version_dirs(base)
    if not versions:
        raise FileNotFoundError(f"{base}: no pushed version of the {model} model (run the pipeline first)")
    return versions[-1], join(base, str(versions[-1]))


def served_version(model_repo: PathLike, model: str) -> tuple[int, str]:
    """The version a server of this repository serves: the one pinned in ``models.config``
    (``emotion-ai rollback``) if it is there, else the newest."""
    pinned = read_pins(model_repo).get(model)
    path = join(model_repo, model, str(pinned))
    if pinned is not None and fileio.exists(join(path, SAVED_MODEL)):
        return pinned, path
    return latest_version(model_repo, model)


def join(root: PathLike, *parts: str) -> str:
    """A path inside the repository as a string: ``pathlib`` would turn ``gs://b`` into ``gs:/b``."""
    return "/".join([os.fspath(root).rstrip("/"), *parts])


def load(path: PathLike):
    """A pushed (or Trainer-written) SavedModel, ready to call through its signatures."""
    import tensorflow as tf

    return tf.saved_model.load(os.fspath(path))


def set_pin(repo_root: PathLike, model: str, version: int | None, base_root: str = CONTAINER_ROOT) -> dict[str, int]:
    """Pin ``model`` to ``version`` (None: back to the newest); return the pins."""
    available = version_dirs(join(repo_root, model))
    if not available:
        raise FileNotFoundError(f"{join(repo_root, model)}: no pushed version of {model!r}")
    if version is not None and version not in available:
        raise ValueError(f"{model} has no version {version} in {os.fspath(repo_root)} (versions: "
                         f"{', '.join(map(str, available))})")
    pins = read_pins(repo_root)
    if version is None:
        pins.pop(model, None)
    else:
        pins[model] = version
    write_configs(repo_root, base_root, pins)
    return pins


def write_atomically(path: PathLike, text: str) -> None:
    """Write a small file whole or not at all: into a sibling, then renamed over the target
    (one object on an object store, where a single object write is atomic anyway)."""
    path = os.fspath(path)
    tmp = f"{os.path.dirname(path)}/.{os.path.basename(path)}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with fileio.open(tmp, "w") as f:
        f.write(text)
    file_modes.served(tmp)  # a TF Serving of another user reads the configs
    fileio.rename(tmp, path, overwrite=True)


def write_configs(repo_root: PathLike, base_root: str = CONTAINER_ROOT,
                  pins: dict[str, int] | None = None) -> list[str]:
    """(Re)write the three config files for the models that have a numeric version; pins
    default to the ones already in ``models.config`` (a push keeps a rollback in force)."""
    fileio.makedirs(os.fspath(repo_root))
    names = [name for name in children(repo_root)
             if not name.startswith(".") and fileio.isdir(join(repo_root, name))
             and any(v.isdigit() for v in children(join(repo_root, name)))]
    pins = read_pins(repo_root) if pins is None else pins
    pins = {m: v for m, v in pins.items() if m in names}
    files = {MODELS_CONFIG: models_config(names, base_root, pins=pins), "monitoring.config": MONITORING,
             "batching.config": BATCHING}
    for name, text in files.items():
        write_atomically(join(repo_root, name), text)
    return [join(repo_root, n) for n in files]
