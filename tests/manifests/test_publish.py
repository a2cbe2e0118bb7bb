"""publish_dataset: counts add up, the quarantine threshold, and manifest.json written last."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from manifests import DatasetNotFoundError, open_dataset
from manifests.publish import CountMismatchError, QuarantineThresholdError, publish_dataset
from manifests.schema import QUARANTINE_COLUMNS, QuarantineRecord
from manifests.writer import write_shard
from tests.manifests.test_writer import make_samples

INFO = {
    "title": "Synthetic ECG",
    "licence": "CC0-1.0",
    "modality": "ecg",
    "canonical": {"fs_hz": 500, "dtype": "int16"},
    "labels": {"kind": "multiclass", "classes": ["AF", "MI", "NORM"]},
    "split_policy": "subject_hash",
    "deid": {"pseudonymised_subject_ids": 4},
    "provenance": {"code_version": "test", "config_hash": "abc"},
}


def _build(url: str, *, quarantine: list[QuarantineRecord], items_in: int, max_fraction: float = 0.5):
    train, val = make_samples(8, "train", prefix="t"), make_samples(3, "val", prefix="v", seed=5)
    records = [
        write_shard(url, "train", 0, train[:5], source="syn"),
        write_shard(url, "train", 1, train[5:], source="syn"),
        write_shard(url, "val", 0, val, source="syn", items=2),
    ]
    manifest = publish_dataset(
        url,
        source="syn",
        version="v1",
        shards=records,
        quarantine=quarantine,
        items_in=items_in,
        info=INFO,
        quarantine_max_fraction=max_fraction,
    )
    return manifest, train + val


def test_manifest_counts_schema_statistics_and_info(tmp_path: Path) -> None:
    q = [QuarantineRecord("item-9", "flat_lead", "lead V3 flat"), QuarantineRecord("item-7", "nan", "NaN")]
    manifest, samples = _build(str(tmp_path), quarantine=q, items_in=8 + 2 + 2)
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["splits"] == {
        "train": {"samples": 8, "shards": 2, "items": 8},
        "val": {"samples": 3, "shards": 1, "items": 2},
    }
    assert manifest["counts"] == {
        "items_in": 12,
        "items_published": 10,
        "samples_out": 11,
        "quarantined": 2,
        "quarantined_by_code": {"flat_lead": 1, "nan": 1},
    }
    assert manifest["schema"]["arrays"]["signal"] == {
        "dtype": "int16",
        "ndim": 2,
        "layout": "fixed",
        "shape": [3, 40],
    }
    assert manifest["schema"]["arrays"]["events"]["layout"] == "ragged"
    cols = [c["name"] for c in manifest["schema"]["columns"]]
    assert cols[:6] == ["sample_id", "subject_id", "source", "split", "shard", "offset"]
    assert {c["name"]: c["type"] for c in manifest["schema"]["columns"]}["labels"] == "list<item: string>"
    for key, value in INFO.items():
        assert manifest[key] == value
    signal = np.stack([s.arrays["signal"] for s in samples]).astype(np.float64)
    stats = manifest["statistics"]["arrays"]["signal"]
    assert stats["count"] == signal.size
    assert stats["mean"] == pytest.approx(signal.mean())
    assert stats["std"] == pytest.approx(signal.std())
    assert (stats["min"], stats["max"]) == (signal.min(), signal.max())
    assert manifest["statistics"]["arrays_by_split"]["val"]["signal"]["count"] == 3 * 3 * 40
    assert [(s["split"], s["index"]) for s in manifest["shards"]] == [("train", 0), ("train", 1), ("val", 0)]
    table = pq.read_table(tmp_path / "quarantine.parquet")
    assert table.column_names == list(QUARANTINE_COLUMNS)
    assert table.to_pydict()["item_id"] == ["item-7", "item-9"]
    assert (tmp_path / "arrays" / "train.zarr" / "zarr.json").is_file()
    assert manifest["created_at"].endswith("Z")


def test_counts_that_do_not_add_up_write_nothing(tmp_path: Path) -> None:
    with pytest.raises(CountMismatchError, match="items_in=13 but published 10 \\+ quarantined 2 = 12"):
        _build(str(tmp_path), quarantine=[QuarantineRecord("a", "x", "y")] * 2, items_in=13)
    assert not (tmp_path / "manifest.json").exists()
    assert not (tmp_path / "quarantine.parquet").exists()


def test_quarantine_over_threshold_writes_quarantine_but_no_manifest(tmp_path: Path) -> None:
    q = [QuarantineRecord(f"i{k}", "bad_header", "unreadable") for k in range(3)]
    with pytest.raises(QuarantineThresholdError, match="3 of 13 items quarantined") as info:
        _build(str(tmp_path), quarantine=q, items_in=13, max_fraction=0.2)
    assert "bad_header" in str(info.value)
    assert pq.read_table(tmp_path / "quarantine.parquet").num_rows == 3
    assert not (tmp_path / "manifest.json").exists()
    with pytest.raises(DatasetNotFoundError):
        open_dataset(str(tmp_path))


def test_empty_quarantine_file_is_written_with_its_columns(tmp_path: Path) -> None:
    _build(str(tmp_path), quarantine=[], items_in=10, max_fraction=0.0)
    table = pq.read_table(tmp_path / "quarantine.parquet")
    assert table.num_rows == 0 and table.column_names == list(QUARANTINE_COLUMNS)


def test_missing_or_resized_shard_file_is_caught(tmp_path: Path) -> None:
    rec = write_shard(str(tmp_path), "train", 0, make_samples(4))
    victim = tmp_path / rec.files["rows"]
    victim.write_bytes(victim.read_bytes() + b"x")
    with pytest.raises(CountMismatchError, match=r"part-00000.parquet has .* bytes, the record says"):
        publish_dataset(
            str(tmp_path),
            source="s",
            version="v",
            shards=[rec],
            quarantine=[],
            items_in=4,
            info={},
            quarantine_max_fraction=0.0,
        )
    victim.unlink()
    with pytest.raises(CountMismatchError, match="is missing"):
        publish_dataset(
            str(tmp_path),
            source="s",
            version="v",
            shards=[rec],
            quarantine=[],
            items_in=4,
            info={},
            quarantine_max_fraction=0.0,
        )
    assert not (tmp_path / "manifest.json").exists()


def test_duplicate_shard_and_reserved_info_keys_are_refused(tmp_path: Path) -> None:
    rec = write_shard(str(tmp_path), "train", 0, make_samples(2))
    with pytest.raises(CountMismatchError, match="listed twice"):
        publish_dataset(
            str(tmp_path),
            source="s",
            version="v",
            shards=[rec, rec],
            quarantine=[],
            items_in=4,
            info={},
            quarantine_max_fraction=0.0,
        )
    with pytest.raises(ValueError, match="reserved manifest keys \\['shards'\\]"):
        publish_dataset(
            str(tmp_path),
            source="s",
            version="v",
            shards=[rec],
            quarantine=[],
            items_in=2,
            info={"shards": []},
            quarantine_max_fraction=0.0,
        )
