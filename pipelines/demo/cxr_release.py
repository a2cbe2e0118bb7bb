"""Chest radiograph releases, each laid out exactly like the real one, with planted identifiers.

* :func:`write_vindr_cxr_release`: PhysioNet ``vindr-cxr/1.0.0``: ``train/<image_id>.dicom``,
  ``test/<image_id>.dicom`` (CR, 12-bit, some MONOCHROME1), ``annotations/image_labels_{train,test}.csv``
  (train: one row per radiologist, three readers; test: one consensus row).
* :func:`write_chexpert_release`: Stanford AIMI ``CheXpert-v1.0/{train,valid}/patientNNNNN/studyN/viewN_frontal.jpg``
  with ``train.csv`` / ``valid.csv`` (14 observations, 1.0 / 0.0 / -1.0 / blank).
* :func:`write_mimic_cxr_release`: PhysioNet ``mimic-cxr-jpg/2.0.0``: ``files/pNN/pSUBJECT/sSTUDY/<dicom_id>.jpg``
  and the ``mimic-cxr-2.0.0-{split,chexpert,metadata}.csv.gz`` tables.
* :func:`write_covid19_xray_release`: Kaggle ``darshan1504/covid19-detection-xray-dataset``:
  ``{TrainData,ValData}/<class folder>/<image>`` (PNG and JPEG, one colour PNG).
* :func:`write_coronahack_release`: Kaggle ``praveengovi/coronahack-chest-xraydataset``:
  ``Coronahack-Chest-XRay-Dataset/Coronahack-Chest-XRay-Dataset/{train,test}/<image>.jpeg`` and
  ``Chest_xray_Corona_Metadata.csv`` (with the ARDS / Streptococcus rows outside the three classes).

Pixels come from :func:`pipelines.demo.imaging.chest_phantom`. Each writer returns a
:class:`Release`: one :class:`~pipelines.demo.imaging.PlantedItem` per item the pipeline should
publish, with the expected split and label in the pipeline's terms, and in ``skipped`` the
items it must leave out by design (CoronaHack rows outside the three classes).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.demo.imaging import (
    CR_IMAGE_STORAGE,
    INSTITUTIONS,
    STREETS,
    PlantedItem,
    chest_phantom,
    dicom_identifiers,
    dicom_with_phi,
    person,
    save_dicom,
    set_pixels,
    to_uint8,
    write_csv,
    write_jpeg,
    write_png,
)

VINDR_LOCAL = (
    "Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Clavicle fracture",
    "Consolidation", "Edema", "Emphysema", "Enlarged PA", "ILD", "Infiltration", "Lung Opacity",
    "Lung cavity", "Lung cyst", "Mediastinal shift", "Nodule/Mass", "Pleural effusion",
    "Pleural thickening", "Pneumothorax", "Pulmonary fibrosis", "Rib fracture", "Other lesion",
)  # fmt: skip
VINDR_GLOBAL = ("COPD", "Lung tumor", "Pneumonia", "Tuberculosis", "Other diseases", "No finding")
#: VinDr-CXR's global label -> the manifest's class name.
VINDR_CLASS = {
    "Lung tumor": "lung_tumor",
    "Pneumonia": "pneumonia",
    "Tuberculosis": "tuberculosis",
    "Other diseases": "other_diseases",
    "COPD": "copd",
    "No finding": "no_finding",
}
CHEXPERT_HEADERS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
    "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
    "Pleural Other", "Fracture", "Support Devices",
)  # fmt: skip
COVID_FOLDERS = ("Normal", "BacterialPneumonia", "ViralPneumonia", "COVID-19")
#: CoronaHack metadata (Label, Label_2_Virus_category, Label_1_Virus_category) -> class name (None: skipped).
CORONAHACK_CASES = (
    ("Normal", "", "", "normal"),
    ("Pnemonia", "", "bacteria", "pneumonia_bacterial"),
    ("Pnemonia", "", "Virus", "pneumonia_viral"),
    ("Pnemonia", "COVID-19", "Virus", "pneumonia_viral"),
    ("Pnemonia", "ARDS", "Stress-Smoking", None),
    ("Pnemonia", "Streptococcus", "bacteria", "pneumonia_bacterial"),
)


@dataclass
class Release:
    """What a generator wrote: the published items and the items the pipeline must skip."""

    items: list[PlantedItem]
    skipped: list[PlantedItem] = field(default_factory=list)

    @property
    def planted(self) -> list[PlantedItem]:
        return [*self.items, *self.skipped]


def _date(rng: np.random.Generator, start: dt.date, days: int) -> dt.date:
    return start + dt.timedelta(days=int(rng.integers(0, days)))


def _uncertain_states(rng: np.random.Generator, n: int) -> list[str]:
    """CheXpert-style observation cells: mostly blank, some positive, negative or uncertain."""
    return [str(s) for s in rng.choice(["1.0", "0.0", "-1.0", ""], size=n, p=[0.2, 0.15, 0.1, 0.55])]


def _label_values(states: Sequence[str]) -> list[int | None]:
    return [None if s == "" else int(float(s)) for s in states]


# --------------------------------------------------------------------------- VinDr-CXR


def write_vindr_cxr_release(
    root: str | Path,
    n_images: int,
    *,
    seed: int = 0,
    sizes: Sequence[tuple[int, int]] = ((512, 448),),
    splits: Sequence[str] | None = None,
    photometric: Sequence[str] | None = None,
    pixel_spacing_mm: float = 0.15,
) -> Release:
    """Write ``n_images`` CR radiographs and the label CSVs under ``root``.

    Args:
        sizes: (rows, cols) per image, cycled.
        splits: ``train``/``test`` per image; default every fifth image is test.
        photometric: MONOCHROME1/2 per image, cycled; default about 30 % MONOCHROME1.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows_train: list[list[str]] = []
    rows_test: list[list[str]] = []
    items: list[PlantedItem] = []
    for i in range(n_images):
        split = splits[i] if splits is not None else ("test" if i % 5 == 4 else "train")
        image_id = rng.bytes(16).hex()
        first, last = person(rng)
        name = f"{last.upper()}^{first.upper()}"
        patient_id = f"VN{rng.integers(10**7, 10**8)}"
        studied = _date(rng, dt.date(2018, 1, 1), 1500).strftime("%Y%m%d")
        birth = _date(rng, dt.date(1930, 1, 1), 25000).strftime("%Y%m%d")
        mode = (
            photometric[i % len(photometric)]
            if photometric
            else ("MONOCHROME1" if rng.random() < 0.3 else "MONOCHROME2")
        )
        pixels = chest_phantom(*sizes[i % len(sizes)], rng)
        ds = dicom_with_phi(
            sop_class=CR_IMAGE_STORAGE,
            modality="CR",
            patient_name=name,
            patient_id=patient_id,
            birth_date=birth,
            study_date=studied,
            institution=INSTITUTIONS[0],
            address=STREETS[0],
        )
        ds.ViewPosition = "PA"
        ds.PixelSpacing = [pixel_spacing_mm, pixel_spacing_mm]
        set_pixels(ds, pixels, bits_stored=12, photometric=mode)
        save_dicom(ds, root / split / f"{image_id}.dicom")
        readers = 3 if split == "train" else 1
        local = rng.random((readers, len(VINDR_LOCAL))) < 0.08
        glob = rng.random((readers, len(VINDR_GLOBAL))) < 0.25
        for r in range(readers):
            values = [str(int(v)) for v in (*local[r], *glob[r])]
            if split == "train":
                rows_train.append([image_id, f"R{r + 8}", *values])
            else:
                rows_test.append([image_id, *values])
        votes = glob.sum(axis=0)
        label = {VINDR_CLASS[h]: int(votes[k] * 2 > readers) for k, h in enumerate(VINDR_GLOBAL)}
        items.append(
            PlantedItem(
                image_id,
                split,
                label,
                (image_id, *dicom_identifiers(ds)),
                (studied, birth),
                {"pixels": pixels, "photometric": mode, "n_readers": readers, "spacing": pixel_spacing_mm},
            )
        )
    ann = root / "annotations"
    write_csv(
        ann / "image_labels_train.csv", [["image_id", "rad_id", *VINDR_LOCAL, *VINDR_GLOBAL], *rows_train]
    )
    write_csv(ann / "image_labels_test.csv", [["image_id", *VINDR_LOCAL, *VINDR_GLOBAL], *rows_test])
    return Release(items)


# --------------------------------------------------------------------------- CheXpert


def write_chexpert_release(
    root: str | Path,
    n_patients: int,
    *,
    seed: int = 1,
    valid_patients: int | None = None,
    sizes: Sequence[tuple[int, int]] = ((390, 320), (320, 390)),
    views_per_patient: int = 2,
) -> Release:
    """Write CheXpert-v1.0: ``n_patients`` training patients plus ``valid_patients`` (default a
    quarter, at least one) in ``valid/``, ``views_per_patient`` frontal JPEGs each (one study).

    The pipeline maps ``valid`` to ``test`` and splits ``train`` into train/val by patient, so
    items carry ``split="test"`` for valid and ``""`` (decided by the keyed hash) otherwise.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    valid_patients = max(1, n_patients // 4) if valid_patients is None else valid_patients
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_HEADERS]
    tables: dict[str, list[list[str]]] = {"train": [], "valid": []}
    items: list[PlantedItem] = []
    plan = [("train", 1 + k) for k in range(n_patients)] + [
        ("valid", 64541 + k) for k in range(valid_patients)
    ]
    n = 0
    for split, patient in plan:
        first, last = person(rng)
        author = f"{last.upper()}^{first.upper()}"
        taken = _date(rng, dt.date(2002, 10, 1), 5000)
        age = int(rng.choice([int(rng.integers(18, 89)), int(rng.integers(90, 101))], p=[0.85, 0.15]))
        sex = str(rng.choice(["Female", "Male"]))
        for view in range(1, views_per_patient + 1):
            rel = f"CheXpert-v1.0/{split}/patient{patient:05d}/study1/view{view}_frontal.jpg"
            pixels = to_uint8(chest_phantom(*sizes[n % len(sizes)], rng), 12)
            write_jpeg(root / rel, pixels, author=author, taken=f"{taken:%Y:%m:%d} 10:15:00")
            states = _uncertain_states(rng, len(CHEXPERT_HEADERS))
            tables[split].append([rel, sex, str(age), "Frontal", str(rng.choice(["AP", "PA"])), *states])
            items.append(
                PlantedItem(
                    rel,
                    "test" if split == "valid" else "",
                    _label_values(states),
                    (rel, f"patient{patient:05d}", author, f"chest film of {author}"),
                    (taken.strftime("%Y%m%d"),),
                    {"pixels": pixels, "age": age, "patient": f"patient{patient:05d}"},
                )
            )
            n += 1
    for split, table in tables.items():
        write_csv(root / "CheXpert-v1.0" / f"{split}.csv", [header, *table])
    return Release(items)


# --------------------------------------------------------------------------- MIMIC-CXR-JPG


def write_mimic_cxr_release(
    root: str | Path,
    n_studies: int,
    *,
    seed: int = 4,
    views_per_study: int = 2,
    sizes: Sequence[tuple[int, int]] = ((384, 320),),
    splits: Sequence[str] | None = None,
) -> Release:
    """Write ``files/pNN/pSUBJECT/sSTUDY/<dicom_id>.jpg`` and the split/label/metadata tables.

    Items carry the official split (``validate`` as ``val``) in ``extra["official_split"]``;
    the manifest's default policy is the keyed hash shared with MIMIC-IV, so ``split`` is ``""``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    split_rows = [["dicom_id", "study_id", "subject_id", "split"]]
    label_rows = [["subject_id", "study_id", *CHEXPERT_HEADERS]]
    meta_rows = [["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition",
                  "Rows", "Columns", "StudyDate", "StudyTime"]]  # fmt: skip
    items: list[PlantedItem] = []
    for n in range(n_studies):
        split = splits[n] if splits is not None else str(rng.choice(["train"] * 8 + ["validate", "test"]))
        subject, study = str(10000032 + n * 7919), str(50414267 + n * 104729)
        states = _uncertain_states(rng, len(CHEXPERT_HEADERS))
        label_rows.append([subject, study, *states])
        first, last = person(rng)
        author = f"{last.upper()}^{first.upper()}"
        shifted_date = f"21{int(rng.integers(10, 90))}0{int(rng.integers(1, 10))}1{int(rng.integers(0, 9))}"
        for view in range(views_per_study):
            dicom_id = "-".join(rng.bytes(4).hex() for _ in range(5))
            rel = f"files/p{subject[:2]}/p{subject}/s{study}/{dicom_id}.jpg"
            rows, cols = sizes[(n + view) % len(sizes)]
            pixels = to_uint8(chest_phantom(rows, cols, rng), 12)
            write_jpeg(root / rel, pixels, author=author, taken="2150:01:01 08:00:00")
            split_rows.append([dicom_id, study, subject, split])
            position = "PA" if view == 0 else "LATERAL"
            meta_rows.append([dicom_id, subject, study, "CHEST (PA AND LAT)", position, str(rows), str(cols),
                              shifted_date, "081529.000"])  # fmt: skip
            items.append(
                PlantedItem(
                    dicom_id,
                    "",
                    _label_values(states),
                    (dicom_id, f"p{subject}", f"s{study}", author),
                    (),
                    {
                        "official_split": {"validate": "val"}.get(split, split),
                        "subject": subject,
                        "view": position,
                    },
                )
            )
    write_csv(root / "mimic-cxr-2.0.0-split.csv.gz", split_rows, gz=True)
    write_csv(root / "mimic-cxr-2.0.0-chexpert.csv.gz", label_rows, gz=True)
    write_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz", meta_rows, gz=True)
    return Release(items)


# --------------------------------------------------------------------------- COVID-19 X-ray (Kaggle)


def write_covid19_xray_release(
    root: str | Path,
    per_class: int,
    *,
    seed: int = 2,
    size: tuple[int, int] = (320, 384),
    colour_every: int = 0,
) -> Release:
    """Write ``{TrainData,ValData}/<class>/<image>``: ``per_class`` images per class and split.

    Images alternate PNG (with ``Author``/``Creation Time`` text) and JPEG (with EXIF). With
    ``colour_every=k``, every k-th PNG is saved as RGB (the pipeline converts it by luma);
    ``extra["pixels"]`` is then the luma the pipeline should see.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    items: list[PlantedItem] = []
    n = 0
    for folder_split, split in (("TrainData", "train"), ("ValData", "test")):
        for label, folder in enumerate(COVID_FOLDERS):
            for k in range(per_class):
                first, last = person(rng)
                author = f"{last.upper()}^{first.upper()}"
                created = _date(rng, dt.date(2019, 6, 1), 400)
                pixels = to_uint8(chest_phantom(*size, rng), 12)
                png = n % 2 == 0
                name = f"{folder.lower()}-{int(rng.integers(1000, 9999))}-{k:03d}.{'png' if png else 'jpeg'}"
                path = root / folder_split / folder / name
                if png and colour_every and (n // 2) % colour_every == 0:
                    rgb = np.stack(
                        [pixels, (pixels * 0.9).astype(np.uint8), (pixels * 0.8).astype(np.uint8)], -1
                    )
                    write_png(path, rgb, author=author, created=f"{created:%Y-%m-%d}")
                    pixels = np.rint(rgb.astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)
                elif png:
                    write_png(path, pixels, author=author, created=f"{created:%Y-%m-%d}")
                else:
                    write_jpeg(path, pixels, author=author, taken=f"{created:%Y:%m:%d} 09:00:00")
                rel = f"{folder_split}/{folder}/{name}"
                items.append(
                    PlantedItem(
                        rel,
                        split,
                        label,
                        (rel, name, author),
                        (created.strftime("%Y%m%d"),),
                        {"pixels": pixels, "lossless": png},
                    )
                )
                n += 1
    return Release(items)


# --------------------------------------------------------------------------- CoronaHack (Kaggle)


def write_coronahack_release(
    root: str | Path,
    per_case: int,
    *,
    seed: int = 3,
    size: tuple[int, int] = (320, 400),
) -> Release:
    """Write the CoronaHack layout and ``Chest_xray_Corona_Metadata.csv``: ``per_case`` images per
    row of :data:`CORONAHACK_CASES` and split. Rows outside the three classes go to ``skipped``."""
    root = Path(root)
    folder = root / "Coronahack-Chest-XRay-Dataset" / "Coronahack-Chest-XRay-Dataset"
    rng = np.random.default_rng(seed)
    table = [
        ["", "X_ray_image_name", "Label", "Dataset_type", "Label_2_Virus_category", "Label_1_Virus_category"]
    ]
    release = Release([])
    n = 0
    for split in ("TRAIN", "TEST"):
        for label, virus2, virus1, class_name in CORONAHACK_CASES:
            for _ in range(per_case):
                first, last = person(rng)
                author = f"{last.upper()}^{first.upper()}"
                kind = {"Normal": "IM", "bacteria": "bacteria", "Virus": "virus"}.get(
                    virus1 or label, "virus"
                )
                file_name = f"person{1000 + n}_{kind}_{int(rng.integers(1, 9999))}.jpeg"
                write_jpeg(
                    folder / split.lower() / file_name,
                    to_uint8(chest_phantom(*size, rng), 12),
                    author=author,
                    taken="2018:01:12 11:02:00",
                )
                table.append([str(len(table) - 1), file_name, label, split, virus2, virus1])
                item = PlantedItem(
                    f"{split.lower()}/{file_name}",
                    "train" if split == "TRAIN" else "test",
                    class_name,
                    (file_name, f"person{1000 + n}_", author),
                    ("20180112",),
                    {"virus_category": virus2 or None},
                )
                (release.items if class_name is not None else release.skipped).append(item)
                n += 1
    write_csv(root / "Chest_xray_Corona_Metadata.csv", table)
    return release
