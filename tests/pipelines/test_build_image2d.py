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
import json
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
from tests.conftest import TEST_SECRET
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


def _output_text(dataset_dir: Path) -> str:
    """Every byte of the output, plus every decoded Parquet value (compressed pages hide strings)."""
    parts: list[str] = []
    for path in sorted(dataset_dir.rglob("*")):
        if path.is_file():
            parts.append(path.read_bytes().decode("latin-1"))
            if path.suffix == ".parquet":
                parts.append(json.dumps(pq.read_table(path).to_pylist(), default=str))
    return "\n".join(parts)


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
    text = _output_text(Path(vindr["result"].dataset_url))
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
    rows = {"train": [], "valid": []}
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
    text = _output_text(Path(chexpert["result"].dataset_url))
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
    text = _output_text(Path(result.dataset_url))
    for value in ("JONES", "2020-04-01", ".png", str(raw)):
        assert value not in text, f"{value!r} leaked"
