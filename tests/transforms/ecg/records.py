"""Test fixtures: where the real ECG samples are, and writers for synthetic records.

Synthetic records are written by the real libraries: ``wfdb.wrsamp`` for native WFDB
(``.hea`` + ``.dat``), ``scipy.io.savemat(format="4")`` for the MAT v4 ``val`` matrix of the
CinC packaging (the CinC ``.hea`` beside it is plain text in the challenge's layout), and
``scipy.io.savemat`` (MAT 5 struct) for the original CPSC2018 layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from tests.conftest import SAMPLES

ECG = SAMPLES / "ecg"
CINC_HEADERS = sorted((ECG / "cinc2021").glob("*.hea"))
CPSC_MATS = sorted((ECG / "cpsc2018").glob("*.mat"))
WFDB_HEADERS = [ECG / "wfdb" / "s0010_re.hea", ECG / "wfdb" / "binformats.hea"]

LEADS_12 = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def wfdb_checksum(row: np.ndarray) -> int:
    """WFDB's 16-bit signed checksum of one signal's ADC codes."""
    return int((int(np.asarray(row, dtype=np.int64).sum()) + 32768) % 65536 - 32768)


def write_cinc_record(
    directory: Path,
    name: str,
    digital: np.ndarray,
    *,
    fs_hz: float = 500,
    gain: float | str = 1000.0,
    baseline: int = 0,
    units: str = "mV",
    lead_names: list[str] | None = None,
    comments: list[str] | None = None,
    sig_len: int | None = None,
) -> Path:
    """Write a CinC-style record: ``<name>.mat`` (MAT v4, int16 ``val``, C x T) and ``<name>.hea``.

    Args:
        digital: int16 ADC codes, shape (C, T).
        gain: written as is into the header (a string allows exotic spellings such as ``1e-320``).
        sig_len: the length the header claims (default: the true length).

    Returns:
        the header path.
    """
    digital = np.asarray(digital, dtype=np.int16)
    n_sig, n = digital.shape
    names = lead_names or LEADS_12[:n_sig]
    scipy.io.savemat(directory / f"{name}.mat", {"val": digital}, format="4")
    lines = [f"{name} {n_sig} {fs_hz:g} {n if sig_len is None else sig_len}"]
    for ch in range(n_sig):
        lines.append(
            f"{name}.mat 16x1+24 {gain}({baseline})/{units} 16 0 {int(digital[ch, 0])} "
            f"{wfdb_checksum(digital[ch])} 0 {names[ch]}"
        )
    lines += [f"# {c}" for c in (comments or ["Age: 50", "Sex: Male", "Dx: 426783006", "Rx: Unknown"])]
    header = directory / f"{name}.hea"
    header.write_text("\n".join(lines) + "\n")
    return header


def write_cpsc2018_mat(path: Path, data_mv: np.ndarray, *, sex: str = "Male", age: int = 60) -> Path:
    """Write an original-CPSC2018-style MAT 5 file: struct ``ECG`` with ``sex``, ``age``, ``data`` (mV)."""
    ecg = {
        "sex": np.array([sex]),
        "age": np.array([[age]], dtype=np.uint8),
        "data": np.asarray(data_mv, dtype=np.float64),
    }
    scipy.io.savemat(path, {"ECG": ecg}, format="5")
    return path


def sine_leads(
    n_samples: int, fs_hz: float, *, freq_hz: float = 1.3, amplitude: float = 1.0, n_leads: int = 12
) -> np.ndarray:
    """float64 (n_leads, n_samples): lead k is ``amplitude * (k + 1) / n_leads * sin(2π f t + k/3)``."""
    t = np.arange(n_samples) / fs_hz
    return np.vstack(
        [amplitude * (k + 1) / n_leads * np.sin(2 * np.pi * freq_hz * t + k / 3.0) for k in range(n_leads)]
    )
