"""A Hugging Face Hub look-alike for dataset repositories.

``GET /api/datasets/<owner>/<name>/tree/<rev>?recursive=...`` lists files (``type``, ``oid``, ``size``,
``path``, and ``lfs: {oid: sha256, size, pointerSize}`` for files at or above ``lfs_above_bytes``),
paginated with a ``Link: <...>; rel="next"`` header as the Hub does. ``GET
/datasets/<owner>/<name>/resolve/<rev>/<path>`` serves small files directly and redirects LFS
files to ``/cdn/<sha256>``, which serves Range. ``token`` makes the repositories private (401
without it, as the Hub answers for private repositories); ``gated`` answers 403.
Layout: ``<root>/<owner>/<name>/<files>``; the revision is ignored.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from pipelines.fetch.mirror.server import Faults, MirrorHandler, MirrorServer, resolve_below, sha256_of


class HubHandler(MirrorHandler):
    server: HubMirror

    def _json(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        self.send_body(status, json.dumps(payload).encode(), "application/json", headers)

    def _denied(self) -> bool:
        srv = self.server
        if srv.token is not None and self.headers.get("Authorization") != f"Bearer {srv.token}":
            self._json(401, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return True
        if srv.gated:
            self._json(403, {"error": "Access to this dataset is restricted"}, {"X-Error-Code": "GatedRepo"})
            return True
        return False

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        if path.startswith("/cdn/"):
            sha = path[len("/cdn/") :]
            target = self.server.lfs_objects.get(sha)
            if target is None:
                self.send_body(404, b"")
                return
            self.send_file(target, path)
            return
        if self._denied():
            return
        segs = path.strip("/").split("/")
        if len(segs) >= 6 and segs[:2] == ["api", "datasets"] and segs[4] == "tree":
            repo = resolve_below(self.server.root, f"{segs[2]}/{segs[3]}")
            if repo is None or not repo.is_dir():
                self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                return
            entries = self.server.tree(repo)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            start = int(query.get("cursor", 0))
            page = entries[start : start + self.server.page_size]
            headers = {}
            if start + self.server.page_size < len(entries):
                nxt = f"{self.server.url}{parts.path}?recursive=True&expand=False&cursor={start + self.server.page_size}"
                headers["Link"] = f'<{nxt}>; rel="next"'
            self._json(200, page, headers)
            return
        if len(segs) >= 6 and segs[0] == "datasets" and segs[3] == "resolve":
            rel = "/".join(segs[5:])
            target = resolve_below(self.server.root, f"{segs[1]}/{segs[2]}/{rel}")
            if target is None or not target.is_file():
                self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
                return
            if target.stat().st_size >= self.server.lfs_above_bytes:
                sha = sha256_of(target)
                self.server.lfs_objects[sha] = target
                self.send_redirect(f"/cdn/{sha}")
                return
            self.send_file(target, path)
            return
        self._json(404, {"error": "not found"})


class HubMirror(MirrorServer):
    """Serve dataset repositories from ``root``."""

    handler_class = HubHandler

    def __init__(
        self,
        root: str | Path,
        faults: Faults | None = None,
        token: str | None = None,
        gated: bool = False,
        lfs_above_bytes: int = 10_000,
        page_size: int = 1000,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.token = token
        self.gated = gated
        self.lfs_above_bytes = lfs_above_bytes
        self.page_size = page_size
        self.lfs_objects: dict[str, Path] = {}
        super().__init__(root, faults, host, port)

    def tree(self, repo: Path) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for p in sorted(repo.rglob("*")):
            rel = p.relative_to(repo).as_posix()
            if p.is_dir():
                out.append(
                    {
                        "type": "directory",
                        "oid": hashlib.sha1(rel.encode()).hexdigest(),
                        "size": 0,
                        "path": rel,
                    }
                )
                continue
            data = p.read_bytes()
            blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            entry: dict[str, object] = {"type": "file", "oid": blob, "size": len(data), "path": rel}
            if len(data) >= self.lfs_above_bytes:
                entry["lfs"] = {
                    "oid": hashlib.sha256(data).hexdigest(),
                    "size": len(data),
                    "pointerSize": 134,
                }
            out.append(entry)
        return out


__all__ = ["HubMirror", "quote"]
