"""The demo's release generators: the vectorised ECGSYN against neurokit2's, the phantoms are
pictures (not noise), and the mirror layout the demo serves matches what the fetchers expect."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import find_peaks

from pipelines.demo.ecg_release import STANDARD_12, ecgsyn_12lead
from pipelines.demo.imaging import chest_phantom, mammo_phantom
from pipelines.demo.releases import DEMO_SOURCES, ECG_SOURCES, SPEC, _balanced_groups, sizes_for


def _mean_beat(ecg: np.ndarray, fs: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """The average beat (0.3 s before to 0.6 s after each lead-I R peak) and the RR intervals (s)."""
    peaks, _ = find_peaks(ecg[0], distance=int(0.4 * fs), height=0.6)
    before, after = int(0.3 * fs), int(0.6 * fs)
    beats = [ecg[:, p - before : p + after] for p in peaks if p >= before and p + after <= ecg.shape[1]]
    return np.mean(beats, axis=0), np.diff(peaks) / fs


@pytest.mark.parametrize("heart_rate", [60, 95])
def test_vectorised_ecgsyn_matches_neurokit2_multileads(heart_rate):
    import neurokit2 as nk

    ours = ecgsyn_12lead(10, heart_rate, np.random.default_rng(0))
    theirs = (
        nk.ecg_simulate(
            duration=10,
            sampling_rate=500,
            method="multileads",
            heart_rate=heart_rate,
            noise=0,
            random_state=1,
        )[list(STANDARD_12)]
        .to_numpy()
        .T
    )
    assert ours.shape == theirs.shape == (12, 5000) and ours.dtype == np.float32
    beat_ours, rr_ours = _mean_beat(ours)
    beat_theirs, rr_theirs = _mean_beat(theirs)
    assert abs(60 / rr_ours.mean() - heart_rate) < 0.05 * heart_rate
    assert abs(rr_ours.mean() - rr_theirs.mean()) < 0.03
    for lead in range(12):  # the same P-QRS-T shape in every lead
        r = np.corrcoef(beat_ours[lead], beat_theirs[lead])[0, 1]
        assert r > 0.95, (STANDARD_12[lead], r)
    assert ours.min() >= -0.41 and ours.max() <= 1.21  # scaled to -0.4..1.2 mV as neurokit2 does


def test_phantoms_are_pictures_not_noise():
    rng = np.random.default_rng(0)
    chest = chest_phantom(256, 224, rng).astype(float)
    # structure, with a little detector noise: neighbours differ by a fraction of the image's
    # spread (white noise: about 1.1 times it)
    assert np.abs(np.diff(chest, axis=1)).mean() < 0.2 * chest.std()
    lungs = chest[100:160, [60, 164]].mean()
    assert chest[100:160, 112].mean() > lungs + 400  # spine brighter than the lungs
    mammo = mammo_phantom(256, 200, rng, side="R", view="MLO").astype(float)
    assert mammo[:, :20].mean() > 5 * mammo[:, -20:].mean()  # breast at the chest wall, air beyond
    left = mammo_phantom(256, 200, np.random.default_rng(1), side="L", view="CC").astype(float)
    assert left[:, -20:].mean() > 5 * left[:, :20].mean()  # mirrored for the left breast


def test_every_source_has_a_size_and_a_generation_group():
    sizes = sizes_for(60)
    assert all(sizes[s] >= 1 for s in sizes)
    groups = _balanced_groups(DEMO_SOURCES, 2)
    assert sorted(s for g in groups for s in g) == sorted(DEMO_SOURCES)
    assert set(groups[0]) == set(ECG_SOURCES)
    assert {SPEC[s].host for s in DEMO_SOURCES} == {"physionet", "s3", "kaggle", "tcia", "manual"}
