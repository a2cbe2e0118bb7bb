"""Synthetic corpora for the streaming benchmarks: ECG-like int16 signals and grey images.

Deterministic per index (seeded by ``(corpus, index)``), with the statistics that matter to
compression: ECG is smooth (heart-beat template + baseline wander) with a few µV of noise, as
real 500 Hz recordings are; images are chest-radiograph-like (:func:`make_image`: torso, lungs,
ribs, spine, tissue texture, brightness-dependent sensor noise), so JPEG and lossless codecs behave
as they do on X-rays. Every reader in the benchmark reads the same arrays (each format is written
from the same ``make_*`` calls). Nothing here comes from a real patient.
"""

from __future__ import annotations

import numpy as np

ECG_SHAPE = (12, 5000)  # leads × samples: 10 s at 500 Hz, int16 µV
IMAGE_SHAPE = (512, 512)  # uint8 grey


def make_ecg(index: int) -> np.ndarray:
    """One synthetic 12-lead ECG: int16 µV, shape (12, 5000)."""
    rng = np.random.default_rng([1, index])
    fs_hz = 500.0
    t = np.arange(ECG_SHAPE[1]) / fs_hz
    rate_hz = rng.uniform(0.9, 1.6)
    phase = (t * rate_hz + rng.uniform()) % 1.0
    qrs = np.exp(-(((phase - 0.3) / 0.012) ** 2)) * 1000.0
    p_wave = np.exp(-(((phase - 0.15) / 0.03) ** 2)) * 120.0
    t_wave = np.exp(-(((phase - 0.55) / 0.06) ** 2)) * 300.0
    beat = qrs + p_wave + t_wave
    gains = rng.uniform(-1.2, 1.2, size=(12, 1))
    wander = 80.0 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 6.3, size=(12, 1)))
    noise = rng.normal(0.0, 6.0, size=ECG_SHAPE)
    return np.clip(gains * beat + wander + noise, -32768, 32767).astype(np.int16)


#: Version of the generators: part of a built corpus's identity (a change forces a rebuild).
CORPUS_VERSION = 2


def _smooth_field(rng: np.random.Generator, h: int, w: int, grid: int = 12) -> np.ndarray:
    """A smooth random field (bilinear upsampling of a ``grid × grid`` Gaussian lattice)."""
    small = rng.standard_normal((grid + 1, grid + 1)).astype(np.float32)
    yi = np.linspace(0, grid, h, dtype=np.float32)
    xi = np.linspace(0, grid, w, dtype=np.float32)
    y0 = np.minimum(yi.astype(np.int64), grid - 1)
    x0 = np.minimum(xi.astype(np.int64), grid - 1)
    fy = (yi - y0)[:, None]
    fx = (xi - x0)[None, :]
    a, b = small[y0][:, x0], small[y0][:, x0 + 1]
    c, d = small[y0 + 1][:, x0], small[y0 + 1][:, x0 + 1]
    return a * (1 - fy) * (1 - fx) + b * (1 - fy) * fx + c * fy * (1 - fx) + d * fy * fx


def _soft(d: np.ndarray, width: float) -> np.ndarray:
    """A soft step (0 → 1 across ``d = 0`` over about ``width``): blurred organ edges."""
    return np.float32(0.5) + np.float32(0.5) * np.tanh(d / np.float32(2 * width))


def make_image(index: int) -> np.ndarray:
    """One synthetic chest-radiograph-like grey image: uint8, shape (512, 512).

    A PA chest film in cartoon: dark air around a soft-edged torso, two darker lung fields, curved
    bright ribs over the lungs, a bright spine/mediastinum band, low-frequency tissue texture, and
    quantum (sensor) noise whose standard deviation grows with brightness (≈ 1–3 grey levels).
    Positions, sizes and contrasts vary per image. JPEG at quality 90 stores it in ~31 KB (real
    512 × 512 chest films: 25–45 KB); lossless codecs get about 2× (JPEG-LS 2.3×), as on real
    8-bit radiographs, where the noise in the low bits is what cannot be compressed.
    """
    rng = np.random.default_rng([2, index])
    h, w = IMAGE_SHAPE
    f32 = np.float32
    y = (np.arange(h, dtype=np.float32) / f32(h))[:, None]
    x = (np.arange(w, dtype=np.float32) / f32(w))[None, :]
    cx = f32(0.5 + rng.uniform(-0.04, 0.04))
    cy = f32(0.55 + rng.uniform(-0.04, 0.04))
    # torso: a soft ellipse of tissue on dark air
    bx, by = f32(rng.uniform(0.40, 0.47)), f32(rng.uniform(0.55, 0.65))
    body = _soft(1 - np.sqrt(((x - cx) / bx) ** 2 + ((y - cy) / by) ** 2), 0.02)
    img = f32(18) + f32(rng.uniform(95, 125)) * body
    # lungs: two darker ellipses either side of the mediastinum
    lungs = np.zeros((h, w), np.float32)
    for side in (-1, 1):
        lx = cx + f32(side * rng.uniform(0.17, 0.21))
        ly = cy - f32(rng.uniform(0.02, 0.08))
        rx, ry = f32(rng.uniform(0.12, 0.16)), f32(rng.uniform(0.26, 0.32))
        lungs = np.maximum(lungs, _soft(1 - np.sqrt(((x - lx) / rx) ** 2 + ((y - ly) / ry) ** 2), 0.05))
    img -= f32(rng.uniform(45, 65)) * lungs
    # ribs: curved bright bands over the lungs
    period, curv = f32(rng.uniform(0.065, 0.085)), f32(rng.uniform(1.2, 2.0))
    ribs = np.maximum(0, np.cos(f32(2 * np.pi) * (y + curv * (x - cx) ** 2) / period)) ** 2
    img += f32(rng.uniform(18, 30)) * ribs * lungs
    # spine / mediastinum: a bright vertical band
    img += f32(rng.uniform(40, 60)) * np.exp(-(((x - cx) / f32(rng.uniform(0.05, 0.08))) ** 2)) * body
    # soft-tissue and bone texture
    img += f32(6) * _smooth_field(rng, h, w) * body
    # quantum noise, stronger where more photons pass (brighter here)
    img += rng.standard_normal(size=IMAGE_SHAPE, dtype=np.float32) * (f32(0.8) + f32(0.012) * img)
    return np.clip(img, 0, 255).astype(np.uint8)
