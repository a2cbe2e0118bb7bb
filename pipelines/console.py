"""Terminal output: rich progress on a TTY, plain or JSON log lines elsewhere.

Every long command shows progress. On a terminal that is a rich progress bar; in CI,
cron or a cloud batch job (no TTY) it is periodic log lines, as JSON objects with
``--log-json`` so log pipelines can parse them. Log records never carry secrets: the
de-identification secret is only read by :class:`transforms.pseudonyms.DeidKey`, whose
repr is redacted, and credentials stay inside the fetchers.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra`` fields."""

    RESERVED = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self.RESERVED and not key.startswith("_"):
                payload[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            payload["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        return json.dumps(payload, default=str)


def configure_logging(*, json_lines: bool = False, verbose: bool = False) -> None:
    """Set up the root logger once per command."""
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if json_lines:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    else:
        handler = RichHandler(console=console, show_path=False, rich_tracebacks=False, markup=False)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in (
        "distributed",
        "apache_beam",
        "prefect",
        "httpx",
        "urllib3",
        "fsspec",
        "numcodecs",
        "asyncio",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def is_interactive() -> bool:
    return console.is_terminal


class StageProgress:
    """Progress of one stage over a known number of units: a bar on a TTY, log lines otherwise."""

    def __init__(self, progress: Progress | None, description: str, total: int, log: logging.Logger) -> None:
        self._progress = progress
        self._task = progress.add_task(description, total=total) if progress else None
        self._description = description
        self._total = total
        self._done = 0
        self._log = log
        self._last = 0.0

    def advance(self, units: int = 1) -> None:
        self._done += units
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, units)
            return
        now = time.monotonic()
        if now - self._last >= 5.0 or self._done >= self._total:
            self._last = now
            self._log.info(
                "%s: %d/%d",
                self._description,
                self._done,
                self._total,
                extra={"stage": self._description, "done": self._done, "total": self._total},
            )


@contextmanager
def progress_bars(enabled: bool | None = None) -> Iterator[Progress | None]:
    """A rich Progress on a terminal (or when forced), else None (callers log instead)."""
    show = is_interactive() if enabled is None else enabled
    if not show:
        yield None
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with progress:
        yield progress
