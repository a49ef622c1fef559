"""Spans: the batches new data arrives in, and the rolling window a run trains on.

As with TFX's ExampleGen span patterns (``span-{SPAN}``, ``{YYYY}-{MM}-{DD}``), a span is a
folder under a branch's input: ``span-3/`` or a dated ``2026-12-01/`` (``20261201/`` too),
at any depth (``data/emotion/span-3/a.csv``). CSVs in no span folder, such as a flat
``data/*.csv``, are one span of their own, the oldest (``FLAT``). A run reads the newest
``window`` spans (``Profile.span_window``; the default keeps them all) and leaves the older
ones out, saying which. Numbered and dated spans do not mix in one branch: which is newer
would be a guess.

Spans are found here, by the row-checking ExampleGen, rather than by TFX's span driver and a
``SpanRangeStrategy`` resolver: the driver ingests one span per execution, and a resolver
node compiles to a KFP ``resolver`` executor that open-source KFP does not run. One
ExampleGen that reads the window works the same on every orchestrator.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re

FLAT = "(no span folder)"
_NUMBERED = re.compile(r"span-(\d+)")
_DATED = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})")


class SpanError(ValueError):
    """The span folders cannot be ordered (numbered and dated ones in one branch)."""


@dataclasses.dataclass(frozen=True)
class Span:
    name: str  # the folder's name, or FLAT
    kind: str  # "flat", "numbered" or "dated"
    number: int  # TFX's span number: N of span-N, YYYYMMDD of a date, 0 for FLAT
    files: tuple[str, ...]  # paths, in name order


def _span_of(relative: str) -> tuple[str, str, int]:
    """``(name, kind, number)`` of the nearest span folder on a file's path (relative to the
    input base), or the flat span."""
    for part in reversed(relative.replace("\\", "/").split("/")[:-1]):
        if m := _NUMBERED.fullmatch(part):
            return part, "numbered", int(m.group(1))
        if m := _DATED.fullmatch(part):
            try:
                dt.date(*map(int, m.groups()))
            except ValueError:
                continue  # eight digits that are no date: not a span folder
            return part, "dated", int("".join(m.groups()))
    return FLAT, "flat", 0


def group(base: str, paths: list[str]) -> list[Span]:
    """``paths`` (under ``base``) by span, oldest first."""
    base = base.rstrip("/") + "/"
    found: dict[tuple[str, str, int], list[str]] = {}
    for path in paths:
        relative = path[len(base):] if path.startswith(base) else path.rsplit("/", 1)[-1]
        found.setdefault(_span_of(relative), []).append(path)
    kinds = {kind for _, kind, _ in found} - {"flat"}
    if len(kinds) > 1:
        numbered = sorted(name for name, kind, _ in found if kind == "numbered")
        dated = sorted(name for name, kind, _ in found if kind == "dated")
        raise SpanError(f"{base}: numbered span folders ({', '.join(numbered[:3])}) and dated ones "
                        f"({', '.join(dated[:3])}) together: which is newer cannot be told; use one kind")
    order = sorted(found, key=lambda key: (key[1] != "flat", key[2], key[0]))
    return [Span(name, kind, number, tuple(sorted(found[(name, kind, number)]))) for name, kind, number in order]


def window(spans: list[Span], size: int) -> tuple[list[Span], list[Span]]:
    """``(the newest size spans, the older ones left out)``, each oldest first."""
    if size < 1:
        raise ValueError(f"a span window holds at least 1 span, not {size}")
    return spans[-size:], spans[:-size]
