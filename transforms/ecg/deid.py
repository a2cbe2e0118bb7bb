"""De-identify a canonical ECG window: what is kept is kept on purpose, the rest goes.

Kept, rebuilt from parsed fields rather than copied from the header (so no free text can
ride along): age (capped at 90, HIPAA Safe Harbor), sex, and the SNOMED CT diagnosis codes.
Everything else in the header comments goes: CinC's ``Rx``/``Hx``/``Sx`` lines, PTB's
free-text lines (ECG date, admission reason, medication, catheterisation dates...), any
unknown line. The record name is replaced by a keyed pseudonym and the window's start
date-time is shifted by the patient's offset (whole weeks, so weekdays survive; the same
offset for every record of the patient, so intervals survive).

Examples:
    >>> import numpy as np, datetime as dt
    >>> from transforms.pseudonyms import SubjectKeys
    >>> from transforms.ecg.canonical import EcgSample
    >>> s = EcgSample(np.zeros((12, 5000), np.int16), np.ones(12, bool), 500.0, 0, 1, 0.0, 10.0, 500.0, 5000,
    ...               age_years=93.0, sex="F", dx_codes=["426783006"],
    ...               start_datetime=dt.datetime(1990, 10, 1, 8, 30), record_name="s0010_re",
    ...               comments=["age: 93", "sex: female", "Dx: 426783006", "ECG date: 01/10/1990"])
    >>> clean, actions = deidentify(s, SubjectKeys("ptb-abc", -364), "record-0f3a")
    >>> clean.record_name, clean.age_years, clean.start_datetime.date(), clean.comments
    ('record-0f3a', 90, datetime.date(1989, 10, 2), ['Age: 90', 'Sex: F', 'Dx: 426783006'])
    >>> sorted(actions.items())
    [('age_capped', 1), ('date_shifted', 1), ('header_comment_rebuilt', 3), ('header_comment_removed', 4), ('record_name_replaced', 1)]
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from transforms.ecg.canonical import EcgSample
from transforms.pseudonyms import SubjectKeys, cap_age_years

__all__ = ["deidentify", "kept_comments"]


def kept_comments(age_years: float | int | None, sex: str | None, dx_codes: list[str]) -> list[str]:
    """The comment lines a de-identified sample keeps, built from parsed values only.

    >>> kept_comments(45, None, ["164889003", "59118001"])
    ['Age: 45', 'Dx: 164889003,59118001']
    """
    lines = []
    if age_years is not None:
        lines.append(f"Age: {age_years:g}" if isinstance(age_years, float) else f"Age: {age_years}")
    if sex in ("M", "F"):
        lines.append(f"Sex: {sex}")
    codes = [c for c in dx_codes if c.isdigit()]
    if codes:
        lines.append("Dx: " + ",".join(codes))
    return lines


def deidentify(sample: EcgSample, keys: SubjectKeys, record_pseudonym: str) -> tuple[EcgSample, Counter[str]]:
    """Return a de-identified copy of ``sample`` and the actions taken, counted.

    Args:
        sample: a canonical window (from :func:`~transforms.ecg.canonical.canonicalise`).
        keys: the patient's pseudonym and date offset (:func:`transforms.pseudonyms.derive_subject_keys`).
        record_pseudonym: what replaces the record name (:func:`transforms.pseudonyms.pseudonymise_id`
            with kind ``"record"``).

    Returns:
        ``(clean, actions)``. ``clean`` shares the signal array with ``sample`` (it holds no
        identifiers). ``actions`` counts: ``header_comment_removed`` (every original comment
        line), ``header_comment_rebuilt`` (lines written back from parsed age/sex/codes),
        ``age_capped``, ``date_shifted``, ``record_name_replaced``.
    """
    actions: Counter[str] = Counter()
    age = cap_age_years(sample.age_years) if sample.age_years is not None else None
    if sample.age_years is not None and age is not None and sample.age_years > 89:
        actions["age_capped"] += 1
    sex = sample.sex if sample.sex in ("M", "F") else None
    dx_codes = [str(c) for c in sample.dx_codes if str(c).isdigit()]

    if sample.comments:
        actions["header_comment_removed"] += len(sample.comments)
    comments = kept_comments(age, sex, dx_codes)
    if comments:
        actions["header_comment_rebuilt"] += len(comments)

    start = sample.start_datetime
    if start is not None:
        start = start + dt.timedelta(days=keys.date_offset_days)
        actions["date_shifted"] += 1

    if sample.record_name != record_pseudonym:
        actions["record_name_replaced"] += 1

    clean = sample.with_changes(
        age_years=age,
        sex=sex,
        dx_codes=dx_codes,
        comments=comments,
        start_datetime=start,
        record_name=record_pseudonym,
    )
    return clean, actions
