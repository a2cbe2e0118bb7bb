"""Safe extraction of zip, tar and tar.gz archives.

Every entry is checked before anything is written: absolute paths, ``..`` components, and
symbolic or hard links whose target would resolve outside the destination are refused with
:class:`~pipelines.fetch.base.UnsafeArchiveError` naming the archive and the entry. Device
files and FIFOs are refused too. Zip files cannot carry a real symlink through ``zipfile``, so
a zip entry marked as a symlink is refused outright rather than silently turned into a file.
Extraction goes to a temporary sibling folder that is renamed into place when complete, so a
killed run never leaves a half-extracted tree under the final name.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import uuid
import zipfile
from pathlib import Path

from pipelines.fetch.base import UnsafeArchiveError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def archive_stem(path: Path) -> str:
    """``repo-main.tar.gz`` -> ``repo-main``."""
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _check_member_name(archive: Path, name: str) -> str:
    clean = name.replace("\\", "/")
    if not clean or clean.startswith("/") or (len(clean) > 1 and clean[1] == ":"):
        raise UnsafeArchiveError(f"{archive.name}: refusing entry {name!r}: absolute path")
    if any(part == ".." for part in clean.split("/")):
        raise UnsafeArchiveError(f"{archive.name}: refusing entry {name!r}: '..' would leave the destination")
    return posixpath.normpath(clean)


def _check_link_target(archive: Path, name: str, target: str, hard: bool) -> None:
    if target.startswith("/") or (len(target) > 1 and target[1] == ":"):
        raise UnsafeArchiveError(f"{archive.name}: refusing link {name!r} -> {target!r}: absolute target")
    # hard link targets are relative to the archive root; symlinks to the link's folder
    base = "" if hard else posixpath.dirname(name)
    resolved = posixpath.normpath(posixpath.join(base, target))
    if resolved == ".." or resolved.startswith("../"):
        raise UnsafeArchiveError(
            f"{archive.name}: refusing link {name!r} -> {target!r}: it points outside the destination"
        )


def check_archive(archive: Path) -> list[str]:
    """Check every entry of ``archive`` and return the entry names.

    Raises:
        UnsafeArchiveError: an entry escapes the destination or is a device/link that is not allowed.
    """
    names: list[str] = []
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _check_member_name(archive, info.filename)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise UnsafeArchiveError(
                        f"{archive.name}: refusing entry {info.filename!r}: symbolic link in a zip"
                    )
                names.append(info.filename)
        return names
    try:
        with tarfile.open(archive, "r:*") as tf:
            for member in tf.getmembers():
                name = _check_member_name(archive, member.name)
                if member.issym() or member.islnk():
                    _check_link_target(archive, name, member.linkname, hard=member.islnk())
                elif member.ischr() or member.isblk() or member.isfifo() or member.isdev():
                    raise UnsafeArchiveError(
                        f"{archive.name}: refusing entry {member.name!r}: device or FIFO"
                    )
                names.append(member.name)
    except tarfile.TarError as exc:
        raise UnsafeArchiveError(f"{archive.name}: not a readable zip or tar archive ({exc})") from None
    return names


def _merge_move(src: Path, dst: Path) -> None:
    """Move ``src`` onto ``dst``: files replace, folders merge."""
    if src.is_dir() and not src.is_symlink() and dst.is_dir() and not dst.is_symlink():
        for child in src.iterdir():
            _merge_move(child, dst / child.name)
        src.rmdir()
    else:
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)
        os.replace(src, dst)


def extract_archive(archive: Path, dest_dir: Path, strip_components: int = 0) -> list[str]:
    """Extract ``archive`` into ``dest_dir`` safely, merging with what is there; return the top-level names.

    The archive is checked entry by entry first (nothing is written if any entry is unsafe),
    then extracted into a temporary folder inside ``dest_dir`` and moved into place, so an
    interrupted extraction leaves no half-written file under a final name (a rerun extracts
    again). ``strip_components=1`` drops a single top-level folder, as GitHub archives have
    (``<repo>-<ref>/...``), like ``tar --strip-components=1``.

    Raises:
        UnsafeArchiveError: see :func:`check_archive`; or ``strip_components`` asked for with
            more than one top-level entry.
    """
    check_archive(archive)
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest_dir / f".extract-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        else:
            with tarfile.open(archive, "r:*") as tf:
                tf.extractall(tmp, filter="data")  # the stdlib's own guard, on top of check_archive
        src = tmp
        for _ in range(strip_components):
            entries = list(src.iterdir())
            if len(entries) != 1 or not entries[0].is_dir():
                raise UnsafeArchiveError(
                    f"{archive.name}: expected one top-level folder to strip, found {len(entries)} entries"
                )
            src = entries[0]
        names = sorted(p.name for p in src.iterdir())
        for name in names:
            _merge_move(src / name, dest_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return names
