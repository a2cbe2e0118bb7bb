"""ECG labels: SNOMED CT diagnosis codes and CLIMB's 7 superclasses.

Everything here reads data shipped inside the package (``transforms/ecg/data/``), never
``../shared``:

* ``cinc2021_dx_mapping_scored.csv`` and ``_unscored.csv``: the PhysioNet/CinC Challenge
  2021 SNOMED CT tables (BSD-2-Clause, ``cinc2021_LICENSE`` beside them). The scored table's
  *Notes* name four pairs of codes the challenge scores as one diagnosis; they are read from
  the notes, not retyped.
* ``climb_ecg_7.csv``: our mapping of every code in those tables to one of CLIMB's seven
  superclasses, with a reason per row. It is derived from the diagnosis names (sinus
  rhythms → normal; AF/AFL → afib; bundle branch, fascicular and AV blocks, PR prolongation,
  pre-excitation → cd; infarction and pathological Q waves → mi; ST/T, ischaemia and QT
  changes → sttc; ventricular hypertrophy, high voltage and atrial enlargement → hyp;
  everything else → other). Where this mapping and CLIMB's published tables disagree, the
  test ``tests/transforms/ecg/test_labels.py`` says where and why.
* ``climb_ecg_splits_{ptbxl,ChapmanShaoxing,Ga,CPSC}.csv``: CLIMB's frozen label and split
  tables, one row per record.

Examples:
    >>> normalise_codes(["59118001", "426783006", "713427006"])
    ['59118001', '426783006']
    >>> superclasses_for(["426783006", "59118001"]).tolist()
    [1, 1, 0, 0, 0, 0, 0]
    >>> describe_code("164889003")
    'atrial fibrillation (AF)'
"""

from __future__ import annotations

import csv
import functools
import io
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

__all__ = [
    "CLIMB_TABLES",
    "SUPERCLASSES",
    "DxEntry",
    "describe_code",
    "equivalent_codes",
    "load_climb_table",
    "load_dx_table",
    "load_superclass_map",
    "normalise_codes",
    "parse_dx_codes",
    "superclasses_for",
]

SUPERCLASSES: tuple[str, ...] = ("normal", "cd", "mi", "sttc", "other", "afib", "hyp")
"""CLIMB's 7 ECG superclasses, in the column order of its tables and of every multi-hot vector."""

CLIMB_TABLES: dict[str, str] = {
    "ptbxl": "climb_ecg_splits_ptbxl.csv",
    "chapmanshaoxing": "climb_ecg_splits_ChapmanShaoxing.csv",
    "ga": "climb_ecg_splits_Ga.csv",
    "cpsc": "climb_ecg_splits_CPSC.csv",
}
"""Short names (lower case) of CLIMB's split tables → file names in ``data/``."""

_DX_FILES = ("cinc2021_dx_mapping_scored.csv", "cinc2021_dx_mapping_unscored.csv")
_RX_SAME = re.compile(r"score\s+(\d+)\s+and\s+(\d+)\s+as the same", re.IGNORECASE)
_RX_DX_LINE = re.compile(r"^\s*#?\s*dx\s*:\s*(.*)$", re.IGNORECASE)
_RX_CODE = re.compile(r"^\d{5,18}$")


def _read_data(name: str) -> str:
    return (resources.files("transforms.ecg") / "data" / name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class DxEntry:
    """One SNOMED CT code of the CinC tables.

    Attributes:
        code: SNOMED CT concept id, as a string.
        name: the diagnosis name as the table gives it.
        abbreviation: the challenge's abbreviation (``AF``, ``RBBB``).
        scored: True when the code is in the challenge's scored table.
        total: records with the code over all challenge sources.
    """

    code: str
    name: str
    abbreviation: str
    scored: bool
    total: int


@functools.cache
def load_dx_table() -> dict[str, DxEntry]:
    """Every code of the CinC 2021 tables (scored and unscored), by code."""
    table: dict[str, DxEntry] = {}
    for file_name in _DX_FILES:
        for row in csv.DictReader(io.StringIO(_read_data(file_name))):
            code = row["SNOMEDCTCode"].strip()
            table[code] = DxEntry(
                code=code,
                name=" ".join(row["Dx"].split()),
                abbreviation=row["Abbreviation"].strip(),
                scored=file_name.endswith("_scored.csv"),
                total=int(row.get("Total") or 0),
            )
    return table


@functools.cache
def equivalent_codes() -> dict[str, str]:
    """The CinC scored table's equivalent pairs, as code → representative code.

    The representative of a pair is the code with more records in the challenge data
    (``Total``), so normalised labels use the spelling most sources use: LBBB, RBBB, PAC, PVC.

    >>> sorted(equivalent_codes().items())
    [('17338001', '427172004'), ('63593006', '284470004'), ('713427006', '59118001'), ('733534002', '164909002')]
    """
    table = load_dx_table()
    pairs: set[tuple[str, str]] = set()
    for row in csv.DictReader(io.StringIO(_read_data(_DX_FILES[0]))):
        for a, b in _RX_SAME.findall(row.get("Notes") or ""):
            pairs.add((min(a, b), max(a, b)))
    mapping: dict[str, str] = {}
    for a, b in sorted(pairs):
        keep, drop = sorted((a, b), key=lambda c: (-table[c].total, int(c)))
        mapping[drop] = keep
    return mapping


def parse_dx_codes(comments: list[str] | tuple[str, ...]) -> list[str]:
    """SNOMED CT codes from ``Dx:`` header comment lines (``#Dx:``, ``# Dx:``, ``Dx:``), in order.

    Tokens that are not numeric codes are skipped.

    >>> parse_dx_codes(["Age: 59", "Dx: 164934002,426783006", "#Dx: 59118001, x"])
    ['164934002', '426783006', '59118001']
    """
    codes: list[str] = []
    for line in comments:
        m = _RX_DX_LINE.match(line)
        if m is not None:
            codes.extend(t for t in (p.strip() for p in m[1].split(",")) if _RX_CODE.match(t))
    return codes


def normalise_codes(codes: list[str] | tuple[str, ...]) -> list[str]:
    """Codes with CinC's equivalent pairs merged and duplicates removed, first occurrence order.

    >>> normalise_codes(["63593006", "284470004", "426783006"])
    ['284470004', '426783006']
    """
    equiv = equivalent_codes()
    out: list[str] = []
    for code in codes:
        c = equiv.get(str(code).strip(), str(code).strip())
        if c not in out:
            out.append(c)
    return out


@functools.cache
def load_superclass_map() -> dict[str, str]:
    """``climb_ecg_7.csv`` as code → superclass (one of :data:`SUPERCLASSES`).

    Raises:
        ValueError: when the packaged table names a superclass outside :data:`SUPERCLASSES`.
    """
    mapping: dict[str, str] = {}
    for row in csv.DictReader(io.StringIO(_read_data("climb_ecg_7.csv"))):
        if row["superclass"] not in SUPERCLASSES:
            raise ValueError(
                f"climb_ecg_7.csv: code {row['code']} has unknown superclass {row['superclass']!r}"
            )
        mapping[row["code"].strip()] = row["superclass"]
    return mapping


def superclasses_for(codes: list[str] | tuple[str, ...]) -> np.ndarray:
    """CLIMB's 7-superclass multi-hot vector for a record's codes.

    Codes are normalised first. Codes outside the CinC tables set no class (validation
    reports them as ``unknown_label``); a record whose codes set no class gets all zeros,
    where CLIMB's own loader drew a random class.

    Returns:
        int8, shape (7,), in :data:`SUPERCLASSES` order.

    >>> superclasses_for(["164889003", "999999999"]).tolist()
    [0, 0, 0, 0, 0, 1, 0]
    """
    mapping = load_superclass_map()
    out = np.zeros(len(SUPERCLASSES), dtype=np.int8)
    for code in normalise_codes(codes):
        cls = mapping.get(code)
        if cls is not None:
            out[SUPERCLASSES.index(cls)] = 1
    return out


def describe_code(code: str) -> str:
    """The diagnosis name and abbreviation of a SNOMED CT code of the CinC tables.

    Raises:
        KeyError: for a code the tables do not hold.
    """
    entry = load_dx_table().get(str(code).strip())
    if entry is None:
        raise KeyError(f"SNOMED CT code {code!r} is not in the CinC 2021 tables")
    return f"{entry.name} ({entry.abbreviation})"


def _table_file(name: str) -> str:
    key = name.strip()
    if key.endswith(".csv"):
        if key in CLIMB_TABLES.values():
            return key
        key = key.removesuffix(".csv").removeprefix("climb_ecg_splits_")
    file_name = CLIMB_TABLES.get(key.lower())
    if file_name is None:
        raise ValueError(f"unknown CLIMB ECG table {name!r}; known: {sorted(CLIMB_TABLES)}")
    return file_name


@functools.cache
def load_climb_table(name: str) -> dict[str, dict[str, Any]]:
    """One of CLIMB's frozen ECG tables, by record.

    Args:
        name: ``ptbxl``, ``ChapmanShaoxing``, ``Ga``, ``CPSC`` (any case) or the file name
            (``climb_ecg_splits_ptbxl.csv``).

    Returns:
        record → ``{"superclasses": tuple of 7 ints (0/1, :data:`SUPERCLASSES` order),
        "split": "train" | "val", "label": int}`` where ``label`` is CLIMB's single class
        index (its loader's random pick among the positives).

    Raises:
        ValueError: unknown name, or a table whose columns or values are not CLIMB's.

    >>> row = load_climb_table("ptbxl")["HR06000"]
    >>> row["superclasses"], row["split"], row["label"]
    ((1, 0, 0, 1, 0, 0, 0), 'val', 3)
    """
    file_name = _table_file(name)
    reader = csv.DictReader(io.StringIO(_read_data(file_name)))
    expected = ["record", *SUPERCLASSES, "split", "label"]
    if reader.fieldnames != expected:
        raise ValueError(f"{file_name}: columns {reader.fieldnames}, expected {expected}")
    table: dict[str, dict[str, Any]] = {}
    for row in reader:
        hot = tuple(int(row[c]) for c in SUPERCLASSES)
        if any(v not in (0, 1) for v in hot) or row["split"] not in ("train", "val"):
            raise ValueError(f"{file_name}: record {row['record']} has invalid values")
        table[row["record"]] = {"superclasses": hot, "split": row["split"], "label": int(row["label"])}
    return table
