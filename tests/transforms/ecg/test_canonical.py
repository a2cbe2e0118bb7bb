"""Canonical ECG: spec rules, lead order, resampling against analytic sines, windowing."""

from __future__ import annotations

import datetime as dt
import functools
import pickle
from pathlib import Path

import numpy as np
import pytest
import wfdb
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.transforms.ecg.records import CINC_HEADERS, ECG, LEADS_12, sine_leads, write_cpsc2018_mat
from transforms.ecg import (
    STANDARD_12,
    EcgSample,
    EcgSpec,
    RawEcg,
    canonicalise,
    read_cpsc2018_mat,
    read_wfdb_record,
)
from transforms.ecg.canonical import lead_index, resample_to_rate, resolve_metadata
from transforms.problems import ItemError

SPEC = EcgSpec()


def raw_from(signal_uv: np.ndarray, fs_hz: float, names: list[str] | None = None, **kw: object) -> RawEcg:
    return RawEcg(signal=signal_uv, fs_hz=fs_hz, lead_names=names or list(LEADS_12), record_name="r", **kw)  # type: ignore[arg-type]


# --- spec ------------------------------------------------------------------------------------


def test_standard_12_order() -> None:
    assert STANDARD_12 == ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    assert SPEC.window_samples == 5000


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sampling_rate_hz": 0},
        {"sampling_rate_hz": 500.0},
        {"leads": ()},
        {"leads": ("I", "I")},
        {"leads": ("I", "MLII")},
        {"window_s": -1.0},
        {"window_s": 10.0001},
        {"window_policy": "overlap"},
        {"min_tail_s": 0.0},
        {"min_tail_s": 11.0},
        {"dtype": "float32"},
        {"units": "mV"},
    ],
)
def test_spec_rejects_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        EcgSpec(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(
    rate=st.sampled_from([100, 125, 250, 500, 1000]),
    leads=st.lists(st.sampled_from(STANDARD_12), min_size=1, max_size=12, unique=True),
    window_s=st.sampled_from([2.0, 5.0, 10.0, 30.0]),
    policy=st.sampled_from(["tile", "first"]),
    tail_fraction=st.floats(0.05, 1.0),
)
def test_spec_round_trips(
    rate: int, leads: list[str], window_s: float, policy: str, tail_fraction: float
) -> None:
    spec = EcgSpec(rate, tuple(leads), window_s, policy, window_s * tail_fraction)
    assert EcgSpec.from_dict(spec.to_dict()) == spec
    assert pickle.loads(pickle.dumps(spec)) == spec


def test_spec_from_manifest_block() -> None:
    block = {
        "sampling_rate_hz": 500,
        "leads": "standard_12",
        "window_s": 10,
        "dtype": "int16",
        "units": "uV",
        "window_policy": "tile",
    }
    assert EcgSpec.from_manifest(block) == EcgSpec()
    assert EcgSpec.from_manifest({"leads": ["I", "II"], "window_s": 5}).leads == ("I", "II")
    with pytest.raises(ValueError, match="unknown keys"):
        EcgSpec.from_manifest({"sample_rate": 500})
    with pytest.raises(ValueError, match="lead set"):
        EcgSpec.from_manifest({"leads": "standard_15"})


def test_resolve_metadata_matches_output() -> None:
    meta = resolve_metadata(SPEC)
    sample = canonicalise(read_wfdb_record(CINC_HEADERS[0]), SPEC)[0]
    assert tuple(meta["signal"]["shape"]) == sample.signal.shape
    assert meta["signal"]["dtype"] == str(sample.signal.dtype)
    assert tuple(meta["lead_mask"]["shape"]) == sample.lead_mask.shape
    assert meta["lead_mask"]["dtype"] == str(sample.lead_mask.dtype)


# --- leads -----------------------------------------------------------------------------------


def test_lead_names_match_ignoring_case() -> None:
    names = ["v6", "V5", "v4", "v3", "V2", "v1", "AVF", "avl", "aVR", "iii", "II", "i"]
    assert lead_index(names) == list(range(11, -1, -1))


@pytest.mark.parametrize("header", CINC_HEADERS, ids=lambda p: p.stem)
def test_cinc_samples_at_500_hz_are_rounded_microvolts(header: Path) -> None:
    raw = read_wfdb_record(header)
    (window,) = canonicalise(raw, SPEC)
    assert window.signal.dtype == np.int16 and window.signal.shape == (12, 5000)
    rec = wfdb.rdrecord(str(header.with_suffix("")))
    for k, lead in enumerate(STANDARD_12):
        column = rec.p_signal[:, rec.sig_name.index(lead)]
        if np.ptp(column) == 0:  # not recorded (some Ningbo records): absent, named, zeros
            assert not window.lead_mask[k] and lead in window.constant_leads
            assert not window.signal[k].any()
            continue
        assert window.lead_mask[k]
        np.testing.assert_array_equal(window.signal[k], np.clip(np.rint(column * 1000.0), -32767, 32767))
    assert (window.window_index, window.n_windows, window.valid_length, window.dropped_tail_s) == (
        0,
        1,
        5000,
        0.0,
    )
    assert window.dx_codes == raw.dx_codes and window.age_years == raw.age_years


def test_ptb_record_1000_hz_lowercase_gives_four_windows() -> None:
    raw = read_wfdb_record(ECG / "wfdb" / "s0010_re.hea")
    windows = canonicalise(raw, SPEC)
    # 38.4 s at 500 Hz = 19200 samples: three full windows and a 8.4 s tail (>= 5 s, padded).
    assert [w.valid_length for w in windows] == [5000, 5000, 5000, 4200]
    assert [w.window_start_s for w in windows] == [0.0, 10.0, 20.0, 30.0]
    assert all(w.lead_mask.all() for w in windows)
    assert windows[-1].dropped_tail_s == 0.0
    assert not windows[-1].signal[:, 4200:].any()
    # Lead aVR is the file's "avr" channel, decimated by 2 (compare away from the filter's edges).
    avr = raw.signal[raw.lead_names.index("avr")]
    got = np.concatenate([w.signal[3, : w.valid_length] for w in windows]).astype(float)
    naive = avr[::2]  # plain decimation: equal wherever the ECG has no content above 250 Hz
    diff = got[100:-100] - naive[100:-100]
    assert np.sqrt(np.mean(diff**2)) < 5.0  # µV; the recording's own noise above 250 Hz is what differs
    assert np.corrcoef(got, naive)[0, 1] > 0.999


def test_missing_leads_are_masked_zero_rows() -> None:
    names = ["i", "ii", "V1", "v2", "v3", "V4", "v5", "v6"]
    raw = raw_from(sine_leads(5000, 500, amplitude=1000, n_leads=8), 500, names)
    (window,) = canonicalise(raw, SPEC)
    expected_mask = [lead not in ("III", "aVR", "aVL", "aVF") for lead in STANDARD_12]
    assert window.lead_mask.tolist() == expected_mask
    assert not window.signal[~window.lead_mask].any()
    np.testing.assert_array_equal(window.signal[6], np.rint(raw.signal[2]))  # V1


@pytest.mark.parametrize("fs_hz", [250, 257, 1000])
def test_wrsamp_file_with_missing_leads_lowercase_names_and_microvolts(tmp_path: Path, fs_hz: int) -> None:
    names = ["ii", "v1", "avf", "i", "v5"]
    p_uv = sine_leads(int(fs_hz * 12), fs_hz, freq_hz=5.0, amplitude=2000.0, n_leads=5)
    wfdb.wrsamp(
        "miss",
        fs=fs_hz,
        units=["uV"] * 5,
        sig_name=names,
        p_signal=p_uv.T,
        fmt=["16"] * 5,
        write_dir=str(tmp_path),
    )
    windows = canonicalise(read_wfdb_record(tmp_path / "miss.hea"), SPEC)
    assert [w.valid_length for w in windows] == [5000]  # 12 s: one window, a 2 s tail dropped
    assert windows[0].dropped_tail_s == pytest.approx(2.0)
    (window,) = windows
    assert [lead for lead, m in zip(STANDARD_12, window.lead_mask, strict=True) if m] == [
        "I",
        "II",
        "aVF",
        "V1",
        "V5",
    ]
    assert not window.signal[~window.lead_mask].any()
    expected = np.rint(sine_leads(5000, 500, freq_hz=5.0, amplitude=2000.0, n_leads=5))
    for k, name in enumerate(names):
        row = STANDARD_12.index({"ii": "II", "v1": "V1", "avf": "aVF", "i": "I", "v5": "V5"}[name])
        np.testing.assert_allclose(window.signal[row, 100:-100], expected[k, 100:-100], atol=12)


def test_constant_leads_of_real_ningbo_records_are_masked() -> None:
    raw = read_wfdb_record(ECG / "cinc2021" / "JS20004.hea")
    (window,) = canonicalise(raw, SPEC)
    assert window.constant_leads == ("V2", "V4", "V6")
    assert window.lead_mask.sum() == 9


def test_record_with_only_constant_leads_has_no_leads() -> None:
    with pytest.raises(ItemError) as info:
        canonicalise(raw_from(np.full((12, 5000), 7.0), 500), SPEC)
    assert info.value.problem.code == "no_leads"


def test_no_standard_lead_is_an_item_error() -> None:
    raw = raw_from(sine_leads(5000, 500, n_leads=2), 500, ["MLII", "vx"])
    with pytest.raises(ItemError) as info:
        canonicalise(raw, SPEC)
    assert info.value.problem.code == "no_leads"


# --- resampling ------------------------------------------------------------------------------


def _fit(y: np.ndarray, f_hz: float, fs_hz: float, margin_s: float = 0.3) -> tuple[float, float, float]:
    """Amplitude, phase (rad) and worst error of y against sin(2π f t), away from the edges."""
    t = np.arange(y.size) / fs_hz
    keep = (t > margin_s) & (t < t[-1] - margin_s)
    basis = np.vstack([np.sin(2 * np.pi * f_hz * t[keep]), np.cos(2 * np.pi * f_hz * t[keep])]).T
    a, b = np.linalg.lstsq(basis, y[keep], rcond=None)[0]
    return (
        float(np.hypot(a, b)),
        float(np.arctan2(b, a)),
        float(np.abs(y[keep] - np.sin(2 * np.pi * f_hz * t[keep])).max()),
    )


@pytest.mark.parametrize("fs_in", [250, 257, 360, 500, 1000, 499.7])
@pytest.mark.parametrize("f_hz", [7.0, 40.0])
def test_resampled_sine_keeps_amplitude_and_phase(fs_in: float, f_hz: float) -> None:
    n = int(fs_in * 4)
    x = np.sin(2 * np.pi * f_hz * np.arange(n) / fs_in)[None, :]
    y = resample_to_rate(x, fs_in, 500)[0]
    assert y.size == int(np.ceil(n * 500 / fs_in - 1e-9))
    amplitude, phase, worst = _fit(y, f_hz, 500)
    assert abs(amplitude - 1.0) < 0.005
    assert abs(phase) < np.radians(0.5)
    assert worst < 0.005


def test_content_above_new_nyquist_is_removed() -> None:
    fs_in = 1000
    x = np.sin(2 * np.pi * 300.0 * np.arange(4000) / fs_in)[None, :]
    y = resample_to_rate(x, fs_in, 500)[0]
    naive = x[0, ::2]  # plain decimation folds 300 Hz onto 200 Hz at full amplitude
    assert np.sqrt(np.mean(naive**2)) > 0.7
    assert np.sqrt(np.mean(y[200:-200] ** 2)) < 0.01


def test_canonicalise_resamples_a_360_hz_record(tmp_path: Path) -> None:
    fs = 360
    p = sine_leads(int(fs * 10), fs, freq_hz=7.0).T  # mV, 10 s
    wfdb.wrsamp(
        "r360",
        fs=fs,
        units=["mV"] * 12,
        sig_name=[n.lower() for n in LEADS_12],
        p_signal=p,
        fmt=["16"] * 12,
        write_dir=str(tmp_path),
    )
    (window,) = canonicalise(read_wfdb_record(tmp_path / "r360.hea"), SPEC)
    assert window.source_fs_hz == 360.0 and window.fs_hz == 500.0 and window.valid_length == 5000
    expected = np.rint(sine_leads(5000, 500, freq_hz=7.0) * 1000.0)
    np.testing.assert_allclose(
        window.signal[:, 200:-200], expected[:, 200:-200], atol=6
    )  # ADC step 5 µV + filter


# --- values and windows ----------------------------------------------------------------------


def test_non_finite_used_lead_is_an_item_error() -> None:
    signal = sine_leads(5000, 500, amplitude=1000)
    signal[4, 100] = np.nan
    with pytest.raises(ItemError) as info:
        canonicalise(raw_from(signal, 500), SPEC)
    assert info.value.problem.code == "non_finite"
    # NaN in a channel that is not a standard lead does not matter.
    extra = np.vstack([sine_leads(5000, 500, amplitude=1000), np.full((1, 5000), np.nan)])
    assert len(canonicalise(raw_from(extra, 500, [*LEADS_12, "vx"]), SPEC)) == 1


def test_values_beyond_int16_are_clipped_and_counted() -> None:
    signal = sine_leads(5000, 500, amplitude=1000)
    signal[0, 10:20] = 40_000.0
    signal[1, 30] = -50_000.0
    (window,) = canonicalise(raw_from(signal, 500), SPEC)
    assert window.clipped_samples == 11
    assert window.signal[0, 10:20].tolist() == [32767] * 10
    assert window.signal[1, 30] == -32767  # -32768 is WFDB's "no sample"; never written


def test_cpsc_54_s_record_gives_five_windows_and_counts_the_tail(tmp_path: Path) -> None:
    """A 54 s CPSC2018 record: five 10 s windows, the 4 s remainder (< 5 s) dropped and recorded."""
    base = read_cpsc2018_mat(ECG / "cpsc2018" / "A1980.mat").signal / 1000.0  # mV, 10 s
    data = np.tile(base, (1, 6))[:, :27_000]
    windows = canonicalise(read_cpsc2018_mat(write_cpsc2018_mat(tmp_path / "A9001.mat", data)), SPEC)
    assert len(windows) == 5
    assert {w.n_windows for w in windows} == {5}
    assert [w.window_start_s for w in windows] == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert {w.dropped_tail_s for w in windows} == {4.0}
    assert {w.record_duration_s for w in windows} == {54.0}
    for k, w in enumerate(windows):
        np.testing.assert_array_equal(w.signal, np.rint(data[:, k * 5000 : (k + 1) * 5000] * 1000.0))


def test_real_cpsc_15_9_s_record_gets_a_padded_second_window() -> None:
    raw = read_cpsc2018_mat(ECG / "cpsc2018" / "A1981.mat")
    windows = canonicalise(raw, SPEC)
    assert [w.valid_length for w in windows] == [5000, 2950]  # 7950 samples = 10 s + 5.9 s
    np.testing.assert_array_equal(windows[1].signal[:, :2950], np.rint(raw.signal[:, 5000:]))
    assert not windows[1].signal[:, 2950:].any()
    first = canonicalise(raw, EcgSpec(window_policy="first"))
    assert len(first) == 1 and first[0].dropped_tail_s == pytest.approx(5.9)


@pytest.mark.parametrize(
    ("seconds", "n_windows", "last_valid"),
    [(6.0, 1, 3000), (10.0, 1, 5000), (14.9, 1, 5000), (15.0, 2, 2500)],
)
def test_short_records_and_tails(seconds: float, n_windows: int, last_valid: int) -> None:
    n = round(seconds * 500)
    windows = canonicalise(raw_from(sine_leads(n, 500, amplitude=500), 500), SPEC)
    assert len(windows) == n_windows and windows[-1].valid_length == last_valid
    covered = sum(w.valid_length for w in windows)
    assert covered + round(windows[0].dropped_tail_s * 500) == n  # every sample is either windowed or counted


@pytest.mark.parametrize("n_samples", [0, 1, 2000, 2499])
def test_record_shorter_than_min_tail_is_an_item_error(n_samples: int) -> None:
    with pytest.raises(ItemError) as info:
        canonicalise(raw_from(sine_leads(n_samples, 500, amplitude=500), 500), SPEC)
    assert info.value.problem.code == "record_too_short"


def test_window_start_datetime_follows_base_datetime() -> None:
    base = dt.datetime(1999, 12, 31, 23, 59, 55)
    raw = raw_from(sine_leads(10_000, 500, amplitude=500), 500, base_datetime=base)
    windows = canonicalise(raw, SPEC)
    assert [w.start_datetime for w in windows] == [base, base + dt.timedelta(seconds=10)]


def test_source_adc_saturation_is_measured_per_window(tmp_path: Path) -> None:
    fs = 500
    d = (sine_leads(10_000, fs, amplitude=2000)).astype(np.int16)
    d[0, :1000] = 32767  # lead I pinned at the ADC maximum for 2 s of the first window
    wfdb.wrsamp(
        "sat",
        fs=fs,
        units=["uV"] * 12,
        sig_name=list(LEADS_12),
        d_signal=d.T,
        fmt=["16"] * 12,
        adc_gain=[1.0] * 12,
        baseline=[0] * 12,
        write_dir=str(tmp_path),
    )
    windows = canonicalise(read_wfdb_record(tmp_path / "sat.hea"), SPEC)
    assert windows[0].source_saturation[0] == pytest.approx(0.2)
    assert windows[1].source_saturation[0] == 0.0
    assert windows[0].source_saturation[1:].max() == 0.0


def test_samples_and_the_function_pickle() -> None:
    windows = canonicalise(read_wfdb_record(CINC_HEADERS[3]), SPEC)
    back = pickle.loads(pickle.dumps(windows))
    assert isinstance(back[0], EcgSample)
    assert np.array_equal(back[0].signal, windows[0].signal)
    fn = pickle.loads(pickle.dumps(functools.partial(canonicalise, spec=SPEC)))
    assert np.array_equal(fn(read_wfdb_record(CINC_HEADERS[3]))[0].signal, windows[0].signal)
