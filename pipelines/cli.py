"""The ``climb`` command line: one verb per job, each calling the same functions the flows call."""

from __future__ import annotations

import typer

from pipelines.cli_build import build_command, flow_app, status_command
from pipelines.cli_deid import deid_app
from pipelines.cli_report import report_command
from pipelines.cli_sources import sources_app
from pipelines.demo.cli import demo_command
from pipelines.fetch.cli import fetch_command

app = typer.Typer(
    name="climb",
    help="Build the CLIMB clinical corpus: fetch, de-identify, validate and shard each source.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)
app.add_typer(sources_app, name="sources")
app.add_typer(deid_app, name="deid")
app.add_typer(flow_app, name="flow")
app.command("fetch")(fetch_command)
app.command("build")(build_command)
app.command("status")(status_command)
app.command("demo")(demo_command)
app.command("report")(report_command)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
