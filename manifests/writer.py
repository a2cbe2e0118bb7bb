"""The shard writer: one (split, shard index) of samples → Parquet rows + a Zarr v3 group, published safely.

Layout of one shard (paths relative to the dataset root)::

    rows/<split>/part-<index:05d>.parquet        one row per sample (ids, labels, metadata, pointer)
    arrays/<split>.zarr/<index:05d>/zarr.json    group; attributes["climb"] = shard metadata
    arrays/<split>.zarr/<index:05d>/<name>/      fixed-shape array, shape (N, *sample_shape)
    arrays/<split>.zarr/<index:05d>/<name>/values   ragged array: flat values (sum of sizes,)
    arrays/<split>.zarr/<index:05d>/<name>/offsets  int64 (N + 1,), element offsets into values
    arrays/<split>.zarr/<index:05d>/<name>/shapes   int64 (N, ndim), each sample's shape

Why one Zarr group per write task (and not one split-wide array whose shard boundaries align with
task boundaries): a split-wide array needs its length before any task writes, a single
``zarr.json`` that many tasks would race to create, and an index→shard arithmetic that breaks as
soon as one task quarantines an item (tasks would no longer hold a fixed number of samples).
A group per task has exactly one writer, its own metadata, and can be written, hashed and
published (or thrown away) as a unit. Each array in the group is one Zarr shard (the sharding
codec's shard shape = the whole array), so one task writes one shard file per array: a reader
streams it with one sequential GET, and random access reads one inner chunk through the shard
index. ``publish`` writes the split's root group ``arrays/<split>.zarr/zarr.json`` so the whole
split is also an ordinary Zarr hierarchy for other tools.

Publishing: the whole shard is encoded in memory first (bytes per file), hashed, then written:

* local paths: every file goes into a temporary directory / file (``.tmp-…``) and is published by
  ``os.replace`` (arrays group first, rows file last). A killed write leaves only a temporary name
  that no manifest lists; ``publish_dataset`` sweeps such leftovers. Files are not fsynced one by
  one (that was ~17 journal commits per shard, a large share of a shard's wall time): a killed
  *process* loses nothing that reached the page cache, and against a power cut
  ``publish_dataset`` syncs the disk once before it writes ``manifest.json``, while a rerun
  re-hashes every shard against its done record and rewrites any that came back torn.
* object stores (``s3://``, ``gs://``, ``memory://``…): there is no rename (fsspec ``mv`` on S3 is
  copy + delete, neither atomic nor cheap). Each object is PUT once, to its final key, only after
  the shard's bytes are complete and hashed; a single PUT is atomic (an object is either absent or
  whole), so no torn *object* can exist. A shard as a *set* of objects becomes visible only through
  ``manifest.json``, which ``publish_dataset`` writes last: a reader never sees a half-written shard.

Determinism: samples are sorted by ``sample_id``; Zarr metadata holds no timestamps or random ids;
Parquet carries only pyarrow's version string. The same samples give byte-identical files on every
backend (local, Dask, Beam), which is what lets ``sha256`` double as a rerun check.

Storage format choice (measured on the build machine, see ``benchmarks/results/format_choice.json``):
see :data:`DEFAULT_FORMAT`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys
import threading
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from manifests.schema import (
    ARRAYS_DIR,
    COL_OFFSET,
    COL_SAMPLE_ID,
    COL_SHARD,
    COL_SOURCE,
    COL_SPLIT,
    COL_SUBJECT_ID,
    ROWS_DIR,
    SPLITS,
    Sample,
    ShardRecord,
)

#: Version of the on-disk shard layout; stored in every shard group's attributes.
SHARD_FORMAT_VERSION = 1
#: Key under the Zarr group attributes that holds the shard metadata.
SHARD_ATTRS_KEY = "climb"
#: Row columns every shard has, in order (``source`` only when the writer is given one).
BASE_COLUMNS = (COL_SAMPLE_ID, COL_SUBJECT_ID, COL_SOURCE, COL_SPLIT, COL_SHARD, COL_OFFSET)
#: Ragged sub-array names.
RAGGED_VALUES, RAGGED_OFFSETS, RAGGED_SHAPES = "values", "offsets", "shapes"
#: Dtypes the writer accepts (the canonical forms' dtypes plus the obvious neighbours).
SUPPORTED_DTYPES = frozenset(
    np.dtype(d)
    for d in (
        "bool",
        "int8",
        "uint8",
        "int16",
        "uint16",
        "int32",
        "uint32",
        "int64",
        "float16",
        "float32",
        "float64",
    )
)

Compression = Literal["none", "zstd", "lz4", "blosc-lz4", "blosc-zstd", "delta-zstd"]

#: Dtypes that :attr:`ShardFormat.image_compression` applies to (pixel data: grey uint16, RGB uint8).
IMAGE_DTYPES = frozenset({np.dtype("uint8"), np.dtype("uint16")})


@dataclass(frozen=True)
class ShardFormat:
    """How arrays are chunked and compressed inside a shard.

    Attributes:
        compression: ``none``; ``zstd`` (zarr's ``zstd`` codec); ``lz4``/``blosc-lz4``/
            ``blosc-zstd`` (zarr's ``blosc`` codec with byte shuffle); ``delta-zstd`` (numcodecs'
            ``delta`` filter, then ``zstd``: lossless prediction from the previous value).
        level: compression level (zstd 1–22, blosc 1–9); ignored for ``none``.
        inner_chunk_bytes: target uncompressed size of one inner chunk in bytes. A fixed-shape
            array's inner chunk holds ``max(1, inner_chunk_bytes // sample_bytes)`` whole samples;
            a ragged array's values are chunked by this many bytes.
        image_compression: the compression for pixel arrays (dtypes in :data:`IMAGE_DTYPES`);
            ``None``: ``compression`` for every array.
        image_level: its level.
    """

    compression: Compression = "blosc-lz4"
    level: int = 5
    inner_chunk_bytes: int = 256 << 10
    image_compression: Compression | None = "delta-zstd"
    image_level: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShardFormat:
        return cls(**data)

    def _choice(self, dtype: np.dtype) -> tuple[str, int]:
        if self.image_compression is not None and np.dtype(dtype) in IMAGE_DTYPES:
            return self.image_compression, self.image_level
        return self.compression, self.level

    def filters(self, dtype: np.dtype) -> tuple[Any, ...]:
        """The zarr v3 array→array codecs for this format and dtype (the delta filter, or none).

        The delta filter applies to integer dtypes only (other dtypes get plain zstd).
        """
        if self._choice(dtype)[0] != "delta-zstd" or np.dtype(dtype).kind not in "iu":
            return ()
        import warnings

        # numcodecs.delta is zarr-python's (and numcodecs') codec, not in the v3 core spec; the
        # reader decodes it itself, so the warning says nothing new on every shard
        warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr version 3")
        from zarr.codecs.numcodecs import Delta

        return (Delta(dtype=np.dtype(dtype).str),)

    def compressors(self, dtype: np.dtype) -> tuple[Any, ...]:
        """The zarr v3 bytes→bytes codecs for this format and dtype."""
        from zarr.codecs import BloscCodec, ZstdCodec

        compression, level = self._choice(dtype)
        if compression == "none":
            return ()
        if compression in ("zstd", "delta-zstd"):
            return (ZstdCodec(level=level),)
        cname = "zstd" if compression == "blosc-zstd" else "lz4"
        return (BloscCodec(cname=cname, clevel=level, shuffle="shuffle", typesize=dtype.itemsize),)


#: Default format, chosen from ``benchmarks/stream_format_choice.py`` on the 2-core build machine
#: (``benchmarks/results/format_choice.json``, which records the measurements and the reasons):
#:
#: * signals (ECG int16 and other non-pixel arrays): blosc-lz4 (level 5, byte shuffle). On
#:   ECG-like int16 it stores 1.85× smaller and decodes several times faster than zstd-1 (1.5×),
#:   zstd-3 (1.8×) or blosc-zstd-1 (1.9×): local streaming is bound by decode CPU (every peer is).
#: * pixels (uint8 / uint16 images): delta (numcodecs) + zstd-1, about 2× smaller on
#:   radiograph-like images, where plain zstd or blosc stay at 1.0–1.5× because sensor noise fills
#:   the low bits; predicting each pixel from the previous one leaves only the noise to code. Images
#:   are big (256 KB–2 MB each), so bytes matter on object stores; the delta is undone with one
#:   prefix sum per chunk. JPEG-LS (pyjpegls) compresses slightly more (2.3×) but decodes ~18× slower.
#:
#: 256 KiB inner chunks hold one image or two ECG windows: random access reads one small chunk,
#: while whole-shard decoding is insensitive to the chunk size (a Python call per chunk is ~µs).
#: Shards themselves are sized by the plan (the benchmarks use 64 MB, the low end of what the
#: peers use: one GET per shard stays efficient on object stores while a worker holding a few
#: decoded shards stays under a few hundred MB).
DEFAULT_FORMAT = ShardFormat(
    compression="blosc-lz4",
    level=5,
    inner_chunk_bytes=256 << 10,
    image_compression="delta-zstd",
    image_level=1,
)


class ShardWriteError(ValueError):
    """Samples that cannot form a shard; the message names the shard, sample and array."""


def shard_name(index: int) -> str:
    """The zero-padded name of shard ``index`` (``part-00007`` → ``"00007"``)."""
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise TypeError(f"shard index must be a non-negative int, got {index!r}")
    return f"{index:05d}"


def rows_path(split: str, index: int) -> str:
    """Path of a shard's rows file relative to the dataset root.

    >>> rows_path("train", 3)
    'rows/train/part-00003.parquet'
    """
    return f"{ROWS_DIR}/{split}/part-{shard_name(index)}.parquet"


def arrays_path(split: str, index: int) -> str:
    """Path of a shard's Zarr group relative to the dataset root.

    >>> arrays_path("val", 12)
    'arrays/val.zarr/00012'
    """
    return f"{ARRAYS_DIR}/{split}.zarr/{shard_name(index)}"


# ---------------------------------------------------------------------------------------------
# Encoding (pure: samples → {relative path: bytes})
# ---------------------------------------------------------------------------------------------


def _check_samples(split: str, index: int, samples: Sequence[Sample]) -> list[Sample]:
    where = f"shard {split}/{shard_name(index)}"
    seen: set[str] = set()
    for s in samples:
        if not isinstance(s, Sample):
            raise ShardWriteError(f"{where}: expected Sample, got {type(s).__name__}")
        if s.split != split:
            raise ShardWriteError(f"{where}: sample {s.sample_id!r} belongs to split {s.split!r}")
        if s.sample_id in seen:
            raise ShardWriteError(f"{where}: duplicate sample_id {s.sample_id!r}")
        seen.add(s.sample_id)
    ordered = sorted(samples, key=lambda s: s.sample_id)
    if ordered:
        names = sorted(ordered[0].arrays)
        for s in ordered:
            if sorted(s.arrays) != names:
                raise ShardWriteError(
                    f"{where}: sample {s.sample_id!r} has arrays {sorted(s.arrays)}, "
                    f"the shard's first sample has {names}"
                )
    return ordered


#: A file's bytes: one ``bytes``, or its parts in order (a shard's encoded chunks, index and
#: checksum), written and hashed part by part instead of joined into one copy.
FileBytes = bytes | list[bytes]

_STATS_BLOCK = 1 << 20  # elements per float64 block: bounded scratch memory for any shard size


def _array_stats(values: np.ndarray) -> dict[str, float | int]:
    """Mergeable statistics of all values of one array of a shard: count, sum, sum of squares, min, max.

    One pass over the stacked (or flattened ragged) values, through float64 blocks of bounded
    size; integer arrays up to 16 bits are summed exactly (see the comment below).
    """
    flat = values.reshape(-1)
    count = int(flat.size)
    if not count:
        return {"count": 0, "sum": 0.0, "sum_sq": 0.0, "min": None, "max": None}
    # One pass through float64 blocks of bounded size. Integers of 16 bits or less are summed
    # exactly: every value, square and partial sum of a block of 2**20 of them is an integer
    # below 2**53, so the (BLAS) sums are exact in any order, and blocks add up as Python ints
    # (3x faster than an int64 einsum, the same numbers). Others are summed in float64.
    exact = flat.dtype.kind in "biu" and flat.dtype.itemsize <= 2
    total: float | int = 0
    total_sq: float | int = 0
    block = np.empty(min(count, _STATS_BLOCK), dtype=np.float64)
    for start in range(0, count, _STATS_BLOCK):
        part = block[: min(_STATS_BLOCK, count - start)]
        np.copyto(part, flat[start : start + _STATS_BLOCK], casting="unsafe")
        if exact:
            total += int(part.sum())
            total_sq += int(part @ part)
        else:
            total += float(part.sum())
            total_sq += float(np.einsum("i,i->", part, part))  # not np.dot: BLAS threads thrash on busy cores
    return {
        "count": count,
        "sum": float(total),
        "sum_sq": float(total_sq),
        "min": float(flat.min()),
        "max": float(flat.max()),
    }


def _chunk_encoders(arr: Any) -> list[Any] | None:
    """Per-chunk encode steps of a sharded zarr array, as plain numcodecs calls; None if not supported.

    Supported: one ``sharding_indexed`` codec at the end index location with the default index
    codecs (little-endian bytes + crc32c); inner chunks spanning every dimension but the first
    (so the inner-chunk grid of a shard is one row, whose Morton order is plain order); inner
    codecs that are numcodecs array filters (delta), the ``bytes`` codec, ``blosc`` and ``zstd``.
    The encoders are the numcodecs objects zarr's own codecs wrap, so the bytes are zarr's;
    ``tests/manifests/test_writer.py`` checks them byte for byte against zarr's own writer.
    """
    from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec, ZstdCodec
    from zarr.codecs.numcodecs._codecs import _NumcodecsArrayArrayCodec
    from zarr.codecs.sharding import ShardingCodecIndexLocation

    codecs = arr.metadata.codecs
    if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
        return None
    sharding = codecs[0]
    index = sharding.index_codecs
    if (
        sharding.index_location != ShardingCodecIndexLocation.end
        or len(index) != 2
        or not isinstance(index[0], BytesCodec)
        or index[0].endian is None
        or index[0].endian.value != "little"
        or not isinstance(index[1], Crc32cCodec)
        or tuple(sharding.chunk_shape[1:]) != tuple(arr.shape[1:])
    ):
        return None
    steps: list[Any] = []
    for codec in sharding.codecs:
        if isinstance(codec, _NumcodecsArrayArrayCodec):
            steps.append(("array", codec._codec.encode))
        elif isinstance(codec, BytesCodec):
            order = "<" if codec.endian is None or codec.endian.value == "little" else ">"
            steps.append(("bytes", order))
        elif isinstance(codec, BloscCodec):
            steps.append(("buffer", codec._blosc_codec.encode))
        elif isinstance(codec, ZstdCodec):
            steps.append(("buffer", codec._zstd_codec.encode))
        else:
            return None
    return steps


def _encode_chunk(block: np.ndarray, steps: list[Any]) -> bytes:
    data: Any = block
    for kind, step in steps:
        if kind == "array":
            data = step(data)
        elif kind == "bytes":
            data = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder(step)).tobytes()
        else:
            data = step(data)
    return bytes(data)


def _write_sharded(arr: Any, blocks: Iterator[np.ndarray], n_chunks: int, out: dict[str, FileBytes]) -> bool:
    """Encode a one-shard array chunk by chunk into ``out`` (store key -> the file's parts); False if unsupported.

    Each block is one inner chunk (the last one already padded with the fill value); blocks are
    consumed one at a time, so the shard never exists uncompressed in memory.
    """
    import google_crc32c

    steps = _chunk_encoders(arr)
    if steps is None:
        return False
    parts: list[bytes] = []
    index = np.empty((n_chunks, *([1] * (arr.ndim - 1)), 2), dtype="<u8")
    offset = 0
    for k, block in enumerate(blocks):
        encoded = _encode_chunk(block, steps)
        index.reshape(n_chunks, 2)[k] = (offset, len(encoded))
        offset += len(encoded)
        parts.append(encoded)
    index_bytes = index.tobytes()
    parts.append(index_bytes)
    parts.append(np.uint32(google_crc32c.value(index_bytes)).astype("<u4").tobytes())
    key = arr.metadata.encode_chunk_key((0,) * arr.ndim)
    out[f"{arr.path}/{key}"] = parts  # written part by part: the shard is never copied into one buffer
    return True


def _chunk_blocks(
    arrs: Sequence[np.ndarray], per_chunk: int, n_chunks: int, fill: Any
) -> Iterator[np.ndarray]:
    """Inner chunks of stacked samples: ``per_chunk`` samples each, the last padded with ``fill``."""
    for k in range(n_chunks):
        part = arrs[k * per_chunk : (k + 1) * per_chunk]
        block = np.stack(part)
        if len(part) < per_chunk:
            pad = np.full((per_chunk - len(part), *block.shape[1:]), fill, dtype=block.dtype)
            block = np.concatenate([block, pad])
        yield block


def _merge_array_stats(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    counted = [p for p in parts if p["count"]]
    if not counted:
        return _array_stats(np.zeros(0))
    return {
        "count": sum(p["count"] for p in counted),
        "sum": float(sum(p["sum"] for p in counted)),
        "sum_sq": float(sum(p["sum_sq"] for p in counted)),
        "min": min(p["min"] for p in counted),
        "max": max(p["max"] for p in counted),
    }


def _encode_arrays(
    split: str,
    index: int,
    samples: Sequence[Sample],
    ragged: Collection[str] | None,
    fmt: ShardFormat,
    columns: Mapping[str, str],
    source: str | None,
) -> dict[str, FileBytes]:
    import zarr

    where = f"shard {split}/{shard_name(index)}"
    layouts: dict[str, dict[str, Any]] = {}
    store_dict: dict[str, Any] = {}
    direct: dict[str, FileBytes] = {}  # shard bytes encoded here, not through zarr's async pipeline
    store = zarr.storage.MemoryStore(store_dict)
    names = sorted(samples[0].arrays) if samples else []
    n = len(samples)
    group = zarr.create_group(store=store, zarr_format=3, overwrite=True)
    with zarr.config.set({"array.write_empty_chunks": True}):
        for name in names:
            arrs = []
            for s in samples:
                a = np.asarray(s.arrays[name])
                if a.dtype not in SUPPORTED_DTYPES:
                    raise ShardWriteError(
                        f"{where}: sample {s.sample_id!r} array {name!r} has unsupported dtype {a.dtype}"
                    )
                arrs.append(a)
            dtype, ndim = arrs[0].dtype, arrs[0].ndim
            for s, a in zip(samples, arrs, strict=True):
                if a.dtype != dtype or a.ndim != ndim:
                    raise ShardWriteError(
                        f"{where}: sample {s.sample_id!r} array {name!r} is {a.dtype} with {a.ndim} dims; "
                        f"the shard's first sample has {dtype} with {ndim} dims"
                    )
            shapes = {a.shape for a in arrs}
            is_ragged = (ragged is not None and name in ragged) or len(shapes) > 1
            info: dict[str, Any] = {"dtype": dtype.name}
            if not is_ragged:
                sample_shape = arrs[0].shape
                sample_bytes = max(1, int(np.prod(sample_shape, dtype=np.int64)) * dtype.itemsize)
                per_chunk = _balanced_chunk(n, fmt.inner_chunk_bytes // sample_bytes)
                full = (n, *sample_shape)
                chunk = (per_chunk, *(max(1, d) for d in sample_shape))
                arr = group.create_array(
                    name,
                    shape=full,
                    dtype=dtype,
                    chunks=chunk,
                    shards=_shard_shape(full, chunk),
                    filters=fmt.filters(dtype),
                    compressors=fmt.compressors(dtype),
                    fill_value=_fill(dtype),
                )
                n_chunks = -(-n // per_chunk)
                chunk_stats: list[dict[str, Any]] = []

                def blocks(
                    arrs: list[np.ndarray] = arrs,
                    per_chunk: int = per_chunk,
                    n_chunks: int = n_chunks,
                    dtype: np.dtype = dtype,
                    chunk_stats: list = chunk_stats,
                ) -> Iterator[np.ndarray]:
                    for k, block in enumerate(_chunk_blocks(arrs, per_chunk, n_chunks, _fill(dtype))):
                        real = min(per_chunk, len(arrs) - k * per_chunk)
                        chunk_stats.append(_array_stats(block[:real]))
                        yield block

                if n and not _write_sharded(arr, blocks(), n_chunks, direct):
                    stacked = np.stack(arrs)
                    arr[...] = stacked
                    chunk_stats[:] = [
                        _array_stats(stacked[k * per_chunk : (k + 1) * per_chunk]) for k in range(n_chunks)
                    ]  # per inner chunk, as the direct path sums them: the same float sums either way
                info.update(stats=_merge_array_stats(chunk_stats), layout="fixed", shape=list(sample_shape))
            else:
                sub = group.create_group(name)
                sizes = np.array([a.size for a in arrs], dtype=np.int64)
                offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
                flat = np.concatenate([a.ravel() for a in arrs]) if n else np.zeros(0, dtype=dtype)
                total = int(offsets[-1])
                per_chunk = _balanced_chunk(total, fmt.inner_chunk_bytes // dtype.itemsize)
                values = sub.create_array(
                    RAGGED_VALUES,
                    shape=(total,),
                    dtype=dtype,
                    chunks=(per_chunk,),
                    shards=_shard_shape((total,), (per_chunk,)),
                    filters=fmt.filters(dtype),
                    compressors=fmt.compressors(dtype),
                    fill_value=_fill(dtype),
                )
                n_chunks = -(-total // per_chunk)
                flat_blocks = (
                    np.concatenate([part, np.full(per_chunk - part.size, _fill(dtype), dtype=dtype)])
                    if part.size < per_chunk
                    else part
                    for part in (flat[k * per_chunk : (k + 1) * per_chunk] for k in range(n_chunks))
                )
                if total and not _write_sharded(values, flat_blocks, n_chunks, direct):
                    values[...] = flat
                off = sub.create_array(
                    RAGGED_OFFSETS,
                    shape=(n + 1,),
                    dtype=np.int64,
                    chunks=(n + 1,),
                    compressors=(),
                    fill_value=0,
                )
                off[...] = offsets
                shp = sub.create_array(
                    RAGGED_SHAPES,
                    shape=(n, ndim),
                    dtype=np.int64,
                    chunks=(max(n, 1), max(ndim, 1)),
                    compressors=(),
                    fill_value=0,
                )
                if n and ndim:
                    shp[...] = np.array([a.shape for a in arrs], dtype=np.int64).reshape(n, ndim)
                info.update(stats=_array_stats(flat), layout="ragged", ndim=ndim)
            layouts[name] = info
    meta = {
        "format_version": SHARD_FORMAT_VERSION,
        "split": split,
        "index": index,
        "samples": n,
        "source": source,
        "arrays": layouts,
        "columns": dict(columns),
        "storage": fmt.to_dict(),
    }
    group.attrs.put({SHARD_ATTRS_KEY: meta})
    files: dict[str, FileBytes] = {key: _to_bytes(buf) for key, buf in store_dict.items()}
    files.update(direct)
    return dict(sorted(files.items()))


def _balanced_chunk(n: int, target: int) -> int:
    """Samples per inner chunk: at most ``target``, spread evenly so the last chunk is nearly full.

    Zarr pads the shard to whole inner chunks; equal chunks keep that padding under one sample per
    chunk instead of up to a whole chunk.

    >>> _balanced_chunk(48, 34), _balanced_chunk(10, 1), _balanced_chunk(0, 8)
    (24, 1, 1)
    """
    target = max(1, target)
    if n <= 0:
        return 1
    n_chunks = -(-n // target)
    return -(-n // n_chunks)


def _shard_shape(full: tuple[int, ...], chunk: tuple[int, ...]) -> tuple[int, ...]:
    """One Zarr shard covers the whole array (rounded up to whole inner chunks)."""
    return tuple(max(c, -(-f // c) * c) for f, c in zip(full, chunk, strict=True))


def _fill(dtype: np.dtype) -> Any:
    return False if dtype == np.bool_ else 0


def _to_bytes(buf: Any) -> bytes:
    return buf.to_bytes() if hasattr(buf, "to_bytes") else bytes(buf)


_ARROW_PROBED = False


class _NoPandasForThisThread:
    """A meta-path finder that fails ``import pandas`` in one thread only (the probing one)."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if threading.get_ident() == self.thread and (name == "pandas" or name.startswith("pandas.")):
            raise ImportError("pandas is not imported for pyarrow's type probe")
        return None


def arrow_without_pandas_probe() -> None:
    """Spare this process pyarrow's import of pandas (~0.5 s of CPU) when it never needs pandas.

    pyarrow's first ``pa.array()`` imports pandas only to ask whether its argument is a pandas
    object. That import happens in every build worker and on the serial publish step. Here the
    first call is made while ``import pandas`` fails in this thread (other threads import as
    usual), so pyarrow records "no pandas"; pyarrow retries the import when a caller really
    needs it (``to_pandas()``), which ``tests/manifests/test_writer.py`` checks. A process that
    already imported pandas is left alone.
    """
    global _ARROW_PROBED
    if _ARROW_PROBED:
        return
    _ARROW_PROBED = True
    if "pandas" in sys.modules:
        return
    blocker = _NoPandasForThisThread()
    sys.meta_path.insert(0, blocker)  # type: ignore[arg-type]
    try:
        pa.array([0])
    finally:
        sys.meta_path.remove(blocker)  # type: ignore[arg-type]


def _encode_rows(
    split: str, index: int, samples: Sequence[Sample], source: str | None
) -> tuple[bytes, dict[str, str]]:
    arrow_without_pandas_probe()
    where = f"shard {split}/{shard_name(index)}"
    base = [
        COL_SAMPLE_ID,
        COL_SUBJECT_ID,
        *([COL_SOURCE] if source is not None else []),
        COL_SPLIT,
        COL_SHARD,
        COL_OFFSET,
    ]
    extra: list[str] = []
    for s in samples:
        for key in s.row:
            if key in BASE_COLUMNS:
                raise ShardWriteError(
                    f"{where}: sample {s.sample_id!r} row uses reserved column name {key!r}"
                )
            if key not in extra:
                extra.append(key)
    extra.sort()
    n = len(samples)
    cols: dict[str, pa.Array] = {
        COL_SAMPLE_ID: pa.array([s.sample_id for s in samples], type=pa.string()),
        COL_SUBJECT_ID: pa.array([s.subject_id for s in samples], type=pa.string()),
    }
    if source is not None:
        cols[COL_SOURCE] = pa.array([source] * n, type=pa.string())
    cols[COL_SPLIT] = pa.array([split] * n, type=pa.string())
    cols[COL_SHARD] = pa.array([index] * n, type=pa.int32())
    cols[COL_OFFSET] = pa.array(np.arange(n, dtype=np.int32), type=pa.int32())
    for key in extra:
        values = [_plain(s.row.get(key)) for s in samples]
        try:
            cols[key] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ShardWriteError(
                f"{where}: row column {key!r} has mixed or unsupported values: {exc}"
            ) from None
    table = pa.table({k: cols[k] for k in [*base, *extra]})
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", write_statistics=True, store_schema=True)
    return sink.getvalue(), {f.name: str(f.type) for f in table.schema}


_SCALARS = (int, float, str, bool, type(None))


def _plain(value: Any) -> Any:
    """NumPy scalars/arrays → Python values, so Arrow infers the same types everywhere."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is list and all(type(v) in _SCALARS for v in value):
        return value
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def encode_shard(
    split: str,
    index: int,
    samples: Sequence[Sample],
    *,
    source: str | None = None,
    ragged: Collection[str] | None = None,
    fmt: ShardFormat = DEFAULT_FORMAT,
) -> dict[str, bytes]:
    """Encode one shard into its files, in memory; nothing is written.

    Args:
        split: one of :data:`~manifests.schema.SPLITS`; every sample must belong to it.
        index: shard index within the split (>= 0).
        samples: the shard's samples, in any order (they are sorted by ``sample_id``).
        source: value of the ``source`` row column; ``None`` leaves the column out.
        ragged: array names stored ragged even when every sample has the same shape (an array
            whose shapes differ within the shard is always ragged).
        fmt: chunking and compression.

    Returns:
        ``{path relative to the dataset root: file bytes}``, arrays files first, rows file last.

    Raises:
        ShardWriteError: wrong split, duplicate ids, arrays that differ in name, dtype or rank.

    Examples:
        >>> s = Sample("a", "p1", "train", {"x": np.arange(3, dtype=np.int16)}, {"label": 1})
        >>> sorted(encode_shard("train", 0, [s]))[-1]
        'rows/train/part-00000.parquet'
    """
    files = _encode_shard_files(split, index, samples, source=source, ragged=ragged, fmt=fmt)
    return {rel: _joined(data) for rel, data in files.items()}


def _encode_shard_files(
    split: str,
    index: int,
    samples: Sequence[Sample],
    *,
    source: str | None,
    ragged: Collection[str] | None,
    fmt: ShardFormat,
) -> dict[str, FileBytes]:
    """:func:`encode_shard`, with a large file's bytes left as its parts (joining them is a copy)."""
    if split not in SPLITS:
        raise ShardWriteError(f"unknown split {split!r}; allowed: {list(SPLITS)}")
    shard_name(index)
    ordered = _check_samples(split, index, samples)
    rows_bytes, columns = _encode_rows(split, index, ordered, source)
    prefix = arrays_path(split, index)
    arrays = _encode_arrays(split, index, ordered, ragged, fmt, columns, source)
    files: dict[str, FileBytes] = {f"{prefix}/{key}": data for key, data in arrays.items()}
    files[rows_path(split, index)] = rows_bytes
    return files


def _joined(data: FileBytes) -> bytes:
    return data if isinstance(data, bytes) else b"".join(data)


def _size(data: FileBytes) -> int:
    return len(data) if isinstance(data, bytes) else sum(len(part) for part in data)


def _sha256(data: FileBytes) -> str:
    digest = hashlib.sha256()
    for part in (data,) if isinstance(data, bytes) else data:
        digest.update(part)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Publishing bytes to a store
# ---------------------------------------------------------------------------------------------


def filesystem_for(url: str, storage_options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """``(fsspec filesystem, root path without trailing slash)`` for a dataset URL."""
    fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    return fs, root.rstrip("/") or root


def is_local(fs: Any) -> bool:
    return isinstance(fs, LocalFileSystem)


def _write_file(path: str, data: FileBytes) -> None:
    with open(path, "wb") as fh:
        if isinstance(data, bytes):
            fh.write(data)
        else:
            fh.writelines(data)
        fh.flush()
        if hasattr(os, "posix_fadvise"):
            # Start writing this file back now, without waiting (Linux: WB_SYNC_NONE), so the disk
            # works while the next shard is transformed and publish's one sync finds little left.
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def _publish_local(root: str, files: Mapping[str, FileBytes], group_rel: str, rows_rel: str) -> None:
    token = uuid.uuid4().hex[:12]
    group_final = os.path.join(root, group_rel)
    parent = os.path.dirname(group_final)
    os.makedirs(parent, exist_ok=True)
    tmp_dir = os.path.join(parent, f".tmp-{os.path.basename(group_final)}-{token}")
    try:
        for rel, data in files.items():
            if rel == rows_rel:
                continue
            inner = rel[len(group_rel) + 1 :]
            path = os.path.join(tmp_dir, inner)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _write_file(path, data)
        _replace_dir(tmp_dir, group_final)
        rows_final = os.path.join(root, rows_rel)
        os.makedirs(os.path.dirname(rows_final), exist_ok=True)
        tmp_rows = f"{os.path.dirname(rows_final)}/.tmp-{os.path.basename(rows_final)}-{token}"
        _write_file(tmp_rows, files[rows_rel])
        os.replace(tmp_rows, rows_final)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise


def _replace_dir(tmp_dir: str, final: str) -> None:
    """Rename ``tmp_dir`` to ``final``; an existing ``final`` (a rerun) is swapped out and removed.

    Two attempts at the same shard (a speculative retry) write identical bytes, so whichever
    rename wins leaves the right content.
    """
    for _ in range(5):
        try:
            os.rename(tmp_dir, final)
            return
        except OSError:
            if not os.path.exists(final):
                raise
            trash = f"{os.path.dirname(final)}/.trash-{os.path.basename(final)}-{uuid.uuid4().hex[:12]}"
            try:
                os.rename(final, trash)
            except FileNotFoundError:
                continue
            shutil.rmtree(trash, ignore_errors=True)
    raise OSError(f"could not publish {final}: it keeps reappearing (another writer?)")


def _publish_object_store(fs: Any, root: str, files: Mapping[str, FileBytes], rows_rel: str) -> None:
    arrays = {f"{root}/{rel}": _joined(data) for rel, data in files.items() if rel != rows_rel}
    if arrays:
        fs.pipe(arrays)
    fs.pipe({f"{root}/{rows_rel}": _joined(files[rows_rel])})


def write_shard(
    dataset_url: str,
    split: str,
    index: int,
    samples: Sequence[Sample],
    *,
    storage_options: dict | None = None,
    source: str | None = None,
    ragged: Collection[str] | None = None,
    fmt: ShardFormat = DEFAULT_FORMAT,
    items: int | None = None,
    quarantined: int = 0,
) -> ShardRecord:
    """Write one shard of a built dataset and publish it safely; return what was written.

    Args:
        dataset_url: the dataset root (``<out>/<source>/<version>``), any fsspec URL.
        split: the split every sample belongs to.
        index: the shard's index within the split.
        samples: the shard's samples (sorted by ``sample_id`` before writing).
        storage_options: fsspec options (credentials, endpoint, ``auto_mkdir``...).
        source: the ``source`` row column's value (``None``: no such column).
        ragged: array names to store ragged even when all shapes agree.
        fmt: chunking and compression (:data:`DEFAULT_FORMAT`).
        items: source items behind these samples (an ECG record may give several windows);
            ``None`` means one item per sample.
        quarantined: items of this shard's plan that went to quarantine instead.

    Returns:
        The :class:`~manifests.schema.ShardRecord`: ``files`` maps role → relative path
        (``"rows"``, ``"arrays"``); ``bytes`` and ``sha256`` map *every file* written (the rows
        file and each file of the Zarr group) to its size and hex digest.

    Raises:
        ShardWriteError: samples that cannot form a shard (nothing is written).
    """
    files = _encode_shard_files(split, index, samples, source=source, ragged=ragged, fmt=fmt)
    record = ShardRecord(
        split=split,
        index=index,
        samples=len(samples),
        files={"rows": rows_path(split, index), "arrays": arrays_path(split, index)},
        bytes={rel: _size(data) for rel, data in files.items()},
        sha256={rel: _sha256(data) for rel, data in files.items()},
        items=len(samples) if items is None else items,
        quarantined=quarantined,
    )
    fs, root = filesystem_for(dataset_url, storage_options)
    if is_local(fs):
        _publish_local(root, files, arrays_path(split, index), rows_path(split, index))
    else:
        _publish_object_store(fs, root, files, rows_path(split, index))
    return record


def shard_metadata_json(meta: Mapping[str, Any]) -> str:
    """Canonical JSON of shard metadata (sorted keys), as the manifest stores it."""
    return json.dumps(meta, sort_keys=True, separators=(",", ":"))
