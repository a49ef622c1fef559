"""Model variants on real faces, each trained and scored as the pipeline would.

For each variant (``ModelParams`` overrides of the profile's, e.g. ``fine_heatmaps=True``),
trains the branch's network on the training CSV minus a tenth of its rows (drawn at random,
seed 0), which picks the best epoch (and, for key points, calibrates the offsets) as the
Trainer's eval split does, and scores what the exported graph would serve (one pass after
distillation, else the average over the test-time views) on the validation CSV (key points:
unseen people; expressions: no duplicate in training). Plain-Keras plumbing
(``plain_keras.py``: same networks, recipe and scaling as the Transform graph), so a variant
costs its training and nothing else:

    .venv/bin/python benchmarks/variants.py keypoints TRAIN.csv.gz VAL.csv.gz \\
        --variant base --variant fine=fine_heatmaps=True [--param distill_epochs=0]
    .venv/bin/python benchmarks/variants.py emotion TRAIN.csv.gz VAL.csv.gz \\
        --variant base --variant tempered=class_weight_power=0.5

``--variant NAME[=FIELD=VALUE,...]``; ``--param FIELD=VALUE`` applies to every variant.
Writes ``benchmarks/results/<branch>_variants.{json,md}``.
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
import plain_keras  # noqa: E402
import results_io  # noqa: E402

from emotion_ai.components import spec  # noqa: E402
from emotion_ai.components.branches import EMOTION, KEYPOINTS, by_name  # noqa: E402
from emotion_ai.components.common import views  # noqa: E402
from emotion_ai.components.emotion import metrics as emotion_metrics  # noqa: E402
from emotion_ai.components.emotion import trainer as emotion_trainer  # noqa: E402
from emotion_ai.components.keypoints import metrics as keypoint_metrics  # noqa: E402
from emotion_ai.components.keypoints import trainer as keypoint_trainer  # noqa: E402
from emotion_ai.components.keypoints.transform import denormalize_coordinates  # noqa: E402

EVAL_FRACTION = 0.1
TITLES = {KEYPOINTS.name: "Key-point", EMOTION.name: "Expression"}


def _overrides(text: str) -> dict:
    """``a=1,b=True`` -> ``{"a": 1, "b": True}``, parsed as plain_keras.py's ``--param``."""
    return plain_keras.parse_overrides(filter(None, text.split(",")))


def _keypoints(network, params, splits, history, distilled) -> dict:
    (_, _), (eval_x, eval_y), (val_x, val_y) = splits
    n = len(spec.KEYPOINT_COLUMNS)
    # Pixel labels of the unseen people, MISSING_COORDINATE where unknown (as `evaluate` scores them).
    truth = np.where(val_y[:, n:] > 0, denormalize_coordinates(val_y[:, :n]), spec.MISSING_COORDINATE)
    offsets = (keypoint_trainer.offset_correction(network, params, (eval_x, eval_y))
               if params.calibrate_offsets else 0.0)
    size = spec.KEYPOINT_IMAGE_SIZE
    out = views.predict_views(network, val_x, size, views.served_views(params, size), keypoint_trainer._unview)
    scored = keypoint_metrics.keypoint_metrics(truth, denormalize_coordinates(out + offsets))
    curve = history.history.get("val_rmse_px", []) + (distilled.history.get("val_rmse_px", []) if distilled else [])
    return {"eval_best": round(float(min(curve)), 4) if curve else None,
            "validation": {"rmse_px": round(scored["rmse_px"], 4),
                           "mean_point_error_px": round(scored["mean_point_error_px"], 4)},
            "eval_curve": [round(float(v), 4) for v in curve]}


def _emotion(network, params, splits, history, distilled) -> dict:
    (_, _), (_, _), (val_x, val_y) = splits
    size = spec.EMOTION_IMAGE_SIZE
    out = views.predict_views(network, val_x, size, views.served_views(params, size), emotion_trainer._unview)
    scored = emotion_metrics.classification_metrics(val_y, out.argmax(-1))
    curve = history.history.get("val_accuracy", []) + (distilled.history.get("val_accuracy", []) if distilled else [])
    return {"eval_best": round(float(max(curve)), 4) if curve else None,
            "validation": {"accuracy": round(scored["accuracy"], 4), "macro_f1": round(scored["macro_f1"], 4),
                           **{f"{name} P/R": f"{v['precision']:.2f}/{v['recall']:.2f}"
                              for name, v in scored["per_class"].items()}},
            "eval_curve": [round(float(v), 4) for v in curve]}


BRANCHES = {
    KEYPOINTS.name: (plain_keras.load_keypoints, keypoint_trainer, _keypoints, "RMSE px"),
    EMOTION.name: (plain_keras.load_emotion, emotion_trainer, _emotion, "accuracy"),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("branch", choices=sorted(BRANCHES))
    parser.add_argument("train_csv", type=Path)
    parser.add_argument("val_csv", type=Path)
    parser.add_argument("--variant", action="append", required=True, metavar="NAME[=FIELD=VALUE,...]")
    parser.add_argument("--param", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--profile", default="full", choices=sorted(config.PROFILES))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    load, trainer, score, eval_metric = BRANCHES[args.branch]
    base = plain_keras.with_overrides(config.PROFILES[args.profile].params_for(by_name(args.branch)),
                                      plain_keras.parse_overrides(args.param))

    x, y = load(args.train_csv)
    val_x, val_y = load(args.val_csv)
    is_eval = np.random.default_rng(0).random(len(x)) < EVAL_FRACTION
    fit_x, eval_x, val_x = plain_keras._standardize(x[~is_eval], x[is_eval], val_x)
    splits = ((fit_x, y[~is_eval]), (eval_x, y[is_eval]), (val_x, val_y))

    result = {**results_io.provenance("variants.py", argv), "branch": args.branch, "profile": args.profile,
              "eval_metric": eval_metric,
              "rows": {"fit": int(len(fit_x)), "eval": int(len(eval_x)), "val": int(len(val_x))},
              "common": plain_keras.parse_overrides(args.param), "variants": []}
    for variant in args.variant:
        name, _, changes = variant.partition("=")
        params = plain_keras.with_overrides(base, _overrides(changes))
        t0 = time.time()
        network, history, distilled = trainer.train(params, splits[0], splits[1])
        seconds = time.time() - t0
        scored = score(network, params, splits, history, distilled)
        row = {"name": name, "changes": _overrides(changes), "parameters": network.count_params(),
               "seconds": round(seconds, 1), "epochs": len(scored["eval_curve"]),
               "served_views": len(views.served_views(params, 2)), **scored}
        result["variants"].append(row)
        print({k: v for k, v in row.items() if k != "eval_curve"}, flush=True)
        # after each variant: a run cut off later keeps the variants it finished
        results_io.write(args.out, f"{args.branch}_variants", result, markdown)
    return 0


def markdown(r: dict) -> str:
    scored = list(r["variants"][0]["validation"]) if r["variants"] else []
    what = ("validation frames of unseen people" if r["branch"] == KEYPOINTS.name
            else "validation images with no exact or near duplicate in training")
    lines = [f"# {TITLES[r['branch']]} variants on real faces", "",
             f"Command: `{r['command']}`" + (f" at commit {r['commit'][:7]}" if r.get("commit") else "")
             + f" ({r['machine']['cores']} cores; profile `{r['profile']}`"
             + (f" with {r['common']}" if r["common"] else "") + ").", "",
             f"Rows: {r['rows']['fit']} fit, {r['rows']['eval']} eval (best epoch"
             + (", offsets" if r["branch"] == KEYPOINTS.name else "") + f"), {r['rows']['val']} {what}. "
             "Scored as the exported graph serves: one pass after distillation, else the average over "
             "the test-time views (`served views`).", "",
             f"| variant | changes | parameters | epochs | seconds | served views | eval best {r['eval_metric']} | "
             + " | ".join(f"validation {k}" for k in scored) + " |",
             "|---|---|---|---|---|---|---|" + "---|" * len(scored)]
    for v in r["variants"]:
        cells = [f"{x:.3f}" if isinstance(x, float) else str(x) for x in v["validation"].values()]
        lines.append(f"| {v['name']} | {v['changes'] or '-'} | {v['parameters']:,} | {v['epochs']} | {v['seconds']} | "
                     f"{v['served_views']} | {v['eval_best']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
