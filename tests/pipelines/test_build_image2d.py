"""End to end: 2D radiology sources built from raw folders laid out like their real releases.

Provenance of the inputs (all made here, none copied): the demo's release generators
(:mod:`pipelines.demo.cxr_release`, :mod:`pipelines.demo.mammo_release`; one per source, shared
with ``climb demo``) write DICOM files with pydicom carrying planted PHI (names, IDs, birth and
study dates, addresses, institution, a private block copying the name, original UIDs), JPEG
files with Pillow with EXIF naming a person and a date, PNG files with text chunks doing the
same, and the label tables in each release's own layout (CSV, csv.gz, xlsx). The pictures are
phantoms (chest radiographs, mammograms), not noise. The built datasets are opened with the
reader and checked against what the generators say they wrote: counts per split, labels,
MONOCHROME1 inversion, pixels, and no identifying string anywhere in the output bytes. Faults
(garbage, truncated files, an ultrasound with burned-in text) are added here, by the tests.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from manifests import open_dataset
from manifests.schema import load_source_manifest
from pipelines.demo.cxr_release import (
    VINDR_GLOBAL,
    VINDR_LOCAL,
    write_chexpert_release,
    write_coronahack_release,
    write_covid19_xray_release,
    write_mimic_cxr_release,
    write_vindr_cxr_release,
)
from pipelines.demo.imaging import (
    INSTITUTIONS,
    MG_IMAGE_STORAGE,
    PlantedItem,
    dicom_with_phi,
    mammo_phantom,
    save_dicom,
    set_pixels,
)
from pipelines.demo.mammo_release import (
    CMMD_XLSX,
    write_cbis_ddsm_release,
    write_cmmd_release,
    write_vindr_mammo_release,
)
from pipelines.stages.build import BuildConfig, build_source
from pipelines.stages.index import split_for_subject
from tests.conftest import TEST_SECRET, output_text
from tests.transforms.dicom.synthetic import CR_IMAGE, PHI_STRINGS, _base, write_ultrasound
from transforms.pseudonyms import DeidKey, pseudonymise_id

KEY = DeidKey(TEST_SECRET.encode())
SIZE_PX = 128
RNG_SEED = 7


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


def _sample(samples: dict[str, dict], namespace: str, item_id: str) -> dict:
    return samples[f"{pseudonymise_id(KEY, namespace, 'item', item_id)}-f000"]


def _assert_nothing_planted_leaks(text: str, items: list[PlantedItem], *extra: str) -> None:
    """No planted identifier, and no planted date in any of its written forms, in ``text``."""
    for item in items:
        for value in item.identifiers:
            assert value not in text, f"{item.item_id}: planted {value!r} leaked"
        for date in item.dates:
            for form in (date, f"{date[:4]}-{date[4:6]}-{date[6:]}", f"{date[:4]}:{date[4:6]}:{date[6:]}"):
                assert form not in text, f"{item.item_id}: original date {form} leaked"
    for value in extra:
        assert value not in text, f"{value!r} leaked"


# --------------------------------------------------------------------------- VinDr-CXR (DICOM)

VINDR_SPLITS = ["train"] * 6 + ["test"] * 3
VINDR_SIZES = ((96, 128), (96, 128), (160, 120), (96, 128))  # cycled; (96, 128) is not resized
VINDR_PHOTOMETRIC = ["MONOCHROME2", "MONOCHROME1", *["MONOCHROME2"] * 5, "MONOCHROME1", "MONOCHROME2"]


@pytest.fixture(scope="module")
def vindr(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The demo's VinDr-CXR generator (9 images) plus three bad items added here."""
    raw = tmp_path_factory.mktemp("raw") / "vindr_cxr"
    release = write_vindr_cxr_release(
        raw,
        len(VINDR_SPLITS),
        seed=RNG_SEED,
        sizes=VINDR_SIZES,
        splits=VINDR_SPLITS,
        photometric=VINDR_PHOTOMETRIC,
        pixel_spacing_mm=0.2,
    )
    # bad items: garbage named .dicom, a truncated DICOM, an ultrasound (burned-in text presumed)
    rng = np.random.default_rng(RNG_SEED + 100)  # not the generator's stream: other ids
    garbage_id, truncated_id, us_id = (rng.bytes(16).hex() for _ in range(3))
    (raw / "train" / f"{garbage_id}.dicom").write_bytes(b"this is not a DICOM file at all\n" * 4)
    good = raw / "train" / f"{release.items[2].item_id}.dicom"
    (raw / "train" / f"{truncated_id}.dicom").write_bytes(good.read_bytes()[:900])
    write_ultrasound(raw / "train" / f"{us_id}.dicom")
    bad = {
        garbage_id: "not_dicom|unreadable_dicom",
        truncated_id: "unreadable_dicom|no_pixel_data|undecodable_pixels|not_dicom",
        us_id: "burned_in_annotation",
    }
    with (raw / "annotations" / "image_labels_train.csv").open("a", newline="") as fh:
        for image_id in bad:
            for r in range(3):
                csv.writer(fh).writerow(
                    [image_id, f"R{r + 1}", *["0"] * (len(VINDR_LOCAL) + len(VINDR_GLOBAL))]
                )
    out = tmp_path_factory.mktemp("out")
    manifest = _small_manifest("vindr_cxr", quarantine_max_fraction=0.5)
    result = build_source(manifest, str(raw), str(out), BuildConfig(items_per_shard=4), key=KEY)
    return {
        "raw": raw,
        "items": release.items,
        "bad": bad,
        "result": result,
        "dataset": open_dataset(result.dataset_url),
        "manifest": manifest,
    }


def test_vindr_counts_splits_and_labels(vindr):
    dataset, items = vindr["dataset"], vindr["items"]
    counts = dataset.manifest["counts"]
    assert counts["items_in"] == len(items) + len(vindr["bad"])
    assert counts["quarantined"] == len(vindr["bad"])
    assert {s: len(dataset.split(s)) for s in dataset.splits} == {"train": 6, "test": 3}
    samples = _samples_by_id(dataset)
    classes = vindr["manifest"].labels.classes
    for item in items:
        sample = _sample(samples, "vindr_cxr", item.item_id)
        assert sample["split"] == item.split
        assert sample["labels"] == [item.label[c] for c in classes]
        assert sample["n_readers"] == item.extra["n_readers"] == (3 if item.split == "train" else 1)
        assert sample["image"].shape == (SIZE_PX, SIZE_PX) and sample["image"].dtype == np.uint16
        rows, cols = item.extra["pixels"].shape
        assert (sample["original_rows"], sample["original_cols"]) == (rows, cols)
        scale = SIZE_PX / max(rows, cols)
        assert (sample["valid_rows"], sample["valid_cols"]) == (round(rows * scale), round(cols * scale))
        assert sample["pixel_spacing_mm"] == pytest.approx([0.2 / scale, 0.2 / scale], rel=0.02)
        assert not sample["image"][sample["valid_rows"] :, :].any()  # padding is zero
        assert sample["modality"] == "CR" and sample["view_position"] == "PA"


def test_vindr_monochrome1_is_inverted(vindr):
    """The MONOCHROME1 file stores 4095 - picture; the output shows the picture (bright = dense)."""
    samples = _samples_by_id(vindr["dataset"])
    mono2_item, mono1_item = vindr["items"][0], vindr["items"][1]
    assert (mono2_item.extra["photometric"], mono1_item.extra["photometric"]) == (
        "MONOCHROME2",
        "MONOCHROME1",
    )
    mono2 = _sample(samples, "vindr_cxr", mono2_item.item_id)
    mono1 = _sample(samples, "vindr_cxr", mono1_item.item_id)
    top = 2**12 - 1  # BitsStored 12, no rescale and no window: the stored range
    stored = pydicom.dcmread(vindr["raw"] / "train" / f"{mono1_item.item_id}.dicom").pixel_array
    picture = mono1_item.extra["pixels"]
    assert np.array_equal(stored, top - picture)  # the file holds the inverted values
    assert mono1["inverted"] and not mono2["inverted"]
    assert mono1["max_value"] == mono2["max_value"] == top
    assert np.array_equal(mono2["image"][:96, :128], mono2_item.extra["pixels"])
    assert np.array_equal(mono1["image"][:96, :128], picture)
    # a chest phantom, not noise: lungs (dark) inside a brighter body, the spine brightest
    assert picture[48, 64] > picture[48, 38] and picture[48, 10] > picture[48, 38]


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
    _assert_nothing_planted_leaks(
        text, vindr["items"], *PHI_STRINGS, INSTITUTIONS[0], "19300215", str(vindr["raw"]), ".dicom"
    )
    deid = vindr["dataset"].manifest["deid"]
    assert deid["actions"] and deid["namespace"] == "vindr_cxr"
    assert any(name.startswith("X:private") for name in deid["actions"])
    assert "PS3.15" in deid["method"]
    canonical = vindr["dataset"].manifest["canonical"]
    assert canonical["array"]["shape"] == [SIZE_PX, SIZE_PX]


# --------------------------------------------------------------------------- CheXpert (JPEG)


@pytest.fixture(scope="module")
def chexpert(tmp_path_factory: pytest.TempPathFactory) -> dict:
    raw = tmp_path_factory.mktemp("raw") / "chexpert"
    release = write_chexpert_release(
        raw, 8, seed=RNG_SEED + 1, valid_patients=3, sizes=((150, 120), (100, 128))
    )
    out = tmp_path_factory.mktemp("out")
    result = build_source(
        _small_manifest("chexpert"), str(raw), str(out), BuildConfig(items_per_shard=5), key=KEY
    )
    return {"raw": raw, "items": release.items, "result": result, "dataset": open_dataset(result.dataset_url)}


def test_chexpert_splits_labels_and_pixels(chexpert):
    dataset = chexpert["dataset"]
    assert dataset.manifest["counts"]["quarantined"] == 0
    sizes = {s: len(dataset.split(s)) for s in dataset.splits}
    assert sizes.get("test") == 6 and sizes.get("train", 0) + sizes.get("val", 0) == 16
    samples = _samples_by_id(dataset)
    subjects_by_split: dict[str, set[str]] = {}
    for item in chexpert["items"]:
        sample = _sample(samples, "chexpert", item.item_id)
        pixels = item.extra["pixels"]
        subjects_by_split.setdefault(sample["split"], set()).add(sample["subject_id"])
        assert (sample["split"] == "test") == (item.split == "test") == ("/valid/" in item.item_id)
        assert sample["labels"] == item.label  # 14 labels, No Finding first, uncertain kept as -1
        assert len(sample["labels"]) == 14
        assert sample["image"].dtype == np.uint8 and sample["image"].shape == (SIZE_PX, SIZE_PX)
        assert (sample["original_rows"], sample["original_cols"]) == pixels.shape
        assert sample["age_years"] == min(item.extra["age"], 90)
        if pixels.shape[1] == SIZE_PX:  # not resized: JPEG round trip within lossy-coding error
            valid = sample["image"][: pixels.shape[0], :].astype(float)
            assert abs(valid.mean() - pixels.mean()) < 2.0
            assert np.abs(valid - pixels).mean() < 4.0
    splits = list(subjects_by_split)
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            assert not subjects_by_split[a] & subjects_by_split[b], "a patient spans two splits"


def test_chexpert_no_identifier_in_output(chexpert):
    text = output_text(Path(chexpert["result"].dataset_url))
    _assert_nothing_planted_leaks(text, chexpert["items"], "view1_frontal", str(chexpert["raw"]))
    actions = chexpert["dataset"].manifest["deid"]["actions"]
    assert actions["X:container_metadata"] == len(chexpert["items"]) == 22


# --------------------------------------------------------------------------- COVID-19 X-ray (PNG/JPEG)


def test_covid19_xray_class_folders(tmp_path):
    raw = tmp_path / "raw"
    release = write_covid19_xray_release(raw, 2, seed=RNG_SEED + 2, size=(96, 128), colour_every=2)
    assert any(p.suffix == ".png" for p in raw.rglob("*")) and any(
        p.suffix == ".jpeg" for p in raw.rglob("*")
    )
    colour = [p for p in raw.rglob("*.png") if Image.open(p).mode == "RGB"]
    assert colour, "no colour PNG: the luma conversion is not exercised"
    result = build_source(_small_manifest("covid19_xray"), str(raw), str(tmp_path / "out"), key=KEY)
    dataset = open_dataset(result.dataset_url)
    assert {s: len(dataset.split(s)) for s in dataset.splits} == {"train": 8, "test": 8}
    samples = _samples_by_id(dataset)
    for item in release.items:
        sample = _sample(samples, "covid19_xray", item.item_id)
        assert sample["label"] == item.label and sample["split"] == item.split
        diff = np.abs(sample["image"][:96, :].astype(int) - item.extra["pixels"].astype(int))
        assert diff.max() <= 1 if item.extra["lossless"] else diff.mean() < 4.0
    text = output_text(Path(result.dataset_url))
    _assert_nothing_planted_leaks(text, release.items, ".png", ".jpeg", str(raw))


# --------------------------------------------------------------------------- CoronaHack (JPEG + CSV)


def test_coronahack_metadata_csv(tmp_path):
    raw = tmp_path / "raw"
    release = write_coronahack_release(raw, 1, seed=RNG_SEED + 3, size=(80, 100))
    manifest = _small_manifest("coronahack")
    result = build_source(manifest, str(raw), str(tmp_path / "out"), key=KEY)
    dataset = open_dataset(result.dataset_url)
    assert {s: len(dataset.split(s)) for s in dataset.splits} == {"train": 5, "test": 5}
    # ARDS / Stress-Smoking: outside the three classes, counted, not guessed
    assert (
        dataset.manifest["provenance"]["index_skipped"]["label_outside_classes"] == len(release.skipped) == 2
    )
    samples = _samples_by_id(dataset)
    for item in release.items:
        sample = _sample(samples, "coronahack", item.item_id)
        assert (sample["label_name"], sample["split"]) == (item.label, item.split)
        assert sample["virus_category"] == item.extra["virus_category"]
        assert sample["label"] == manifest.labels.classes.index(item.label)
    text = output_text(Path(result.dataset_url))
    _assert_nothing_planted_leaks(text, release.planted, "2018:01:12", str(raw))


# --------------------------------------------------------------------------- MIMIC-CXR-JPG


def test_mimic_cxr_official_split_and_study_labels(tmp_path):
    raw = tmp_path / "raw"
    splits = ["train", "train", "validate", "test", "train", "test"]
    release = write_mimic_cxr_release(raw, len(splits), seed=RNG_SEED + 4, splits=splits, sizes=((100, 90),))
    manifest = _small_manifest("mimic_cxr")
    official = build_source(
        manifest, str(raw), str(tmp_path / "out"), BuildConfig(split_policy="official"), key=KEY
    )
    dataset = open_dataset(official.dataset_url)
    assert {s: len(dataset.split(s)) for s in dataset.splits} == {"train": 6, "val": 2, "test": 4}
    samples = _samples_by_id(dataset)
    for item in release.items:
        sample = _sample(samples, "mimic", item.item_id)
        assert sample["split"] == item.extra["official_split"] and sample["labels"] == item.label
    # the default (shared with MIMIC-IV): one keyed-hash split per patient, the same in both sources
    result = build_source(manifest, str(raw), str(tmp_path / "out"), key=KEY)
    hashed = _samples_by_id(open_dataset(result.dataset_url))
    assert len(hashed) == len(release.items)
    for item in release.items:
        sample = _sample(hashed, "mimic", item.item_id)
        subject = item.extra["subject"]
        assert sample["split"] == split_for_subject(subject, "mimic", manifest.split.fractions)
        assert sample["subject_id"] == pseudonymise_id(KEY, "mimic", "subject", subject)
    text = output_text(Path(result.dataset_url))
    _assert_nothing_planted_leaks(text, release.items, str(raw))


# --------------------------------------------------------------------------- VinDr-Mammo (DICOM)


def test_vindr_mammo_breast_level_birads(tmp_path):
    raw = tmp_path / "raw"
    views = (("L", "CC"), ("R", "MLO"))
    release = write_vindr_mammo_release(raw, 6, seed=RNG_SEED + 5, size=(160, 128), views=views, test_every=3)
    result = build_source(_small_manifest("vindr_mammo"), str(raw), str(tmp_path / "out"), key=KEY)
    dataset = open_dataset(result.dataset_url)
    assert {s: len(dataset.split(s)) for s in dataset.splits} == {"train": 8, "test": 4}
    samples = _samples_by_id(dataset)
    for item in release.items:
        sample = _sample(samples, "vindr_mammo", item.item_id)
        assert (sample["label"], sample["split"]) == (item.label, item.split)
        assert sample["breast_density"] == item.extra["density"]
        assert (sample["laterality"], sample["view_position"], sample["modality"]) == (
            item.extra["side"],
            item.extra["view"],
            "MG",
        )
        assert sample["image"].dtype == np.uint16 and sample["max_value"] == 2**14 - 1
    text = output_text(Path(result.dataset_url))
    _assert_nothing_planted_leaks(text, release.items, str(raw))
    assert dataset.manifest["deid"]["actions"]


# --------------------------------------------------------------------------- CMMD (DICOM + xlsx)


def test_cmmd_breast_items_from_the_clinical_xlsx(tmp_path):
    from openpyxl import load_workbook  # type: ignore[import-untyped]

    raw = tmp_path / "raw"
    release = write_cmmd_release(raw, raw, 8, seed=RNG_SEED + 6, size=(160, 100))
    # the generator's workbook (written without a spreadsheet library) opens in openpyxl
    sheet = list(load_workbook(raw / CMMD_XLSX).active.values)
    assert sheet[0][:2] == ("ID1", "LeftRight") and len(sheet) == len(release.items) + 1
    rows = {(r[0], r[1]): r for r in sheet[1:]}
    for item in release.items:
        patient, side = item.item_id.split("/")
        assert rows[(patient, side)][2] == item.extra["age"]
        assert rows[(patient, side)][5].lower() == item.extra["label_name"]
    # a breast with images but no spreadsheet row: counted, not guessed
    orphan = dicom_with_phi(sop_class=MG_IMAGE_STORAGE, modality="MG", patient_name="ZHAO^MIN",
                            patient_id="D1-0099", birth_date="19500101", study_date="20180911",
                            institution=INSTITUTIONS[1], address="1 Road")  # fmt: skip
    orphan.ImageLaterality, orphan.ViewPosition = "L", "CC"
    rng = np.random.default_rng(999)
    set_pixels(orphan, mammo_phantom(64, 40, rng, side="L", view="CC"), bits_stored=14)
    save_dicom(orphan, raw / "D1-0099" / "s" / "x" / "1-1.dcm")
    manifest = _small_manifest("cmmd")
    result = build_source(manifest, str(raw), str(tmp_path / "out"), key=KEY)
    dataset = open_dataset(result.dataset_url)
    assert dataset.manifest["counts"]["items_in"] == len(release.items)
    assert dataset.manifest["provenance"]["index_skipped"]["image_without_label_row"] == 1
    samples = list(_samples_by_id(dataset).values())
    assert len(samples) == 2 * len(release.items)  # every view of every breast
    by_item: dict[str, list[dict]] = {}
    for sample in samples:
        by_item.setdefault(sample["sample_id"].rsplit("-f", 1)[0], []).append(sample)
    for item in release.items:
        views = by_item[pseudonymise_id(KEY, "cmmd", "item", item.item_id)]
        assert len(views) == 2 and {v["image_index"] for v in views} == {0, 1}
        assert {v["label_name"] for v in views} == {item.extra["label_name"]}
        assert {v["label"] for v in views} == {item.label}
        assert {v["laterality"] for v in views} == {item.extra["side"]}
        assert {v["view_position"] for v in views} == {"CC", "MLO"}
        assert {v["age_years"] for v in views} == {min(item.extra["age"], 90)}
        assert len({v["split"] for v in views}) == 1
    subject_splits: dict[str, set[str]] = {}
    for sample in samples:
        subject_splits.setdefault(sample["subject_id"], set()).add(sample["split"])
    assert all(len(s) == 1 for s in subject_splits.values())  # patient-level split
    text = output_text(Path(result.dataset_url))
    _assert_nothing_planted_leaks(text, release.items, "ZHAO^MIN", "D1-0099", str(raw))


# --------------------------------------------------------------------------- CBIS-DDSM (DICOM + case CSVs)


def test_cbis_ddsm_full_mammograms_with_worst_assessment(tmp_path):
    raw = tmp_path / "raw"
    release = write_cbis_ddsm_release(raw, raw, 6, seed=RNG_SEED + 7, size=(160, 100))
    result = build_source(_small_manifest("cbis_ddsm"), str(raw), str(tmp_path / "out"), key=KEY)
    dataset = open_dataset(result.dataset_url)
    assert dataset.manifest["counts"]["items_in"] == len(release.items)  # ROI series are not items
    rois = sum(item.extra["rois"] for item in release.items)
    assert dataset.manifest["provenance"]["index_skipped"]["series_without_label_row"] == rois
    samples = _samples_by_id(dataset)
    for item in release.items:
        sample = _sample(samples, "cbis_ddsm", item.item_id)
        assert (sample["label"], sample["label_name"]) == (item.label, f"birads_{item.label}")
        assert sample["pathology"] == item.extra["pathology"]
        assert (sample["split"] == "test") == (item.split == "test")
    text = output_text(Path(result.dataset_url))
    _assert_nothing_planted_leaks(text, release.items, str(raw))


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
