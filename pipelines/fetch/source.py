"""``fetch_source``: fetch one source's raw files, verified, resumable and logged.

The same function runs from ``climb fetch``, from the Prefect flow's fetch task and from tests.
It picks the fetcher from ``manifest.host.kind`` (:data:`FETCHERS`), lists the files,
attaches pinned checksums (host list, else ``<id>.checksums.tsv``), downloads with bounded
parallelism, writes ``<dest>/.climb/fetch-log.json`` (also when the fetch fails) and, with
``register_checksums``, records what it downloaded in ``<id>.checksums.tsv``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from manifests.schema import SOURCES_DIR, SourceManifest
from pipelines.fetch.base import Fetcher, FetchError, FetchLog, MissingChecksums, RemoteFile
from pipelines.fetch.checksums import (
    PinnedChecksum,
    checksums_tsv_path,
    read_checksums_tsv,
    write_checksums_tsv,
)
from pipelines.fetch.credentials import CredentialProvider, default_credentials, redact
from pipelines.fetch.download import FetchFailures, HttpDownloader, RetryPolicy
from pipelines.fetch.endpoints import resolve_base_url
from pipelines.fetch.progress import make_progress

log = logging.getLogger("climb.fetch")

#: host kind -> "module:Class" of its fetcher (imported lazily: each pulls in its own client library).
FETCHERS: dict[str, str] = {
    "physionet": "pipelines.fetch.hosts.physionet:PhysioNetFetcher",
    "kaggle": "pipelines.fetch.hosts.kaggle:KaggleDatasetFetcher",
    "kaggle_competition": "pipelines.fetch.hosts.kaggle:KaggleCompetitionFetcher",
    "tcia": "pipelines.fetch.hosts.tcia:TciaFetcher",
    "https": "pipelines.fetch.hosts.https:HttpsFetcher",
    "zenodo": "pipelines.fetch.hosts.https:HttpsFetcher",
    "figshare": "pipelines.fetch.hosts.https:HttpsFetcher",
    "mendeley": "pipelines.fetch.hosts.https:HttpsFetcher",
    "github": "pipelines.fetch.hosts.github:GitHubArchiveFetcher",
    "gdrive": "pipelines.fetch.hosts.gdrive:GoogleDriveFetcher",
    "huggingface": "pipelines.fetch.hosts.huggingface:HuggingFaceFetcher",
    "s3": "pipelines.fetch.hosts.bucket:BucketFetcher",
    "gcs": "pipelines.fetch.hosts.bucket:BucketFetcher",
    "azure": "pipelines.fetch.hosts.bucket:BucketFetcher",
    "manual": "pipelines.fetch.hosts.manual:ManualFetcher",
}
#: Kinds whose base URL is not an HTTP endpoint.
_NON_HTTP = ("s3", "gcs", "azure", "manual", "ftp")


def fetcher_class(kind: str) -> type[Fetcher]:
    """The :class:`Fetcher` subclass for a host kind.

    Raises:
        FetchError: no fetcher for the kind.
    """
    target = FETCHERS.get(kind)
    if target is None:
        raise FetchError(f"no fetcher for host kind {kind!r}; known kinds: {', '.join(sorted(FETCHERS))}")
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def local_dest(dest: str | Path) -> Path:
    """A local destination folder from a path or ``file://`` URL.

    Raw files are fetched to a local (or mounted) file system: resume and publish-by-rename
    need a POSIX file system. Object-store destinations are for built datasets.

    Raises:
        FetchError: a non-local URL.
    """
    text = str(dest)
    parts = urlsplit(text)
    if parts.scheme in ("", "file") or (len(parts.scheme) == 1 and text[1:2] == ":"):
        return Path(parts.path if parts.scheme == "file" else text).expanduser().resolve()
    raise FetchError(
        f"--dest {text!r}: raw files are fetched to a local or mounted folder (resume and atomic rename "
        "need a POSIX file system); give a path"
    )


def make_fetcher(
    manifest: SourceManifest,
    *,
    endpoints: Mapping[str, str] | None = None,
    credentials: CredentialProvider | None = None,
    retry: RetryPolicy | None = None,
    manual_dir: str | Path | None = None,
) -> Fetcher:
    """Build the fetcher for ``manifest`` (endpoint override applied, credential looked up)."""
    kind = manifest.host.kind
    if manual_dir is not None or kind == "manual" or manifest.host.access == "application":
        from pipelines.fetch.hosts.manual import ManualFetcher

        return ManualFetcher(manifest, str(manual_dir or ""), None, retry)
    cls = fetcher_class(kind)
    if kind in _NON_HTTP:
        base_url = manifest.host.url or ""
    else:
        base_url = resolve_base_url(kind, manifest.host.url, endpoints)
    provider = credentials if credentials is not None else default_credentials()
    host = urlsplit(base_url).hostname if base_url else None
    credential = provider.get(cls.credential_scope, host) if cls.credential_scope else None
    fetcher = cls(manifest, base_url, credential, retry)
    if kind in _NON_HTTP:
        fetcher.configure_endpoint(endpoints)  # type: ignore[attr-defined]
    return fetcher


def attach_checksums(
    files: list[RemoteFile], pinned: dict[str, PinnedChecksum]
) -> tuple[list[RemoteFile], dict[str, str]]:
    """Fill each file's size/sha256 from the catalog where the host gave none.

    Returns:
        The files and ``path -> "host" | "catalog"`` for those with a digest.

    Raises:
        FetchError: the host's digest and the catalog's disagree (the release changed).
    """
    out: list[RemoteFile] = []
    sources: dict[str, str] = {}
    for f in files:
        pin = pinned.get(f.path)
        if pin is not None and f.sha256 is not None and pin.sha256 != f.sha256:
            raise FetchError(
                f"{f.path}: the host lists sha256 {f.sha256} but the catalog pins {pin.sha256}; "
                "the release changed: check it and re-register the checksums"
            )
        if f.sha256 is not None:
            sources[f.path] = "host"
            if pin is not None and f.size is None:
                f = replace(f, size=pin.size)
        elif pin is not None:
            f = replace(f, sha256=pin.sha256, size=pin.size if pin.size is not None else f.size)
            sources[f.path] = "catalog"
        out.append(f)
    return out, sources


def fetch_source(
    manifest: SourceManifest,
    dest: str | Path,
    *,
    files: str | None = None,
    endpoints: dict[str, str] | None = None,
    manual_dir: str | None = None,
    register_checksums: bool = False,
    max_connections: int | None = None,
    credentials: CredentialProvider | None = None,
    progress: bool | None = None,
    retry: RetryPolicy | None = None,
    checksums_dir: Path = SOURCES_DIR,
) -> FetchLog:
    """Fetch one source's raw files into ``dest``: listed, downloaded, verified, published, logged.

    Args:
        manifest: the source manifest.
        dest: local folder (or ``file://`` URL) for the raw files; host paths are kept below it.
        files: glob (``fnmatch``, comma-separated for several) selecting a subset of files, matched
            against the host path or the path below ``host.dataset``.
        endpoints: host kind -> base URL overrides (on top of ``CLIMB_ENDPOINT_<KIND>``).
        manual_dir: folder the user downloaded an application-only source into.
        register_checksums: record size + SHA-256 of every file in ``<id>.checksums.tsv``; without
            it, a file with no pinned digest is an error.
        max_connections: parallel connections to the host (default: the host's own default).
        credentials: credential provider (default: env, ~/.netrc, kaggle.json, Prefect Secret).
        progress: rich bar (True), log lines (False), or decide by whether stderr is a TTY (None).
        retry: retry policy (tests use short backoffs).
        checksums_dir: folder of ``<id>.checksums.tsv`` (default ``manifests/sources``).

    Returns:
        The :class:`FetchLog`, also written to ``<dest>/.climb/fetch-log.json``.

    Raises:
        AuthError: 401/403, naming the credential by origin and what to accept on the website.
        ChecksumMismatch: a file failed verification twice.
        MissingChecksums: files without a pinned digest and no ``register_checksums``.
        ManualDownloadRequired: an application-only source's files are missing from ``manual_dir``.
        FetchError: any other failure, naming the file and the reason.
    """
    dest_path = local_dest(dest)
    dest_path.mkdir(parents=True, exist_ok=True)
    retry = retry or RetryPolicy()
    fetcher = make_fetcher(
        manifest, endpoints=endpoints, credentials=credentials, retry=retry, manual_dir=manual_dir
    )
    fetcher.checksums_dir = checksums_dir
    connections = max_connections or fetcher.default_connections
    fetch_log = FetchLog(
        source=manifest.id,
        host_kind=manifest.host.kind,
        base_url=fetcher.base_url,
        dest=str(dest_path),
        selection=files,
        credential=fetcher.credential.origin if fetcher.credential else None,
        max_connections=connections,
        manifest_hash=manifest.content_hash(),
    )
    reporter = make_progress(manifest.id, progress)
    downloader = HttpDownloader(connections, retry, reporter)
    tsv = checksums_tsv_path(manifest.id, checksums_dir)
    try:
        listed = fetcher.list_files(files)
        if not listed:
            raise FetchError(
                f"{manifest.id}: no files to fetch"
                + (f" match --files {files!r}" if files else " were listed by the host")
            )
        pinned = read_checksums_tsv(tsv)
        listed, sources = attach_checksums(listed, pinned)
        unpinned = [f.path for f in listed if f.sha256 is None]
        if unpinned and not register_checksums:
            raise MissingChecksums(
                f"{manifest.id}: {len(unpinned)} file(s) have no pinned SHA-256 (e.g. {', '.join(unpinned[:3])}); "
                f"the host publishes none and {tsv} does not list them. Run "
                f"'climb fetch {manifest.id} --register-checksums' once to record them."
            )
        downloader.checksum_sources = sources
        log.info(
            "%s: fetching %d files from %s with %d connections",
            manifest.id,
            len(listed),
            fetcher.base_url,
            connections,
        )
        fetch_log.files = fetcher.fetch(listed, dest_path, downloader)
        if register_checksums:
            merged = dict(pinned)
            for rec in fetch_log.files:
                merged[rec.path] = PinnedChecksum(rec.size_bytes, rec.sha256)
            write_checksums_tsv(tsv, merged)
            log.info("%s: recorded %d checksums in %s", manifest.id, len(fetch_log.files), tsv)
        fetch_log.status = "ok"
        return fetch_log
    except Exception as exc:
        if isinstance(exc, FetchFailures):
            fetch_log.files = exc.records
        fetch_log.status = "failed"
        fetch_log.errors.append(redact(f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        fetch_log.finished_at = datetime.now(UTC).isoformat()
        fetch_log.write(dest_path)
        reporter.close()
        downloader.close()
        fetcher.close()
