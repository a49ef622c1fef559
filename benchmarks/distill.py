"""Distilling the test-time view average into one pass, measured on a trained model.

Starts from a pushed network (its weights beside the SavedModel), runs the Trainer's own
distillation (``components/common/training.distill``: the frozen network's view average
blended into the targets, a short schedule at a fraction of the learning rate) for each
teacher weight asked for, and scores the result in one pass on a validation CSV, next to
the teacher in one pass and with its served views. Weight 0 is the control: the same extra
epochs on the labels alone. Images are standardized by the model's own Transform layer.

    .venv/bin/python benchmarks/distill.py --model-repo REPO --train-dir DATA --val VAL_DIR \\
        --branch emotion --epochs 6 --weights 0 0.5

``DATA/<branch>/**/*.csv*`` are the training CSVs the model was trained on (a tenth of
their rows, drawn at random, picks the best epoch); ``VAL_DIR/<branch>.csv.gz`` the
held-out ones (``benchmarks/quality.py`` writes both).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emotion_ai.pipelines import config  # noqa: E402

config.set_runtime_environment()  # before TensorFlow: the networks are legacy Keras
import plain_keras  # noqa: E402
import results_io  # noqa: E402
import served_inputs  # noqa: E402

from emotion_ai.components import model_repository, spec  # noqa: E402
from emotion_ai.components.branches import by_name  # noqa: E402
from emotion_ai.components.common import training, views  # noqa: E402

EVAL_FRACTION = 0.1


def _targets(branch, frame: pd.DataFrame) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.csv"
        frame.to_csv(path, index=False)
        load = plain_keras.load_keypoints if branch.name == "keypoints" else plain_keras.load_emotion
        return load(path)[1]


def _score(branch, network, params, x, truth, view_set, offset) -> dict:
    out = views.predict_views(network, x, branch.image_size, view_set, branch.part("trainer")._unview)
    if branch.name == "keypoints":  # the served graph adds the calibrated offset, then maps to pixels
        from emotion_ai.components.keypoints.transform import denormalize_coordinates
        out = denormalize_coordinates(out + offset)
    m = branch.part("metrics").summarize(truth, {branch.output: out})
    return {k: v for k, v in m.items() if k in ("rmse_px", "accuracy", "macro_f1", "per_class")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-repo", type=Path, required=True)
    parser.add_argument("--train-dir", type=Path, required=True)
    parser.add_argument("--val", type=Path, required=True)
    parser.add_argument("--branch", required=True, choices=["keypoints", "emotion"])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.5])
    parser.add_argument("--lr-scale", type=float, default=0.3)
    parser.add_argument("--teacher-shift-px", type=int, default=None,
                        help="the teacher's view shifts (default: the profile's tta_shift_px; 0: mirror only)")
    parser.add_argument("--profile", default="full", choices=sorted(config.PROFILES))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    branch = by_name(args.branch)
    base = config.PROFILES[args.profile].params_for(branch)
    version, path = model_repository.served_version(args.model_repo, branch.name)
    saved = model_repository.load(path)
    train = pd.concat([pd.read_csv(f) for f in sorted((args.train_dir / branch.name).rglob("*.csv*"))])
    train.columns = [c.strip() for c in train.columns]
    val = pd.read_csv(args.val / f"{branch.name}.csv.gz")
    val.columns = [c.strip() for c in val.columns]
    rng = np.random.default_rng(0)
    is_eval = rng.random(len(train)) < EVAL_FRACTION
    fit_x, eval_x, val_x = (served_inputs.standardized(saved, branch, f[branch.image_column].tolist())
                            for f in (train[~is_eval], train[is_eval], val))
    fit_y, eval_y = _targets(branch, train[~is_eval]), _targets(branch, train[is_eval])
    truth = (val[list(spec.KEYPOINT_COLUMNS)].fillna(spec.MISSING_COORDINATE).to_numpy(np.float32)
             if branch.name == "keypoints"
             else val[spec.EMOTION_LABEL_COLUMN].to_numpy(np.int64))
    one, served = [(False, (0.0, 0.0))], views.tta_views(base, branch.image_size)
    teacher = branch.part("model").build(base)
    training.load_network_weights(teacher, path)
    trainer = branch.part("trainer")
    one_pass = dataclasses.replace(base, distill_epochs=1)  # served_views: the network once

    def offset(network, view_params):
        """Key points: the per-coordinate offset the Trainer would calibrate for this network and
        these views on the eval rows (``offset_correction``, as run_fn does); 0 for expressions."""
        if branch.name != "keypoints" or not view_params.calibrate_offsets:
            return 0.0
        return trainer.offset_correction(network, view_params, (eval_x, eval_y))

    served_out = served_inputs.served(saved, branch, val[branch.image_column].tolist())
    served_metrics = branch.part("metrics").summarize(truth, {branch.output: served_out})
    result = {**results_io.provenance("distill.py", argv), "branch": branch.name, "model_version": version,
              "rows": {"fit": len(fit_x), "eval": len(eval_x), "val": len(val_x)},
              "teacher": {"1 view": _score(branch, teacher, base, val_x, truth, one, offset(teacher, one_pass)),
                          f"served ({len(served)} views)": {k: v for k, v in served_metrics.items()
                                                            if k in ("rmse_px", "accuracy", "macro_f1", "per_class")}},
              "students": []}
    print("teacher", {k: {m: v for m, v in s.items() if m != "per_class"} for k, s in result["teacher"].items()},
          flush=True)
    for weight in args.weights:
        params = dataclasses.replace(base, distill_epochs=args.epochs, distill_weight=weight,
                                     distill_learning_rate_scale=args.lr_scale,
                                     tta_shift_px=base.tta_shift_px if args.teacher_shift_px is None
                                     else args.teacher_shift_px)

        def start(network, p):
            training.load_network_weights(network, path)
            return dataclasses.replace(p, epochs=0)  # no schedule: straight to the distillation

        t0 = time.time()
        network, _, distilled = trainer.train(params, (fit_x, fit_y), (eval_x, eval_y), start=start)
        seconds = time.time() - t0
        student = {"weight": weight, "epochs": args.epochs, "lr_scale": args.lr_scale, "seconds": round(seconds, 1),
                   "teacher_views": len(views.tta_views(params, branch.image_size)),
                   "1 view": _score(branch, network, params, val_x, truth, one, offset(network, params)),
                   "eval_curve": {k: [round(float(x), 4) for x in v] for k, v in distilled.history.items()
                                  if k.startswith("val_")}}
        result["students"].append(student)
        print("student", weight, {m: v for m, v in student["1 view"].items() if m != "per_class"},
              f"{seconds:.0f} s", flush=True)
    results_io.write(args.out, f"distill_{branch.name}", result, markdown)
    return 0


def _metric(m: dict) -> str:
    return f"RMSE {m['rmse_px']:.3f} px" if "rmse_px" in m else f"{m['accuracy']:.4f} / {m['macro_f1']:.4f}"


def markdown(r: dict) -> str:
    lines = [f"# Distilling the view average into one pass: {r['branch']}", "",
             f"Command: `{r['command']}` at commit {r['commit']} ({r['machine']['cores']} cores). Teacher: the "
             f"pushed model v{r['model_version']}; rows {r['rows']}. Validation metric in one pass unless said "
             "(expressions: accuracy / macro-F1).", "",
             "| model | validation | seconds |", "|---|---|---|"]
    for name, m in r["teacher"].items():
        lines.append(f"| teacher, {name} | {_metric(m)} | |")
    for s in r["students"]:
        what = ("control: labels only" if s["weight"] == 0
                else f"teacher weight {s['weight']}, {s.get('teacher_views')} teacher views")
        lines.append(f"| student ({what}; {s['epochs']} epochs at {s['lr_scale']}x LR) | {_metric(s['1 view'])} "
                     f"| {s['seconds']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
