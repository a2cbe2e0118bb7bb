"""Write a small VinDr-CXR-like release: DICOM chest radiographs with identifiers, and its label CSVs.

Laid out like PhysioNet's ``vindr-cxr/1.0.0``: ``train/<image_id>.dicom``,
``test/<image_id>.dicom``, ``annotations/image_labels_{train,test}.csv`` (train: one row per
radiologist, three readers; test: one consensus row). Images are written by pydicom as CR
(12-bit, some MONOCHROME1 as in the real release), drawn as a simple chest phantom (body,
two lungs, spine, ribs) with noise, and carry realistic identifiers in the header — name,
patient id, birth date, institution, study dates, a private tag copying the name — so the
PS3.15 de-identification has something to remove.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pipelines.demo.ecg_release import FIRST_NAMES, LAST_NAMES, PlantedRecord

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
GLOBAL_LABELS = ("Lung tumor", "Pneumonia", "Tuberculosis", "Other diseases", "COPD", "No finding")
LOCAL_LABELS = ("Aortic enlargement", "Cardiomegaly", "Pleural effusion", "Nodule/Mass")


def chest_phantom(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """A chest-radiograph-like picture: uint16, 12-bit, bright = dense (MONOCHROME2 sense)."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    cy, cx = rows * 0.55, cols * 0.5
    body = ((x - cx) / (cols * 0.46)) ** 2 + ((y - cy) / (rows * 0.52)) ** 2 < 1
    image = np.where(body, 2600.0, 300.0)
    for side in (-1, 1):
        lung = ((x - cx - side * cols * 0.19) / (cols * 0.15)) ** 2 + (
            (y - cy + rows * 0.05) / (rows * 0.33)
        ) ** 2 < 1
        image = np.where(lung, 900.0, image)
    spine = np.abs(x - cx) < cols * 0.04
    image = np.where(spine & body, 3600.0, image)
    ribs = (np.sin(y / rows * 40) > 0.85) & body & ~spine
    image = image + ribs * 350.0
    image = image + rng.normal(0, 60, size=image.shape)
    if rng.random() < 0.3:  # a nodule
        ny, nx = rng.uniform(0.35, 0.7) * rows, cx + rng.choice([-1, 1]) * cols * 0.18
        image += 900.0 * (((x - nx) ** 2 + (y - ny) ** 2) < (rows * 0.03) ** 2)
    return np.clip(image, 0, 4095).astype(np.uint16)


def _write_cr(
    path: Path, pixels: np.ndarray, name: str, patient_id: str, birth: str, study_date: str, photometric: str
) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CR_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = name
    ds.PatientID = patient_id
    ds.PatientBirthDate = birth
    ds.PatientSex = "F" if len(name) % 2 else "M"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
    ds.StudyTime = "101530"
    ds.AccessionNumber = f"ACC{patient_id[-6:]}"
    ds.InstitutionName = "Hospital 108, Hanoi"
    ds.ReferringPhysicianName = "TRAN^THI^MAI"
    ds.StudyDescription = f"Chest PA for {name.replace('^', ' ')}"
    ds.Modality = "CR"
    ds.ViewPosition = "PA"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.15, 0.15]
    stored = (4095 - pixels) if photometric == "MONOCHROME1" else pixels
    ds.PixelData = stored.astype(np.uint16).tobytes()
    block = ds.private_block(0x0009, "DEMO VENDOR", create=True)
    block.add_new(0x10, "LO", name.replace("^", " "))  # a private tag copying the name
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_vindr_release(
    root: str | Path, n_images: int, *, seed: int = 0, size: tuple[int, int] = (640, 560)
) -> list[PlantedRecord]:
    """Write ``n_images`` images (about 80 % train) and the label CSVs under ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows_train: list[list[str]] = []
    rows_test: list[list[str]] = []
    planted: list[PlantedRecord] = []
    for i in range(n_images):
        split = "test" if i % 5 == 4 else "train"
        image_id = rng.bytes(16).hex()
        name = f"{rng.choice(LAST_NAMES).upper()}^{rng.choice(FIRST_NAMES).upper()}"
        patient_id = f"VN{rng.integers(10**7, 10**8)}"
        studied = dt.datetime(2018, 1, 1) + dt.timedelta(days=int(rng.integers(0, 1500)))
        birth = f"{int(rng.integers(1930, 2000))}0{int(rng.integers(1, 10))}15"
        photometric = "MONOCHROME1" if rng.random() < 0.3 else "MONOCHROME2"
        _write_cr(
            root / split / f"{image_id}.dicom",
            chest_phantom(*size, rng),
            name,
            patient_id,
            birth,
            studied.strftime("%Y%m%d"),
            photometric,
        )
        readers = 3 if split == "train" else 1
        votes = rng.random((readers, len(LOCAL_LABELS) + len(GLOBAL_LABELS))) < 0.2
        for r in range(readers):
            values = [str(int(v)) for v in votes[r]]
            if split == "train":
                rows_train.append([image_id, f"R{r + 1}", *values])
            else:
                rows_test.append([image_id, *values])
        planted.append(
            PlantedRecord(
                record=image_id,
                patient_name=name,
                mrn=patient_id,
                recorded=studied,
                age=2000 - int(birth[:4]),
            )
        )
    ann = root / "annotations"
    ann.mkdir(parents=True, exist_ok=True)
    with (ann / "image_labels_train.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["image_id", "rad_id", *LOCAL_LABELS, *GLOBAL_LABELS], *rows_train])
    with (ann / "image_labels_test.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["image_id", *LOCAL_LABELS, *GLOBAL_LABELS], *rows_test])
    return planted
