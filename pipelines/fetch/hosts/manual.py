"""Application-only sources (TUH EEG, Stanford AIMI, ABCD, PPMI, Cholec80...): the user downloads
the files by hand into ``--manual-dir``; the fetcher verifies them and publishes them into the
destination like any other fetch (hard links when on the same file system, copies otherwise).

Files are looked for in ``<manual-dir>/<id>/`` (or in ``<manual-dir>`` itself when it has no
such sub-folder). The expected files are the catalog's ``<id>.checksums.tsv``. When any is missing, the error
prints exactly what to download, from where, under which agreement and where to put it.
With ``--register-checksums`` and no catalog list, whatever is in ``--manual-dir`` is taken and
pinned.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from manifests.schema import SOURCES_DIR
from pipelines.fetch.base import Fetcher, FetchError, ManualDownloadRequired, RemoteFile, select_files
from pipelines.fetch.checksums import checksums_tsv_path, read_checksums_tsv
from pipelines.fetch.download import HttpDownloader, Transfer

SHOW_MISSING = 20


class ManualFetcher(Fetcher):
    """Verify and publish files the user placed in ``--manual-dir``."""

    kinds = ("manual",)
    credential_scope = None
    default_connections = 4

    @property
    def manual_dir(self) -> Path | None:
        """``<--manual-dir>/<source id>/`` (the catalog's instructions say so); ``<--manual-dir>``
        itself when it has no such sub-folder (a folder made for this one source)."""
        if not self.base_url:
            return None
        base = Path(self.base_url).expanduser().resolve()
        own = base / self.manifest.id
        return own if own.is_dir() or not base.is_dir() or not any(base.iterdir()) else base

    def instructions(self, missing: list[str], total: int) -> str:
        """The message shown when files are missing: what, from where, under which agreement, where to."""
        m, host = self.manifest, self.manifest.host
        where = (
            str(self.manual_dir) if self.manual_dir else "a folder of your choice, passed as --manual-dir DIR"
        )
        lines = [
            f"{m.id} ({m.title}) is not downloadable automatically: download it by hand.",
            f"  From:        {host.url or 'the data provider (see the instructions below)'}",
            f"  Agreement:   {host.agreement or m.licence} (apply for access and accept it first)",
            f"  Put files in: {where}  (keep the paths listed below, relative to that folder)",
        ]
        if m.manual_instructions:
            lines.append(
                "  Instructions: " + m.manual_instructions.strip().replace("\n", "\n                ")
            )
        if total:
            lines.append(f"  Missing {len(missing)} of {total} files, e.g.:")
            lines += [f"    {p}" for p in missing[:SHOW_MISSING]]
            if len(missing) > SHOW_MISSING:
                lines.append(f"    ... and {len(missing) - SHOW_MISSING} more")
        lines.append(f"Then run: climb fetch {m.id} --manual-dir {self.manual_dir or 'DIR'}")
        return "\n".join(lines)

    def list_files(self, selection: str | None) -> list[RemoteFile]:
        pinned = read_checksums_tsv(checksums_tsv_path(self.manifest.id, self.checksums_dir or SOURCES_DIR))
        root = self.manual_dir
        if pinned:
            expected = select_files(
                [RemoteFile(p, c.size, c.sha256, p) for p, c in sorted(pinned.items())], selection
            )
        elif root is not None and root.is_dir():
            found = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
            expected = select_files([RemoteFile(p, None, None, p) for p in found], selection)
        else:
            expected = []
        if root is None or not root.is_dir():
            raise ManualDownloadRequired(self.instructions([f.path for f in expected], len(expected)))
        missing = [f.path for f in expected if not (root / f.path).is_file()]
        if missing or not expected:
            raise ManualDownloadRequired(self.instructions(missing, len(expected)))
        # digests are attached from the catalog by fetch_source (checksum_source "catalog")
        return [RemoteFile(f.path, None, None, str(root / f.path)) for f in expected]

    def transfer(self, remote: RemoteFile, part: Path, downloader: HttpDownloader) -> Transfer:
        """Link (or copy) the placed file to ``part``; the downloader then verifies and publishes it."""
        src = Path(remote.url)
        if not src.is_file():
            raise FetchError(f"{remote.path}: missing from --manual-dir ({src})")
        part.unlink(missing_ok=True)
        try:
            os.link(src, part)
        except OSError:
            shutil.copyfile(src, part)
        size = part.stat().st_size
        downloader.progress.advance(size)
        return Transfer(bytes_transferred=0, attempts=1, server_total=size, status="manual")
