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
