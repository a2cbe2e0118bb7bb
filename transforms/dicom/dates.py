"""Shifting DICOM dates (DA, DT) and capping ages (AS) for de-identification.

Dates move by the patient's offset in whole days (``SubjectKeys.date_offset_days``, whole weeks
in practice), so a time of day (TM) never changes and stays consistent with its date; a DT keeps
its time part and its UTC offset suffix unchanged, so it stays valid. Partial dates keep their
precision: ``YYYY`` shifts as 1 January of that year, ``YYYYMM`` as the first of the month.
Values that do not parse raise :class:`ValueError`; the de-identifier then removes them (when
unsure, remove). PS3.5 §6.2 gives the formats.

Examples:
    >>> shift_da("20200301", -7)
    '20200223'
    >>> shift_da("20200101-20200201", -364)
    '20190102-20190202'
    >>> shift_dt("20200301123000.5+0100", -7)
    '20200223123000.5+0100'
    >>> shift_dt("2020", -364)
    '2019'
    >>> cap_age_string("095Y"), cap_age_string("089Y"), cap_age_string("006M")
    ('090Y', '089Y', '006M')
"""

from __future__ import annotations

import re
from datetime import date, timedelta

_DA = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_DA_OLD = re.compile(r"^(\d{4})\.(\d{2})\.(\d{2})$")  # ACR-NEMA 2.0 form
_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?([+-]\d{4})?$")
_AS = re.compile(r"^(\d{3})([DWMY])$")


def _shift_date(year: int, month: int, day: int, days: int) -> date:
    return date(year, month, day) + timedelta(days=days)


def shift_da(value: str, days: int) -> str:
    """Shift a DA value (``YYYYMMDD``, ``YYYY.MM.DD`` or a range ``A-B``, ``-B``, ``A-``).

    Raises:
        ValueError: the value is not a DA.
    """
    text = value.strip()
    if "-" in text:
        start, _, end = text.partition("-")
        return "-".join(shift_da(part, days) if part else "" for part in (start, end))
    match = _DA.match(text) or _DA_OLD.match(text)
    if match is None:
        raise ValueError("not a DA value")
    year, month, day = (int(g) for g in match.groups())
    return _shift_date(year, month, day, days).strftime("%Y%m%d")


def _shift_single_dt(text: str, days: int) -> str:
    match = _DT.match(text)
    if match is None:
        raise ValueError("not a DT value")
    year_s, month_s, day_s, time_s, tz_s = match.groups()
    if day_s is not None and month_s is None:
        raise ValueError("not a DT value")
    shifted = _shift_date(int(year_s), int(month_s or 1), int(day_s or 1), days)
    out = f"{shifted.year:04d}"
    if month_s is not None:
        out += f"{shifted.month:02d}"
    if day_s is not None:
        out += f"{shifted.day:02d}"
    return out + (time_s or "") + (tz_s or "")


def shift_dt(value: str, days: int) -> str:
    """Shift a DT value, keeping its precision, time part and UTC offset suffix.

    Ranges (``A-B``) are shifted part by part; a ``-`` that starts a UTC offset is not a range.

    Raises:
        ValueError: the value is not a DT.
    """
    text = value.strip()
    if _DT.match(text):
        return _shift_single_dt(text, days)
    for index, char in enumerate(text):
        if char != "-":
            continue
        start, end = text[:index], text[index + 1 :]
        if (not start or _DT.match(start)) and (not end or _DT.match(end)):
            return "-".join(_shift_single_dt(part, days) if part else "" for part in (start, end))
    raise ValueError("not a DT value")


def shift_date_value(vr: str, value: str, days: int) -> str:
    """Shift a DA or DT string by ``days``; other VRs are returned unchanged."""
    if vr == "DA":
        return shift_da(value, days)
    if vr == "DT":
        return shift_dt(value, days)
    return value


def cap_age_string(value: str, cap_years: int = 90) -> str:
    """HIPAA Safe Harbor for an AS value: ages over 89 years become ``090Y``.

    Raises:
        ValueError: the value is not an AS (``nnnD``, ``nnnW``, ``nnnM`` or ``nnnY``).
    """
    match = _AS.match(value.strip())
    if match is None:
        raise ValueError("not an AS value")
    number, unit = int(match.group(1)), match.group(2)
    if unit == "Y" and number > cap_years - 1:
        return f"{cap_years:03d}Y"
    return f"{number:03d}{unit}"
