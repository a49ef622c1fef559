"""What the pipeline costs over plain Keras: the same two models, data and epochs, timed in one run.

    .venv/bin/python benchmarks/overhead.py [--work /tmp/emotion-ai-quality] [--epochs 3]

Uses the training part of the quality benchmark's split (``benchmarks/quality.py`` writes
it; run that first). Plain: ``benchmarks/plain_keras.py`` (pandas + numpy, a random
split in the profile's train:eval proportions, the same networks, augmentation and training
recipe). Pipeline: the whole TFX DAG with the ``full`` profile's models at the same epochs,
on a fresh pipeline root (no cache).
Reports the ratio pipeline/plain, where the difference goes (per component), and, since
fixed costs matter less the longer training runs, the ratio projected to the ``full``
profile's epochs from the measured fixed and per-epoch costs.
Writes ``benchmarks/results/overhead.{json,md}``.
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import plain_keras  # noqa: E402
import results_io  # noqa: E402

from emotion_ai.pipelines import config  # noqa: E402

GOAL = 1.3


_OTHER_COMPONENTS = ("StatisticsGen", "SchemaGen", "ExampleValidator", "Evaluator", "Pusher",
                     "LatestBlessedModelResolver")

def _split(csv: Path, out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """A random train/eval split in the ``full`` profile's proportions (as CsvExampleGen's)."""
    frame = pd.read_csv(csv)
    eval_rows = frame.sample(frac=config.PROFILES["full"].eval_fraction, random_state=seed)
    train_rows = frame.drop(eval_rows.index)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = out_dir / f"train_{csv.name}", out_dir / f"eval_{csv.name}"
    train_rows.to_csv(paths[0], index=False, float_format="%.4f")
    eval_rows.to_csv(paths[1], index=False, float_format="%.4f")
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/emotion-ai-quality"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    from emotion_ai.pipelines import local_runner

    train_dir = args.work / "train"
    csvs = {"keypoints": train_dir / "keypoints.csv.gz", "emotion": train_dir / "emotion.csv.gz"}
    for path in csvs.values():
        if not path.is_file():
            raise SystemExit(f"{path} is missing: run benchmarks/quality.py first (it writes the split)")
    full = config.PROFILES["full"]
    params = {k: dataclasses.replace(getattr(full, k), epochs=args.epochs) for k in csvs}
    # Early stopping cannot trigger within a few epochs (patience >= 5), so both sides run all.

    plain, t0 = {}, time.time()
    for kind, path in csvs.items():
        train_csv, eval_csv = _split(path, args.work / "overhead" / "plain")
        plain[kind] = plain_keras.train(kind, train_csv, eval_csv, params[kind])
        plain[kind].pop("history")
        print(kind, plain[kind], flush=True)
    plain_seconds = time.time() - t0

    profile = dataclasses.replace(full, name=f"full-{args.epochs}-epochs", **params)
    root = args.work / "overhead" / "pipeline"
    shutil.rmtree(root, ignore_errors=True)
    t1 = time.time()
    run = local_runner.run(profile, root / "root", root / "repo", train_dir, {k: [v] for k, v in csvs.items()})
    pipeline_seconds = time.time() - t1
    components = {c.node_id: round(c.seconds, 1) for c in run.summary.components}

    # Fixed cost + per-epoch cost on each side, projected to the full profile's epochs.
    projection = {}
    for kind in csvs:
        trainer = components[f"Trainer_{kind}"]
        per_epoch_plain = plain[kind]["seconds_per_epoch"]
        projection[kind] = {"plain_fixed_s": round(plain[kind]["load_seconds"], 1),
                            "plain_per_epoch_s": per_epoch_plain,
                            "pipeline_trainer_s": trainer, "full_epochs": getattr(full, kind).epochs}
    non_trainer = pipeline_seconds - sum(components[f"Trainer_{k}"] for k in csvs)
    plain_fixed = sum(p["plain_fixed_s"] for p in projection.values())
    pipe_fixed = non_trainer + sum(components[f"Trainer_{k}"] - args.epochs * plain[k]["seconds_per_epoch"]
                                   for k in csvs)
    full_plain = plain_fixed + sum(p["plain_per_epoch_s"] * p["full_epochs"] for p in projection.values())
    full_pipe = pipe_fixed + sum(p["plain_per_epoch_s"] * p["full_epochs"] for p in projection.values())

    result = {
        **results_io.provenance("overhead.py", argv),
        "epochs": args.epochs,
        "plain": {"seconds": round(plain_seconds, 1), **plain},
        "pipeline": {"seconds": round(pipeline_seconds, 1), "components": components},
        "ratio": round(pipeline_seconds / plain_seconds, 3),
        "goal": GOAL,
        "projection_to_full_epochs": {"plain_seconds": round(full_plain), "pipeline_seconds": round(full_pipe),
                                      "ratio": round(full_pipe / full_plain, 3),
                                      "assumes": "training epochs cost the same inside the Trainer as in plain "
                                                 "Keras (same code), the rest is fixed per run"},
    }
    results_io.write(args.out, "overhead", result, markdown)
    return 0


def markdown(r: dict) -> str:
    comps = r["pipeline"]["components"]
    lines = [
        "# Pipeline overhead: TFX pipeline vs a plain Keras script", "",
        f"Command: `{r['command']}` ({r['machine']['cores']} cores). Same networks, augmentation, training "
        f"recipe, data and epochs ({r['epochs']}) on both sides.", "",
        "| | plain Keras (s) | pipeline (s) |", "|---|---|---|",
        f"| whole run | {r['plain']['seconds']:.0f} | {r['pipeline']['seconds']:.0f} |",
    ]
    for kind in ("keypoints", "emotion"):
        p = r["plain"][kind]
        lines.append(f"| {kind}: load + parse | {p['load_seconds']} | "
                     f"{comps.get(f'CsvExampleGen_{kind}', 0) + comps.get(f'Transform_{kind}', 0):.1f} "
                     f"(ExampleGen + Transform) |")
        lines.append(f"| {kind}: training ({p['epochs']} epochs, {p['seconds_per_epoch']} s/epoch plain) | "
                     f"{p['fit_seconds']} | {comps.get(f'Trainer_{kind}', 0)} (Trainer, incl. reading and export) |")
        lines.append(f"| {kind}: statistics, schema, validation, evaluation, push | - | "
                     f"{sum(comps.get(f'{c}_{kind}', 0) for c in _OTHER_COMPONENTS):.1f} |")
    proj = r["projection_to_full_epochs"]
    lines += ["", f"**Ratio pipeline/plain: {r['ratio']:.2f}** at {r['epochs']} epochs (goal <= {r['goal']}). "
              f"Projected to the `full` profile's epochs: plain {proj['plain_seconds']} s, pipeline "
              f"{proj['pipeline_seconds']} s, ratio {proj['ratio']:.2f} ({proj['assumes']}).", "",
              "Per component (s): " + ", ".join(f"{k} {v}" for k, v in sorted(comps.items(), key=lambda kv: -kv[1])),
              ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
