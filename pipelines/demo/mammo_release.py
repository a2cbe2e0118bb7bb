"""Mammography releases, each laid out exactly like the real one, with planted identifiers.

* :func:`write_vindr_mammo_release`: PhysioNet ``vindr-mammo/1.0.0``:
  ``images/<study_id>/<image_id>.dicom`` (MG, 14-bit, four views per study) and
  ``breast-level_annotations.csv`` (BI-RADS, density, official training/test split).
* :func:`write_cmmd_release`: TCIA collection ``CMMD``: one DICOM series per breast, as the NBIA
  API stores them (``<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/1-N.dcm``), plus
  ``CMMD_clinicaldata_revision.xlsx`` (published on the TCIA page, not by the API).
* :func:`write_cbis_ddsm_release`: TCIA collection ``CBIS-DDSM``: full mammogram series
  (``Mass-Training_P_00001_LEFT_CC``) and their ROI-mask series (``..._1``), plus the four
  case-description CSVs (published on the TCIA page).

Pixels come from :func:`pipelines.demo.imaging.mammo_phantom`. Each writer returns a
:class:`~pipelines.demo.cxr_release.Release` of :class:`~pipelines.demo.imaging.PlantedItem`.
For the TCIA collections, ``series_root`` is the collection folder (``<root>/<Collection>/``)
and ``labels_root`` where the web-page downloads go; the demo serves the first over the
NBIA API and the second over plain HTTPS.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from pipelines.demo.cxr_release import Release
from pipelines.demo.imaging import (
    INSTITUTIONS,
    MG_IMAGE_STORAGE,
    STREETS,
    PlantedItem,
    dicom_identifiers,
    dicom_with_phi,
    mammo_phantom,
    person,
    save_dicom,
    set_pixels,
    write_csv,
    write_xlsx,
)

VIEWS = (("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO"))
CBIS_HEADER = [
    "patient_id", "breast_density", "left or right breast", "image view", "abnormality id",
    "abnormality type", "mass shape", "mass margins", "assessment", "pathology", "subtlety",
    "image file path", "cropped image file path", "ROI mask file path",
]  # fmt: skip
CMMD_XLSX = "CMMD_clinicaldata_revision.xlsx"
CBIS_FILES = (
    "mass_case_description_train_set.csv",
    "mass_case_description_test_set.csv",
    "calc_case_description_train_set.csv",
    "calc_case_description_test_set.csv",
)


def _mg(
    rng: np.random.Generator,
    *,
    name: str,
    patient_id: str,
    side: str,
    view: str,
    size: tuple[int, int],
    study_date: str,
    birth: str,
    study_uid: str | None = None,
    institution: str = INSTITUTIONS[0],
):
    ds = dicom_with_phi(
        sop_class=MG_IMAGE_STORAGE,
        modality="MG",
        patient_name=name,
        patient_id=patient_id,
        birth_date=birth,
        study_date=study_date,
        institution=institution,
        address=STREETS[int(rng.integers(len(STREETS)))],
        study_uid=study_uid,
    )
    ds.ImageLaterality, ds.ViewPosition = side, view
    ds.PixelSpacing = [0.085, 0.085]
    set_pixels(ds, mammo_phantom(*size, rng, side=side, view=view), bits_stored=14)
    return ds


def _dates(rng: np.random.Generator) -> tuple[str, str]:
    studied = dt.date(2018, 1, 1) + dt.timedelta(days=int(rng.integers(0, 1400)))
    birth = dt.date(1940, 1, 1) + dt.timedelta(days=int(rng.integers(0, 14000)))
    return studied.strftime("%Y%m%d"), birth.strftime("%Y%m%d")


# --------------------------------------------------------------------------- VinDr-Mammo


def write_vindr_mammo_release(
    root: str | Path,
    n_studies: int,
    *,
    seed: int = 5,
    size: tuple[int, int] = (512, 400),
    views: tuple[tuple[str, str], ...] = VIEWS,
    test_every: int = 4,
) -> Release:
    """``n_studies`` examinations, one image per (side, view); every ``test_every``-th study is test."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    table = [["study_id", "series_id", "image_id", "laterality", "view_position", "height", "width",
              "breast_birads", "breast_density", "split"]]  # fmt: skip
    items: list[PlantedItem] = []
    for n in range(n_studies):
        study_id = rng.bytes(16).hex()
        first, last = person(rng)
        name = f"{last.upper()}^THI^{first.upper()}"
        patient_id = f"MAMMO-{int(rng.integers(10**5, 10**6))}"
        studied, birth = _dates(rng)
        split = "test" if n % test_every == test_every - 1 else "training"
        density = str(rng.choice(["DENSITY A", "DENSITY B", "DENSITY C", "DENSITY D"]))
        birads_by_side = {s: int(rng.choice([1, 1, 2, 2, 3, 4, 5])) for s in ("L", "R")}
        study_uid = None
        for side, view in views:
            image_id = rng.bytes(16).hex()
            ds = _mg(rng, name=name, patient_id=patient_id, side=side, view=view, size=size,
                     study_date=studied, birth=birth, study_uid=study_uid)  # fmt: skip
            study_uid = str(ds.StudyInstanceUID)
            save_dicom(ds, root / "images" / study_id / f"{image_id}.dicom")
            birads = birads_by_side[side]
            table.append([study_id, str(ds.SeriesInstanceUID), image_id, side, view, str(size[0]), str(size[1]),
                          f"BI-RADS {birads}", density, split])  # fmt: skip
            items.append(
                PlantedItem(
                    image_id,
                    "test" if split == "test" else "train",
                    birads - 1,
                    (image_id, study_id, *dicom_identifiers(ds)),
                    (studied, birth),
                    {"side": side, "view": view, "density": density},
                )
            )
    write_csv(root / "breast-level_annotations.csv", table)
    return Release(items)


# --------------------------------------------------------------------------- CMMD


def write_cmmd_release(
    series_root: str | Path,
    labels_root: str | Path,
    n_patients: int,
    *,
    seed: int = 6,
    size: tuple[int, int] = (512, 400),
) -> Release:
    """CMMD: ``n_patients`` patients (``D1-0001``...), one breast each, both breasts for every
    fourth; one series of two views (CC, MLO) per breast; the clinical xlsx in ``labels_root``."""
    series_root, labels_root = Path(series_root), Path(labels_root)
    rng = np.random.default_rng(seed)
    sheet: list[list[object]] = [
        ["ID1", "LeftRight", "Age", "number", "abnormality", "classification", "subtype"]
    ]
    items: list[PlantedItem] = []
    for n in range(n_patients):
        patient = f"D1-{n + 1:04d}"
        first, last = person(rng)
        name = f"{last.upper()}^{first.upper()}"
        studied, birth = _dates(rng)
        sides = ("L", "R") if n % 4 == 0 else (str(rng.choice(["L", "R"])),)
        age = int(rng.choice([int(rng.integers(30, 89)), int(rng.integers(90, 96))], p=[0.85, 0.15]))
        study_uid = None
        for side in sides:
            malignant = bool(rng.random() < 0.6)
            label = "Malignant" if malignant else "Benign"
            abnormality = str(rng.choice(["mass", "calcification", "both"]))
            subtype = (
                str(rng.choice(["Luminal A", "Luminal B", "HER2-enriched", "triple negative"]))
                if malignant
                else None
            )
            sheet.append([patient, side, age, 2, abnormality, label, subtype])
            identifiers: list[str] = [patient]
            series_uid = None
            for k, view in enumerate(("CC", "MLO"), start=1):
                ds = _mg(rng, name=name, patient_id=patient, side=side, view=view, size=size,
                         study_date=studied, birth=birth, study_uid=study_uid)  # fmt: skip
                study_uid = str(ds.StudyInstanceUID)
                if series_uid is not None:
                    ds.SeriesInstanceUID = series_uid
                series_uid = str(ds.SeriesInstanceUID)
                save_dicom(ds, series_root / patient / study_uid / series_uid / f"1-{k}.dcm")
                identifiers += dicom_identifiers(ds)
            items.append(
                PlantedItem(
                    f"{patient}/{side}",
                    "",
                    int(malignant),
                    tuple(identifiers),
                    (studied, birth),
                    {"side": side, "age": age, "label_name": label.lower(), "patient": patient},
                )
            )
    write_xlsx(labels_root / CMMD_XLSX, sheet)
    return Release(items)


# --------------------------------------------------------------------------- CBIS-DDSM


def write_cbis_ddsm_release(
    series_root: str | Path,
    labels_root: str | Path,
    n_cases: int,
    *,
    seed: int = 7,
    size: tuple[int, int] = (512, 320),
) -> Release:
    """CBIS-DDSM: ``n_cases`` full mammograms (about a quarter test), each with one to three
    abnormalities in its case-description CSV and an ROI-mask series per abnormality."""
    series_root, labels_root = Path(series_root), Path(labels_root)
    rng = np.random.default_rng(seed)
    tables: dict[str, list[list[str]]] = {name: [] for name in CBIS_FILES}
    items: list[PlantedItem] = []
    rank = ["BENIGN_WITHOUT_CALLBACK", "BENIGN", "MALIGNANT"]
    for n in range(n_cases):
        kind = "Mass" if n % 2 == 0 else "Calc"
        subset = "Test" if n % 4 == 3 else "Training"
        patient = f"P_{1 + 7 * n + int(rng.integers(0, 7)):05d}"  # unique per case
        side, view = ("LEFT", "RIGHT")[n % 2 == 1], ("CC", "MLO")[(n // 2) % 2]
        series_name = f"{kind}-{subset}_{patient}_{side}_{view}"
        first, last = person(rng)
        name = f"{last.upper()}^{first.upper()}"
        studied, birth = _dates(rng)
        ds = _mg(rng, name=name, patient_id=series_name, side=side[0], view=view, size=size,
                 study_date=studied, birth=birth)  # fmt: skip
        study, series = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
        save_dicom(ds, series_root / series_name / study / series / "1-1.dcm")
        identifiers = [series_name, patient, *dicom_identifiers(ds)]
        findings = []
        for k in range(1, int(rng.integers(1, 4)) + 1):
            assessment = int(rng.choice([2, 3, 4, 4, 5]))
            pathology = rank[min(2, max(0, assessment - 3 + int(rng.integers(0, 2))))]
            findings.append((assessment, pathology))
            roi_name = f"{series_name}_{k}"
            roi = _mg(rng, name=name, patient_id=roi_name, side=side[0], view=view, size=(64, 48),
                      study_date=studied, birth=birth)  # fmt: skip
            save_dicom(
                roi,
                series_root / roi_name / str(roi.StudyInstanceUID) / str(roi.SeriesInstanceUID) / "1-1.dcm",
            )
            identifiers += [roi_name, *dicom_identifiers(roi)]
            table = f"{kind.lower()}_case_description_{'train' if subset == 'Training' else 'test'}_set.csv"
            tables[table].append([
                patient, str(int(rng.integers(1, 5))), side, view, str(k),
                "mass" if kind == "Mass" else "calcification", "OVAL" if kind == "Mass" else "",
                "CIRCUMSCRIBED" if kind == "Mass" else "", str(assessment), pathology, str(int(rng.integers(1, 6))),
                f"{series_name}/{study}/{series}/000000.dcm",
                f"{roi_name}/{roi.StudyInstanceUID}/{roi.SeriesInstanceUID}/000001.dcm",
                f"{roi_name}/{roi.StudyInstanceUID}/{roi.SeriesInstanceUID}/000000.dcm",
            ])  # fmt: skip
        worst = max(findings, key=lambda f: rank.index(f[1]))[1]
        birads = max(a for a, _ in findings)
        items.append(
            PlantedItem(
                series_name,
                "test" if subset == "Test" else "",
                birads,
                tuple(identifiers),
                (studied, birth),
                {"pathology": worst.lower(), "rois": len(findings)},
            )
        )
    for name, rows in tables.items():
        write_csv(labels_root / name, [CBIS_HEADER, *rows])
    return Release(items)
