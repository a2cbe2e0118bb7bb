"""A PhysioNet look-alike: ``/files/<project>/<version>/...`` with Basic auth, Range, listings and
``SHA256SUMS.txt``.

``users`` turns on Basic auth for every path (credentialed projects); ``dua_signed`` limits
which of those users may read (others get 403, as PhysioNet does before the data use
agreement is signed).
"""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pipelines.fetch.mirror.server import Faults, MirrorHandler, MirrorServer, resolve_below


class PhysioNetHandler(MirrorHandler):
    server: PhysioNetMirror

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url_path = unquote(urlsplit(self.path).path)
        if not url_path.startswith("/files/"):
            self.send_body(404, b"Not Found\n")
            return
        srv = self.server
        if srv.users is not None:
            user = self.basic_auth_user(srv.users, "PhysioNet")
            if user is None:
                return
            if srv.dua_signed is not None and user not in srv.dua_signed:
                self.send_body(HTTPStatus.FORBIDDEN, b"You must sign the data use agreement.\n")
                return
        target = resolve_below(srv.root, url_path[len("/files/") :])
        if target is None or not target.exists():
            if self.maybe_429(url_path):
                return
            self.send_body(404, b"Not Found\n")
            return
        if target.is_dir():
            if not url_path.endswith("/"):
                self.send_redirect(url_path + "/", 301)
                return
            if self.maybe_429(url_path):
                return
            self.send_listing(target, url_path)
            return
        self.send_file(target, url_path)


class PhysioNetMirror(MirrorServer):
    """Serve ``root`` as ``/files/...``.

    Args:
        root: folder holding ``<project>/<version>/...``.
        users: username -> password for Basic auth (``None``: open access).
        dua_signed: usernames that signed the DUA (``None``: all of ``users``).
    """

    handler_class = PhysioNetHandler

    def __init__(
        self,
        root: str | Path,
        faults: Faults | None = None,
        users: dict[str, str] | None = None,
        dua_signed: set[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.users = users
        self.dua_signed = dua_signed
        super().__init__(root, faults, host, port)
