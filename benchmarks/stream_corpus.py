"""Synthetic corpora for the streaming benchmarks: ECG-like int16 signals and grey images.

Deterministic per index (seeded by ``(corpus, index)``), with the statistics that matter to
compression: ECG is smooth (heart-beat template + baseline wander) with a few µV of noise, as
real 500 Hz recordings are; images are smooth anatomy-like shapes with sensor noise, so JPEG and
zstd behave as they do on X-rays. Nothing here comes from a real patient.
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


def make_image(index: int) -> np.ndarray:
    """One synthetic grey image: uint8, shape (512, 512)."""
    rng = np.random.default_rng([2, index])
    h, w = IMAGE_SHAPE
    y = (np.arange(h, dtype=np.float32) / np.float32(h))[:, None]
    x = (np.arange(w, dtype=np.float32) / np.float32(w))[None, :]
    img = 40.0 + 60.0 * y + 20.0 * x
    for _ in range(6):
        cy, cx = rng.uniform(0.1, 0.9, size=2)
        ry, rx = rng.uniform(0.05, 0.3, size=2)
        # separable Gaussian blob: outer product of two 1-D profiles
        img = img + np.float32(rng.uniform(30, 90)) * (
            np.exp(-(((y - cy) / ry) ** 2)) * np.exp(-(((x - cx) / rx) ** 2))
        )
    img = img + rng.standard_normal(size=IMAGE_SHAPE, dtype=np.float32) * np.float32(3.0)
    return np.clip(img, 0, 255).astype(np.uint8)
