"""Stream a split to a training loop: deterministic, elastic, resumable, whole-shard reads.

The epoch's order is a pure function of ``(seed, epoch, shard sizes, global batch size, lanes,
block_shards)``; it never depends on the number of ranks or DataLoader workers.

**The global order** (computed identically by every rank and worker):

1. the split's non-empty shards are shuffled with a generator seeded by ``(seed, epoch)``;
2. they are dealt to ``lanes`` lanes, each shard to the lane holding the fewest samples so far
   (balanced lanes end together, so no lane runs dry early);
3. within a lane, shards are grouped into blocks of ``block_shards`` consecutive shards and the
   samples of each block are shuffled (a block is what a reader keeps decoded at once);
4. global batches of ``global_batch_size = batch_size * world_size`` are taken round-robin from
   the lanes (batch ``g`` from lane ``g % lanes``) while every lane has a whole batch left; what
   remains of all lanes is concatenated and cut into batches; the last batch may be partial
   (``drop_last=False``) or dropped.

**Partitioning.** Rank ``r`` gets slice ``r`` of every global batch (a partial last batch is split
as evenly as possible, so every rank yields the same number of batches and none hangs in a
collective; when fewer samples than ranks remain, some ranks get an *empty* final batch rather than
a duplicated sample). Within a rank, DataLoader worker ``w`` of ``W`` produces the rank's batches
``j`` with ``(j - start) % W == w``: PyTorch's DataLoader yields worker outputs round-robin, so the
rank sees the same batch sequence for any ``W``. When ``W`` divides ``lanes``, each worker reads
only its own lanes' shards, so every shard is read and decoded once per rank per epoch; otherwise
(and for the last, lane-straddling batches) a shard may be read by several workers, but each
decompresses only the inner chunks holding its own samples, so decoding is never duplicated.

**Resume.** The state is ``(seed, epoch, batches consumed)``; a resumed stream skips the consumed
global batches by arithmetic (nothing is read) and continues with exactly the batches the
interrupted run would have produced, for any worker count, and for any world size with the same
global batch size.

**Reading.** A worker knows its whole batch list up front, so it knows which shards it needs and
in what order; a thread pool reads and decodes the next ``prefetch_shards`` shards (whole files,
one GET each; decompression releases the GIL) while batches are collated from the current ones,
and a shard is dropped right after its last use. Each shard is decoded straight into the order in
which the worker's batches consume it, so a batch from one shard is a slice of the decoded arrays
(no copy in-process; one contiguous copy into shared memory in a DataLoader worker), and a batch
straddling shards is assembled part by part; there is no per-sample Python for fixed-shape arrays
and numeric columns. Batches are dicts: fixed arrays ``(B, ...)``, ragged arrays and non-numeric
columns as lists.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from manifests.ring import BatchRing, DeviceMover, RingAllocator, ring_supported

if TYPE_CHECKING:
    from manifests.reader import ShardData, ShardRef, SplitView

#: Default number of lanes (see the module docstring). A process keeps about ``lanes / workers``
#: shards decoded at once (the lanes its batches rotate through), so lanes cost memory; 1, 2 and 4
#: workers per rank read disjoint shards, and with more workers a shard is *read* by several but
#: each decodes only its own samples' chunks.
DEFAULT_LANES = 4
_SHIFT = np.int64(32)
_MASK = np.int64((1 << 32) - 1)


@dataclass(frozen=True)
class EpochPlan:
    """The global order of one epoch.

    Attributes:
        codes: int64 (N,), every kept sample once: ``shard_slot << 32 | offset_in_shard``.
        bounds: int64 (G + 1,), global batch ``g`` is ``codes[bounds[g]:bounds[g + 1]]``.
        global_batch_size: samples per full global batch.
    """

    codes: np.ndarray
    bounds: np.ndarray
    global_batch_size: int

    @property
    def num_batches(self) -> int:
        return len(self.bounds) - 1

    def rank_batch(self, g: int, rank: int, world_size: int) -> np.ndarray:
        """The codes of rank ``rank``'s part of global batch ``g`` (possibly empty on a partial batch)."""
        lo, hi = int(self.bounds[g]), int(self.bounds[g + 1])
        size = hi - lo
        base, extra = divmod(size, world_size)
        start = lo + rank * base + min(rank, extra)
        return self.codes[start : start + base + (1 if rank < extra else 0)]


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def plan_epoch(
    shard_offsets: Sequence[np.ndarray],
    *,
    global_batch_size: int,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
    lanes: int = DEFAULT_LANES,
    block_shards: int = 1,
    drop_last: bool = False,
    stream: int = 0,
) -> EpochPlan:
    """Compute the global order of one epoch (see the module docstring).

    Args:
        shard_offsets: for each shard slot, the in-shard offsets to stream (int64).
        global_batch_size: ``batch_size * world_size``.
        seed, epoch: the shuffle's seed; the same pair gives the same order everywhere.
        shuffle: ``False`` streams shards in order, samples in shard order (lanes still interleave).
        lanes: number of lanes (1 = one global sequence).
        block_shards: shards whose samples are shuffled together within a lane.
        drop_last: drop a final partial global batch.
        stream: an extra seed component (mixtures give each source its own), 0 for none.

    Examples:
        >>> plan = plan_epoch([np.arange(3), np.arange(2)], global_batch_size=2, shuffle=False, lanes=1)
        >>> [(plan.codes[plan.bounds[g]:plan.bounds[g + 1]] & 0xFFFFFFFF).tolist() for g in range(plan.num_batches)]
        [[0, 1], [2, 0], [1]]
    """
    gbs = _check_positive_int("global_batch_size", global_batch_size)
    lanes = _check_positive_int("lanes", lanes)
    block_shards = _check_positive_int("block_shards", block_shards)
    key = [int(seed), int(epoch)] + ([int(stream)] if stream else [])
    rng = np.random.default_rng(key)
    slots = [k for k, offs in enumerate(shard_offsets) if len(offs)]
    if shuffle:
        slots = [slots[i] for i in rng.permutation(len(slots))]
    n_lanes = max(1, min(lanes, len(slots)))
    lane_slots: list[list[int]] = [[] for _ in range(n_lanes)]
    lane_sizes = [0] * n_lanes
    for k in slots:
        lane = int(np.argmin(lane_sizes))
        lane_slots[lane].append(k)
        lane_sizes[lane] += len(shard_offsets[k])
    lane_codes = []
    for lane, members in enumerate(lane_slots):
        lane_rng = np.random.default_rng([*key, lane + 1])
        parts = []
        for b in range(0, len(members), block_shards):
            block = np.concatenate(
                [
                    (np.int64(k) << _SHIFT) | np.asarray(shard_offsets[k], dtype=np.int64)
                    for k in members[b : b + block_shards]
                ]
            )
            if shuffle:
                block = block[lane_rng.permutation(len(block))]
            parts.append(block)
        lane_codes.append(np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64))
    full_rounds = min(len(c) // gbs for c in lane_codes) if lane_codes else 0
    pieces = []
    for i in range(full_rounds):
        for codes in lane_codes:
            pieces.append(codes[i * gbs : (i + 1) * gbs])
    tail = (
        np.concatenate([c[full_rounds * gbs :] for c in lane_codes]) if lane_codes else np.zeros(0, np.int64)
    )
    head = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    if drop_last:
        tail = tail[: (len(tail) // gbs) * gbs]
    codes = np.concatenate([head, tail]).astype(np.int64)
    bounds = np.arange(0, len(codes), gbs, dtype=np.int64)
    bounds = np.append(bounds, np.int64(len(codes))) if len(codes) else np.zeros(1, dtype=np.int64)
    return EpochPlan(codes=codes, bounds=bounds, global_batch_size=gbs)


# ---------------------------------------------------------------------------------------------
# Collation
# ---------------------------------------------------------------------------------------------


class _DecodedShard:
    """A shard decoded for streaming, in the order its batches consume it.

    Fixed arrays are compact, ``(len(order), ...)``, row ``k`` holding sample ``order[k]``; ragged
    arrays stay whole (``(values, offsets, shapes)``, indexed through ``order``); row columns are
    NumPy arrays in ``order`` (object arrays for non-numeric columns).
    """

    def __init__(self, data: ShardData, order: np.ndarray) -> None:
        self.order = order
        self.arrays = data.arrays
        self.columns: dict[str, np.ndarray] = {}
        if data.rows is not None:
            for name in data.rows.column_names:
                col = data.rows.column(name)
                if (
                    pa.types.is_integer(col.type)
                    or pa.types.is_floating(col.type)
                    or pa.types.is_boolean(col.type)
                ) and col.null_count == 0:
                    self.columns[name] = col.to_numpy()[order]
                    continue
                values = np.empty(len(col), dtype=object)
                values[:] = col.to_pylist()
                self.columns[name] = values[order]


Allocator = Callable[[str, tuple[int, ...], np.dtype], np.ndarray]


class _ShardBuffers:
    """Buffers for decoded shards, reused once nothing can see them any more.

    A fresh 64 MB array costs the kernel about as much to zero and map as decoding fills it, for
    every shard of every epoch. The stream decodes each shard into one of these buffers instead;
    a buffer is handed out again only when its reference count is back to the pool's own, that is
    when the stream has dropped the shard *and* every batch view of it (a NumPy slice, a tensor
    from ``torch.from_numpy``, any view of those: NumPy views all reference the owning buffer)
    is gone. A batch a caller keeps is never overwritten. At most ``keep`` buffers are held.
    """

    def __init__(self, keep: int) -> None:
        import sys
        import threading

        self._refcount = sys.getrefcount
        self._lock = threading.Lock()
        self._bufs: list[np.ndarray] = []
        self.keep = keep
        self.reused = 0
        self._bufs.append(np.empty(0, dtype=np.uint8))
        self._idle = self._refs(0)  # the count of a buffer only the pool holds, measured here
        self._bufs.clear()

    def _refs(self, i: int) -> int:
        return self._refcount(self._bufs[i])

    def __call__(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        with self._lock:
            for i in range(len(self._bufs)):
                if self._bufs[i].nbytes >= nbytes and self._refs(i) == self._idle:
                    self.reused += 1
                    return self._bufs[i][:nbytes].view(dtype).reshape(shape)
            buf = np.empty(nbytes, dtype=np.uint8)
            if len(self._bufs) < self.keep:
                self._bufs.append(buf)
            return buf.view(dtype).reshape(shape)


#: One shard's share of a batch: ``(shard, lo, hi, positions)``: rows ``lo:hi`` of the shard's
#: consumption order go to ``positions`` of the batch (``None``: the whole batch, in order).
Part = tuple[_DecodedShard, int, int, "np.ndarray | None"]


def _allocate(name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return np.empty(shape, dtype=dtype)


def collate(
    parts: Sequence[Part],
    size: int,
    arrays: Sequence[str],
    columns: Sequence[str],
    schema: Mapping[str, Mapping[str, Any]],
    alloc: Allocator | None = None,
) -> dict[str, Any]:
    """Assemble one batch of ``size`` samples from its parts (see :data:`Part`).

    A batch drawn from one shard (the usual case: batches rotate through lanes) is a *slice* of
    that shard's decoded arrays, no copy, unless ``alloc`` asks for the batch in a buffer of its
    own (DataLoader workers: shared memory), which then takes one contiguous copy. A batch that
    straddles shards is copied part by part. No per-sample Python for fixed-shape arrays and
    numeric columns.

    Returns:
        ``{array: np.ndarray (B, ...) or list of arrays (ragged), column: np.ndarray or list}``.
    """
    whole = len(parts) == 1 and parts[0][3] is None
    out: dict[str, Any] = {}
    for name in arrays:
        info = schema.get(name, {})
        srcs = [shard.arrays[name] for shard, *_ in parts]
        if info.get("layout") == "fixed" and not parts:
            out[name] = np.zeros((0, *info["shape"]), dtype=info["dtype"])
            continue
        if (
            info.get("layout") == "fixed"
            and not any(isinstance(a, tuple) for a in srcs)
            and len({(a.shape[1:], a.dtype) for a in srcs}) == 1
        ):
            first = srcs[0]
            if whole and alloc is None:
                _, lo, hi, _ = parts[0]
                out[name] = first[lo:hi]
                continue
            dst = (alloc or _allocate)(name, (size, *first.shape[1:]), first.dtype)
            for (_, lo, hi, pos), a in zip(parts, srcs, strict=True):
                if pos is None:
                    np.copyto(dst, a[lo:hi])
                else:
                    dst[pos] = a[lo:hi]
            out[name] = dst
            continue
        items: list[Any] = [None] * size
        for shard, lo, hi, pos in parts:
            a = shard.arrays[name]
            where = range(size) if pos is None else pos.tolist()
            for p, k in zip(where, range(lo, hi), strict=True):
                if isinstance(a, tuple):
                    values, offs_, shp = a
                    o = int(shard.order[k])
                    items[p] = values[offs_[o] : offs_[o + 1]].reshape(tuple(shp[o]))
                else:
                    items[p] = a[k]
        out[name] = items
    for name in columns:
        if not parts:
            out[name] = []
            continue
        cols = [shard.columns[name] for shard, *_ in parts]
        dtype = cols[0].dtype if len({c.dtype for c in cols}) == 1 else np.dtype(object)
        if whole:
            _, lo, hi, _ = parts[0]
            dst = cols[0][lo:hi]
        else:
            dst = np.empty(size, dtype=dtype)
            for (_, lo, hi, pos), c in zip(parts, cols, strict=True):
                dst[slice(None) if pos is None else pos] = c[lo:hi]
        out[name] = dst.tolist() if dtype.kind == "O" else dst
    return out


# ---------------------------------------------------------------------------------------------
# The stream
# ---------------------------------------------------------------------------------------------


@dataclass
class StreamConfig:
    """Everything that fixes a stream's batches (and so must match on resume)."""

    batch_size: int
    shuffle: bool = True
    seed: int = 0
    epoch: int = 0
    rank: int = 0
    world_size: int = 1
    drop_last: bool = False
    lanes: int = DEFAULT_LANES
    block_shards: int = 1
    prefetch_shards: int = 2
    decode_threads: int = 2
    fetch_threads: int = 2
    start_batch: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_positive_int("batch_size", self.batch_size)
        _check_positive_int("world_size", self.world_size)
        _check_positive_int("prefetch_shards", self.prefetch_shards)
        _check_positive_int("decode_threads", self.decode_threads)
        _check_positive_int("fetch_threads", self.fetch_threads)
        if (
            isinstance(self.rank, bool)
            or not isinstance(self.rank, int)
            or not 0 <= self.rank < self.world_size
        ):
            raise ValueError(f"rank must be an int in [0, {self.world_size}), got {self.rank!r}")
        if self.start_batch < 0:
            raise ValueError(f"start_batch must be >= 0, got {self.start_batch}")

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size


class BatchStream:
    """Batches of one rank (and optionally one worker of that rank) of a split view, as NumPy.

    Args:
        view: the split (a filtered / column-selected view streams only what it keeps).
        config: batch size, shuffle, seed/epoch, rank/world size, and resume point.
    """

    def __init__(self, view: SplitView, config: StreamConfig) -> None:
        self.view = view
        self.config = config
        self._slots: list[tuple[ShardRef, np.ndarray]] = view.positions_by_shard()

    def plan(self, *, seed: int | None = None, epoch: int | None = None, stream: int = 0) -> EpochPlan:
        """The epoch's global order (``seed`` and ``epoch`` default to the configured ones)."""
        c = self.config
        return plan_epoch(
            [offs for _, offs in self._slots],
            global_batch_size=c.global_batch_size,
            seed=c.seed if seed is None else seed,
            epoch=c.epoch if epoch is None else epoch,
            stream=stream,
            shuffle=c.shuffle,
            lanes=c.lanes,
            block_shards=c.block_shards,
            drop_last=c.drop_last,
        )

    def ring_fields(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """The fixed-shape arrays of a batch, ``{name: (per-sample shape, dtype)}`` (for a batch ring)."""
        schema = self.view.dataset.manifest["schema"]["arrays"]
        return {
            name: (tuple(schema[name]["shape"]), schema[name]["dtype"])
            for name in self.view.arrays
            if schema.get(name, {}).get("layout") == "fixed"
        }

    def __len__(self) -> int:
        """Batches this rank yields in the epoch (from ``start_batch``)."""
        return max(0, self.plan().num_batches - self.config.start_batch)

    def _decode(
        self, slot: int, fetched: Future[dict[str, Any]], order: np.ndarray, buffers: _ShardBuffers
    ) -> _DecodedShard:
        ref, _ = self._slots[slot]
        return _DecodedShard(self.view.decode_shard(ref, fetched.result(), order, buffers), order)

    def iter_batches(
        self, worker: int = 0, num_workers: int = 1, alloc: Allocator | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield this rank's batches ``j >= start_batch`` with ``(j - start_batch) % num_workers == worker``."""
        c = self.config
        plan = self.plan()
        batch_ids = list(range(c.start_batch + worker, plan.num_batches, num_workers))
        return self.run_batches([plan.rank_batch(g, c.rank, c.world_size) for g in batch_ids], alloc)

    def run_batches(
        self, batches: Sequence[np.ndarray], alloc: Allocator | None = None
    ) -> Iterator[dict[str, Any]]:
        """Read, decode and collate the given batches (codes from :func:`plan_epoch`) in order.

        Shards are read in first-use order by a thread pool, ``prefetch_shards`` ahead, and
        dropped after their last use; only the inner chunks holding samples of these batches are
        decompressed (another worker's samples in the same shard are skipped). The pool decodes
        each shard straight into the order its batches consume it (:func:`decode_shard`'s
        ``order``), so the consuming thread only slices batches out: all per-byte work (reading,
        decompressing, placing) happens in the pool, with the GIL released.

        Args:
            batches: one int64 code array per batch.
            alloc: allocates each fixed-array batch buffer (``(name, shape, dtype) -> ndarray``);
                DataLoader workers allocate in shared memory so the batch is not copied again.
        """
        c = self.config
        every = np.concatenate(batches) if len(batches) else np.zeros(0, dtype=np.int64)
        # each shard's samples in the order these batches consume them (a stable sort keeps it)
        by_slot = np.argsort(every >> _SHIFT, kind="stable")
        slots_sorted = (every >> _SHIFT)[by_slot]
        offsets_sorted = (every & _MASK)[by_slot]
        cuts = np.flatnonzero(np.diff(slots_sorted)) + 1
        consume_order = {
            int(sl[0]): off
            for sl, off in zip(np.split(slots_sorted, cuts), np.split(offsets_sorted, cuts), strict=True)
            if len(sl)
        }
        # each batch's parts: (slot, lo, hi, positions in the batch or None for all of it)
        cursor = dict.fromkeys(consume_order, 0)
        plans: list[list[tuple[int, int, int, np.ndarray | None]]] = []
        for codes in batches:
            slots = codes >> _SHIFT
            if len(codes) and slots[0] == slots[-1] and np.all(slots == slots[0]):
                s = int(slots[0])
                plans.append([(s, cursor[s], cursor[s] + len(codes), None)])
                cursor[s] += len(codes)
                continue
            parts = []
            for s in np.unique(slots).tolist():
                pos = np.flatnonzero(slots == s)
                parts.append((s, cursor[s], cursor[s] + len(pos), pos))
                cursor[s] += len(pos)
            plans.append(parts)
        needs = [[part[0] for part in parts] for parts in plans]
        first_use: list[int] = []
        last_use: dict[int, int] = {}
        for j, slots_j in enumerate(needs):
            for s in slots_j:
                if s not in last_use:
                    first_use.append(s)
                last_use[s] = j
        schema = self.view.dataset.manifest["schema"]["arrays"]
        arrays, columns = self.view.arrays, self.view.row_columns
        # fetching (whole files, one GET each) and decoding run in separate pools, so the network
        # keeps busy while shards decode: on an object store the next shard arrives meanwhile
        io_pool = ThreadPoolExecutor(max_workers=c.fetch_threads, thread_name_prefix="climb-fetch")
        pool = ThreadPoolExecutor(max_workers=c.decode_threads, thread_name_prefix="climb-decode")
        # decoded shards go into reused buffers (see _ShardBuffers); enough for those in flight
        buffers = _ShardBuffers(keep=c.prefetch_shards + c.lanes * c.block_shards + 2)
        fetches: list[Future[dict[str, Any]]] = []
        futures: dict[int, Future[_DecodedShard]] = {}
        ready: dict[int, _DecodedShard] = {}
        next_submit = 0

        def submit_next() -> None:
            nonlocal next_submit
            s = first_use[next_submit]
            fetched = io_pool.submit(self.view.fetch_shard, self._slots[s][0])
            fetches.append(fetched)
            futures[s] = pool.submit(self._decode, s, fetched, consume_order[s], buffers)
            next_submit += 1

        try:
            for j, codes in enumerate(batches):
                # keep the next prefetch_shards shards (in first-use order) in flight
                while next_submit < len(first_use) and len(futures) < c.prefetch_shards + len(needs[j]):
                    submit_next()
                for s in needs[j]:
                    if s not in ready:
                        while s not in futures:  # a batch needing more shards than the window
                            submit_next()
                        ready[s] = futures.pop(s).result()
                parts = [(ready[s], lo, hi, pos) for s, lo, hi, pos in plans[j]]
                batch = collate(parts, len(codes), arrays, columns, schema, alloc=alloc)
                del parts
                for s in needs[j]:
                    if last_use[s] == j:
                        del ready[s]
                yield batch
        finally:
            for f in [*futures.values(), *fetches]:
                f.cancel()
            io_pool.shutdown(wait=True, cancel_futures=True)
            pool.shutdown(wait=True, cancel_futures=True)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.iter_batches()

    def state_dict(self, batches_consumed: int) -> dict[str, Any]:
        c = self.config
        return {
            "seed": c.seed,
            "epoch": c.epoch,
            "batches_consumed": int(batches_consumed),
            "global_batch_size": c.global_batch_size,
            "shuffle": c.shuffle,
            "lanes": c.lanes,
            "block_shards": c.block_shards,
            "drop_last": c.drop_last,
            "num_samples": int(sum(len(o) for _, o in self._slots)),
        }

    def check_state(self, state: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` when ``state`` was saved by a stream with a different order."""
        here = self.state_dict(0)
        for key in ("global_batch_size", "shuffle", "lanes", "block_shards", "drop_last", "num_samples"):
            if key in state and state[key] != here[key]:
                raise ValueError(
                    f"cannot resume: state has {key}={state[key]!r}, this stream has {here[key]!r} "
                    "(the order would differ)"
                )


def numpy_batches(view: SplitView, batch_size: int, **options: Any) -> Iterator[dict[str, Any]]:
    """Collated NumPy batches of one rank, without torch (see the module docstring for the order).

    Args:
        view: the split view to stream.
        batch_size: per-rank batch size.
        **options: :class:`StreamConfig` fields (shuffle, seed, epoch, rank, world_size,
            drop_last, lanes, block_shards, prefetch_shards, decode_threads, fetch_threads,
            start_batch).
    """
    return BatchStream(view, StreamConfig(batch_size=batch_size, **options)).iter_batches()


# ---------------------------------------------------------------------------------------------
# PyTorch
# ---------------------------------------------------------------------------------------------


def _to_torch(batch: dict[str, Any]) -> dict[str, Any]:
    """NumPy arrays → tensors without copying (anything else passes through)."""
    import torch

    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, np.ndarray) and value.dtype.kind != "O":
            out[key] = torch.from_numpy(value)
        else:
            out[key] = value
    return out


class _SharedAllocator:
    """Allocates batch buffers as shared-memory tensors (in DataLoader workers): the worker→loader
    hand-off then passes a handle instead of copying the batch into shared memory."""

    def __init__(self) -> None:
        self.tensors: dict[str, Any] = {}

    def __call__(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        import torch

        tensor = torch.empty(shape, dtype=torch.from_numpy(np.empty(0, dtype=dtype)).dtype).share_memory_()
        self.tensors[name] = tensor
        return tensor.numpy()

    def finish(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The collated batch with its arrays swapped for the shared tensors they live in."""
        out = {k: self.tensors.get(k, v) for k, v in batch.items()}
        self.tensors = {}
        return out


def _iterable_dataset_base() -> type:
    try:
        from torch.utils.data import IterableDataset
    except ImportError:  # pragma: no cover - torch is optional
        return object
    return IterableDataset


class TorchStream(_iterable_dataset_base()):  # type: ignore[misc]
    """A PyTorch ``IterableDataset`` of collated batches (use with ``batch_size=None``).

    Each DataLoader worker yields its share of the rank's batches (see the module docstring), so
    the DataLoader's round-robin yields the same batch sequence for any ``num_workers``. Tensors
    come from ``torch.from_numpy`` (no copy); pinning is the DataLoader's ``pin_memory``.
    ``state_dict()``/``load_state_dict()`` work in-process (``num_workers=0``); with workers use
    :class:`StreamLoader`, which counts what the training loop actually received.
    """

    def __init__(self, source: Any, batch_size: int | None = None, **kwargs: Any) -> None:
        if hasattr(source, "iter_batches"):  # a BatchStream or a mixture
            if batch_size is not None or kwargs:
                raise TypeError("pass stream options to the stream, not to TorchStream")
            self.stream = source
        else:
            if batch_size is None:
                raise TypeError("batch_size is required when streaming a split view")
            self.stream = BatchStream(source, StreamConfig(batch_size=batch_size, **kwargs))
        self._consumed = self.stream.config.start_batch
        #: set by :class:`StreamLoader` for batches delivered on a device: workers collate into it
        self.ring: BatchRing | None = None

    def __len__(self) -> int:
        return len(self.stream)

    def set_epoch(self, epoch: int) -> None:
        self.stream.config.epoch = int(epoch)
        self.stream.config.start_batch = 0
        self._consumed = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        # a ring takes fixed arrays into its slots (only references travel); a worker otherwise
        # collates into shared-memory tensors; in-process batches are the stream's own arrays
        alloc: RingAllocator | _SharedAllocator | None = None
        if self.ring is not None:
            alloc = RingAllocator(self.ring, worker)
        elif info is not None:
            alloc = _SharedAllocator()
        for batch in self.stream.iter_batches(worker, workers, alloc=alloc):
            if info is None:
                self._consumed += 1
            yield _to_torch(batch if alloc is None else alloc.finish(batch))

    def state_dict(self) -> dict[str, Any]:
        return self.stream.state_dict(self._consumed)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.stream.check_state(state)
        self.stream.config.seed = int(state["seed"])
        self.stream.config.epoch = int(state["epoch"])
        self.stream.config.start_batch = int(state["batches_consumed"])
        self._consumed = self.stream.config.start_batch


class StreamLoader:
    """A DataLoader over a :class:`TorchStream` that knows where it is: exact mid-epoch resume.

    Iterating yields the rank's batches for the current epoch, from the resume point; a completed
    pass advances to the next epoch. ``state_dict()`` records the batches the loop has received
    (not what workers prefetched), so ``load_state_dict`` continues with exactly the next batch.

    Args:
        view: the split to stream (or a ready stream: :class:`BatchStream`,
            :class:`manifests.mixing.MixedStream`).
        batch_size: per-rank batch size (for a split view).
        num_workers: DataLoader worker processes (0: in-process).
        pin_memory: pin batches for fast, asynchronous copies to the GPU (default: when CUDA is
            available). Not used with ``device``.
        prefetch_factor: batches each worker keeps ready.
        device: deliver batches on this device (``"cuda"``, ``"cuda:1"``, ``"cpu"``). Fixed-shape
            arrays then go through a :class:`manifests.ring.BatchRing`: workers collate into
            page-locked shared memory that the GPU copies from directly, on a side stream (no pin
            thread, no per-batch shared-memory segment); the loop's current stream waits for
            each batch's copy. The ring holds ``prefetch_factor + 2`` batches per worker (about
            ``workers × (prefetch_factor + 2) × batch bytes`` of page-locked memory). Default:
            batches stay on the CPU (pinned per ``pin_memory``).
        **kwargs: :class:`StreamConfig` fields (shuffle, seed, epoch, rank, world_size, drop_last,
            lanes, block_shards, prefetch_shards, decode_threads, fetch_threads).
    """

    def __init__(
        self,
        view: Any,
        batch_size: int | None = None,
        *,
        num_workers: int = 2,
        pin_memory: bool | None = None,
        prefetch_factor: int = 2,
        multiprocessing_context: str | None = None,
        device: Any = None,
        **kwargs: Any,
    ) -> None:
        import torch

        self.dataset = TorchStream(view, batch_size, **kwargs)
        self.num_workers = int(num_workers)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self.device = None if device is None else torch.device(device)
        self.prefetch_factor = prefetch_factor
        self.multiprocessing_context = multiprocessing_context
        self._consumed = self.dataset.stream.config.start_batch

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def epoch(self) -> int:
        return self.dataset.stream.config.epoch

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)
        self._consumed = 0

    def _ring(self) -> BatchRing | None:
        """A fresh ring for one pass (``None``: no fixed arrays, a mixture, or no memfd here)."""
        fields = getattr(self.dataset.stream, "ring_fields", None)
        fields = fields() if fields is not None else {}
        if not fields or not ring_supported():
            return None
        slots = self.prefetch_factor + 2 if self.num_workers else 2
        return BatchRing(
            fields,
            self.dataset.stream.config.batch_size,
            max(1, self.num_workers),
            slots,
            pin=self.device is not None and self.device.type == "cuda",
        )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        from torch.utils.data import DataLoader

        self.dataset.stream.config.start_batch = self._consumed
        ring = self._ring() if self.device is not None else None
        self.dataset.ring = ring
        loader = DataLoader(
            self.dataset,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and ring is None,
            prefetch_factor=self.prefetch_factor if self.num_workers else None,
            multiprocessing_context=self.multiprocessing_context if self.num_workers else None,
        )
        mover = DeviceMover(self.device, ring) if self.device is not None else None
        it = iter(loader)
        try:
            for batch in it:
                self._consumed += 1
                yield batch if mover is None else mover(batch)
        finally:
            if mover is not None:
                mover.finish()
            shutdown = getattr(it, "_shutdown_workers", None)
            if shutdown is not None:  # the workers stop before their ring goes away
                shutdown()
            self.dataset.ring = None
            if ring is not None:
                ring.close()
        self.set_epoch(self.epoch + 1)

    def state_dict(self) -> dict[str, Any]:
        return self.dataset.stream.state_dict(self._consumed)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.dataset.load_state_dict(state)
        self._consumed = int(state["batches_consumed"])


def default_num_workers() -> int:
    """A sensible worker count: the CPUs this process may use, minus one for the training loop."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus - 1)
