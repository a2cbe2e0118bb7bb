"""The tables an index reads (labels, splits, patients) are part of the version: edit one, get a new build."""

from __future__ import annotations

from pathlib import Path

from pipelines.demo.cxr_release import write_coronahack_release
from pipelines.stages.build import BuildConfig, build_source, plan_build
from tests.conftest import TEST_SECRET
from transforms.pseudonyms import DeidKey

KEY = DeidKey(TEST_SECRET.encode())


def test_editing_a_2d_label_table_changes_the_version(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_coronahack_release(raw, 1, size=(64, 80))
    first = plan_build("coronahack", str(raw), str(tmp_path / "out"), BuildConfig(), key=KEY)
    table = raw / "Chest_xray_Corona_Metadata.csv"
    assert str(table) in first.index.tables
    assert (
        plan_build("coronahack", str(raw), str(tmp_path / "out"), BuildConfig(), key=KEY).version
        == first.version
    )
    text = table.read_text()
    table.write_text(text.replace("Pnemonia", "Normal", 1) if "Pnemonia" in text else text + "\n")
    second = plan_build("coronahack", str(raw), str(tmp_path / "out"), BuildConfig(), key=KEY)
    assert second.version != first.version
    built = build_source("coronahack", str(raw), str(tmp_path / "out"), BuildConfig(), key=KEY)
    assert built.status == "built" and built.version == second.version


def test_scan_walk_equals_pathlib_glob(tmp_path: Path) -> None:
    """The scandir walk behind ``**/<name>`` patterns finds exactly what pathlib's glob + filters find."""
    import os

    from pipelines.stages.index import _scan

    root = tmp_path / "raw"
    for rel in [
        "a.hea", "A.HEA", "x/b.hea", "x/y/z/c.hea", ".hidden/d.hea", "x/.e.hea", "x/f.hea.part",
        "x/g.hea.tmp", "x/h.mat", "deep/" + "/".join("abcdefgh") + "/i.hea", "sp ace/j k.hea",
    ]:  # fmt: skip
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    (root / "dir.hea").mkdir()  # a folder whose name matches is not a file
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "l.hea").write_text("x")
    os.symlink(outside, root / "linked")  # a symlinked folder is not entered (pathlib's ** on 3.11)
    os.symlink(root / "a.hea", root / "alias.hea")  # a link to a file is a file
    os.symlink(root / "missing.hea", root / "broken.hea")  # a broken link is not
    for pattern in ["**/*.hea", "**/?.hea", "**/[ab].hea", "**/*.HEA", "**/*"]:
        want = sorted(
            (
                p
                for p in root.glob(pattern)
                if not p.name.startswith(".") and not p.name.endswith((".part", ".tmp")) and p.is_file()
            ),
            key=lambda p: p.parts,
        )
        got = _scan(root, pattern)
        assert got == want, pattern
        assert got, pattern  # each pattern finds something, so equality is not vacuous
