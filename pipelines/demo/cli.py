"""``climb demo``: the README's first command."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines.cli_build import Backend
from pipelines.console import configure_logging, console


def demo_command(
    out: Path = typer.Option(
        Path("climb-demo-out"), "--out", help="Where the built corpus, report and Prefect state go."
    ),
    sources: list[str] = typer.Option(
        [], "--sources", help="Sources to build (repeat); default: every implemented source."
    ),
    backend: Backend = typer.Option(
        Backend.dask, "--backend", help="Where shards run: in-process, a Dask LocalCluster, or Beam."
    ),
    workers: int = typer.Option(2, "--workers", min=1, help="Worker processes for dask/beam."),
    records: int = typer.Option(
        60,
        "--records",
        min=2,
        help="ECG records per source in the generated releases (image sources get fewer, scaled from it).",
    ),
    log_json: bool = typer.Option(False, "--log-json", help="Log JSON lines."),
) -> None:
    """Run the whole pipeline offline on an embedded default: loopback mirrors of every source's
    host (PhysioNet, its S3 open-data bucket, Kaggle, TCIA, plain HTTPS) serving generated
    releases, the real fetchers, the Prefect build_corpus flow, an epoch streamed back, and the
    HTML report.

    Exits non-zero if any source failed or the streamed epoch did not see every sample once.
    """
    from pipelines.demo.run import run_demo, summary_table

    configure_logging(json_lines=log_json)
    try:
        result = run_demo(
            out, sources=sources or None, backend=backend.value, workers=workers, records=records
        )
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    console.print(summary_table(result))
    if result.report:
        console.print(f"report: {result.report}")
    console.print(f"datasets: {result.out / 'built'}")
    if result.timings:
        console.print("time: " + ", ".join(f"{stage} {s:.0f} s" for stage, s in result.timings.items()))
    for failure in result.failures:
        console.print(f"[red]failed:[/] {failure}")
    if not result.ok:
        raise typer.Exit(1)
