"""``climb report <out>``: one static HTML page over every built source under an output root."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines.console import console
from pipelines.report import ReportError, write_report


def report_command(
    out: str = typer.Argument(
        ..., help="Output root that `climb build` wrote (a local path or any fsspec URL)."
    ),
    dest: Path | None = typer.Option(
        None, "--dest", "-o", help="HTML file to write (default: <out>/report.html for a local out)."
    ),
    samples: int = typer.Option(3, "--samples", min=0, help="Samples pictured per source."),
) -> None:
    """Write the build report: counts, splits, labels, quarantine, de-id, shards and pictures per source.

    The page is one self-contained HTML file (plots embedded, no external resources): open it
    in any browser, offline. Exits 1 when a source could not be read (its section says why),
    2 when there is nothing to report.
    """
    try:
        result = write_report(out, dest, samples_per_source=samples)
    except ReportError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    ok = len(result.sources) - len(result.failed)
    console.print(f"report of {ok} source{'s' if ok != 1 else ''}: {result.path}")
    for failed in result.failed:
        console.print(f"[red]{failed.source}[/]: {failed.error}")
    if result.failed:
        raise typer.Exit(1)
