"""Batches delivered on a device through the shared batch ring (``StreamLoader(device=...)``).

CI has no GPU, so these run the ring on the CPU device: the same workers, slots, references,
flow control and release path as on CUDA, with a copy out of the slot in place of the DMA.
The CUDA path (page-locking, side stream) is checked on the GPU machine by
``benchmarks/stream_gpu.py``, which compares every batch with the CPU loader's.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import time

import numpy as np
import pytest
import torch

from manifests import open_dataset
from manifests.ring import BatchRing, DeviceMover, RingAllocator, RingRef, RingTimeout
from manifests.stream import StreamLoader


def _same_batches(expected: list[dict], got: list[dict]) -> None:
    assert len(got) == len(expected)
    for a, b in zip(expected, got, strict=True):
        assert list(b) == list(a)
        for key, value in a.items():
            if isinstance(value, torch.Tensor):
                assert isinstance(b[key], torch.Tensor) and b[key].dtype == value.dtype, key
                assert torch.equal(b[key], value), key
            elif key == "events":  # ragged: lists of arrays
                assert all(np.array_equal(x, y) for x, y in zip(value, b[key], strict=True))
            else:
                assert b[key] == value, key


@pytest.mark.parametrize("workers", [0, 1, 2, 3])
def test_device_batches_equal_the_cpu_loaders_batch_for_batch(stream_built, workers: int) -> None:
    url, by_id = stream_built
    view = open_dataset(url).split("train")
    expected = list(StreamLoader(view, 4, num_workers=workers, seed=2, pin_memory=False))
    got = list(StreamLoader(view, 4, num_workers=workers, seed=2, device="cpu"))
    _same_batches(expected, got)
    assert sorted(sid for b in got for sid in b["sample_id"]) == sorted(by_id)
    # every sample's arrays are the written ones (the ring's slots are reused many times here)
    for batch in got:
        for i, sid in enumerate(batch["sample_id"]):
            np.testing.assert_array_equal(batch["signal"][i].numpy(), by_id[sid].arrays["signal"])
            np.testing.assert_array_equal(batch["mask"][i].numpy(), by_id[sid].arrays["mask"])


def test_slow_consumer_holding_batches_gets_every_batch_intact(stream_built) -> None:
    """Workers run ahead until their slots are full, then wait: nothing is overwritten."""
    url, by_id = stream_built
    view = open_dataset(url).split("train").select(["signal", "sample_id"])
    loader = StreamLoader(view, 2, num_workers=2, prefetch_factor=1, seed=5, device="cpu")
    held = []
    for batch in loader:  # 31 batches through 2 workers x 3 slots
        time.sleep(0.01)
        held.append(batch)
    assert len(held) == 31
    for batch in held:
        for i, sid in enumerate(batch["sample_id"]):
            np.testing.assert_array_equal(batch["signal"][i].numpy(), by_id[sid].arrays["signal"])


def test_spawned_workers_reach_the_ring_through_proc(stream_built) -> None:
    url, _ = stream_built
    view = open_dataset(url).split("train").select(["signal", "sample_id"])
    expected = list(StreamLoader(view, 8, num_workers=0, seed=1, pin_memory=False))
    got = list(StreamLoader(view, 8, num_workers=2, seed=1, device="cpu", multiprocessing_context="spawn"))
    _same_batches(expected, got)


def test_break_and_resume_mid_epoch_on_the_device_path(stream_built) -> None:
    url, _ = stream_built
    view = open_dataset(url).split("train").select(["signal", "sample_id"])
    full = [list(b["sample_id"]) for b in StreamLoader(view, 4, num_workers=2, seed=4, epoch=1)]
    loader = StreamLoader(view, 4, num_workers=2, seed=4, epoch=1, device="cpu")
    first = [list(b["sample_id"]) for b in itertools.islice(iter(loader), 5)]
    state = loader.state_dict()
    again = [list(b["sample_id"]) for b in loader]  # the same loader goes on after a break
    resumed = StreamLoader(view, 4, num_workers=2, device="cpu")
    resumed.load_state_dict(state)
    rest = [list(b["sample_id"]) for b in resumed]
    assert first + rest == full and first + again == full
    assert loader.dataset.ring is None  # each pass's ring is closed when the pass ends


def test_a_ring_is_shared_with_a_forked_writer_and_flow_controlled() -> None:
    ring = BatchRing({"x": ((3,), "int16")}, batch_size=4, producers=2, slots=2)
    ctx = mp.get_context("fork")

    def produce() -> (
        None
    ):  # producer 1 writes batches 0..4 (values 1..5) into its 2 slots, waiting for releases
        alloc = RingAllocator(ring, 1)
        for n in range(5):
            out = alloc("x", (4, 3), np.dtype("int16"))
            out[:] = n + 1
            alloc.finish({"x": out})
        os._exit(0)

    child = ctx.Process(target=produce)
    child.start()
    mover = DeviceMover("cpu", ring)
    seen = []
    for n in range(5):
        slot = ring.array(1, n, "x", 4)
        deadline = time.monotonic() + 30
        while not (slot == n + 1).all():  # the child wrote batch n (it may not run ahead of releases)
            assert time.monotonic() < deadline, f"batch {n} never arrived"
            time.sleep(0.001)
        if n + 2 < 5:
            assert ring._released()[1] == n  # batch n + 2 waits until batch n is released
        seen.append(mover({"x": RingRef(1, n, "x", 4)})["x"])
    child.join(30)
    assert child.exitcode == 0
    assert [int(t[0, 0]) for t in seen] == [1, 2, 3, 4, 5]
    ring.close()


def test_a_producer_that_is_never_released_times_out_with_a_clear_error() -> None:
    ring = BatchRing({"x": ((2,), "float32")}, batch_size=1, producers=1, slots=2)
    ring.wait_free(0, 1)  # free slots: no wait
    with pytest.raises(RingTimeout, match="producer 0 waited 0 s for a free slot for batch 2"):
        ring.wait_free(0, 2, timeout_s=0.05)
    ring.release(0, 0)
    ring.wait_free(0, 2, timeout_s=0.05)
    ring.close()


def test_arrays_that_do_not_fit_the_ring_travel_the_usual_way() -> None:
    ring = BatchRing({"x": ((2,), "int16")}, batch_size=4, producers=1, slots=2)
    alloc = RingAllocator(ring, 0)
    inside = alloc("x", (3, 2), np.dtype("int16"))
    other_dtype = alloc("y", (3, 2), np.dtype("float64"))
    too_big = RingAllocator(ring, 0)("x", (5, 2), np.dtype("int16"))
    assert ring.fits("x", (4, 2), "int16") and not ring.fits("x", (5, 2), "int16")
    assert not ring.fits("x", (4, 3), "int16") and not ring.fits("x", (4, 2), "int32")
    batch = alloc.finish({"x": inside, "y": other_dtype})
    assert batch["x"] == RingRef(0, 0, "x", 3) and batch["y"] is other_dtype
    assert too_big.shape == (5, 2) and alloc.n == 1
    with pytest.raises(ValueError, match="bad ring size"):
        BatchRing({"x": ((2,), "int16")}, batch_size=4, producers=1, slots=1)
    ring.close()
