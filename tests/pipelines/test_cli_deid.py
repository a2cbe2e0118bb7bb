"""``climb deid dicom`` end to end through the real CLI, with real worker processes."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from pipelines.cli import app
from tests.conftest import TEST_SECRET
from tests.transforms.dicom.checker import check_corpus
from tests.transforms.dicom.synthetic import PHI_STRINGS, write_synthetic_corpus, write_ultrasound


@pytest.fixture()
def raw_dir(tmp_path: Path) -> Path:
    raw = tmp_path / "raw export"
    corpus = write_synthetic_corpus(raw)
    assert corpus.files
    write_ultrasound(raw / "DOE_JOHNATHAN" / "us" / "us1.dcm")
    (raw / "notes.txt").write_text("DOE^JOHNATHAN called on Monday\n")
    (raw / "extra").mkdir()
    for name in ("CT_small.dcm", "MR_small_RLE.dcm", "DICOMDIR"):
        shutil.copy(get_testdata_file(name), raw / "extra" / name)
    return raw


def _invoke(*args: str):
    return CliRunner().invoke(app, ["deid", "dicom", *args], catch_exceptions=False)


def test_deid_dicom_folder(raw_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "clean"
    result = _invoke(str(raw_dir), str(out), "--workers", "2", "--namespace", "site-a", "--quiet")
    assert result.exit_code == 0, result.output
    pairs_path, report_path = tmp_path / "clean.pairs.csv", tmp_path / "clean.report.json"
    assert pairs_path.is_file() and report_path.is_file()
    assert not list(out.rglob("*.csv")) and not list(out.rglob("*.json"))  # beside, not inside

    with pairs_path.open() as handle:
        pairs = list(csv.DictReader(handle))
    originals = {row["original"] for row in pairs}
    assert len(pairs) == 9  # 7 synthetic files + CT_small + MR_small_RLE
    assert "extra/CT_small.dcm" in originals and "DOE_JOHNATHAN/study1/kos.dcm" in originals
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted(row["output"] for row in pairs)

    report = json.loads(report_path.read_text())
    reasons = {row["path"]: row["code"] for row in report["skipped_files"]}
    assert reasons == {
        "notes.txt": "not_dicom",
        "DOE_JOHNATHAN/us/us1.dcm": "burned_in_annotation",
        "extra/DICOMDIR": "dicomdir",
    }
    assert report["files"] == len(pairs) + 3 and report["actions"]["X:private"] >= 6

    # no identifying string or original UID anywhere in the output's names or bytes
    checked = []
    for row in pairs:
        original = pydicom.dcmread(raw_dir / row["original"])
        data = (out / row["output"]).read_bytes()
        lowered = data.lower()
        for phi in (*PHI_STRINGS, "DOE_JOHNATHAN", "raw export"):
            assert phi.lower().encode() not in lowered, (row["original"], phi)
            assert phi.lower() not in row["output"].lower()
        for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
            assert str(original.get(keyword)).encode() not in data
        checked.append((row["original"], original, pydicom.dcmread(out / row["output"])))
    assert check_corpus(checked) == []
    assert TEST_SECRET not in result.output


def test_mask_rect_writes_burned_in_images(raw_dir: Path, tmp_path: Path) -> None:
    result = _invoke(
        str(raw_dir), str(tmp_path / "masked"), "--workers", "1", "--mask-rect", "0,0,1,0.2", "--quiet"
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "masked.report.json").read_text())
    assert "burned_in_annotation" not in report["skipped_by_reason"]
    assert report["actions"]["C:pixels_masked"] == 1


def test_missing_secret_and_bad_folders(
    raw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLIMB_DEID_SECRET")
    result = _invoke(str(raw_dir), str(tmp_path / "o1"))
    assert result.exit_code == 2 and "CLIMB_DEID_SECRET" in result.output
    assert not (tmp_path / "o1").exists()
    monkeypatch.setenv("CLIMB_DEID_SECRET", TEST_SECRET)
    inside = _invoke(str(raw_dir), str(raw_dir / "out"))
    assert inside.exit_code == 2 and "inside IN_DIR" in inside.output
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    full = _invoke(str(raw_dir), str(tmp_path / "full"))
    assert full.exit_code == 2 and "not empty" in full.output
    bad = CliRunner().invoke(
        app, ["deid", "dicom", str(raw_dir), str(tmp_path / "o2"), "--options", "keep-all"]
    )
    assert bad.exit_code == 2 and "unknown options" in bad.output


def test_reruns_are_byte_identical(raw_dir: Path, tmp_path: Path) -> None:
    """Same secret, same namespace: the same names and the same bytes (pseudonyms, UIDs and
    date offsets are keyed, not random), so a rebuild does not churn a published dataset."""
    for name in ("a", "b"):
        result = _invoke(str(raw_dir), str(tmp_path / name), "--workers", "1", "--quiet")
        assert result.exit_code == 0, result.output
    assert (tmp_path / "a.pairs.csv").read_text() == (tmp_path / "b.pairs.csv").read_text()
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.dcm"))
    assert files_a and files_a == sorted(
        p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.dcm")
    )
    for relative in files_a:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()
