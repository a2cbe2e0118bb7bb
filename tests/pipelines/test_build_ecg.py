"""End to end: each of the four ECG sources built from a raw folder laid out like the real release.

Raw folders hold the real CinC 2021 sample records from ``../shared/samples/ecg/`` (and the
original CPSC2018 MATLAB structs) beside synthetic records written by wfdb + scipy in the
same layout (``training/<folder>/g1/<rec>.hea|.mat``), with identifiers planted in their
headers. The built datasets are then opened with the reader and checked against the raw
inputs and CLIMB's published tables.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from manifests import open_dataset
from manifests.publish import QuarantineThresholdError
from manifests.schema import load_source_manifest
from pipelines.demo.ecg_release import CINC_LAYOUT, write_cinc_release
from pipelines.stages.build import BuildConfig, build_source
from tests.conftest import SAMPLES, TEST_SECRET, output_text
from transforms.ecg.labels import load_climb_table
from transforms.pseudonyms import DeidKey, pseudonymise_id

KEY = DeidKey(TEST_SECRET.encode())

#: source -> (real sample prefix in samples/ecg/cinc2021, CLIMB table name)
REAL = {
    "ptbxl": ("HR", "ptbxl"),
    "chapman_shaoxing": ("JS", "ChapmanShaoxing"),
    "georgia": ("E", "Ga"),
    "cpsc2018": ("A", "CPSC"),
}
N_SYNTHETIC = 6


def _lay_out_release(root: Path, source: str) -> list:
    folder, prefix, _ = CINC_LAYOUT[source]
    group = root / "training" / folder / "g1"
    group.mkdir(parents=True)
    if source == "cpsc2018":
        # The original CPSC2018 release: MATLAB struct files + REFERENCE.csv, no headers.
        original = root / "TrainingSet3"
        original.mkdir()
        for mat in sorted((SAMPLES / "ecg" / "cpsc2018").glob("A*.mat")):
            shutil.copy(mat, original / mat.name)
        (original / "REFERENCE.csv").write_text(
            "Recording,First_label,Second_label,Third_label\nA1980,2,,\nA1981,9,,\n"
        )
    else:
        for hea in sorted((SAMPLES / "ecg" / "cinc2021").glob(f"{prefix}[0-9]*.hea")):
            shutil.copy(hea, group / hea.name)
            shutil.copy(hea.with_suffix(".mat"), group / hea.with_suffix(".mat").name)
    durations = (6.0, 54.0) if source == "cpsc2018" else (10.0, 10.0)
    planted = write_cinc_release(root, source, N_SYNTHETIC, seed=11, start_number=1, durations_s=durations)
    # One record of a patient over 89 for certain (the random ones may all be younger).
    old = write_cinc_release(root, source, 1, seed=12, start_number=N_SYNTHETIC + 1, durations_s=durations)
    assert old[0].age >= 0
    hea = next(root.rglob(f"{old[0].record}.hea"))
    hea.write_text(re.sub(r"# Age: \d+", "# Age: 97", hea.read_text()))
    return [*planted, replace(old[0], age=97)]


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list]]:
    base = tmp_path_factory.mktemp("raw")
    return {source: (base / source, _lay_out_release(base / source, source)) for source in REAL}


@pytest.fixture(scope="module")
def built(releases, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    out = tmp_path_factory.mktemp("out")
    results = {}
    for source, (raw, _) in releases.items():
        result = build_source(source, str(raw), str(out), BuildConfig(items_per_shard=4), key=KEY)
        results[source] = (result, open_dataset(result.dataset_url))
    return results


def _raw_names(raw: Path) -> set[str]:
    names = {p.stem for p in raw.rglob("*.hea")} | {p.stem for p in raw.rglob("A*.mat")}
    assert names
    return names


@pytest.mark.parametrize("source", sorted(REAL))
def test_counts_and_splits(built, releases, source):
    result, dataset = built[source]
    raw, _ = releases[source]
    n_items = len(_raw_names(raw))
    manifest = dataset.manifest
    assert result.status == "built"
    assert manifest["counts"]["items_in"] == n_items
    assert manifest["counts"]["quarantined"] == 0
    total = sum(len(dataset.split(s)) for s in dataset.splits)
    assert total == manifest["counts"]["samples_out"]
    if source == "cpsc2018":
        # 6-54 s records are windowed into 10 s windows, never dropped.
        assert total > n_items
    else:
        assert total == n_items
    sample = dataset.split(dataset.splits[0])[0]
    assert sample["signal"].dtype == np.int16 and sample["signal"].shape == (12, 5000)
    assert sample["lead_mask"].dtype == np.bool_ and sample["lead_mask"].all()


@pytest.mark.parametrize("source", sorted(REAL))
def test_no_identifier_in_output_bytes(built, releases, source):
    result, _ = built[source]
    raw, planted = releases[source]
    text = output_text(Path(result.dataset_url))
    for name in _raw_names(raw):
        assert name not in text, f"raw record name {name} leaked"
    for record in planted:
        assert record.patient_name not in text
        assert record.mrn not in text
        for fmt in ("%Y-%m-%d", "%d/%m/%Y", "%Y%m%d"):
            assert record.recorded.strftime(fmt) not in text, f"original date of {record.record} leaked"
    assert str(raw) not in text
    ages = [
        row["age_years"]
        for split in built[source][1].splits
        for row in built[source][1].split(split).rows().to_pylist()
    ]
    assert ages and max(a for a in ages if a is not None) <= 90
    # Ages over 89 were planted, so capping was exercised.
    if source != "cpsc2018":
        assert any(r.age > 89 for r in planted)
        assert 90 in ages


@pytest.mark.parametrize("source", sorted(REAL))
def test_manifest_sha256_matches_files(built, source):
    import hashlib

    result, dataset = built[source]
    root = Path(result.dataset_url)
    shards = dataset.manifest["shards"]
    assert shards
    for shard in shards:
        for rel, digest in shard["sha256"].items():
            assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == digest, rel
            assert (root / rel).stat().st_size == shard["bytes"][rel]


@pytest.mark.parametrize("source", sorted(REAL))
def test_climb_published_labels_and_splits(releases, tmp_path, source):
    raw, _ = releases[source]
    result = build_source(
        source,
        str(raw),
        str(tmp_path),
        BuildConfig(items_per_shard=4, split_policy="climb_published"),
        key=KEY,
    )
    dataset = open_dataset(result.dataset_url)
    manifest = load_source_manifest(source)
    table = load_climb_table(REAL[source][1])
    by_pseudonym = {pseudonymise_id(KEY, manifest.deid.namespace, "record", name): name for name in table}
    checked = 0
    for split in dataset.splits:
        for row in dataset.split(split).rows().to_pylist():
            record = by_pseudonym[row["record_id"]]
            assert tuple(row["superclasses"]) == table[record]["superclasses"]
            assert row["climb_label"] == table[record]["label"]
            assert split == table[record]["split"]
            checked += 1
    real_in_table = [n for n in _raw_names(raw) if n in table]
    assert checked >= len(real_in_table) > 0
    skipped = dataset.manifest["provenance"]["index_skipped"].get("not_in_published_table", 0)
    assert dataset.manifest["counts"]["items_in"] + skipped == len(_raw_names(raw))


def test_rerun_is_a_no_op_and_changes_make_new_versions(releases, tmp_path):
    raw, _ = releases["georgia"]
    first = build_source("georgia", str(raw), str(tmp_path), BuildConfig(items_per_shard=4), key=KEY)
    again = build_source("georgia", str(raw), str(tmp_path), BuildConfig(items_per_shard=4), key=KEY)
    assert (first.status, again.status) == ("built", "up_to_date")
    assert again.version == first.version
    other_config = build_source("georgia", str(raw), str(tmp_path), BuildConfig(items_per_shard=3), key=KEY)
    assert other_config.status == "built" and other_config.version != first.version
    extra = tmp_path / "raw-copy"
    shutil.copytree(raw, extra)
    write_cinc_release(extra, "georgia", 1, seed=99, start_number=500)
    changed_input = build_source(
        "georgia", str(extra), str(tmp_path), BuildConfig(items_per_shard=4), key=KEY
    )
    assert changed_input.status == "built" and changed_input.version not in (
        first.version,
        other_config.version,
    )
    current = json.loads((tmp_path / "georgia" / "current.json").read_text())
    assert current["version"] == changed_input.version


def _corrupt_release(root: Path) -> dict[str, str]:
    """Georgia release with three corrupt records beside good ones; returns record -> expected code."""
    write_cinc_release(root, "georgia", 20, seed=5)
    group = root / "training" / "georgia" / "g1"
    # 1. truncated .mat
    mat = group / "E00001.mat"
    mat.write_bytes(mat.read_bytes()[: 24 + 12 * 2 * 2500])
    # 2. a header that lies about its length (says 6000 samples, the .mat holds 5000)
    hea = group / "E00002.hea"
    lines = hea.read_text().splitlines()
    head = lines[0].split()
    head[3] = "6000"
    hea.write_text("\n".join([" ".join(head), *lines[1:]]) + "\n")
    # 3. a gain of 0 on every lead (WFDB would read it as 200 adu/mV: 5x the true amplitude)
    hea = group / "E00003.hea"
    hea.write_text(re.sub(r" 1000\.0\(0\)/mV", " 0(0)/mV", hea.read_text()))
    # 4. a record whose samples are all the format's "no sample" value: NaN after reading
    import datetime as dt

    from pipelines.demo.ecg_release import write_cinc_record

    write_cinc_record(
        group,
        "E00004",
        np.full((12, 5000), -32.768),
        age=50,
        sex="Male",
        dx_codes=["426783006"],
        recorded=dt.datetime(2015, 5, 5, 10, 0),
    )
    return {
        "E00001": "truncated_file",
        "E00002": "truncated_file|header_mismatch",
        "E00003": "invalid_gain",
        "E00004": "non_finite|no_leads|flat_lead",
    }


def test_corrupt_records_are_quarantined_and_the_rest_builds(tmp_path):
    raw = tmp_path / "raw"
    expected = _corrupt_release(raw)
    manifest = load_source_manifest("georgia").model_copy(update={"quarantine_max_fraction": 0.5})
    result = build_source(manifest, str(raw), str(tmp_path / "out"), BuildConfig(items_per_shard=4), key=KEY)
    dataset = open_dataset(result.dataset_url)
    quarantine = pq.read_table(Path(result.dataset_url) / "quarantine.parquet").to_pylist()
    by_key = {row["item_id"]: row for row in quarantine}
    assert len(quarantine) == len(expected)
    for record, codes in expected.items():
        row = by_key[pseudonymise_id(KEY, "georgia", "item", record)]
        assert re.fullmatch(codes, row["code"]), (record, row)
        assert row["detail"] and record not in row["detail"] and "/" not in row["detail"]
    counts = dataset.manifest["counts"]
    assert counts["items_in"] == 20 == counts["items_published"] + counts["quarantined"]
    assert sum(len(dataset.split(s)) for s in dataset.splits) == 20 - len(expected)


def test_quarantine_over_threshold_fails_loudly_and_publishes_nothing(tmp_path):
    raw = tmp_path / "raw"
    _corrupt_release(raw)
    out = tmp_path / "out"
    with pytest.raises(QuarantineThresholdError, match="quarantin"):
        build_source("georgia", str(raw), str(out), BuildConfig(items_per_shard=4), key=KEY)
    assert not list(out.rglob("manifest.json"))
    assert not (out / "georgia" / "current.json").exists()


def test_ptbxl_database_groups_records_by_patient(tmp_path):
    """With PTB-XL's own ptbxl_database.csv in the raw folder, a patient's records share one split
    and one pseudonym; the raw patient ids appear in no output byte; editing the table is a new version."""
    raw = tmp_path / "raw"
    planted = write_cinc_release(raw, "ptbxl", 24, seed=5, start_number=1)
    ecg_ids = sorted(int(p.record[2:]) for p in planted)
    # 24 records of 6 patients with ids no other field could produce by chance.
    patients = {ecg_id: 7_300_000 + (i % 6) * 11 for i, ecg_id in enumerate(ecg_ids)}
    table = raw / "ptb-xl" / "ptbxl_database.csv"
    table.parent.mkdir()
    lines = ["ecg_id,patient_id,age,sex,filename_hr"] + [
        f"{e},{float(p)},50.0,1,records500/00000/{e:05d}_hr" for e, p in patients.items()
    ]
    table.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    result = build_source("ptbxl", str(raw), str(out), BuildConfig(items_per_shard=8), key=KEY)
    assert result.status == "built" and result.items_in == 24
    rows = pq.read_table(Path(result.dataset_url) / "rows").to_pandas()
    by_record = {r.record_id: (r.subject_id, r.split) for r in rows.itertuples()}
    record_of = {pseudonymise_id(KEY, "ptbxl", "record", f"HR{e:05d}"): e for e in ecg_ids}
    groups: dict[int, set] = {}
    for record_pseudonym, (subject, split) in by_record.items():
        groups.setdefault(patients[record_of[record_pseudonym]], set()).add((subject, split))
    assert len(groups) == 6
    assert all(len(seen) == 1 for seen in groups.values()), groups  # one pseudonym, one split per patient
    assert len({next(iter(seen))[0] for seen in groups.values()}) == 6  # six different pseudonyms
    text = output_text(Path(result.dataset_url))
    for patient in set(patients.values()):
        assert str(patient) not in text
    table.write_text(
        "\n".join([lines[0], *(line.replace(",7300000.0,", ",7300099.0,") for line in lines[1:])]) + "\n"
    )
    again = build_source("ptbxl", str(raw), str(out), BuildConfig(items_per_shard=8), key=KEY)
    assert again.status == "built" and again.version != result.version


def test_ptbxl_database_without_patient_column_is_a_clear_error(tmp_path):
    raw = tmp_path / "raw"
    write_cinc_release(raw, "ptbxl", 2, seed=5, start_number=1)
    (raw / "ptbxl_database.csv").write_text("ecg_id,age\n1,50\n")
    with pytest.raises(Exception, match=r"ptbxl_database.csv: no column patient_id"):
        build_source("ptbxl", str(raw), str(tmp_path / "out"), BuildConfig(items_per_shard=8), key=KEY)
