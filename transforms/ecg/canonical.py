"""The canonical ECG: 12 standard leads, 500 Hz, int16 µV, fixed-length windows.

:func:`canonicalise` turns a :class:`~transforms.ecg.read.RawEcg` into one or more
:class:`EcgSample` windows:

1. **Leads.** Channels are matched to :data:`STANDARD_12` by name, ignoring case (``avr``,
   ``AVR``, ``aVR``); leads the record lacks become zero rows with ``lead_mask`` False. Other
   channels (Frank ``vx``/``vy``/``vz``, ``MLII``) are left out. A lead whose every sample is
   the same value was not recorded (some Ningbo records in CinC 2021, e.g. ``JS20004``, store
   V2, V4 and V6 as all zeros): it is treated as absent too, and named in ``constant_leads``,
   rather than quarantining the nine real leads beside it.
2. **Rate.** Any source rate is resampled to the spec's rate with
   ``scipy.signal.resample_poly`` (a Kaiser-windowed FIR anti-aliasing filter, zero phase),
   using the exact rational ratio of the two rates.
3. **Type.** Values are rounded to whole µV and clipped to ±32767 µV (±32.8 mV). -32768 is
   never written: WFDB reads it as "no sample". Clipped samples are counted per window;
   deciding whether that is too many is :mod:`~transforms.ecg.validate`'s job.
4. **Windows** (``window_policy="tile"``). Non-overlapping windows of ``window_s`` from t = 0.
   A trailing remainder of at least ``min_tail_s`` becomes one more window, zero-padded
   at the end; a shorter remainder is dropped, and its length is recorded in every window
   of the record as ``dropped_tail_s``. A record shorter than one window is therefore one
   zero-padded window if it lasts at least ``min_tail_s``, and an ``ItemError``
   (``record_too_short``) otherwise. ``valid_length`` says how many samples of each window
   are real. ``window_policy="first"`` keeps only the first window (CLIMB's own loaders use
   the first 10 s) and records the rest as dropped.

Why zero-pad instead of overlapping the last window with the one before: every sample
then appears exactly once in the output, so a record's windows never leak the same data
into two training examples, and padding is explicit (``valid_length``) rather than hidden.

Examples:
    >>> import numpy as np
    >>> from transforms.ecg.read import RawEcg
    >>> t = np.arange(27_000) / 500.0
    >>> raw = RawEcg(np.vstack([np.sin(2 * np.pi * t) * 1000.0] * 12), 500.0,
    ...              ["i", "ii", "iii", "avr", "avl", "avf"] + [f"v{i}" for i in range(1, 7)], "r1")
    >>> windows = canonicalise(raw, EcgSpec())
    >>> len(windows), windows[0].signal.shape, windows[0].signal.dtype, windows[-1].dropped_tail_s
    (5, (12, 5000), dtype('int16'), 4.0)
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from transforms.ecg.read import RawEcg
from transforms.problems import ItemError

__all__ = [
    "STANDARD_12",
    "EcgSample",
    "EcgSpec",
    "canonicalise",
    "lead_index",
    "resample_to_rate",
    "resolve_metadata",
]

STANDARD_12: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
"""The 12 standard leads in the canonical order."""

LEAD_SETS: dict[str, tuple[str, ...]] = {"standard_12": STANDARD_12}
"""Named lead sets a manifest's ``canonical.leads`` may use."""

WINDOW_POLICIES = ("tile", "first")

INT16_LIMIT_UV = 32767
"""Values are clipped to ±32767 µV; -32768 is WFDB's "invalid sample" code and is never written."""

MAX_RATIO_DENOMINATOR = 10_000
"""Largest up/down factor for resampling. Every rate given with up to one decimal (250, 257,
360, 499.7 Hz) gets its exact ratio; any other is replaced by the nearest ratio with factors
≤ 10000, a relative rate error below 1e-7 (under 1 ms of drift over a 3-hour recording).
The Kaiser filter then has about 20 x max(up, down) taps, which scipy applies polyphase."""


def lead_index(names: list[str] | tuple[str, ...], leads: tuple[str, ...] = STANDARD_12) -> list[int | None]:
    """For each lead of ``leads``, the index of the channel in ``names`` that carries it, or None.

    Matching ignores case and surrounding blanks; the first channel wins when two match.

    >>> lead_index(["v1", "AVR", "i", "vx"], ("I", "aVR", "V1", "V2"))
    [2, 1, 0, None]
    """
    return list(_lead_index(tuple(names), tuple(leads)))


@functools.lru_cache(maxsize=256)
def _lead_index(names: tuple[str, ...], leads: tuple[str, ...]) -> tuple[int | None, ...]:
    by_key: dict[str, int] = {}
    for i, name in enumerate(names):
        by_key.setdefault(name.strip().lower(), i)
    return tuple(by_key.get(lead.lower()) for lead in leads)


@functools.lru_cache(maxsize=256)
def _limit_arrays(
    limits: tuple[tuple[float, float], ...], steps: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """ADC limits (C, 2) and half-step tolerances (C,) as read-only arrays, per distinct ADC description."""
    bounds = np.asarray(limits, dtype=np.float64).reshape(len(limits), 2)
    tols = 0.5 * np.asarray(steps, dtype=np.float64)
    bounds.flags.writeable = tols.flags.writeable = False
    return bounds, tols


@dataclass(frozen=True)
class EcgSpec:
    """What a canonical ECG sample is. Frozen; round-trips through :meth:`to_dict`.

    Attributes:
        sampling_rate_hz: output rate, Hz.
        leads: output leads, in order; each a name of :data:`STANDARD_12`.
        window_s: window length, seconds; ``window_s * sampling_rate_hz`` must be whole.
        window_policy: ``"tile"`` (every window, see the module docstring) or ``"first"``.
        min_tail_s: shortest trailing remainder (and shortest record) kept as a padded window, s;
            None (the default) means half a window (5 s for 10 s windows).
        dtype: stored sample type; only ``"int16"``.
        units: stored units; only ``"uV"``.
        accept_zero_gain: read a header gain of 0 as WFDB's legacy default of 200 adu per unit.
            Off by default: no catalog ECG source writes 0 on purpose (the CinC sources use
            1000 adu/mV), so a 0 there is a damaged header, and reading it as 200 would scale
            the signal by 5 without a trace. Such records are quarantined (``invalid_gain``).

    Raises:
        ValueError: for any value outside these rules.
    """

    sampling_rate_hz: int = 500
    leads: tuple[str, ...] = STANDARD_12
    window_s: float = 10.0
    window_policy: str = "tile"
    min_tail_s: float | None = None
    dtype: str = "int16"
    units: str = "uV"
    accept_zero_gain: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.leads, list):
            object.__setattr__(self, "leads", tuple(self.leads))
        if isinstance(self.sampling_rate_hz, bool) or not isinstance(self.sampling_rate_hz, int):
            raise ValueError(f"sampling_rate_hz must be an int (Hz), got {self.sampling_rate_hz!r}")
        if not 1 <= self.sampling_rate_hz <= 100_000:
            raise ValueError(f"sampling_rate_hz must be in 1..100000 Hz, got {self.sampling_rate_hz}")
        if not self.leads:
            raise ValueError("leads must name at least one lead")
        unknown = [lead for lead in self.leads if lead not in STANDARD_12]
        if unknown:
            raise ValueError(f"unknown leads {unknown}; allowed: {list(STANDARD_12)}")
        if len(set(self.leads)) != len(self.leads):
            raise ValueError(f"leads must be unique, got {list(self.leads)}")
        if not (
            isinstance(self.window_s, int | float) and math.isfinite(self.window_s) and self.window_s > 0
        ):
            raise ValueError(f"window_s must be a positive number of seconds, got {self.window_s!r}")
        n = self.window_s * self.sampling_rate_hz
        if abs(n - round(n)) > 1e-9:
            raise ValueError(
                f"window_s * sampling_rate_hz must be a whole number of samples, got {self.window_s} * "
                f"{self.sampling_rate_hz} = {n}"
            )
        if self.min_tail_s is None:
            object.__setattr__(self, "min_tail_s", self.window_s / 2)
        if self.window_policy not in WINDOW_POLICIES:
            raise ValueError(
                f"window_policy must be one of {list(WINDOW_POLICIES)}, got {self.window_policy!r}"
            )
        if not (isinstance(self.min_tail_s, int | float) and 0 < self.min_tail_s <= self.window_s):
            raise ValueError(
                f"min_tail_s must be in (0, window_s={self.window_s}] seconds, got {self.min_tail_s!r}"
            )
        if self.dtype != "int16":
            raise ValueError(f"dtype must be 'int16', got {self.dtype!r}")
        if self.units != "uV":
            raise ValueError(f"units must be 'uV', got {self.units!r}")

    @property
    def window_samples(self) -> int:
        """Samples per window per lead."""
        return round(self.window_s * self.sampling_rate_hz)

    @property
    def min_tail_seconds(self) -> float:
        """``min_tail_s`` as resolved at construction (never None)."""
        return float(self.min_tail_s if self.min_tail_s is not None else self.window_s / 2)

    @property
    def min_tail_samples(self) -> int:
        """Samples a remainder needs to become a window."""
        return math.ceil(self.min_tail_seconds * self.sampling_rate_hz - 1e-9)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; :meth:`from_dict` inverts it.

        >>> EcgSpec.from_dict(EcgSpec(window_s=5).to_dict()) == EcgSpec(window_s=5)
        True
        """
        d = asdict(self)
        d["leads"] = list(self.leads)
        return {"name": "ecg", "configuration": d}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EcgSpec:
        """Build from :meth:`to_dict`'s output (or its bare ``configuration`` mapping)."""
        config = data.get("configuration", data) if data.get("name", "ecg") == "ecg" else None
        if config is None:
            raise ValueError(f"not an ECG spec: name {data.get('name')!r}")
        return cls(**{**config, "leads": tuple(config.get("leads", STANDARD_12))})

    @classmethod
    def from_manifest(cls, canonical: dict[str, Any]) -> EcgSpec:
        """Build from a source manifest's ``canonical:`` block.

        ``leads`` may be a named set (``standard_12``) or a list; ``window_s`` may be an int.

        >>> EcgSpec.from_manifest({"sampling_rate_hz": 500, "leads": "standard_12", "window_s": 10,
        ...                        "dtype": "int16", "units": "uV", "window_policy": "tile"}) == EcgSpec()
        True
        """
        known = {
            "sampling_rate_hz",
            "leads",
            "window_s",
            "window_policy",
            "min_tail_s",
            "dtype",
            "units",
            "accept_zero_gain",
        }
        extra = set(canonical) - known
        if extra:
            raise ValueError(
                f"unknown keys in the ECG canonical block: {sorted(extra)}; allowed: {sorted(known)}"
            )
        config = dict(canonical)
        leads = config.get("leads", STANDARD_12)
        if isinstance(leads, str):
            if leads not in LEAD_SETS:
                raise ValueError(f"unknown lead set {leads!r}; known: {sorted(LEAD_SETS)}")
            leads = LEAD_SETS[leads]
        config["leads"] = tuple(leads)
        for key in ("window_s", "min_tail_s"):
            if key in config and isinstance(config[key], int) and not isinstance(config[key], bool):
                config[key] = float(config[key])
        return cls(**config)

    def resolve_metadata(self) -> dict[str, dict[str, Any]]:
        """The arrays every sample carries: name → shape, dtype (and units)."""
        return resolve_metadata(self)


def resolve_metadata(spec: EcgSpec) -> dict[str, dict[str, Any]]:
    """Declare the output arrays of :func:`canonicalise` under ``spec`` (zarr ``resolve_metadata`` style).

    >>> resolve_metadata(EcgSpec())["signal"]
    {'shape': [12, 5000], 'dtype': 'int16', 'units': 'uV'}
    """
    n_leads = len(spec.leads)
    return {
        "signal": {"shape": [n_leads, spec.window_samples], "dtype": spec.dtype, "units": spec.units},
        "lead_mask": {"shape": [n_leads], "dtype": "bool"},
    }


@dataclass
class EcgSample:
    """One canonical window of one record.

    Attributes:
        signal: int16 µV, shape (len(spec.leads), window samples), leads in the spec's order
            (:data:`STANDARD_12` by default); rows of absent leads are zeros.
        lead_mask: bool, shape (len(spec.leads),): True where the record has the lead.
        fs_hz: sampling rate of ``signal``, Hz.
        window_index: 0-based position of this window in the record.
        n_windows: windows the record gave.
        window_start_s: start of the window from the record's start, s.
        record_duration_s: length of the whole record, s.
        source_fs_hz: the record's own sampling rate, Hz.
        valid_length: samples of ``signal`` that are data; the rest (to the end) are zero padding.
        dropped_tail_s: seconds at the record's end that no window holds (same in every window).
        clipped_samples: samples of this window clipped to ±32767 µV, all leads together.
        constant_leads: leads the file holds but with one value throughout, treated as absent.
        source_saturation: float32, shape like ``lead_mask``: fraction of this window's source
            samples at the source ADC's extreme codes (0 where the reader gave no ADC limits).
        age_years: patient age, None when unknown.
        sex: ``"M"``, ``"F"`` or None.
        dx_codes: SNOMED CT codes as strings.
        start_datetime: the window's start (record base date-time + ``window_start_s``), or None.
        record_name: the record's name (identifying; de-identification replaces it).
        comments: header comments (identifying; de-identification reduces them).
    """

    signal: np.ndarray
    lead_mask: np.ndarray
    fs_hz: float
    window_index: int
    n_windows: int
    window_start_s: float
    record_duration_s: float
    source_fs_hz: float
    valid_length: int
    dropped_tail_s: float = 0.0
    clipped_samples: int = 0
    constant_leads: tuple[str, ...] = ()
    source_saturation: np.ndarray | None = None
    age_years: float | None = None
    sex: str | None = None
    dx_codes: list[str] = field(default_factory=list)
    start_datetime: dt.datetime | None = None
    record_name: str = ""
    comments: list[str] = field(default_factory=list)

    def with_changes(self, **changes: Any) -> EcgSample:
        """A shallow copy with some fields replaced (as ``dataclasses.replace``, without re-running ``__init__``).

        Raises:
            TypeError: a name that is not a field.
        """
        unknown = changes.keys() - _ECG_SAMPLE_FIELDS
        if unknown:
            raise TypeError(f"EcgSample has no field(s) {sorted(unknown)}")
        clone = copy.copy(self)
        clone.__dict__.update(changes)
        return clone


_ECG_SAMPLE_FIELDS = frozenset(EcgSample.__dataclass_fields__)


@functools.lru_cache(maxsize=64)
def _resample_ratio(fs_in_hz: float, fs_out_hz: float) -> tuple[int, int]:
    ratio = (Fraction(str(float(fs_out_hz))) / Fraction(str(float(fs_in_hz)))).limit_denominator(
        MAX_RATIO_DENOMINATOR
    )
    return ratio.numerator, ratio.denominator


def resample_to_rate(signal: np.ndarray, fs_in_hz: float, fs_out_hz: float) -> np.ndarray:
    """Resample each row of ``signal`` from ``fs_in_hz`` to ``fs_out_hz``, anti-aliased.

    Uses ``scipy.signal.resample_poly`` with the rational ratio ``fs_out/fs_in`` reduced by
    ``fractions.Fraction.limit_denominator(10000)``: a polyphase FIR with a Kaiser window
    (beta 5) cut off at the lower of the two Nyquist frequencies, so content the new rate
    cannot hold is removed before decimation. The filter is centred (zero phase): waveforms
    stay aligned in time.

    Args:
        signal: float, shape (C, T), any units.
        fs_in_hz: source rate, Hz.
        fs_out_hz: target rate, Hz.

    Returns:
        float32 or float64 like ``signal`` (float64 for other inputs), shape (C, ceil(T * up / down));
        ``signal`` itself when the rates are equal and it is already float.

    Examples:
        >>> x = np.ones((1, 1000))
        >>> resample_to_rate(x, 1000, 500).shape, resample_to_rate(x, 360, 500).shape
        ((1, 500), (1, 1389))
    """
    if not (math.isfinite(fs_in_hz) and fs_in_hz > 0 and math.isfinite(fs_out_hz) and fs_out_hz > 0):
        raise ValueError(f"sampling rates must be positive, got {fs_in_hz} and {fs_out_hz} Hz")
    up, down = _resample_ratio(fs_in_hz, fs_out_hz)
    x = np.asarray(signal)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    if up == down:
        return x
    from scipy.signal import resample_poly  # type: ignore[import-untyped]

    return resample_poly(x, up, down, axis=-1)


def _saturation(
    raw: RawEcg,
    rows: list[int],
    lows: np.ndarray,
    highs: np.ndarray,
    n_out: int,
    starts: list[int],
    n_per_window: int,
) -> np.ndarray:
    """Per window, per used lead: fraction of source samples at the ADC limits. float32 (n_windows, leads).

    ``lows``/``highs`` are the used leads' extremes (µV): a lead that never comes within half
    an ADC step of its limits is skipped without touching its samples.
    """
    limits = raw.meta.get("adc_limits_uv")
    steps = raw.meta.get("adc_step_uv")
    out = np.zeros((len(starts), len(rows)), dtype=np.float32)
    if not limits or not steps:
        return out
    t_src = raw.n_samples
    ratio = t_src / n_out if n_out else 1.0
    all_bounds, all_tols = _limit_arrays(tuple(limits), tuple(steps))
    bounds, tols = all_bounds[rows], all_tols[rows]
    near = (lows <= bounds[:, 0] + tols) | (highs >= bounds[:, 1] - tols)
    if not near.any():
        return out
    for j in np.flatnonzero(near):  # only leads that come within half a step of a limit
        ch = rows[j]
        lo, hi = limits[ch]
        tol = 0.5 * steps[ch]
        x = raw.signal[ch]
        at = (x <= lo + tol) | (x >= hi - tol)
        if not at.any():
            continue
        csum = np.concatenate([[0], np.cumsum(at, dtype=np.int64)])
        for k, s in enumerate(starts):
            a = min(t_src, round(s * ratio))
            b = min(t_src, round((s + n_per_window) * ratio))
            if b > a:
                out[k, j] = (csum[b] - csum[a]) / (b - a)
    return out


def canonicalise(raw: RawEcg, spec: EcgSpec) -> list[EcgSample]:
    """Turn one record into canonical windows (see the module docstring for every rule).

    Args:
        raw: a record as read; ``raw.signal`` float µV (C, T).
        spec: the canonical spec.

    Returns:
        ``n_windows`` :class:`EcgSample` values, in time order, each with ``signal`` int16 µV
        (len(spec.leads), spec.window_samples).

    Raises:
        ItemError: ``no_leads`` when no channel is one of the spec's leads; ``non_finite``
            when a used lead holds NaN or infinity (invalid samples in the file, a bad gain);
            ``record_too_short`` when the record is shorter than ``spec.min_tail_s``; ``no_leads``
            also when every lead is constant.
    """
    index = lead_index(raw.lead_names, spec.leads)
    present = [i for i in index if i is not None]
    if not present:
        raise ItemError(
            "no_leads", f"none of the record's {len(raw.lead_names)} channels is a standard ECG lead"
        )
    if not math.isfinite(raw.fs_hz) or raw.fs_hz <= 0:
        raise ItemError("invalid_rate", f"the record's sampling rate {raw.fs_hz} Hz is not positive")
    used = raw.signal[present]
    if used.shape[1] == 0 or raw.duration_s < spec.min_tail_seconds - 0.5 / raw.fs_hz:
        raise ItemError(
            "record_too_short",
            f"the record lasts {raw.duration_s:.3f} s, shorter than the {spec.min_tail_s} s a window needs",
        )
    zero_gain = set(raw.meta.get("zero_gain_leads") or ())
    if zero_gain and not spec.accept_zero_gain:
        used_names = {raw.lead_names[i] for i in present}
        if zero_gain & used_names:
            raise ItemError(
                "invalid_gain",
                f"{len(zero_gain & used_names)} lead(s) have a header gain of 0 (WFDB would read 200 adu per "
                "unit, a silent rescaling); set accept_zero_gain to allow it",
            )
    exact = used.dtype.kind in "iu"  # whole µV codes as read (every CinC record): no rounding needed
    if not exact and not np.isfinite(used).all():
        n_bad = int(np.size(used) - np.count_nonzero(np.isfinite(used)))
        raise ItemError(
            "non_finite", f"{n_bad} samples of the used leads are NaN or infinite (invalid samples or gain)"
        )
    # A lead with one value throughout was not recorded: absent, and named (module docstring).
    constant_leads: tuple[str, ...] = ()
    highs, lows = used.max(axis=1), used.min(axis=1)
    flat = highs == lows
    if flat.any():
        dropped = {present[j] for j in np.flatnonzero(flat)}
        constant_leads = tuple(lead for lead, i in zip(spec.leads, index, strict=True) if i in dropped)
        index = [None if i in dropped else i for i in index]
        present = [i for i in index if i is not None]
        used, highs, lows = used[~flat], highs[~flat], lows[~flat]
        if not present:
            raise ItemError("no_leads", "every standard lead of the record holds one constant value")
    fs_out = spec.sampling_rate_hz
    if exact and raw.fs_hz != fs_out:
        # Resampling works in float: the same float32 values the float path would have read.
        used, exact = used.astype(np.float32), False
    resampled = used if exact else resample_to_rate(used, raw.fs_hz, fs_out)
    n_out = resampled.shape[1]
    w = spec.window_samples

    n_full = n_out // w
    tail = n_out - n_full * w
    starts = [k * w for k in range(n_full)]
    if tail and tail >= spec.min_tail_samples:
        starts.append(n_full * w)
    if spec.window_policy == "first":
        starts = starts[:1]
    if not starts:
        raise ItemError(
            "record_too_short",
            f"the record lasts {raw.duration_s:.3f} s, shorter than the {spec.min_tail_s} s a window needs",
        )
    covered = min(n_out, starts[-1] + w)
    dropped_tail_s = (n_out - covered) / fs_out

    # Round and clip in place, then place rows in the spec's lead order (absent leads stay 0).
    if resampled is used:  # same rate: ``used`` is already a private copy (fancy indexing)
        out_high, out_low = highs, lows
    else:
        out_high, out_low = resampled.max(axis=1), resampled.min(axis=1)
    if not exact:
        np.rint(resampled, out=resampled)
    limit = INT16_LIMIT_UV + 0.5
    over: np.ndarray | None = None
    if (out_high >= limit).any() or (out_low <= -limit).any():
        over = np.abs(resampled.astype(np.int64, copy=False) if exact else resampled) > INT16_LIMIT_UV
        np.clip(resampled, -INT16_LIMIT_UV, INT16_LIMIT_UV, out=resampled)
    rows_out = [k for k, i in enumerate(index) if i is not None]
    n_total = len(starts) * w
    if n_out == n_total and len(rows_out) == len(spec.leads):
        padded = resampled.astype(np.int16, copy=False)  # a private array: ``used`` was indexed
    else:
        padded = np.zeros((len(spec.leads), n_total), dtype=np.int16)
        n_copy = min(n_out, n_total)
        padded[rows_out, :n_copy] = resampled[:, :n_copy]
    lead_mask = np.array([i is not None for i in index], dtype=bool)
    saturation = _saturation(raw, present, lows, highs, n_out, starts, w)

    samples = []
    for k, start in enumerate(starts):
        valid = min(w, n_out - start)
        sat = np.zeros(len(spec.leads), dtype=np.float32)
        sat[rows_out] = saturation[k]
        samples.append(
            EcgSample(
                signal=padded if len(starts) == 1 else padded[:, start : start + w].copy(),
                lead_mask=lead_mask.copy(),
                fs_hz=float(fs_out),
                window_index=k,
                n_windows=len(starts),
                window_start_s=start / fs_out,
                record_duration_s=raw.duration_s,
                source_fs_hz=float(raw.fs_hz),
                valid_length=valid,
                dropped_tail_s=dropped_tail_s,
                clipped_samples=0 if over is None else int(np.count_nonzero(over[:, start : start + valid])),
                constant_leads=constant_leads,
                source_saturation=sat,
                age_years=raw.age_years,
                sex=raw.sex,
                dx_codes=list(raw.dx_codes),
                start_datetime=(
                    raw.base_datetime + dt.timedelta(seconds=start / fs_out) if raw.base_datetime else None
                ),
                record_name=raw.record_name,
                comments=list(raw.comments),
            )
        )
    return samples
