"""The DataFingerprint task of a Kubeflow run: what each ExampleGen's cache key depends on.

Open-source KFP keys its cache on a task's input parameters, input artifact ids, command and
image (``backend/src/v2/cacheutils/cache.go``), never on the data behind a URI, and it never
runs ``lifecycle.preCacheCheck`` (only Vertex does). An ExampleGen whose inputs are all
constants would be taken from the cache on every scheduled run. This task runs on every run
(caching off), fingerprints the branch's CSVs (``validating_example_gen.branch_fingerprint``:
their paths and bytes) and hands the fingerprint to its ExampleGen as an input parameter:
the same data keeps the cache, new data re-runs the branch.

    python -m emotion_ai.kubeflow.data_fingerprint --executor_input '{{$}}'
"""
from __future__ import annotations

import argparse
import json
import os
import sys

OUTPUT = "fingerprint"  # the output parameter's name
INPUTS = ("branch", "input_base", "files")  # input parameters (files: a JSON list, relative to input_base)


def run(executor_input: dict) -> str:
    from tfx.dsl.io import fileio

    from emotion_ai.components.validating_example_gen import branch_fingerprint

    values = executor_input["inputs"]["parameterValues"]
    found = branch_fingerprint(values["branch"], values["input_base"], json.loads(values.get("files") or "[]"))
    out = executor_input["outputs"]["outputFile"]
    fileio.makedirs(os.path.dirname(out))
    with fileio.open(out, "w") as f:
        f.write(json.dumps({"parameterValues": {OUTPUT: found}}))
    print(f"{values['branch']}: data under {values['input_base']} has fingerprint {found}")
    return found


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executor_input", required=True, help="KFP's ExecutorInput, as JSON ({{$}})")
    run(json.loads(parser.parse_args(argv).executor_input))


if __name__ == "__main__":
    sys.exit(main())
