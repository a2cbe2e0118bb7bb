"""A Kaggle API look-alike: the ``/v1/<service>/<method>`` JSON-over-POST endpoints the official
client calls, with Basic (username:key) or Bearer auth, pagination, 403 for unaccepted
competition rules, and downloads redirected to signed ``/blobs/...`` URLs that serve Range.

Layout under ``root``: ``datasets/<owner>/<slug>/<files>`` and ``competitions/<name>/<files>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from pipelines.fetch.mirror.server import Faults, MirrorHandler, MirrorServer, resolve_below


class KaggleHandler(MirrorHandler):
    server: KaggleMirror

    def _json(self, status: int, payload: object) -> None:
        self.send_body(status, json.dumps(payload).encode(), "application/json")

    def _user(self) -> str | None:
        header = self.headers.get("Authorization", "")
        srv = self.server
        if header.startswith("Basic "):
            user, _, key = base64.b64decode(header[6:]).decode(errors="replace").partition(":")
            srv.stats.auth_users.append(user)
            if srv.users.get(user) == key:
                return user
        elif header.startswith("Bearer "):
            token_user = srv.tokens.get(header[7:])
            if token_user is not None:
                srv.stats.auth_users.append(token_user)
                return token_user
        return None

    def _list(self, folder: Path | None, body: dict, key: str) -> None:
        if folder is None or not folder.is_dir():
            self._json(404, {"code": 404, "message": "Not found"})
            return
        entries = sorted(p for p in folder.rglob("*") if p.is_file())
        start = int(body.get("pageToken") or 0)
        size = int(body.get("pageSize") or 20)
        page = entries[start : start + size]
        files = [
            {
                "name": p.relative_to(folder).as_posix(),
                "totalBytes": p.stat().st_size,
                "creationDate": datetime.fromtimestamp(p.stat().st_mtime, UTC).isoformat(),
                "ref": p.relative_to(folder).as_posix(),
            }
            for p in page
        ]
        nxt = str(start + size) if start + size < len(entries) else ""
        self._json(200, {key: files, "nextPageToken": nxt})

    def _redirect(self, rel: str) -> None:
        self.send_redirect(f"/blobs/{self.server.sign(rel)}/{quote(rel)}")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.maybe_429(path):
            return
        user = self._user()
        if user is None:
            self._json(401, {"code": 401, "message": "Unauthenticated"})
            return
        srv = self.server
        if path.startswith("/v1/datasets.DatasetApiService/"):
            owner, slug = body.get("ownerSlug", ""), body.get("datasetSlug", "")
            folder = resolve_below(srv.root, f"datasets/{owner}/{slug}")
            if path.endswith("/ListDatasetFiles"):
                self._list(folder, body, "datasetFiles")
                return
            name = body.get("fileName", "")
            if (
                path.endswith("/DownloadDataset")
                and name
                and folder is not None
                and (folder / name).is_file()
            ):
                self._redirect(f"datasets/{owner}/{slug}/{name}")
                return
            self._json(404, {"code": 404, "message": "Not found"})
            return
        if path.startswith("/v1/competitions.CompetitionApiService/"):
            name = body.get("competitionName", "")
            folder = resolve_below(srv.root, f"competitions/{name}")
            if user not in srv.accepted_rules.get(name, set()):
                self._json(
                    403,
                    {
                        "code": 403,
                        "message": "You must accept this competition's rules before you'll be able to download files.",
                    },
                )
                return
            if path.endswith("/ListDataFiles"):
                self._list(folder, body, "files")
                return
            if (
                path.endswith("/DownloadDataFile")
                and folder is not None
                and (folder / body.get("fileName", "")).is_file()
            ):
                self._redirect(f"competitions/{name}/{body['fileName']}")
                return
            self._json(404, {"code": 404, "message": "Not found"})
            return
        self._json(404, {"code": 404, "message": "Unknown method"})

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        if path.startswith("/blobs/"):
            sig, _, rel = path[len("/blobs/") :].partition("/")
            if self.headers.get("Authorization"):
                self.server.storage_saw_auth = True
            target = resolve_below(self.server.root, rel)
            if not hmac.compare_digest(sig, self.server.sign(rel)) or target is None or not target.is_file():
                self.send_body(403, b"<Error><Code>AccessDenied</Code></Error>", "application/xml")
                return
            self.send_file(target, "/blobs/" + rel)
            return
        self.send_body(404, b"Not Found\n")


class KaggleMirror(MirrorServer):
    """Kaggle's API on loopback.

    Args:
        users: username -> API key (Basic auth, as ``kaggle.json`` holds).
        tokens: bearer token -> username (``KAGGLE_API_TOKEN`` style).
        accepted_rules: competition -> usernames who accepted its rules.
    """

    handler_class = KaggleHandler

    def __init__(
        self,
        root: str | Path,
        users: dict[str, str],
        faults: Faults | None = None,
        tokens: dict[str, str] | None = None,
        accepted_rules: dict[str, set[str]] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.users = users
        self.tokens = tokens or {}
        self.accepted_rules = accepted_rules or {}
        self.storage_saw_auth = False
        self._signing_key = secrets.token_bytes(16)
        super().__init__(root, faults, host, port)

    def sign(self, rel: str) -> str:
        return hmac.new(self._signing_key, rel.encode(), hashlib.sha256).hexdigest()[:24]
