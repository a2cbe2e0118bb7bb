"""Per-source label and split readers of the 2D radiology releases (used by the image2d indexer).

Each reader takes ``(manifest, raw_dir)`` and returns :class:`Entry` rows: the raw image
path, the source's own image id and patient id (raw: never written; the indexer turns them
into keyed pseudonyms), the official split when the release has one (``None``: the indexer
picks a patient-level split by keyed hash), and JSON-able labels. Images the release has no
label for are counted under a reason instead of guessed.

Label encodings (recorded here and in each source manifest's ``labels.notes``):

* multi-label sources store ``labels``: a list in ``manifest.labels.classes`` order;
* CheXpert-style states are kept as given: ``1`` positive, ``0`` negative, ``-1`` uncertain,
  ``None`` not mentioned (U-zeros / U-ones is a loader choice, not a build choice);
* multi-class sources store ``label`` (index into ``classes``) and ``label_name``.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from manifests.schema import TEST, TRAIN, VAL, SourceManifest
from transforms.pseudonyms import cap_age_years


class LabelFileError(ValueError):
    """A label or split file the source needs is missing or malformed (file named)."""


@dataclass(frozen=True)
class Entry:
    """One image as a source's label reader sees it (raw ids: never written)."""

    item_id: str
    subject_id: str
    path: Path
    split: str | None
    labels: dict[str, Any] = field(default_factory=dict)
    extra_paths: tuple[Path, ...] = ()  # more images of the same item (CMMD: every view of a breast)


@dataclass
class Entries:
    """What a label reader found, and what it left out (reason -> count)."""

    entries: list[Entry] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


# --------------------------------------------------------------------------- file helpers


def expand_braces(pattern: str) -> list[str]:
    """Expand one level of shell braces (pathlib's glob has none).

    >>> expand_braces("{train,test}/*.dicom")
    ['train/*.dicom', 'test/*.dicom']
    """
    match = re.search(r"\{([^{}]*)\}", pattern)
    if not match:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    out: list[str] = []
    for option in match.group(1).split(","):
        out.extend(expand_braces(head + option + tail))
    return out


def scan_files(raw_dir: Path, pattern: str) -> list[Path]:
    """Files under ``raw_dir`` matching a glob with braces, sorted; hidden and partial files skipped."""
    found: set[Path] = set()
    for expanded in expand_braces(pattern):
        for p in raw_dir.glob(expanded):
            if p.is_file() and not p.name.startswith(".") and not p.name.endswith((".part", ".tmp")):
                found.add(p)
    return sorted(found)


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV (``.csv`` or ``.csv.gz``) as dicts, header names stripped.

    Raises:
        LabelFileError: the file is missing or has no header.
    """
    if not path.is_file():
        raise LabelFileError(f"label file {path} is missing; put the release's file there")
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    if not reader.fieldnames:
        raise LabelFileError(f"label file {path} has no header row")
    rows = []
    for row in reader:
        rows.append({(k or "").strip(): (v or "").strip() for k, v in row.items()})
    return rows


def _require(path: Path, rows: list[dict[str, str]], columns: list[str]) -> None:
    if rows:
        missing = [c for c in columns if c not in rows[0]]
        if missing:
            raise LabelFileError(f"label file {path} lacks the columns {missing}")


def _label_files(manifest: SourceManifest, raw_dir: Path, key: str = "labels") -> list[Path]:
    value = manifest.layout.extra.get(key) if manifest.layout else None
    if not value:
        raise LabelFileError(f"source {manifest.id}: layout.extra.{key} names no label file")
    names = [value] if isinstance(value, str) else list(value)
    return [raw_dir / name for name in names]


def _records(manifest: SourceManifest, raw_dir: Path) -> list[Path]:
    assert manifest.layout is not None
    return scan_files(raw_dir, manifest.layout.records)


def _state(value: str) -> int | None:
    """A CheXpert-labeller cell: ``1.0``/``0.0``/``-1.0`` -> 1/0/-1, blank -> None."""
    if value == "":
        return None
    number = float(value)
    if number not in (1.0, 0.0, -1.0):
        raise ValueError(f"label value {value!r} is not 1, 0, -1 or blank")
    return int(number)


# --------------------------------------------------------------------------- VinDr-CXR

#: VinDr-CXR's six global labels (Dataset_Info), CSV header -> manifest class.
VINDR_CXR_GLOBAL = {
    "Lung tumor": "lung_tumor",
    "Pneumonia": "pneumonia",
    "Tuberculosis": "tuberculosis",
    "Other diseases": "other_diseases",
    "Other disease": "other_diseases",
    "COPD": "copd",
    "No finding": "no_finding",
}


def read_vindr_cxr(manifest: SourceManifest, raw_dir: Path) -> Entries:
    """VinDr-CXR: ``{train,test}/<image_id>.dicom`` + ``annotations/image_labels_{train,test}.csv``.

    The train CSV has one row per radiologist (``rad_id``, three per image), the test CSV one
    consensus row. ``labels`` is the majority vote (more than half of the readers) over the six
    global labels in ``classes`` order; ``label_votes`` keeps the positive votes per class,
    ``n_readers`` the number of readers, and ``local_findings`` the names of the 22 local
    findings at least half of the readers marked. Official split: the folder (train/test).
    The release has no patient ids, so each image is its own subject.
    """
    classes = list(manifest.labels.classes)
    votes: dict[str, list[dict[str, str]]] = defaultdict(list)
    for path in _label_files(manifest, raw_dir):
        rows = read_csv_rows(path)
        _require(path, rows, ["image_id"])
        header = list(rows[0]) if rows else []
        missing = set(classes) - {VINDR_CXR_GLOBAL.get(h) for h in header}
        if rows and missing:
            raise LabelFileError(f"label file {path} lacks the global labels {sorted(missing)}")
        for row in rows:
            votes[row["image_id"]].append(row)
    out = Entries()
    for path in _records(manifest, raw_dir):
        image_id = path.stem
        readers = votes.get(image_id, [])
        if not readers:
            out.skipped["no_label_row"] += 1
            continue
        counts = [0] * len(classes)
        local: Counter[str] = Counter()
        for reader in readers:
            for column, value in reader.items():
                if column in ("image_id", "rad_id"):
                    continue
                positive = value not in ("", "0", "0.0")
                name = VINDR_CXR_GLOBAL.get(column)
                if name is not None:
                    counts[classes.index(name)] += int(positive)
                elif positive:
                    local[column] += 1
        n = len(readers)
        out.entries.append(
            Entry(
                item_id=image_id,
                subject_id=image_id,
                path=path,
                split=TEST if path.parent.name == "test" else TRAIN,
                labels={
                    "labels": [int(c * 2 > n) for c in counts],
                    "label_votes": counts,
                    "n_readers": n,
                    "local_findings": sorted(k for k, v in local.items() if v * 2 >= n),
                },
            )
        )
    return out


# --------------------------------------------------------------------------- CheXpert

#: CheXpert's 14 observations, CSV header -> manifest class (each once: CLIMB's list repeats
#: Atelectasis and so drops No Finding).
CHEXPERT_14 = {
    "No Finding": "no_finding",
    "Enlarged Cardiomediastinum": "enlarged_cardiomediastinum",
    "Cardiomegaly": "cardiomegaly",
    "Lung Opacity": "lung_opacity",
    "Lung Lesion": "lung_lesion",
    "Edema": "edema",
    "Consolidation": "consolidation",
    "Pneumonia": "pneumonia",
    "Atelectasis": "atelectasis",
    "Pneumothorax": "pneumothorax",
    "Pleural Effusion": "pleural_effusion",
    "Pleural Other": "pleural_other",
    "Fracture": "fracture",
    "Support Devices": "support_devices",
}


def _chexpert_labels(row: dict[str, str], classes: list[str], path: Path) -> list[int | None]:
    by_class = {CHEXPERT_14[h]: v for h, v in row.items() if h in CHEXPERT_14}
    missing = [c for c in classes if c not in by_class]
    if missing:
        raise LabelFileError(f"label file {path} lacks the observations {missing}")
    try:
        return [_state(by_class[c]) for c in classes]
    except ValueError as exc:
        raise LabelFileError(f"label file {path}: {exc}") from None


def read_chexpert(manifest: SourceManifest, raw_dir: Path) -> Entries:
    """CheXpert-v1.0: ``train.csv`` / ``valid.csv`` (``Path`` relative to the raw root's parent).

    ``labels``: the 14 observations in ``classes`` order as 1/0/-1/None (uncertain kept).
    The official ``valid`` set becomes ``test``; ``val`` is carved from ``train`` by a keyed
    hash of the patient (``patientNNNNN`` from the path), so no patient spans two splits.
    Sex, age (capped at 90), Frontal/Lateral and AP/PA are kept as columns.
    """
    classes = list(manifest.labels.classes)
    files = {p.resolve() for p in _records(manifest, raw_dir)}
    out = Entries()
    seen: set[Path] = set()
    for label_file in _label_files(manifest, raw_dir):
        rows = read_csv_rows(label_file)
        _require(label_file, rows, ["Path"])
        official_test = label_file.stem.lower().startswith("valid")
        for row in rows:
            rel = row["Path"]
            # The CSV paths start with the release folder (CheXpert-v1.0/...), as the raw root holds it.
            path = (raw_dir / rel).resolve()
            if path not in files:
                out.skipped["label_row_without_image"] += 1
                continue
            seen.add(path)
            patient = next((part for part in Path(rel).parts if part.startswith("patient")), rel)
            age = row.get("Age", "")
            out.entries.append(
                Entry(
                    item_id=rel,
                    subject_id=patient,
                    path=path,
                    split=TEST if official_test else None,
                    labels={
                        "labels": _chexpert_labels(row, classes, label_file),
                        "sex": row.get("Sex") or None,
                        "age_years": cap_age_years(int(float(age))) if age else None,
                        "frontal_lateral": row.get("Frontal/Lateral") or None,
                        "ap_pa": row.get("AP/PA") or None,
                    },
                )
            )
    out.skipped["image_without_label_row"] += len(files - seen)
    return out


# --------------------------------------------------------------------------- class-folder sources


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


#: Class-folder names seen in the COVID-19 X-ray release (normalised) -> manifest class.
COVID19_FOLDERS = {
    "normal": "normal",
    "bacterialpneumonia": "bacterial_pneumonia",
    "bacteria": "bacterial_pneumonia",
    "pneumoniabacterial": "bacterial_pneumonia",
    "viralpneumonia": "viral_pneumonia",
    "virus": "viral_pneumonia",
    "pneumoniaviral": "viral_pneumonia",
    "covid19": "covid19",
    "covid": "covid19",
}
COVID19_SPLITS = {"traindata": TRAIN, "train": TRAIN, "valdata": TEST, "val": TEST, "test": TEST}


def read_covid19_xray(manifest: SourceManifest, raw_dir: Path) -> Entries:
    """COVID-19 X-ray (Kaggle): ``{TrainData,ValData}/<class>/<file>``.

    ``label`` indexes ``classes``; ``TrainData`` is train and ``ValData`` test, as CLIMB uses
    them. The release has no patient ids: each image is its own subject (an image-level split,
    which may leak patients; recorded in the manifest's notes).
    """
    classes = list(manifest.labels.classes)
    out = Entries()
    for path in _records(manifest, raw_dir):
        rel = path.relative_to(raw_dir)
        name = COVID19_FOLDERS.get(_normalise(path.parent.name))
        split = COVID19_SPLITS.get(_normalise(rel.parts[0]))
        if name is None or split is None:
            out.skipped["unknown_class_or_split_folder"] += 1
            continue
        item_id = rel.as_posix()
        out.entries.append(
            Entry(item_id, item_id, path, split, {"label": classes.index(name), "label_name": name})
        )
    return out


def read_coronahack(manifest: SourceManifest, raw_dir: Path) -> Entries:
    """CoronaHack: ``Chest_xray_Corona_Metadata.csv`` names each image, its split and labels.

    ``Label`` Normal -> ``normal``; Pnemonia (sic) with ``Label_1_Virus_category`` bacteria ->
    ``pneumonia_bacterial``, Virus -> ``pneumonia_viral``; other categories (Stress-Smoking) fall
    outside the three classes and are counted, not guessed. ``Label_2_Virus_category`` (COVID-19,
    SARS, ...) is kept as ``virus_category``. ``Dataset_type`` TRAIN/TEST is the official split.
    Images are found by name under their split folder. No patient ids: one subject per image.
    """
    classes = list(manifest.labels.classes)
    label_file = _label_files(manifest, raw_dir)[0]
    rows = read_csv_rows(label_file)
    _require(label_file, rows, ["X_ray_image_name", "Label", "Dataset_type"])
    by_name: dict[tuple[str, str], Path] = {}
    for path in _records(manifest, raw_dir):
        by_name[(path.parent.name.lower(), path.name)] = path
    out = Entries()
    for row in rows:
        split_dir = row["Dataset_type"].lower()
        found = by_name.get((split_dir, row["X_ray_image_name"]))
        if found is None:
            out.skipped["label_row_without_image"] += 1
            continue
        category = row.get("Label_1_Virus_category", "").lower()
        if row["Label"].lower() == "normal":
            name = "normal"
        elif category == "bacteria":
            name = "pneumonia_bacterial"
        elif category == "virus":
            name = "pneumonia_viral"
        else:
            out.skipped["label_outside_classes"] += 1
            continue
        item_id = f"{split_dir}/{row['X_ray_image_name']}"
        out.entries.append(
            Entry(
                item_id,
                item_id,
                found,
                TEST if split_dir == "test" else TRAIN,
                {
                    "label": classes.index(name),
                    "label_name": name,
                    "virus_category": row.get("Label_2_Virus_category") or None,
                },
            )
        )
    return out


# --------------------------------------------------------------------------- MIMIC-CXR-JPG

#: MIMIC-CXR split names -> ours.
MIMIC_SPLITS = {"train": TRAIN, "validate": VAL, "test": TEST}


def read_mimic_cxr(manifest: SourceManifest, raw_dir: Path) -> Entries:
    """MIMIC-CXR-JPG 2.0.0: ``files/pXX/p<subject>/s<study>/<dicom_id>.jpg`` + the split,
    CheXpert-labeller and metadata CSVs (``.csv.gz``).

    One item per image (``dicom_id``), joined to its study's labeller row by
    ``(subject_id, study_id)``: ``labels`` are the 14 observations as 1/0/-1/None. The
    official split (``validate`` -> ``val``) is patient-level. ``view_position`` comes from the
    metadata CSV. Images without a labeller row (studies the labeller skipped) are counted.
    """
    classes = list(manifest.labels.classes)
    extra = manifest.layout.extra if manifest.layout else {}
    split_file, label_file = raw_dir / extra["split"], raw_dir / extra["labels"]
    split_rows = read_csv_rows(split_file)
    _require(split_file, split_rows, ["dicom_id", "study_id", "subject_id", "split"])
    label_rows = read_csv_rows(label_file)
    _require(label_file, label_rows, ["subject_id", "study_id"])
    labels = {(r["subject_id"], r["study_id"]): _chexpert_labels(r, classes, label_file) for r in label_rows}
    views: dict[str, str] = {}
    if extra.get("metadata") and (raw_dir / extra["metadata"]).is_file():
        views = {r["dicom_id"]: r.get("ViewPosition", "") for r in read_csv_rows(raw_dir / extra["metadata"])}
    files = {p.stem: p for p in _records(manifest, raw_dir)}
    out = Entries()
    for row in split_rows:
        path = files.pop(row["dicom_id"], None)
        if path is None:
            out.skipped["split_row_without_image"] += 1
            continue
        study = labels.get((row["subject_id"], row["study_id"]))
        if study is None:
            out.skipped["no_label_row"] += 1
            continue
        split = MIMIC_SPLITS.get(row["split"])
        if split is None:
            raise LabelFileError(f"label file {split_file}: unknown split {row['split']!r}")
        out.entries.append(
            Entry(
                item_id=row["dicom_id"],
                subject_id=row["subject_id"],
                path=path,
                split=split,
                labels={"labels": study, "view_position_csv": views.get(row["dicom_id"]) or None},
            )
        )
    out.skipped["image_without_split_row"] += len(files)
    return out


# --------------------------------------------------------------------------- VinDr-Mammo


def read_vindr_mammo(manifest: SourceManifest, raw_dir: Path) -> Entries:
    """VinDr-Mammo: ``images/<study_id>/<image_id>.dicom`` + ``breast-level_annotations.csv``.

    ``label`` indexes ``classes`` (``BI-RADS 1`` -> ``birads_1``); ``breast_density``
    (``DENSITY A``..``D``), ``breast_laterality`` and ``breast_view`` come from the CSV. The
    official split (``training`` / ``test``) is the CSV's. The release has no patient id: the
    study (one examination of one woman) is the subject.
    """
    classes = list(manifest.labels.classes)
    label_file = _label_files(manifest, raw_dir)[0]
    rows = read_csv_rows(label_file)
    _require(label_file, rows, ["study_id", "image_id", "breast_birads", "split"])
    files = {(p.parent.name, p.stem): p for p in _records(manifest, raw_dir)}
    out = Entries()
    for row in rows:
        path = files.pop((row["study_id"], row["image_id"]), None)
        if path is None:
            out.skipped["label_row_without_image"] += 1
            continue
        name = "birads_" + re.sub(r"[^0-9]", "", row["breast_birads"])
        if name not in classes:
            out.skipped["label_outside_classes"] += 1
            continue
        out.entries.append(
            Entry(
                item_id=row["image_id"],
                subject_id=row["study_id"],
                path=path,
                split=TEST if row["split"].lower() == "test" else TRAIN,
                labels={
                    "label": classes.index(name),
                    "label_name": name,
                    "breast_density": row.get("breast_density") or None,
                    "breast_laterality": row.get("laterality") or None,
                    "breast_view": row.get("view_position") or None,
                },
            )
        )
    out.skipped["image_without_label_row"] += len(files)
    return out


# --------------------------------------------------------------------------- CMMD

#: SpreadsheetML namespace of xlsx worksheets and shared strings (ECMA-376 Part 1, §18).
_XLSX_NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}


def _column_index(cell_ref: str) -> int:
    """``"C7"`` -> 2 (zero-based column of an A1 reference)."""
    index = 0
    for char in re.match(r"[A-Z]+", cell_ref).group(0):  # type: ignore[union-attr]
        index = index * 26 + ord(char) - ord("A") + 1
    return index - 1


def read_xlsx_rows(path: Path) -> list[dict[str, str]]:
    """Rows of the first worksheet of an ``.xlsx`` as dicts (first row = header).

    A minimal reader with the standard library (``zipfile`` + ElementTree): shared strings,
    inline strings and numbers; no formulas are evaluated (cached values are read), no dates
    are converted. Enough for a clinical-data sheet without adding a dependency. A ``.csv``
    export of the same sheet is read as CSV.

    Raises:
        LabelFileError: missing file, not an xlsx, or no header row.
    """
    import zipfile
    from xml.etree import ElementTree

    if path.suffix.lower() == ".csv":
        return read_csv_rows(path)
    if not path.is_file():
        raise LabelFileError(f"label file {path} is missing; put the release's file there")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            shared: list[str] = []
            if "xl/sharedStrings.xml" in names:
                root = ElementTree.fromstring(archive.read("xl/sharedStrings.xml"))
                for item in root.findall("m:si", _XLSX_NS):
                    shared.append("".join(t.text or "" for t in item.iter(f"{{{_XLSX_NS['m']}}}t")))
            sheets = sorted(n for n in names if re.fullmatch(r"xl/worksheets/sheet\d+\.xml", n))
            if not sheets:
                raise LabelFileError(f"label file {path} has no worksheet")
            sheet = ElementTree.fromstring(archive.read(sheets[0]))
    except (zipfile.BadZipFile, ElementTree.ParseError, KeyError) as exc:
        raise LabelFileError(f"label file {path} is not a readable xlsx: {type(exc).__name__}") from None
    table: list[list[str]] = []
    for row in sheet.iter(f"{{{_XLSX_NS['m']}}}row"):
        values: dict[int, str] = {}
        for cell in row.findall("m:c", _XLSX_NS):
            kind, ref = cell.get("t"), cell.get("r", "")
            if kind == "inlineStr":
                text = "".join(t.text or "" for t in cell.iter(f"{{{_XLSX_NS['m']}}}t"))
            else:
                value = cell.find("m:v", _XLSX_NS)
                text = value.text or "" if value is not None else ""
                if kind == "s" and text:
                    text = shared[int(text)]
            column = _column_index(ref) if ref else len(values)
            values[column] = text.strip()
        if values:
            table.append([values.get(c, "") for c in range(max(values) + 1)])
    if not table:
        raise LabelFileError(f"label file {path} has no header row")
    header = table[0]
    return [{h: (r[i] if i < len(r) else "") for i, h in enumerate(header) if h} for r in table[1:]]


def _dicom_header(path: Path, keywords: list[str]) -> dict[str, str]:
    """A few header values of a DICOM file (index time; never written anywhere)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=keywords, force=True)
    except Exception:  # an unreadable file is left to the transform, which quarantines it
        return {}
    return {k: str(ds.get(k, "") or "").strip() for k in keywords}


def read_cmmd(manifest: SourceManifest, raw_dir: Path) -> Entries:
    """CMMD (TCIA): DICOMs under ``<PatientID>/...`` + ``CMMD_clinicaldata_revision.xlsx``.

    One item per spreadsheet row (patient ``ID1`` + breast ``LeftRight``) holding every image of
    that breast (Patient ID (0010,0020) and Image Laterality (0020,0062) read from each header
    at index time); each image becomes one sample of the item. ``label``: benign 0 /
    malignant 1 (``classification``); ``abnormality``, ``subtype`` and age (capped at 90) are
    columns. The release has no split: patient-level keyed hash.
    """
    classes = list(manifest.labels.classes)
    label_file = _label_files(manifest, raw_dir)[0]
    if not label_file.exists() and label_file.with_suffix(".csv").exists():
        label_file = label_file.with_suffix(".csv")  # a CSV export of the same sheet
    rows = read_xlsx_rows(label_file)
    _require(label_file, rows, ["ID1", "LeftRight", "classification"])
    images: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for path in _records(manifest, raw_dir):
        header = _dicom_header(path, ["PatientID", "ImageLaterality", "Laterality"])
        side = header.get("ImageLaterality") or header.get("Laterality") or ""
        patient = header.get("PatientID") or path.relative_to(raw_dir).parts[0]
        images[(patient, side.upper()[:1])].append(path)
    out = Entries()
    used: set[tuple[str, str]] = set()
    for row in rows:
        patient, side = row["ID1"], row["LeftRight"].upper()[:1]
        paths = sorted(images.get((patient, side), []))
        if not paths:
            out.skipped["label_row_without_image"] += 1
            continue
        name = row["classification"].lower()
        if name not in classes:
            out.skipped["label_outside_classes"] += 1
            continue
        used.add((patient, side))
        age = row.get("Age", "")
        out.entries.append(
            Entry(
                item_id=f"{patient}/{side}",
                subject_id=patient,
                path=paths[0],
                split=None,
                labels={
                    "label": classes.index(name),
                    "label_name": name,
                    "abnormality": row.get("abnormality") or None,
                    "subtype": row.get("subtype") or None,
                    "age_years": cap_age_years(int(float(age))) if age else None,
                },
                extra_paths=tuple(paths[1:]),
            )
        )
    out.skipped["image_without_label_row"] += sum(len(v) for k, v in images.items() if k not in used)
    return out


# --------------------------------------------------------------------------- CBIS-DDSM

_PATHOLOGY_RANK = {"BENIGN_WITHOUT_CALLBACK": 0, "BENIGN": 1, "MALIGNANT": 2}


def read_cbis_ddsm(manifest: SourceManifest, raw_dir: Path) -> Entries:
    """CBIS-DDSM (TCIA): DICOM series under ``<PatientID>/...`` + the four case-description CSVs.

    A full mammogram's Patient ID (``Mass-Training_P_00001_LEFT_CC``) is the first component of
    the CSVs' ``image file path``; ROI masks and crops have their own (``..._1``) and are not
    items. One item per full mammogram: ``label`` is the highest ``assessment`` (BI-RADS 0-5)
    among its abnormalities, ``pathology`` the worst (malignant > benign > benign without
    callback), ``abnormality_types`` the kinds (mass, calcification), ``breast_density`` the
    CSV's. Official split: ``*_test_set.csv`` is test; train rows are split train/val by a
    keyed hash of the patient (``P_00001``), so no patient spans train and val.
    """
    classes = list(manifest.labels.classes)
    grouped: dict[str, list[dict[str, str]]] = defaultdict(list)
    test_series: set[str] = set()
    for label_file in _label_files(manifest, raw_dir):
        rows = read_csv_rows(label_file)
        _require(label_file, rows, ["patient_id", "assessment", "pathology", "image file path"])
        for row in rows:
            series = row["image file path"].replace("\\", "/").split("/")[0]
            grouped[series].append(row)
            if "test" in label_file.name.lower():
                test_series.add(series)
    by_series: dict[str, list[Path]] = defaultdict(list)
    for path in _records(manifest, raw_dir):
        by_series[path.relative_to(raw_dir).parts[0]].append(path)
    out = Entries()
    for series, rows in sorted(grouped.items()):
        paths = sorted(by_series.pop(series, []))
        if not paths:
            out.skipped["label_row_without_image"] += 1
            continue
        if len(paths) > 1:
            out.skipped["full_mammogram_with_several_files"] += 1
            continue
        try:
            birads = max(int(float(r["assessment"])) for r in rows)
        except ValueError:
            out.skipped["unreadable_assessment"] += 1
            continue
        name = f"birads_{birads}"
        if name not in classes:
            out.skipped["label_outside_classes"] += 1
            continue
        pathology = max((r["pathology"].upper() for r in rows), key=lambda p: _PATHOLOGY_RANK.get(p, -1))
        out.entries.append(
            Entry(
                item_id=series,
                subject_id=rows[0]["patient_id"],
                path=paths[0],
                split=TEST if series in test_series else None,
                labels={
                    "label": classes.index(name),
                    "label_name": name,
                    "pathology": pathology.lower(),
                    "abnormality_types": sorted({r.get("abnormality type", "").lower() for r in rows} - {""}),
                    "breast_density": rows[0].get("breast_density") or rows[0].get("breast density") or None,
                },
            )
        )
    out.skipped["series_without_label_row"] += sum(len(v) for v in by_series.values())
    return out


#: source id -> label reader. Sources not listed here have no indexer yet.
LABEL_READERS: dict[str, Callable[[SourceManifest, Path], Entries]] = {
    "vindr_cxr": read_vindr_cxr,
    "chexpert": read_chexpert,
    "covid19_xray": read_covid19_xray,
    "coronahack": read_coronahack,
    "mimic_cxr": read_mimic_cxr,
    "vindr_mammo": read_vindr_mammo,
    "cmmd": read_cmmd,
    "cbis_ddsm": read_cbis_ddsm,
}
