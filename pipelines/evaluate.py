"""``emotion-ai evaluate``: score the pushed models on any CSV in the real formats.

Rows go through the same validation as pipeline input (bad rows are counted as rejected),
then through the served models' signatures in batches. The metrics are each branch's own
(``components.<branch>.metrics.summarize``: numpy and scikit-learn), the ones the report shows.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from tqdm import tqdm

from emotion_ai.components import csv_rows
from emotion_ai.components.branches import BRANCHES

BATCH = 64


def _valid_rows(kind: str, path: Path):
    good, rejected = [], []
    for line, record, reason, _ in csv_rows.iter_rows(kind, path):
        reason = reason or csv_rows.outside_domain(kind, record)  # e.g. a label that is no class
        (good if reason is None else rejected).append(record if reason is None else (line, reason))
    return good, rejected


def _predict(model, strings, desc):
    outputs = []
    for start in tqdm(range(0, len(strings), BATCH), desc=desc, unit="batch", leave=False):
        outputs.append(model.predict_pixel_strings(strings[start:start + BATCH]))
    return outputs


def evaluate(model_repo: Path, csvs: Mapping[str, Path | None]) -> dict:
    """Per branch name in ``csvs`` (a CSV in that branch's format, or None to skip): the
    served version's metrics on the CSV's valid rows, with the rows scored and rejected."""
    from emotion_ai.serving.local_model import ServedModel  # loads TensorFlow

    result: dict = {}
    for branch in BRANCHES:
        path = csvs.get(branch.name)
        if not path:
            continue
        rows, rejected = _valid_rows(branch.name, path)
        if not rows:  # metrics of nothing would read as a model scoring 0
            first = f"; first: line {rejected[0][0]}: {rejected[0][1]}" if rejected else ""
            raise csv_rows.InputDataError(f"{path}: no {branch.name} row to score ({len(rejected)} rejected{first})")
        model = ServedModel(model_repo, branch.name)
        image_index = branch.staged_columns.index(branch.image_column)
        outs = _predict(model, [r[image_index] for r in rows], branch.name)
        outputs = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]} if outs else {}
        result[branch.name] = {"model_version": model.version, "csv": str(path), "rows_scored": len(rows),
                               "rows_rejected": len(rejected),
                               **branch.part("metrics").summarize(branch.part("formats").truth(rows), outputs)}
    return result


def format_table(result: dict) -> str:
    lines = []
    for branch in BRANCHES:
        if branch.name in result:
            r = result[branch.name]
            lines.append(f"{branch.title.lower()} (version {r['model_version']}): {r['rows_scored']} rows scored, "
                         f"{r['rows_rejected']} rejected")
            lines += branch.part("metrics").summary_lines(r)
    return "\n".join(lines)


def write_json(result: dict, out: Path) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2))
