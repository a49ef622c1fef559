"""What every benchmark writes: the command and machine, then ``<name>.json`` and ``<name>.md``."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path


def provenance(script: str, argv) -> dict:
    """The command that produced a result, the commit it ran at, and the machine."""
    args = argv if argv is not None else sys.argv[1:]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True).stdout.strip() or None
    except OSError:  # no git (e.g. an exported tree): the result still gets written
        commit = None
    return {"command": f"python benchmarks/{script} " + " ".join(args), "commit": commit,
            "machine": {"cores": os.cpu_count(), "python": platform.python_version()}}


def write(out: Path, name: str, result: dict, markdown) -> None:
    """``result`` as JSON and its ``markdown(result)`` table under ``out``; prints the table."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    table = markdown(result)
    (out / f"{name}.md").write_text(table)
    print(table)
