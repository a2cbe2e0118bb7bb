"""Weighted multi-source mixing: deterministic, worker/rank invariant, resumable, each source exactly once per cycle."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from manifests import open_dataset
from manifests.mixing import MIX_SOURCE_KEY, MixedStream
from manifests.stream import StreamLoader
from tests.manifests.test_writer import make_samples, write_and_publish


@pytest.fixture(scope="module")
def views(tmp_path_factory: pytest.TempPathFactory):
    """Two datasets of different shapes: 'ecg' (3x40, 30 samples) and 'img' (8x8 uint8 as int16, 13 samples)."""
    root = tmp_path_factory.mktemp("mix")
    a = make_samples(30, "train", prefix="a", signal_shape=(3, 40))
    b = make_samples(13, "train", prefix="b", seed=9, ragged=False, signal_shape=(8, 8))
    write_and_publish(str(root / "a"), {("train", 0): a[:11], ("train", 1): a[11:]})
    write_and_publish(str(root / "b"), {("train", 0): b[:6], ("train", 1): b[6:]})
    return (
        open_dataset(str(root / "a")).split("train").select(["signal", "sample_id"]),
        open_dataset(str(root / "b")).split("train").select(["signal", "sample_id"]),
        {s.sample_id for s in a},
        {s.sample_id for s in b},
    )


def _run(mix) -> list[tuple[int, list[str]]]:
    return [(int(b[MIX_SOURCE_KEY]), list(b["sample_id"])) for b in mix]


def test_mixture_is_deterministic_weighted_and_each_batch_is_one_source(views) -> None:
    va, vb, ids_a, ids_b = views
    mix = MixedStream([(va, 3.0), (vb, 1.0)], 2, seed=5, num_batches=400)
    first, again = _run(mix), _run(MixedStream([(va, 3.0), (vb, 1.0)], 2, seed=5, num_batches=400))
    assert first == again
    assert first != _run(MixedStream([(va, 3.0), (vb, 1.0)], 2, seed=6, num_batches=400))
    counts = Counter(s for s, _ in first)
    assert counts[0] + counts[1] == 400
    assert 0.68 < counts[0] / 400 < 0.82  # 3:1 weights, binomial sd ~2.2 %
    for s, ids in first:
        assert set(ids) <= (ids_a if s == 0 else ids_b)


def test_each_source_is_seen_exactly_once_per_cycle(views) -> None:
    va, vb, ids_a, ids_b = views
    batches = _run(MixedStream([(va, 1.0), (vb, 1.0)], 3, seed=1, num_batches=60))
    for s, ids, per_cycle in ((0, ids_a, 10), (1, ids_b, 5)):  # ceil(30/3), ceil(13/3)
        mine = [b for src, b in batches if src == s]
        assert len(mine) >= 2 * per_cycle
        for c in range(2):
            cycle = [i for b in mine[c * per_cycle : (c + 1) * per_cycle] for i in b]
            assert sorted(cycle) == sorted(ids)
        assert mine[:per_cycle] != mine[per_cycle : 2 * per_cycle]  # a new shuffle each cycle


def test_mixture_same_for_workers_and_ranks_and_resumes_exactly(views) -> None:
    va, vb, _, _ = views
    sources = [(va, 2.0), (vb, 1.0)]
    one = _run(MixedStream(sources, 4, seed=3, epoch=1))
    two_ranks = [_run(MixedStream(sources, 2, seed=3, epoch=1, rank=r, world_size=2)) for r in range(2)]
    assert [(s0, a + b) for (s0, a), (_, b) in zip(*two_ranks, strict=True)] == one
    loader = StreamLoader(MixedStream(sources, 4, seed=3, epoch=1), num_workers=2)
    got = [(int(b[MIX_SOURCE_KEY]), list(b["sample_id"])) for b in itertools.islice(iter(loader), 4)]
    state = loader.state_dict()
    resumed = StreamLoader(MixedStream(sources, 4, seed=0, epoch=0), num_workers=2)
    resumed.load_state_dict(state)
    rest = [(int(b[MIX_SOURCE_KEY]), list(b["sample_id"])) for b in resumed]
    assert got + rest == one
    shapes = {tuple(b["signal"].shape[1:]) for b in loader.dataset.stream}
    assert shapes == {(3, 40), (8, 8)}


def test_bad_weights_are_refused(views) -> None:
    va, vb, _, _ = views
    with pytest.raises(ValueError, match=r"weights must be finite and > 0, got \[1.0, 0.0\]"):
        MixedStream([(va, 1.0), (vb, 0.0)], 4)
    with pytest.raises(ValueError, match="at least one source"):
        MixedStream([], 4)
    with pytest.raises(ValueError, match="no batch"):
        MixedStream([(va, 1.0)], 64, drop_last=True)
    assert np.isclose(MixedStream([(va, 1.0), (vb, 3.0)], 4).weights.sum(), 1.0)


def test_mixture_and_single_stream_share_one_definition_of_the_options(views) -> None:
    import dataclasses

    from manifests.stream import StreamConfig

    va, vb, _, _ = views
    with pytest.raises(TypeError, match="unexpected keyword argument 'shufle'"):
        MixedStream([(va, 1.0)], 4, shufle=False)
    with pytest.raises(TypeError, match="unexpected keyword argument 'shufle'"):
        va.numpy_batches(4, shufle=False)
    with pytest.raises(ValueError, match="rank must be an int in"):
        MixedStream([(va, 1.0)], 4, rank=2, world_size=2)
    options = {
        "shuffle": False,
        "seed": 4,
        "epoch": 2,
        "rank": 1,
        "world_size": 2,
        "drop_last": True,
        "lanes": 1,
        "block_shards": 2,
        "prefetch_shards": 3,
        "decode_threads": 1,
        "fetch_threads": 3,
        "start_batch": 1,
    }
    assert set(options) == {f.name for f in dataclasses.fields(StreamConfig)} - {"batch_size", "extra"}
    mix = MixedStream([(va, 1.0), (vb, 1.0)], 2, **options)
    for stream in mix.streams:  # every option reaches every source; the start is the mixture's
        assert stream.config == StreamConfig(batch_size=2, **{**options, "start_batch": 0})
    assert (mix.config.seed, mix.config.epoch, mix.config.start_batch) == (4, 2, 1)
