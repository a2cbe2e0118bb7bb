"""``climb fetch``: download one source's raw files, verified and resumable.

Exit codes: 0 done; 1 a file failed (checksum mismatch, retries exhausted, unsafe archive);
2 bad arguments or manifest; 3 authentication refused (401/403); 4 manual download needed;
5 checksums missing (rerun with ``--register-checksums``). Credentials are never taken on the
command line: see ``--help``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

from manifests.schema import SOURCES_DIR, ManifestError, load_source_manifest
from pipelines.fetch.base import AuthError, FetchError, ManualDownloadRequired, MissingChecksums
from pipelines.fetch.credentials import redact

EXIT_FAILED, EXIT_USAGE, EXIT_AUTH, EXIT_MANUAL, EXIT_CHECKSUMS = 1, 2, 3, 4, 5

_EPILOG = (
    "Credentials are read, in order, from environment variables (PHYSIONET_USERNAME/PHYSIONET_PASSWORD, "
    "KAGGLE_USERNAME/KAGGLE_KEY, TCIA_USERNAME/TCIA_PASSWORD, HF_TOKEN), ~/.netrc, ~/.kaggle/kaggle.json, "
    "cloud SDK defaults (AWS_*, profiles) and, inside a Prefect flow, Secret blocks "
    "climb-<host>-username/-password. They are never accepted on the command line and never prompted for. "
    "Exit codes: 0 ok, 1 fetch failed, 2 usage, 3 authentication refused, 4 manual download needed, "
    "5 checksums missing."
)


def fetch_command(
    source: str = typer.Argument(..., help="Source id (e.g. ptbxl) or path to a source manifest YAML."),
    files: str | None = typer.Option(
        None,
        "--files",
        help="Glob selecting a subset (e.g. 'g1/*' or 'training/ptb-xl/g1/HR0000*'); commas for several.",
    ),
    dest: str | None = typer.Option(
        None,
        "--dest",
        help="Local folder (or file:// URL) for the raw files. Default: $CLIMB_RAW_DIR/<source> or ./raw/<source>.",
    ),
    register_checksums: bool = typer.Option(
        False,
        "--register-checksums",
        help="Record size + SHA-256 of what is downloaded in <source>.checksums.tsv.",
    ),
    manual_dir: str | None = typer.Option(
        None, "--manual-dir", help="Folder holding files you downloaded by hand (application-only sources)."
    ),
    endpoint: list[str] | None = typer.Option(
        None,
        "--endpoint",
        help="Override a host's base URL, KIND=URL (repeatable), e.g. physionet=http://127.0.0.1:8080. "
        "Plain http only for loopback. Also env CLIMB_ENDPOINT_<KIND>.",
    ),
    connections: int | None = typer.Option(
        None,
        "--connections",
        min=1,
        max=64,
        help="Parallel connections to the host (default per host, e.g. 8 for PhysioNet).",
    ),
    progress: bool | None = typer.Option(
        None,
        "--progress/--no-progress",
        help="Progress bar (default: only on a terminal; log lines otherwise).",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every retry and file."),
) -> None:
    """Download one source's raw files: verified (size + SHA-256), resumable, retried, logged.

    Files are published only once verified; a killed run resumes where it stopped. The fetch
    log goes to <dest>/.climb/fetch-log.json.

    Credentials come, in order, from environment variables (PHYSIONET_USERNAME/PHYSIONET_PASSWORD,
    KAGGLE_USERNAME/KAGGLE_KEY, TCIA_USERNAME/TCIA_PASSWORD, HF_TOKEN), ~/.netrc,
    ~/.kaggle/kaggle.json, cloud SDK defaults (AWS_* variables, profiles) and, inside a Prefect
    flow, Secret blocks climb-<host>-username / climb-<host>-password. They are never accepted
    on the command line and never prompted for.

    Exit codes: 0 ok, 1 fetch failed, 2 usage, 3 authentication refused, 4 manual download
    needed (instructions printed), 5 checksums missing (rerun with --register-checksums).
    """
    from pipelines.fetch.endpoints import parse_endpoint_options
    from pipelines.fetch.source import fetch_source

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        manifest = load_source_manifest(source)
        endpoints = parse_endpoint_options(endpoint)
    except (ManifestError, FetchError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    source_path = Path(source)
    checksums_dir = source_path.parent if source_path.suffix in (".yaml", ".yml") else SOURCES_DIR
    target = dest or str(Path(os.environ.get("CLIMB_RAW_DIR", "raw")) / manifest.id)
    try:
        fetch_log = fetch_source(
            manifest,
            target,
            files=files,
            endpoints=endpoints,
            manual_dir=manual_dir,
            register_checksums=register_checksums,
            max_connections=connections,
            progress=progress,
            checksums_dir=checksums_dir,
        )
    except AuthError as exc:
        typer.echo(f"error: {redact(str(exc))}", err=True)
        raise typer.Exit(EXIT_AUTH) from None
    except ManualDownloadRequired as exc:
        typer.echo(redact(str(exc)), err=True)
        raise typer.Exit(EXIT_MANUAL) from None
    except MissingChecksums as exc:
        typer.echo(f"error: {redact(str(exc))}", err=True)
        raise typer.Exit(EXIT_CHECKSUMS) from None
    except FetchError as exc:
        typer.echo(f"error: {redact(str(exc))}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    downloaded = sum(1 for r in fetch_log.files if r.status == "downloaded")
    typer.echo(
        f"{manifest.id}: {len(fetch_log.files)} files verified ({downloaded} downloaded, "
        f"{fetch_log.total_bytes} bytes) in {fetch_log.dest}; log: {Path(fetch_log.dest) / '.climb' / 'fetch-log.json'}"
    )


def main() -> None:  # pragma: no cover - ``python -m pipelines.fetch.cli``
    app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False, epilog=_EPILOG)
    app.command(epilog=_EPILOG)(fetch_command)
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
