"""Batch buffers that DataLoader workers fill and the GPU copies from directly: a pinned shared ring.

PyTorch's usual path to the GPU costs the training process a great deal per batch: a worker
writes the batch into a fresh shared-memory segment, the main process maps it (a page fault per
4 KiB on first touch), the DataLoader's pin thread copies it into page-locked memory, and only
then can the copy to the device run asynchronously. On a 16-core H200 machine that path tops out
near 1.3 GB/s of batches for every DataLoader-based reader (``benchmarks/results/stream_gpu.json``,
run 1), far below what the workers decode.

:class:`BatchRing` removes the middle of it. The training process creates one shared-memory file
(``memfd``) holding ``slots`` batch buffers per producer (DataLoader worker), page-locks it once
(``cudaHostRegister``) and keeps it mapped; every worker maps the same file. A worker collates
batch ``n`` straight into its slot ``n % slots`` and sends only a :class:`RingRef`; the training
process starts the copy to the device from the slot (a DMA, no CPU copy, no page faults) and
hands the slot back once that copy has completed. Flow control is one counter per producer in the
file's header: a worker writes its batch ``n`` only when the training process has released its
batch ``n - slots``. With ``slots >= prefetch_factor + 2`` the worker never waits on a slot that
the training process has not already received, so the ring cannot deadlock.

Linux only (``memfd_create``); :func:`ring_supported` says whether it is available.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

_PAGE = 4096


def _align(n: int) -> int:
    return (n + _PAGE - 1) // _PAGE * _PAGE


def ring_supported() -> bool:
    """True where a ring can be made (Linux ``memfd_create`` and ``/proc``)."""
    return hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")


@dataclass(frozen=True)
class RingRef:
    """What a worker sends for one array of a batch written into the ring (not a sequence, so the
    DataLoader's conversion passes it through untouched)."""

    producer: int
    n: int
    name: str
    rows: int


class RingTimeout(RuntimeError):
    """A producer waited too long for a slot: the consuming process stopped releasing them."""


class BatchRing:
    """``slots`` batch buffers per producer in one shared-memory file, optionally page-locked.

    Args:
        fields: the fixed-shape arrays of a batch: ``{name: (per-sample shape, dtype)}``.
        batch_size: samples per batch (a slot holds one full batch of every field).
        producers: how many processes (or in-process streams) write batches.
        slots: buffers per producer.
        pin: page-lock the file for asynchronous copies to CUDA devices (needs CUDA); when the
            registration fails the ring still works, and copies are synchronous.

    Picklable: a copy in another process maps the same file on first use (inherited descriptor
    after ``fork``, ``/proc/<pid>/fd`` otherwise).
    """

    def __init__(
        self,
        fields: Mapping[str, tuple[tuple[int, ...], Any]],
        batch_size: int,
        producers: int,
        slots: int,
        *,
        pin: bool = False,
    ) -> None:
        if not ring_supported():
            raise OSError("a batch ring needs Linux memfd_create and /proc")
        if batch_size < 1 or producers < 1 or slots < 2:
            raise ValueError(f"bad ring size: batch {batch_size}, producers {producers}, slots {slots}")
        self.layout: dict[str, tuple[int, tuple[int, ...], str]] = {}
        offset = 0
        for name, (shape, dtype) in fields.items():
            dt = np.dtype(dtype)
            self.layout[name] = (offset, tuple(int(s) for s in shape), dt.str)
            offset += _align(batch_size * math.prod(shape) * dt.itemsize)
        self.batch_size = int(batch_size)
        self.producers = int(producers)
        self.slots = int(slots)
        self.slot_bytes = max(offset, _PAGE)
        self.header_bytes = _align(8 * self.producers)
        self.size = self.header_bytes + self.producers * self.slots * self.slot_bytes
        self.owner = os.getpid()
        self.fd = os.memfd_create("climb-batch-ring", 0)  # no CLOEXEC: forked workers inherit it
        os.ftruncate(self.fd, self.size)
        self.ino = os.fstat(self.fd).st_ino
        self._maps: dict[int, mmap.mmap] = {}
        self._ptr = 0
        self.pinned = False
        if pin:
            self._pin()

    # ---- mapping -------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state

    def _mapping(self) -> mmap.mmap:
        pid = os.getpid()
        mm = self._maps.get(pid)
        if mm is not None:
            return mm
        fd = self.fd
        opened = -1
        try:
            same = os.fstat(fd).st_ino == self.ino
        except OSError:
            same = False
        if not same:  # another process (spawned): reach the owner's file through /proc
            opened = fd = os.open(f"/proc/{self.owner}/fd/{self.fd}", os.O_RDWR)
        try:
            mm = mmap.mmap(fd, self.size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            if opened >= 0:
                os.close(opened)
        # a forked child uses only its own mapping: CUDA may mark page-locked memory "don't
        # fork". The parent's mapping object stays referenced and is never closed here: its
        # address may be free in the child, and unmapping it could unmap this new mapping
        self._maps[pid] = mm
        return mm

    def _pin(self) -> None:
        import torch

        mm = self._mapping()
        ptr = np.frombuffer(mm, dtype=np.uint8).ctypes.data
        code = int(torch.cuda.cudart().cudaHostRegister(ptr, self.size, 0))
        if code == 0:
            self._ptr, self.pinned = ptr, True

    def close(self) -> None:
        """Unpin and unmap (the owner); idempotent. Call only when no copy from the ring is in flight."""
        if os.getpid() == self.owner and self.pinned:
            import torch

            torch.cuda.cudart().cudaHostUnregister(self._ptr)
            self.pinned = False
        mm = self._maps.pop(os.getpid(), None)
        if mm is not None:
            with contextlib.suppress(BufferError):  # a view still alive: unmapped when it goes
                mm.close()
        if os.getpid() == self.owner and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # ---- slots ---------------------------------------------------------------------------

    def _released(self) -> np.ndarray:
        return np.ndarray((self.producers,), dtype=np.int64, buffer=self._mapping(), offset=0)

    def array(self, producer: int, n: int, name: str, rows: int) -> np.ndarray:
        """The buffer of ``name`` in producer ``producer``'s slot for its batch ``n`` (``rows`` samples)."""
        offset, shape, dtype = self.layout[name]
        base = self.header_bytes + (producer * self.slots + n % self.slots) * self.slot_bytes + offset
        return np.ndarray((rows, *shape), dtype=np.dtype(dtype), buffer=self._mapping(), offset=base)

    def fits(self, name: str, shape: tuple[int, ...], dtype: Any) -> bool:
        spec = self.layout.get(name)
        return (
            spec is not None
            and tuple(shape[1:]) == spec[1]
            and np.dtype(dtype).str == spec[2]
            and 0 <= shape[0] <= self.batch_size
        )

    def wait_free(self, producer: int, n: int, timeout_s: float = 600.0) -> None:
        """Block until the slot for ``producer``'s batch ``n`` has been released."""
        released = self._released()
        need = n - self.slots + 1
        if released[producer] >= need:
            return
        deadline = time.monotonic() + timeout_s
        pause = 1e-5
        while released[producer] < need:
            if time.monotonic() > deadline:
                raise RingTimeout(
                    f"batch ring: producer {producer} waited {timeout_s:.0f} s for a free slot for "
                    f"batch {n}; the training process stopped taking batches"
                )
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)

    def release(self, producer: int, n: int) -> None:
        """The consumer is done with ``producer``'s batch ``n`` (and every earlier one)."""
        released = self._released()
        released[producer] = max(int(released[producer]), n + 1)


class RingAllocator:
    """A producer's batch allocator (:data:`manifests.stream.Allocator`) writing into its ring slots.

    Arrays that do not fit the ring's layout get ordinary buffers and travel the usual way.
    After a batch is collated, :meth:`finish` swaps the ring arrays for :class:`RingRef` s.
    """

    def __init__(self, ring: BatchRing, producer: int) -> None:
        self.ring = ring
        self.producer = producer
        self.n = 0
        self.refs: dict[str, RingRef] = {}

    def __call__(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        if not self.ring.fits(name, shape, dtype) or name in self.refs:
            return np.empty(shape, dtype=dtype)
        if not self.refs:  # the first ring array of this batch: wait until its slot is free
            self.ring.wait_free(self.producer, self.n)
        self.refs[name] = RingRef(self.producer, self.n, name, int(shape[0]))
        return self.ring.array(self.producer, self.n, name, int(shape[0]))

    def finish(self, batch: dict[str, Any]) -> dict[str, Any]:
        if not self.refs:
            return batch
        out = {k: self.refs.get(k, v) for k, v in batch.items()}
        self.refs = {}
        self.n += 1
        return out


class DeviceMover:
    """Moves batches to ``device`` in the consuming process: ring slots by DMA, other tensors with
    ``.to``; releases each slot once its copy has completed.

    On CUDA the copies run on a side stream; the current stream waits for them, so work queued
    on it after a batch is returned sees the batch. Off CUDA (tests, CPU training) a slot is
    copied into a fresh tensor and released at once.
    """

    def __init__(self, device: Any, ring: BatchRing | None) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.ring = ring
        self.cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.pending: deque[tuple[Any, list[RingRef]]] = deque()

    def _copy(self, src: Any) -> Any:
        if not self.cuda:
            return src.clone() if src.device == self.device else src.to(self.device)
        with self.torch.cuda.stream(self.stream):
            dst = src.to(self.device, non_blocking=True)
        dst.record_stream(self.torch.cuda.current_stream(self.device))
        return dst

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        torch = self.torch
        out: dict[str, Any] = {}
        refs: list[RingRef] = []
        for key, value in batch.items():
            if isinstance(value, RingRef):
                assert self.ring is not None
                src = torch.from_numpy(self.ring.array(value.producer, value.n, value.name, value.rows))
                out[key] = self._copy(src)
                refs.append(value)
            elif isinstance(value, torch.Tensor):
                out[key] = value.to(self.device, non_blocking=self.cuda and value.is_pinned())
            else:
                out[key] = value
        if self.cuda:
            event = torch.cuda.Event()
            event.record(self.stream)
            torch.cuda.current_stream(self.device).wait_stream(self.stream)
            self.pending.append((event, refs))
            # slots of earlier batches go back once their copies are done (they finish on their
            # own, so this wait is bounded); the newest stays in flight while the loop works
            self._drain(keep=1)
        else:
            self._release(refs)
        return out

    def _release(self, refs: list[RingRef]) -> None:
        for ref in refs:
            assert self.ring is not None
            self.ring.release(ref.producer, ref.n)

    def finish(self) -> None:
        """Wait for the copies in flight and release their slots."""
        self._drain(keep=0)

    def _drain(self, keep: int) -> None:
        """Wait for all but the newest ``keep`` copies in flight and release their slots."""
        while len(self.pending) > keep:
            done, refs = self.pending.popleft()
            done.synchronize()
            self._release(refs)
