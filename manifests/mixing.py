"""Weighted mixtures of several built datasets in one deterministic stream (multitask pretraining).

Sources usually differ in modality (ECG windows and chest X-rays cannot share a batch), so a
mixture chooses a *source per global batch*: global batch ``g`` comes from source ``s_g``, drawn
with probability ∝ weight by a generator seeded with ``(seed, epoch)``. Source ``s``'s ``k``-th
turn takes its own stream's global batch ``k`` (each source has its own elastic order, seeded
with the source's position, see :mod:`manifests.stream`); a source that runs out starts its
next cycle (a new shuffle) rather than stopping the mixture. Every rank takes its slice of the
same global batch, so the mixture keeps the single-source guarantees: the same batches for any
number of workers, the same global batches for any world size with the same global batch size,
and exact resume from ``(seed, epoch, batches consumed)``.

Example::

    mix = MixedStream([(ptbxl.split("train"), 2.0), (chapman.split("train"), 1.0)], batch_size=64)
    for batch in mix: ...                      # NumPy batches; batch["mixture_source"] says which
    loader = StreamLoader(mix, num_workers=2)  # PyTorch, resumable
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from manifests.stream import Allocator, BatchStream, EpochPlan, StreamConfig

if TYPE_CHECKING:
    from manifests.reader import SplitView

#: Key added to every mixed batch: the index of the source it came from.
MIX_SOURCE_KEY = "mixture_source"
_MIX_STREAM = 0x6D6978  # "mix": separates the source choice from the sources' own shuffles


@dataclass
class MixConfig:
    """What fixes a mixture's batches (``seed``, ``epoch`` and ``start_batch`` change on resume)."""

    seed: int = 0
    epoch: int = 0
    start_batch: int = 0


class MixedStream:
    """A deterministic weighted mixture of split views, as NumPy batches of one rank.

    Args:
        sources: ``(view, weight)`` pairs; weights are positive and need not sum to 1.
        batch_size: per-rank batch size (the same for every source).
        num_batches: global batches per mixture epoch (default: the sum of the sources' own
            batches per epoch, so each source is seen about once when weights follow sizes).
        **options: :class:`manifests.stream.StreamConfig` fields (shuffle, seed, epoch, rank,
            world_size, drop_last, lanes, block_shards, prefetch_shards, decode_threads,
            fetch_threads, start_batch), as for a single split.
    """

    def __init__(
        self,
        sources: Sequence[tuple[SplitView, float]],
        batch_size: int,
        *,
        num_batches: int | None = None,
        **options: Any,
    ) -> None:
        if not sources:
            raise ValueError("a mixture needs at least one source")
        weights = np.array([float(w) for _, w in sources], dtype=np.float64)
        if not np.all(np.isfinite(weights)) or np.any(weights <= 0):
            raise ValueError(f"mixture weights must be finite and > 0, got {weights.tolist()}")
        self.weights = weights / weights.sum()
        config = StreamConfig(batch_size=batch_size, **options)  # checks every option, once
        # each source streams from its own start; the mixture's start_batch counts mixture batches
        self.streams = [BatchStream(view, replace(config, start_batch=0)) for view, _ in sources]
        self.names = [f"{v.dataset.manifest.get('source')}/{v.name}" for v, _ in sources]
        self.config = MixConfig(seed=config.seed, epoch=config.epoch, start_batch=config.start_batch)
        self._source_batches = [s.plan(epoch=0, stream=1).num_batches for s in self.streams]
        empty = [self.names[i] for i, n in enumerate(self._source_batches) if n == 0]
        if empty:
            raise ValueError(f"mixture sources with no batch (empty, or smaller than one batch): {empty}")
        self.num_batches = int(sum(self._source_batches) if num_batches is None else num_batches)
        if self.num_batches < 0:
            raise ValueError(f"num_batches must be >= 0, got {self.num_batches}")

    def __len__(self) -> int:
        return max(0, self.num_batches - self.config.start_batch)

    def choices(self) -> tuple[np.ndarray, np.ndarray]:
        """``(source of each global batch, that source's turn number)``, int64 (num_batches,)."""
        rng = np.random.default_rng([int(self.config.seed), int(self.config.epoch), _MIX_STREAM])
        source = rng.choice(len(self.streams), size=self.num_batches, p=self.weights).astype(np.int64)
        turn = np.zeros_like(source)
        for s in range(len(self.streams)):
            mask = source == s
            turn[mask] = np.arange(int(mask.sum()))
        return source, turn

    def _source_plan(self, s: int, cycle: int, cache: dict[tuple[int, int], EpochPlan]) -> EpochPlan:
        key = (s, cycle)
        if key not in cache:
            # each source and cycle gets its own shuffle, derived from the mixture's (seed, epoch)
            cache[key] = self.streams[s].plan(
                seed=self.config.seed, epoch=self.config.epoch, stream=(s + 1) * (1 << 20) + cycle + 1
            )
        return cache[key]

    def iter_batches(
        self, worker: int = 0, num_workers: int = 1, alloc: Allocator | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield the mixture's batches ``j >= start_batch`` with ``(j - start_batch) % num_workers == worker``."""
        source, turn = self.choices()
        ids = range(self.config.start_batch + worker, self.num_batches, num_workers)
        plans: dict[tuple[int, int], EpochPlan] = {}
        jobs: list[list[np.ndarray]] = [[] for _ in self.streams]
        for g in ids:
            s, k = int(source[g]), int(turn[g])
            nb = self._source_batches[s]
            plan = self._source_plan(s, k // nb, plans)
            cfg = self.streams[s].config
            jobs[s].append(plan.rank_batch(k % nb, cfg.rank, cfg.world_size))
        runners = [
            stream.run_batches(j, alloc) if j else iter(())
            for stream, j in zip(self.streams, jobs, strict=True)
        ]
        try:
            for g in ids:
                s = int(source[g])
                batch = next(runners[s])
                batch[MIX_SOURCE_KEY] = s
                yield batch
        finally:
            for r in runners:
                close = getattr(r, "close", None)
                if close is not None:
                    close()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.iter_batches()

    def state_dict(self, batches_consumed: int) -> dict[str, Any]:
        return {
            "seed": self.config.seed,
            "epoch": self.config.epoch,
            "batches_consumed": int(batches_consumed),
            "num_batches": self.num_batches,
            "weights": self.weights.tolist(),
            "sources": [s.state_dict(0) for s in self.streams],
        }

    def check_state(self, state: Mapping[str, Any]) -> None:
        here = self.state_dict(0)
        for key in ("num_batches", "weights"):
            if key in state and state[key] != here[key]:
                raise ValueError(
                    f"cannot resume: state has {key}={state[key]!r}, this mixture has {here[key]!r}"
                )
        for mine, theirs in zip(self.streams, state.get("sources", []), strict=False):
            mine.check_state(theirs)
