"""Warm start on real faces: a new span arrives; retrain from scratch, or start from the served model?

    .venv/bin/python benchmarks/warm_start.py [--shared ../shared/data] [--work /tmp/emotion-ai-warm]
                                              [--profile full] [--warm-epochs 8]

The real data (``../shared/data``, never committed) is split as ``benchmarks/quality.py``
splits it (validation: unseen people, no duplicate images), and the training part into two
spans: span 1 two thirds (key points: two thirds of the training people), span 2 the rest
(new people). Three pipeline runs, one at a time:

1. **served**: span 1 only, from scratch, into a model repository (what is served when span 2
   arrives);
2. **warm**: spans 1 and 2, on a new pipeline root and a copy of that repository, each
   Trainer starting from the served model (``--warm-epochs``, ``Profile.warm_start_epochs``);
3. **fresh**: spans 1 and 2 from scratch, on a new root and repository.

For the warm and fresh runs: the whole run's and each Trainer's wall time, and each
candidate's quality on the validation split (the candidate itself, pushed or not, scored by
``emotion-ai evaluate``'s code through its serving signatures). Writes
``benchmarks/results/warm_start.json`` and ``warm_start.md``.

The three runs take about three hours on 2 cores; each finished run's figures are kept in
``<work>/<run>.json`` and a rerun with the same ``--work`` goes on from the first unfinished
one (``--restart`` starts over). A run that was interrupted goes on from TFX's cache (its
finished components are not run again) and its time is marked as resumed.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import quality  # noqa: E402  (the validation split; it sets the runtime environment)
import results_io  # noqa: E402

from emotion_ai.components.branches import BRANCHES  # noqa: E402
from emotion_ai.pipelines import config  # noqa: E402


def write_spans(work: Path, shared: Path, seed: int) -> dict:
    """The training part as ``data/<branch>/span-1`` and ``span-2``, the validation part as
    ``val/<branch>.csv.gz``; their sizes."""
    import pandas as pd

    kp_train, kp_val = quality.split_keypoints(shared, seed)
    em_train, em_val, _ = quality.split_emotion(shared, seed)
    meta = pd.read_csv(shared / "keypoints_train_meta.csv.gz").loc[kp_train.index]
    people = np.array(sorted(meta["person"].unique()))
    rng = np.random.default_rng(seed + 1)
    later = set(rng.choice(people, size=len(people) // 3, replace=False))
    kp_new = meta["person"].isin(later).to_numpy()
    em_new = rng.random(len(em_train)) < 1 / 3
    sizes = {}
    for name, frame, new, fmt in (("keypoints", kp_train, kp_new, "%.4f"), ("emotion", em_train, em_new, None)):
        for span, part in (("span-1", frame[~new]), ("span-2", frame[new])):
            (work / "data" / name / span).mkdir(parents=True, exist_ok=True)
            part.to_csv(work / "data" / name / span / f"{name}.csv.gz", index=False, float_format=fmt)
            sizes[f"{name}_{span}"] = len(part)
    (work / "val").mkdir(parents=True, exist_ok=True)
    kp_val.to_csv(work / "val" / "keypoints.csv.gz", index=False, float_format="%.4f")
    em_val.to_csv(work / "val" / "emotion.csv.gz", index=False)
    sizes.update(keypoints_val=len(kp_val), emotion_val=len(em_val))
    return sizes


def _inputs(work: Path, spans: list[str]) -> dict[str, list[Path]]:
    return {b.name: [work / "data" / b.name / s / f"{b.name}.csv.gz" for s in spans] for b in BRANCHES}


def _candidates_quality(run, work: Path) -> dict:
    """Each Trainer's candidate scored on the validation split, pushed or not."""
    from emotion_ai.pipelines import evaluate

    with tempfile.TemporaryDirectory() as scratch:
        repo = Path(scratch)
        for name, b in run.summary.branches.items():
            shutil.copytree(b.model_uri, repo / name / "1")
        return evaluate.evaluate(repo, {b.name: work / "val" / f"{b.name}.csv.gz" for b in BRANCHES})


def _measure(run, seconds: float, work: Path) -> dict:
    from emotion_ai.pipelines.run_summary import trainer_history

    times = {c.node_id: round(c.seconds, 1) for c in run.summary.components}
    out = {"pipeline_seconds": round(seconds, 1), "validation": _candidates_quality(run, work), "branches": {}}
    for branch in BRANCHES:
        b = run.summary.branches[branch.name]
        history = trainer_history(run.summary, branch)
        out["branches"][branch.name] = {
            "trainer_seconds": times.get(branch.component_id("Trainer")), "epochs": len(history.get("loss", [])),
            "first_epoch_loss": round(history["loss"][0], 4) if history.get("loss") else None,
            "warm_start": b.warm_start, "blessed": b.blessed, "pushed": b.pushed,
            "spans": [s["name"] for s in b.spans], "drift": b.drift}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path("/tmp/emotion-ai-warm"))
    parser.add_argument("--profile", default="full", choices=sorted(config.PROFILES))
    parser.add_argument("--warm-epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--restart", action="store_true", help="forget finished runs kept in --work")
    args = parser.parse_args(argv)

    from emotion_ai.pipelines import local_runner

    work = args.work
    sizes_file = work / "sizes.json"
    if args.restart or not sizes_file.exists():
        shutil.rmtree(work, ignore_errors=True)
        sizes = write_spans(work, args.shared, args.seed)
        sizes_file.write_text(json.dumps(sizes))
    sizes = json.loads(sizes_file.read_text())
    print(f"spans: {sizes}", flush=True)
    profile = config.PROFILES[args.profile]
    warm_profile = dataclasses.replace(profile, warm_start_epochs=args.warm_epochs)
    result = {**results_io.provenance("warm_start.py", argv), "profile": args.profile,
              "warm_epochs": args.warm_epochs, "sizes": sizes}
    for name, root, repo, run_profile, spans in (
            ("served", "pipeline", "model_repository", profile, ["span-1"]),
            ("warm", "pipeline-warm", "model_repository-warm", warm_profile, ["span-1", "span-2"]),
            ("fresh", "pipeline-fresh", "model_repository-fresh", profile, ["span-1", "span-2"])):
        done = work / f"{name}.json"
        if done.exists():
            result[name] = json.loads(done.read_text())
            print(f"{name}: finished earlier, kept ({done})", flush=True)
            continue
        # An interrupted run goes on from TFX's cache: the components it finished are not run
        # again, so its wall time is only the rest ("resumed"; the served run's time is not
        # compared, warm's and fresh's are, and a resumed one says so in the table).
        resumed = (work / root / "metadata.sqlite").exists()
        if not resumed:
            shutil.rmtree(work / repo, ignore_errors=True)
        if name == "warm" and not (work / repo).exists():  # a copy of what the served run pushed (served at span 2)
            shutil.copytree(work / "model_repository", work / repo)
        start = time.time()
        run = local_runner.run(run_profile, work / root, work / repo, work / "data", _inputs(work, spans))
        seconds = time.time() - start
        print(local_runner.format_summary(run), flush=True)
        result[name] = {**_measure(run, seconds, work), "resumed": resumed}
        done.write_text(json.dumps(result[name], default=str))
    results_io.write(args.out, "warm_start", result, markdown)
    return 0


def markdown(r: dict) -> str:
    lines = [
        "# Warm start on real faces: a new span, retrained from scratch or from the served model", "",
        f"Command: `{r['command']}`" + (f" at commit {r['commit'][:7]}" if r.get("commit") else "")
        + f" (profile `{r['profile']}`, {r['machine']['cores']} cores).", "",
        "Spans (training part): " + ", ".join(f"{k} {v}" for k, v in r["sizes"].items()) + ".", "",
        "| run | pipeline (s) | trainer key points (s) | trainer expressions (s) | key points RMSE px | "
        "expressions accuracy | expressions macro F1 |", "|---|---|---|---|---|---|---|"]
    for name in ("served", "warm", "fresh"):
        run = r[name]
        k, e = run["validation"]["keypoints"], run["validation"]["emotion"]
        resumed = " (resumed: the rest of an interrupted run)" if run.get("resumed") else ""
        lines.append(f"| {name} | {run['pipeline_seconds']:.0f}{resumed} | "
                     f"{run['branches']['keypoints']['trainer_seconds']} | "
                     f"{run['branches']['emotion']['trainer_seconds']} | {k['rmse_px']:.3f} | {e['accuracy']:.4f} | "
                     f"{e['macro_f1']:.4f} |")
    lines += ["", "First-epoch training loss (warm vs fresh): " + "; ".join(
        f"{b}: {r['warm']['branches'][b]['first_epoch_loss']} vs {r['fresh']['branches'][b]['first_epoch_loss']}"
        for b in r["warm"]["branches"]) + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
