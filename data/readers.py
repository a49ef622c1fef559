"""Input readers: find, validate and stage the two CSV datasets for CsvExampleGen.

Real files come with quirks: gzip or plain, CRLF or LF line ends, FER2013's ``' pixels'``
header (leading space) and extra columns such as ``Usage``, Kaggle rows with missing
coordinates, and now and then a broken row. CsvExampleGen needs one clean, homogeneous
table, so each dataset is staged first:

* every row is checked: field count, then its branch's ``formats.check_row`` (pixel count and
  range, label range, coordinate range);
* good rows go to ``<pipeline_root>/staged/<dataset>/data.csv`` in one canonical layout
  (missing coordinates written as ``MISSING_COORDINATE``);
* bad rows go, with file, line, reason and the raw record, to
  ``<pipeline_root>/rejected/<dataset>.csv``, and are counted in the run summary.

The staged file is only rewritten when its content changes, so CsvExampleGen's input
fingerprint, and with it the whole TFX cache, survives re-runs on unchanged data.
"""
from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from emotion_ai.components import spec
from emotion_ai.components.branches import BRANCHES, by_name

MIN_GOOD_ROWS = 10  # fewer valid rows than this cannot make a train and an eval split
csv.field_size_limit(10_000_000)  # a 96x96 pixel string is ~35 kB, over csv's default


class InputDataError(ValueError):
    """A whole input is unusable (missing, empty, wrong header, too few valid rows)."""


@dataclasses.dataclass
class StageResult:
    """What staging one dataset did."""

    kind: str
    sources: list[Path]
    rows_read: int
    rows_rejected: int
    staged_path: Path
    rejected_path: Path | None
    changed: bool  # False when the staged file was already up to date
    reasons: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def rows_staged(self) -> int:
        return self.rows_read - self.rows_rejected


def open_text(path: Path) -> io.TextIOBase:
    """Open a plain or gzipped CSV as text; universal newlines handle CRLF and LF."""
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise InputDataError(f"{path}: file is empty")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_header(path: Path) -> list[str]:
    with open_text(path) as f:
        try:
            header = next(csv.reader(f))
        except StopIteration:
            raise InputDataError(f"{path}: file is empty") from None
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise InputDataError(f"{path}: cannot read a CSV header ({exc})") from None
    return [h.strip() for h in header]


def detect_kind(path: Path) -> str:
    """Tell which dataset a CSV holds from its header (each branch's identifying column)."""
    header = set(read_header(path))
    for branch in BRANCHES:
        if branch.header_column in header:
            return branch.name
    expected = " nor ".join(f"{b.header_column!r} ({b.title.lower()})" for b in BRANCHES)
    raise InputDataError(f"{path}: header has neither {expected}: {sorted(header)[:6]}")


def find_csvs(data_dir: Path) -> dict[str, list[Path]]:
    """All CSVs (plain or .gz) under ``data_dir``, grouped by dataset, in name order.

    Dated sub-folders (e.g. ``data/2026-11-24/``) are included, so dropping a new file or
    folder in adds its rows to the next run.
    """
    found: dict[str, list[Path]] = {b.name: [] for b in BRANCHES}
    if not Path(data_dir).is_dir():
        return found
    for path in sorted(Path(data_dir).rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(data_dir).parts):
            continue  # hidden files and folders (editor backups, partial copies)
        if path.is_file() and (path.name.endswith(".csv") or path.name.endswith(".csv.gz")):
            found[detect_kind(path)].append(path)
    return found


def iter_rows(kind: str, path: Path) -> Iterator[tuple[int, list[str] | None, str | None, str]]:
    """Yield ``(line, staged_record or None, reason or None, raw_record)`` for each row."""
    branch = by_name(kind)
    required = branch.staged_columns
    check_row = branch.part("formats").check_row
    with open_text(path) as f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise InputDataError(f"{path}: file is empty") from None
        missing = [c for c in required if c not in header]
        if missing:
            raise InputDataError(f"{path}: header lacks column(s) {', '.join(missing)} "
                                 f"for the {kind} dataset")
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield reader.line_num, None, f"unparseable CSV: {exc}", ""
                continue
            line = reader.line_num
            raw = ",".join(fields)
            if not fields or all(not x.strip() for x in fields):
                continue  # blank line (e.g. a trailing newline pair): not a row
            if len(fields) != len(header):
                yield line, None, f"expected {len(header)} fields, got {len(fields)}", raw
                continue
            try:
                yield line, check_row(dict(zip(header, fields))), None, raw
            except ValueError as exc:
                yield line, None, str(exc), raw


def stage(kind: str, sources: Iterable[Path], pipeline_root: Path) -> StageResult:
    """Validate ``sources`` and write the staged and rejected CSVs of one dataset."""
    sources = [Path(s) for s in sources]
    if not sources:
        raise InputDataError(f"no {kind} CSV given or found")
    staged_dir = Path(pipeline_root) / spec.STAGING_DIR / kind
    staged_dir.mkdir(parents=True, exist_ok=True)
    staged_path = staged_dir / "data.csv"
    rejected_path = Path(pipeline_root) / spec.REJECTED_DIR / f"{kind}.csv"
    rows_read = 0
    reasons: dict[str, int] = {}
    rejected_rows = []
    fd, tmp_name = tempfile.mkstemp(dir=staged_dir, prefix=".data-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as out:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(by_name(kind).staged_columns)
            for source in sources:
                for line, record, reason, raw in iter_rows(kind, source):
                    rows_read += 1
                    if record is None:
                        rejected_rows.append((str(source), line, reason, raw))
                        key = reason.split(":")[0] if ":" in reason else reason
                        reasons[key] = reasons.get(key, 0) + 1
                    else:
                        writer.writerow(record)
        good = rows_read - len(rejected_rows)
        if good < MIN_GOOD_ROWS:
            first = f"; first problem: {rejected_rows[0][0]} line {rejected_rows[0][1]}: {rejected_rows[0][2]}" \
                if rejected_rows else ""
            raise InputDataError(f"{kind}: only {good} valid row(s) of {rows_read} in "
                                 f"{', '.join(map(str, sources))}; need at least {MIN_GOOD_ROWS}{first}")
        changed = not staged_path.exists() or _digest(Path(tmp_name)) != _digest(staged_path)
        if changed:
            os.replace(tmp_name, staged_path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    if rejected_rows:
        rejected_path.parent.mkdir(parents=True, exist_ok=True)
        with open(rejected_path, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["file", "line", "reason", "record"])
            writer.writerows(rejected_rows)
    elif rejected_path.exists():
        rejected_path.unlink()
    return StageResult(kind, sources, rows_read, len(rejected_rows), staged_path,
                       rejected_path if rejected_rows else None, changed, reasons)


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
