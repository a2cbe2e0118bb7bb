"""Shared pieces of the 2D release generators: phantoms, writers with planted identifiers, and
the record of what was planted.

Pictures are drawn, not noise: a chest radiograph phantom (body, lungs, heart, spine, ribs,
clavicles, an occasional nodule) and a mammogram phantom (breast outline, fibroglandular
texture, pectoral muscle on MLO views, an occasional mass), both smoothed and slightly noisy
like a detector image. Files are written by the real libraries (pydicom, Pillow, the standard
library's gzip/csv/zipfile for the label tables) and carry realistic identifiers where the real
releases could: DICOM headers (names, patient ids, birth and study dates, institution,
addresses, a private block copying the name), JPEG EXIF and PNG text chunks naming a person and
a date. :class:`PlantedItem` lists them for the checks that search the outputs.
"""

from __future__ import annotations

import csv
import gzip
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"
MG_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1.2"

FIRST_NAMES = ("Maria", "Jonas", "Aiko", "Pedro", "Fatima", "Henrik", "Lucia", "Omar", "Linh", "Wei")
LAST_NAMES = ("Schneider", "Okafor", "Tanaka", "Alvarez", "Haddad", "Lindqvist", "Rossi", "Novak", "Nguyen")
INSTITUTIONS = ("Hospital 108, Hanoi", "St Elsewhere General Hospital", "Riverside Imaging Centre")
STREETS = ("12 Tran Hung Dao Street", "42 Wallaby Way Sydney", "7 Harbour Road Boston")


@dataclass
class PlantedItem:
    """One item of a generated release and what it plants.

    Attributes:
        item_id: the raw id the pipeline pseudonymises (image id, record name, relative path).
        split: the split the release assigns (``train``/``val``/``test``), or ``""`` when the
            pipeline decides (patient-level keyed hash).
        label: the expected label in the pipeline's terms (class index, name, list or dict).
        identifiers: strings that must not appear in any output byte.
        dates: original dates (``YYYYMMDD``) that must not appear in any form.
        extra: per-source details the tests check (shapes, photometric, views, ...).
    """

    item_id: str
    split: str
    label: Any
    identifiers: tuple[str, ...]
    dates: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON form kept in the mirror's ``planted.json`` (no pixels)."""
        return {
            "record": self.item_id,
            "split": self.split,
            "identifiers": sorted(set(self.identifiers)),
            "dates": sorted(set(self.dates)),
        }


def person(rng: np.random.Generator) -> tuple[str, str]:
    """A (first, last) name pair."""
    return str(rng.choice(FIRST_NAMES)), str(rng.choice(LAST_NAMES))


def _smooth(noise: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(noise, sigma)


def chest_phantom(rows: int, cols: int, rng: np.random.Generator, *, bits: int = 12) -> np.ndarray:
    """A PA chest radiograph phantom, bright = dense (MONOCHROME2 sense), ``bits``-bit unsigned.

    Soft-tissue body outline, two dark lungs with vessel texture, the heart shadow, spine,
    ribs, clavicles, smooth detector noise; a nodule in about a third of the images.
    """
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    y /= rows
    x /= cols
    cx = 0.5 + rng.normal(0, 0.01)
    body = ((x - cx) / 0.47) ** 2 + ((y - 0.58) / 0.55) ** 2 < 1
    image = np.where(body, 0.62, 0.05)
    lungs = np.zeros_like(image, dtype=bool)
    for side in (-1, 1):
        lung = ((x - cx - side * 0.2) / 0.15) ** 2 + ((y - 0.5) / 0.32) ** 2 < 1
        lungs |= lung & (y > 0.2)
    texture = _smooth(rng.normal(0, 1, (rows, cols)).astype(np.float32), max(rows / 120, 1.0))
    image = np.where(lungs, 0.22 + 0.05 * texture / (texture.std() + 1e-6), image)
    heart = ((x - cx - 0.05) / 0.13) ** 2 + ((y - 0.66) / 0.14) ** 2 < 1
    image = np.where(heart & body, 0.68, image)
    spine = (np.abs(x - cx) < 0.035) & body
    image = np.where(spine, 0.85, image)
    ribs = (np.sin((y + 0.15 * np.abs(x - cx)) * 42) > 0.88) & lungs
    image = image + ribs * 0.12
    for side in (-1, 1):
        clavicle = (np.abs(y - (0.2 + 0.25 * np.abs(x - cx))) < 0.012) & (np.abs(x - cx) < 0.3) & body
        image = image + clavicle * side * side * 0.15
    if rng.random() < 0.35:
        ny, nx = rng.uniform(0.35, 0.65), cx + rng.choice([-1, 1]) * rng.uniform(0.12, 0.25)
        image += 0.25 * (((x - nx) * cols) ** 2 + ((y - ny) * rows) ** 2 < (0.03 * rows) ** 2)
    image = _smooth(image.astype(np.float32), max(rows / 400, 0.6))
    image = image + rng.normal(0, 0.012, size=image.shape)
    top = 2**bits - 1
    return np.clip(image * top, 0, top).astype(np.uint16 if bits > 8 else np.uint8)


def mammo_phantom(
    rows: int, cols: int, rng: np.random.Generator, *, side: str, view: str, bits: int = 14
) -> np.ndarray:
    """A mammogram phantom: breast outline against the chest wall (left edge for R, right for L),
    fibroglandular texture, the pectoral muscle on MLO, a mass in about a quarter of them."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    y /= rows
    x /= cols
    if side == "L":
        x = 1 - x  # chest wall on the right of the image for a left breast
    depth = rng.uniform(0.7, 0.85)
    breast = (x / depth) ** 2 + ((y - 0.5) / 0.45) ** 2 < 1
    fade = np.clip(1 - (x / depth) ** 2 - ((y - 0.5) / 0.45) ** 2, 0, 1) ** 0.35
    texture = _smooth(rng.normal(0, 1, (rows, cols)).astype(np.float32), max(rows / 60, 1.0))
    gland = np.clip(0.5 + 0.35 * texture / (texture.std() + 1e-6), 0, 1)
    image = np.where(breast, 0.25 + 0.45 * fade * gland, 0.02)
    if view == "MLO":
        pectoral = x < 0.35 * (1 - y / 0.55)
        image = np.where(pectoral & breast, 0.8, image)
    if rng.random() < 0.25:
        my, mx = rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.5)
        mass = ((x - mx) * cols) ** 2 + ((y - my) * rows) ** 2 < (0.04 * rows) ** 2
        image = np.where(mass & breast, image + 0.25, image)
    image = _smooth(image.astype(np.float32), max(rows / 500, 0.6))
    image = image + rng.normal(0, 0.008, size=image.shape)
    top = 2**bits - 1
    return np.clip(image * top, 0, top).astype(np.uint16)


def to_uint8(image: np.ndarray, bits: int) -> np.ndarray:
    """A ``bits``-bit image as 8 bits (what JPEG releases such as CheXpert ship)."""
    return (image.astype(np.uint32) * 255 // (2**bits - 1)).astype(np.uint8)


def dicom_with_phi(
    *,
    sop_class: str,
    modality: str,
    patient_name: str,
    patient_id: str,
    birth_date: str,
    study_date: str,
    institution: str,
    address: str,
    study_uid: str | None = None,
) -> Dataset:
    """A DICOM dataset with the identifiers a hospital export carries (no pixels yet)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.SourceApplicationEntityTitle = "RAD-WS-03"
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = birth_date
    ds.PatientSex = "F" if modality == "MG" else ("F" if len(patient_name) % 2 else "M")
    ds.PatientAddress = address
    ds.OtherPatientIDs = f"OLD-{patient_id}"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
    ds.StudyTime = "101530"
    ds.AcquisitionDateTime = study_date + "101533.250000+0700"
    ds.AccessionNumber = f"ACC{abs(hash(patient_id)) % 10**8:08d}"
    ds.InstitutionName = institution
    ds.ReferringPhysicianName = "TRAN^THI^MAI"
    ds.OperatorsName = "LE^VAN^TAM"
    ds.StationName = "RAD-WS-03"
    ds.StudyDescription = f"{modality} for {patient_name.replace('^', ' ')}"
    ds.Modality = modality
    block = ds.private_block(0x0009, "DEMO VENDOR", create=True)
    block.add_new(0x10, "LO", patient_name.replace("^", " "))  # a private tag copying the name
    block.add_new(0x11, "LO", patient_id)
    return ds


def set_pixels(
    ds: Dataset, pixels: np.ndarray, *, bits_stored: int, photometric: str = "MONOCHROME2"
) -> None:
    """Grey pixels (given in the MONOCHROME2 sense; stored inverted for MONOCHROME1)."""
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0
    top = 2**bits_stored - 1
    stored = (top - pixels.astype(np.int64)) if photometric == "MONOCHROME1" else pixels
    ds.PixelData = np.asarray(stored, dtype=np.uint16).tobytes()


def save_dicom(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def dicom_identifiers(ds: Dataset) -> tuple[str, ...]:
    """The identifying strings of a dataset written by :func:`dicom_with_phi`."""
    return (
        str(ds.PatientName),
        str(ds.PatientName).replace("^", " "),
        str(ds.PatientID),
        str(ds.AccessionNumber),
        str(ds.PatientAddress),
        str(ds.SOPInstanceUID),
        str(ds.StudyInstanceUID),
        str(ds.SeriesInstanceUID),
    )


def write_jpeg(path: Path, pixels: np.ndarray, *, author: str, taken: str, quality: int = 92) -> None:
    """A JPEG with EXIF naming a person (Artist, ImageDescription) and a date (``YYYY:MM:DD hh:mm:ss``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    exif[0x013B] = author  # Artist
    exif[0x010E] = f"chest film of {author}"  # ImageDescription
    exif[0x0132] = taken  # DateTime
    Image.fromarray(pixels).save(path, quality=quality, exif=exif.tobytes())


def write_png(path: Path, pixels: np.ndarray, *, author: str, created: str) -> None:
    """A PNG with ``Author`` and ``Creation Time`` text chunks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    info.add_text("Author", author)
    info.add_text("Creation Time", created)
    Image.fromarray(pixels).save(path, pnginfo=info)


def write_csv(path: Path, rows: Sequence[Sequence[Any]], *, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    data = buffer.getvalue().encode()
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def _cell(ref: str, value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f'<c r="{ref}"><v>{value}</v></c>'
    return f'<c r="{ref}" t="inlineStr"><is><t>{escape(str(value))}</t></is></c>'


def _column(n: int) -> str:
    name = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        name = chr(65 + r) + name
    return name


def write_xlsx(path: Path, rows: Sequence[Sequence[Any]], sheet: str = "Sheet1") -> Path:
    """A one-sheet Office Open XML workbook (inline strings, numbers as numbers), as Excel
    exports it minus styles: the runtime has no spreadsheet library, and the format is a zip of
    four XML parts. A test opens it with openpyxl."""
    sheet_rows = []
    for r, row in enumerate(rows, start=1):
        cells = "".join(_cell(f"{_column(c)}{r}", v) for c, v in enumerate(row))
        sheet_rows.append(f'<row r="{r}">{cells}</row>')
    ns = "http://schemas.openxmlformats.org"
    parts = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            f'<Types xmlns="{ns}/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/worksheets/sheet1.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            "</Types>"
        ),
        "_rels/.rels": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            f'<Relationships xmlns="{ns}/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{ns}/officeDocument/2006/relationships/officeDocument" '
            'Target="xl/workbook.xml"/></Relationships>'
        ),
        "xl/workbook.xml": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            f'<workbook xmlns="{ns}/spreadsheetml/2006/main" '
            f'xmlns:r="{ns}/officeDocument/2006/relationships">'
            f'<sheets><sheet name="{escape(sheet)}" sheetId="1" r:id="rId1"/></sheets></workbook>'
        ),
        "xl/_rels/workbook.xml.rels": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            f'<Relationships xmlns="{ns}/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{ns}/officeDocument/2006/relationships/worksheet" '
            'Target="worksheets/sheet1.xml"/></Relationships>'
        ),
        "xl/worksheets/sheet1.xml": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            f'<worksheet xmlns="{ns}/spreadsheetml/2006/main"><sheetData>'
            + "".join(sheet_rows)
            + "</sheetData></worksheet>"
        ),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in parts.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), text)
    return path
