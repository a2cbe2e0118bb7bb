"""The PS3.15 Basic Application Level Confidentiality Profile as data (Table E.1-1).

The table ships with the package (``transforms/dicom/data/dicom_ps315_annex_e.json``: DICOM
PS3.15 Annex E, Table E.1-1 "Application Level Confidentiality Profile Attributes", as collected
by innolitics/dicom-standard and dicom-anonymizer), so a de-identifier never needs the
repository's ``../shared`` folder at run time. Each of its 656 rows names a tag or a mask
(``00100010``, ``50XXXXXX`` for Curve Data, ``60XX4000`` for Overlay Comments, ``PRIVATE``), the
Basic Profile action, and the action under each option column.

Actions (PS3.15 Table E.1-1 legend):

- ``D`` replace with a non-zero-length dummy value; ``Z`` replace with a zero-length value (or a
  dummy); ``X`` remove; ``K`` keep; ``C`` clean (keep the meaning, drop the identifying
  content); ``U`` replace a UID with a non-zero-length UID consistent within the set.
- Compound actions (``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``) depend on the attribute's type in its
  IOD, which a generic de-identifier does not know. We resolve them to the choice that keeps the
  attribute present with the least information: ``Z`` wherever ``Z`` is allowed, ``D`` for
  ``X/D``. ``X/Z/U*`` (reference sequences) keeps the sequence and replaces the UIDs inside it
  (``U*``), so references survive.

Options (the ``opts`` columns) override the Basic Profile action where the option names one.
When two selected options name different actions for one attribute, ``C`` wins over ``K``:
cleaning is the safer of the two.

Examples:
    >>> profile = load_profile()
    >>> len(profile.rows)
    656
    >>> resolved = profile.resolve(DEFAULT_OPTIONS)
    >>> resolved.action_for(0x00100010)  # Patient's Name: Z
    'Z'
    >>> resolved.action_for(0x00080020)  # Study Date: C under Modified Dates
    'C'
    >>> resolved.action_for(0x50001234), resolved.action_for(0x60024000)
    ('X', 'X')
    >>> resolved.action_for(0x00081140)  # Referenced Image Sequence: X/Z/U*
    'U*'
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

TABLE_RESOURCE = "dicom_ps315_annex_e.json"
"""File name of Table E.1-1 inside ``transforms/dicom/data``."""

# Option names, as the table's columns spell them (PS3.15 Table E.1-1 option columns).
RETAIN_SAFE_PRIVATE = "retain-safe-private"
RETAIN_UIDS = "retain-uids"
RETAIN_DEVICE_ID = "retain-device-id"
RETAIN_INSTITUTION_ID = "retain-institution-id"
RETAIN_PATIENT_CHARS = "retain-patient-chars"
RETAIN_LONG_FULL_DATES = "retain-long-full-dates"
RETAIN_LONG_MODIFIED_DATES = "retain-long-modified-dates"
CLEAN_DESCRIPTORS = "clean-descriptors"
CLEAN_STRUCTURED_CONTENT = "clean-structured-content"
CLEAN_GRAPHICS = "clean-graphics"

ALL_OPTIONS = frozenset(
    {
        RETAIN_SAFE_PRIVATE,
        RETAIN_UIDS,
        RETAIN_DEVICE_ID,
        RETAIN_INSTITUTION_ID,
        RETAIN_PATIENT_CHARS,
        RETAIN_LONG_FULL_DATES,
        RETAIN_LONG_MODIFIED_DATES,
        CLEAN_DESCRIPTORS,
        CLEAN_STRUCTURED_CONTENT,
        CLEAN_GRAPHICS,
    }
)

DEFAULT_OPTIONS = frozenset({RETAIN_LONG_MODIFIED_DATES, RETAIN_PATIENT_CHARS, CLEAN_DESCRIPTORS})
"""What serves training data: intervals survive (dates shifted per patient), age/sex/size/weight
kept, free-text descriptors kept only when they carry nothing identifying."""

#: CID 7050 "De-identification Method" codes (scheme DCM), PS3.16; code value -> meaning.
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
CLEAN_PIXEL_DATA_CODE = ("113101", "Clean Pixel Data Option")
OPTION_CODES: dict[str, tuple[str, str]] = {
    CLEAN_GRAPHICS: ("113103", "Clean Graphics Option"),
    CLEAN_STRUCTURED_CONTENT: ("113104", "Clean Structured Content Option"),
    CLEAN_DESCRIPTORS: ("113105", "Clean Descriptors Option"),
    RETAIN_LONG_FULL_DATES: ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    RETAIN_LONG_MODIFIED_DATES: (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    RETAIN_PATIENT_CHARS: ("113108", "Retain Patient Characteristics Option"),
    RETAIN_DEVICE_ID: ("113109", "Retain Device Identity Option"),
    RETAIN_UIDS: ("113110", "Retain UIDs Option"),
    RETAIN_SAFE_PRIVATE: ("113111", "Retain Safe Private Option"),
    RETAIN_INSTITUTION_ID: ("113112", "Retain Institution Identity Option"),
}

BASIC_ACTIONS = frozenset({"D", "Z", "X", "K", "C", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"})
_COMPOUND_RESOLUTION = {"X/Z": "Z", "X/D": "D", "Z/D": "Z", "X/Z/D": "Z", "X/Z/U*": "U*"}


class ProfileError(ValueError):
    """The table or an option set is malformed (a configuration error, raised when built)."""


@dataclass(frozen=True)
class ProfileRow:
    """One row of Table E.1-1.

    Attributes:
        pattern: 8 upper-case hex digits with ``X`` for "any digit" (``"60XX4000"``), or
            ``"PRIVATE"`` for the Private Attributes row.
        name: the attribute's name in the standard.
        basic: the Basic Profile action (one of :data:`BASIC_ACTIONS`).
        options: option name -> action under that option.
    """

    pattern: str
    name: str
    basic: str
    options: dict[str, str] = field(hash=False)


@dataclass(frozen=True)
class ResolvedProfile:
    """The effective action of every table row for one set of options.

    Attributes:
        options: the options this profile was resolved for.
        exact: tag (as ``int``, ``0xGGGGEEEE``) -> action for rows with a plain tag.
        masks: ``(mask, value, action)``: a tag matches when ``tag & mask == value``.
        private: the action for private attributes (``X`` unless Retain Safe Private).
    """

    options: frozenset[str]
    exact: dict[int, str] = field(hash=False)
    masks: tuple[tuple[int, int, str], ...]
    private: str

    def action_for(self, tag: int) -> str | None:
        """Effective action for a public tag, or ``None`` when the table does not list it.

        Args:
            tag: ``0xGGGGEEEE``.

        Returns:
            one of ``D``, ``Z``, ``X``, ``K``, ``C``, ``U``, ``U*`` (replace UIDs inside a kept
            sequence), or ``None``.
        """
        action = self.exact.get(tag)
        if action is not None:
            return action
        for mask, value, masked_action in self.masks:
            if tag & mask == value:
                return masked_action
        return None


def _parse_pattern(pattern: str) -> tuple[int, int] | None:
    """``"60XX4000"`` -> (mask, value); ``"(0010,0010)"`` accepted too; ``PRIVATE`` -> None."""
    text = pattern.strip().upper()
    if text == "PRIVATE":
        return None
    text = text.replace("(", "").replace(")", "").replace(",", "")
    if len(text) != 8 or any(c not in "0123456789ABCDEFX" for c in text):
        raise ProfileError(f"unreadable tag pattern in Table E.1-1: {pattern!r}")
    mask = int("".join("0" if c == "X" else "F" for c in text), 16)
    value = int(text.replace("X", "0"), 16)
    return mask, value


@dataclass(frozen=True)
class Profile:
    """Table E.1-1, parsed. Build it with :func:`load_profile`."""

    rows: tuple[ProfileRow, ...]

    def resolve(
        self, options: frozenset[str] | set[str] | tuple[str, ...] = DEFAULT_OPTIONS
    ) -> ResolvedProfile:
        """Effective actions for a set of options.

        Args:
            options: option names (see :data:`ALL_OPTIONS`).

        Raises:
            ProfileError: an unknown option, or both date options at once.
        """
        chosen = frozenset(options)
        unknown = chosen - ALL_OPTIONS
        if unknown:
            raise ProfileError(
                f"unknown de-identification options {sorted(unknown)}; known: {sorted(ALL_OPTIONS)}"
            )
        if {RETAIN_LONG_FULL_DATES, RETAIN_LONG_MODIFIED_DATES} <= chosen:
            raise ProfileError("choose one of retain-long-full-dates and retain-long-modified-dates")
        exact: dict[int, str] = {}
        masks: list[tuple[int, int, str]] = []
        private = "X"
        for row in self.rows:
            action = _effective_action(row, chosen)
            parsed = _parse_pattern(row.pattern)
            if parsed is None:
                private = action
                continue
            mask, value = parsed
            if mask == 0xFFFFFFFF:
                exact[value] = action
            else:
                masks.append((mask, value, action))
        return ResolvedProfile(options=chosen, exact=exact, masks=tuple(masks), private=private)


def _effective_action(row: ProfileRow, options: frozenset[str]) -> str:
    by_option = {row.options[name] for name in options if name in row.options}
    if by_option:
        return "C" if "C" in by_option else sorted(by_option)[0]
    return _COMPOUND_RESOLUTION.get(row.basic, row.basic)


@lru_cache(maxsize=1)
def load_profile() -> Profile:
    """Read Table E.1-1 from the package data.

    Raises:
        ProfileError: a row with an unknown action or an unreadable tag pattern.
    """
    text = resources.files("transforms.dicom").joinpath("data", TABLE_RESOURCE).read_text("utf-8")
    payload = json.loads(text)
    rows = []
    for raw in payload["rows"]:
        basic = raw["basic"]
        if basic not in BASIC_ACTIONS:
            raise ProfileError(f"unknown Basic Profile action {basic!r} for {raw['tag']}")
        for option, action in raw.get("opts", {}).items():
            if option not in ALL_OPTIONS or action not in {"K", "C"}:
                raise ProfileError(f"unknown option action {option}={action} for {raw['tag']}")
        _parse_pattern(raw["tag"])
        rows.append(ProfileRow(raw["tag"].upper(), raw["name"], basic, dict(raw.get("opts", {}))))
    return Profile(rows=tuple(rows))


@lru_cache(maxsize=16)
def resolve_profile(options: frozenset[str] = DEFAULT_OPTIONS) -> ResolvedProfile:
    """:func:`load_profile` then :meth:`Profile.resolve`, cached per option set."""
    return load_profile().resolve(options)
