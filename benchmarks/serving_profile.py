"""Where one request's time goes: each stage of a predict request, timed on its own.

    .venv/bin/python benchmarks/serving_profile.py --model-repo serving/model_repository-sample [--calls 300]

For each served model, for one 96x96 PNG face and for a batch of 32 (base64 ``instances``, as
a client sends them), p50/p99 over ``--calls`` calls of:

* the stages inside the SavedModel: its ``serving_default`` signature whole; the image
  decoding it starts with (``image.decode_images``: pixel values since issue 35, pixel
  strings before); its ``serving_pixels`` signature (the
  same graph from pixel values, no image); the Transform layer alone; the network alone
  (rebuilt from the branch's code with the served weights, one view, as ``views.py``);
* the server's Python around it (``serving/server.py``): the JSON body parsed, the inputs
  decoded and checked (``parse_inputs``), the whole ``predict`` handler (registry lookup,
  checks, signature, output formatting), the response encoded;
* a request over REST to ``emotion-ai serve`` on 127.0.0.1 (keep-alive, one client).

What is left of the REST time after the handler and the JSON is HTTP (uvicorn, FastAPI, the
client). Writes ``benchmarks/results/serving_profile.{json,md}``.
"""
from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import local_server  # noqa: E402
import results_io  # noqa: E402

from emotion_ai.pipelines import config  # noqa: E402

config.set_runtime_environment()
import tensorflow as tf  # noqa: E402

from emotion_ai.components import model_repository, spec  # noqa: E402
from emotion_ai.components.branches import by_name  # noqa: E402
from emotion_ai.components.common import training  # noqa: E402
from emotion_ai.serving import server  # noqa: E402

BATCHES = (1, 32)


def _percentiles(call, calls: int, warmup: int = 10) -> dict:
    for _ in range(warmup):
        call()
    ms = []
    for _ in range(calls):
        t = time.perf_counter()
        call()
        ms.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def profile_model(repo: Path, name: str, url: str, calls: int) -> list[dict]:
    branch = by_name(name)
    version, path = model_repository.served_version(repo, name)
    saved = model_repository.load(path)
    # The repository's owner file names the profile that trained it: the network's parameters.
    owner = json.loads((repo / model_repository.OWNER_FILE).read_text())["profile"]
    network = branch.part("model").build(config.PROFILES[owner].params_for(branch))
    training.load_network_weights(network, str(path))
    registry = server.ModelRegistry(repo, poll_seconds=3600)
    registry.poll_once()
    faces = local_server.face_pngs(max(BATCHES))
    return [{"model": name, "version": version, "batch": n,
             "stages": _stages(saved, network, registry, branch, faces[:n], url, calls)} for n in BATCHES]


def _decoder(size: int):
    """The image decoding ``serving_default`` starts with: ``image.decode_images``, which
    gives pixel values (before issue 35 pixel strings, which the Transform layer parsed)."""
    from emotion_ai.components.common import image

    return lambda b: image.decode_images(b, size)


def _stages(saved, network, registry, branch, faces: list[bytes], url: str, calls: int) -> dict:
    name, size, n = branch.name, branch.image_size, len(faces)
    images = tf.constant(faces)
    body = json.dumps({"instances": [{"b64": base64.b64encode(f).decode()} for f in faces]})
    decode = tf.function(_decoder(size))
    pixels = decode(images)[0]  # what serving_default decodes the images to
    strings = pixels if pixels.dtype == tf.string else tf.constant(
        [" ".join(str(int(v)) for v in row) for row in np.asarray(pixels).reshape(n, -1)])
    standardized = saved.tft_layer({branch.image_column: tf.reshape(strings, [-1, 1])})[spec.IMAGE_FEATURE]
    run_network = tf.function(lambda x: network(x, training=False))
    specs = server._input_specs(saved.signatures["serving_default"])
    parsed = json.loads(body)
    outputs = {k: v.numpy() for k, v in saved.signatures["serving_default"](images=images).items()}
    session = requests.Session()
    endpoint = f"{url}/v1/models/{name}:predict"
    headers = {"Content-Type": "application/json"}
    stages = {
        "graph: serving_default (whole signature)": lambda: saved.signatures["serving_default"](images=images),
        "graph: image decoding (image.decode_images)": lambda: decode(images),
        "graph: serving_pixels (no image decoding)": lambda: saved.signatures["serving_pixels"](
            **{spec.SERVING_PIXELS_INPUT: strings}),
        "graph: Transform layer alone (pixel strings in)": lambda: saved.tft_layer(
            {branch.image_column: tf.reshape(strings, [-1, 1])}),
        "graph: network alone (one view)": lambda: run_network(standardized),
        "python: JSON body parsed": lambda: json.loads(body),
        "python: inputs decoded and checked (parse_inputs)": lambda: server.parse_inputs(parsed, specs),
        "python: whole predict handler": lambda: server.predict(registry, name, None, parsed),
        "python: response formatted and encoded": lambda: json.dumps(server.format_outputs(outputs, True)),
        "REST: one request, keep-alive": lambda: session.post(endpoint, data=body, headers=headers).raise_for_status(),
    }
    found = {}
    for stage, call in stages.items():
        found[stage] = _percentiles(call, calls)
        print(name, n, stage, found[stage], flush=True)
    return found


def markdown(r: dict) -> str:
    lines = ["# Serving profile: where one predict request's time goes", "",
             f"Command: `{r['command']}` at commit {r['commit']} ({r['machine']['cores']} cores, "
             f"{r['calls']} calls per stage after 10 warm-up calls). Each stage is timed on its own, in-process "
             "unless it says REST; `emotion-ai serve` ran as its own process on 127.0.0.1.", ""]
    for row in r["results"]:
        lines += [f"## {row['model']} (version {row['version']}), batch of {row['batch']}", "",
                  "| stage | p50 ms | p99 ms |", "|---|---|---|"]
        lines += [f"| {stage} | {v['p50_ms']} | {v['p99_ms']} |" for stage, v in row["stages"].items()]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-repo", type=Path, default=config.MODEL_REPO)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--name", default="serving_profile", help="result file name (e.g. serving_profile_before)")
    args = parser.parse_args(argv)
    process, url = local_server.start(args.model_repo)
    try:
        results = [row for name in local_server.MODELS for row in profile_model(args.model_repo, name, url, args.calls)]
    finally:
        process.terminate()
        process.wait(timeout=30)
    result = {**results_io.provenance("serving_profile.py", argv), "calls": args.calls, "results": results}
    results_io.write(args.out, args.name, result, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
