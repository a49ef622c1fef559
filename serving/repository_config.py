"""TF Serving configuration files generated beside the model repository.

``models.config`` (model_config_list of every model with a pushed version), plus
``monitoring.config`` (Prometheus endpoint) and ``batching.config``. Base paths are the
repository as mounted in the serving container (``/models`` by default, see
``serving/docker-compose.yml``). Files are replaced atomically, so a server polling
``models.config`` never reads half a file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pipelines import config

CONTAINER_ROOT = "/models"

MONITORING = """prometheus_config {
  enable: true
  path: "/monitoring/prometheus/metrics"
}
"""

BATCHING = f"""max_batch_size {{ value: {config.SERVING_MAX_BATCH} }}
batch_timeout_micros {{ value: 2000 }}
max_enqueued_batches {{ value: 100 }}
num_batch_threads {{ value: {os.cpu_count() or 2} }}
"""


def models_config(model_names, base_root: str = CONTAINER_ROOT, keep_serving: int = 1) -> str:
    entries = "".join(
        f"""  config {{
    name: "{name}"
    base_path: "{base_root.rstrip('/')}/{name}"
    model_platform: "tensorflow"
    model_version_policy {{ latest {{ num_versions: {keep_serving} }} }}
  }}
""" for name in model_names)
    return f"model_config_list {{\n{entries}}}\n"


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_configs(repo_root: Path, base_root: str = CONTAINER_ROOT) -> list[Path]:
    """(Re)write the three config files for the models that have a numeric version."""
    repo_root = Path(repo_root)
    repo_root.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in repo_root.iterdir()
                   if p.is_dir() and not p.name.startswith(".") and any(v.name.isdigit() for v in p.iterdir()))
    files = {"models.config": models_config(names, base_root), "monitoring.config": MONITORING,
             "batching.config": BATCHING}
    for name, text in files.items():
        _atomic_write(repo_root / name, text)
    return [repo_root / n for n in files]
