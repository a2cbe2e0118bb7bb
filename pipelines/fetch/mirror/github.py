"""A GitHub look-alike for repository archives.

``GET /<owner>/<repo>/archive/<ref>.tar.gz`` answers 302 to ``/codeload/<owner>/<repo>/tar.gz/<ref>``
(as github.com redirects to codeload.github.com), which serves ``<root>/<owner>/<repo>/<ref>.tar.gz``.
:func:`write_repo_archive` builds such an archive (entries under ``<repo>-<ref>/``, as GitHub does).
"""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pipelines.fetch.mirror.server import Faults, MirrorHandler, MirrorServer, resolve_below

_ARCHIVE = re.compile(r"^/([^/]+)/([^/]+)/archive/(.+)\.tar\.gz$")
_CODELOAD = re.compile(r"^/codeload/([^/]+)/([^/]+)/tar\.gz/(.+)$")


def write_repo_archive(root: str | Path, owner: str, repo: str, ref: str, files: dict[str, bytes]) -> Path:
    """Write ``<root>/<owner>/<repo>/<ref>.tar.gz`` holding ``files`` under ``<repo>-<ref>/``."""
    out = Path(root) / owner / repo / f"{ref}.tar.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz") as tf:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(f"{repo}-{ref}/{name}")
            info.size = len(data)
            info.mtime = 0
            tf.addfile(info, io.BytesIO(data))
    return out


class GitHubHandler(MirrorHandler):
    server: GitHubMirror

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        if (
            self.server.token is not None
            and self.headers.get("Authorization") != f"Bearer {self.server.token}"
        ):
            self.send_body(404, b"Not Found\n")  # GitHub hides private repositories
            return
        m = _ARCHIVE.match(path)
        if m:
            owner, repo, ref = m.groups()
            self.send_redirect(f"/codeload/{owner}/{repo}/tar.gz/{ref}")
            return
        m = _CODELOAD.match(path)
        if m:
            owner, repo, ref = m.groups()
            target = resolve_below(self.server.root, f"{owner}/{repo}/{ref}.tar.gz")
            if target is not None and target.is_file():
                self.send_file(target, path, "application/x-gzip")
                return
        self.send_body(404, b"Not Found\n")


class GitHubMirror(MirrorServer):
    """Serve repository archives from ``root``; ``token`` makes the repositories private."""

    handler_class = GitHubHandler

    def __init__(
        self,
        root: str | Path,
        faults: Faults | None = None,
        token: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.token = token
        super().__init__(root, faults, host, port)
