"""The HTTP download engine every HTTP host shares: bounded parallel connections, Range resume,
retry with backoff, size + SHA-256 verification, publish by rename.

One file's life:

1. If ``<dest>/<path>`` exists and matches its pinned size and SHA-256, it is kept (``present``).
2. Otherwise bytes go to ``<path>.part``. A ``.part`` left by a killed run is resumed with
   ``Range: bytes=<size>-``; a server that answers 200 instead of 206 restarts it from zero.
3. 429, 5xx, timeouts and dropped connections are retried with exponential backoff and full
   jitter, waiting at least ``Retry-After`` when the server sends one. The attempt counter
   resets whenever an attempt made progress, so a week-long run survives flaky links, but
   a host that never sends a byte gives up after ``RetryPolicy.attempts``.
4. The finished ``.part`` is hashed. On a match it is renamed to its final name (atomic on
   one file system). On a mismatch it is deleted and fetched once more from zero; a second
   mismatch raises :class:`~pipelines.fetch.base.ChecksumMismatch` naming the file and both
   digests, and nothing is published.

Connections: one ``requests.Session`` per worker thread (``requests`` sessions are not
thread-safe), at most ``max_connections`` threads per source, i.e. per host. TLS verification is
always on: no code here turns certificate checks off.

Content is requested with ``Accept-Encoding: identity`` and read undecoded, so byte offsets
are file offsets and hashes are of the file as published.
"""

from __future__ import annotations

import contextlib
import email.utils
import fcntl
import hashlib
import http.client
import logging
import os
import random
import re
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import requests
import urllib3

from pipelines.fetch.base import (
    PART_SUFFIX,
    STATE_DIR,
    AuthError,
    ChecksumMismatch,
    FetchError,
    FetchRecord,
    FileStatus,
    RemoteFile,
    check_relative_path,
)
from pipelines.fetch.credentials import redact

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from pipelines.fetch.base import Fetcher
    from pipelines.fetch.progress import ProgressReporter

log = logging.getLogger("climb.fetch")

CHUNK_BYTES = 256 * 1024
USER_AGENT = "climb-etl-fetch/1"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_CONTENT_RANGE_UNSAT = re.compile(r"bytes\s+\*/(\d+)")


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying.

    Attributes:
        attempts: consecutive attempts without progress before giving up.
        max_total_attempts: attempts per file in all, progress or not.
        base_s: first backoff, seconds; attempt k waits up to ``base_s * 2**k`` (full jitter).
        cap_s: longest backoff, seconds.
        max_retry_after_s: longest ``Retry-After`` honoured, seconds (longer ones are clipped).
        connect_timeout_s: TCP/TLS connect timeout, seconds.
        read_timeout_s: longest silence inside a response, seconds.
    """

    attempts: int = 8
    max_total_attempts: int = 200
    base_s: float = 1.0
    cap_s: float = 120.0
    max_retry_after_s: float = 3600.0
    connect_timeout_s: float = 30.0
    read_timeout_s: float = 120.0

    def delay_s(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt`` (1-based): backoff with full jitter, at least Retry-After."""
        backoff = random.uniform(0, min(self.cap_s, self.base_s * (2 ** max(attempt - 1, 0))))
        if retry_after_s is not None:
            return max(min(retry_after_s, self.max_retry_after_s), backoff)
        return backoff


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now (delta-seconds or HTTP-date), or ``None``."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def tls_failure_message(url: str) -> str:
    """Why a TLS handshake failed, without retrying: certificate checks are never turned off."""
    host = urlsplit(url).netloc
    return (
        f"TLS certificate verification failed for {host}: the server's certificate is not trusted. "
        "Verification is never turned off; for an institutional mirror or proxy with its own CA, point "
        "REQUESTS_CA_BUNDLE at that CA's certificate."
    )


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: Transient transport errors: a dropped or reset connection, a timeout, a truncated body.
_TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
)


class FetchFailures(FetchError):
    """Some files of a fetch failed; :attr:`errors` holds each file's error.

    Attributes:
        errors: one exception per failed file (e.g. :class:`ChecksumMismatch`).
        records: the files that did succeed (they are published and verified).
    """

    def __init__(self, errors: list[FetchError], total: int, records: list[FetchRecord]) -> None:
        self.errors = errors
        self.records = records
        shown = "\n  ".join(redact(str(e)) for e in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(f"{len(errors)} of {total} files failed:\n  {shown}{more}")


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


@dataclass
class Transfer:
    """What filling one ``.part`` file took: bytes received, the resume offset, attempts, and the
    total size the server announced (``None`` when it did not)."""

    bytes_transferred: int = 0
    resumed_from_bytes: int = 0
    attempts: int = 0
    server_total: int | None = None
    status: FileStatus = "downloaded"
    total_reported: bool = False  # the file's remaining bytes were added to the progress total


@contextlib.contextmanager
def _file_lock(dest: Path, rel_path: str) -> Iterator[None]:
    """Hold an exclusive, non-blocking ``flock`` for one destination file (released on exit or death)."""
    locks = dest / STATE_DIR / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    lock_path = locks / (hashlib.sha1(rel_path.encode()).hexdigest() + ".lock")
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FetchError(
                f"{rel_path}: another fetch of this destination is writing it; not touching it"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def new_session(fetcher: Fetcher) -> requests.Session:
    """A ``requests.Session`` with TLS verification on, identity encoding and the fetcher's auth."""
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    session.headers["Accept-Encoding"] = "identity"
    session.verify = True
    fetcher.configure_session(session)
    return session


class HttpDownloader:
    """Download files over HTTP(S) with bounded parallelism, resume, retry and verification.

    Args:
        max_connections: worker threads, i.e. simultaneous connections to the host.
        retry: the retry policy.
        progress: where byte counts go.
        checksum_sources: path -> where its pinned digest came from (``host``/``catalog``), for the log.
        sleep: the sleep function (tests may count calls).
    """

    def __init__(
        self,
        max_connections: int,
        retry: RetryPolicy,
        progress: ProgressReporter,
        checksum_sources: dict[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        self.max_connections = max_connections
        self.retry = retry
        self.progress = progress
        self.checksum_sources = checksum_sources or {}
        self.sleep = sleep
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self._stop = threading.Event()

    # -- sessions ------------------------------------------------------------------------------
    def session_for(self, fetcher: Fetcher) -> requests.Session:
        """This thread's session for ``fetcher`` (auth attached by the fetcher, TLS verified)."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = new_session(fetcher)
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._sessions_lock:
            for s in self._sessions:
                s.close()
            self._sessions.clear()

    # -- many files ----------------------------------------------------------------------------
    def download_all(self, files: list[RemoteFile], dest: Path, fetcher: Fetcher) -> list[FetchRecord]:
        """Download ``files`` under ``dest`` with up to ``max_connections`` at once.

        Every file is attempted; failures are collected and raised together at the end, except
        an authentication failure, which stops the fetch at once (every file would fail alike).

        Raises:
            AuthError: the host refused the credential.
            FetchError: one or more files failed; the message lists each with its reason.
        """
        for f in files:
            if f.size:
                self.progress.add_total(f.size)
        records: list[FetchRecord] = []
        failures: list[FetchError] = []
        with ThreadPoolExecutor(max_workers=self.max_connections, thread_name_prefix="climb-fetch") as pool:
            futures = {pool.submit(self.download_one, f, dest, fetcher): f for f in files}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in done:
                    exc = fut.exception()
                    if exc is None:
                        records.append(fut.result())
                    elif isinstance(exc, AuthError):
                        self._stop.set()
                        for p in pending:
                            p.cancel()
                        raise exc
                    elif isinstance(exc, FetchError):
                        failures.append(exc)
                    else:
                        failures.append(
                            FetchError(f"{futures[fut].path}: {type(exc).__name__}: {redact(str(exc))}")
                        )
        if failures:
            raise FetchFailures(failures, len(files), records)
        records.sort(key=lambda r: r.path)
        return records

    # -- one file ------------------------------------------------------------------------------
    def download_one(self, remote: RemoteFile, dest: Path, fetcher: Fetcher) -> FetchRecord:
        """Fetch, verify and publish one file (see the module docstring).

        An exclusive lock (``<dest>/.climb/locks/``) is held meanwhile, so two fetches of the same
        destination (a retried flow run beside a stuck one) never write one ``.part`` together.

        Raises:
            FetchError: another process holds the file's lock, or the fetch failed.
        """
        with _file_lock(dest, remote.path):
            return self._download_one(remote, dest, fetcher)

    def _download_one(self, remote: RemoteFile, dest: Path, fetcher: Fetcher) -> FetchRecord:
        t0 = time.monotonic()
        final = dest / check_relative_path(remote.path)
        source = self.checksum_sources.get(remote.path, "host" if remote.sha256 else "registered")
        if final.exists() and (remote.size is None or final.stat().st_size == remote.size):
            digest = sha256_file(final)
            if remote.sha256 is None or digest == remote.sha256:
                size = final.stat().st_size
                self.progress.advance(size if remote.size else 0)
                self.progress.file_done()
                return FetchRecord(
                    remote.path, remote.url, size, digest, source, "present", duration_s=time.monotonic() - t0
                )
            log.warning("%s: published file does not match its checksum; fetching it again", remote.path)
        final.parent.mkdir(parents=True, exist_ok=True)
        part = final.with_name(final.name + PART_SUFFIX)
        total = Transfer()
        for round_no in (1, 2):
            tr = fetcher.transfer(remote, part, self)
            total.bytes_transferred += tr.bytes_transferred
            total.attempts += tr.attempts
            if round_no == 1:
                total.resumed_from_bytes = tr.resumed_from_bytes
            status = tr.status
            size = part.stat().st_size
            digest = sha256_file(part)
            expected_size = remote.size if remote.size is not None else tr.server_total
            size_ok = expected_size is None or size == expected_size
            hash_ok = remote.sha256 is None or digest == remote.sha256
            if size_ok and hash_ok:
                os.replace(part, final)
                self.progress.file_done()
                log.debug("%s: verified and published (%d bytes)", remote.path, size)
                return FetchRecord(
                    remote.path,
                    remote.url,
                    size,
                    digest,
                    source,
                    status,
                    bytes_transferred=total.bytes_transferred,
                    resumed_from_bytes=total.resumed_from_bytes,
                    attempts=total.attempts,
                    duration_s=time.monotonic() - t0,
                )
            part.unlink(missing_ok=True)
            detail = "" if size_ok else f"size {size} bytes, expected {expected_size}"
            if round_no == 1:
                log.warning(
                    "%s: checksum mismatch (%s); fetching it again from the start",
                    remote.path,
                    detail or f"got sha256 {digest}",
                )
                continue
            raise ChecksumMismatch(remote.path, remote.sha256 or f"{expected_size} bytes", digest, detail)
        raise AssertionError("unreachable")  # pragma: no cover

    def transfer_http(self, remote: RemoteFile, part: Path, fetcher: Fetcher) -> Transfer:
        """Fill ``part`` with the whole file, resuming and retrying; return what it took."""
        session = self.session_for(fetcher)
        tr = Transfer()
        tr.resumed_from_bytes = part.stat().st_size if part.exists() else 0
        if remote.size is not None and tr.resumed_from_bytes:
            self.progress.add_total(-min(tr.resumed_from_bytes, remote.size))  # already on disk
        no_progress = 0
        while True:
            if self._stop.is_set():
                raise FetchError(f"{remote.path}: stopped because another file failed authentication")
            offset = part.stat().st_size if part.exists() else 0
            known_total = remote.size if remote.size is not None else tr.server_total
            if known_total is not None and offset == known_total and offset > 0:
                return tr
            if known_total is not None and offset > known_total:
                part.unlink()
                offset = 0
            tr.attempts += 1
            self._local.received = 0
            try:
                self._attempt(remote, part, offset, fetcher, session, tr)
                return tr
            except _Retryable as exc:
                reason, retry_after = exc.reason, exc.retry_after_s
                received = self._local.received
            except requests.exceptions.SSLError:
                raise FetchError(tls_failure_message(remote.url)) from None
            except _TRANSIENT_ERRORS as exc:
                reason, retry_after = f"connection error ({type(exc).__name__})", None
                received = self._local.received
            no_progress = 0 if received > 0 else no_progress + 1
            if no_progress >= self.retry.attempts or tr.attempts >= self.retry.max_total_attempts:
                raise FetchError(
                    f"{remote.path}: giving up after {tr.attempts} attempts; last error: {reason} (from {remote.url})"
                )
            delay = self.retry.delay_s(no_progress + 1, retry_after)
            log.info("%s: %s; retrying in %.2f s (attempt %d)", remote.path, reason, delay, tr.attempts + 1)
            self.sleep(delay)

    def _attempt(
        self,
        remote: RemoteFile,
        part: Path,
        offset: int,
        fetcher: Fetcher,
        session: requests.Session,
        tr: Transfer,
    ) -> int:
        """One GET; append to ``part``. Returns bytes received. Raises :class:`_Retryable` on transient errors."""
        self._local.received = 0
        url, extra = fetcher.resolve_download(session, remote)
        headers = dict(extra)
        if offset:
            headers["Range"] = f"bytes={offset}-"
        timeout = (self.retry.connect_timeout_s, self.retry.read_timeout_s)
        with session.get(url, headers=headers, stream=True, timeout=timeout, allow_redirects=True) as resp:
            status = resp.status_code
            if status in (401, 403):
                raise AuthError(fetcher.describe_auth_failure(status, remote.path))
            if status == 416 and offset:
                m = _CONTENT_RANGE_UNSAT.search(resp.headers.get("Content-Range", ""))
                if m and int(m.group(1)) == offset:
                    tr.server_total = offset
                    return 0
                part.unlink(missing_ok=True)
                raise _Retryable("416 Range Not Satisfiable; restarting the file", 0)
            if status == 429 or status >= 500:
                raise _Retryable(f"HTTP {status}", parse_retry_after(resp.headers.get("Retry-After")))
            if status == 404:
                raise FetchError(f"{remote.path}: not found on the host (HTTP 404 for {url})")
            rejected = fetcher.reject_response(remote, resp.headers)
            if rejected:
                raise _Retryable(rejected)
            if status == 206:
                m = _CONTENT_RANGE.search(resp.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != offset:
                    part.unlink(missing_ok=True)
                    raise _Retryable("206 with an unexpected Content-Range; restarting the file", 0)
                if m.group(3) != "*":
                    tr.server_total = int(m.group(3))
                mode = "ab"
            elif status == 200:
                if offset:
                    log.info("%s: the server ignored Range; restarting from byte 0", remote.path)
                    self.progress.advance(-offset)
                mode = "wb"
                offset = 0
                length = resp.headers.get("Content-Length")
                if length is not None and length.isdigit():
                    tr.server_total = int(length)
            else:
                raise FetchError(f"{remote.path}: unexpected HTTP {status} from {url}")
            if remote.size is None and tr.server_total is not None and not tr.total_reported:
                self.progress.add_total(tr.server_total - offset)  # what is left to fetch in this run
                tr.total_reported = True
            received = 0
            with open(part, mode) as fh:
                for chunk in resp.raw.stream(CHUNK_BYTES, decode_content=False):
                    if self._stop.is_set():
                        raise FetchError(f"{remote.path}: stopped because another file failed authentication")
                    fh.write(chunk)
                    received += len(chunk)
                    tr.bytes_transferred += len(chunk)
                    self._local.received = received
                    self.progress.advance(len(chunk))
            expected = remote.size if remote.size is not None else tr.server_total
            if expected is not None and offset + received < expected:
                raise _Retryable(f"connection closed at byte {offset + received} of {expected}")
            return received


def request_with_retry(
    session: requests.Session,
    method: str,
    url: str,
    *,
    fetcher: Fetcher,
    retry: RetryPolicy,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    **kwargs: object,
) -> requests.Response:
    """A small metadata request (a listing, a checksum file, an API call), retried like downloads.

    Args:
        what: what is being fetched, for error messages (e.g. ``"SHA256SUMS.txt"``).

    Raises:
        AuthError: 401/403 (the message names the credential by origin).
        FetchError: 404, another 4xx, or retries exhausted.
    """
    kwargs.setdefault("timeout", (retry.connect_timeout_s, retry.read_timeout_s))
    attempt = 0
    while True:
        attempt += 1
        reason: str
        retry_after: float | None = None
        try:
            resp = session.request(method, url, **kwargs)  # type: ignore[arg-type]
        except requests.exceptions.SSLError:
            raise FetchError(f"{fetcher.manifest.id}: {what}: {tls_failure_message(url)}") from None
        except _TRANSIENT_ERRORS as exc:
            reason = f"connection error ({type(exc).__name__})"
        else:
            if resp.status_code in (401, 403):
                raise AuthError(fetcher.describe_auth_failure(resp.status_code, what))
            if resp.status_code == 429 or resp.status_code >= 500:
                reason = f"HTTP {resp.status_code}"
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                resp.close()
            elif resp.status_code == 404:
                raise FetchError(f"{fetcher.manifest.id}: {what} not found on the host (HTTP 404 for {url})")
            elif resp.status_code >= 400:
                raise FetchError(f"{fetcher.manifest.id}: {what}: HTTP {resp.status_code} from {url}")
            else:
                return resp
        if attempt >= retry.attempts:
            raise FetchError(
                f"{fetcher.manifest.id}: {what}: giving up after {attempt} attempts; last error: {reason}"
            )
        delay = retry.delay_s(attempt, retry_after)
        log.info("%s: %s; retrying in %.2f s", what, reason, delay)
        sleep(delay)
