"""Key-point model variants on real faces, each trained and scored as the pipeline would.

For each variant (``ModelParams`` overrides of the profile's, e.g. ``fine_heatmaps=True``),
trains the key-point network on the training CSV minus a tenth of its rows (drawn at
random, seed 0), which picks the best epoch and calibrates the offsets as the Trainer's
eval split does, and scores the one-pass network with those offsets on the validation CSV
of unseen people. Plain-Keras plumbing (``plain_keras.py``: same networks, recipe and
scaling as the Transform graph), so a variant costs its training and nothing else:

    .venv/bin/python benchmarks/keypoint_variants.py TRAIN.csv.gz VAL.csv.gz \\
        --variant base --variant fine=fine_heatmaps=True [--param distill_epochs=0]

``--variant NAME[=FIELD=VALUE,...]``; ``--param FIELD=VALUE`` applies to every variant.
Writes ``benchmarks/results/keypoint_variants.{json,md}``.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emotion_ai.pipelines import config  # noqa: E402

config.set_runtime_environment()  # before TensorFlow: the networks are legacy Keras
import plain_keras  # noqa: E402
import results_io  # noqa: E402

from emotion_ai.components import spec  # noqa: E402
from emotion_ai.components.branches import KEYPOINTS  # noqa: E402
from emotion_ai.components.common import views  # noqa: E402
from emotion_ai.components.keypoints import metrics, trainer  # noqa: E402
from emotion_ai.components.keypoints.transform import denormalize_coordinates  # noqa: E402

EVAL_FRACTION = 0.1


def _overrides(text: str) -> dict:
    """``a=1,b=True`` -> ``{"a": 1, "b": True}`` (Python literals, else bare strings)."""
    found = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        try:
            found[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            found[name] = value
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("train_csv", type=Path)
    parser.add_argument("val_csv", type=Path)
    parser.add_argument("--variant", action="append", required=True, metavar="NAME[=FIELD=VALUE,...]")
    parser.add_argument("--param", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--profile", default="full", choices=sorted(config.PROFILES))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    base = dataclasses.replace(config.PROFILES[args.profile].params_for(KEYPOINTS),
                               **_overrides(",".join(args.param)))

    x, y = plain_keras.load_keypoints(args.train_csv)
    val_x, val_y = plain_keras.load_keypoints(args.val_csv)
    is_eval = np.random.default_rng(0).random(len(x)) < EVAL_FRACTION
    fit_x, eval_x, val_x = plain_keras._standardize(x[~is_eval], x[is_eval], val_x)
    fit_y, eval_y = y[~is_eval], y[is_eval]
    # Pixel labels of the unseen people, MISSING_COORDINATE where unknown (as `evaluate` scores them).
    n = len(spec.KEYPOINT_COLUMNS)
    truth = np.where(val_y[:, n:] > 0, denormalize_coordinates(val_y[:, :n]), spec.MISSING_COORDINATE)

    result = {**results_io.provenance("keypoint_variants.py", argv), "profile": args.profile,
              "rows": {"fit": int(len(fit_x)), "eval": int(len(eval_x)), "val": int(len(val_x))},
              "common": _overrides(",".join(args.param)), "variants": []}
    for variant in args.variant:
        name, _, changes = variant.partition("=")
        params = dataclasses.replace(base, **_overrides(changes))
        t0 = time.time()
        network, history, distilled = trainer.train(params, (fit_x, fit_y), (eval_x, eval_y))
        seconds = time.time() - t0
        offsets = trainer.offset_correction(network, params, (eval_x, eval_y)) if params.calibrate_offsets else 0.0
        size = spec.KEYPOINT_IMAGE_SIZE
        out = views.predict_views(network, val_x, size, views.served_views(params, size), trainer._unview)
        scored = metrics.keypoint_metrics(truth, denormalize_coordinates(out + offsets))
        curve = history.history.get("val_rmse_px", []) + (distilled.history.get("val_rmse_px", []) if distilled else [])
        row = {"name": name, "changes": _overrides(changes), "parameters": network.count_params(),
               "seconds": round(seconds, 1), "epochs": len(curve),
               "eval_best_rmse_px": round(float(min(curve)), 4) if curve else None,
               "val_rmse_px": round(scored["rmse_px"], 4),
               "val_mean_point_error_px": round(scored["mean_point_error_px"], 4),
               "eval_curve": [round(float(v), 4) for v in curve]}
        result["variants"].append(row)
        print({k: v for k, v in row.items() if k != "eval_curve"}, flush=True)
        # after each variant: a run cut off later keeps the variants it finished
        results_io.write(args.out, "keypoint_variants", result, markdown)
    return 0


def markdown(r: dict) -> str:
    lines = ["# Key-point variants on unseen people", "",
             f"Command: `{r['command']}`" + (f" at commit {r['commit'][:7]}" if r.get("commit") else "")
             + f" ({r['machine']['cores']} cores; profile `{r['profile']}`"
             + (f" with {r['common']}" if r["common"] else "") + ").", "",
             f"Rows: {r['rows']['fit']} fit, {r['rows']['eval']} eval (best epoch, offsets), {r['rows']['val']} "
             "validation frames of unseen people. One pass, offsets calibrated on the eval rows.", "",
             "| variant | changes | parameters | epochs | seconds | eval best RMSE px | validation RMSE px | "
             "validation mean point error px |", "|---|---|---|---|---|---|---|---|"]
    for v in r["variants"]:
        lines.append(f"| {v['name']} | {v['changes'] or '-'} | {v['parameters']:,} | {v['epochs']} | {v['seconds']} | "
                     f"{v['eval_best_rmse_px']} | {v['val_rmse_px']:.3f} | {v['val_mean_point_error_px']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
