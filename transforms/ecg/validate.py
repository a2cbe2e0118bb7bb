"""Check a canonical ECG window before it is written; problems, not exceptions.

:func:`validate` returns one :class:`~transforms.problems.Problem` per failed check (an
empty list means the sample may be published). It never raises on bad data, so a broken
sample becomes a quarantine row rather than a crashed build. Details name leads and
numbers, never records or paths.

==================  ================================================================
code                when
==================  ================================================================
``wrong_shape``     ``signal`` is not (len(spec.leads), window samples), or
                    ``lead_mask`` is not (len(spec.leads),) bool
``wrong_dtype``     ``signal`` is not int16
``wrong_rate``      ``fs_hz`` is not the spec's rate
``non_finite``      a float ``signal`` holds NaN or infinity
``bad_window``      ``valid_length`` outside 1..window samples, or padding not zero
``no_leads``        ``lead_mask`` has no True entry
``flat_lead``       a present lead has (almost) no variation
``saturated_lead``  a present lead sits at the int16 rails or the source ADC limits
                    for too much of the window
``unknown_label``   a diagnosis code outside the CinC SNOMED CT tables
==================  ================================================================
"""

from __future__ import annotations

import numpy as np

from transforms.ecg.canonical import EcgSample, EcgSpec
from transforms.ecg.labels import load_dx_table
from transforms.problems import Problem

__all__ = ["FLAT_STD_UV", "RAIL_UV", "SATURATED_FRACTION", "validate"]

FLAT_STD_UV = 5.0
"""A present lead whose standard deviation over its valid samples is below this (µV) is flat.
Real ECG leads vary by hundreds of µV (a QRS complex is ≥ 100 µV even in low-voltage
records) while ADC steps are 1-5 µV, so 5 µV separates a disconnected or zero-filled lead from
any recorded one with a wide margin."""

RAIL_UV = 32767
"""The int16 rails canonicalisation clips to (µV)."""

SATURATED_FRACTION = 0.05
"""A present lead with more than this fraction of its valid samples at the rails (or at the
source ADC's extreme codes) is saturated: isolated samples at the limit are pacing spikes or
artefacts a model can live with, but half a second pinned at the limit (5 % of 10 s) means
the waveform there is lost."""


def _lead_name(spec: EcgSpec, i: int) -> str:
    return spec.leads[i] if i < len(spec.leads) else f"#{i}"


def validate(sample: EcgSample, spec: EcgSpec) -> list[Problem]:
    """All problems of one canonical window; ``[]`` when it is valid.

    Args:
        sample: the window, usually after de-identification.
        spec: the spec it should satisfy.

    Returns:
        Problems in check order: structure first (shape, dtype, rate, finiteness, window),
        then leads (none present, flat, saturated), then labels. Content checks are skipped
        when the structure is wrong, because they would only repeat it.

    Examples:
        >>> import numpy as np
        >>> spec = EcgSpec()
        >>> t = np.arange(5000) / 500.0
        >>> good = (np.sin(2 * np.pi * 1.2 * t) * 800).astype(np.int16)
        >>> s = EcgSample(np.vstack([good] * 12), np.ones(12, bool), 500.0, 0, 1, 0.0, 10.0, 500.0, 5000)
        >>> validate(s, spec)
        []
        >>> s.signal[3] = 0
        >>> [(p.code, p.detail) for p in validate(s, spec)]
        [('flat_lead', 'lead aVR is flat: standard deviation 0.00 µV < 5 µV')]
    """
    problems: list[Problem] = []
    n_leads, n_samples = len(spec.leads), spec.window_samples
    signal = sample.signal
    mask = sample.lead_mask
    if not isinstance(signal, np.ndarray) or signal.shape != (n_leads, n_samples):
        shape = getattr(signal, "shape", None)
        problems.append(Problem("wrong_shape", f"signal has shape {shape}, expected {(n_leads, n_samples)}"))
    if not isinstance(mask, np.ndarray) or mask.shape != (n_leads,) or mask.dtype != np.bool_:
        problems.append(
            Problem(
                "wrong_shape",
                f"lead_mask has shape {getattr(mask, 'shape', None)} and dtype {getattr(mask, 'dtype', None)}, "
                f"expected ({n_leads},) bool",
            )
        )
    if isinstance(signal, np.ndarray) and signal.dtype != np.int16:
        problems.append(Problem("wrong_dtype", f"signal has dtype {signal.dtype}, expected int16"))
        if signal.dtype.kind in "fc" and not np.isfinite(signal).all():
            problems.append(Problem("non_finite", "signal holds NaN or infinite values"))
    if sample.fs_hz != spec.sampling_rate_hz:
        problems.append(Problem("wrong_rate", f"fs_hz is {sample.fs_hz}, expected {spec.sampling_rate_hz}"))
    if problems:
        return problems

    valid = sample.valid_length
    if not 1 <= valid <= n_samples:
        return [Problem("bad_window", f"valid_length {valid} is outside 1..{n_samples}")]
    if valid < n_samples and np.any(signal[:, valid:]):
        problems.append(Problem("bad_window", f"padding after sample {valid} is not zero"))
    all_present = bool(mask.all())
    if not all_present:
        if not mask.any():
            problems.append(Problem("no_leads", "no standard lead is present"))
        if np.any(signal[~mask]):
            problems.append(Problem("bad_window", "a lead marked absent holds non-zero samples"))

    data = signal[:, :valid]
    present = np.arange(n_leads) if all_present else np.flatnonzero(mask)
    if present.size:
        leads = data if all_present else data[present]  # a view when every lead is present
        highs, lows = leads.max(axis=1), leads.min(axis=1)
        problems.extend(_flat_leads(spec, leads, present, highs, lows))
        problems.extend(_saturated_leads(spec, sample, leads, present, highs, lows))

    table = load_dx_table()
    unknown = sorted({str(c) for c in sample.dx_codes if str(c) not in table})
    if unknown:
        problems.append(
            Problem(
                "unknown_label", f"diagnosis codes outside the CinC SNOMED CT tables: {', '.join(unknown)}"
            )
        )
    return problems


def _lead_std_uv(leads: np.ndarray, highs: np.ndarray, lows: np.ndarray) -> np.ndarray:
    """Standard deviation of each row of ``leads`` (µV), float64; exact enough for :data:`FLAT_STD_UV`.

    ``std <= (max - min) / 2``, so rows whose half-range is already below the threshold are
    answered by it; the others are centred on their mean and summed in float32 (one copy,
    BLAS matrix-vector products for the sums: relative error ~1e-4, ample for a 5 µV threshold).
    """
    std_uv = (highs.astype(np.float64) - lows) / 2.0
    wide = std_uv >= FLAT_STD_UV
    if wide.any():
        rows = leads if wide.all() else leads[wide]
        x = rows.astype(np.float32)
        n = x.shape[1]
        ones = np.ones(n, dtype=np.float32)
        x -= (x @ ones)[:, None] / np.float32(n)
        np.multiply(x, x, out=x)
        std_uv[wide] = np.sqrt((x @ ones).astype(np.float64) / n)
    return std_uv


def _flat_leads(
    spec: EcgSpec, leads: np.ndarray, present: np.ndarray, highs: np.ndarray, lows: np.ndarray
) -> list[Problem]:
    std_uv = _lead_std_uv(leads, highs, lows)
    return [
        Problem(
            "flat_lead",
            f"lead {_lead_name(spec, int(present[j]))} is flat: standard deviation {std_uv[j]:.2f} µV < {FLAT_STD_UV:g} µV",
        )
        for j in np.flatnonzero(std_uv < FLAT_STD_UV)
    ]


def _saturated_leads(
    spec: EcgSpec,
    sample: EcgSample,
    leads: np.ndarray,
    present: np.ndarray,
    highs: np.ndarray,
    lows: np.ndarray,
) -> list[Problem]:
    """Leads at the int16 rails or the source ADC limits for more than :data:`SATURATED_FRACTION`."""
    source = sample.source_saturation
    has_source = isinstance(source, np.ndarray) and source.shape == (len(spec.leads),)
    at_source_all = source[present].astype(np.float64) if has_source else np.zeros(present.size)  # type: ignore[index]
    at_rails = (highs >= RAIL_UV) | (lows <= -RAIL_UV)
    suspects = at_rails | (at_source_all > SATURATED_FRACTION)
    if not suspects.any():
        return []
    problems = []
    # Only leads touching the rails or flagged at the source ADC can be saturated: look at those.
    for j in np.flatnonzero(suspects):
        i = present[j]
        rails = float((np.abs(leads[j].astype(np.int32)) >= RAIL_UV).mean()) if at_rails[j] else 0.0
        at_source = float(at_source_all[j])
        fraction = max(rails, at_source)
        if fraction > SATURATED_FRACTION:
            where = "the int16 rails" if rails >= at_source else "the source ADC limits"
            problems.append(
                Problem(
                    "saturated_lead",
                    f"lead {_lead_name(spec, int(i))} is saturated: {fraction:.1%} of samples at {where} "
                    f"(> {SATURATED_FRACTION:.0%})",
                )
            )
    return problems
