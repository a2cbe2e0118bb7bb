"""validate(): each defect gives exactly its problem code; clean real samples give none."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import wfdb
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.transforms.ecg.records import CINC_HEADERS, CPSC_MATS, ECG, LEADS_12, sine_leads
from transforms.ecg import EcgSample, EcgSpec, canonicalise, read_cpsc2018_mat, read_wfdb_record, validate
from transforms.ecg.validate import FLAT_STD_UV, SATURATED_FRACTION

SPEC = EcgSpec()


def clean_sample() -> EcgSample:
    signal = np.rint(sine_leads(5000, 500, amplitude=1500)).astype(np.int16)
    return EcgSample(signal, np.ones(12, bool), 500.0, 0, 1, 0.0, 10.0, 500.0, 5000, dx_codes=["426783006"])


def codes(sample: EcgSample, spec: EcgSpec = SPEC) -> list[str]:
    return [p.code for p in validate(sample, spec)]


def test_clean_sample_is_valid() -> None:
    assert validate(clean_sample(), SPEC) == []


@pytest.mark.parametrize("header", [*CINC_HEADERS, ECG / "wfdb" / "s0010_re.hea"], ids=lambda p: p.stem)
def test_real_samples_are_valid(header: Path) -> None:
    for window in canonicalise(read_wfdb_record(header), SPEC):
        assert validate(window, SPEC) == []


@pytest.mark.parametrize("mat", CPSC_MATS, ids=lambda p: p.stem)
def test_real_cpsc_samples_are_valid(mat: Path) -> None:
    for window in canonicalise(read_cpsc2018_mat(mat), SPEC):
        assert validate(window, SPEC) == []


def test_flat_lead_is_named() -> None:
    s = clean_sample()
    s.signal[7] = 12  # V2: constant
    problems = validate(s, SPEC)
    assert [p.code for p in problems] == ["flat_lead"]
    assert "V2" in problems[0].detail
    s = clean_sample()
    s.signal[7] = np.where(np.arange(5000) % 2, 1, -1)  # ±1 µV: below the threshold's std
    assert codes(s) == ["flat_lead"]
    assert FLAT_STD_UV > 1.0


def test_absent_lead_is_not_flat() -> None:
    s = clean_sample()
    s.signal[3] = 0
    s.lead_mask[3] = False
    assert codes(s) == []


def test_lead_at_int16_rails_is_saturated() -> None:
    s = clean_sample()
    n = int(5000 * SATURATED_FRACTION) + 50
    s.signal[0, :n] = 32767
    problems = validate(s, SPEC)
    assert [p.code for p in problems] == ["saturated_lead"]
    assert "lead I " in problems[0].detail
    s = clean_sample()
    s.signal[0, :10] = -32767  # a few samples at the rail: a spike, not saturation
    assert codes(s) == []


def test_lead_at_source_adc_limits_is_saturated(tmp_path: Path) -> None:
    """A lead pinned at its ADC's maximum (far below the int16 rails in µV) for 2 s."""
    d = np.rint(sine_leads(5000, 500, amplitude=300)).astype(np.int16)
    d[4, 1000:2000] = 2047  # aVL at the top code of a 12-bit ADC
    wfdb.wrsamp(
        "adc", fs=500, units=["mV"] * 12, sig_name=list(LEADS_12), d_signal=d.T, fmt=["212"] * 12,
        adc_gain=[400.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path),
    )  # fmt: skip
    (window,) = canonicalise(read_wfdb_record(tmp_path / "adc.hea"), SPEC)
    assert int(np.abs(window.signal).max()) < 32767  # the int16 rails are nowhere near
    problems = validate(window, SPEC)
    assert [p.code for p in problems] == ["saturated_lead"]
    assert "aVL" in problems[0].detail and "ADC" in problems[0].detail


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"signal": np.zeros((12, 4999), np.int16)}, "wrong_shape"),
        ({"signal": np.zeros((8, 5000), np.int16)}, "wrong_shape"),
        ({"lead_mask": np.ones(11, bool)}, "wrong_shape"),
        ({"signal": np.ones((12, 5000), np.float32)}, "wrong_dtype"),
        ({"fs_hz": 250.0}, "wrong_rate"),
        ({"valid_length": 0}, "bad_window"),
        ({"dx_codes": ["426783006", "99999999"]}, "unknown_label"),
    ],
)
def test_each_defect_gives_its_code(change: dict[str, object], code: str) -> None:
    assert codes(dataclasses.replace(clean_sample(), **change)) == [code]


def test_float_signal_with_nan_is_non_finite() -> None:
    s = dataclasses.replace(clean_sample(), signal=np.full((12, 5000), np.nan, np.float32))
    assert codes(s) == ["wrong_dtype", "non_finite"]


def test_no_present_lead() -> None:
    s = dataclasses.replace(
        clean_sample(), signal=np.zeros((12, 5000), np.int16), lead_mask=np.zeros(12, bool)
    )
    assert codes(s) == ["no_leads"]


def test_padding_must_be_zero_and_is_not_judged_flat() -> None:
    s = clean_sample()
    s.valid_length = 3000
    s.signal[:, 3000:] = 0
    assert codes(s) == []
    s.signal[0, 4000] = 5
    assert codes(s) == ["bad_window"]


def test_other_spec_shapes() -> None:
    spec = EcgSpec(sampling_rate_hz=250, leads=("I", "II"), window_s=4.0)
    s = EcgSample(
        np.rint(sine_leads(1000, 250, amplitude=900, n_leads=2)).astype(np.int16),
        np.ones(2, bool),
        250.0,
        0,
        1,
        0.0,
        4.0,
        250.0,
        1000,
    )
    assert validate(s, spec) == []
    assert codes(s) == ["wrong_shape", "wrong_shape", "wrong_rate"]


@given(
    baseline=st.integers(-30000, 30000),
    spread=st.sampled_from([0, 1, 2, 3, 4, 5, 6, 8, 50, 2000]),
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 5000),
)
@settings(max_examples=300, deadline=None)
def test_lead_std_agrees_with_numpy(baseline: int, spread: int, seed: int, n: int) -> None:
    """The float32 BLAS std (or the half-range bound) answers the flat check as float64 ``np.std`` does."""
    from transforms.ecg.validate import _lead_std_uv

    rng = np.random.default_rng(seed)
    leads = np.clip(baseline + rng.integers(-spread, spread + 1, size=(12, n)), -32767, 32767).astype(
        np.int16
    )
    leads[0] = baseline  # one constant row, one spike row
    leads[1, : min(n, 3)] = np.int16(np.clip(baseline + 30000, -32767, 32767))
    got = _lead_std_uv(leads, leads.max(axis=1), leads.min(axis=1))
    want = leads.astype(np.float64).std(axis=1)
    half_range = (leads.max(axis=1).astype(np.float64) - leads.min(axis=1)) / 2
    computed = half_range >= FLAT_STD_UV  # the others are answered by the bound std <= half range
    np.testing.assert_allclose(got[computed], want[computed], rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(got[~computed], half_range[~computed])
    assert (got >= want * (1 - 1e-3) - 1e-3).all()
    far = np.abs(want - FLAT_STD_UV) > 1e-2  # away from the threshold, the verdict is NumPy's
    assert ((got < FLAT_STD_UV) == (want < FLAT_STD_UV))[far].all()
