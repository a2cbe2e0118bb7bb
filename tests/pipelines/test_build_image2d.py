"""End to end: 2D radiology sources built from raw folders laid out like their real releases.

Provenance of the inputs (all made here, none copied): DICOM files written by pydicom with
planted PHI (names, IDs, birth dates, addresses, institution, a private block copying the name,
original UIDs and dates; :func:`tests.transforms.dicom.synthetic._base`), JPEG files written by
Pillow with EXIF naming a person and a date, PNG files with text chunks doing the same, and the
label CSVs in each release's own column layout. The built datasets are opened with the reader
and checked against those inputs: counts per split, labels against the CSVs, MONOCHROME1
inversion, and no identifying string anywhere in the output bytes.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from pydicom.uid import generate_uid

from manifests import open_dataset
from manifests.schema import load_source_manifest
from pipelines.stages.build import BuildConfig, build_source
from pipelines.stages.index import split_for_subject
from tests.conftest import TEST_SECRET, output_text
from tests.transforms.dicom.synthetic import CR_IMAGE, PHI_STRINGS, _base, write_ultrasound
from transforms.pseudonyms import DeidKey, pseudonymise_id

KEY = DeidKey(TEST_SECRET.encode())
SIZE_PX = 128
RNG_SEED = 7

VINDR_LOCAL = [
    "Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Clavicle fracture",
    "Consolidation", "Edema", "Emphysema", "Enlarged PA", "ILD", "Infiltration", "Lung Opacity",
    "Lung cavity", "Lung cyst", "Mediastinal shift", "Nodule/Mass", "Pleural effusion",
    "Pleural thickening", "Pneumothorax", "Pulmonary fibrosis", "Rib fracture", "Other lesion",
]  # fmt: skip
VINDR_GLOBAL = ["COPD", "Lung tumor", "Pneumonia", "Tuberculosis", "Other diseases", "No finding"]
VINDR_CLASS = {
    "Lung tumor": "lung_tumor",
    "Pneumonia": "pneumonia",
    "Tuberculosis": "tuberculosis",
    "Other diseases": "other_diseases",
    "COPD": "copd",
    "No finding": "no_finding",
}
CHEXPERT_HEADERS = [
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
    "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
    "Pleural Other", "Fracture", "Support Devices",
]  # fmt: skip


def _small_manifest(source: str, **update):
    manifest = load_source_manifest(source)
    canonical = {**manifest.canonical, "long_side_px": SIZE_PX}
    return manifest.model_copy(update={"canonical": canonical, **update})


def _samples_by_id(dataset) -> dict[str, dict]:
    out = {}
    for split in dataset.splits:
        view = dataset.split(split)
        for i in range(len(view)):
            sample = view[i]
            out[sample["sample_id"]] = {**sample, "split": split}
    return out


# --------------------------------------------------------------------------- VinDr-CXR (DICOM)


def _write_cr(
    path: Path, name: str, patient_id: str, date: str, pixels: np.ndarray, photometric: str
) -> list[str]:
    """A CR image with planted PHI; returns its original UIDs."""
    ds = _base(name, patient_id, generate_uid(), date, CR_IMAGE)
    ds.Modality = "CR"
    ds.SeriesInstanceUID = generate_uid()
    ds.ViewPosition = "PA"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.2, 0.2]
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return [ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID]


@pytest.fixture(scope="module")
def vindr(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """VinDr-CXR release: train/ and test/ DICOMs, annotations/image_labels_{train,test}.csv."""
    raw = tmp_path_factory.mktemp("raw") / "vindr_cxr"
    rng = np.random.default_rng(RNG_SEED)
    planted: dict = {"names": [], "ids": [], "uids": [], "dates": [], "image_ids": [], "labels": {}}
    rows_train, rows_test = [], []
    shapes = {}
    gradient = (np.arange(96 * 128, dtype=np.int64).reshape(96, 128) * 4095 // (96 * 128 - 1)).astype(
        np.uint16
    )
    plan = [("train", i) for i in range(6)] + [("test", i) for i in range(3)]
    for n, (split, _) in enumerate(plan):
        image_id = rng.bytes(16).hex()
        name, pid, date = f"NGUYEN^VAN^BINH{n:02d}", f"VN-PID-{700000 + n}", f"2019{(n % 9) + 1:02d}1{n % 10}"
        photometric = "MONOCHROME1" if n in (1, 7) else "MONOCHROME2"
        if n in (0, 1):
            pixels = gradient  # the same pixels as MONOCHROME2 and MONOCHROME1: inversion checked
        else:
            shape = (96, 128) if n % 2 else (160, 120)
            pixels = rng.integers(0, 4096, size=shape).astype(np.uint16)
        shapes[image_id] = (pixels, photometric)
        planted["uids"] += _write_cr(raw / split / f"{image_id}.dicom", name, pid, date, pixels, photometric)
        planted["names"].append(name)
        planted["ids"].append(pid)
        planted["dates"].append(date)
        planted["image_ids"].append(image_id)
        readers = 3 if split == "train" else 1
        votes = rng.integers(0, 2, size=(readers, len(VINDR_GLOBAL) + len(VINDR_LOCAL)))
        for r in range(readers):
            values = [str(int(v)) for v in votes[r]]
            if split == "train":
                rows_train.append(
                    [image_id, f"R{r + 1}", *values[len(VINDR_GLOBAL) :], *values[: len(VINDR_GLOBAL)]]
                )
            else:
                rows_test.append([image_id, *values[len(VINDR_GLOBAL) :], *values[: len(VINDR_GLOBAL)]])
        global_votes = votes[:, : len(VINDR_GLOBAL)].sum(axis=0)
        planted["labels"][image_id] = {
            VINDR_CLASS[h]: int(global_votes[i] * 2 > readers) for i, h in enumerate(VINDR_GLOBAL)
        }
    # bad items: garbage named .dicom, a truncated DICOM, an ultrasound (burned-in text presumed)
    bad = {}
    garbage_id, truncated_id, us_id = (rng.bytes(16).hex() for _ in range(3))
    (raw / "train" / f"{garbage_id}.dicom").write_bytes(b"this is not a DICOM file at all\n" * 4)
    good = raw / "train" / f"{planted['image_ids'][2]}.dicom"
    (raw / "train" / f"{truncated_id}.dicom").write_bytes(good.read_bytes()[:900])
    write_ultrasound(raw / "train" / f"{us_id}.dicom")
    bad = {
        garbage_id: "not_dicom|unreadable_dicom",
        truncated_id: "unreadable_dicom|no_pixel_data|undecodable_pixels|not_dicom",
        us_id: "burned_in_annotation",
    }
    for image_id in bad:
        for r in range(3):
            rows_train.append([image_id, f"R{r + 1}", *["0"] * (len(VINDR_LOCAL) + len(VINDR_GLOBAL))])
    ann = raw / "annotations"
    ann.mkdir()
    with (ann / "image_labels_train.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["image_id", "rad_id", *VINDR_LOCAL, *VINDR_GLOBAL], *rows_train])
    with (ann / "image_labels_test.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["image_id", *VINDR_LOCAL, *VINDR_GLOBAL], *rows_test])
    out = tmp_path_factory.mktemp("out")
    manifest = _small_manifest("vindr_cxr", quarantine_max_fraction=0.5)
    result = build_source(manifest, str(raw), str(out), BuildConfig(items_per_shard=4), key=KEY)
    return {
        "raw": raw,
        "planted": planted,
        "bad": bad,
        "shapes": shapes,
        "result": result,
        "dataset": open_dataset(result.dataset_url),
        "manifest": manifest,
    }


def test_vindr_counts_splits_and_labels(vindr):
    dataset, planted = vindr["dataset"], vindr["planted"]
    counts = dataset.manifest["counts"]
    assert counts["items_in"] == 9 + len(vindr["bad"])
    assert counts["quarantined"] == len(vindr["bad"])
    assert {s: len(dataset.split(s)) for s in dataset.splits} == {"train": 6, "test": 3}
    samples = _samples_by_id(dataset)
    classes = vindr["manifest"].labels.classes
    for n, image_id in enumerate(planted["image_ids"]):
        sample = samples[f"{pseudonymise_id(KEY, 'vindr_cxr', 'item', image_id)}-f000"]
        assert sample["split"] == ("train" if n < 6 else "test")
        assert sample["labels"] == [planted["labels"][image_id][c] for c in classes]
        assert sample["n_readers"] == (3 if n < 6 else 1)
        assert sample["image"].shape == (SIZE_PX, SIZE_PX) and sample["image"].dtype == np.uint16
        pixels, _ = vindr["shapes"][image_id]
        rows, cols = pixels.shape
        assert (sample["original_rows"], sample["original_cols"]) == (rows, cols)
        scale = SIZE_PX / max(rows, cols)
        assert (sample["valid_rows"], sample["valid_cols"]) == (round(rows * scale), round(cols * scale))
        assert sample["pixel_spacing_mm"] == pytest.approx([0.2 / scale, 0.2 / scale], rel=0.02)
        assert not sample["image"][sample["valid_rows"] :, :].any()  # padding is zero
        assert sample["modality"] == "CR" and sample["view_position"] == "PA"


def test_vindr_monochrome1_is_inverted(vindr):
    samples = _samples_by_id(vindr["dataset"])
    ids = vindr["planted"]["image_ids"]
    mono2 = samples[f"{pseudonymise_id(KEY, 'vindr_cxr', 'item', ids[0])}-f000"]
    mono1 = samples[f"{pseudonymise_id(KEY, 'vindr_cxr', 'item', ids[1])}-f000"]
    stored, _ = vindr["shapes"][ids[0]]
    top = 2**12 - 1  # BitsStored 12, no rescale and no window: the stored range
    assert mono1["inverted"] and not mono2["inverted"]
    assert mono1["max_value"] == mono2["max_value"] == top
    assert np.array_equal(mono2["image"][:96, :128], stored)
    assert np.array_equal(mono1["image"][:96, :128], top - stored)


def test_vindr_quarantine_reasons_are_readable(vindr):
    import re

    quarantine = pq.read_table(Path(vindr["result"].dataset_url) / "quarantine.parquet").to_pylist()
    by_key = {row["item_id"]: row for row in quarantine}
    assert len(quarantine) == len(vindr["bad"])
    for image_id, codes in vindr["bad"].items():
        row = by_key[pseudonymise_id(KEY, "vindr_cxr", "item", image_id)]
        assert re.fullmatch(codes, row["code"]), row
        assert len(row["detail"]) > 10 and image_id not in row["detail"]
        assert str(vindr["raw"]) not in row["detail"] and ".dicom" not in row["detail"]


def test_vindr_no_identifier_in_output_and_deid_report(vindr):
    text = output_text(Path(vindr["result"].dataset_url))
    planted = vindr["planted"]
    for value in [*planted["names"], *planted["ids"], *planted["uids"], *planted["image_ids"], *PHI_STRINGS]:
        assert value not in text, f"{value!r} leaked"
    for date in [*planted["dates"], "19300215"]:
        for variant in (date, f"{date[:4]}-{date[4:6]}-{date[6:]}"):
            assert variant not in text, f"original date {variant} leaked"
    assert str(vindr["raw"]) not in text and ".dicom" not in text
    deid = vindr["dataset"].manifest["deid"]
    assert deid["actions"] and deid["namespace"] == "vindr_cxr"
    assert any(name.startswith("X:private") for name in deid["actions"])
    assert "PS3.15" in deid["method"]
    canonical = vindr["dataset"].manifest["canonical"]
    assert canonical["array"]["shape"] == [SIZE_PX, SIZE_PX]


# --------------------------------------------------------------------------- CheXpert (JPEG)


def _write_jpeg(path: Path, pixels: np.ndarray, person: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    exif[0x013B] = person  # Artist
    exif[0x010E] = f"chest film of {person}"  # ImageDescription
    exif[0x0132] = "2017:03:14 10:15:00"  # DateTime
    Image.fromarray(pixels).save(path, quality=95, exif=exif.tobytes())


@pytest.fixture(scope="module")
def chexpert(tmp_path_factory: pytest.TempPathFactory) -> dict:
    raw = tmp_path_factory.mktemp("raw") / "chexpert"
    rng = np.random.default_rng(RNG_SEED + 1)
    rows: dict[str, list[list[str]]] = {"train": [], "valid": []}
    persons, originals = [], {}
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_HEADERS]
    n = 0
    for split, patients in (("train", range(1, 9)), ("valid", range(64541, 64544))):
        for patient in patients:
            for view in (1, 2):
                rel = f"CheXpert-v1.0/{split}/patient{patient:05d}/study1/view{view}_frontal.jpg"
                shape = (150, 120) if view == 1 else (100, 128)
                pixels = np.clip(rng.normal(128, 40, size=shape), 0, 255).astype(np.uint8)
                person = f"SMITH^ALICE{n:02d}"
                _write_jpeg(raw / rel, pixels, person)
                persons.append(person)
                states = rng.choice(["1.0", "0.0", "-1.0", ""], size=len(CHEXPERT_HEADERS))
                rows[split].append([rel, "Female", str(95 if n == 0 else 40 + n), "Frontal", "AP", *states])
                originals[rel] = (pixels, states)
                n += 1
    for split, table in rows.items():
        with (raw / "CheXpert-v1.0" / f"{split}.csv").open("w", newline="") as fh:
            csv.writer(fh).writerows([header, *table])
    out = tmp_path_factory.mktemp("out")
    result = build_source(
        _small_manifest("chexpert"), str(raw), str(out), BuildConfig(items_per_shard=5), key=KEY
    )
    return {"raw": raw, "persons": persons, "originals": originals, "result": result,
            "dataset": open_dataset(result.dataset_url)}  # fmt: skip


def test_chexpert_splits_labels_and_pixels(chexpert):
    dataset = chexpert["dataset"]
    assert dataset.manifest["counts"]["quarantined"] == 0
    sizes = {s: len(dataset.split(s)) for s in dataset.splits}
    assert sizes.get("test") == 6 and sizes.get("train", 0) + sizes.get("val", 0) == 16
    samples = _samples_by_id(dataset)
    subjects_by_split: dict[str, set[str]] = {}
    for rel, (pixels, states) in chexpert["originals"].items():
        sample = samples[f"{pseudonymise_id(KEY, 'chexpert', 'item', rel)}-f000"]
        subjects_by_split.setdefault(sample["split"], set()).add(sample["subject_id"])
        assert (sample["split"] == "test") == ("/valid/" in rel)
        expected = [None if s == "" else int(float(s)) for s in states]
        assert sample["labels"] == expected  # 14 labels, No Finding first, uncertain kept as -1
        assert len(sample["labels"]) == 14
        assert sample["image"].dtype == np.uint8 and sample["image"].shape == (SIZE_PX, SIZE_PX)
        assert (sample["original_rows"], sample["original_cols"]) == pixels.shape
        assert sample["age_years"] <= 90
        if pixels.shape[1] == SIZE_PX:  # not resized: JPEG round trip within quality-95 error
            valid = sample["image"][: pixels.shape[0], :]
            assert abs(float(valid.mean()) - float(pixels.mean())) < 2.0
    splits = list(subjects_by_split)
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            assert not subjects_by_split[a] & subjects_by_split[b], "a patient spans two splits"


def test_chexpert_no_identifier_in_output(chexpert):
    text = output_text(Path(chexpert["result"].dataset_url))
    for person in chexpert["persons"]:
        assert person not in text
    for value in ("2017:03:14", "patient00001", "view1_frontal", "patient64541", str(chexpert["raw"])):
        assert value not in text, f"{value!r} leaked"
    assert chexpert["dataset"].manifest["deid"]["actions"]["X:container_metadata"] == 22


# --------------------------------------------------------------------------- COVID-19 X-ray (PNG/JPEG)


def test_covid19_xray_class_folders(tmp_path):
    raw = tmp_path / "raw"
    rng = np.random.default_rng(RNG_SEED + 2)
    folders = {"Normal": 0, "BacterialPneumonia": 1, "ViralPneumonia": 2, "COVID-19": 3}
    expected = {}
    for split in ("TrainData", "ValData"):
        for folder, label in folders.items():
            for k in range(2):
                name = f"{folder}-JONES-{k}.png"
                path = raw / split / folder / name
                path.parent.mkdir(parents=True, exist_ok=True)
                pixels = rng.integers(0, 256, size=(96, 128), dtype=np.uint8)
                info = PngInfo()
                info.add_text("Author", "JONES^ROBERT")
                info.add_text("Creation Time", "2020-04-01")
                if k == 1 and label == 3:  # a colour PNG in a grey source: converted by luma
                    rgb = np.stack([pixels, pixels // 2, pixels // 3], axis=-1)
                    Image.fromarray(rgb).save(path, pnginfo=info)
                    pixels = np.rint(rgb.astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)
                else:
                    Image.fromarray(pixels).save(path, pnginfo=info)
                expected[f"{split}/{folder}/{name}"] = (
                    label,
                    "train" if split == "TrainData" else "test",
                    pixels,
                )
    result = build_source(_small_manifest("covid19_xray"), str(raw), str(tmp_path / "out"), key=KEY)
    dataset = open_dataset(result.dataset_url)
    assert {s: len(dataset.split(s)) for s in dataset.splits} == {"train": 8, "test": 8}
    samples = _samples_by_id(dataset)
    for rel, (label, split, pixels) in expected.items():
        sample = samples[f"{pseudonymise_id(KEY, 'covid19_xray', 'item', rel)}-f000"]
        assert sample["label"] == label and sample["split"] == split
        assert np.abs(sample["image"][:96, :].astype(int) - pixels.astype(int)).max() <= 1
    text = output_text(Path(result.dataset_url))
    for value in ("JONES", "2020-04-01", ".png", str(raw)):
        assert value not in text, f"{value!r} leaked"


# --------------------------------------------------------------------------- CoronaHack (JPEG + CSV)


def test_coronahack_metadata_csv(tmp_path):
    raw = tmp_path / "raw"
    folder = raw / "Coronahack-Chest-XRay-Dataset" / "Coronahack-Chest-XRay-Dataset"
    rng = np.random.default_rng(RNG_SEED + 3)
    table = [
        ["", "X_ray_image_name", "Label", "Dataset_type", "Label_2_Virus_category", "Label_1_Virus_category"]
    ]
    cases = [
        ("Normal", "", "", "normal"),
        ("Pnemonia", "", "bacteria", "pneumonia_bacterial"),
        ("Pnemonia", "COVID-19", "Virus", "pneumonia_viral"),
        ("Pnemonia", "ARDS", "Stress-Smoking", None),  # outside the three classes: counted, not guessed
    ]
    expected = {}
    for split in ("TRAIN", "TEST"):
        for k, (label, virus2, virus1, name) in enumerate(cases):
            file_name = f"person{k}_{split.lower()}_KOWALSKI.jpeg"
            _write_jpeg(
                folder / split.lower() / file_name,
                rng.integers(0, 256, (80, 100), dtype=np.uint8),
                "KOWALSKI^JAN",
            )
            table.append([str(len(table)), file_name, label, split, virus2, virus1])
            if name is not None:
                expected[f"{split.lower()}/{file_name}"] = (
                    name,
                    "train" if split == "TRAIN" else "test",
                    virus2 or None,
                )
    with (raw / "Chest_xray_Corona_Metadata.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(table)
    manifest = _small_manifest("coronahack")
    result = build_source(manifest, str(raw), str(tmp_path / "out"), key=KEY)
    dataset = open_dataset(result.dataset_url)
    assert {s: len(dataset.split(s)) for s in dataset.splits} == {"train": 3, "test": 3}
    assert dataset.manifest["provenance"]["index_skipped"]["label_outside_classes"] == 2
    samples = _samples_by_id(dataset)
    for item_id, (name, split, virus) in expected.items():
        sample = samples[f"{pseudonymise_id(KEY, 'coronahack', 'item', item_id)}-f000"]
        assert (sample["label_name"], sample["split"], sample["virus_category"]) == (name, split, virus)
        assert sample["label"] == manifest.labels.classes.index(name)
    text = output_text(Path(result.dataset_url))
    for value in ("KOWALSKI", "person0_", "2017:03:14", str(raw)):
        assert value not in text, f"{value!r} leaked"


# --------------------------------------------------------------------------- MIMIC-CXR-JPG


def _write_csv_gz(path: Path, rows: list[list[str]]) -> None:
    import gzip
    import io

    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    path.write_bytes(gzip.compress(buffer.getvalue().encode()))


def test_mimic_cxr_official_split_and_study_labels(tmp_path):
    raw = tmp_path / "raw"
    rng = np.random.default_rng(RNG_SEED + 4)
    split_rows = [["dicom_id", "study_id", "subject_id", "split"]]
    label_rows = [["subject_id", "study_id", *CHEXPERT_HEADERS]]
    meta_rows = [["dicom_id", "subject_id", "study_id", "ViewPosition"]]
    expected, planted = {}, []
    for n, split in enumerate(["train", "train", "validate", "test", "train", "test"]):
        subject, study = str(10000032 + n * 7), str(50414267 + n * 13)
        states = rng.choice(["1.0", "0.0", "-1.0", ""], size=len(CHEXPERT_HEADERS))
        label_rows.append([subject, study, *states])
        for view in range(2):
            dicom_id = "-".join(rng.bytes(4).hex() for _ in range(5))
            path = raw / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom_id}.jpg"
            _write_jpeg(path, rng.integers(0, 256, (100, 90), dtype=np.uint8), "PATIENT^MIMIC")
            split_rows.append([dicom_id, study, subject, split])
            meta_rows.append([dicom_id, subject, study, "PA" if view == 0 else "LATERAL"])
            expected[dicom_id] = (
                {"validate": "val"}.get(split, split),
                [None if s == "" else int(float(s)) for s in states],
            )
            planted += [dicom_id, f"p{subject}", f"s{study}"]
    _write_csv_gz(raw / "mimic-cxr-2.0.0-split.csv.gz", split_rows)
    _write_csv_gz(raw / "mimic-cxr-2.0.0-chexpert.csv.gz", label_rows)
    _write_csv_gz(raw / "mimic-cxr-2.0.0-metadata.csv.gz", meta_rows)
    manifest = _small_manifest("mimic_cxr")
    official = build_source(
        manifest, str(raw), str(tmp_path / "out"), BuildConfig(split_policy="official"), key=KEY
    )
    dataset = open_dataset(official.dataset_url)
    assert {s: len(dataset.split(s)) for s in dataset.splits} == {"train": 6, "val": 2, "test": 4}
    samples = _samples_by_id(dataset)
    for dicom_id, (split, labels) in expected.items():
        sample = samples[f"{pseudonymise_id(KEY, 'mimic', 'item', dicom_id)}-f000"]
        assert sample["split"] == split and sample["labels"] == labels
    # the default (shared with MIMIC-IV): one keyed-hash split per patient, the same in both sources
    result = build_source(manifest, str(raw), str(tmp_path / "out"), key=KEY)
    hashed = _samples_by_id(open_dataset(result.dataset_url))
    assert len(hashed) == len(expected)
    for row in split_rows[1:]:
        sample = hashed[f"{pseudonymise_id(KEY, 'mimic', 'item', row[0])}-f000"]
        assert sample["split"] == split_for_subject(row[2], "mimic", manifest.split.fractions)
        assert sample["subject_id"] == pseudonymise_id(KEY, "mimic", "subject", row[2])
    text = output_text(Path(result.dataset_url))
    for value in [*planted, "PATIENT^MIMIC", str(raw)]:
        assert value not in text, f"{value!r} leaked"


# --------------------------------------------------------------------------- VinDr-Mammo (DICOM)


def test_vindr_mammo_breast_level_birads(tmp_path):
    raw = tmp_path / "raw"
    rng = np.random.default_rng(RNG_SEED + 5)
    table = [["study_id", "series_id", "image_id", "laterality", "view_position", "height", "width",
              "breast_birads", "breast_density", "split"]]  # fmt: skip
    expected, planted = {}, []
    for n in range(6):
        study_id = rng.bytes(16).hex()
        for side, view in (("L", "CC"), ("R", "MLO")):
            image_id = rng.bytes(16).hex()
            ds = _base(
                f"TRAN^THI^LAN{n}",
                f"MAMMO-{n:04d}",
                generate_uid(),
                "20200607",
                "1.2.840.10008.5.1.4.1.1.1.2",
            )
            ds.Modality, ds.ImageLaterality, ds.ViewPosition = "MG", side, view
            ds.SeriesInstanceUID = generate_uid()
            ds.Rows, ds.Columns = 160, 128
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 14, 13, 0
            ds.PixelData = rng.integers(0, 2**14, (160, 128)).astype(np.uint16).tobytes()
            path = raw / "images" / study_id / f"{image_id}.dicom"
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(path, enforce_file_format=True)
            birads = 1 + (n + (side == "R")) % 5
            split = "test" if n >= 4 else "training"
            table.append([study_id, ds.SeriesInstanceUID, image_id, side, view, "160", "128",
                          f"BI-RADS {birads}", "DENSITY C", split])  # fmt: skip
            expected[image_id] = (birads - 1, side, view, "test" if n >= 4 else "train")
            planted += [image_id, study_id, ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID,
                        f"TRAN^THI^LAN{n}", f"MAMMO-{n:04d}"]  # fmt: skip
    with (raw / "breast-level_annotations.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(table)
    result = build_source(_small_manifest("vindr_mammo"), str(raw), str(tmp_path / "out"), key=KEY)
    dataset = open_dataset(result.dataset_url)
    assert {s: len(dataset.split(s)) for s in dataset.splits} == {"train": 8, "test": 4}
    samples = _samples_by_id(dataset)
    for image_id, (label, side, view, split) in expected.items():
        sample = samples[f"{pseudonymise_id(KEY, 'vindr_mammo', 'item', image_id)}-f000"]
        assert (sample["label"], sample["split"], sample["breast_density"]) == (label, split, "DENSITY C")
        assert (sample["laterality"], sample["view_position"], sample["modality"]) == (side, view, "MG")
        assert sample["image"].dtype == np.uint16 and sample["max_value"] == 2**14 - 1
    text = output_text(Path(result.dataset_url))
    for value in [*planted, *PHI_STRINGS, "20200607", str(raw)]:
        assert value not in text, f"{value!r} leaked"
    assert dataset.manifest["deid"]["actions"]


# --------------------------------------------------------------------------- mammography DICOM helpers

MG_IMAGE = "1.2.840.10008.5.1.4.1.1.1.2"


def _write_mg(path: Path, name: str, patient_id: str, side: str, view: str, seed: int) -> list[str]:
    """A small 14-bit MG image with planted PHI; returns its original UIDs."""
    ds = _base(name, patient_id, generate_uid(), "20180911", MG_IMAGE)
    ds.Modality, ds.ImageLaterality, ds.ViewPosition = "MG", side, view
    ds.SeriesInstanceUID = generate_uid()
    ds.Rows, ds.Columns = 160, 100
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 14, 13, 0
    ds.PixelData = np.random.default_rng(seed).integers(0, 2**14, (160, 100)).astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return [ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID]


# --------------------------------------------------------------------------- CMMD (DICOM + xlsx)


def test_cmmd_breast_items_from_the_clinical_xlsx(tmp_path):
    from openpyxl import Workbook  # type: ignore[import-untyped]  # writes the real xlsx; the pipeline reads it with the standard library

    raw = tmp_path / "raw"
    book = Workbook()
    sheet = book.active
    sheet.append(["ID1", "LeftRight", "Age", "number", "abnormality", "classification", "subtype"])
    expected, planted = {}, []
    for n in range(8):
        patient = f"D1-{n + 1:04d}"
        sides = ("L", "R") if n == 0 else (("L",) if n % 2 else ("R",))
        for side in sides:
            label = "Malignant" if (n + (side == "R")) % 2 else "Benign"
            sheet.append(
                [
                    patient,
                    side,
                    92 if n == 1 else 40 + n,
                    2,
                    "mass",
                    label,
                    "Luminal A" if label == "Malignant" else None,
                ]
            )
            for view in ("CC", "MLO"):
                path = raw / patient / f"study-{n}" / f"{side}{view}.dcm"
                planted += _write_mg(path, f"WANG^LI^{n}", patient, side, view, seed=n * 10 + len(planted))
            expected[(patient, side)] = label.lower()
        planted.append(patient)
    # a breast with images but no spreadsheet row: counted, not guessed
    _write_mg(raw / "D1-0099" / "s" / "x.dcm", "ZHAO^MIN", "D1-0099", "L", "CC", seed=999)
    book.save(raw / "CMMD_clinicaldata_revision.xlsx")
    manifest = _small_manifest("cmmd")
    result = build_source(manifest, str(raw), str(tmp_path / "out"), key=KEY)
    dataset = open_dataset(result.dataset_url)
    assert dataset.manifest["counts"]["items_in"] == len(expected) == 9
    assert dataset.manifest["provenance"]["index_skipped"]["image_without_label_row"] == 1
    samples = list(_samples_by_id(dataset).values())
    assert len(samples) == 2 * len(expected)  # every view of every breast
    by_item: dict[str, list[dict]] = {}
    for sample in samples:
        by_item.setdefault(sample["sample_id"].rsplit("-f", 1)[0], []).append(sample)
    for (patient, side), label in expected.items():
        views = by_item[pseudonymise_id(KEY, "cmmd", "item", f"{patient}/{side}")]
        assert len(views) == 2 and {v["image_index"] for v in views} == {0, 1}
        assert {v["label_name"] for v in views} == {label} and {v["laterality"] for v in views} == {side}
        assert {v["view_position"] for v in views} == {"CC", "MLO"}
        assert len({v["split"] for v in views}) == 1
    subject_splits: dict[str, set[str]] = {}
    for sample in samples:
        subject_splits.setdefault(sample["subject_id"], set()).add(sample["split"])
    assert all(len(s) == 1 for s in subject_splits.values())  # patient-level split
    assert max(s["age_years"] for s in samples) == 90
    text = output_text(Path(result.dataset_url))
    for value in [*planted, *PHI_STRINGS, "WANG^LI", "20180911", str(raw)]:
        assert value not in text, f"{value!r} leaked"


# --------------------------------------------------------------------------- CBIS-DDSM (DICOM + case CSVs)


def test_cbis_ddsm_full_mammograms_with_worst_assessment(tmp_path):
    raw = tmp_path / "raw"
    header = ["patient_id", "breast_density", "left or right breast", "image view", "abnormality id",
              "abnormality type", "mass shape", "mass margins", "assessment", "pathology", "subtlety",
              "image file path", "cropped image file path", "ROI mask file path"]  # fmt: skip
    tables: dict[str, list[list[str]]] = {}
    expected, planted = {}, []
    cases = [  # (kind, set, patient, side, view, [(assessment, pathology)...])
        ("Mass", "Training", "P_00001", "LEFT", "CC", [(4, "MALIGNANT"), (3, "BENIGN")]),
        ("Mass", "Training", "P_00004", "RIGHT", "MLO", [(2, "BENIGN_WITHOUT_CALLBACK")]),
        ("Calc", "Training", "P_00005", "LEFT", "MLO", [(0, "BENIGN"), (5, "BENIGN")]),
        ("Mass", "Training", "P_00009", "RIGHT", "CC", [(3, "BENIGN")]),
        ("Calc", "Test", "P_00038", "LEFT", "CC", [(4, "MALIGNANT")]),
        ("Mass", "Test", "P_00016", "LEFT", "MLO", [(5, "MALIGNANT")]),
    ]
    for n, (kind, subset, patient, side, view, findings) in enumerate(cases):
        series = f"{kind}-{subset}_{patient}_{side}_{view}"
        uids = _write_mg(raw / series / "study" / "1-1.dcm", f"DDSM^CASE^{n}", series, side[0], view, seed=n)
        roi = f"{series}_1"
        _write_mg(
            raw / roi / "study" / "1-1.dcm", f"DDSM^CASE^{n}", roi, side[0], view, seed=100 + n
        )  # ROI mask
        name = f"{kind.lower()}_case_description_{'train' if subset == 'Training' else 'test'}_set.csv"
        for k, (assessment, pathology) in enumerate(findings, start=1):
            tables.setdefault(name, []).append(
                [
                    patient,
                    "2",
                    side,
                    view,
                    str(k),
                    "mass" if kind == "Mass" else "calcification",
                    "",
                    "",
                    str(assessment),
                    pathology,
                    "3",
                    f"{series}/{uids[2]}/{uids[1]}/000000.dcm",
                    f"{roi}/x/y/000000.dcm",
                    f"{roi}/x/y/000001.dcm",
                ]
            )
        worst = max(findings, key=lambda f: ["BENIGN_WITHOUT_CALLBACK", "BENIGN", "MALIGNANT"].index(f[1]))[1]
        expected[series] = (max(a for a, _ in findings), worst.lower(), subset == "Test")
        planted += [series, patient, *uids]
    for name in ("mass_case_description_train_set.csv", "mass_case_description_test_set.csv",
                 "calc_case_description_train_set.csv", "calc_case_description_test_set.csv"):  # fmt: skip
        with (raw / name).open("w", newline="") as fh:
            csv.writer(fh).writerows([header, *tables.get(name, [])])
    result = build_source(_small_manifest("cbis_ddsm"), str(raw), str(tmp_path / "out"), key=KEY)
    dataset = open_dataset(result.dataset_url)
    assert dataset.manifest["counts"]["items_in"] == len(cases)  # ROI series are not items
    assert dataset.manifest["provenance"]["index_skipped"]["series_without_label_row"] == len(cases)
    samples = _samples_by_id(dataset)
    for series, (birads, pathology, is_test) in expected.items():
        sample = samples[f"{pseudonymise_id(KEY, 'cbis_ddsm', 'item', series)}-f000"]
        assert (sample["label"], sample["label_name"]) == (birads, f"birads_{birads}")
        assert sample["pathology"] == pathology and (sample["split"] == "test") == is_test
    text = output_text(Path(result.dataset_url))
    for value in [*planted, *PHI_STRINGS, "DDSM^CASE", "20180911", str(raw)]:
        assert value not in text, f"{value!r} leaked"


# --------------------------------------------------------------------------- burned-in masks, pickling


def test_a_mask_rule_masks_burned_in_pixels_instead_of_quarantining(tmp_path):
    """With a per-source mask rule the ultrasound is published, its top band zeroed."""
    raw = tmp_path / "raw"
    us_id = "a" * 32
    write_ultrasound(raw / "train" / f"{us_id}.dicom")  # 32 x 40 RGB, every pixel 200
    ann = raw / "annotations"
    ann.mkdir()
    with (ann / "image_labels_train.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["image_id", "rad_id", *VINDR_GLOBAL], [us_id, "R1", *["0"] * 6]])
    (ann / "image_labels_test.csv").write_text("image_id," + ",".join(VINDR_GLOBAL) + "\n")
    rule = {"action": "mask", "rectangles": [[0.0, 0.0, 1.0, 0.25]]}
    base = load_source_manifest("vindr_cxr")
    manifest = base.model_copy(
        update={"canonical": {**base.canonical, "long_side_px": 40, "burned_in": rule}}
    )
    result = build_source(manifest, str(raw), str(tmp_path / "out"), key=KEY)
    dataset = open_dataset(result.dataset_url)
    assert dataset.manifest["counts"]["quarantined"] == 0
    assert dataset.manifest["canonical"]["burned_in"] == rule
    assert dataset.manifest["deid"]["actions"]["C:pixels_masked"] == 1
    (sample,) = _samples_by_id(dataset).values()
    image = sample["image"]
    assert (sample["valid_rows"], sample["valid_cols"]) == (32, 40)
    assert not image[:8, :40].any()  # the masked band (a quarter of 32 rows)
    assert (image[8:32, :40] == 200).all()  # grey RGB (200, 200, 200) keeps its value


def test_item_function_pickles_and_gives_the_same_result(vindr):
    import pickle

    from pipelines.stages.index import index_source
    from pipelines.stages.transform import make_item_fn

    manifest = vindr["manifest"]
    item = next(it for it in index_source(manifest, vindr["raw"], KEY).items if it.split == "test")
    fn = make_item_fn(manifest, KEY)
    again = pickle.loads(pickle.dumps(fn))
    first, second = fn(item), again(item)
    assert first.quarantine is None and len(first.samples) == 1
    assert np.array_equal(first.samples[0].arrays["image"], second.samples[0].arrays["image"])
    assert first.samples[0].row == second.samples[0].row
    assert TEST_SECRET not in pickle.dumps(first.samples[0].row).decode("latin-1")


# --------------------------------------------------------------------------- pydicom's own files, multi-frame

#: pydicom's bundled test files -> the quarantine code expected, or None when they publish.
REAL_FILES = {
    "CT_small.dcm": None,
    "MR_small_RLE.dcm": None,  # RLE Lossless
    "MR_small_jpeg_ls_lossless.dcm": None,  # JPEG-LS
    "MR_small_jp2klossless.dcm": None,  # JPEG 2000 lossless
    "693_J2KI.dcm": None,  # JPEG 2000
    "JPEG2000.dcm": "burned_in_annotation",  # a secondary-capture SOP class: text presumed
    "rtstruct.dcm": "no_pixel_data",
}


def test_pydicom_test_files_and_a_multiframe_image_build(tmp_path):
    import shutil

    import pydicom
    from pydicom.data import get_testdata_file

    raw = tmp_path / "raw"
    (raw / "train").mkdir(parents=True)
    image_ids, originals = {}, []
    for n, name in enumerate(REAL_FILES):
        path = Path(str(get_testdata_file(name)))
        image_ids[name] = f"{n:032x}"
        shutil.copy(path, raw / "train" / f"{image_ids[name]}.dicom")
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        for keyword in (
            "PatientName",
            "PatientID",
            "StudyInstanceUID",
            "SeriesInstanceUID",
            "SOPInstanceUID",
        ):
            value = str(ds.get(keyword, "") or "")
            if len(value) >= 4:
                originals.append(value)
    # a three-frame CR: one sample per frame, in frame order
    ds = _base("MULTI^FRAME^PAT", "MF-0001", generate_uid(), "20160102", CR_IMAGE)
    ds.Modality, ds.SeriesInstanceUID, ds.NumberOfFrames = "CR", generate_uid(), 3
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 64, 80, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ramp = np.arange(64 * 80, dtype=np.uint16).reshape(64, 80) % 1000
    ds.PixelData = np.stack([ramp + 1000 * k for k in range(3)]).astype(np.uint16).tobytes()
    image_ids["multiframe"] = "f" * 32
    ds.save_as(raw / "train" / f"{image_ids['multiframe']}.dicom", enforce_file_format=True)
    ann = raw / "annotations"
    ann.mkdir()
    with (ann / "image_labels_train.csv").open("w", newline="") as fh:
        rows = [[image_id, "R1", *["0"] * 5, "1"] for image_id in image_ids.values()]
        csv.writer(fh).writerows([["image_id", "rad_id", *VINDR_GLOBAL], *rows])
    (ann / "image_labels_test.csv").write_text("image_id," + ",".join(VINDR_GLOBAL) + "\n")
    manifest = _small_manifest("vindr_cxr", quarantine_max_fraction=0.5)
    result = build_source(manifest, str(raw), str(tmp_path / "out"), key=KEY)
    dataset = open_dataset(result.dataset_url)
    quarantine = pq.read_table(Path(result.dataset_url) / "quarantine.parquet").to_pylist()
    codes = {row["item_id"]: row["code"] for row in quarantine}
    samples = _samples_by_id(dataset)
    for name, code in REAL_FILES.items():
        item_key = pseudonymise_id(KEY, "vindr_cxr", "item", image_ids[name])
        assert codes.get(item_key) == code, name
        if code is None:
            sample = samples[f"{item_key}-f000"]
            assert sample["image"].shape == (SIZE_PX, SIZE_PX) and sample["labels"][-1] == 1
    item_key = pseudonymise_id(KEY, "vindr_cxr", "item", image_ids["multiframe"])
    frames = [samples[f"{item_key}-f{k:03d}"] for k in range(3)]
    assert [f["frame"] for f in frames] == [0, 1, 2] and {f["n_frames"] for f in frames} == {3}
    means = [float(f["image"][: f["valid_rows"], : f["valid_cols"]].mean()) for f in frames]
    assert means[0] < means[1] < means[2]
    text = output_text(Path(result.dataset_url))
    for value in [*originals, "MULTI^FRAME^PAT", "MF-0001", *PHI_STRINGS]:
        assert value not in text, f"{value!r} leaked"
