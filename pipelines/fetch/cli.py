"""``climb fetch``."""

from __future__ import annotations

import typer


def fetch_command(source: str = typer.Argument(..., help="Source id, e.g. ptbxl.")) -> None:
    """Download one source's raw files, verified and resumable."""
    raise typer.Exit(2)
