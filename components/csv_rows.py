"""Reading and checking the raw CSV rows of every branch, whatever filesystem they are on.

Real files come with quirks: gzip or plain, CRLF or LF line ends, FER2013's ``' pixels'``
header (leading space) and extra columns such as ``Usage``, Kaggle rows with missing
coordinates, and now and then a broken row. Each row is checked (field count, then its
branch's ``formats.check_row``: pixel count and range, label range, coordinate range);
``stage`` writes the good rows in one canonical layout (missing coordinates written as
``MISSING_COORDINATE``) and the bad ones, with file, line, reason and the raw record, to a
rejected-rows CSV. ``validating_example_gen`` runs it inside the pipeline; ``evaluate`` and
``predict`` read rows with ``iter_rows``. Paths are strings read through TFX's ``fileio``
(local or ``gs://``).
"""
from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import os
from collections.abc import Iterable, Iterator

from tfx.dsl.io import fileio

from emotion_ai.components.branches import BRANCHES, by_name

MIN_GOOD_ROWS = 10  # fewer valid rows than this cannot make a train and an eval split
REJECTED_COLUMNS = ("file", "line", "reason", "record")
csv.field_size_limit(10_000_000)  # a 96x96 pixel string is ~35 kB, over csv's default


class InputDataError(ValueError):
    """A whole input is unusable (missing, empty, wrong header, too few valid rows)."""


@dataclasses.dataclass
class StageResult:
    """What staging one dataset did."""

    kind: str
    sources: list[str]
    rows_read: int
    rows_rejected: int
    staged_path: str
    rejected_path: str | None  # None when no row was rejected
    reasons: dict[str, int] = dataclasses.field(default_factory=dict)  # reason kind -> rows

    @property
    def rows_staged(self) -> int:
        return self.rows_read - self.rows_rejected


def is_csv(path: str) -> bool:
    name = os.path.basename(os.fspath(path).rstrip("/"))
    return not name.startswith(".") and (name.endswith(".csv") or name.endswith(".csv.gz"))


def open_text(path) -> io.TextIOBase:
    """Open a plain or gzipped CSV as text; universal newlines handle CRLF and LF."""
    path = os.fspath(path)
    if not fileio.exists(path) or fileio.isdir(path):
        raise InputDataError(f"{path}: file not found")
    if fileio.stat(path).length == 0:
        raise InputDataError(f"{path}: file is empty")
    binary = io.BufferedReader(_RawFile(fileio.open(path, "rb")), buffer_size=1 << 20)
    if path.endswith(".gz"):
        binary = gzip.GzipFile(fileobj=binary, mode="rb")
    return io.TextIOWrapper(binary, encoding="utf-8", newline="")


class _RawFile(io.RawIOBase):
    """A ``fileio`` (``tf.io.gfile``) file as a raw stream, for ``io``'s buffering and text
    layers: streamed, never read whole."""

    def __init__(self, handle):
        self._handle = handle

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._handle.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._handle.close()
        super().close()


def read_header(path) -> list[str]:
    with open_text(path) as f:
        try:
            header = next(csv.reader(f))
        except StopIteration:
            raise InputDataError(f"{os.fspath(path)}: file is empty") from None
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise InputDataError(f"{os.fspath(path)}: cannot read a CSV header ({exc})") from None
    return [h.strip() for h in header]


def detect_kind(path) -> str:
    """Tell which dataset a CSV holds from its header (each branch's identifying column)."""
    header = set(read_header(path))
    for branch in BRANCHES:
        if branch.header_column in header:
            return branch.name
    expected = " nor ".join(f"{b.header_column!r} ({b.title.lower()})" for b in BRANCHES)
    raise InputDataError(f"{os.fspath(path)}: header has neither {expected}: {sorted(header)[:6]}")


def find_csvs(folder) -> list[str]:
    """Every CSV (plain or .gz) under ``folder``, in sub-folders too (e.g. dated ones), in
    name order; hidden files and folders (editor backups, partial copies) left out."""
    folder = os.fspath(folder).rstrip("/")
    if not fileio.isdir(folder):
        return []
    found = []
    for dirpath, _, names in fileio.walk(folder):
        dirpath = os.fspath(dirpath).rstrip("/")
        relative = dirpath[len(folder):].strip("/")
        if any(part.startswith(".") for part in relative.split("/") if part):
            continue
        found += [f"{dirpath}/{n.rstrip('/')}" for n in names if is_csv(n)]
    return sorted(found)


def iter_rows(kind: str, path) -> Iterator[tuple[int, list[str] | None, str | None, str]]:
    """Yield ``(line, staged_record or None, reason or None, raw_record)`` for each row."""
    branch = by_name(kind)
    required = branch.staged_columns
    check_row = branch.part("formats").check_row
    path = os.fspath(path)
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


def stage(kind: str, sources: Iterable, staged_path, rejected_path) -> StageResult:
    """Check every row of ``sources``: good rows to ``staged_path`` (one canonical CSV), bad
    ones to ``rejected_path`` (written only when there are any). Raises ``InputDataError``
    when too few rows are valid to train on."""
    sources = [os.fspath(s) for s in sources]
    staged_path, rejected_path = os.fspath(staged_path), os.fspath(rejected_path)
    if not sources:
        raise InputDataError(f"no {kind} CSV given or found")
    rows_read = 0
    reasons: dict[str, int] = {}
    rejected_rows = []
    fileio.makedirs(os.path.dirname(staged_path))
    with fileio.open(staged_path, "w") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(by_name(kind).staged_columns)
        for source in sources:
            for line, record, reason, raw in iter_rows(kind, source):
                rows_read += 1
                if record is None:
                    rejected_rows.append((source, line, reason, raw))
                    key = reason.split(":")[0] if ":" in reason else reason
                    reasons[key] = reasons.get(key, 0) + 1
                else:
                    writer.writerow(record)
    good = rows_read - len(rejected_rows)
    if good < MIN_GOOD_ROWS:
        first = f"; first problem: {rejected_rows[0][0]} line {rejected_rows[0][1]}: {rejected_rows[0][2]}" \
            if rejected_rows else ""
        raise InputDataError(f"{kind}: only {good} valid row(s) of {rows_read} in "
                             f"{', '.join(sources)}; need at least {MIN_GOOD_ROWS}{first}")
    if rejected_rows:
        fileio.makedirs(os.path.dirname(rejected_path))
        with fileio.open(rejected_path, "w") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(REJECTED_COLUMNS)
            writer.writerows(rejected_rows)
    return StageResult(kind, sources, rows_read, len(rejected_rows), staged_path,
                       rejected_path if rejected_rows else None, reasons)
