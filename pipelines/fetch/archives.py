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


def extract_archive(archive: Path, dest_dir: Path) -> Path:
    """Extract ``archive`` into ``dest_dir`` safely; return ``dest_dir``.

    ``dest_dir`` must not exist yet: the archive is extracted into a temporary sibling and
    renamed. If ``dest_dir`` already exists, it is assumed complete and kept.

    Raises:
        UnsafeArchiveError: see :func:`check_archive`; nothing is written in that case.
    """
    if dest_dir.exists():
        return dest_dir
    check_archive(archive)
    tmp = dest_dir.with_name(f".{dest_dir.name}.extract-{uuid.uuid4().hex}")
    tmp.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        else:
            with tarfile.open(archive, "r:*") as tf:
                tf.extractall(tmp, filter="data")  # the stdlib's own guard, on top of check_archive
        os.replace(tmp, dest_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest_dir
