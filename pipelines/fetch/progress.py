"""Fetch progress: a rich bar (bytes, rate, ETA) on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Protocol

log = logging.getLogger("climb.fetch")


class ProgressReporter(Protocol):
    """Thread-safe sink for byte counts; one per source fetch."""

    def add_total(self, size_bytes: int) -> None: ...
    def advance(self, n_bytes: int) -> None: ...
    def file_done(self) -> None: ...
    def close(self) -> None: ...


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


class LogProgress:
    """Log ``bytes / total, rate, ETA, files`` every ``interval_s`` seconds (not on a terminal).

    Args:
        label: the source id, prefixed to every line.
        interval_s: seconds between lines.
    """

    def __init__(self, label: str, interval_s: float = 30.0) -> None:
        self.label, self.interval_s = label, interval_s
        self.total_bytes = 0
        self.done_bytes = 0
        self.files_done = 0
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._last = self._t0

    def add_total(self, size_bytes: int) -> None:
        with self._lock:
            self.total_bytes += size_bytes

    def advance(self, n_bytes: int) -> None:
        with self._lock:
            self.done_bytes += n_bytes
            now = time.monotonic()
            if now - self._last < self.interval_s:
                return
            self._last = now
        self._emit()

    def file_done(self) -> None:
        with self._lock:
            self.files_done += 1

    def _emit(self) -> None:
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        rate = self.done_bytes / elapsed
        left = max(self.total_bytes - self.done_bytes, 0)
        eta = f"{left / rate:.0f} s" if rate > 0 and self.total_bytes else "?"
        log.info(
            "%s: %s / %s, %s/s, ETA %s, %d files done",
            self.label,
            format_bytes(self.done_bytes),
            format_bytes(self.total_bytes) if self.total_bytes else "?",
            format_bytes(rate),
            eta,
            self.files_done,
        )

    def close(self) -> None:
        self._emit()


class RichProgress:
    """A rich progress bar per source: bytes, rate and ETA."""

    def __init__(self, label: str) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[files]} files"),
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(label, total=0, files=0)
        self._lock = threading.Lock()
        self._total = 0
        self._files = 0

    def add_total(self, size_bytes: int) -> None:
        with self._lock:
            self._total += size_bytes
            self._progress.update(self._task, total=self._total)

    def advance(self, n_bytes: int) -> None:
        self._progress.advance(self._task, n_bytes)

    def file_done(self) -> None:
        with self._lock:
            self._files += 1
            self._progress.update(self._task, files=self._files)

    def close(self) -> None:
        self._progress.stop()


def make_progress(label: str, enabled: bool | None) -> ProgressReporter:
    """A rich bar when ``enabled`` (``None``: when stderr is a terminal), else :class:`LogProgress`."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    return RichProgress(label) if enabled else LogProgress(label)
