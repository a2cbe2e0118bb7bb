"""croissant.json: mlcroissant validates it offline and reads the same rows back; RAI fields come from the manifest."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlcroissant as mlc

from manifests import open_dataset
from manifests.croissant import build_croissant
from manifests.schema import QuarantineRecord
from tests.manifests.test_publish import INFO, _build


def test_mlcroissant_validates_and_reads_the_rows(tmp_path: Path) -> None:
    _build(str(tmp_path), quarantine=[QuarantineRecord("i1", "nan", "NaN in lead II")], items_in=11)
    dataset = mlc.Dataset(jsonld=str(tmp_path / "croissant.json"))
    issues = dataset.metadata.ctx.issues
    assert not issues.errors and not issues.warnings, issues.report()
    ds = open_dataset(str(tmp_path))
    for split in ds.splits:
        records = list(dataset.records(split))
        assert len(records) == len(ds.split(split))
        ids = sorted(r[f"{split}/sample_id"].decode() for r in records)
        assert ids == sorted(x["sample_id"] for x in ds.split(split).select(["sample_id"]))
        labels = {
            r[f"{split}/sample_id"].decode(): [v.decode() for v in r[f"{split}/labels"]] for r in records
        }
        for item in ds.split(split).select(["sample_id", "labels"]):
            assert labels[item["sample_id"]] == item["labels"]


def test_rai_fields_and_licence_come_from_the_manifest(tmp_path: Path) -> None:
    logging.getLogger("absl").setLevel(logging.ERROR)
    manifest, _ = _build(str(tmp_path), quarantine=[QuarantineRecord("i1", "nan", "NaN")], items_in=11)
    doc = json.loads((tmp_path / "croissant.json").read_text())
    assert doc == build_croissant(manifest, quarantine_sha256=doc["distribution"][0]["sha256"])
    assert doc["license"] == "https://creativecommons.org/publicdomain/zero/1.0/"  # INFO's CC0-1.0
    assert json.dumps(INFO["deid"], sort_keys=True) in doc["rai:personalSensitiveInformation"]
    assert "1 of 11 items quarantined" in doc["rai:dataPreprocessingProtocol"]
    assert '"nan": 1' in doc["rai:dataPreprocessingProtocol"]
    assert json.dumps(INFO["provenance"], sort_keys=True) in doc["rai:dataCollection"]
    assert "signal (int16, per-sample shape [3, 40])" in doc["description"]
    fields = {f["name"]: f for f in doc["recordSet"][0]["field"]}
    assert fields["labels"]["repeated"] is True and fields["labels"]["dataType"] == "sc:Text"
    assert fields["age"]["dataType"] == "sc:Integer"
