"""Write small ECG releases laid out exactly like the PhysioNet/CinC 2021 re-packaging.

Used by the demo's embedded mirror, the end-to-end tests and the build benchmark, on
machines that have no real data. Records are written by the real libraries: the header
by ``wfdb`` (``Record.wrheader``), the signal as a MAT v4 ``val`` matrix by
``scipy.io.savemat(format="4")`` — byte for byte the CinC layout (``<rec>.mat 16x1+24``).

Content is physiological, not noise: a bank of 12-lead ECGs from the ECGSYN dynamical model
with neurokit2's 12-lead parameters (:func:`ecgsyn_12lead`, vectorised) at several heart
rates, from which each record takes a template, a time shift, an amplitude and a little noise. Headers carry
realistic identifiers on purpose (recording date and time, ages over 89, a patient name and
MRN line) so de-identification has something to remove; :func:`planted_identifiers` lists
them for the tests that grep the output bytes.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import wfdb

STANDARD_12 = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
FS_HZ = 500
GAIN_ADU_PER_MV = 1000.0

#: source id -> (CinC 2021 folder under training/, record prefix, number width)
CINC_LAYOUT = {
    "ptbxl": ("ptb-xl", "HR", 5),
    "chapman_shaoxing": ("chapman_shaoxing", "JS", 5),
    "georgia": ("georgia", "E", 5),
    "cpsc2018": ("cpsc_2018", "A", 4),
}

#: A few scored CinC diagnoses (SNOMED CT) with rough frequencies.
DX_CHOICES = (
    ("426783006", 0.40),  # sinus rhythm
    ("164889003", 0.12),  # atrial fibrillation
    ("59118001", 0.08),  # right bundle branch block
    ("164909002", 0.05),  # left bundle branch block
    ("270492004", 0.07),  # 1st degree AV block
    ("164865005", 0.06),  # myocardial infarction
    ("164934002", 0.08),  # T wave abnormal
    ("164873001", 0.06),  # left ventricular hypertrophy
    ("427084000", 0.08),  # sinus tachycardia
)

FIRST_NAMES = ("Maria", "Jonas", "Aiko", "Pedro", "Fatima", "Henrik", "Lucia", "Omar")
LAST_NAMES = ("Schneider", "Okafor", "Tanaka", "Alvarez", "Haddad", "Lindqvist", "Rossi", "Novak")


#: ECGSYN (McSharry et al., IEEE TBME 2003; PhysioNet ``ecgsyn``): angles (degrees), heights and
#: widths of the P, Q, R, S and T Gaussians on the limit cycle.
ECGSYN_TI_DEG = (-70.0, -15.0, 0.0, 15.0, 100.0)
ECGSYN_AI = (1.2, -5.0, 30.0, -7.5, 0.75)
ECGSYN_BI = (0.25, 0.1, 0.1, 0.1, 0.4)
#: Per-lead gains of the five waves (P, Q, R, S, T) for I, II, III, aVR, aVL, aVF, V1-V6: the
#: table neurokit2's ``ecg_simulate(method="multileads")`` uses (neurokit2 #625).
LEAD_GAMMA = np.array(
    [
        [1, 0.1, 1, 1.2, 1],
        [2, 0.2, 0.2, 0.2, 3],
        [1, -0.1, -0.8, -1.1, 2.5],
        [-1, -0.05, -0.8, -0.5, -1.2],
        [0.05, 0.05, 1, 1, 1],
        [1, -0.05, -0.1, -0.1, 3],
        [-0.5, 0.05, 0.2, 0.5, 1],
        [0.05, 0.05, 1.3, 2.5, 2],
        [1, 0.05, 1, 2, 1],
        [1.2, 0.05, 1, 2, 2],
        [1.5, 0.1, 0.8, 1, 2],
        [1.8, 0.05, 0.5, 0.1, 2],
    ]
)


def ecgsyn_12lead(
    duration_s: float,
    heart_rate: float,
    rng: np.random.Generator,
    *,
    fs: int = FS_HZ,
    oversample: int = 4,
    hr_std: float = 1.0,
) -> np.ndarray:
    """A 12-lead ECG from the ECGSYN dynamical model, vectorised: float32 mV, (12, duration_s * fs).

    ECGSYN moves a point round a unit limit cycle at the angular speed 2π/RR(t) and drives the
    signal by ``dz/dt = -Σ aᵢ Δθᵢ exp(-Δθᵢ² / 2bᵢ²) - (z - z₀(t))`` (z₀: 0.25 Hz respiration).
    On the limit cycle the phase is the integral of the speed, so θ(t) is a cumulative sum, and
    the z equation is linear with unit time constant: solved exactly per sample (zero-order hold,
    an IIR filter) at ``oversample`` × ``fs``. Wave extrema scale with heart rate as in ECGSYN;
    RR(t) carries Mayer-wave (0.1 Hz) and respiratory (0.25 Hz) variability with LF/HF 0.5.
    Each lead uses :data:`LEAD_GAMMA` and is scaled to -0.4..1.2 mV, as neurokit2 does; the
    output matches ``neurokit2.ecg_simulate(method="multileads")`` beat for beat in shape at a
    small fraction of its cost (it integrates the ODE with Python callbacks, ~1 s per lead).
    """
    from scipy.signal import lfilter

    fs_int = fs * oversample
    n_int = round(duration_s * fs_int) + fs_int  # one extra second, dropped (transient)
    t = np.arange(n_int) / fs_int
    rr_mean = 60.0 / heart_rate
    rr_sd = rr_mean * hr_std / heart_rate
    phases = rng.uniform(0, 2 * np.pi, 2)
    lf, hf = np.sqrt(0.5 / 1.5), np.sqrt(1.0 / 1.5)  # LF/HF power ratio 0.5
    rr = rr_mean + rr_sd * np.sqrt(2) * (
        lf * np.sin(2 * np.pi * 0.1 * t + phases[0]) + hf * np.sin(2 * np.pi * 0.25 * t + phases[1])
    )
    theta = np.cumsum(2 * np.pi / rr) / fs_int + rng.uniform(-np.pi, np.pi)
    hrfact = np.sqrt(heart_rate / 60.0)
    ti = np.deg2rad(ECGSYN_TI_DEG) * np.array([np.sqrt(hrfact), hrfact, 1, hrfact, np.sqrt(hrfact)])
    bi = hrfact * np.asarray(ECGSYN_BI)
    dti = theta[None, :] - ti[:, None]
    dti = dti - np.round(dti / (2 * np.pi)) * 2 * np.pi  # wrapped to (-π, π]
    waves = dti * np.exp(-0.5 * (dti / bi[:, None]) ** 2)  # (5, n_int)
    drive = -(LEAD_GAMMA * np.asarray(ECGSYN_AI)) @ waves  # (12, n_int)
    drive += 0.005 * np.sin(2 * np.pi * 0.25 * t)  # z0: respiratory baseline
    decay = np.exp(-1.0 / fs_int)
    z = lfilter([1 - decay], [1, -decay], drive, axis=1)
    z = z[:, fs_int::oversample][:, : round(duration_s * fs)]
    lo, hi = z.min(axis=1, keepdims=True), z.max(axis=1, keepdims=True)
    return ((z - lo) * 1.6 / np.where(hi > lo, hi - lo, 1.0) - 0.4).astype(np.float32)


def simulate_templates(n: int = 6, seed: int = 7, duration_s: int = 20) -> np.ndarray:
    """A bank of simulated 12-lead ECGs: float32 mV, shape (n, 12, duration_s * 500 Hz), at
    heart rates 55-110 bpm (:func:`ecgsyn_12lead`; a few milliseconds each, nothing cached)."""
    rng = np.random.default_rng(seed)
    traces = [ecgsyn_12lead(duration_s, float(rng.integers(55, 110)), rng) for _ in range(n)]
    return np.stack(traces)


def _continuous_trace(template: np.ndarray, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """``n_samples`` of a template without a seam: a window inside it when it is long enough,
    else copies joined with a 0.2 s linear cross-fade (no step at the joins)."""
    length = template.shape[1]
    if n_samples <= length:
        start = int(rng.integers(0, length - n_samples + 1))
        return template[:, start : start + n_samples]
    fade = FS_HZ // 5
    ramp = np.linspace(0.0, 1.0, fade, dtype=template.dtype)
    out = template.copy()
    while out.shape[1] < n_samples:
        joined = out[:, -fade:] * (1 - ramp) + template[:, :fade] * ramp
        out = np.concatenate([out[:, :-fade], joined, template[:, fade:]], axis=1)
    start = int(rng.integers(0, out.shape[1] - n_samples + 1))
    return out[:, start : start + n_samples]


@dataclass(frozen=True)
class PlantedRecord:
    """What a synthetic record's header says that must not reach an output."""

    record: str
    patient_name: str
    mrn: str
    recorded: dt.datetime
    age: int


def write_cinc_record(
    folder: Path,
    record: str,
    signal_mv: np.ndarray,
    *,
    age: int,
    sex: str,
    dx_codes: list[str],
    recorded: dt.datetime,
    extra_comments: tuple[str, ...] | list[str] = (),
    via_wfdb: bool = True,
) -> Path:
    """Write one CinC-format record (``<record>.hea`` + MAT v4 ``<record>.mat``).

    Args:
        folder: destination folder (created).
        record: record name, e.g. ``"HR00001"``.
        signal_mv: float mV, shape (12, T), leads in STANDARD_12 order, 500 Hz.
        age, sex, dx_codes: header comments (``# Age:``, ``# Sex:``, ``# Dx:``).
        recorded: base date and time written on the header's record line.
        extra_comments: more header comment lines (identifiers planted for de-id tests).
        via_wfdb: write the header with ``wfdb.Record.wrheader`` (about 0.1 s a record, pandas
            look-ups inside). ``False`` formats the same text directly, for bulk releases
            (benchmarks); a test checks both give identical bytes.

    Returns:
        The header path.
    """
    folder.mkdir(parents=True, exist_ok=True)
    adc = np.clip(np.round(signal_mv * GAIN_ADU_PER_MV), -32768, 32767).astype(np.int16)
    n_sig, sig_len = adc.shape
    comments = [
        f"Age: {age}",
        f"Sex: {sex}",
        f"Dx: {','.join(dx_codes)}",
        "Rx: Unknown",
        "Hx: Unknown",
        "Sx: Unknown",
        *extra_comments,
    ]
    scipy.io.savemat(str(folder / f"{record}.mat"), {"val": adc}, format="4")
    if not via_wfdb:
        (folder / f"{record}.hea").write_text(_format_header(record, adc, recorded, comments))
        return folder / f"{record}.hea"
    rec = wfdb.Record(
        record_name=record,
        n_sig=n_sig,
        fs=FS_HZ,
        sig_len=sig_len,
        file_name=[f"{record}.mat"] * n_sig,
        fmt=["16"] * n_sig,
        samps_per_frame=[1] * n_sig,
        byte_offset=[24] * n_sig,
        adc_gain=[GAIN_ADU_PER_MV] * n_sig,
        baseline=[0] * n_sig,
        units=["mV"] * n_sig,
        adc_res=[16] * n_sig,
        adc_zero=[0] * n_sig,
        block_size=[0] * n_sig,
        init_value=[int(v) for v in adc[:, 0]],
        checksum=[int(v) for v in adc.astype(np.int64).sum(axis=1) % 65536],
        sig_name=list(STANDARD_12),
        base_date=recorded.date(),
        base_time=recorded.time().replace(microsecond=0),
        comments=comments,
    )
    rec.wrheader(write_dir=str(folder))
    return folder / f"{record}.hea"


def _format_header(record: str, adc: np.ndarray, recorded: dt.datetime, comments: list[str]) -> str:
    """The header text ``wfdb.Record.wrheader`` writes for a CinC record (format 16, MAT v4 +24)."""
    n_sig, sig_len = adc.shape
    lines = [f"{record} {n_sig} {FS_HZ} {sig_len} {recorded:%H:%M:%S} {recorded:%d/%m/%Y}"]
    checksums = adc.astype(np.int64).sum(axis=1) % 65536
    for lead, first, checksum in zip(STANDARD_12, adc[:, 0], checksums, strict=True):
        lines.append(
            f"{record}.mat 16x1+24 {GAIN_ADU_PER_MV}(0)/mV 16 0 {int(first)} {int(checksum)} 0 {lead}"
        )
    lines.extend(f"# {c}" for c in comments)
    return "\n".join(lines) + "\n"


def write_cinc_release(
    root: str | os.PathLike[str],
    source: str,
    n_records: int,
    *,
    seed: int = 0,
    start_number: int = 1,
    durations_s: tuple[float, float] = (10.0, 10.0),
    plant_identifiers: bool = True,
    via_wfdb: bool = True,
) -> list[PlantedRecord]:
    """Write ``n_records`` records of one ECG source under ``root/training/<folder>/gN/``.

    Args:
        root: the release root (what ``--raw-dir`` points at).
        source: one of :data:`CINC_LAYOUT` (``ptbxl``, ``chapman_shaoxing``, ``georgia``, ``cpsc2018``).
        n_records: how many records.
        seed: RNG seed (same seed, same bytes).
        start_number: first record number.
        durations_s: (min, max) record length in seconds; CPSC2018 records run 6-60 s.
        plant_identifiers: add name/MRN comment lines and ages over 89 for de-id tests.
        via_wfdb: see :func:`write_cinc_record`.

    Returns:
        What each record's header plants (for output-byte searches).
    """
    folder_name, prefix, width = CINC_LAYOUT[source]
    bank = simulate_templates()
    rng = np.random.default_rng(seed)
    codes = [c for c, _ in DX_CHOICES]
    weights = np.array([w for _, w in DX_CHOICES])
    weights = weights / weights.sum()
    planted: list[PlantedRecord] = []
    base = dt.datetime(2014, 1, 1, 8, 0, 0)
    for i in range(n_records):
        number = start_number + i
        record = f"{prefix}{number:0{width}d}"
        group = f"g{(number - 1) // 1000 + 1}"
        duration = float(rng.uniform(*durations_s)) if durations_s[0] != durations_s[1] else durations_s[0]
        n_samples = round(duration * FS_HZ)
        template = bank[rng.integers(len(bank))]
        signal = _continuous_trace(template, n_samples, rng) * rng.uniform(0.7, 1.3)
        signal = signal + rng.normal(0.0, 0.01, size=signal.shape)
        age = int(rng.choice([int(rng.integers(18, 89)), int(rng.integers(90, 101))], p=[0.8, 0.2]))
        sex = str(rng.choice(["Male", "Female"]))
        n_dx = int(rng.integers(1, 3))
        dx = sorted(set(rng.choice(codes, size=n_dx, p=weights).tolist()))
        recorded = base + dt.timedelta(days=int(rng.integers(0, 3000)), seconds=int(rng.integers(0, 86400)))
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        mrn = f"MRN{rng.integers(10**7, 10**8)}"
        extra = (
            [f"Patient: {name}", f"MRN: {mrn}", f"Recorded: {recorded:%Y-%m-%d %H:%M}"]
            if plant_identifiers
            else []
        )
        write_cinc_record(
            Path(root) / "training" / folder_name / group,
            record,
            signal.astype(np.float64),
            age=age,
            sex=sex,
            dx_codes=dx,
            recorded=recorded,
            extra_comments=extra,
            via_wfdb=via_wfdb,
        )
        planted.append(PlantedRecord(record=record, patient_name=name, mrn=mrn, recorded=recorded, age=age))
    return planted
