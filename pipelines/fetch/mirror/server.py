"""The shared loopback HTTP server: static files with Range, Basic auth, faults and statistics.

Every host mirror subclasses :class:`MirrorServer` (a ``ThreadingHTTPServer``) and
:class:`MirrorHandler`; :meth:`MirrorHandler.send_file` is where Range requests, bandwidth
caps and injected faults happen, so every host gets them.
"""

from __future__ import annotations

import base64
import fnmatch
import html
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote

from pipelines.fetch.download import sha256_file

log = logging.getLogger("climb.fetch.mirror")

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")
CHUNK_BYTES = 64 * 1024


@dataclass
class Faults:
    """Faults to inject into file responses (not into listings or API calls unless stated).

    Attributes:
        paths: fnmatch pattern of URL paths the faults apply to (``None``: every file).
        drop_at_byte: close the connection once the response reaches this file offset.
        drop_times: how many responses to drop that way (then serve normally).
        unavailable: the next K file requests answer 503 with ``Retry-After: retry_after_s``.
        too_many: the next K requests of any kind answer 429 (a storm), ``Retry-After`` if
            ``too_many_retry_after_s`` is set.
        retry_after_s: ``Retry-After`` sent with the 503s, seconds.
        too_many_retry_after_s: ``Retry-After`` sent with the 429s, seconds (``None``: no header).
        corrupt: serve matching files with one byte changed (same length), ``corrupt_times``
            times (``None``: always).
        bandwidth_bytes_per_s: per-connection cap on body bytes per second (PhysioNet-like).
        ignore_range: answer Range requests with the whole file (200).
    """

    paths: str | None = None
    drop_at_byte: int | None = None
    drop_times: int = 0
    unavailable: int = 0
    retry_after_s: int = 1
    too_many: int = 0
    too_many_retry_after_s: int | None = None
    corrupt: str | None = None
    corrupt_times: int | None = None
    bandwidth_bytes_per_s: int | None = None
    ignore_range: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def applies(self, url_path: str) -> bool:
        return self.paths is None or fnmatch.fnmatchcase(url_path, self.paths)

    def take(self, name: str) -> bool:
        """Consume one unit of a counted fault; True if it fires now."""
        with self._lock:
            left = getattr(self, name)
            if left is None:
                return True
            if left > 0:
                setattr(self, name, left - 1)
                return True
            return False


@dataclass
class ServerStats:
    """What the server saw and sent; tests assert on it."""

    requests: list[tuple[str, str, int, str | None]] = field(
        default_factory=list
    )  # method, path, status, Range
    bytes_sent: dict[str, int] = field(default_factory=dict)  # URL path -> body bytes sent
    auth_users: list[str] = field(default_factory=list)  # usernames seen in Basic auth
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, method: str, path: str, status: int, range_header: str | None) -> None:
        with self._lock:
            self.requests.append((method, path, status, range_header))

    def add_bytes(self, path: str, n: int) -> None:
        with self._lock:
            self.bytes_sent[path] = self.bytes_sent.get(path, 0) + n

    def count(self, path: str, status: int | None = None, method: str | None = None) -> int:
        """Requests for ``path`` (optionally with ``status`` / ``method``)."""
        with self._lock:
            return sum(
                1
                for m, p, s, _ in self.requests
                if p == path and (status is None or s == status) and (method is None or m == method)
            )


class MirrorServer(ThreadingHTTPServer):
    """A threaded HTTP server on loopback serving files below ``root``.

    Args:
        root: folder whose files are served.
        faults: faults to inject (mutable while running).
        host: address to bind (loopback by default).
        port: 0 picks a free port.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many parallel connections (benchmarks use 16+)
    handler_class: ClassVar[type[BaseHTTPRequestHandler]]

    def __init__(
        self, root: str | Path, faults: Faults | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.root = Path(root).resolve()
        self.faults = faults or Faults()
        self.stats = ServerStats()
        self._thread: threading.Thread | None = None
        super().__init__((host, port), self.handler_class)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{name}:{port}"

    def start(self) -> MirrorServer:
        """Serve in a daemon thread; returns ``self``."""
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> MirrorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MirrorHandler(BaseHTTPRequestHandler):
    """Base request handler: file serving with Range and faults, Basic auth, HTML listings."""

    protocol_version = "HTTP/1.1"
    server: MirrorServer

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    # -- small responses -------------------------------------------------------------------------
    def send_body(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.server.stats.record(self.command, self.path.split("?")[0], status, self.headers.get("Range"))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_redirect(self, location: str, status: int = 302) -> None:
        self.send_body(status, b"", headers={"Location": location})

    def basic_auth_user(self, users: dict[str, str], realm: str) -> str | None:
        """The authenticated username, or ``None`` after sending 401."""
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", ""
            self.server.stats.auth_users.append(user)
            if user in users and users[user] == password:
                return user
        self.send_body(401, b"Unauthorized\n", headers={"WWW-Authenticate": f'Basic realm="{realm}"'})
        return None

    def maybe_429(self, url_path: str | None = None) -> bool:
        """Answer 429 if a storm is on (and ``url_path`` matches ``Faults.paths``); True if it did."""
        faults = self.server.faults
        if url_path is not None and not faults.applies(url_path):
            return False
        if faults.too_many and faults.take("too_many"):
            headers = {}
            if faults.too_many_retry_after_s is not None:
                headers["Retry-After"] = str(faults.too_many_retry_after_s)
            self.send_body(429, b"Too Many Requests\n", headers=headers)
            return True
        return False

    def send_listing(self, directory: Path, url_path: str) -> None:
        """An Apache-style HTML index of ``directory``."""
        rows = []
        for child in sorted(directory.iterdir()):
            name = child.name + ("/" if child.is_dir() else "")
            size = "-" if child.is_dir() else str(child.stat().st_size)
            rows.append(f'<a href="{quote(name)}">{html.escape(name)}</a>  {size}')
        body = (
            f"<html><head><title>Index of {html.escape(url_path)}</title></head><body>"
            f'<h1>Index of {html.escape(url_path)}</h1><pre><a href="../">../</a>\n'
            + "\n".join(rows)
            + "</pre></body></html>\n"
        ).encode()
        self.send_body(200, body, "text/html; charset=utf-8")

    # -- files -------------------------------------------------------------------------------------
    def send_file(
        self,
        fs_path: Path,
        url_path: str,
        content_type: str = "application/octet-stream",
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        """Serve a file: Range (206/416), faults, per-connection bandwidth cap."""
        faults = self.server.faults
        stats = self.server.stats
        rng = self.headers.get("Range")
        hit = faults.applies(url_path)
        if self.maybe_429(url_path):
            return
        if hit and faults.unavailable and faults.take("unavailable"):
            self.send_body(503, b"Service Unavailable\n", headers={"Retry-After": str(faults.retry_after_s)})
            return
        data_size = fs_path.stat().st_size
        start, end = 0, data_size - 1
        status = 200
        if rng and not faults.ignore_range:
            m = _RANGE.match(rng.strip())
            if m:
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else data_size - 1
                if start >= data_size:
                    self.send_body(416, b"", headers={"Content-Range": f"bytes */{data_size}"})
                    return
                end = min(end, data_size - 1)
                status = 206
        corrupt_now = (
            hit
            and faults.corrupt is not None
            and fnmatch.fnmatchcase(url_path, faults.corrupt)
            and (faults.take("corrupt_times"))
        )
        drop_at = faults.drop_at_byte if hit and faults.drop_at_byte is not None else None
        drop_now = (
            drop_at is not None
            and start <= drop_at <= end
            and faults.drop_times > 0
            and faults.take("drop_times")
        )
        stats.record(self.command, url_path, status, rng)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{data_size}")
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        cap = faults.bandwidth_bytes_per_s
        flip_at = data_size // 2
        t0 = time.monotonic()
        sent = 0
        with open(fs_path, "rb") as fh:
            fh.seek(start)
            pos = start
            while pos <= end:
                n = min(CHUNK_BYTES if not cap else max(min(CHUNK_BYTES, cap // 10), 1), end - pos + 1)
                if drop_now and drop_at is not None:
                    n = min(n, drop_at - pos)
                    if n <= 0:
                        self._drop()
                        return
                chunk = fh.read(n)
                if corrupt_now and pos <= flip_at < pos + len(chunk):
                    i = flip_at - pos
                    chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1 :]
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    stats.add_bytes(url_path, sent)
                    return
                sent += len(chunk)
                pos += len(chunk)
                if cap:
                    ahead = sent / cap - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
        stats.add_bytes(url_path, sent)

    def _drop(self) -> None:
        """Close the connection abruptly, mid-body."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


#: Hex SHA-256 of a file: the fetchers' own helper, so mirror and client hash alike.
sha256_of = sha256_file


def write_sha256sums(project_dir: str | Path, name: str = "SHA256SUMS.txt") -> Path:
    """Write PhysioNet's ``SHA256SUMS.txt`` (``<hex> <path>`` per file, sorted) for a project folder."""
    root = Path(project_dir)
    lines = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != name:
            lines.append(f"{sha256_of(p)} {p.relative_to(root).as_posix()}\n")
    out = root / name
    out.write_text("".join(lines), encoding="utf-8")
    return out


def resolve_below(root: Path, rel: str) -> Path | None:
    """``root / rel`` if it stays inside ``root`` (no traversal), else ``None``."""
    target = (root / rel).resolve()
    if target == root or str(target).startswith(str(root) + os.sep):
        return target
    return None


class StaticHandler(MirrorHandler):
    """Files and directory listings below the server root, at ``/`` (Zenodo/figshare-like static hosting)."""

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        from urllib.parse import unquote, urlsplit

        url_path = unquote(urlsplit(self.path).path)
        users = getattr(self.server, "users", None)
        if users is not None and self.basic_auth_user(users, "static") is None:
            return
        target = (
            resolve_below(self.server.root, url_path.lstrip("/")) if url_path != "/" else self.server.root
        )
        if target is None or not target.exists():
            self.send_body(404, b"Not Found\n")
            return
        if target.is_dir():
            if not url_path.endswith("/"):
                self.send_redirect(url_path + "/", 301)
                return
            self.send_listing(target, url_path)
            return
        self.send_file(target, url_path)


class StaticMirror(MirrorServer):
    """Serve ``root`` at ``/`` with Range, listings and faults; ``users`` turns on Basic auth."""

    handler_class = StaticHandler

    def __init__(
        self,
        root: str | Path,
        faults: Faults | None = None,
        users: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.users = users
        super().__init__(root, faults, host, port)
