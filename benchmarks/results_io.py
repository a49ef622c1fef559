"""What every benchmark writes: the command and machine, then ``<name>.json`` and ``<name>.md``."""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path


def provenance(script: str, argv) -> dict:
    """The command that produced a result, and the machine it ran on."""
    args = argv if argv is not None else sys.argv[1:]
    return {"command": f"python benchmarks/{script} " + " ".join(args),
            "machine": {"cores": os.cpu_count(), "python": platform.python_version()}}


def write(out: Path, name: str, result: dict, markdown) -> None:
    """``result`` as JSON and its ``markdown(result)`` table under ``out``; prints the table."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    table = markdown(result)
    (out / f"{name}.md").write_text(table)
    print(table)
