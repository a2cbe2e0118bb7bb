"""Readers against the real samples (checked with wfdb-python and scipy) and synthetic files."""

from __future__ import annotations

import datetime as dt
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import wfdb

from tests.transforms.ecg.records import (
    CINC_HEADERS,
    CPSC_MATS,
    ECG,
    WFDB_HEADERS,
    write_cinc_record,
    write_cpsc2018_mat,
)
from transforms.ecg import RawEcg, read_cpsc2018_mat, read_wfdb_record
from transforms.ecg.read import parse_wfdb_header
from transforms.problems import ItemError

UNIT_UV = {"mv": 1000.0, "uv": 1.0, "v": 1e6}


def reference_uv(header: Path) -> tuple[np.ndarray, wfdb.Record]:
    """wfdb-python's physical signal converted to µV, (C, T), and its record."""
    rec = wfdb.rdrecord(str(header.with_suffix("")))
    factors = np.array([UNIT_UV[u.lower()] for u in rec.units])[:, None]
    return rec.p_signal.T * factors, rec


def test_every_sample_file_is_covered() -> None:
    assert len(CINC_HEADERS) == 25
    assert len(CPSC_MATS) == 2
    assert all(h.is_file() for h in WFDB_HEADERS)


@pytest.mark.parametrize("header", [*CINC_HEADERS, *WFDB_HEADERS], ids=lambda p: p.stem)
def test_wfdb_samples_match_wfdb_python(header: Path) -> None:
    raw = read_wfdb_record(header)
    expected, rec = reference_uv(header)
    assert raw.signal.shape == expected.shape == (rec.n_sig, rec.sig_len)
    assert raw.fs_hz == float(rec.fs)
    assert raw.lead_names == rec.sig_name
    assert raw.record_name == rec.record_name
    np.testing.assert_allclose(raw.signal, expected, atol=1.0, rtol=0)  # to the µV
    assert np.array_equal(np.isnan(raw.signal), np.isnan(expected))
    assert raw.comments == rec.comments
    # The fast path takes every format-16 record; the others go through wfdb.
    assert raw.meta["reader"] == ("numpy_fmt16" if set(rec.fmt) == {"16"} else "wfdb")
    assert raw.meta["checksum_mismatch"] == []


@pytest.mark.parametrize("header", CINC_HEADERS, ids=lambda p: p.stem)
def test_cinc_demographics_and_codes_match_the_header_text(header: Path) -> None:
    raw = read_wfdb_record(header)
    fields = {}
    for line in header.read_text().splitlines():
        if line.startswith("#") and ":" in line:
            key, value = line.lstrip("# ").split(":", 1)
            fields[key.strip().lower()] = value.strip()
    assert raw.dx_codes == fields["dx"].split(",")
    assert raw.sex == {"Male": "M", "Female": "F"}[fields["sex"]]
    assert raw.age_years == float(fields["age"])
    assert raw.base_datetime is None  # CinC headers carry no base date


def test_ptb_record_reads_both_signal_files_with_lowercase_names() -> None:
    raw = read_wfdb_record(ECG / "wfdb" / "s0010_re.hea")
    assert raw.lead_names[:6] == ["i", "ii", "iii", "avr", "avl", "avf"]
    assert raw.lead_names[-3:] == ["vx", "vy", "vz"]
    assert raw.signal.shape == (15, 38400)
    assert (raw.age_years, raw.sex) == (81.0, "F")
    assert raw.dx_codes == []


def test_header_path_without_suffix_is_accepted() -> None:
    a = read_wfdb_record(ECG / "cinc2021" / "HR06000")
    b = read_wfdb_record(ECG / "cinc2021" / "HR06000.hea")
    assert np.array_equal(a.signal, b.signal)


@pytest.mark.parametrize("mat", CPSC_MATS, ids=lambda p: p.stem)
def test_cpsc2018_matches_scipy_in_microvolts(mat: Path) -> None:
    raw = read_cpsc2018_mat(mat)
    ecg = scipy.io.loadmat(mat)["ECG"][0, 0]
    data_mv = ecg["data"]
    np.testing.assert_allclose(raw.signal, data_mv * 1000.0, atol=1e-9)
    assert raw.fs_hz == 500.0
    assert raw.lead_names == ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert raw.age_years == float(ecg["age"][0, 0])
    assert raw.sex == str(ecg["sex"][0])[0]
    assert raw.record_name == mat.stem
    # Einthoven's law holds in the stored order: III = II - I (in µV, to rounding).
    np.testing.assert_allclose(raw.signal[2], raw.signal[1] - raw.signal[0], atol=1e-6)


def test_cpsc2018_units_are_millivolts() -> None:
    """Typical QRS peak-to-peak in lead II is 0.5-3 mV; in µV after reading that is 500-3000."""
    raw = read_cpsc2018_mat(ECG / "cpsc2018" / "A1980.mat")
    ptp_uv = np.ptp(raw.signal[1])
    assert 500 < ptp_uv < 3000


@pytest.mark.parametrize("fs_hz", [250, 257, 360, 500, 1000])
@pytest.mark.parametrize("fmt", ["16", "212"])
def test_synthetic_wrsamp_records(tmp_path: Path, fs_hz: int, fmt: str) -> None:
    n = int(fs_hz * 3.3)
    t = np.arange(n) / fs_hz
    p = np.vstack([np.sin(2 * np.pi * 1.1 * t), 0.5 * np.cos(2 * np.pi * 7 * t), 0.2 * t]).T  # mV, (T, C)
    names = ["i", "AVR", "v1"]
    wfdb.wrsamp(
        "syn",
        fs=fs_hz,
        units=["mV", "mV", "mV"],
        sig_name=names,
        p_signal=p,
        fmt=[fmt] * 3,
        write_dir=str(tmp_path),
    )
    raw = read_wfdb_record(tmp_path / "syn.hea")
    expected, _ = reference_uv(tmp_path / "syn.hea")
    assert raw.fs_hz == fs_hz
    assert raw.lead_names == names
    assert raw.signal.shape == (3, n)
    np.testing.assert_allclose(raw.signal, expected, atol=1.0)
    assert raw.meta["reader"] == ("numpy_fmt16" if fmt == "16" else "wfdb")


@pytest.mark.parametrize(("units", "factor"), [("uV", 1.0), ("mV", 1e3), ("mv", 1e3), ("V", 1e6)])
def test_units_are_converted_to_microvolts(tmp_path: Path, units: str, factor: float) -> None:
    digital = np.array([[0, 100, -250, 4000], [5, 5, 5, 5]], dtype=np.int16)
    header = write_cinc_record(
        tmp_path, "u1", digital, gain=200.0, baseline=5, units=units, lead_names=["I", "II"]
    )
    raw = read_wfdb_record(header)
    np.testing.assert_allclose(raw.signal, (digital - 5) / 200.0 * factor)


def test_cinc_mat_written_by_scipy_reads_like_wfdb(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    digital = rng.integers(-3000, 3000, size=(12, 5000), dtype=np.int16)
    header = write_cinc_record(tmp_path, "S0001", digital, gain=1000.0, units="mv")
    raw = read_wfdb_record(header)
    expected, _ = reference_uv(header)
    assert raw.meta["reader"] == "numpy_fmt16"
    np.testing.assert_allclose(raw.signal, expected, atol=1e-6)
    np.testing.assert_array_equal(raw.signal, digital.astype(np.float64))  # gain 1000/mV → 1 code = 1 µV


def test_base_date_and_time_become_base_datetime(tmp_path: Path) -> None:
    p = np.zeros((1000, 1))
    p[::7] = 0.3
    wfdb.wrsamp(
        "dated", fs=500, units=["mV"], sig_name=["II"], p_signal=p, fmt=["16"],
        base_date=dt.date(2001, 2, 3), base_time=dt.time(4, 5, 6), write_dir=str(tmp_path),
    )  # fmt: skip
    raw = read_wfdb_record(tmp_path / "dated.hea")
    assert raw.base_datetime == dt.datetime(2001, 2, 3, 4, 5, 6)


def test_invalid_sample_code_reads_as_nan_like_wfdb(tmp_path: Path) -> None:
    digital = np.tile(np.arange(-50, 50, dtype=np.int16), (2, 10))
    digital[1, 17] = -32768  # format 16's "no sample" code
    header = write_cinc_record(tmp_path, "nan1", digital, lead_names=["I", "II"])
    raw = read_wfdb_record(header)
    expected, _ = reference_uv(header)
    assert np.isnan(raw.signal[1, 17]) and np.isnan(expected[1, 17])
    assert np.isnan(raw.signal).sum() == 1


def test_gain_zero_means_200_as_in_wfdb(tmp_path: Path) -> None:
    digital = np.array([[0, 200, -400, 1000]], dtype=np.int16)
    header = write_cinc_record(tmp_path, "g0", digital, gain=0, lead_names=["I"])
    raw = read_wfdb_record(header)
    expected, rec = reference_uv(header)
    assert rec.adc_gain == [200.0]
    np.testing.assert_allclose(raw.signal, expected)
    np.testing.assert_allclose(raw.signal[0], [0.0, 1000.0, -2000.0, 5000.0])


def test_gain_that_makes_values_infinite_is_rejected(tmp_path: Path) -> None:
    digital = np.array([[0, 200, -400, 1000]], dtype=np.int16)
    header = write_cinc_record(tmp_path, "gtiny", digital, gain="1e-320", lead_names=["I"])
    with np.errstate(all="ignore"):
        expected, _ = reference_uv(header)
    assert np.isinf(expected).any()  # wfdb would hand back infinities
    with pytest.raises(ItemError) as info:
        read_wfdb_record(header)
    assert info.value.problem.code == "invalid_gain"


def _copy_record(tmp_path: Path, stem: str = "HR06000") -> Path:
    for suffix in (".hea", ".mat"):
        shutil.copy(ECG / "cinc2021" / f"{stem}{suffix}", tmp_path / f"{stem}{suffix}")
        (tmp_path / f"{stem}{suffix}").chmod(0o644)
    return tmp_path / f"{stem}.hea"


def _error(path: Path) -> ItemError:
    with pytest.raises(ItemError) as info:
        read_wfdb_record(path)
    err = info.value
    # Quarantine details must not name the file, its folder or the record.
    assert path.stem not in err.problem.detail
    assert str(path.parent) not in err.problem.detail
    assert str(path.with_suffix("")) in str(err)  # the local log line names the file
    return err


def test_truncated_mat_is_truncated_file(tmp_path: Path) -> None:
    header = _copy_record(tmp_path)
    mat = header.with_suffix(".mat")
    mat.write_bytes(mat.read_bytes()[:50_000])
    assert _error(header).problem.code == "truncated_file"


def test_header_longer_than_mat_is_header_mismatch(tmp_path: Path) -> None:
    header = _copy_record(tmp_path)
    header.write_text(header.read_text().replace("HR06000 12 500 5000", "HR06000 12 500 6000", 1))
    err = _error(header)
    assert err.problem.code == "header_mismatch"
    assert "6000" in err.problem.detail and "5000" in err.problem.detail


def test_header_with_too_few_signal_lines_is_header_mismatch(tmp_path: Path) -> None:
    header = _copy_record(tmp_path)
    lines = header.read_text().splitlines()
    header.write_text("\n".join(line for line in lines if not line.endswith(" V6")) + "\n")
    assert _error(header).problem.code == "header_mismatch"


def test_mat_with_other_element_type_is_header_mismatch(tmp_path: Path) -> None:
    header = _copy_record(tmp_path)
    scipy.io.savemat(header.with_suffix(".mat"), {"val": np.zeros((12, 5000), dtype=np.float64)}, format="4")
    assert _error(header).problem.code == "header_mismatch"


def test_truncated_dat_is_truncated_file(tmp_path: Path) -> None:
    for name in ("s0010_re.hea", "s0010_re.dat", "s0010_re.xyz"):
        shutil.copy(ECG / "wfdb" / name, tmp_path / name)
        (tmp_path / name).chmod(0o644)
    xyz = tmp_path / "s0010_re.xyz"
    xyz.write_bytes(xyz.read_bytes()[:-600])
    assert _error(tmp_path / "s0010_re.hea").problem.code == "truncated_file"


def test_truncated_212_file_is_truncated_file(tmp_path: Path) -> None:
    p = np.sin(np.arange(2000) / 30.0)[:, None] * np.ones((1, 2))
    wfdb.wrsamp(
        "f212",
        fs=360,
        units=["mV", "mV"],
        sig_name=["MLII", "V5"],
        p_signal=p,
        fmt=["212", "212"],
        write_dir=str(tmp_path),
    )
    dat = tmp_path / "f212.dat"
    dat.write_bytes(dat.read_bytes()[:3000])
    assert _error(tmp_path / "f212.hea").problem.code == "truncated_file"


def test_missing_signal_file(tmp_path: Path) -> None:
    header = _copy_record(tmp_path)
    header.with_suffix(".mat").unlink()
    assert _error(header).problem.code == "missing_signal_file"


def test_missing_header_is_unreadable_header(tmp_path: Path) -> None:
    assert _error(tmp_path / "nothing.hea").problem.code == "unreadable_header"


def test_garbage_header_is_unreadable_header(tmp_path: Path) -> None:
    header = tmp_path / "junk.hea"
    header.write_bytes(b"\x00\xff\xfe not a header")
    assert _error(header).problem.code == "unreadable_header"
    header.write_text("this is : not wfdb\n")
    assert _error(header).problem.code == "unreadable_header"


def test_lead_in_unknown_units_is_rejected_other_channels_dropped(tmp_path: Path) -> None:
    digital = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=np.int16)
    header = write_cinc_record(tmp_path, "uu", digital, units="mmHg", lead_names=["II", "ABP"])
    assert _error(header).problem.code == "unknown_units"

    lines = header.read_text().splitlines()
    lines[1] = lines[1].replace("/mmHg", "/mV")  # lead II in mV, ABP stays in mmHg
    header.write_text("\n".join(lines) + "\n")
    raw = read_wfdb_record(header)
    assert raw.lead_names == ["II"]
    assert raw.meta["dropped_channels"] == [{"name": "ABP", "units": "mmHg"}]
    np.testing.assert_allclose(raw.signal[0], digital[0])


def test_cpsc2018_errors(tmp_path: Path) -> None:
    with pytest.raises(ItemError) as info:
        read_cpsc2018_mat(tmp_path / "A9999.mat")
    assert info.value.problem.code == "missing_signal_file"
    bad = tmp_path / "A9998.mat"
    bad.write_bytes(b"not a mat file at all")
    with pytest.raises(ItemError) as info:
        read_cpsc2018_mat(bad)
    assert info.value.problem.code == "unreadable_file"
    assert "A9998" not in info.value.problem.detail
    eleven = write_cpsc2018_mat(tmp_path / "A9997.mat", np.zeros((11, 5000)))
    with pytest.raises(ItemError) as info:
        read_cpsc2018_mat(eleven)
    assert info.value.problem.code == "header_mismatch"


def test_synthetic_cpsc2018_roundtrip(tmp_path: Path) -> None:
    data = np.random.default_rng(1).normal(size=(12, 27_000))
    raw = read_cpsc2018_mat(write_cpsc2018_mat(tmp_path / "A9000.mat", data, sex="Female", age=71))
    np.testing.assert_allclose(raw.signal, data * 1000.0)
    assert (raw.sex, raw.age_years, raw.duration_s) == ("F", 71.0, 54.0)


def test_header_parser_defaults() -> None:
    h = parse_wfdb_header("rec 2\nrec.dat 16\nrec.dat 16 100(7)\n")
    assert h.fs_hz == 250.0 and h.sig_len is None
    assert [(s.adc_gain, s.baseline, s.units) for s in h.signals] == [(200.0, 0, "mV"), (100.0, 7, "mV")]


def test_raw_ecg_pickles() -> None:
    raw = read_wfdb_record(ECG / "cinc2021" / "E07500.hea")
    back = pickle.loads(pickle.dumps(raw))
    assert isinstance(back, RawEcg)
    assert np.array_equal(back.signal, raw.signal) and back.dx_codes == raw.dx_codes


def test_multi_segment_record_reads_like_wfdb(tmp_path: Path) -> None:
    for k in (1, 2):
        p = np.sin(np.arange(3000) / (20.0 * k))[:, None] * np.array([[1.0, -0.5]])
        wfdb.wrsamp(
            f"seg{k}",
            fs=500,
            units=["mV", "mV"],
            sig_name=["I", "II"],
            p_signal=p,
            fmt=["212", "212"],
            write_dir=str(tmp_path),
        )
    (tmp_path / "multi.hea").write_text("multi/2 2 500 6000\nseg1 3000\nseg2 3000\n")
    raw = read_wfdb_record(tmp_path / "multi.hea")
    expected, _ = reference_uv(tmp_path / "multi.hea")
    assert raw.signal.shape == (2, 6000) and raw.lead_names == ["I", "II"]
    np.testing.assert_allclose(raw.signal, expected, atol=1e-3)


# --- the signal-line fast path agrees with the full WFDB grammar --------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from transforms.ecg.read import _RX_SIGNAL, _signal_fields_fast  # noqa: E402

_num = st.from_regex(r"-?[0-9]{0,4}(\.[0-9]{0,3})?([eE][+-]?[0-9]{1,2})?", fullmatch=True)
_int = st.from_regex(r"-?[0-9]{1,6}", fullmatch=True)
_token = st.one_of(_int, _num, st.text(alphabet="0123456789-+.x:()/eEmVuµ~_abcHR\t ", max_size=8))


@settings(max_examples=1500, deadline=None)
@given(
    file_name=st.from_regex(r"~?[-A-Za-z0-9_]{0,6}(\.[a-z]{0,3})?", fullmatch=True),
    fmt=st.from_regex(r"[0-9]{1,3}(x[0-9])?(:[0-9])?(\+[0-9]{1,3})?", fullmatch=True) | _token,
    gain=st.from_regex(r"-?[0-9]{0,4}(\.[0-9]{0,2})?(\(-?[0-9]{1,3}\))?(/[a-zA-Zµ]{0,3})?", fullmatch=True)
    | _token,
    ints=st.lists(st.one_of(_int, _token), min_size=5, max_size=5),
    name=st.text(alphabet="IVXaLRF12 \t-", min_size=0, max_size=6),
    sep=st.sampled_from([" ", "\t", "  ", " \t"]),
)
def test_signal_line_fast_path_equals_the_grammar(file_name, fmt, gain, ints, name, sep):
    """Whenever the tokenising fast path answers, it answers exactly what _RX_SIGNAL matches."""
    line = sep.join([file_name, fmt, gain, *ints, name]).strip()
    fast = _signal_fields_fast(line)
    if fast is not None:
        full = _RX_SIGNAL.match(line)
        assert full is not None, line
        assert fast == full.groups(), line


def test_signal_line_fast_path_takes_the_real_headers():
    """Every signal line of the real sample headers goes through the fast path, with the grammar's fields."""
    lines = [
        line.strip()
        for hea in sorted(ECG.glob("**/*.hea"))
        for line in hea.read_text(errors="replace").splitlines()[1:]
        if line.strip() and not line.strip().startswith("#")
    ]
    assert len(lines) > 100
    for line in lines:
        fast = _signal_fields_fast(line)
        assert fast is not None, line
        assert fast == _RX_SIGNAL.match(line).groups(), line
