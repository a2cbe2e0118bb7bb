"""Fixtures shared by the streaming tests (``test_stream.py``, ``test_ring.py``)."""

from __future__ import annotations

import pytest

from tests.manifests.test_writer import make_samples, write_and_publish

#: Uneven shards: 61 samples in 6 shards of 3..17 samples.
SHARD_SIZES = (9, 17, 3, 12, 5, 15)


@pytest.fixture(scope="module")
def stream_built(tmp_path_factory: pytest.TempPathFactory):
    """A published dataset of :data:`SHARD_SIZES` shards (2 × 16 int16 signals, masks, ragged
    events, row columns): ``(url, {sample_id: Sample})``."""
    url = str(tmp_path_factory.mktemp("stream") / "ds")
    samples = make_samples(sum(SHARD_SIZES), "train", signal_shape=(2, 16))
    shards, start = {}, 0
    for k, n in enumerate(SHARD_SIZES):
        shards[("train", k)] = samples[start : start + n]
        start += n
    write_and_publish(url, shards)
    return url, {s.sample_id: s for s in samples}
