"""Finding the input CSVs of a local data folder, grouped by the branch whose format they hold.

The runner uses it to decide what each branch's ExampleGen reads (and to generate the sample
data when a folder holds none); reading and checking the rows themselves happens inside the
pipeline (``components/csv_rows.py``, ``components/validating_example_gen.py``).
"""
from __future__ import annotations

from pathlib import Path

from emotion_ai.components import csv_rows
from emotion_ai.components.branches import BRANCHES


def find_csvs(data_dir: Path) -> dict[str, list[Path]]:
    """All CSVs (plain or .gz) under ``data_dir``, grouped by dataset, in name order.

    Dated sub-folders (e.g. ``data/2026-11-24/``) are included, so dropping a new file or
    folder in adds its rows to the next run. A CSV of no known format raises
    ``csv_rows.InputDataError`` naming it.
    """
    found: dict[str, list[Path]] = {b.name: [] for b in BRANCHES}
    for path in csv_rows.find_csvs(data_dir):
        found[csv_rows.detect_kind(path)].append(Path(path))
    return found
