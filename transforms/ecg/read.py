"""Read ECG records into :class:`RawEcg`: physical values in µV, leads as the file names them.

Two readers:

* :func:`read_wfdb_record` reads a WFDB header (``.hea``) and its signal files. The CinC
  2020/2021 packaging (``.hea`` + MAT v4 ``.mat`` holding an int16 variable ``val``) and
  native format-16 records (``.dat``, one or several files, e.g. PTB's ``s0010_re`` with
  ``.dat`` + ``.xyz``) take a fast path: the header text is parsed here and the samples are
  read with NumPy at the byte offset the header gives, about 20x faster than
  ``wfdb.rdrecord``. Every other case (formats 8, 80, 160, 212, 24, 32, 61, 310, 311, FLAC,
  skewed or multi-frequency signals, multi-segment records) goes through ``wfdb.rdrecord``.
* :func:`read_cpsc2018_mat` reads the original CPSC2018 MATLAB struct ``ECG``.

Both convert ADC units to physical values exactly as wfdb-python does
(``(adc - baseline) / gain``, a gain of 0 read as 200 per the WFDB spec, the format's
"invalid sample" value read as NaN) and then to µV. Nothing is resampled here.

A record that cannot be read raises :class:`~transforms.problems.ItemError` with one of the
codes below; its ``problem.detail`` never names the file or the record (it goes to an
output), while the exception message does (it goes to the local log).

==========================  =================================================================
code                        meaning
==========================  =================================================================
``unreadable_header``       the ``.hea`` is missing, not text, or not WFDB syntax
``missing_signal_file``     a signal file the header names does not exist
``truncated_file``          a signal file holds fewer samples than the header says
``header_mismatch``         the header disagrees with the data (MAT v4 rows/cols/type,
                            signal-line count)
``invalid_gain``            a gain that makes physical values non-finite
``unknown_units``           a standard ECG lead in units that are not volts
``unreadable_file``         any other failure to decode the signal files
==========================  =================================================================

Examples:
    >>> from pathlib import Path
    >>> raw = read_wfdb_record(Path("../shared/samples/ecg/cinc2021/HR06000.hea"))
    >>> raw.signal.shape, raw.fs_hz, raw.lead_names[:3], raw.sex, raw.dx_codes
    ((12, 5000), 500.0, ['I', 'II', 'III'], 'F', ['164934002', '426783006'])
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from transforms.problems import ItemError

__all__ = ["RawEcg", "parse_wfdb_header", "read_cpsc2018_mat", "read_wfdb_record"]

#: Physical units → factor to µV. Keys are lower-case (``mv`` and ``mV`` are both seen in CinC headers).
UNIT_TO_UV: dict[str, float] = {
    "v": 1e6,
    "mv": 1e3,
    "uv": 1.0,
    "µv": 1.0,  # MICRO SIGN
    "μv": 1.0,  # GREEK SMALL LETTER MU
    "nv": 1e-3,
}

#: WFDB defaults for missing header fields (WFDB header(5) and wfdb-python).
DEFAULT_FS_HZ = 250.0
DEFAULT_GAIN = 200.0
DEFAULT_UNITS = "mV"

#: The digital value each WFDB format uses for "no sample" (wfdb-python ``INVALID_SAMPLE_VALUE``).
INVALID_SAMPLE: dict[str, int | None] = {
    "80": -(2**7),
    "508": -(2**7),
    "310": -(2**9),
    "311": -(2**9),
    "212": -(2**11),
    "16": -(2**15),
    "61": -(2**15),
    "160": -(2**15),
    "516": -(2**15),
    "24": -(2**23),
    "524": -(2**23),
    "32": -(2**31),
    "8": None,
}

#: Bits a sample takes on disk per format, used to check file sizes before reading.
#: FLAC formats (508, 516, 524) are compressed and absent here.
BITS_PER_SAMPLE: dict[str, int] = {
    "8": 8,
    "80": 8,
    "16": 16,
    "61": 16,
    "160": 16,
    "212": 12,
    "310": 10,  # three 10-bit samples in 32 bits: 4 bytes per 3 samples, rounded below
    "311": 10,
    "24": 24,
    "32": 32,
}

#: Standard lead names, lower-case: a channel with one of these names must be in volts.
_ECG_LEAD_KEYS = frozenset(["i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6"])

_MAT_V4_INT16_LE = 30  # MOPT type code: M=0 (IEEE little-endian), O=0, P=3 (int16), T=0 (numeric)


@dataclass
class RawEcg:
    """An ECG record as read: physical values, the file's own lead names, header facts.

    Attributes:
        signal: µV, shape (C, T), channels in file order: int16 when the file's codes already
            are whole µV (format 16, gain 1000/mV, baseline 0: every CinC record), else float32
            (float64 when values reach 2**22 µV) with NaN where the file marks a sample invalid.
        fs_hz: sampling frequency of every channel, Hz.
        lead_names: channel names as written in the file (``"I"``, ``"avr"``, ``"vx"``, ...).
        record_name: the record's name from the header (identifying: removed by de-identification).
        comments: header comment lines without the leading ``#``, raw (may identify).
        base_datetime: the record's start from the header's base date and time, naive local time,
            or None when the header has no base date.
        age_years: age from a ``# Age:`` comment, None when absent or not a number.
        sex: ``"M"``, ``"F"`` or None.
        dx_codes: SNOMED CT codes from ``#Dx:`` comments, as strings, in file order.
        meta: anything else: ``reader``, ``fmt``, ``adc_gain``, ``baseline``, ``units``,
            ``adc_limits_uv`` (per channel (low, high) physical value of the ADC's extreme
            codes, for saturation checks), ``adc_step_uv``, ``checksum_mismatch`` (channels
            whose WFDB checksum disagrees), ``dropped_channels``.
    """

    signal: np.ndarray
    fs_hz: float
    lead_names: list[str]
    record_name: str
    comments: list[str] = field(default_factory=list)
    base_datetime: dt.datetime | None = None
    age_years: float | None = None
    sex: str | None = None
    dx_codes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        """Samples per channel."""
        return int(self.signal.shape[1])

    @property
    def duration_s(self) -> float:
        """Record length in seconds."""
        return self.n_samples / self.fs_hz


# ---------------------------------------------------------------------------------------------
# Header parsing
# ---------------------------------------------------------------------------------------------

_RX_RECORD = re.compile(
    r"""
    [ \t]*(?P<record_name>[-\w]+)
          /?(?P<n_seg>\d*)
    [ \t]+(?P<n_sig>\d+)
    [ \t]*(?P<fs>\d*\.?\d*(?:e[+-]?\d+)?)
          /*(?P<counter_freq>-?\d*\.?\d*)
          \(?(?P<base_counter>-?\d*\.?\d*)\)?
    [ \t]*(?P<sig_len>\d*)
    [ \t]*(?P<base_time>\d{0,2}:?\d{0,2}:?\d{0,2}\.?\d{0,6})
    [ \t]*(?P<base_date>\d{0,2}/?\d{0,2}/?\d{0,4})
    [ \t]*$
    """,
    re.VERBOSE,
)

_RX_SIGNAL = re.compile(
    r"""
    [ \t]*(?P<file_name>~?[-\w]*\.?[\w]*)
    [ \t]+(?P<fmt>\d+)
          (?:x(?P<samps_per_frame>\d+))?
          (?::(?P<skew>\d+))?
          (?:\+(?P<byte_offset>\d+))?
    (?:[ \t]+(?P<adc_gain>-?\d*\.?\d*(?:[eE][+-]?\d+)?)
          (?:\((?P<baseline>-?\d+)\))?
          (?:/(?P<units>[^\s]*))?
    (?:[ \t]+(?P<adc_res>\d+)
    (?:[ \t]+(?P<adc_zero>-?\d+)
    (?:[ \t]+(?P<init_value>-?\d+)
    (?:[ \t]+(?P<checksum>-?\d+)
    (?:[ \t]+(?P<block_size>\d+)
    (?:[ \t]+(?P<sig_name>[^\t\n\r\f\v]*))?)?)?)?)?)?)?
    [ \t]*$
    """,
    re.VERBOSE,
)

# The common signal line, every field present (CinC, PTB-XL, most PhysioNet records): the same
# sub-patterns as _RX_SIGNAL, token by token, with every optional field required and no empty token
# (so separators are whole runs of blanks); one C-level match per line. Anything else falls back to
# _RX_SIGNAL (a property test checks they agree).
_RX_SIGNAL_FULL = re.compile(
    r"(~?[-\w]*\.?[\w]*)[ \t]+"
    r"(\d+)(?:x(\d+))?(?::(\d+))?(?:\+(\d+))?[ \t]+"
    r"(?=[^ \t])(-?\d*\.?\d*(?:[eE][+-]?\d+)?)(?:\((-?\d+)\))?(?:/([^\s]*))?[ \t]+"
    r"(\d+)[ \t]+(-?\d+)[ \t]+(-?\d+)[ \t]+(-?\d+)[ \t]+(\d+)[ \t]+"
    r"([^ \t\n\r\f\v][^\t\n\r\f\v]*)"
)


def _signal_fields_fast(line: str) -> tuple[str | None, ...] | None:
    """``_RX_SIGNAL.match(line).groups()`` for a line with all nine fields, else None."""
    m = _RX_SIGNAL_FULL.fullmatch(line)
    return None if m is None else m.groups()


_Template = tuple[tuple[Any, ...], str, bool]
_new_spec = tuple.__new__


@functools.lru_cache(maxsize=1024)
def _signal_template(fields: tuple[str | None, ...]) -> _Template | None:
    """A signal line's fields but file name, initial value and checksum, converted; None: bad gain.

    Records of one release share these (format, gain, units, resolution, lead name...), so
    each distinct combination is converted once. Returns ``(fmt..adc_zero values, name,
    gain written as 0)``.
    """
    (fmt, spf, skew, offset, gain_s, base_s, units, res, zero, _, name) = fields
    try:
        gain = float(gain_s) if gain_s else DEFAULT_GAIN
    except ValueError:
        return None
    zero_gain = gain == 0
    if zero_gain:
        gain = DEFAULT_GAIN  # WFDB header(5): "a gain of zero ... is taken to be 200"; as wfdb-python
    adc_zero = int(zero) if zero else 0
    head = (
        fmt,
        int(spf) if spf else 1,
        int(skew) if skew else 0,
        int(offset) if offset else None,
        gain,
        int(base_s) if base_s else adc_zero,
        units or DEFAULT_UNITS,
        int(res) if res else 0,
        adc_zero,
    )
    return head, (name or "").strip(), zero_gain


_RX_AGE = re.compile(r"^\s*age\s*:\s*(\S+)", re.IGNORECASE)
_RX_SEX = re.compile(r"^\s*sex\s*:\s*(\S+)", re.IGNORECASE)
_RX_DX = re.compile(r"^\s*dx\s*:\s*(.*)$", re.IGNORECASE)
_RX_CODE = re.compile(r"^\d{5,18}$")


class WfdbSignalSpec(NamedTuple):
    """One signal line of a WFDB header, with WFDB defaults filled in (immutable; a tuple, cheap to build)."""

    file_name: str
    fmt: str
    samps_per_frame: int
    skew: int
    byte_offset: int | None
    adc_gain: float
    baseline: int
    units: str
    adc_res: int
    adc_zero: int
    init_value: int | None
    checksum: int | None
    name: str


@dataclass(frozen=True)
class WfdbHeader:
    """A parsed single-segment WFDB header (multi-segment headers set ``n_seg``)."""

    record_name: str
    n_seg: int | None
    n_sig: int
    fs_hz: float
    sig_len: int | None
    base_time: dt.time | None
    base_date: dt.date | None
    signals: tuple[WfdbSignalSpec, ...]
    comments: tuple[str, ...]
    #: Signals whose header gain was written as 0 (read as 200 per WFDB; see ``zero_gain_leads``).
    zero_gain_signals: tuple[int, ...] = ()


def _header_error(detail: str, path: str | os.PathLike[str] | None) -> ItemError:
    return ItemError("unreadable_header", detail, path=None if path is None else str(path))


def _parse_time(text: str) -> dt.time:
    parts = text.split(":")
    seconds = float(parts[-1]) if parts[-1] else 0.0
    minutes = int(parts[-2]) if len(parts) >= 2 and parts[-2] else 0
    hours = int(parts[-3]) if len(parts) >= 3 and parts[-3] else 0
    whole = int(seconds)
    return dt.time(hours, minutes, whole, round((seconds - whole) * 1e6))


def _parse_date(text: str) -> dt.date:
    day, month, year = (int(p) for p in text.split("/"))
    return dt.date(year, month, day)


def parse_wfdb_header(text: str, path: str | os.PathLike[str] | None = None) -> WfdbHeader:
    """Parse the text of a WFDB header (``.hea``), filling WFDB's defaults.

    Args:
        text: the header's text.
        path: the header's path, only to name it in error messages.

    Returns:
        The record line's fields, one :class:`WfdbSignalSpec` per signal line (none for a
        multi-segment header) and the comment lines without their ``#``.

    Raises:
        ItemError: ``unreadable_header`` for a syntax error; ``header_mismatch`` when the
            record line's signal count disagrees with the signal lines.

    Examples:
        >>> h = parse_wfdb_header("r1 2 360 650000 10:12:13 20/05/1999\\n"
        ...                       "r1.dat 212 200(1024)/mV 11 1024 995 -22131 0 MLII\\n"
        ...                       "r1.dat 212 200(1024)/mV 11 1024 1011 20052 0 V5\\n# age: 69\\n")
        >>> h.fs_hz, h.sig_len, h.base_date, h.signals[0].baseline, h.signals[1].name, h.comments
        (360.0, 650000, datetime.date(1999, 5, 20), 1024, 'V5', ('age: 69',))
    """
    comments: list[str] = []
    lines: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped[0] == "#":
            body = stripped.lstrip("#").strip()
            if body:
                comments.append(body)
            continue
        lines.append(stripped)
    if not lines:
        raise _header_error("the header has no record line", path)
    rec = _RX_RECORD.match(lines[0])
    if rec is None:
        raise _header_error("the header's record line is not WFDB syntax", path)
    n_sig = int(rec["n_sig"])
    n_seg = int(rec["n_seg"]) if rec["n_seg"] else None
    try:
        fs_hz = float(rec["fs"]) if rec["fs"] else DEFAULT_FS_HZ
        base_time = _parse_time(rec["base_time"]) if rec["base_time"] else None
        base_date = _parse_date(rec["base_date"]) if rec["base_date"] else None
    except ValueError:
        raise _header_error("the header's record line has an invalid frequency, time or date", path) from None
    if not math.isfinite(fs_hz) or fs_hz <= 0:
        raise _header_error("the header's sampling frequency is not a positive number", path)
    sig_len = int(rec["sig_len"]) if rec["sig_len"] else None
    if n_seg is not None:
        return WfdbHeader(
            rec["record_name"], n_seg, n_sig, fs_hz, sig_len, base_time, base_date, (), tuple(comments)
        )
    signal_lines = lines[1:]
    if len(signal_lines) != n_sig:
        raise ItemError(
            "header_mismatch",
            f"the header's record line declares {n_sig} signals but {len(signal_lines)} signal lines follow",
            path=None if path is None else str(path),
        )
    signals = []
    zero_gain: list[int] = []
    for i, line in enumerate(signal_lines):
        fields = _signal_fields_fast(line)
        if fields is None:
            m = _RX_SIGNAL.match(line)
            if m is None:
                raise _header_error(f"signal line {i + 1} of the header is not WFDB syntax", path)
            fields = m.groups()
        init, checksum = fields[10], fields[11]
        template = _signal_template(fields[1:10] + fields[12:])
        if template is None:
            raise _header_error(f"signal line {i + 1} has an unreadable gain", path)
        head, tail, was_zero_gain = template
        if was_zero_gain:
            zero_gain.append(i)
        # tuple.__new__ on the finished values: the NamedTuple's own __new__ is a Python frame
        signals.append(
            _new_spec(
                WfdbSignalSpec,
                (fields[0], *head, int(init) if init else None, int(checksum) if checksum else None, tail),
            )
        )
    return WfdbHeader(
        rec["record_name"],
        None,
        n_sig,
        fs_hz,
        sig_len,
        base_time,
        base_date,
        tuple(signals),
        tuple(comments),
        zero_gain_signals=tuple(zero_gain),
    )


def _parse_demographics(comments: list[str] | tuple[str, ...]) -> tuple[float | None, str | None, list[str]]:
    """Age (years), sex ("M"/"F") and Dx codes from CinC-style comment lines."""
    age: float | None = None
    sex: str | None = None
    codes: list[str] = []
    for line in comments:
        if (m := _RX_AGE.match(line)) is not None:
            try:
                value = float(m[1])
            except ValueError:
                value = math.nan
            age = value if math.isfinite(value) and value >= 0 else None
        elif (m := _RX_SEX.match(line)) is not None:
            sex = normalise_sex(m[1])
        elif (m := _RX_DX.match(line)) is not None:
            codes.extend(c for c in (t.strip() for t in m[1].split(",")) if _RX_CODE.match(c))
    return age, sex, codes


def normalise_sex(value: str | None) -> str | None:
    """``"M"``, ``"F"`` or None from the spellings sources use.

    >>> normalise_sex("Female"), normalise_sex("m"), normalise_sex("Unknown"), normalise_sex(None)
    ('F', 'M', None, None)
    """
    if value is None:
        return None
    v = value.strip().lower()
    if v in ("m", "male", "man"):
        return "M"
    if v in ("f", "female", "woman"):
        return "F"
    return None


# ---------------------------------------------------------------------------------------------
# Signals
# ---------------------------------------------------------------------------------------------


def _unit_factor(units: str) -> float | None:
    return UNIT_TO_UV.get(units.strip().lower())


def _adc_code_range(spec: WfdbSignalSpec) -> tuple[int, int]:
    """Lowest and highest valid ADC codes of a signal (the invalid-sample code excluded)."""
    bits = spec.adc_res or BITS_PER_SAMPLE.get(spec.fmt, 16)
    if spec.fmt == "80":  # offset binary, stored as unsigned bytes but read back signed
        bits = spec.adc_res or 8
    lo = spec.adc_zero - 2 ** (bits - 1)
    hi = spec.adc_zero + 2 ** (bits - 1) - 1
    invalid = INVALID_SAMPLE.get(spec.fmt)
    if invalid is not None and lo <= invalid:
        lo = invalid + 1
    return lo, hi


def _expected_bytes(fmt: str, n_samples: int) -> int | None:
    """Bytes ``n_samples`` (all signals of one file, times length) take in ``fmt``, or None if unknown."""
    if fmt in ("310", "311"):
        return (n_samples // 3) * 4 + {0: 0, 1: 2, 2: 4}[n_samples % 3]
    if fmt == "212":
        return (n_samples * 3 + 1) // 2
    bits = BITS_PER_SAMPLE.get(fmt)
    return None if bits is None else n_samples * bits // 8


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    """A whole file's bytes with plain ``open``/``fstat``/``read`` system calls.

    A third of ``open(path, "rb").read()``'s cost per file here (no buffered-reader object);
    small files dominate a WFDB release (two per record).
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, os.fstat(fd).st_size)
        parts = [data]
        while chunk := os.read(fd, 1 << 20):  # to the end: a short read or a file that grew
            parts.append(chunk)
        return data if len(parts) == 1 else b"".join(parts)
    finally:
        os.close(fd)


def _read_mat_v4_int16(
    path: Path, byte_offset: int, n_sig: int, sig_len: int | None, shown: str
) -> np.ndarray:
    """Read a CinC MAT v4 file: one int16 matrix of (signals x samples), column-major.

    Returns:
        int16, shape (T, n_sig): frames in rows (the WFDB interleaved order).
    """
    data = _read_bytes(path)
    if len(data) < 20:
        raise ItemError("truncated_file", "the MAT file is shorter than its own header", path=shown)
    mtype, mrows, ncols, imagf, namlen = struct.unpack_from("<5i", data, 0)
    if mtype != _MAT_V4_INT16_LE or imagf != 0:
        raise ItemError(
            "header_mismatch",
            f"the MAT v4 matrix has type code {mtype} (imaginary flag {imagf}); "
            f"format 16 needs little-endian int16 (type {_MAT_V4_INT16_LE})",
            path=shown,
        )
    if 20 + namlen != byte_offset:
        raise ItemError(
            "header_mismatch",
            f"the header's byte offset {byte_offset} does not match the MAT v4 data start {20 + namlen}",
            path=shown,
        )
    if mrows != n_sig:
        raise ItemError(
            "header_mismatch",
            f"the header declares {n_sig} signals in the MAT file but its matrix has {mrows} rows",
            path=shown,
        )
    if sig_len is not None and ncols != sig_len:
        raise ItemError(
            "header_mismatch",
            f"the header declares {sig_len} samples per signal but the MAT matrix has {ncols} columns",
            path=shown,
        )
    need = byte_offset + 2 * mrows * ncols
    if len(data) < need:
        raise ItemError(
            "truncated_file",
            f"the MAT file holds {len(data)} bytes, {need} needed for {mrows} x {ncols} int16 samples",
            path=shown,
        )
    return np.frombuffer(data, dtype="<i2", count=mrows * ncols, offset=byte_offset).reshape(ncols, mrows)


def _read_fmt16(path: Path, byte_offset: int, n_sig: int, sig_len: int | None, shown: str) -> np.ndarray:
    """Read a format-16 ``.dat`` file: little-endian int16 frames. Returns int16 (T, n_sig)."""
    size = path.stat().st_size
    if sig_len is None:
        sig_len = max(size - byte_offset, 0) // (2 * n_sig)
    need = byte_offset + 2 * n_sig * sig_len
    if size < need:
        raise ItemError(
            "truncated_file",
            f"the signal file holds {size} bytes, {need} needed for {sig_len} samples of {n_sig} signals",
            path=shown,
        )
    with open(path, "rb") as f:
        f.seek(byte_offset)
        data = f.read(2 * n_sig * sig_len)
    return np.frombuffer(data, dtype="<i2").reshape(sig_len, n_sig)


def _physical_uv(
    digital: np.ndarray, specs: list[WfdbSignalSpec], invalid: list[int | None], shown: str
) -> np.ndarray:
    """ADC codes (C, T) → float µV (C, T): ``(adc - baseline) / gain * unit factor``; invalid → NaN.

    The result is float32 when every value is below 2**22 µV in magnitude (float32 then
    holds it to better than 0.25 µV: every real ECG), float64 otherwise (32-bit ADCs,
    odd gains), so values always match wfdb-python to well under 1 µV at half the memory.
    The gain is checked up front: a scale that is not finite, or that could carry the largest
    code of any WFDB format past float64's range, raises ``invalid_gain``.
    """
    digital = np.ascontiguousarray(digital)  # (C, T) rows contiguous: ~10x faster arithmetic
    baseline = np.array([s.baseline for s in specs], dtype=np.float64)
    scale = _check_gains(specs, shown)
    if digital.size:
        span = np.maximum(np.abs(digital.max(axis=1) - baseline), np.abs(digital.min(axis=1) - baseline))
        dtype = np.float32 if float((span * np.abs(scale)).max()) < 2.0**22 else np.float64
    else:
        dtype = np.float64
    out: np.ndarray = digital.astype(dtype)
    np.subtract(out, baseline.astype(dtype)[:, None], out=out)
    np.multiply(out, scale.astype(dtype)[:, None], out=out)
    for code in {c for c in invalid if c is not None}:
        rows = [i for i, c in enumerate(invalid) if c == code]
        hits = digital[rows] == code
        if hits.any():
            sub = out[rows]
            sub[hits] = np.nan
            out[rows] = sub
    return out


def _exact_uv(
    digital: np.ndarray, specs: list[WfdbSignalSpec], key: _ScaleKey, shown: str
) -> np.ndarray | None:
    """The ADC codes themselves when they already are whole µV, else None.

    True for every CinC 2020/2021 record (format 16, gain 1000/mV, baseline 0): the physical
    value ``(adc - 0) / 1000 * 1000`` is the code, so the int16 codes are returned as they are
    (rows contiguous) instead of a float copy that canonicalisation would round straight back.
    Not when a code is format 16's invalid-sample value (-32768): that sample must read as NaN.
    ``key`` is ``_scale_key(specs)``, made once per record by the caller.
    """
    if digital.dtype != np.int16 or not _unit_scales(key):
        _check_gains(specs, shown)  # an invalid gain is named as such on either path
        return None
    if digital.size and int(digital.min()) == INVALID_SAMPLE["16"]:
        return None
    return digital


_ScaleKey = tuple[tuple[Any, ...], ...]


def _scale_key(specs: list[WfdbSignalSpec]) -> _ScaleKey:
    """The fields that set each signal's ADC-to-µV mapping, as plain tuples: a cache key records share."""
    return tuple((s.fmt, s.adc_gain, s.baseline, s.units, s.adc_res, s.adc_zero) for s in specs)


def _key_specs(key: _ScaleKey) -> list[WfdbSignalSpec]:
    return [WfdbSignalSpec("", f, 1, 0, None, g, b, u, r, z, None, None, "") for f, g, b, u, r, z in key]


def _limits_uv(key: _ScaleKey) -> tuple[list[tuple[float, float]], list[float]]:
    limits, steps = _limits_uv_cached(key)
    return list(limits), list(steps)


@functools.lru_cache(maxsize=256)
def _limits_uv_cached(key: _ScaleKey) -> tuple[list[tuple[float, float]], list[float]]:
    limits = []
    steps = []
    for s in _key_specs(key):
        factor = _unit_factor(s.units) or 1.0
        lo, hi = _adc_code_range(s)
        a = (lo - s.baseline) / s.adc_gain * factor
        b = (hi - s.baseline) / s.adc_gain * factor
        limits.append((min(a, b), max(a, b)))
        steps.append(abs(factor / s.adc_gain))
    return limits, steps


def _checksum_mismatches(digital: np.ndarray, specs: list[WfdbSignalSpec]) -> list[str]:
    """Names of channels whose 16-bit WFDB checksum disagrees with the header."""
    if digital.dtype == np.int16:
        sums = np.add.reduce(digital, axis=1, dtype=np.int16)  # wraps modulo 2**16, as the checksum does
    else:
        sums = (digital.sum(axis=1, dtype=np.int64) + 32768) % 65536 - 32768
    return [
        s.name
        for s, c in zip(specs, sums.tolist(), strict=True)
        if s.checksum is not None and c != s.checksum
    ]


def _read_fast(header: WfdbHeader, directory: Path, shown: str) -> np.ndarray | None:
    """Format-16 records (``.dat`` or CinC ``.mat``) read with NumPy; None when not applicable."""
    sigs = header.signals
    if not all(s.fmt == "16" and s.samps_per_frame == 1 and s.skew == 0 for s in sigs):
        return None
    if any(s.file_name.startswith("~") for s in sigs):
        return None
    files: dict[str, list[int]] = {}
    for i, s in enumerate(sigs):
        files.setdefault(s.file_name, []).append(i)
    parts: list[tuple[list[int], np.ndarray]] = []
    for name, idx in files.items():
        path = directory / name
        offset = sigs[idx[0]].byte_offset or 0
        try:  # opening is the existence check (no separate stat per record)
            if name.lower().endswith(".mat"):
                frames = _read_mat_v4_int16(path, offset, len(idx), header.sig_len, str(path))
            else:
                frames = _read_fmt16(path, offset, len(idx), header.sig_len, str(path))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ItemError(
                "missing_signal_file", "a signal file named by the header is missing", path=str(path)
            ) from None
        parts.append((idx, frames))
    lengths = {frames.shape[0] for _, frames in parts}
    if len(lengths) != 1:
        raise ItemError("header_mismatch", "the record's signal files hold different lengths", path=shown)
    if len(parts) == 1:
        return parts[0][1].T
    out = np.empty((len(sigs), lengths.pop()), dtype=np.int16)
    for idx, frames in parts:
        out[idx] = frames.T
    return out


def _read_with_wfdb(header: WfdbHeader, header_path: Path, shown: str) -> tuple[np.ndarray, WfdbHeader]:
    """Any other WFDB record through ``wfdb.rdrecord``.

    Returns:
        (float64 (C, T) physical values in each channel's own units, NaN at invalid samples;
        the header rebuilt from what wfdb read).
    """
    import wfdb  # type: ignore[import-untyped]  # lazily: the fast path does not need it

    directory = header_path.parent
    if header.n_seg is None:
        # Check files and sizes first so that a short file is named as such, not as a decoder error.
        files: dict[str, list[WfdbSignalSpec]] = {}
        for s in header.signals:
            files.setdefault(s.file_name, []).append(s)
        for name, in_file in files.items():
            if name.startswith("~"):
                continue
            path = directory / name
            if not path.is_file():
                raise ItemError(
                    "missing_signal_file", "a signal file named by the header is missing", path=str(path)
                )
            if header.sig_len is None or any(s.fmt not in BITS_PER_SAMPLE for s in in_file):
                continue
            if len({s.fmt for s in in_file}) != 1:
                continue
            frame = sum(s.samps_per_frame for s in in_file)
            need = _expected_bytes(in_file[0].fmt, frame * header.sig_len)
            if need is not None:
                need += in_file[0].byte_offset or 0
                size = path.stat().st_size
                if size < need:
                    raise ItemError(
                        "truncated_file",
                        f"the signal file holds {size} bytes, {need} needed for the header's length",
                        path=str(path),
                    )
        _check_gains(list(header.signals), shown)
    try:
        # physical=True: wfdb's own conversion is exact per segment (its digital multi-segment
        # merge re-quantises); units, inf and NaN are handled by the caller.
        with np.errstate(all="ignore"):
            rec = wfdb.rdrecord(str(header_path.with_suffix("")), physical=True, return_res=64)
    except FileNotFoundError as exc:
        raise ItemError(
            "missing_signal_file",
            "a signal file named by the header is missing",
            path=str(exc.filename or shown),
        ) from None
    except Exception as exc:
        raise ItemError(
            "unreadable_file", f"the WFDB reader failed: {type(exc).__name__}", path=f"{shown} ({exc})"
        ) from None
    if rec.p_signal is None:
        raise ItemError("unreadable_file", "the WFDB reader returned no uniform signal", path=shown)
    physical = np.ascontiguousarray(np.asarray(rec.p_signal, dtype=np.float64).T)

    def field(name: str, i: int) -> Any:
        values = getattr(rec, name, None)
        return values[i] if isinstance(values, list | tuple) and i < len(values) else None

    # Rebuild the signal specs from what wfdb read (multi-segment records have none in our header).
    specs = tuple(
        WfdbSignalSpec(
            file_name=str(field("file_name", i) or ""),
            fmt=str(field("fmt", i) or ""),
            samps_per_frame=1,
            skew=0,
            byte_offset=None,
            adc_gain=float(field("adc_gain", i) or 0.0),  # 0.0: unknown (multi-segment)
            baseline=int(field("baseline", i) or 0),
            units=str(field("units", i) or DEFAULT_UNITS),
            adc_res=int(field("adc_res", i) or 0),
            adc_zero=int(field("adc_zero", i) or 0),
            init_value=None,
            checksum=None,  # wfdb smooths frames and skews: a checksum over its output is not the file's
            name=str(field("sig_name", i) or ""),
        )
        for i in range(physical.shape[0])
    )
    fs = float(rec.fs) if rec.fs else header.fs_hz
    merged = WfdbHeader(
        header.record_name, header.n_seg, len(specs), fs, physical.shape[1],
        header.base_time, header.base_date, specs, header.comments,
    )  # fmt: skip
    return physical, merged


def _check_gains(specs: list[WfdbSignalSpec], shown: str) -> np.ndarray:
    """Per-channel scale (µV per ADC code), float64 (C,), read-only; ``invalid_gain`` when one cannot be finite.

    A scale is rejected when it is not finite, zero, or could carry the largest code of any
    WFDB format past float64's range. Channels in unknown units are given scale 1 here (the
    caller drops or rejects them). Computed once per distinct set of signal lines.
    """
    scale = _scales(_scale_key(specs))
    if scale is None:
        raise ItemError("invalid_gain", "a signal's gain makes physical values non-finite", path=shown)
    return scale


@functools.lru_cache(maxsize=256)
def _unit_scales(key: _ScaleKey) -> bool:
    """True when every signal's codes are whole µV already: baseline 0 and 1 µV per code."""
    scale = _scales(key)
    return scale is not None and all(s[2] == 0 for s in key) and bool((scale == 1.0).all())


@functools.lru_cache(maxsize=256)
def _scales(key: _ScaleKey) -> np.ndarray | None:
    specs = _key_specs(key)
    baseline = np.array([s.baseline for s in specs], dtype=np.float64)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        scale = np.array([(_unit_factor(s.units) or 1.0) / s.adc_gain for s in specs], dtype=np.float64)
        reach = np.abs(scale) * (2.0**32 + np.abs(baseline))
    if not np.isfinite(reach).all() or (scale == 0).any() or (reach > 1e300).any():
        return None
    scale.flags.writeable = False  # shared by every record with the same signal lines
    return scale


def _usable_channels(specs: list[WfdbSignalSpec], shown: str) -> tuple[list[int], list[dict[str, str]]]:
    """Channels in volts (kept) and others (dropped); a standard lead not in volts is an error."""
    keep, dropped, bad = _channel_split(tuple((s.name, s.units) for s in specs))
    if bad is not None:
        raise ItemError(
            "unknown_units", f"ECG lead {bad[0].strip()!r} is in units {bad[1]!r}, not a voltage", path=shown
        )
    return list(keep), [{"name": name, "units": units} for name, units in dropped]


@functools.lru_cache(maxsize=256)
def _channel_split(
    channels: tuple[tuple[str, str], ...],
) -> tuple[tuple[int, ...], tuple[tuple[str, str], ...], tuple[str, str] | None]:
    """``(kept indexes, dropped (name, units), first standard lead not in volts or None)``, per name/unit set."""
    keep: list[int] = []
    dropped: list[tuple[str, str]] = []
    for i, (name, units) in enumerate(channels):
        if _unit_factor(units) is not None:
            keep.append(i)
        elif name.strip().lower() in _ECG_LEAD_KEYS:
            return (), (), (name, units)
        else:
            dropped.append((name, units))
    return tuple(keep), tuple(dropped), None


def read_wfdb_record(header_path: str | os.PathLike[str]) -> RawEcg:
    """Read a WFDB record (``.hea`` + ``.mat``/``.dat``) as physical values in µV.

    Args:
        header_path: the ``.hea`` file (the suffix may be left off).

    Returns:
        A :class:`RawEcg`: ``signal`` µV (C, T) (int16 when the codes are whole µV, else
        float32, float64 beyond 2**22 µV) in file
        order, NaN at samples the file marks invalid; demographics and Dx codes parsed from
        CinC-style comments.
        Channels that are not standard leads and whose units are not volts (a respiration
        or pressure channel) are dropped and listed in ``meta["dropped_channels"]``.

    Raises:
        ItemError: see the module docstring for the codes.
    """
    path = Path(header_path)
    if path.suffix != ".hea":
        path = path.with_name(path.name + ".hea")
    shown = str(path)
    try:
        text = _read_bytes(path).decode("utf-8")
    except FileNotFoundError:
        raise ItemError("unreadable_header", "the header file does not exist", path=shown) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ItemError(
            "unreadable_header", f"the header file cannot be read as text ({type(exc).__name__})", path=shown
        ) from None
    header = parse_wfdb_header(text, shown)

    digital = None if header.n_seg is not None else _read_fast(header, path.parent, shown)
    checksum_mismatch: list[str] = []
    if digital is not None:
        reader = "numpy_fmt16"
        specs = list(header.signals)
        digital = np.ascontiguousarray(digital)  # (C, T), rows contiguous for the sums and arithmetic
        keep, dropped = _usable_channels(specs, shown)
        if dropped:
            digital = digital[keep]
            specs = [specs[i] for i in keep]
        checksum_mismatch = _checksum_mismatches(digital, specs)
        key = _scale_key(specs)  # once per record: the caches below are keyed on it
        signal = _exact_uv(digital, specs, key, shown)
        if signal is None:
            signal = _physical_uv(digital, specs, [INVALID_SAMPLE.get(s.fmt) for s in specs], shown)
        limits, steps = _limits_uv(key)
    else:
        reader = "wfdb"
        physical, header = _read_with_wfdb(header, path, shown)
        specs = list(header.signals)
        keep, dropped = _usable_channels(specs, shown)
        specs = [specs[i] for i in keep]
        factor = np.array([_unit_factor(s.units) for s in specs], dtype=np.float64)[:, None]
        with np.errstate(over="ignore", invalid="ignore"):
            signal = physical[keep] * factor
        if np.isinf(signal).any():
            raise ItemError("invalid_gain", "a signal's gain makes physical values non-finite", path=shown)
        finite = signal[np.isfinite(signal)]
        if finite.size == 0 or float(np.abs(finite).max()) < 2.0**22:
            signal = signal.astype(np.float32)
        if all(s.adc_gain for s in specs):
            limits, steps = _limits_uv(_scale_key(specs))
        else:  # wfdb gave no ADC description (multi-segment): saturation at the ADC is not measured
            limits, steps = [], []
    age, sex, codes = _parse_demographics(header.comments)
    base = dt.datetime.combine(header.base_date, header.base_time or dt.time(0)) if header.base_date else None
    return RawEcg(
        signal=signal,
        fs_hz=header.fs_hz,
        lead_names=[s.name for s in specs],
        record_name=header.record_name,
        comments=list(header.comments),
        base_datetime=base,
        age_years=age,
        sex=sex,
        dx_codes=codes,
        meta={
            "reader": reader,
            "fmt": [s.fmt for s in specs],
            "adc_gain": [s.adc_gain for s in specs],
            "baseline": [s.baseline for s in specs],
            "units": [s.units for s in specs],
            "adc_limits_uv": limits,
            "adc_step_uv": steps,
            "checksum_mismatch": checksum_mismatch,
            "dropped_channels": dropped,
            "base_time": header.base_time.isoformat() if header.base_time else None,
            "zero_gain_leads": [header.signals[i].name for i in header.zero_gain_signals],
        },
    )


# ---------------------------------------------------------------------------------------------
# CPSC2018 original release
# ---------------------------------------------------------------------------------------------

#: CPSC2018's lead order (challenge description; checked on the samples: III = II - I exactly).
CPSC2018_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
CPSC2018_FS_HZ = 500.0


def read_cpsc2018_mat(mat_path: str | os.PathLike[str]) -> RawEcg:
    """Read an original CPSC2018 record (MATLAB 5 struct ``ECG`` with ``sex``, ``age``, ``data``).

    ``data`` is float64, 12 x N at 500 Hz, in **mV**: on the samples the QRS amplitudes are
    about 1-2 units and the CinC 2020 repackaging of the same records stores them as int16 with
    gain 1000/mV, so one unit here is 1 mV. Values are multiplied by 1000 to µV. The file holds
    no diagnoses (they are in the release's ``REFERENCE.csv``), so ``dx_codes`` is empty.

    Args:
        mat_path: the ``.mat`` file (e.g. ``A1980.mat``).

    Returns:
        A :class:`RawEcg` with ``signal`` float64 µV (12, N), ``fs_hz`` 500.

    Raises:
        ItemError: ``missing_signal_file`` when the file does not exist; ``unreadable_file``
            when it is not a MATLAB file holding the ``ECG`` struct with a 12-row ``data``.

    Examples:
        >>> raw = read_cpsc2018_mat("../shared/samples/ecg/cpsc2018/A1980.mat")
        >>> raw.signal.shape, raw.fs_hz, raw.sex, raw.age_years
        ((12, 5000), 500.0, 'M', 52.0)
    """
    import scipy.io  # type: ignore[import-untyped]

    path = Path(mat_path)
    shown = str(path)
    if not path.is_file():
        raise ItemError("missing_signal_file", "the MAT file does not exist", path=shown)
    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=True)
        ecg = mat["ECG"]
        data = np.asarray(ecg["data"].item(), dtype=np.float64)
        sex_raw = ecg["sex"].item() if "sex" in ecg.dtype.names else None
        age_raw = ecg["age"].item() if "age" in ecg.dtype.names else None
    except Exception as exc:
        raise ItemError(
            "unreadable_file",
            f"not a CPSC2018 MAT file with an ECG struct ({type(exc).__name__})",
            path=shown,
        ) from None
    if data.ndim != 2 or data.shape[0] != len(CPSC2018_LEADS):
        raise ItemError("header_mismatch", f"ECG.data has shape {data.shape}, expected (12, N)", path=shown)
    try:
        age = (
            float(np.asarray(age_raw).item())
            if age_raw is not None and np.asarray(age_raw).size == 1
            else None
        )
    except (TypeError, ValueError):
        age = None
    if age is not None and (not math.isfinite(age) or age < 0):
        age = None
    sex = normalise_sex(str(sex_raw)) if sex_raw is not None and np.asarray(sex_raw).size == 1 else None
    return RawEcg(
        signal=data * 1000.0,
        fs_hz=CPSC2018_FS_HZ,
        lead_names=list(CPSC2018_LEADS),
        record_name=path.stem,
        comments=[],
        base_datetime=None,
        age_years=age,
        sex=sex,
        dx_codes=[],
        meta={"reader": "cpsc2018_mat", "units": ["mV"] * 12},
    )
