"""What test-time views buy and cost: each served model's validation metrics and in-process
latency with 1 view, with the mirror (2) and with the views its profile serves.

The served SavedModel averages its network over test-time views inside the graph
(``components/common/views.py``). This benchmark rebuilds the network from the weights
pushed beside it (``assets.extra/network.weights.h5``), takes the standardized images from
the model's own Transform layer, and scores each view set on a validation CSV, so the
accuracy a one-pass model would give up is measured, not guessed:

    .venv/bin/python benchmarks/views.py --model-repo REPO --val VAL_DIR [--profile full]

``VAL_DIR`` holds ``keypoints.csv.gz`` and ``emotion.csv.gz`` (``benchmarks/quality.py``
writes them). Key points: the served graph adds a calibrated offset per coordinate; it is
recovered as the served output minus the network's view average (a constant) and added to
every view set, so the sets differ only in their views.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emotion_ai.pipelines import config  # noqa: E402

config.set_runtime_environment()  # before TensorFlow: the networks are legacy Keras
import results_io  # noqa: E402
import served_inputs  # noqa: E402
import tensorflow as tf  # noqa: E402

from emotion_ai.components import model_repository, spec  # noqa: E402
from emotion_ai.components.branches import BRANCHES  # noqa: E402
from emotion_ai.components.common import training, views  # noqa: E402
from emotion_ai.pipelines import evaluate  # noqa: E402

LATENCY_CALLS = 200


def view_sets(params: spec.ModelParams, size: int) -> dict[str, list]:
    """Named view sets, fewest first; the served one last."""
    served = views.tta_views(params, size)
    sets = {"1 view": [(False, (0.0, 0.0))], "mirror (2 views)": [(False, (0.0, 0.0)), (True, (0.0, 0.0))]}
    sets = {name: v for name, v in sets.items() if len(v) < len(served)}
    sets[f"served ({len(served)} views)"] = served
    return sets


def _latency_ms(network: tf.keras.Model, image: tf.Tensor, size: int, view_set, unview) -> dict:
    """One image's network time with ``view_set`` (all views in one call, as served)."""
    run = tf.function(lambda x: views.average_views(network, x, size, view_set, unview))
    for _ in range(10):
        run(image)
    times = []
    for _ in range(LATENCY_CALLS):
        t0 = time.perf_counter()
        run(image).numpy()
        times.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": round(float(np.percentile(times, 50)), 2), "p99_ms": round(float(np.percentile(times, 99)), 2)}


def measure(model_repo: Path, branch, csv: Path, params: spec.ModelParams) -> dict:
    version, path = model_repository.served_version(model_repo, branch.name)
    saved = model_repository.load(path)
    network = branch.part("model").build(params)
    training.load_network_weights(network, path)
    rows, rejected = evaluate._valid_rows(branch.name, csv)
    strings = [r[branch.staged_columns.index(branch.image_column)] for r in rows]
    truth = branch.part("formats").truth(rows)
    images, served = served_inputs.standardized(saved, branch, strings), served_inputs.served(saved, branch, strings)
    size = branch.image_size
    unview = branch.part("trainer")._unview
    offset = None
    result = {"model_version": version, "csv": str(csv), "rows": len(rows), "rows_rejected": len(rejected),
              "views": {}}
    for name, view_set in view_sets(params, size).items():
        out = views.predict_views(network, images, size, view_set, unview)
        if branch.name == "keypoints":
            from emotion_ai.components.keypoints.transform import denormalize_coordinates, normalize_coordinates
            if offset is None:  # on the first set: served output minus the served views' average, once
                served_views = views.predict_views(network, images, size, views.tta_views(params, size), unview)
                offset = np.median(normalize_coordinates(served) - served_views, axis=0)
            out = denormalize_coordinates(out + offset)
        metrics = branch.part("metrics").summarize(truth, {branch.output: out})
        latency = _latency_ms(network, tf.constant(images[:1]), size, view_set, unview)
        result["views"][name] = {"n_views": len(view_set), **latency, "metrics": metrics}
        print(branch.name, name, {k: v for k, v in metrics.items() if not isinstance(v, dict)}, latency, flush=True)
    return result


def markdown(r: dict) -> str:
    lines = ["# Test-time views: what they buy and cost", "",
             f"Command: `{r['command']}` at commit {r['commit']} ({r['machine']['cores']} cores). "
             "Validation metrics of the pushed networks with each view set; latency is one image through "
             f"the network alone, in-process ({LATENCY_CALLS} calls), views batched in one call as served.", "",
             "| model | views | metric | p50 ms | p99 ms |", "|---|---|---|---|---|"]
    for name, branch in r["models"].items():
        for label, v in branch["views"].items():
            m = v["metrics"]
            metric = (f"RMSE {m['rmse_px']:.3f} px" if "rmse_px" in m
                      else f"accuracy {m['accuracy']:.4f} / macro-F1 {m['macro_f1']:.4f}")
            lines.append(f"| {name} v{branch['model_version']} | {label} | {metric} | {v['p50_ms']} | {v['p99_ms']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-repo", type=Path, required=True)
    parser.add_argument("--val", type=Path, required=True, help="folder with keypoints.csv.gz and emotion.csv.gz")
    parser.add_argument("--profile", default="full", choices=sorted(config.PROFILES))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    profile = config.PROFILES[args.profile]
    models = {b.name: measure(args.model_repo, b, args.val / f"{b.name}.csv.gz", profile.params_for(b))
              for b in BRANCHES}
    results_io.write(args.out, "views", {**results_io.provenance("views.py", argv), "profile": args.profile,
                                         "models": models}, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
