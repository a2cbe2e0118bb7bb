"""De-identification of ECG windows: nothing identifying survives, dates keep their intervals."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import TEST_SECRET
from tests.transforms.ecg.records import ECG, LEADS_12, sine_leads
from transforms.ecg import EcgSample, EcgSpec, RawEcg, canonicalise, deidentify, read_wfdb_record
from transforms.pseudonyms import DeidKey, SubjectKeys, derive_subject_keys, pseudonymise_id

KEY = DeidKey(TEST_SECRET.encode())
SPEC = EcgSpec()


def _text_of(sample: EcgSample) -> str:
    """Every non-array field of a sample, as text (what could reach a row or a log)."""
    parts = []
    for f in dataclasses.fields(sample):
        value = getattr(sample, f.name)
        if not isinstance(value, np.ndarray):
            parts.append(f"{f.name}={value!r}")
    return "\n".join(parts)


def test_ptb_record_keeps_nothing_identifying() -> None:
    header = ECG / "wfdb" / "s0010_re.hea"
    raw = read_wfdb_record(header)
    # Give the record a base date too, as native WFDB records may have.
    raw.base_datetime = dt.datetime(1990, 10, 1, 8, 30)
    keys = derive_subject_keys(KEY, "ptb", "patient001")
    pseudonym = pseudonymise_id(KEY, "ptb", "record", raw.record_name)
    total: Counter[str] = Counter()
    for window in canonicalise(raw, SPEC):
        clean, actions = deidentify(window, keys, pseudonym)
        total.update(actions)
        text = _text_of(clean)
        assert "s0010" not in text
        assert clean.record_name == pseudonym
        assert clean.start_datetime is not None and clean.start_datetime.year < 1990
        # Nothing of the free-text comment block survives (dates, drugs, reasons, findings).
        for phrase in (
            "1990",
            "-90",
            "Isosorbit",
            "Reason for admission",
            "Myocardial infarction",
            "Heparin",
            "mmHg",
            "cmH2O",
            "RIVA",
        ):
            assert phrase not in text, phrase
        assert clean.comments == ["Age: 81", "Sex: F"]
        # The signal is the window's, untouched.
        assert np.array_equal(clean.signal, window.signal)
        # The input window is not modified.
        assert window.record_name == "s0010_re" and len(window.comments) == len(raw.comments)
    n = len(canonicalise(raw, SPEC))
    assert total["header_comment_removed"] == n * len(raw.comments)
    assert total["record_name_replaced"] == n and total["date_shifted"] == n
    assert total["age_capped"] == 0


def test_cinc_record_keeps_only_age_sex_and_codes() -> None:
    raw = read_wfdb_record(ECG / "cinc2021" / "JS20000.hea")
    (window,) = canonicalise(raw, SPEC)
    clean, actions = deidentify(window, SubjectKeys("ningbo-x", -364), "record-y")
    assert clean.comments == ["Age: 84", "Sex: F", "Dx: " + ",".join(raw.dx_codes)]
    assert not any(line.startswith(("Rx", "Hx", "Sx")) for line in clean.comments)
    assert actions["header_comment_removed"] == 6 and actions["header_comment_rebuilt"] == 3
    assert clean.start_datetime is None and "date_shifted" not in actions


def test_ages_over_89_become_90() -> None:
    raw = RawEcg(
        sine_leads(5000, 500, amplitude=500),
        500.0,
        list(LEADS_12),
        "old",
        comments=["Age: 97"],
        age_years=97.0,
    )
    (window,) = canonicalise(raw, SPEC)
    clean, actions = deidentify(window, SubjectKeys("s-1", -700), "record-1")
    assert clean.age_years == 90 and actions["age_capped"] == 1
    assert "97" not in _text_of(clean)
    young = dataclasses.replace(window, age_years=89.0, comments=["Age: 89"])
    clean, actions = deidentify(young, SubjectKeys("s-1", -700), "record-1")
    assert clean.age_years == 89 and "age_capped" not in actions


def test_unknown_sex_and_free_text_codes_are_not_kept() -> None:
    raw = RawEcg(
        sine_leads(5000, 500, amplitude=500),
        500.0,
        list(LEADS_12),
        "r",
        sex="Unknown",
        dx_codes=["426783006", "John Doe"],
    )
    (window,) = canonicalise(raw, SPEC)
    clean, _ = deidentify(window, SubjectKeys("s-1", -7), "record-1")
    assert clean.sex is None and clean.dx_codes == ["426783006"]
    assert "John" not in _text_of(clean)


@settings(max_examples=60, deadline=None)
@given(
    subject=st.text(min_size=1, max_size=12),
    first=st.datetimes(min_value=dt.datetime(1950, 1, 1), max_value=dt.datetime(2030, 1, 1)),
    gap_s=st.integers(min_value=0, max_value=20 * 365 * 86400),
)
def test_date_shift_preserves_intervals_within_a_subject(
    subject: str, first: dt.datetime, gap_s: int
) -> None:
    keys = derive_subject_keys(KEY, "ptbxl", subject)
    second = first + dt.timedelta(seconds=gap_s)
    base = EcgSample(np.zeros((12, 5000), np.int16), np.ones(12, bool), 500.0, 0, 1, 0.0, 10.0, 500.0, 5000)
    a, _ = deidentify(dataclasses.replace(base, start_datetime=first), keys, "record-a")
    b, _ = deidentify(dataclasses.replace(base, start_datetime=second), keys, "record-b")
    assert a.start_datetime is not None and b.start_datetime is not None
    assert b.start_datetime - a.start_datetime == second - first
    assert a.start_datetime != first
    assert a.start_datetime.weekday() == first.weekday()  # whole-week offsets


def test_with_changes_copies_replaces_and_refuses_unknown_fields() -> None:
    import numpy as np
    import pytest

    from transforms.ecg.canonical import EcgSample

    s = EcgSample(np.zeros((12, 5000), np.int16), np.ones(12, bool), 500.0, 0, 1, 0.0, 10.0, 500.0, 5000,
                  age_years=93.0, record_name="s0010_re", comments=["age: 93"])  # fmt: skip
    t = s.with_changes(age_years=90, record_name="record-x", comments=[])
    assert (t.age_years, t.record_name, t.comments) == (90, "record-x", [])
    assert (s.age_years, s.record_name, s.comments) == (
        93.0,
        "s0010_re",
        ["age: 93"],
    )  # the original is intact
    assert t.signal is s.signal and t.fs_hz == s.fs_hz and t.valid_length == 5000
    with pytest.raises(TypeError, match="no field"):
        s.with_changes(patient_name="x")
