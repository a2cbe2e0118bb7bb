"""``climb sources``: the source catalog on the command line.

``climb sources list`` prints one row per source manifest (id, group, modality, access,
CLIMB's reported item count, implementation status) and the catalog's totals by group;
``climb sources show <id>`` prints every field of one manifest. Both take ``--json`` for
machines. A malformed manifest or an unknown id prints one line naming the file and the
field (or the known ids) and exits with code 2, never a traceback.

Which count CLIMB summed: ``expected.items`` is the count a build of the source should
produce. Where CLIMB's Dataset_Info table reports a different number (and its headline
totals sum that number), ``expected.notes`` carries it as ``climb_reported=<int>``;
:func:`climb_reported_items` reads it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from manifests.schema import (
    SOURCES_DIR,
    Group,
    ManifestError,
    SourceManifest,
    load_catalog,
    load_source_manifest,
)

sources_app = typer.Typer(help="List and show the CLIMB source catalog.", no_args_is_help=True)

#: Exit code for a bad id or a malformed manifest (a usage/input error, as click uses).
EXIT_BAD_INPUT = 2

#: Marker in ``expected.notes`` for the count CLIMB reports where it differs from ``expected.items``.
CLIMB_REPORTED_PATTERN = re.compile(r"\bclimb_reported=(\d+)\b")

GROUPS: tuple[str, ...] = get_args(Group)
_ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")

_SourcesDirOption = typer.Option(
    SOURCES_DIR,
    "--sources-dir",
    help="Folder of source manifests (<id>.yaml).",
    exists=True,
    file_okay=False,
)
_JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")


def climb_reported_items(manifest: SourceManifest) -> int | None:
    """The item count CLIMB reports for a source (what its headline totals sum).

    Args:
        manifest: a validated source manifest.

    Returns:
        The ``climb_reported=<int>`` value in ``expected.notes`` when present (CLIMB's
        Dataset_Info figure differs from what a build yields), otherwise ``expected.items``;
        ``None`` when the manifest states no count.
    """
    notes = manifest.expected.notes or ""
    match = CLIMB_REPORTED_PATTERN.search(notes)
    if match:
        return int(match.group(1))
    return manifest.expected.items


@dataclass(frozen=True)
class CatalogSummary:
    """Totals over a catalog, by CLIMB's counts.

    Attributes:
        total_items: sum of :func:`climb_reported_items` over every source (sources
            without a count add 0).
        items_by_group: that sum per group, for every group in :data:`GROUPS`.
        sources_by_status: number of sources per ``status``.
        missing_counts: ids of sources with no count at all.
    """

    total_items: int
    items_by_group: dict[str, int]
    sources_by_status: dict[str, int]
    missing_counts: list[str] = field(default_factory=list)

    def share_percent(self, group: str) -> float:
        """A group's share of :attr:`total_items`, in percent (0.0 for an empty catalog)."""
        if self.total_items == 0:
            return 0.0
        return 100.0 * self.items_by_group[group] / self.total_items

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_items": self.total_items,
            "items_by_group": dict(self.items_by_group),
            "share_percent_by_group": {g: round(self.share_percent(g), 4) for g in self.items_by_group},
            "sources_by_status": dict(self.sources_by_status),
            "missing_counts": list(self.missing_counts),
        }


def summarise_catalog(catalog: dict[str, SourceManifest]) -> CatalogSummary:
    """Total CLIMB's reported counts over a catalog, overall and by group.

    Args:
        catalog: manifests by id, as :func:`manifests.schema.load_catalog` returns them.

    Returns:
        The totals; see :class:`CatalogSummary`.
    """
    by_group = dict.fromkeys(GROUPS, 0)
    by_status: dict[str, int] = {}
    missing: list[str] = []
    for source_id, manifest in catalog.items():
        count = climb_reported_items(manifest)
        if count is None:
            missing.append(source_id)
        else:
            by_group[manifest.group] += count
        by_status[manifest.status] = by_status.get(manifest.status, 0) + 1
    return CatalogSummary(
        total_items=sum(by_group.values()),
        items_by_group=by_group,
        sources_by_status=by_status,
        missing_counts=missing,
    )


def load_manifest_from(sources_dir: Path, source_id: str) -> SourceManifest:
    """Load the manifest ``<sources_dir>/<source_id>.yaml``.

    Raises:
        ManifestError: the id is not a source id, no such file exists (the message lists
            the known ids), or the file is malformed (the message names file and field).
    """
    known = sorted(p.stem for p in sources_dir.glob("*.yaml"))
    if not _ID_PATTERN.match(source_id) or not (sources_dir / f"{source_id}.yaml").is_file():
        raise ManifestError(f"unknown source {source_id!r}; known sources: {', '.join(known) or '(none)'}")
    return load_source_manifest(sources_dir / f"{source_id}.yaml")


def _fail(message: str) -> typer.Exit:
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(EXIT_BAD_INPUT)


def _format_count(count: int | None) -> str:
    return "?" if count is None else f"{count:,}"


@sources_app.command("list")
def list_sources(
    sources_dir: Path = _SourcesDirOption,
    as_json: bool = _JsonOption,
) -> None:
    """List every source: id, group, modality, access, CLIMB's N, status; then totals."""
    try:
        catalog = load_catalog(sources_dir)
    except ManifestError as exc:
        raise _fail(str(exc)) from None
    summary = summarise_catalog(catalog)
    rows = [
        {
            "id": m.id,
            "title": m.title,
            "group": m.group,
            "modality": m.modality,
            "host": m.host.kind,
            "access": m.host.access,
            "climb_reported_items": climb_reported_items(m),
            "expected_items": m.expected.items,
            "status": m.status,
        }
        for m in catalog.values()
    ]
    if as_json:
        typer.echo(json.dumps({"sources": rows, "totals": summary.to_dict()}, indent=2))
        return

    console = Console(highlight=False)
    table = Table(
        title=f"CLIMB sources ({len(rows)})",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("id", no_wrap=True)
    table.add_column("group", no_wrap=True)
    table.add_column("modality", min_width=12, overflow="fold")
    table.add_column("access", min_width=8, overflow="fold")
    table.add_column("N (CLIMB)", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for row in rows:
        n = _format_count(row["climb_reported_items"])
        if row["expected_items"] is not None and row["expected_items"] != row["climb_reported_items"]:
            n += "*"
        table.add_row(row["id"], row["group"], row["modality"], row["access"], n, row["status"])
    console.print(table)
    if any(r["expected_items"] != r["climb_reported_items"] for r in rows if r["expected_items"] is not None):
        console.print(
            "* CLIMB's figure; a build of the release yields expected.items (`climb sources show <id>`)"
        )

    totals = Table(title="Totals by group (CLIMB's counts)", header_style="bold", box=box.SIMPLE_HEAD)
    totals.add_column("group", no_wrap=True)
    totals.add_column("N", justify="right", no_wrap=True)
    totals.add_column("share", justify="right", no_wrap=True)
    for group in GROUPS:
        totals.add_row(group, f"{summary.items_by_group[group]:,}", f"{summary.share_percent(group):.2f} %")
    totals.add_row("total", f"{summary.total_items:,}", "100.00 %", style="bold")
    console.print(totals)
    status_text = ", ".join(f"{n} {s}" for s, n in sorted(summary.sources_by_status.items()))
    console.print(
        f"{len(rows)} sources: {status_text}; {summary.total_items / 1e6:.2f} M samples by CLIMB's counts"
    )
    if summary.missing_counts:
        console.print(f"no count stated for: {', '.join(summary.missing_counts)}")


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested mappings as ``(dotted.key, text)`` pairs; lists of scalars joined by commas."""
    if isinstance(value, dict):
        if not value:
            return [(prefix, "{}")] if prefix else []
        pairs: list[tuple[str, str]] = []
        for key, item in value.items():
            pairs.extend(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return pairs
    if isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            return [(prefix, ", ".join(str(v) for v in value) if value else "[]")]
        return [pair for i, item in enumerate(value) for pair in _flatten(item, f"{prefix}[{i}]")]
    return [(prefix, "null" if value is None else str(value))]


@sources_app.command("show")
def show_source(
    source_id: str = typer.Argument(..., metavar="ID", help="Source id, e.g. ptbxl."),
    sources_dir: Path = _SourcesDirOption,
    as_json: bool = _JsonOption,
) -> None:
    """Show every field of one source manifest."""
    try:
        manifest = load_manifest_from(sources_dir, source_id)
    except ManifestError as exc:
        raise _fail(str(exc)) from None
    data = manifest.model_dump(mode="json")
    climb_n = climb_reported_items(manifest)
    if as_json:
        data["climb_reported_items"] = climb_n
        data["content_hash"] = manifest.content_hash()
        typer.echo(json.dumps(data, indent=2))
        return

    console = Console(highlight=False)
    notes = data.pop("climb_notes")
    table = Table(title=f"{manifest.id}: {manifest.title}", show_header=False, header_style="bold")
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, text in _flatten(data):
        table.add_row(key, text)
    table.add_row("climb_reported_items", _format_count(climb_n))
    table.add_row("content_hash", manifest.content_hash())
    console.print(table)
    console.print(f"[bold]climb_notes[/] ({len(notes)}): where CLIMB's facts or code are wrong or missing")
    for note in notes:
        console.print(f"  - {note}", markup=False)
