"""``climb deid``: de-identification engines usable on their own, outside the pipeline."""

from __future__ import annotations

import typer

deid_app = typer.Typer(help="De-identify files outside the pipeline.", no_args_is_help=True)
