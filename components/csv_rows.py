"""Reading and checking the raw CSV rows of every branch, whatever filesystem they are on.

Real files come with quirks: gzip or plain, CRLF or LF line ends, FER2013's ``' pixels'``
header (leading space) and extra columns such as ``Usage``, Kaggle rows with missing
coordinates, a UTF-8 BOM, and now and then a broken row. Every physical line after the header
is one row, so nothing is lost or swallowed: a stray quote, bytes that are not UTF-8, an empty
or comma-only line each cost one rejected row, and ``stage`` checks that the rows it read are
the file's lines. A file that cannot be read on (not gzip, truncated gzip) is one
``InputDataError`` naming it and the line it reached. Each row is checked (field count, then its
branch's ``formats.check_row``: pixel count and range, label type, coordinate range; what is
a whole span's problem, such as a label outside the classes, is the curated schema's);
``stage`` writes the good rows in one canonical layout (missing coordinates written as
``MISSING_COORDINATE``) and the bad ones, with file, line, reason and the raw record, to a
rejected-rows CSV. ``validating_example_gen`` runs it inside the pipeline; ``evaluate`` and
``predict`` read rows with ``iter_rows``. Paths are strings read through TFX's ``fileio``
(local or ``gs://``).
"""
from __future__ import annotations

import codecs
import contextlib
import csv
import dataclasses
import gzip
import io
import os
import zlib
from collections.abc import Iterable, Iterator

from tfx.dsl.io import fileio

from emotion_ai.components import file_modes
from emotion_ai.components.branches import BRANCHES, by_name

MIN_GOOD_ROWS = 10  # fewer valid rows than this cannot make a train and an eval split
MAX_LINE_BYTES = 1 << 20  # a 96x96 row is under 40 kB; a longer line is a broken or binary file, read in bounded parts
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
    per_source: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)  # path -> (read, rejected)

    @property
    def rows_staged(self) -> int:
        return self.rows_read - self.rows_rejected


def is_csv(path: str) -> bool:
    name = os.path.basename(os.fspath(path).rstrip("/"))
    return not name.startswith(".") and (name.endswith(".csv") or name.endswith(".csv.gz"))


def open_binary(path) -> io.BufferedIOBase:
    """Open a plain or gzipped file as bytes, streamed through ``fileio``."""
    path = os.fspath(path)
    if not fileio.exists(path) or fileio.isdir(path):
        raise InputDataError(f"{path}: file not found")
    if fileio.stat(path).length == 0:
        raise InputDataError(f"{path}: file is empty")
    binary = io.BufferedReader(_RawFile(fileio.open(path, "rb")), buffer_size=1 << 20)
    if path.endswith(".gz"):
        binary = gzip.GzipFile(fileobj=binary, mode="rb")
    return binary


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


def _read_problem(path: str, error: BaseException, lines_read: int) -> InputDataError:
    """A file that cannot be read on (bad or truncated gzip, I/O error) as one line naming it
    and where it stopped."""
    where = f"after line {lines_read}" if lines_read else "at its start"
    if isinstance(error, EOFError):
        what = "gzip data ends early (truncated or still being copied?)"
    elif isinstance(error, gzip.BadGzipFile):
        what = f"not gzip data ({error})"
    elif isinstance(error, zlib.error):
        what = f"corrupt gzip data ({error})"
    else:
        what = f"read error ({type(error).__name__}: {error})"
    return InputDataError(f"{path}: {what} {where}")


def physical_lines(path) -> Iterator[tuple[int, str, str | None]]:
    """Yield ``(line number, text, problem or None)`` for every physical line of a CSV.

    Lines are split on LF (a CRLF's CR is dropped), so one line is one record: the datasets
    never quote a line end, and a stray quote costs one rejected row, not the rows after it.
    A line that is not UTF-8 or longer than ``MAX_LINE_BYTES`` comes back with its problem
    and, for the record, its bytes escaped (of an overlong line, its first 200 bytes: memory
    stays bounded); a UTF-8 BOM before the header is dropped. A
    file that cannot be read on raises ``InputDataError`` naming it and the line it reached.
    """
    path = os.fspath(path)
    number = 0
    with open_binary(path) as f:
        while True:
            try:
                chunk = f.readline(MAX_LINE_BYTES + 1)
                too_long = len(chunk) > MAX_LINE_BYTES and not chunk.endswith(b"\n")
                rest = chunk
                while too_long and rest and not rest.endswith(b"\n"):  # skip the rest, in bounded reads
                    rest = f.readline(MAX_LINE_BYTES)
            except (OSError, EOFError, zlib.error) as error:
                raise _read_problem(path, error, number) from None
            if not chunk:
                return
            number += 1
            raw = chunk[:-1] if chunk.endswith(b"\n") else chunk
            raw = raw[:-1] if raw.endswith(b"\r") else raw
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            if too_long:
                yield number, raw[:200].decode("utf-8", "backslashreplace"), \
                    f"line longer than {MAX_LINE_BYTES} bytes (a row of these datasets is under 40 kB)"
                continue
            try:
                text, problem = raw.decode("utf-8"), None
            except UnicodeDecodeError as error:
                text = raw.decode("utf-8", "backslashreplace")
                problem = f"not UTF-8 text: byte 0x{raw[error.start]:02x} at column {error.start + 1}"
            yield number, text, problem


def _fields(text: str) -> list[str]:
    """One line's fields; ``csv.Error`` for a stray or unterminated quote, a CR inside."""
    return next(csv.reader([text], strict=True), [])


def _header(path: str, lines: Iterator[tuple[int, str, str | None]]) -> list[str]:
    try:
        _, text, problem = next(lines)
    except StopIteration:
        raise InputDataError(f"{path}: file is empty") from None
    if problem:
        raise InputDataError(f"{path}: line 1 (the header): {problem}; is it a CSV?")
    try:
        header = [h.strip() for h in _fields(text)]
    except csv.Error as error:
        raise InputDataError(f"{path}: line 1 (the header): unparseable CSV ({error})") from None
    if not any(header):
        raise InputDataError(f"{path}: line 1 (the header) is empty")
    return header


def read_header(path) -> list[str]:
    path = os.fspath(path)
    lines = physical_lines(path)
    try:
        return _header(path, lines)
    finally:
        lines.close()


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
    """Yield ``(line, staged_record or None, reason or None, raw_record)`` for every physical
    line after the header: each one is a row, staged or rejected (an empty line too), so
    the rows of a file are its lines minus one."""
    branch = by_name(kind)
    required = branch.staged_columns
    check_row = branch.part("formats").check_row
    path = os.fspath(path)
    lines = physical_lines(path)
    try:
        header = _header(path, lines)
        missing = [c for c in required if c not in header]
        if missing:
            raise InputDataError(f"{path}: header lacks column(s) {', '.join(missing)} "
                                 f"for the {kind} dataset")
        for line, raw, problem in lines:
            if problem:
                yield line, None, problem, raw
                continue
            try:
                fields = _fields(raw)
            except csv.Error as error:
                yield line, None, f"unparseable CSV: {error}", raw
                continue
            if not any(x.strip() for x in fields):
                yield line, None, "empty row: no values" if fields else "empty line", raw
            elif len(fields) != len(header):
                yield line, None, f"expected {len(header)} fields, got {len(fields)}", raw
            else:
                try:
                    yield line, check_row(dict(zip(header, fields))), None, raw
                except ValueError as exc:
                    yield line, None, str(exc), raw
    finally:
        lines.close()


def outside_domain(kind: str, record: list[str]) -> str | None:
    """What in a checked record lies outside its branch's schema domains (``None``: nothing);
    for scoring rows outside the pipeline, where no ExampleValidator looks at them."""
    branch = by_name(kind)
    for column, value in zip(branch.staged_columns, record):
        domain = branch.domains.get(column)
        if domain and not domain.min <= float(value) <= domain.max:
            return f"{column}: {value} outside the schema's {domain.min:g}..{domain.max:g}"
    return None


def stage(kind: str, sources: Iterable, staged_path, rejected_path, features_path=None) -> StageResult:
    """Check every row of ``sources``: good rows to ``staged_path`` (one canonical CSV), bad
    ones to ``rejected_path`` (written only when there are any). Raises ``InputDataError``
    when too few rows are valid to train on. ``features_path``: also write, per staged row,
    its file and its ``drift_columns`` (a small CSV for drift by span)."""
    sources = [os.fspath(s) for s in sources]
    staged_path, rejected_path = os.fspath(staged_path), os.fspath(rejected_path)
    if not sources:
        raise InputDataError(f"no {kind} CSV given or found")
    rows_read = rows_staged = 0
    reasons: dict[str, int] = {}
    per_source: dict[str, tuple[int, int]] = {}
    rejected_rows = []
    branch = by_name(kind)
    derive = branch.part("formats").derived_features
    columns = branch.staged_columns + branch.derived_columns
    picked = [columns.index(c) for c in branch.drift_columns]
    fileio.makedirs(os.path.dirname(staged_path))
    with contextlib.ExitStack() as files:
        features = None
        if features_path:
            fileio.makedirs(os.path.dirname(os.fspath(features_path)))
            features = files.enter_context(fileio.open(os.fspath(features_path), "w"))
            features_writer = csv.writer(features, lineterminator="\n")
            features_writer.writerow(("file", *branch.drift_columns))
        out = files.enter_context(fileio.open(staged_path, "w"))
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for source in sources:
            rows_before, rejected_before, last_line = rows_read, len(rejected_rows), 1
            for line, record, reason, raw in iter_rows(kind, source):
                rows_read, last_line = rows_read + 1, line
                if record is None:
                    rejected_rows.append((source, line, reason, raw))
                    key = reason.split(":")[0] if ":" in reason else reason
                    reasons[key] = reasons.get(key, 0) + 1
                else:
                    staged = record + derive(record)
                    writer.writerow(staged)
                    if features:
                        features_writer.writerow((source, *(staged[i] for i in picked)))
                    rows_staged += 1
            # Nothing is lost: every line after the header is a row, staged or rejected.
            if rows_read - rows_before != last_line - 1:
                raise AssertionError(f"{source}: {rows_read - rows_before} rows read of {last_line - 1} lines")
            per_source[source] = (rows_read - rows_before, len(rejected_rows) - rejected_before)
    if features_path:
        file_modes.private(os.fspath(features_path))
    file_modes.private(staged_path)  # people's faces
    if rows_read != rows_staged + len(rejected_rows):
        raise AssertionError(f"{kind}: {rows_read} rows read != {rows_staged} staged + {len(rejected_rows)} rejected")
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
        file_modes.private(rejected_path)
    return StageResult(kind, sources, rows_read, len(rejected_rows), staged_path,
                       rejected_path if rejected_rows else None, reasons, per_source)
