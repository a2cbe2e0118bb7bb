"""``climb build`` and ``climb status``: rebuild one source from the command line, list what is built.

``climb build`` calls the same stage functions the Prefect flow calls
(:mod:`pipelines.stages.build`); ``climb flow run`` runs them through Prefect with the same
options (:class:`BuildOptions` is shared).
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import fsspec
import typer
from rich.table import Table

from manifests.schema import MANIFEST_FILE, ManifestError, load_catalog
from pipelines.console import StageProgress, configure_logging, console, progress_bars
from pipelines.stages.build import (
    CURRENT_FILE,
    BuildConfig,
    BuildResult,
    build_source,
    is_published,
    plan_build,
)
from transforms.pseudonyms import MissingSecretError

log = logging.getLogger("climb.build")


class Backend(StrEnum):
    local = "local"
    dask = "dask"
    beam = "beam"


# Options shared by `climb build` and `climb flow run`: declared once so the two cannot drift.
OutOption = Annotated[
    str, typer.Option("--out", help="Output root: a local path or any fsspec URL (s3://, gs://, memory://).")
]
BackendOption = Annotated[
    Backend, typer.Option("--backend", help="Where shards run: in-process, a Dask cluster, or Apache Beam.")
]
WorkersOption = Annotated[
    int | None, typer.Option("--workers", help="Worker processes for dask/beam (default: CPU count).")
]
DaskAddressOption = Annotated[
    str | None, typer.Option("--dask-address", help="Scheduler of an existing Dask cluster, tcp://host:8786.")
]
MaxMemoryOption = Annotated[
    str, typer.Option("--max-memory", help="Memory limit per Dask worker, e.g. 4GiB, or auto.")
]
ItemsPerShardOption = Annotated[
    int, typer.Option("--items-per-shard", min=1, help="Items per shard (one write task each).")
]
MaxItemsOption = Annotated[
    int | None,
    typer.Option("--max-items-per-split", min=1, help="Smoke run: keep the first N items of each split."),
]
BeamRunnerOption = Annotated[
    str | None,
    typer.Option(
        "--runner",
        help="Beam runner: FnApiRunner (local, default), DataflowRunner, FlinkRunner, SparkRunner. "
        "Default: the options file's runner, else FnApiRunner.",
    ),
]
BeamOptionsFileOption = Annotated[
    Path | None,
    typer.Option(
        "--beam-options-file",
        help="YAML or JSON mapping of Beam pipeline options (infra/beam/dataflow.yaml); ${VAR} is "
        "read from the environment.",
        dir_okay=False,
    ),
]
BeamOptionOption = Annotated[
    list[str],
    typer.Option(
        "--beam-option",
        help="A Beam pipeline option passed through, e.g. --beam-option=--region=europe-west4 (repeat; "
        "after the file's).",
    ),
]
BeamResultsUrlOption = Annotated[
    str | None,
    typer.Option(
        "--beam-results-url",
        help="Shared folder (gs://, s3://) for per-shard results of remote Beam runners.",
    ),
]
BeamRunningModeOption = Annotated[
    str | None,
    typer.Option(
        "--beam-running-mode",
        help="FnApiRunner workers: multi_processing (default), multi_threading, in_memory.",
    ),
]
SplitPolicyOption = Annotated[
    str | None,
    typer.Option(
        "--split-policy",
        help="Override the manifest's split policy: subject_hash, climb_published, official.",
    ),
]


@dataclass(frozen=True)
class BuildOptions:
    """Options shared by ``climb build`` and ``climb flow run`` (and the flows' ``options``).

    The Beam fields map onto :class:`pipelines.backends.BackendOptions`; ``beam_options`` are
    argv-style pipeline options passed through (see :meth:`with_beam_options_file`).
    """

    backend: str = "local"
    workers: int | None = None
    dask_address: str | None = None
    max_memory: str | None = "auto"
    beam_runner: str = "FnApiRunner"
    beam_options: tuple[str, ...] = ()
    beam_running_mode: str | None = None
    beam_results_url: str | None = None

    def backend_options(self):  # -> BackendOptions (imported lazily: Beam and Dask are heavy)
        from pipelines.backends import BackendOptions

        return BackendOptions(
            workers=self.workers,
            dask_address=self.dask_address,
            max_memory=self.max_memory,
            beam_runner=self.beam_runner,
            beam_options=tuple(self.beam_options),
            beam_running_mode=self.beam_running_mode,
            beam_results_url=self.beam_results_url,
        )

    def map_shards(self):
        if self.backend == "local":
            return None
        from pipelines.backends import get_backend

        return get_backend(self.backend)


def beam_fields(
    runner: str | None,
    options_file: Path | None,
    flags: list[str] | tuple[str, ...],
    running_mode: str | None,
    results_url: str | None,
) -> dict:
    """The Beam fields of :class:`BuildOptions` from the CLI's Beam options: the file's options
    first, then ``--beam-option`` flags; the runner from ``--runner``, else the file's.

    Raises:
        ValueError: unreadable file, unset ``${VAR}``, an unknown running mode, or ``--runner``
            contradicting the file (the message names the file and the option, never a value).
    """
    from pipelines.backends import BEAM_RUNNING_MODES, load_beam_options, resolve_beam_runner

    from_file = load_beam_options(options_file) if options_file is not None else ()
    resolved, rest = resolve_beam_runner(runner, (*from_file, *flags))
    if running_mode is not None and running_mode not in BEAM_RUNNING_MODES:
        raise ValueError(
            f"unknown Beam running mode {running_mode!r}; use one of {', '.join(BEAM_RUNNING_MODES)}"
        )
    return {
        "beam_runner": resolved,
        "beam_options": rest,
        "beam_running_mode": running_mode,
        "beam_results_url": results_url,
    }


def run_build(
    source: str,
    raw_dir: str,
    out: str,
    config: BuildConfig,
    options: BuildOptions,
    *,
    overwrite: bool = False,
    show_progress: bool | None = None,
) -> BuildResult:
    """Build one source with progress, the way the CLI does it.

    On the Dask backend without ``--dask-address``, the local cluster starts in the background
    while the raw folder is indexed (:func:`pipelines.backends.dask.cluster_started_early`).
    """
    with contextlib.ExitStack() as stack:
        ready = None
        if options.backend == "dask":
            from pipelines.backends.dask import cluster_started_early

            ready = stack.enter_context(cluster_started_early(options.backend_options()))
        plan = plan_build(source, raw_dir, out, config)
        total = len(plan.plans)
        if ready is not None and is_published(plan) and not overwrite:
            ready = None  # nothing to build: the cluster is closed unused
        with progress_bars(show_progress) as bars:
            progress = StageProgress(bars, f"{source}: shards", total, log)
            backend_options = None
            if ready is not None:
                backend_options = ready()
            elif options.backend != "local":
                backend_options = options.backend_options()
            return build_source(
                plan.manifest,
                raw_dir,
                out,
                config,
                map_shards=options.map_shards(),
                backend_options=backend_options,
                overwrite=overwrite,
                on_result=lambda _record: progress.advance(),
                plan=plan,
            )


def print_result(result: BuildResult) -> None:
    if result.status == "up_to_date":
        console.print(
            f"[green]{result.source}[/]: up to date, nothing to do ({result.version}, {result.samples_out} samples)"
        )
        console.print(f"  {result.dataset_url}")
        return
    reasons = ", ".join(
        f"{code}: {n}" for code, n in sorted(result.quarantine_reasons.items(), key=lambda kv: -kv[1])
    )
    console.print(
        f"[green]{result.source}[/]: built {result.version}: {result.items_in} items -> {result.samples_out} samples, "
        f"{result.quarantined} quarantined{f' ({reasons})' if reasons else ''}, {result.shards} shards, "
        f"{result.bytes / 1e6:.1f} MB in {result.seconds:.1f} s ({result.items_per_s:.0f} items/s)"
    )
    console.print(f"  {result.dataset_url}")


def build_command(
    source: str = typer.Argument(..., help="Source id (see `climb sources list`), e.g. ptbxl."),
    raw_dir: Path = typer.Option(
        ...,
        "--raw-dir",
        help="The raw release folder (as `climb fetch` left it, or a --manual-dir).",
        exists=True,
        file_okay=False,
    ),
    out: OutOption = "build-out",
    backend: BackendOption = Backend.local,
    workers: WorkersOption = None,
    dask_address: DaskAddressOption = None,
    max_memory: MaxMemoryOption = "auto",
    beam_runner: BeamRunnerOption = None,
    beam_options_file: BeamOptionsFileOption = None,
    beam_option: BeamOptionOption = [],  # noqa: B006 (typer reads the default; never mutated)
    beam_results_url: BeamResultsUrlOption = None,
    beam_running_mode: BeamRunningModeOption = None,
    items_per_shard: ItemsPerShardOption = 256,
    max_items_per_split: MaxItemsOption = None,
    split_policy: SplitPolicyOption = None,
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Rebuild even if this exact version is already published."
    ),
    log_json: bool = typer.Option(False, "--log-json", help="Log JSON lines instead of a progress bar."),
) -> None:
    """Build one source: index -> transform -> de-identify -> validate -> shards + manifest.

    A rerun with nothing changed does nothing and says so; a changed input, config or code
    writes a new version beside the old one. Needs CLIMB_DEID_SECRET in the environment.
    """
    configure_logging(json_lines=log_json)
    if split_policy not in (None, "subject_hash", "climb_published", "official"):
        console.print(
            f"[red]error:[/] unknown split policy {split_policy!r}; use subject_hash, climb_published or official"
        )
        raise typer.Exit(2)
    config = BuildConfig(
        items_per_shard=items_per_shard, max_items_per_split=max_items_per_split, split_policy=split_policy
    )
    try:
        options = BuildOptions(
            backend=backend.value,
            workers=workers,
            dask_address=dask_address,
            max_memory=max_memory,
            **beam_fields(beam_runner, beam_options_file, beam_option, beam_running_mode, beam_results_url),
        )
        result = run_build(
            source,
            str(raw_dir),
            out,
            config,
            options,
            overwrite=overwrite,
            show_progress=False if log_json else None,
        )
    except (ManifestError, MissingSecretError, NotImplementedError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    except RuntimeError as exc:  # quarantine threshold, count mismatch, failed shard
        console.print(f"[red]build failed:[/] {exc}")
        raise typer.Exit(1) from None
    print_result(result)


def list_built(out: str) -> list[dict]:
    """Every built dataset under ``out``: source, versions, current version, counts, and currency."""
    fs, root = fsspec.core.url_to_fs(out)
    rows = []
    if not fs.exists(root):
        return rows
    try:
        catalog = load_catalog()
    except ManifestError:
        catalog = {}
    for source_dir in sorted(fs.ls(root, detail=False)):
        source = source_dir.rstrip("/").rsplit("/", 1)[-1]
        current_path = f"{source_dir}/{CURRENT_FILE}"
        if not fs.exists(current_path):
            continue
        current = json.loads(fs.cat_file(current_path))["version"]
        versions = sorted(
            p.rstrip("/").rsplit("/", 1)[-1]
            for p in fs.ls(source_dir, detail=False)
            if fs.exists(f"{p}/{MANIFEST_FILE}")
        )
        manifest = json.loads(fs.cat_file(f"{source_dir}/{current}/{MANIFEST_FILE}"))
        counts = manifest.get("counts", {})
        src = catalog.get(source)
        recorded = manifest.get("info", manifest).get("provenance", {}).get("source_manifest_sha256")
        rows.append(
            {
                "source": source,
                "current": current,
                "versions": versions,
                "samples": counts.get("samples_out"),
                "quarantined": counts.get("quarantined"),
                "manifest_current": (src is not None and recorded == src.content_hash()),
            }
        )
    return rows


def status_command(
    out: str = typer.Option("build-out", "--out", help="Output root to inspect."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List built datasets with versions, counts and whether they match the current source manifest."""
    rows = list_built(out)
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    if not rows:
        console.print(f"no built datasets under {out}")
        return
    table = Table(title=f"built datasets under {out}")
    for col in ("source", "current version", "versions", "samples", "quarantined", "manifest current"):
        table.add_column(col)
    for row in rows:
        table.add_row(
            row["source"],
            row["current"],
            str(len(row["versions"])),
            str(row["samples"]),
            str(row["quarantined"]),
            "yes" if row["manifest_current"] else "[yellow]no: rebuild[/]",
        )
    console.print(table)


flow_app = typer.Typer(
    help="Run builds through Prefect (flow runs, retries, caching, artifacts).", no_args_is_help=True
)


@flow_app.command("run")
def flow_run_command(
    sources: list[str] = typer.Argument(None, help="Source ids; default: every implemented source."),
    out: OutOption = "build-out",
    raw_root: Path | None = typer.Option(
        None,
        "--raw-root",
        help="Folder holding <source>/ raw releases; omitted: fetch each source.",
        file_okay=False,
    ),
    endpoint: list[str] = typer.Option(
        [],
        "--endpoint",
        help="Host override KIND=URL for the fetchers, e.g. physionet=http://127.0.0.1:8080 (repeat).",
    ),
    backend: BackendOption = Backend.local,
    workers: WorkersOption = None,
    dask_address: DaskAddressOption = None,
    max_memory: MaxMemoryOption = "auto",
    beam_runner: BeamRunnerOption = None,
    beam_options_file: BeamOptionsFileOption = None,
    beam_option: BeamOptionOption = [],  # noqa: B006 (typer reads the default; never mutated)
    beam_results_url: BeamResultsUrlOption = None,
    beam_running_mode: BeamRunningModeOption = None,
    items_per_shard: ItemsPerShardOption = 256,
    max_items_per_split: MaxItemsOption = None,
    split_policy: SplitPolicyOption = None,
) -> None:
    """Run the Prefect build_corpus flow (same options as `climb build`), printing one line per source.

    Uses PREFECT_API_URL when set (a Prefect server or Cloud), else an ephemeral local server.
    """
    from pipelines.flows.build import build_corpus

    configure_logging()
    endpoints = {}
    for item in endpoint:
        kind, sep, url = item.partition("=")
        if not sep or not kind or not url:
            console.print(f"[red]error:[/] --endpoint takes KIND=URL, got {item!r}")
            raise typer.Exit(2)
        endpoints[kind.strip()] = url.strip()
    config = {
        "items_per_shard": items_per_shard,
        "max_items_per_split": max_items_per_split,
        "split_policy": split_policy,
    }
    try:
        beam = beam_fields(beam_runner, beam_options_file, beam_option, beam_running_mode, beam_results_url)
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    options = {
        "backend": backend.value,
        "workers": workers,
        "dask_address": dask_address,
        "max_memory": max_memory,
        **beam,
        "beam_options": list(beam["beam_options"]),
    }
    try:
        results = build_corpus(
            out,
            sources=sources or None,
            raw_root=str(raw_root) if raw_root else None,
            endpoints=endpoints or None,
            config=config,
            options=options,
        )
    except (ManifestError, MissingSecretError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    except RuntimeError as exc:
        console.print(f"[red]flow failed:[/] {exc}")
        raise typer.Exit(1) from None
    for summary in results.values():
        cached = " (Prefect cache)" if summary.get("cached") else ""
        console.print(
            f"[green]{summary['source']}[/]: {summary['status']}{cached} {summary['version']}: {summary['items_in']} items -> "
            f"{summary['samples_out']} samples, {summary['quarantined']} quarantined  {summary['dataset_url']}"
        )
