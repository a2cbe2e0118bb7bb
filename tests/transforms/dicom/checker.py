"""The test oracle for DICOM de-identification, written from PS3.15 Annex E, not from the engine.

Given original and de-identified datasets, :func:`check_corpus` reports:

- ``table_attribute_retained``: an attribute that Table E.1-1 (with the chosen options) says to
  remove, empty, replace with a dummy or replace by a new UID still holds its original value;
- ``uid_survived``: an original UID (any element, any depth, file meta and private included;
  well-known UIDs from the DICOM registry excepted) found in any element of the output, text
  and bytes included;
- ``private_tag``: a private element anywhere in the output;
- ``missing_marker``: Patient Identity Removed (0012,0062) not YES, no De-identification Method
  (0012,0063), no code 113100 in De-identification Method Code Sequence (0012,0064), or
  Longitudinal Temporal Information Modified (0028,0303) not MODIFIED under the Modified Dates
  option;
- ``unshifted_date`` / ``inconsistent_date_shift``: a DA/DT still equal to the original, or
  dates of one patient moved by different amounts;
- ``age_over_89``: an AS above the HIPAA cap (ages over 89 are written as ``090Y``);
- ``identifying_text``: a string from the original's identifying attributes (names and their
  components, IDs, addresses, institution and device names...) inside any element of the
  output, private and UN included, searched in the value bytes;
- ``uid_mapping_inconsistent`` / ``broken_reference`` / ``reference_lost``: one original UID
  mapped to two new UIDs (or two to one), or a reference that resolved to an instance, series,
  study or frame of reference of the set no longer resolving to its new UID;
- ``count_changed``: the number of patients, studies, series or instances changed.

The table is read from ``../shared/reference/dicom_ps315_annex_e.json`` (PS3.15 Table E.1-1),
independently of ``transforms.dicom.profile``; the only library knowledge used is pydicom's
data dictionary (VRs, keywords) and UID registry (PS3.6 Annex A: what counts as well-known).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pydicom._uid_dict import UID_dictionary
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

TABLE_PATH = Path(__file__).resolve().parents[3].parent / "shared" / "reference" / "dicom_ps315_annex_e.json"
MODIFIED_DATES = "retain-long-modified-dates"
DEFAULT_CHECK_OPTIONS = frozenset({MODIFIED_DATES, "retain-patient-chars", "clean-descriptors"})

#: Actions after which the original value must be gone (PS3.15 Table E.1-1 legend).
REMOVING = frozenset({"X", "Z", "D", "U", "X/Z", "X/D", "Z/D", "X/Z/D"})
STRING_VRS = frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC", "AE", "UR"})
#: Bulk data searched neither for UIDs nor for text (pixel and waveform samples).
BULK_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009, 0x54001010})
#: De-identification Method (0012,0063) and its Code Sequence (0012,0064): the de-identifier's
#: fixed vocabulary (CID 7050 code meanings), not searched for names ("Ion" in "Option").
MARKER_TAGS = frozenset({0x00120063, 0x00120064})
TRANSFER_SYNTAX_TAG = 0x00020010
#: Implementation Class UID (0002,0012) names the application that wrote the file (PS3.10 §7.1):
#: a new writer rightly puts its own there, so it is no instance mapping.
WRITER_TAGS = frozenset({TRANSFER_SYNTAX_TAG, 0x00020012})
#: Coding Scheme UID, Context UID, Mapping Resource UID (PS3.3 Table 8.8-1): they name coding
#: schemes (SNOMED CT, LOINC...), not people or studies, and DICOM's UID registry lacks them.
SCHEME_TAGS = frozenset({0x0008010C, 0x00080117, 0x00080118})
REFERENCE_TARGET_KEYWORDS = ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID")
_UID_TOKEN = re.compile(r"[0-9][0-9.]*[0-9]")
_UID_IN_BYTES = re.compile(rb"[0-9]+(?:\.[0-9]+){3,}")
_DA_FULL = re.compile(r"^(\d{4})(\d{2})(\d{2})")

Path_ = tuple[object, ...]


@dataclass(frozen=True)
class Finding:
    """One way a de-identified file falls short.

    Attributes:
        kind: the finding's kind (module docstring).
        file: the pair's name.
        where: tag path (``(0008,1140)[0]/(0008,1155)``) or ``-``.
        detail: what was found.
    """

    kind: str
    file: str
    where: str
    detail: str


# --------------------------------------------------------------------------- the table


def _pattern_to_mask(pattern: str) -> tuple[int, int] | None:
    text = pattern.upper().strip("() ").replace(",", "")
    if text == "PRIVATE":
        return None
    mask = int("".join("0" if ch == "X" else "F" for ch in text), 16)
    return mask, int(text.replace("X", "0"), 16)


class Table:
    """Which attributes must lose their original value under a set of options."""

    def __init__(self, options: frozenset[str] = DEFAULT_CHECK_OPTIONS, path: Path = TABLE_PATH) -> None:
        rows = json.loads(path.read_text("utf-8"))["rows"]
        self.options = options
        self.removing_exact: set[int] = set()
        self.removing_masks: list[tuple[int, int]] = []
        for row in rows:
            kept = any(row["opts"].get(opt) in ("K", "C") for opt in options)
            if kept or row["basic"] not in REMOVING:
                continue
            parsed = _pattern_to_mask(row["tag"])
            if parsed is None:
                continue
            mask, value = parsed
            if mask == 0xFFFFFFFF:
                self.removing_exact.add(value)
            else:
                self.removing_masks.append((mask, value))

    def must_remove(self, tag: int) -> bool:
        return tag in self.removing_exact or any(tag & m == v for m, v in self.removing_masks)


# --------------------------------------------------------------------------- walking


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _path_text(path: Path_) -> str:
    parts: list[str] = []
    for step in path:
        if isinstance(step, tuple):
            parts[-1] += f"[{step[1]}]"
        elif isinstance(step, int):
            parts.append(_tag_text(step))
        else:
            parts.append(str(step))
    return "/".join(parts)


def walk(ds: Dataset, prefix: Path_ = ()) -> Iterator[tuple[Path_, DataElement]]:
    """Every element at every depth, file meta first, with its path of (tag, item index) steps."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and not prefix:
        for elem in meta:
            yield ("meta", int(elem.tag)), elem
    for elem in ds:
        path = (*prefix, int(elem.tag))
        yield path, elem
        if elem.VR == "SQ" and elem.value is not None:
            for index, item in enumerate(elem.value):
                yield from walk(item, (*path, ("item", index)))


def _strings(elem: DataElement) -> list[str]:
    value = elem.value
    if value is None:
        return []
    if isinstance(value, bytes):
        return [value.decode("latin-1")]
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value if v is not None]
    return [str(value)]


def _text_of(elem: DataElement) -> str:
    """Everything an element says, text or bytes (bytes read as latin-1)."""
    if elem.VR == "SQ" or int(elem.tag) in BULK_TAGS:
        return ""
    return "\\".join(_strings(elem))


def _norm(values: list[str]) -> list[str]:
    return [v.strip().rstrip("\x00").strip() for v in values]


def _is_well_known(uid: str) -> bool:
    return uid in UID_dictionary


# --------------------------------------------------------------------------- per pair


def original_uids(ds: Dataset) -> set[str]:
    """Non-well-known UIDs in the original, private and bytes included (Transfer Syntax excepted)."""
    found: set[str] = set()
    for path, elem in walk(ds):
        if path[-1] == TRANSFER_SYNTAX_TAG or int(elem.tag) in BULK_TAGS or int(elem.tag) in SCHEME_TAGS:
            continue
        if elem.VR == "UI":
            found.update(u for u in _norm(_strings(elem)) if u)
        elif elem.tag.is_private and isinstance(elem.value, bytes):
            found.update(m.decode() for m in _UID_IN_BYTES.findall(elem.value))
    return {u for u in found if not _is_well_known(u)}


def identifying_strings(ds: Dataset, table: Table) -> set[str]:
    """Values of the attributes the table removes, string VRs only, names split into parts."""
    found: set[str] = set()
    for _path, elem in walk(ds):
        if elem.tag.is_private or elem.VR not in STRING_VRS or not table.must_remove(int(elem.tag)):
            continue
        for value in _norm(_strings(elem)):
            for part in re.split(r"[\\\r\n]+", value):
                if len(part.strip()) >= 3:
                    found.add(part.strip())
            if elem.VR == "PN":
                found.update(c.strip() for c in re.split(r"[\^=]", value) if len(c.strip()) >= 3)
    return found


def _identifying_regex(strings: set[str]) -> re.Pattern[str] | None:
    parts = []
    for text in sorted(strings, key=len, reverse=True):
        escaped = re.escape(text)
        # Long strings with letters match anywhere. Short ones ("Abe", "Ion") and strings without
        # letters (IDs) match as whole tokens only: a 3-letter name inside a hex pseudonym or a
        # number inside a new UID is a coincidence, not a leak.
        long_text = len(text) >= 5 and any(c.isalpha() for c in text)
        parts.append(escaped if long_text else rf"(?<![0-9A-Za-z]){escaped}(?![0-9A-Za-z])")
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


def check_pair(
    name: str, original: Dataset, deidentified: Dataset, table: Table
) -> tuple[list[Finding], list[tuple[str, str, str]], set[int]]:
    """Findings for one file, the (path, original UID, new UID) pairs seen aligned, and the
    day shifts seen between original and de-identified full dates."""
    findings: list[Finding] = []
    out_by_path = dict(walk(deidentified))
    uid_pairs: list[tuple[str, str, str]] = []
    deltas: set[int] = set()
    meta = getattr(original, "file_meta", None)
    # PS3.10 §7.1: Media Storage SOP Instance UID equals SOP Instance UID; a writer that repairs a
    # file where they differ rightly maps both to the new SOP Instance UID.
    meta_broken = meta is not None and _top(meta, "MediaStorageSOPInstanceUID") != _top(
        original, "SOPInstanceUID"
    )

    for path, elem in walk(original):
        tag = int(elem.tag)
        out = out_by_path.get(path)
        before = [v for v in _norm(_strings(elem)) if v] if elem.VR != "SQ" else []
        after = _norm(_strings(out)) if out is not None and out.VR != "SQ" else []
        if (
            not elem.tag.is_private
            and elem.VR != "SQ"
            and table.must_remove(tag)
            and before
            and after == before
        ):
            findings.append(Finding("table_attribute_retained", name, _path_text(path), elem.keyword or ""))
        if elem.VR in ("DA", "DT") and before and not elem.tag.is_private:
            if after == before:
                findings.append(Finding("unshifted_date", name, _path_text(path), elem.keyword or ""))
            elif len(after) == len(before):
                for b, a in zip(before, after, strict=True):
                    mb, ma = _DA_FULL.match(b), _DA_FULL.match(a)
                    if mb and ma:
                        try:
                            deltas.add((date(*map(int, ma.groups())) - date(*map(int, mb.groups()))).days)
                        except ValueError:
                            findings.append(Finding("unshifted_date", name, _path_text(path), "invalid date"))
        if elem.VR == "UI" and out is not None and out.VR == "UI" and path[-1] not in WRITER_TAGS:
            if meta_broken and path[0] == "meta":
                continue
            for b, a in zip(before, after, strict=False):
                if b and not _is_well_known(b):
                    uid_pairs.append((_path_text(path), b, a))
    if len(deltas) > 1 or 0 in deltas:
        findings.append(Finding("inconsistent_date_shift", name, "-", f"day shifts {sorted(deltas)}"))

    uids = original_uids(original)
    phi = _identifying_regex(identifying_strings(original, table))
    for path, elem in out_by_path.items():
        is_marker = any(step in MARKER_TAGS for step in path if isinstance(step, int))
        if elem.tag.is_private:
            findings.append(Finding("private_tag", name, _path_text(path), ""))
        text = _text_of(elem)
        if not text:
            continue
        survivors = uids.intersection(_UID_TOKEN.findall(text))
        for uid in sorted(survivors):
            findings.append(Finding("uid_survived", name, _path_text(path), uid))
        if phi is not None and not is_marker and (hit := phi.search(text)):
            findings.append(Finding("identifying_text", name, _path_text(path), hit.group(0)))
        if elem.VR == "AS":
            for value in _norm(_strings(elem)):
                if (
                    value.endswith("Y") and value[:-1].isdigit() and int(value[:-1]) > 90
                ):  # 090Y is the cap itself
                    findings.append(Finding("age_over_89", name, _path_text(path), value))

    if str(deidentified.get("PatientIdentityRemoved", "")).strip().upper() != "YES":
        findings.append(Finding("missing_marker", name, "(0012,0062)", "PatientIdentityRemoved"))
    if not deidentified.get("DeidentificationMethod"):
        findings.append(Finding("missing_marker", name, "(0012,0063)", "DeidentificationMethod"))
    codes = {
        str(item.get("CodeValue", "")) for item in deidentified.get("DeidentificationMethodCodeSequence", [])
    }
    if "113100" not in codes:
        findings.append(Finding("missing_marker", name, "(0012,0064)", "113100 Basic Profile code"))
    if MODIFIED_DATES in table.options:
        if str(deidentified.get("LongitudinalTemporalInformationModified", "")).strip() != "MODIFIED":
            findings.append(
                Finding("missing_marker", name, "(0028,0303)", "LongitudinalTemporalInformationModified")
            )
        if "113107" not in codes:
            findings.append(Finding("missing_marker", name, "(0012,0064)", "113107 Modified Dates code"))
    return findings, uid_pairs, deltas


# --------------------------------------------------------------------------- across the set


def _top(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip().rstrip("\x00")


def check_corpus(
    pairs: list[tuple[str, Dataset, Dataset]], options: frozenset[str] = DEFAULT_CHECK_OPTIONS
) -> list[Finding]:
    """Check every (name, original, de-identified) pair, then references and counts across them."""
    table = Table(options)
    findings: list[Finding] = []
    forward: dict[str, set[str]] = defaultdict(set)
    backward: dict[str, set[str]] = defaultdict(set)
    shifts_by_patient: dict[str, set[int]] = defaultdict(set)
    for name, original, deidentified in pairs:
        pair_findings, uid_pairs, deltas = check_pair(name, original, deidentified, table)
        findings += pair_findings
        shifts_by_patient[_top(deidentified, "PatientID")].update(deltas)
        for _where, before, after in uid_pairs:
            forward[before].add(after)
            backward[after].add(before)
    for before, afters in forward.items():
        if len(afters) > 1:
            findings.append(Finding("uid_mapping_inconsistent", "*", "-", f"{before} -> {sorted(afters)}"))
    for after, befores in backward.items():
        if len(befores) > 1:
            findings.append(Finding("uid_mapping_inconsistent", "*", "-", f"{sorted(befores)} -> {after}"))

    for patient, shifts in shifts_by_patient.items():
        if patient and len(shifts) > 1:
            findings.append(Finding("inconsistent_date_shift", "*", patient, f"day shifts {sorted(shifts)}"))

    # references: a UID that named an object of the set must name the same object's new UID
    targets: dict[str, str] = {}
    for _name, original, deidentified in pairs:
        for keyword in REFERENCE_TARGET_KEYWORDS:
            before, after = _top(original, keyword), _top(deidentified, keyword)
            if before:
                targets[before] = after
    for name, original, deidentified in pairs:
        out_by_path = dict(walk(deidentified))
        for path, elem in walk(original):
            if (
                elem.VR != "UI"
                or path[0] == "meta"
                or (len(path) < 2 and elem.keyword in REFERENCE_TARGET_KEYWORDS)
            ):
                continue
            for index, value in enumerate(_norm(_strings(elem))):
                if value not in targets:
                    continue
                out = out_by_path.get(path)
                if out is None:
                    findings.append(Finding("reference_lost", name, _path_text(path), elem.keyword or ""))
                    continue
                new_values = _norm(_strings(out))
                if index >= len(new_values) or new_values[index] != targets[value]:
                    findings.append(Finding("broken_reference", name, _path_text(path), elem.keyword or ""))

    for keyword in ("PatientID", *REFERENCE_TARGET_KEYWORDS[:3]):
        before = {_top(o, keyword) for _n, o, _d in pairs}
        after = {_top(d, keyword) for _n, _o, d in pairs}
        if len(before) != len(after):
            findings.append(Finding("count_changed", "*", keyword, f"{len(before)} -> {len(after)}"))
    return findings


def count_by_kind(findings: list[Finding]) -> dict[str, int]:
    """``{kind: count}``, sorted by kind."""
    return dict(sorted(Counter(f.kind for f in findings).items()))
