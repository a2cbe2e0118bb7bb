"""The streaming path: global order, elastic determinism, exactly-once, exact resume, torch workers."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from manifests import open_dataset
from manifests.stream import StreamLoader, numpy_batches, plan_epoch
from tests.manifests.conftest import SHARD_SIZES
from tests.manifests.test_writer import make_samples, write_and_publish


def _ids(batches) -> list[list[str]]:
    return [list(b["sample_id"]) for b in batches]


@pytest.mark.parametrize("lanes", [1, 3, 16])
@pytest.mark.parametrize("drop_last", [False, True])
def test_plan_covers_every_sample_once_and_ranks_get_equal_batch_counts(lanes: int, drop_last: bool) -> None:
    offsets = [np.arange(n) for n in SHARD_SIZES]
    plan = plan_epoch(offsets, global_batch_size=8, seed=3, epoch=1, lanes=lanes, drop_last=drop_last)
    codes = plan.codes.tolist()
    assert len(codes) == len(set(codes))
    everything = {(k << 32) | o for k, n in enumerate(SHARD_SIZES) for o in range(n)}
    if drop_last:
        assert len(codes) == (sum(SHARD_SIZES) // 8) * 8 and set(codes) <= everything
    else:
        assert set(codes) == everything
    for world in (1, 2, 4, 8):
        per_rank = [[plan.rank_batch(g, r, world) for g in range(plan.num_batches)] for r in range(world)]
        assert len({len(b) for b in per_rank}) == 1  # equal batch counts: no rank hangs
        union = np.concatenate([c for batches in per_rank for c in batches]).tolist()
        assert sorted(union) == sorted(codes)
        for g in range(plan.num_batches):  # a global batch is the same samples for every world size
            assert (
                np.concatenate([per_rank[r][g] for r in range(world)]).tolist()
                == codes[plan.bounds[g] : plan.bounds[g + 1]]
            )


def test_plan_depends_on_seed_and_epoch_only() -> None:
    offsets = [np.arange(n) for n in SHARD_SIZES]
    a = plan_epoch(offsets, global_batch_size=4, seed=1, epoch=0)
    assert np.array_equal(a.codes, plan_epoch(offsets, global_batch_size=4, seed=1, epoch=0).codes)
    assert not np.array_equal(a.codes, plan_epoch(offsets, global_batch_size=4, seed=1, epoch=1).codes)
    assert not np.array_equal(a.codes, plan_epoch(offsets, global_batch_size=4, seed=2, epoch=0).codes)
    ordered = plan_epoch(offsets, global_batch_size=4, shuffle=False, lanes=1)
    assert ordered.codes.tolist() == [(k << 32) | o for k, n in enumerate(SHARD_SIZES) for o in range(n)]


def test_numpy_batches_carry_the_written_samples(stream_built) -> None:
    url, by_id = stream_built
    view = open_dataset(url).split("train")
    seen = []
    for batch in numpy_batches(view, 8, seed=5):
        assert batch["signal"].shape[1:] == (2, 16) and batch["signal"].dtype == np.int16
        assert batch["age"].dtype == np.int64
        for i, sid in enumerate(batch["sample_id"]):
            s = by_id[sid]
            np.testing.assert_array_equal(batch["signal"][i], s.arrays["signal"])
            np.testing.assert_array_equal(batch["mask"][i], s.arrays["mask"])
            np.testing.assert_array_equal(batch["events"][i], s.arrays["events"])
            assert batch["labels"][i] == s.row["labels"] and batch["age"][i] == s.row["age"]
            seen.append(sid)
    assert sorted(seen) == sorted(by_id)


def test_filtered_selected_view_streams_only_what_it_keeps(stream_built) -> None:
    url, by_id = stream_built
    view = open_dataset(url).split("train").filter(label="AF").select(["signal", "sample_id"])
    ids = [sid for b in numpy_batches(view, 5, seed=2) for sid in b["sample_id"]]
    assert sorted(ids) == sorted(k for k, s in by_id.items() if s.row["label"] == "AF")
    assert set(next(iter(numpy_batches(view, 5)))) == {"signal", "sample_id"}


def test_one_rank_equals_two_ranks_with_the_same_global_batch(stream_built) -> None:
    url, _ = stream_built
    view = open_dataset(url).split("train")
    one = _ids(numpy_batches(view, 8, seed=7, epoch=2, lanes=4))
    two = [_ids(numpy_batches(view, 4, seed=7, epoch=2, lanes=4, rank=r, world_size=2)) for r in range(2)]
    assert len(two[0]) == len(two[1]) == len(one)
    assert [a + b for a, b in zip(*two, strict=True)] == one


def _loader_ids(view, workers: int, **kw) -> list[list[str]]:
    loader = StreamLoader(view, kw.pop("batch_size", 4), num_workers=workers, lanes=4, **kw)
    return [list(b["sample_id"]) for b in loader]


def test_same_order_for_1_2_and_4_workers(stream_built) -> None:
    url, by_id = stream_built
    view = open_dataset(url).split("train").select(["signal", "sample_id"])
    runs = {w: _loader_ids(view, w, seed=11, epoch=3) for w in (0, 1, 2, 4)}
    assert runs[1] == runs[0] and runs[2] == runs[0] and runs[4] == runs[0]
    flat = [sid for b in runs[0] for sid in b]
    assert sorted(flat) == sorted(by_id)


def test_exactly_once_across_ranks_and_workers_with_uneven_shards(stream_built) -> None:
    url, by_id = stream_built
    view = open_dataset(url).split("train").select(["sample_id"])
    world = 3
    per_rank = [_loader_ids(view, 2, batch_size=5, seed=1, rank=r, world_size=world) for r in range(world)]
    assert len({len(batches) for batches in per_rank}) == 1
    flat = [sid for batches in per_rank for b in batches for sid in b]
    assert sorted(flat) == sorted(by_id)


def test_tail_smaller_than_world_gives_empty_batches_not_duplicates(stream_built) -> None:
    url, by_id = stream_built
    view = open_dataset(url).split("train").select(["signal", "sample_id"])
    # 61 samples, global batch 60: the last global batch has 1 sample for 4 ranks
    per_rank = [list(numpy_batches(view, 15, rank=r, world_size=4)) for r in range(4)]
    assert [len(b) for b in per_rank] == [2, 2, 2, 2]
    assert [len(b[-1]["sample_id"]) for b in per_rank] == [1, 0, 0, 0]
    assert per_rank[3][-1]["signal"].shape == (0, 2, 16)
    flat = [sid for batches in per_rank for b in batches for sid in b["sample_id"]]
    assert sorted(flat) == sorted(by_id)


@pytest.mark.parametrize(("workers", "stop_after"), [(0, 3), (2, 5)])
def test_exact_mid_epoch_resume(stream_built, workers: int, stop_after: int) -> None:
    url, _ = stream_built
    view = open_dataset(url).split("train").select(["signal", "sample_id"])
    full = _loader_ids(view, workers, seed=4, epoch=1)
    loader = StreamLoader(view, 4, num_workers=workers, lanes=4, seed=4, epoch=1)
    got = [list(b["sample_id"]) for b in itertools.islice(iter(loader), stop_after)]
    state = loader.state_dict()
    assert state["batches_consumed"] == stop_after and state["epoch"] == 1
    del loader
    resumed = StreamLoader(view, 4, num_workers=workers, lanes=4, seed=0, epoch=0)
    resumed.load_state_dict(state)
    rest = [list(b["sample_id"]) for b in resumed]
    assert got + rest == full
    assert resumed.state_dict()["epoch"] == 2 and resumed.state_dict()["batches_consumed"] == 0


def test_elastic_resume_from_two_ranks_to_one(stream_built) -> None:
    url, _ = stream_built
    view = open_dataset(url).split("train").select(["sample_id"])
    full = _ids(numpy_batches(view, 8, seed=9, lanes=4))
    ranks = [StreamLoader(view, 4, num_workers=0, lanes=4, seed=9, rank=r, world_size=2) for r in range(2)]
    first = [[list(b["sample_id"]) for b in itertools.islice(iter(ld), 3)] for ld in ranks]
    state = ranks[0].state_dict()
    single = StreamLoader(view, 8, num_workers=0, lanes=4)
    single.load_state_dict(state)
    rest = [list(b["sample_id"]) for b in single]
    assert [a + b for a, b in zip(*first, strict=True)] + rest == full


def test_torch_batches_are_tensors(stream_built) -> None:
    url, by_id = stream_built
    view = open_dataset(url).split("train")
    batch = next(iter(view.loader(6, num_workers=0, seed=1)))
    assert isinstance(batch["signal"], torch.Tensor) and batch["signal"].dtype == torch.int16
    assert batch["mask"].dtype == torch.bool and batch["age"].dtype == torch.int64
    sid = batch["sample_id"][0]
    np.testing.assert_array_equal(batch["signal"][0].numpy(), by_id[sid].arrays["signal"])
    assert isinstance(view.torch(6), torch.utils.data.IterableDataset)
    for batch in view.loader(6, num_workers=2, seed=1):  # shared-memory batches from workers
        for i, sid in enumerate(batch["sample_id"]):
            np.testing.assert_array_equal(batch["signal"][i].numpy(), by_id[sid].arrays["signal"])
            assert batch["age"][i].item() == by_id[sid].row["age"]


def test_bad_arguments_and_incompatible_resume_are_refused(stream_built) -> None:
    url, _ = stream_built
    view = open_dataset(url).split("train")
    with pytest.raises(TypeError, match=r"batch_size must be an int, got float 4\.0"):
        numpy_batches(view, 4.0)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        numpy_batches(view, 0)
    with pytest.raises(ValueError, match=r"rank must be an int in \[0, 2\), got 2"):
        numpy_batches(view, 4, rank=2, world_size=2)
    state = StreamLoader(view, 4, num_workers=0).state_dict()
    with pytest.raises(ValueError, match="state has global_batch_size=4, this stream has 8"):
        StreamLoader(view, 8, num_workers=0).load_state_dict(state)


def test_stream_from_a_dataset_path(tmp_path: Path) -> None:
    """Two shards, batch bigger than the data: one partial batch with everything."""
    samples = make_samples(5, "val")
    write_and_publish(str(tmp_path), {("val", 0): samples[:2], ("val", 1): samples[2:]})
    batches = list(numpy_batches(open_dataset(str(tmp_path)).split("val"), 64))
    assert len(batches) == 1 and sorted(batches[0]["sample_id"]) == [s.sample_id for s in samples]


def test_kept_batches_are_never_overwritten_by_reused_shard_buffers(stream_built) -> None:
    """In-process batches are slices of decoded shards whose buffers the stream reuses; a batch
    the caller keeps (or any view of it) must keep its samples."""
    url, by_id = stream_built
    view = open_dataset(url).split("train").select(["signal", "sample_id"])
    kept_numpy = list(numpy_batches(view, 4, seed=8, lanes=1, prefetch_shards=1))
    kept_views = [b["signal"][1:] for b in numpy_batches(view, 4, seed=8, lanes=1, prefetch_shards=1)]
    kept_torch = list(StreamLoader(view, 4, num_workers=0, seed=8, lanes=1, prefetch_shards=1))
    for batches in (kept_numpy, kept_torch):
        for batch in batches:
            for i, sid in enumerate(batch["sample_id"]):
                np.testing.assert_array_equal(np.asarray(batch["signal"][i]), by_id[sid].arrays["signal"])
    for batch, tail in zip(kept_numpy, kept_views, strict=True):
        np.testing.assert_array_equal(tail, batch["signal"][1:])


def test_shard_buffers_are_reused_only_when_nothing_sees_them() -> None:
    from manifests.stream import _ShardBuffers

    pool = _ShardBuffers(keep=2)
    a = pool((4, 3), np.dtype("int16"))
    view_of_view = a[1:][1:]  # NumPy views reference the owning buffer, not the view they came from
    tensor = torch.from_numpy(a[2:])
    del a
    b = pool((4, 3), np.dtype("int16"))
    assert pool.reused == 0 and not np.shares_memory(b, view_of_view)
    del view_of_view
    c = pool((4, 3), np.dtype("int16"))
    assert pool.reused == 0  # the tensor still holds the first buffer
    del tensor, b
    d = pool((2, 3), np.dtype("float32"))  # smaller and another dtype: a free buffer serves it
    assert pool.reused == 1 and d.shape == (2, 3) and d.dtype == np.float32
    assert not np.shares_memory(c, d)
    e = pool((64, 64), np.dtype("int16"))  # too big for any free buffer, and the pool is full
    assert pool.reused == 1 and e.shape == (64, 64) and len(pool._bufs) == 2
