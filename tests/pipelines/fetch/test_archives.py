"""Safe archive extraction: escaping entries are refused and nothing is written."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from pipelines.fetch.archives import check_archive, extract_archive
from pipelines.fetch.base import UnsafeArchiveError


def _zip(path: Path, entries: list[tuple[str, bytes, int | None]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


def _tar(path: Path, members: list[tarfile.TarInfo], payloads: dict[str, bytes] | None = None) -> Path:
    payloads = payloads or {}
    with tarfile.open(path, "w:gz") as tf:
        for m in members:
            data = payloads.get(m.name)
            if data is not None:
                m.size = len(data)
            tf.addfile(m, io.BytesIO(data) if data is not None else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def test_a_safe_zip_and_tar_extract(tmp_path):
    z = _zip(tmp_path / "ok.zip", [("a/b.txt", b"hello", None), ("c.txt", b"x", 0o100644)])
    out = tmp_path / "ok"
    assert extract_archive(z, out) == ["a", "c.txt"]
    assert (out / "a" / "b.txt").read_bytes() == b"hello"
    t = _tar(
        tmp_path / "ok.tar.gz",
        [_member("r/x.bin"), _member("r/link", tarfile.SYMTYPE, "x.bin")],
        {"r/x.bin": b"123"},
    )
    out = tmp_path / "okt"
    extract_archive(t, out, strip_components=1)
    assert (out / "x.bin").read_bytes() == b"123"
    assert (out / "link").is_symlink() and (out / "link").read_bytes() == b"123"
    assert sorted(p.name for p in out.iterdir()) == ["link", "x.bin"]  # no temporary folder left


def test_zip_with_dotdot_entry_is_refused(tmp_path):
    z = _zip(tmp_path / "evil.zip", [("fine.txt", b"ok", None), ("../../escaped.txt", b"pwned", None)])
    with pytest.raises(UnsafeArchiveError, match=r"evil.zip: refusing entry '../../escaped.txt'"):
        extract_archive(z, tmp_path / "out" / "evil")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_zip_with_a_symlink_is_refused(tmp_path):
    z = _zip(tmp_path / "link.zip", [("data/passwd", b"/etc/passwd", stat.S_IFLNK | 0o777)])
    with pytest.raises(UnsafeArchiveError, match="symbolic link in a zip"):
        extract_archive(z, tmp_path / "link")
    assert not (tmp_path / "link").exists()  # checked before anything was created


def test_zip_with_absolute_entry_is_refused(tmp_path):
    z = _zip(tmp_path / "abs.zip", [("/tmp/abs.txt", b"x", None)])
    with pytest.raises(UnsafeArchiveError, match="absolute path"):
        check_archive(z)


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (_member("../up.txt"), "'..' would leave"),
        (_member("/etc/cron.d/x"), "absolute path"),
        (_member("d/out", tarfile.SYMTYPE, "../../outside"), "points outside"),
        (_member("d/abs", tarfile.SYMTYPE, "/etc/passwd"), "absolute target"),
        (_member("d/hard", tarfile.LNKTYPE, "../x"), "points outside"),
        (_member("d/dev", tarfile.CHRTYPE), "device or FIFO"),
    ],
)
def test_tar_entries_escaping_the_destination_are_refused(tmp_path, member, reason):
    t = _tar(
        tmp_path / "evil.tar.gz",
        [_member("d/ok.txt"), member],
        {"d/ok.txt": b"ok", "../up.txt": b"x", "/etc/cron.d/x": b"x"},
    )
    with pytest.raises(UnsafeArchiveError, match=reason):
        extract_archive(t, tmp_path / "evil")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "evil.tar.gz"
    ]  # nothing written, no temp folder left


def test_extraction_merges_into_an_existing_folder(tmp_path):
    z = _zip(tmp_path / "a.zip", [("d/x.txt", b"new", None), ("d/y.txt", b"y", None)])
    (tmp_path / "out" / "d").mkdir(parents=True)
    (tmp_path / "out" / "d" / "x.txt").write_bytes(b"old")
    (tmp_path / "out" / "d" / "keep.txt").write_bytes(b"keep")
    extract_archive(z, tmp_path / "out")
    d = tmp_path / "out" / "d"
    assert {p.name: p.read_bytes() for p in d.iterdir()} == {
        "x.txt": b"new",
        "y.txt": b"y",
        "keep.txt": b"keep",
    }
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["d"]


def test_strip_components_needs_one_top_folder(tmp_path):
    z = _zip(tmp_path / "two.zip", [("a/x", b"1", None), ("b/y", b"2", None)])
    with pytest.raises(UnsafeArchiveError, match="one top-level folder"):
        extract_archive(z, tmp_path / "out", strip_components=1)
    assert list((tmp_path / "out").iterdir()) == []
