"""A sampled, bounded record of the images ``emotion-ai serve`` is sent, for skew.

Off by default (``emotion-ai serve --log-requests``). For a sampled fraction of the predict
requests, each image's numbers (``spec.IMAGE_STATISTICS``: brightness, contrast, sharpness)
are computed on the image as the model sees it (grey, resized to the model's input size,
as the serving graph does) and appended to ``<folder>/<model>/requests-<UTC date>.csv``, the
layout the pipeline's ``DataDrift`` reads (``--serving-log``) to compare serving traffic with
the training data. Only these numbers are kept: no image, no client address.

The request path only samples and queues the raw inputs; a background thread decodes,
measures and writes. Both are bounded: the queue by bytes (``MAX_PENDING_BYTES``; beyond it a
sampled request is dropped and counted), the files by ``max_bytes`` per model (the oldest
day's file is deleted first). A failure to log is a warning, never a failed request.
"""
from __future__ import annotations

import datetime as dt
import io
import logging
import os
import queue
import random
import threading
from pathlib import Path

from emotion_ai.components import file_modes, spec
from emotion_ai.components.branches import by_name
from emotion_ai.components.common import image_stats

log = logging.getLogger("emotion_ai")

MAX_PENDING_BYTES = 64 * 1024 * 1024  # inputs queued for measuring, at most
COLUMNS = ("time", *spec.IMAGE_STATISTICS)


def _grey(encoded: bytes, size: int) -> str:
    """An encoded image as the serving graph sees it: grey (OpenCV's weights, via RGB), resized
    to ``size`` x ``size`` with antialiasing; a pixel string."""
    from PIL import Image

    with Image.open(io.BytesIO(encoded)) as image:
        grey = image.convert("RGB").convert("L").resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
        return " ".join(map(str, grey.getdata()))


class RequestLog:
    def __init__(self, folder: Path, sample: float = 0.1, max_bytes: int = 64 * 1024 * 1024, seed: int | None = None):
        if not 0 < sample <= 1:
            raise ValueError(f"the sampled fraction must be in (0, 1], not {sample}")
        self.folder, self.sample, self.max_bytes = Path(folder), sample, max_bytes
        self._random = random.Random(seed)
        self._queue: queue.Queue = queue.Queue()
        self._pending = 0
        self._lock = threading.Lock()
        self.logged = self.dropped = self.failed = 0
        self._thread = threading.Thread(target=self._work, name="request-log", daemon=True)
        self._thread.start()

    def offer(self, model: str, signature: str, values: list) -> None:
        """Called on the request path with the decoded inputs of one predict request (encoded
        image bytes for ``serving_default``, pixel strings for ``serving_pixels``)."""
        if signature not in ("serving_default", "serving_pixels") or self._random.random() >= self.sample:
            return
        size = sum(len(v) for v in values)
        with self._lock:
            if self._pending + size > MAX_PENDING_BYTES:
                self.dropped += 1
                return
            self._pending += size
        self._queue.put((model, signature, values, size))

    def close(self, timeout: float = 10) -> None:
        """Write what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            model, signature, values, size = item
            try:
                self._write(model, signature, values)
            except Exception as error:  # noqa: BLE001 - logging must never fail serving
                self.failed += 1
                log.warning("request log: %s: %s", type(error).__name__, error)
            finally:
                with self._lock:
                    self._pending -= size

    def _write(self, model: str, signature: str, values: list) -> None:
        try:
            size = by_name(model).image_size
        except KeyError:
            return  # a model of no branch: nothing to compare it with
        now = dt.datetime.now(dt.UTC)
        rows = []
        for value in values:
            text = value.decode() if signature == "serving_pixels" and isinstance(value, bytes) else value
            pixels = text if signature == "serving_pixels" else _grey(value, size)
            stats = image_stats.image_features(pixels, size)
            rows.append(",".join([now.isoformat(timespec="seconds"), *map(image_stats.format_feature, stats)]))
        folder = self.folder / model
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"requests-{now.date().isoformat()}.csv"
        text = ("" if path.exists() else ",".join(COLUMNS) + "\n") + "\n".join(rows) + "\n"
        with open(path, "a") as f:  # one writer thread: appends never interleave
            f.write(text)
        file_modes.private(path)
        self.logged += len(rows)
        self._bound(folder, path)

    def _bound(self, folder: Path, current: Path) -> None:
        """Delete the oldest files while the model's log is over ``max_bytes``; if the current
        day's file alone is, drop its older half."""
        files = sorted(folder.glob("requests-*.csv"))
        total = sum(f.stat().st_size for f in files)
        for old in files:
            if total <= self.max_bytes or old == current:
                break
            total -= old.stat().st_size
            os.remove(old)
        if total > self.max_bytes:
            log.warning("request log %s is over %d bytes: truncating today's records", current, self.max_bytes)
            lines = current.read_text().splitlines()
            keep = lines[:1] + lines[1 + len(lines) // 2:]  # drop the older half of today's rows
            current.write_text("\n".join(keep) + "\n")
