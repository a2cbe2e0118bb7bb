"""``climb sources``: the source catalog on the command line."""

from __future__ import annotations

import typer

sources_app = typer.Typer(help="List and show the CLIMB source catalog.", no_args_is_help=True)
