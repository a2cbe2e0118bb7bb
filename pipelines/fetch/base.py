"""The fetch contract: what a host lists (:class:`RemoteFile`), what a fetch did (:class:`FetchLog`),
the interface every host's fetcher implements (:class:`Fetcher`) and the errors they raise.

A fetcher only knows its host's protocol: how to list a source's files and which URL (and
headers) to GET for each. Downloading, resuming, retrying, verifying and publishing are the
same for every HTTP host and live in :mod:`pipelines.fetch.download`.
"""

from __future__ import annotations

import fnmatch
import json
import os
import posixpath
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import requests

if TYPE_CHECKING:
    from manifests.schema import SourceManifest
    from pipelines.fetch.credentials import Credential
    from pipelines.fetch.download import HttpDownloader, RetryPolicy, Transfer

#: Folder under a fetch destination that holds the fetch's own records (never raw data).
STATE_DIR = ".climb"
FETCH_LOG_FILE = "fetch-log.json"
#: Suffix of a partly downloaded file; it is renamed to its final name only once verified.
PART_SUFFIX = ".part"

FileStatus = Literal["downloaded", "present", "manual"]


class FetchError(RuntimeError):
    """A fetch failed; the message names the source or file and the reason, never a secret."""


class AuthError(FetchError):
    """The host refused the credential (HTTP 401/403); the message names the credential by origin."""


class ChecksumMismatch(FetchError):
    """A file's bytes did not match its pinned size / SHA-256, twice."""

    def __init__(self, path: str, expected: str, actual: str, detail: str = "") -> None:
        self.path, self.expected, self.actual = path, expected, actual
        super().__init__(
            f"{path}: checksum mismatch after a re-fetch{': ' + detail if detail else ''}; "
            f"expected sha256 {expected}, got {actual}. The file was not published."
        )


class MissingChecksums(FetchError):
    """Files have no pinned size/SHA-256 and ``--register-checksums`` was not given."""


class ManualDownloadRequired(FetchError):
    """An application-only source's files are not (all) in ``--manual-dir``; the message says what to do."""


class UnsafeArchiveError(FetchError):
    """An archive entry would land outside the extraction folder (``../``, absolute, link out)."""


@dataclass(frozen=True)
class RemoteFile:
    """One file a source needs, as its host lists it.

    Attributes:
        path: POSIX path relative to the fetch destination (and to the host's root); never
            absolute, never with ``..``.
        size: size in bytes, when the host or the catalog says; otherwise checked against the
            server's ``Content-Length``/``Content-Range``.
        sha256: lower-case hex digest, from the host's list or the catalog; ``None`` only when
            ``--register-checksums`` will record it.
        url: where to GET it. Never carries credentials (they travel in headers).
        extract: after verifying, extract this archive (zip/tar/tar.gz) safely.
        extract_dir: where to extract it, relative to the destination (``None``: the archive's
            own folder, as ``unzip`` in place would).
        strip_components: leading folders to drop from every entry (GitHub archives: 1).
    """

    path: str
    size: int | None
    sha256: str | None
    url: str
    extract: bool = False
    extract_dir: str | None = None
    strip_components: int = 0

    def __post_init__(self) -> None:
        check_relative_path(self.path)


def check_relative_path(path: str) -> str:
    """Refuse a host-supplied path that is absolute or climbs out of the destination.

    Raises:
        FetchError: the path is empty, absolute, or has a ``..`` component.
    """
    norm = posixpath.normpath(path)
    if not path or path.startswith(("/", "\\")) or norm == ".." or norm.startswith("../") or ":" in path[:3]:
        raise FetchError(
            f"refusing unsafe remote path {path!r}: it must be relative and stay inside the destination"
        )
    if any(part == ".." for part in path.replace("\\", "/").split("/")):
        raise FetchError(f"refusing unsafe remote path {path!r}: '..' components are not allowed")
    return norm


def select_files(files: list[RemoteFile], pattern: str | None, prefix: str | None = None) -> list[RemoteFile]:
    """Keep the files whose path matches the glob ``pattern`` (``fnmatch``; ``*`` crosses ``/``).

    A pattern matches either the full path or the path relative to ``prefix`` (the source's
    sub-folder of the host project, e.g. ``training/ptb-xl``), so ``--files 'g1/*'`` and
    ``--files 'training/ptb-xl/g1/*'`` select the same files.
    """
    if not pattern:
        return list(files)
    patterns = [p.strip() for p in pattern.split(",") if p.strip()]
    base = (prefix or "").strip("/")
    kept = []
    for f in files:
        rel = f.path[len(base) + 1 :] if base and f.path.startswith(base + "/") else f.path
        if any(fnmatch.fnmatchcase(f.path, p) or fnmatch.fnmatchcase(rel, p) for p in patterns):
            kept.append(f)
    return kept


@dataclass
class FetchRecord:
    """What happened to one file.

    Attributes:
        path: relative path under the destination.
        url: the URL it came from (no credentials), or the manual-dir path for manual sources.
        size_bytes: verified size.
        sha256: verified digest.
        checksum_source: ``host`` (e.g. PhysioNet SHA256SUMS.txt), ``catalog`` (``<id>.checksums.tsv``)
            or ``registered`` (recorded by this run with ``--register-checksums``).
        status: ``downloaded`` (fetched now), ``present`` (already there and verified) or ``manual``.
        bytes_transferred: bytes received over the network for this file in this run, over all
            attempts (resume makes this smaller than ``size_bytes``; a refetch makes it larger).
        resumed_from_bytes: size of the ``.part`` file found at the start (0 when none).
        attempts: HTTP requests made for the file's bytes.
        duration_s: wall time spent on this file, seconds.
    """

    path: str
    url: str
    size_bytes: int
    sha256: str
    checksum_source: str
    status: FileStatus
    bytes_transferred: int = 0
    resumed_from_bytes: int = 0
    attempts: int = 0
    duration_s: float = 0.0


@dataclass
class FetchLog:
    """The record of one ``fetch_source`` run; the built manifest's provenance cites it.

    Written as JSON to ``<dest>/.climb/fetch-log.json`` (temporary name, then rename). It holds
    URLs, sizes and hashes only: never a credential, only the credential's origin by name.
    """

    source: str
    host_kind: str
    base_url: str
    dest: str
    selection: str | None = None
    credential: str | None = None  # where the credential came from, by name ("env PHYSIONET_USERNAME/...")
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    finished_at: str | None = None
    status: Literal["running", "ok", "failed"] = "running"
    max_connections: int = 1
    files: list[FetchRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    manifest_hash: str | None = None

    @property
    def total_bytes(self) -> int:
        """Verified bytes of every file in the log."""
        return sum(r.size_bytes for r in self.files)

    @property
    def bytes_transferred(self) -> int:
        """Bytes received over the network in this run."""
        return sum(r.bytes_transferred for r in self.files)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["total_bytes"] = self.total_bytes
        data["bytes_transferred"] = self.bytes_transferred
        data["file_count"] = len(self.files)
        return data

    def write(self, dest: str | Path) -> Path:
        """Write the log to ``<dest>/.climb/fetch-log.json`` atomically and return its path."""
        path = Path(dest) / STATE_DIR / FETCH_LOG_FILE
        write_json_atomic(path, self.to_dict())
        return path

    @classmethod
    def read(cls, dest: str | Path) -> FetchLog:
        """Read ``<dest>/.climb/fetch-log.json``."""
        data = json.loads((Path(dest) / STATE_DIR / FETCH_LOG_FILE).read_text(encoding="utf-8"))
        for key in ("total_bytes", "bytes_transferred", "file_count"):
            data.pop(key, None)
        data["files"] = [FetchRecord(**r) for r in data["files"]]
        return cls(**data)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary sibling, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class Fetcher(ABC):
    """One access kind's protocol: list a source's files and say how to GET each one.

    Subclasses set :attr:`kinds` (the ``HostKind`` values they serve), :attr:`credential_scope`
    (the credential chain's key, e.g. ``"physionet"``) and implement :meth:`list_files`. Hosts
    that hand out short-lived download URLs (Kaggle redirects, Google Drive's confirmation
    page) override :meth:`resolve_download`, which runs before every attempt. Hosts that are
    not HTTP (cloud buckets, a manual folder) override :meth:`fetch`.

    Args:
        manifest: the source manifest.
        base_url: the host's base URL after endpoint overrides (see :mod:`pipelines.fetch.endpoints`).
        credential: the credential found for :attr:`credential_scope`, or ``None``.
    """

    kinds: ClassVar[tuple[str, ...]] = ()
    credential_scope: ClassVar[str | None] = None
    default_connections: ClassVar[int] = 4
    #: Folder of the catalog's ``<id>.checksums.tsv`` (set by ``fetch_source``; ``None``: manifests/sources).
    checksums_dir: Path | None = None
    #: What a 401/403 means on this host, appended to the error (DUA, competition rules...).
    auth_advice: ClassVar[str] = ""

    def __init__(
        self,
        manifest: SourceManifest,
        base_url: str,
        credential: Credential | None,
        retry: RetryPolicy | None = None,
    ) -> None:
        from pipelines.fetch.download import RetryPolicy

        self.manifest = manifest
        self.base_url = base_url
        self.credential = credential
        self.retry = retry or RetryPolicy()
        self._session: requests.Session | None = None

    @property
    def session(self) -> requests.Session:
        """A session for listings and API calls (downloads use per-thread sessions)."""
        if self._session is None:
            from pipelines.fetch.download import new_session

            self._session = new_session(self)
        return self._session

    def get(self, url: str, what: str, **kwargs: Any) -> requests.Response:
        """GET a listing / API response with retries (see :func:`~pipelines.fetch.download.request_with_retry`)."""
        from pipelines.fetch.download import request_with_retry

        return request_with_retry(
            self.session, "GET", url, fetcher=self, retry=self.retry, what=what, **kwargs
        )

    def post(self, url: str, what: str, **kwargs: Any) -> requests.Response:
        """POST to an API with retries."""
        from pipelines.fetch.download import request_with_retry

        return request_with_retry(
            self.session, "POST", url, fetcher=self, retry=self.retry, what=what, **kwargs
        )

    # -- listing ---------------------------------------------------------------------------------
    @abstractmethod
    def list_files(self, selection: str | None) -> list[RemoteFile]:
        """The files the source needs (all of them, or those matching the glob ``selection``)."""

    # -- HTTP plumbing ---------------------------------------------------------------------------
    def configure_session(self, session: requests.Session) -> None:
        """Attach this host's authentication to a new session (headers, never the URL)."""
        if self.credential is not None and self.credential.username is not None:
            session.auth = (self.credential.username, self.credential.secret.get())

    def resolve_download(self, session: requests.Session, remote: RemoteFile) -> tuple[str, dict[str, str]]:
        """The URL and extra headers for the next attempt at ``remote`` (default: its URL)."""
        return remote.url, {}

    def reject_response(self, remote: RemoteFile, headers: Mapping[str, str]) -> str | None:
        """A reason to discard a 200/206 response and retry (e.g. an HTML error page), or ``None``."""
        return None

    def describe_auth_failure(self, status: int, what: str) -> str:
        """A 401/403 message: which credential was used, by origin, and what to do."""
        verb = "rejected" if status == 401 else "refused access with"
        if self.credential is None:
            used = f"no credential was found for {self.credential_scope or self.manifest.host.kind}"
        else:
            used = f"the credential from {self.credential.origin}"
        msg = f"{self.manifest.id}: the host {verb} HTTP {status} for {what}; {used}."
        if self.auth_advice:
            msg += " " + self.auth_advice.format(manifest=self.manifest, host=self.manifest.host)
        return msg

    # -- fetching --------------------------------------------------------------------------------
    def fetch(self, files: list[RemoteFile], dest: Path, downloader: HttpDownloader) -> list[FetchRecord]:
        """Download, verify and publish ``files`` under ``dest``, then extract archives marked ``extract``."""
        from pipelines.fetch.archives import extract_archive

        records = downloader.download_all(files, dest, self)
        digests = {r.path: r.sha256 for r in records}
        for f in files:
            if not f.extract:
                continue
            # a marker per archive (its digest) makes reruns skip finished extractions
            marker = dest / STATE_DIR / "extracted" / (f.path + ".json")
            if marker.is_file() and json.loads(marker.read_text()).get("sha256") == digests.get(f.path):
                continue
            target = dest / check_relative_path(f.extract_dir) if f.extract_dir else (dest / f.path).parent
            names = extract_archive(dest / f.path, target, f.strip_components)
            write_json_atomic(
                marker,
                {"sha256": digests.get(f.path), "into": str(target.relative_to(dest)), "entries": names},
            )
        return records

    def transfer(self, remote: RemoteFile, part: Path, downloader: HttpDownloader) -> Transfer:
        """Fill ``part`` with ``remote``'s bytes (resuming what is there); default: HTTP with Range.

        Non-HTTP hosts (buckets, a manual folder) override this; verification and publishing
        stay in the downloader.
        """
        return downloader.transfer_http(remote, part, self)

    def close(self) -> None:
        """Release what the fetcher holds (sessions, clients)."""
        if self._session is not None:
            self._session.close()
            self._session = None
