"""DICOM de-identification: the PS3.15 Basic Application Level Confidentiality Profile.

:func:`deidentify_dataset` applies Table E.1-1 (see :mod:`transforms.dicom.profile`) to every
element at every depth of every sequence, file meta included, and returns the de-identified
dataset with a count of what it did (``Counter`` of ``"<action>:<what>"``, the
de-identification report). Choices beyond the table, each made so that nothing identifying
leaves (when unsure, remove):

- **UIDs.** Every UID that is not a well-known UID (anything in pydicom's UID dictionary: SOP
  classes, transfer syntaxes, coding schemes...) is replaced by ``2.25.<int>``, the decimal of
  the first 128 bits of ``HMAC-SHA256(key, namespace, "uid", original)``, wherever it appears
  (not only in the table's ``U`` rows), so one original UID maps to one new UID across a whole
  source and every reference (``ReferencedSOPInstanceUID``, ``FrameOfReferenceUID``...) still
  matches. The Transfer Syntax UID is never changed.
- **Dates.** Every DA and DT at any depth moves by the patient's offset (whole days; TM is
  therefore unchanged and consistent), unless Retain Full Dates is selected. Unparseable dates
  are emptied.
- **Private attributes** are removed (Retain Safe Private is not implemented: no safe-private
  list is trusted). Public tags unknown to pydicom's dictionary are removed too, and so are
  group lengths.
- **Patient.** Patient's Name and Patient ID become the subject's pseudonym (a nested Patient
  ID, as in a DICOMDIR record, becomes the pseudonym of its own value). Ages over 89 become
  ``090Y``.
- **Descriptors (Clean Descriptors option).** A free-text descriptor is kept only when it holds
  none of the identifying strings collected from the dataset (names and their parts, IDs,
  addresses, institution and device names, original UIDs) and no date-like or long number;
  otherwise it is emptied.
- **Last pass.** Every remaining text element at any depth is searched for those identifying
  strings and emptied on a hit.
- **Burned-in annotation** (``BurnedInAnnotation=YES``; ultrasound and secondary capture
  without the attribute): masked by the source's :class:`BurnedInPolicy` rectangles or
  quarantined with :class:`ItemError` ``burned_in_annotation``; never passed silently.
- **Markers.** ``PatientIdentityRemoved=YES``, ``DeidentificationMethod``,
  ``DeidentificationMethodCodeSequence`` (CID 7050), ``LongitudinalTemporalInformationModified``.

Limits, known and chosen: Retain Safe Private is not implemented (private attributes always go);
burned-in text is handled by policy (mask rectangles or quarantine), not detected by OCR; overlay
bits embedded in the unused high bits of Pixel Data (a retired encoding) are not cleared; all
patients without a Patient ID share one pseudonym and one date offset per namespace.

Examples:
    >>> from pydicom.dataset import Dataset
    >>> from transforms.pseudonyms import DeidKey, derive_subject_keys
    >>> key = DeidKey(b"test-only-secret-not-for-real-data")
    >>> ds = Dataset()
    >>> ds.PatientName, ds.PatientID, ds.StudyDate = "DOE^JANE", "MRN123", "20200301"
    >>> ds.StudyInstanceUID = "1.2.3.4.5"
    >>> keys = subject_keys_for_dataset(ds, key, "demo")
    >>> out, actions = deidentify_dataset(ds, keys, key, "demo")
    >>> str(out.PatientName) == keys.pseudonym, out.StudyInstanceUID.startswith("2.25.")
    (True, True)
    >>> out.StudyDate != "20200301", out.PatientIdentityRemoved
    (True, 'YES')
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import dictionary_has_tag, dictionary_VR, repeater_has_tag
from pydicom.dataelem import DataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from transforms.dicom.dates import cap_age_string, shift_date_value
from transforms.dicom.profile import (
    BASIC_PROFILE_CODE,
    CLEAN_PIXEL_DATA_CODE,
    DEFAULT_OPTIONS,
    OPTION_CODES,
    RETAIN_LONG_FULL_DATES,
    RETAIN_LONG_MODIFIED_DATES,
    RETAIN_UIDS,
    ResolvedProfile,
    resolve_profile,
)
from transforms.dicom.read import read_int
from transforms.problems import ItemError
from transforms.pseudonyms import DeidKey, SubjectKeys, derive_subject_keys

TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
"""VRs holding free or coded text, searched by the last pass."""
IDENTIFYING_VRS = frozenset({"AE", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
"""VRs whose removed values are collected as identifying strings (CS holds enumerations)."""
NUMBER_STRING_VRS = frozenset({"IS", "DS"})

TAG_PATIENT_NAME = 0x00100010
TAG_PATIENT_ID = 0x00100020
TAG_PATIENT_AGE = 0x00101010
TAG_BURNED_IN = 0x00280301
TAG_PIXEL_DATA = 0x7FE00010
TAG_TRANSFER_SYNTAX = 0x00020010

#: Secondary Capture and ultrasound SOP classes (PS3.4 Annex B): burned-in text is presumed.
_SC_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
_US_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.6.1",
        "1.2.840.10008.5.1.4.1.1.6.2",
        "1.2.840.10008.5.1.4.1.1.3.1",
        "1.2.840.10008.5.1.4.1.1.6",
        "1.2.840.10008.5.1.4.1.1.3",
    }
)

#: Attributes that name a coding scheme or mapping resource (PS3.3 Table 8.8-1, Code Sequence
#: Macro): their UIDs (SNOMED CT's 2.16.840.1.113883.6.96, LOINC's...) identify no one and are
#: kept even though pydicom's registry, which lists only DICOM's own UIDs, does not know them.
SCHEME_UID_TAGS = frozenset({0x0008010C, 0x00080117, 0x00080118})

#: This implementation, written as the Implementation Class UID of every file we write.
IMPLEMENTATION_CLASS_UID = "2.25.229379497862126018936129406458232469041"
IMPLEMENTATION_VERSION_NAME = "CLIMB_DEID_1"
_FILE_META_KEPT = frozenset({0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012, 0x00020013})

_DUMMY_TEXT = "REMOVED"
_DUMMY_BY_VR: dict[str, Any] = {
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "AS": "000D",
    "IS": "0",
    "DS": "0",
}
_NUMERIC_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT"})
_DIGIT_RUN = re.compile(r"\d{6,}")
_DATE_LIKE = re.compile(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}")
_WORD = re.compile(r"[0-9A-Za-z]+")
#: VRs whose kept values still change: sequences (recursed), UIDs, dates, ages.
_KEEP_NEEDS_VALUE = frozenset({"SQ", "UI", "DA", "DT", "AS", "UN"})


@dataclass(frozen=True)
class BurnedInPolicy:
    """What to do with images that may carry burned-in text (per source).

    Attributes:
        action: ``"quarantine"`` (raise :class:`ItemError` ``burned_in_annotation``) or
            ``"mask"`` (zero the rectangles, then mark ``BurnedInAnnotation=NO``).
        rectangles: ``(x0, y0, x1, y1)`` as fractions of Columns/Rows (0..1), top-left origin;
            fractions so that one rule fits every image size of a source.
    """

    action: str = "quarantine"
    rectangles: tuple[tuple[float, float, float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.action not in {"quarantine", "mask"}:
            raise ValueError(f"burned-in action must be 'quarantine' or 'mask', got {self.action!r}")
        if self.action == "mask" and not self.rectangles:
            raise ValueError("a 'mask' burned-in policy needs at least one rectangle")
        for rect in self.rectangles:
            x0, y0, x1, y1 = rect
            if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
                raise ValueError(f"mask rectangle {rect} must satisfy 0 <= x0 < x1 <= 1, 0 <= y0 < y1 <= 1")

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "rectangles": [list(r) for r in self.rectangles]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BurnedInPolicy:
        return cls(action=data["action"], rectangles=tuple(tuple(r) for r in data.get("rectangles", ())))


QUARANTINE_BURNED_IN = BurnedInPolicy()


@lru_cache(maxsize=65536)
def remap_uid(uid_key: DeidKey, namespace: str, uid: str) -> str:
    """Keyed replacement UID: ``2.25.`` + decimal of 128 bits of HMAC (PS3.5 §B.2).

    >>> key = DeidKey(b"test-only-secret-not-for-real-data")
    >>> new = remap_uid(key, "demo", "1.2.3")
    >>> new == remap_uid(key, "demo", "1.2.3 "), new.startswith("2.25."), len(new) <= 64
    (True, True, True)
    """
    digest = uid_key.digest(namespace, "uid", uid.strip().rstrip("\x00"))
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def is_well_known_uid(uid: str) -> bool:
    """True for UIDs the standard defines (pydicom's UID dictionary): never identifying."""
    return uid.strip().rstrip("\x00") in UID_dictionary


def subject_keys_for_dataset(ds: Dataset, key: DeidKey, namespace: str) -> SubjectKeys:
    """Pseudonym and date offset for the patient of ``ds`` (from Patient ID (0010,0020)).

    A missing or empty Patient ID maps to one "unknown patient" subject per namespace: the
    source itself could not tell those patients apart, so neither do we.
    """
    return derive_subject_keys(key, namespace, str(ds.get("PatientID", "") or "").strip())


@dataclass
class _Context:
    profile: ResolvedProfile
    keys: SubjectKeys
    uid_key: DeidKey
    namespace: str
    shift_dates: bool
    remap_uids: bool
    actions: Counter[str]
    matcher: IdentifyingMatcher = field(default_factory=lambda: IdentifyingMatcher((), (), frozenset()))
    uid_cache: dict[str, str] = field(default_factory=dict)
    cleaning: int = 0  # > 0 inside a sequence whose action is C

    def new_uid(self, uid: str) -> str:
        clean = uid.strip().rstrip("\x00")
        if not clean or is_well_known_uid(clean):
            return clean
        mapped = self.uid_cache.get(clean)
        if mapped is None:
            mapped = remap_uid(self.uid_key, self.namespace, clean)
            self.uid_cache[clean] = mapped
        return mapped


# --------------------------------------------------------------------------- identifying strings


def _values_of(elem: DataElement) -> list[str]:
    value = elem.value
    if value is None:
        return []
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value if v is not None and str(v).strip()]
    if isinstance(value, bytes):
        return []
    text = str(value)
    return [text] if text.strip() else []


def _vr_before_conversion(ds: Dataset, tag: Any) -> str:
    """The VR of an element without converting its value (raw elements stay raw)."""
    raw = ds.get_item(tag)
    vr = getattr(raw, "VR", None)
    if vr in (None, "UN"):
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return "UN"
    return str(vr)


def _collect_identifying(ds: Dataset, profile: ResolvedProfile, strings: set[str], tokens: set[str]) -> None:
    """Identifying strings of ``ds`` at every depth: the values the profile removes or replaces
    (string VRs), the parts of person names, and every non-well-known UID. Private elements are
    skipped (they are removed whole) and elements are converted only when their value is needed."""
    for tag in list(ds.keys()):
        if tag.is_private or tag.element == 0:
            continue
        vr = _vr_before_conversion(ds, tag)
        itag = int(tag)
        if vr == "SQ":
            try:
                items = ds[tag].value or []
            except Exception:
                continue
            for item in items:
                _collect_identifying(item, profile, strings, tokens)
            continue
        if vr == "UI":
            if itag in SCHEME_UID_TAGS:
                continue
            try:
                values = _values_of(ds[tag])
            except Exception:
                continue
            for uid in values:
                clean = uid.strip().rstrip("\x00")
                if clean and not is_well_known_uid(clean):
                    strings.add(clean)
            continue
        if vr not in IDENTIFYING_VRS:
            continue
        action = profile.action_for(itag)
        if action in (None, "K", "C", "U*") and itag not in (TAG_PATIENT_NAME, TAG_PATIENT_ID):
            continue
        try:
            values = _values_of(ds[tag])
        except Exception:
            continue
        for value in values:
            for part in re.split(r"[\\\r\n]+", value):
                part = part.strip()
                if len(part) >= 3:
                    strings.add(part)
            if vr == "PN":
                for component in re.split(r"[\^=]", value):
                    component = component.strip()
                    if len(component) >= 3:
                        strings.add(component)
                    tokens.update(w.lower() for w in _WORD.findall(component) if len(w) >= 2)


@dataclass(frozen=True)
class IdentifyingMatcher:
    """Finds identifying strings in text: case-insensitive substrings for strings with letters,
    whole tokens for strings without (so a numeric ID never matches inside a new UID), and
    whole words for the short parts of person names.

    >>> m = IdentifyingMatcher.build({"Doe", "12345"}, {"jo"})
    >>> m.search("Mrs DOE"), m.search("2.25.9123456"), m.search("id 12345."), m.search("Jo B"), m.search("Joe")
    (True, False, True, True, False)
    """

    letters: tuple[str, ...]
    numbers: tuple[str, ...]
    words: frozenset[str]

    @classmethod
    def build(
        cls, strings: set[str] | frozenset[str], words: set[str] | frozenset[str]
    ) -> IdentifyingMatcher:
        letters = tuple(sorted({t.lower() for t in strings if any(c.isalpha() for c in t)}))
        numbers = tuple(sorted({t for t in strings if not any(c.isalpha() for c in t)}))
        return cls(letters, numbers, frozenset(words))

    def search(self, text: str) -> bool:
        lowered = text.lower()
        if any(s in lowered for s in self.letters):
            return True
        for number in self.numbers:
            start = text.find(number)
            while start >= 0:
                end = start + len(number)
                before = text[start - 1] if start else ""
                after = text[end] if end < len(text) else ""
                if not before.isalnum() and not after.isalnum():
                    return True
                start = text.find(number, start + 1)
        return bool(self.words) and any(w.lower() in self.words for w in _WORD.findall(text))


def _holds_identifying(text: str, ctx: _Context) -> bool:
    return ctx.matcher.search(text)


# --------------------------------------------------------------------------- element actions


def _empty(elem: DataElement) -> None:
    elem.value = empty_value_for_VR(elem.VR) if elem.VR != "SQ" else Sequence([])


def _map_values(elem: DataElement, fn: Any) -> None:
    value = elem.value
    if isinstance(value, MultiValue | list):
        elem.value = [fn(str(v)) for v in value]
    elif value is not None and str(value) != "":
        elem.value = fn(str(value))


def _remap_uid_element(elem: DataElement, ctx: _Context, label: str) -> None:
    before = elem.value
    _map_values(elem, ctx.new_uid)
    if elem.value != before:
        ctx.actions[f"U:{label}"] += 1


def _shift_date_element(elem: DataElement, ctx: _Context) -> None:
    if not ctx.shift_dates or elem.VR not in ("DA", "DT"):
        return
    try:
        _map_values(
            elem, lambda v: shift_date_value(elem.VR, v, ctx.keys.date_offset_days) if v.strip() else v
        )
        ctx.actions[f"C:shift_{elem.VR}"] += 1
    except (ValueError, OverflowError):
        _empty(elem)
        ctx.actions[f"Z:unparseable_{elem.VR}"] += 1


def _dummy(elem: DataElement, ctx: _Context) -> None:
    vr = elem.VR
    if vr == "UI":
        _remap_uid_element(elem, ctx, "dummy")
        return
    if vr in ("DA", "DT") and ctx.shift_dates:
        _shift_date_element(elem, ctx)
        return
    if vr in _DUMMY_BY_VR:
        elem.value = _DUMMY_BY_VR[vr]
    elif vr in _NUMERIC_VRS:
        elem.value = 0
    elif vr in TEXT_VRS:
        elem.value = _DUMMY_TEXT
    else:
        _empty(elem)
    ctx.actions[f"D:{vr}"] += 1


def _clean_descriptor(elem: DataElement, ctx: _Context) -> None:
    texts = _values_of(elem)
    unsafe = any(
        _holds_identifying(t, ctx) or _DIGIT_RUN.search(t) or _DATE_LIKE.search(t) or "@" in t for t in texts
    )
    if unsafe:
        _empty(elem)
        ctx.actions["C:descriptor_removed"] += 1
    else:
        ctx.actions["C:descriptor_kept"] += 1


def _cap_age(elem: DataElement, ctx: _Context) -> None:
    if not elem.value:
        return
    try:
        capped = cap_age_string(str(elem.value))
    except ValueError:
        _empty(elem)
        ctx.actions["Z:unparseable_AS"] += 1
        return
    if capped != str(elem.value).strip():
        ctx.actions["C:age_capped"] += 1
    elem.value = capped


def _clean(elem: DataElement, ctx: _Context, depth: int) -> None:
    vr = elem.VR
    if vr == "SQ":
        # Clean Structured Content / Graphics: the table applies inside, and every free-text
        # value inside is cleaned as a descriptor even where the table does not list it
        ctx.cleaning += 1
        try:
            _deidentify_items(elem.value, ctx, depth + 1)
        finally:
            ctx.cleaning -= 1
    elif vr in ("DA", "DT"):
        _shift_date_element(elem, ctx)
    elif vr == "TM":
        ctx.actions["C:time_kept"] += 1  # offsets are whole days: the time of day does not move
    elif vr == "UI":
        _remap_uid_element(elem, ctx, "clean")
    elif vr == "AS":
        _cap_age(elem, ctx)
    elif vr in TEXT_VRS:
        _clean_descriptor(elem, ctx)
    elif vr in _NUMERIC_VRS or vr in NUMBER_STRING_VRS:
        ctx.actions["C:number_kept"] += 1
    else:
        _empty(elem)
        ctx.actions[f"Z:clean_{vr}"] += 1


def _keep(elem: DataElement, ctx: _Context, depth: int) -> None:
    """K, U* and attributes the table does not list: recurse, remap UIDs, shift dates."""
    vr = elem.VR
    if vr == "SQ":
        _deidentify_items(elem.value, ctx, depth + 1)
    elif vr == "UI":
        if ctx.remap_uids:
            _remap_uid_element(elem, ctx, "any")
    elif vr in ("DA", "DT"):
        _shift_date_element(elem, ctx)
    elif vr == "AS":
        _cap_age(elem, ctx)
    elif ctx.cleaning and vr in IDENTIFYING_VRS:
        _clean_descriptor(elem, ctx)


def _deidentify_items(items: Iterable[Dataset], ctx: _Context, depth: int) -> None:
    for item in items:
        _deidentify_level(item, ctx, depth)


def _deidentify_level(ds: Dataset, ctx: _Context, depth: int) -> None:
    sibling_id = str(ds.get("PatientID", "") or "").strip() if depth > 0 else None
    for tag in list(ds.keys()):
        itag = int(tag)
        if tag.is_private:
            del ds[tag]
            ctx.actions["X:private"] += 1
            continue
        if tag.element == 0:
            del ds[tag]
            ctx.actions["X:group_length"] += 1
            continue
        special = itag in (TAG_PATIENT_NAME, TAG_PATIENT_ID)
        action = ctx.profile.action_for(itag)
        if action == "X" and not special:
            del ds[tag]  # removed unread
            ctx.actions["X:table"] += 1
            continue
        if action is None and not (dictionary_has_tag(itag) or repeater_has_tag(itag)):
            del ds[tag]
            ctx.actions["X:unknown_public"] += 1
            continue
        if (
            action in (None, "K")
            and not special
            and not ctx.cleaning
            and _vr_before_conversion(ds, tag) not in _KEEP_NEEDS_VALUE
        ):
            continue  # kept as it is, unread (numbers, binary data, text: the last pass reads text)
        try:
            elem = ds[tag]
        except Exception:  # an element pydicom cannot decode: it cannot be checked, so it goes
            del ds[tag]
            ctx.actions["X:undecodable"] += 1
            continue
        if itag in SCHEME_UID_TAGS:
            ctx.actions["K:scheme_uid"] += 1
            continue
        if itag == TAG_PATIENT_NAME:
            ids = sibling_id
            elem.value = (
                derive_subject_keys(ctx.uid_key, ctx.namespace, ids).pseudonym if ids else ctx.keys.pseudonym
            )
            ctx.actions["D:patient_name"] += 1
            continue
        if itag == TAG_PATIENT_ID:
            original = str(elem.value or "").strip()
            if not original:
                pass  # an unknown patient stays unknown
            elif depth == 0:
                elem.value = ctx.keys.pseudonym
            else:
                elem.value = derive_subject_keys(ctx.uid_key, ctx.namespace, original).pseudonym
            ctx.actions["D:patient_id"] += 1
            continue
        if action is None and elem.VR == "UN":
            del ds[tag]
            ctx.actions["X:unknown_vr"] += 1
            continue
        if action == "X":
            del ds[tag]
            ctx.actions["X:table"] += 1
        elif action == "Z":
            _empty(elem)
            ctx.actions["Z:table"] += 1
        elif action == "D":
            if elem.VR == "SQ":
                # the dummy of a sequence is an empty one: its content (SR text, graphic
                # annotations, observers) is what D removes
                elem.value = Sequence([])
                ctx.actions["D:sequence_emptied"] += 1
            else:
                _dummy(elem, ctx)
        elif action == "U":
            if elem.VR == "SQ":
                _deidentify_items(elem.value, ctx, depth + 1)
            elif ctx.remap_uids:
                _remap_uid_element(elem, ctx, "table")
        elif action == "C":
            _clean(elem, ctx, depth)
        else:  # K, U*, or not listed
            _keep(elem, ctx, depth)


def _scrub_text(ds: Dataset, ctx: _Context, depth: int = 0) -> None:
    """Last pass: empty any text element that still holds an identifying string."""
    for tag in list(ds.keys()):
        vr = _vr_before_conversion(ds, tag)
        if int(tag) in (TAG_PATIENT_NAME, TAG_PATIENT_ID):
            continue
        if vr != "SQ" and vr not in TEXT_VRS and vr not in NUMBER_STRING_VRS:
            continue
        try:
            elem = ds[tag]
        except Exception:  # cannot be read, so cannot be checked: it goes
            del ds[tag]
            ctx.actions["X:undecodable"] += 1
            continue
        if elem.VR == "SQ":
            for item in elem.value or []:
                _scrub_text(item, ctx, depth + 1)
            continue
        if any(_holds_identifying(t, ctx) for t in _values_of(elem)):
            _empty(elem)
            ctx.actions["Z:identifying_text"] += 1


# --------------------------------------------------------------------------- burned-in annotation


def needs_burned_in_policy(ds: Dataset) -> bool:
    """True when the pixels may carry burned-in text (PS3.3 C.7.6.1.1.7, PS3.15 E.3.1).

    ``BurnedInAnnotation`` (0028,0301) = YES, or ultrasound / secondary capture without the
    attribute. Datasets without Pixel Data carry no pixels to worry about.
    """
    if TAG_PIXEL_DATA not in ds:
        return False
    flag = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if flag == "YES":
        return True
    if flag:
        return False
    modality = str(ds.get("Modality", "") or "").strip().upper()
    sop_class = str(ds.get("SOPClassUID", "") or "").strip()
    return modality == "US" or sop_class.startswith(_SC_PREFIX) or sop_class in _US_SOP_CLASSES


def mask_burned_in(ds: Dataset, rectangles: tuple[tuple[float, float, float, float], ...]) -> None:
    """Zero the rectangles in every frame and store the pixels uncompressed (in place).

    Raises:
        ItemError: ``undecodable_pixels`` naming the transfer syntax when decoding fails.
    """
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "unknown")
    for _elem in ds.iterall():
        pass  # convert every raw element: the transfer syntax changes below
    try:
        arr = np.array(ds.pixel_array)
    except Exception as exc:
        raise ItemError(
            "undecodable_pixels",
            f"pixel data cannot be decoded for masking (transfer syntax {syntax}): {type(exc).__name__}",
        ) from exc
    rows, cols = read_int(ds, "Rows", 0), read_int(ds, "Columns", 0)
    frames = read_int(ds, "NumberOfFrames", 1)
    samples = read_int(ds, "SamplesPerPixel", 1)
    view = arr if frames > 1 else arr[np.newaxis]
    for x0, y0, x1, y1 in rectangles:
        r0, r1 = round(y0 * rows), round(y1 * rows)
        c0, c1 = round(x0 * cols), round(x1 * cols)
        view[:, r0:r1, c0:c1, ...] = 0
    photometric = str(ds.PhotometricInterpretation)
    if samples == 3 and photometric.startswith("YBR"):
        photometric = "RGB"  # pixel_array converted YBR to RGB
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = FileMetaDataset()
        ds.file_meta = meta
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    data = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"), copy=False)).tobytes()
    if len(data) % 2:
        data += b"\x00"
    ds.PixelData = data
    pixel_elem = ds["PixelData"]
    pixel_elem.VR = "OB" if int(ds.BitsAllocated) <= 8 else "OW"
    pixel_elem.is_undefined_length = False
    ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    ds.pop("LossyImageCompressionMethod", None)


# --------------------------------------------------------------------------- markers and file meta


def _code_item(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def _add_markers(ds: Dataset, options: frozenset[str], pixels_cleaned: bool, dates_shifted: bool) -> None:
    codes = [BASIC_PROFILE_CODE]
    if pixels_cleaned:
        codes.append(CLEAN_PIXEL_DATA_CODE)
    codes += [OPTION_CODES[name] for name in sorted(options) if name in OPTION_CODES]
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = ["CLIMB PS3.15 E.1-1"] + [meaning[:64] for _, meaning in codes]
    ds.DeidentificationMethodCodeSequence = Sequence([_code_item(v, m) for v, m in codes])
    if RETAIN_LONG_FULL_DATES in options:
        ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
    elif RETAIN_LONG_MODIFIED_DATES in options or dates_shifted:
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
    else:
        ds.LongitudinalTemporalInformationModified = "REMOVED"


def _deidentify_file_meta(ds: Dataset, ctx: _Context) -> None:
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        return
    for tag in list(meta.keys()):
        if int(tag) not in _FILE_META_KEPT:
            del meta[tag]
            ctx.actions["X:file_meta"] += 1
    for keyword in ("MediaStorageSOPInstanceUID", "MediaStorageSOPClassUID"):
        if keyword in meta and ctx.remap_uids:
            _remap_uid_element(meta[keyword], ctx, "file_meta")
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME


# --------------------------------------------------------------------------- public entry points


def deidentify_dataset(
    ds: Dataset,
    keys: SubjectKeys,
    uid_key: DeidKey,
    namespace: str,
    options: Iterable[str] = DEFAULT_OPTIONS,
    burned_in: BurnedInPolicy = QUARANTINE_BURNED_IN,
    *,
    in_place: bool = False,
) -> tuple[Dataset, Counter[str]]:
    """De-identify one DICOM dataset (PS3.15 Annex E Basic Profile with options).

    Args:
        ds: the dataset as read (file meta included when present).
        keys: the patient's pseudonym and date offset (see :func:`subject_keys_for_dataset`).
        uid_key: the key for UID replacement (the source's :class:`DeidKey`).
        namespace: the source's de-identification namespace; UIDs map consistently within it.
        options: PS3.15 option names (:data:`transforms.dicom.profile.ALL_OPTIONS`).
        burned_in: what to do with pixels that may carry burned-in text.
        in_place: modify ``ds`` itself instead of a deep copy (faster for one-shot use).

    Returns:
        ``(dataset, actions)``: the de-identified dataset and a ``Counter`` of
        ``"<action>:<what>"`` (``"X:private"``, ``"U:any"``, ``"C:shift_DA"``...).

    Raises:
        ItemError: ``burned_in_annotation`` when the policy quarantines, ``undecodable_pixels``
            when masking needs pixels that cannot be decoded.
    """
    chosen = frozenset(options)
    profile = resolve_profile(chosen)
    out = ds if in_place else copy.deepcopy(ds)
    actions: Counter[str] = Counter()
    pixels_cleaned = False
    if needs_burned_in_policy(out):
        if burned_in.action == "quarantine":
            raise ItemError(
                "burned_in_annotation",
                "pixels may carry burned-in text (BurnedInAnnotation=YES, or ultrasound/secondary "
                "capture without the attribute) and the source has no mask rule",
            )
        mask_burned_in(out, burned_in.rectangles)
        out.BurnedInAnnotation = "NO"
        pixels_cleaned = True
        actions["C:pixels_masked"] += 1
    strings: set[str] = set()
    tokens: set[str] = set()
    _collect_identifying(out, profile, strings, tokens)
    meta = getattr(out, "file_meta", None)
    if meta is not None:
        for keyword in ("MediaStorageSOPInstanceUID", "PrivateInformationCreatorUID"):
            uid = str(meta.get(keyword, "") or "").strip().rstrip("\x00")
            if uid and not is_well_known_uid(uid):
                strings.add(uid)
        for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle"):
            title = str(meta.get(keyword, "") or "").strip()
            if len(title) >= 3:
                strings.add(title)
    ctx = _Context(
        profile=profile,
        keys=keys,
        uid_key=uid_key,
        namespace=namespace,
        shift_dates=RETAIN_LONG_FULL_DATES not in chosen,
        remap_uids=RETAIN_UIDS not in chosen,
        actions=actions,
        matcher=IdentifyingMatcher.build(strings, tokens),
    )
    _deidentify_level(out, ctx, 0)
    _deidentify_file_meta(out, ctx)
    _scrub_text(out, ctx)
    dates_shifted = any(name.startswith("C:shift_") for name in actions)
    _add_markers(out, chosen, pixels_cleaned, dates_shifted)
    return out, actions


def read_dicom(path: str | Path) -> Dataset:
    """Read a DICOM file, also without a preamble or file meta, and parse every element.

    Raises:
        ItemError: ``not_dicom`` when no public DICOM element can be read, ``unreadable_dicom``
            when the file breaks while parsing.
    """
    path = Path(path)
    forced = False
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        forced = True  # no preamble: maybe a bare dataset, maybe not DICOM at all
        try:
            ds = pydicom.dcmread(path, force=True)
        except Exception as exc:
            raise ItemError("not_dicom", f"not a DICOM file: {type(exc).__name__}", path=str(path)) from exc
    except IsADirectoryError as exc:
        raise ItemError("not_dicom", "a directory, not a file", path=str(path)) from exc
    except Exception as exc:
        raise ItemError(
            "unreadable_dicom", f"DICOM file cannot be read: {type(exc).__name__}", path=str(path)
        ) from exc
    try:
        # top-level tags only: values stay raw (converted later, only where needed), and an
        # element that breaks when converted is removed by the de-identifier, never kept
        known = sum(
            1
            for tag in ds.keys()  # noqa: SIM118 - iterating a Dataset converts every value
            if not tag.is_private
            and tag.group >= 0x0004  # 0004: directory (DICOMDIR) attributes
            and (dictionary_has_tag(tag) or repeater_has_tag(tag))
        )
    except Exception as exc:
        code = "not_dicom" if forced else "unreadable_dicom"
        raise ItemError(
            code, f"file breaks while parsing as DICOM: {type(exc).__name__}", path=str(path)
        ) from exc
    if known == 0:
        raise ItemError("not_dicom", "no public DICOM attribute found", path=str(path))
    return ds


def deidentify_file(
    path: str | Path,
    keys: SubjectKeys | None,
    uid_key: DeidKey,
    namespace: str,
    options: Iterable[str] = DEFAULT_OPTIONS,
    burned_in: BurnedInPolicy = QUARANTINE_BURNED_IN,
) -> tuple[Dataset, Counter[str]]:
    """Read and de-identify one file (the per-item entry point for pipelines).

    Args:
        path: the DICOM file.
        keys: the patient's keys; ``None`` derives them from the file's Patient ID.
        uid_key, namespace, options, burned_in: as :func:`deidentify_dataset`.

    Raises:
        ItemError: the file is not DICOM, cannot be read, or is quarantined.
    """
    ds = read_dicom(path)
    if keys is None:
        keys = subject_keys_for_dataset(ds, uid_key, namespace)
    try:
        return deidentify_dataset(ds, keys, uid_key, namespace, options, burned_in, in_place=True)
    except ItemError as exc:
        raise ItemError(exc.problem.code, exc.problem.detail, path=str(path)) from exc


def write_dataset(ds: Dataset, target: Any) -> None:
    """Write a de-identified dataset as a DICOM Part 10 file (preamble and file meta added).

    Args:
        ds: the dataset.
        target: a path or a writable binary file object.
    """
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = FileMetaDataset()
        ds.file_meta = meta
    if "TransferSyntaxUID" not in meta:
        implicit = getattr(ds, "original_encoding", (False, True))[0]
        meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    if ds.get("SOPClassUID") and not meta.get("MediaStorageSOPClassUID"):
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if ds.get("SOPInstanceUID") and not meta.get("MediaStorageSOPInstanceUID"):
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    complete = bool(meta.get("MediaStorageSOPClassUID")) and bool(meta.get("MediaStorageSOPInstanceUID"))
    syntax = pydicom.uid.UID(str(meta.TransferSyntaxUID))
    if complete:
        ds.preamble = b"\x00" * 128
        pydicom.dcmwrite(target, ds, enforce_file_format=True)
        return
    # Without a SOP class there is no conformant file meta to write: a bare dataset it is.
    del ds.file_meta
    try:
        pydicom.dcmwrite(
            target,
            ds,
            implicit_vr=syntax.is_implicit_VR if syntax.is_transfer_syntax else True,
            little_endian=syntax.is_little_endian if syntax.is_transfer_syntax else True,
        )
    finally:
        ds.file_meta = meta
