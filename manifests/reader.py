"""Read a built dataset back: ``open_dataset(url).split("train")``.

The reader trusts only ``manifest.json`` (MosaicML Streaming's rule): it never lists the store,
so a shard that the manifest does not name does not exist, and a dataset without a manifest does
not exist at all (:class:`DatasetNotFoundError`).

Two access paths:

* random access (``view[i]``) reads one sample through the Zarr shard index (one inner chunk
  per array; one byte-range GET on object stores) and the shard's rows file (cached);
* sequential access (``iter(view)``, :meth:`SplitView.iter_shards`, and the streaming loader in
  :mod:`manifests.stream`) reads *whole* shard files with one GET each and decodes them in
  memory; this is what training uses.

``verify=True`` checks the sha256 of every file of a shard against the manifest the first time the
shard is read, and raises :class:`ShardIntegrityError` naming the shard and file on a mismatch.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import json
import mmap
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from manifests.s3get import direct_getter
from manifests.schema import MANIFEST_FILE, SPLITS
from manifests.writer import (
    RAGGED_OFFSETS,
    RAGGED_SHAPES,
    RAGGED_VALUES,
    SHARD_ATTRS_KEY,
    filesystem_for,
    is_local,
)

#: Manifest layout versions this reader understands.
KNOWN_MANIFEST_VERSIONS = frozenset({1})


class DatasetNotFoundError(FileNotFoundError):
    """No ``manifest.json`` at the URL: the dataset is absent or was never published."""


class ShardIntegrityError(RuntimeError):
    """A shard file's sha256 or size differs from the manifest."""


@dataclass(frozen=True)
class ShardRef:
    """One shard as the manifest lists it, with its first sample's position in the split."""

    split: str
    index: int
    samples: int
    start: int
    files: Mapping[str, str]
    sha256: Mapping[str, str]
    bytes: Mapping[str, int]

    @property
    def name(self) -> str:
        return f"{self.split}/{self.index:05d}"

    def array_files(self) -> list[str]:
        prefix = self.files["arrays"].rstrip("/") + "/"
        return sorted(p for p in self.sha256 if p.startswith(prefix))


class ShardData:
    """One decoded shard: arrays (stacked or ragged) and its rows table.

    Attributes:
        ref: which shard.
        arrays: fixed arrays as ``np.ndarray`` (N, ...); ragged ones as ``(values, offsets, shapes)``.
        rows: the rows as a ``pyarrow.Table`` (N rows), or ``None`` when no row column was asked.
    """

    def __init__(self, ref: ShardRef, arrays: dict[str, Any], rows: pa.Table | None) -> None:
        self.ref = ref
        self.arrays = arrays
        self.rows = rows
        self._row_lists: dict[str, list[Any]] | None = None

    def __len__(self) -> int:
        return self.ref.samples

    def array(self, name: str, i: int) -> np.ndarray:
        a = self.arrays[name]
        if isinstance(a, tuple):
            values, offsets, shapes = a
            return values[offsets[i] : offsets[i + 1]].reshape(tuple(shapes[i]))
        return a[i]

    def row_values(self) -> dict[str, list[Any]]:
        if self._row_lists is None:
            self._row_lists = {} if self.rows is None else self.rows.to_pydict()
        return self._row_lists

    def sample(self, i: int) -> dict[str, Any]:
        out: dict[str, Any] = {name: self.array(name, i) for name in self.arrays}
        for name, values in self.row_values().items():
            out[name] = values[i]
        return out


# ---------------------------------------------------------------------------------------------
# Shard I/O shared by the random-access view and the streaming loader
# ---------------------------------------------------------------------------------------------


def fetch_shard_files(
    fs: Any, root: str, ref: ShardRef, rels: Sequence[str], *, verify: bool, getter: Any = None
) -> dict[str, bytes]:
    """Whole-file reads of ``rels`` (one GET each, concurrent on async stores); optionally verified.

    Local array chunk files larger than :data:`MMAP_MIN_BYTES` are memory-mapped instead of read:
    the decoder then reads the page cache directly, saving one copy of every byte. ``getter``
    (a :class:`manifests.s3get.S3Getter`) does S3 GETs with botocore's synchronous client instead
    of the filesystem's.
    """
    paths = [f"{root}/{rel}" for rel in rels]
    if is_local(fs):
        return {rel: _read_local(path, ref, rel, verify) for rel, path in zip(rels, paths, strict=True)}
    try:
        if getter is not None:
            blobs = {path: getter.get(path) for path in paths}
        elif len(paths) > 1:
            blobs = fs.cat(paths, on_error="raise")
        else:
            blobs = {paths[0]: fs.cat_file(paths[0])}
    except FileNotFoundError as exc:
        raise ShardIntegrityError(
            f"shard {ref.name}: a file listed in the manifest is missing: {exc}"
        ) from None
    out: dict[str, bytes] = {}
    for rel, path in zip(rels, paths, strict=True):
        data = blobs[path]
        if verify:
            check_file(ref, rel, data)
        out[rel] = data
    return out


#: Allocates a decoded array: ``(shape, dtype) -> np.ndarray`` (uninitialised).
ArrayAlloc = Callable[[tuple[int, ...], np.dtype], np.ndarray]

#: Local chunk files at least this large are memory-mapped rather than read into memory.
MMAP_MIN_BYTES = 1 << 20


def _map_whole_file(fd: int) -> mmap.mmap:
    """Map a shard file read-only, its pages read in now, in the calling (fetch) thread.

    ``MAP_POPULATE`` (Linux) makes ``mmap`` itself read the whole file with large sequential
    requests, outside the GIL, so decode threads never stall on page faults and a cold page
    cache is read at the disk's speed; a warm one only costs the page-table entries. Elsewhere
    the mapping asks for read-ahead (``MADV_WILLNEED``) instead.
    """
    populate = getattr(mmap, "MAP_POPULATE", 0)
    if populate:
        return mmap.mmap(fd, 0, flags=mmap.MAP_SHARED | populate, prot=mmap.PROT_READ)
    data = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    if hasattr(mmap, "MADV_WILLNEED"):  # the whole file is read next: start reading ahead
        data.madvise(mmap.MADV_WILLNEED)
    return data


def _read_local(path: str, ref: ShardRef, rel: str, verify: bool) -> Any:
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size >= MMAP_MIN_BYTES and "/c/" in rel:
                data: Any = _map_whole_file(fh.fileno())
            else:
                data = fh.read()
    except FileNotFoundError:
        raise ShardIntegrityError(
            f"shard {ref.name}: a file listed in the manifest is missing: {path}"
        ) from None
    if verify:
        check_file(ref, rel, data)
    return data


def check_file(ref: ShardRef, rel: str, data: bytes) -> None:
    """Raise :class:`ShardIntegrityError` when ``data`` is not the file the manifest recorded."""
    want = ref.sha256.get(rel)
    if want is None:
        raise ShardIntegrityError(f"shard {ref.name}: file {rel} has no sha256 in the manifest")
    if len(data) != ref.bytes.get(rel, len(data)):
        raise ShardIntegrityError(
            f"shard {ref.name}: file {rel} has {len(data)} bytes, the manifest says {ref.bytes[rel]}"
        )
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise ShardIntegrityError(
            f"shard {ref.name}: file {rel} fails its sha256 check (got {got[:16]}…, manifest {want[:16]}…)"
        )


def shard_metadata(files: Mapping[str, bytes], ref: ShardRef) -> dict[str, Any]:
    meta = json.loads(files[f"{ref.files['arrays']}/zarr.json"])
    return meta["attributes"][SHARD_ATTRS_KEY]


_MISSING_CHUNK = np.uint64(2**64 - 1)


def _chunk_decoder(
    codecs: Sequence[Mapping[str, Any]], dtype: np.dtype, chunk_nbytes: int
) -> Callable[[bytes], Any] | None:
    """A bytes→bytes decoder for the inner codecs this writer uses, or ``None`` (then zarr decodes)."""
    if not codecs or codecs[0].get("name") != "bytes":
        return None
    endian = (codecs[0].get("configuration") or {}).get("endian", "little")
    if dtype.itemsize > 1 and endian != "little":
        return None
    rest = list(codecs[1:])
    if not rest:
        return lambda data: data
    if len(rest) != 1:
        return None
    name = rest[0]["name"]
    if name == "zstd":
        try:
            import zstandard  # releases the GIL while decompressing

            def decode_zstd(data: bytes) -> bytes:
                return zstandard.ZstdDecompressor().decompress(data, max_output_size=chunk_nbytes)

            return decode_zstd
        except ImportError:  # pragma: no cover - numcodecs is the fallback
            from numcodecs import Zstd

            return Zstd().decode
    if name == "blosc":
        from numcodecs import Blosc

        blosc = Blosc()

        def decode_blosc(data: Any, out: np.ndarray | None = None) -> Any:
            return blosc.decode(data, out=out)  # straight into the output rows when given

        return decode_blosc
    return None


def name_of(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", "")


#: Integer dtypes whose wrapping prefix sum torch computes (same bits; unsigned as signed).
_TORCH_SCAN_VIEW = {
    np.dtype("uint8"): np.dtype("uint8"),
    np.dtype("int8"): np.dtype("int8"),
    np.dtype("int16"): np.dtype("int16"),
    np.dtype("uint16"): np.dtype("int16"),
    np.dtype("int32"): np.dtype("int32"),
    np.dtype("uint32"): np.dtype("int32"),
    np.dtype("int64"): np.dtype("int64"),
    np.dtype("uint64"): np.dtype("int64"),
}


def prefix_sum_inplace(values: np.ndarray) -> None:
    """Undo numcodecs' ``delta`` filter in place: ``values[i] += values[i - 1]``, wrapping.

    NumPy's ``cumsum`` runs at ~0.4 GB/s; when torch is already imported (any training process)
    its scan is ~3× faster and releases the GIL, so it is used for integer dtypes.
    """
    torch = sys.modules.get("torch")
    view = _TORCH_SCAN_VIEW.get(values.dtype)
    if torch is not None and view is not None and values.flags.writeable and values.flags.c_contiguous:
        t = torch.from_numpy(values.view(view))
        torch.cumsum(t, 0, dtype=t.dtype, out=t)
        return
    np.cumsum(values, dtype=values.dtype, out=values)


@dataclass(frozen=True)
class _ShardLayout:
    """A single-shard array as this writer lays it out (see :func:`decode_sharded_array`)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    chunk_rows: int
    row_items: int
    chunk_nbytes: int
    decode: Callable[..., Any]
    delta: bool
    index: np.ndarray  # uint64 (n_chunks * 2,): offset, nbytes per inner chunk
    data: Any

    def chunk_bytes(self, k: int) -> memoryview | None:
        """Inner chunk ``k``'s encoded bytes, or ``None`` when it was never written (fill value)."""
        offset, nbytes = self.index[2 * k], self.index[2 * k + 1]
        if offset == _MISSING_CHUNK:
            return None
        return memoryview(self.data)[int(offset) : int(offset + nbytes)]

    def decode_into(self, encoded: memoryview, dest: np.ndarray) -> None:
        """Decode one inner chunk into ``dest`` (uint8, the chunk's first ``len(dest)`` bytes)."""
        if len(dest) == self.chunk_nbytes and name_of(self.decode) == "decode_blosc":
            self.decode(encoded, out=dest)  # no intermediate copy
        else:
            dest[:] = np.frombuffer(self.decode(encoded), dtype=np.uint8, count=len(dest))
        if self.delta:  # the chunk was delta-coded as one flat sequence; a prefix of it suffices
            prefix_sum_inplace(dest.view(self.dtype))


def _shard_layout(array_meta: Mapping[str, Any], shard_bytes: Any) -> _ShardLayout | None:
    try:
        shape = tuple(array_meta["shape"])
        dtype = np.dtype(array_meta["data_type"])
        (codec,) = array_meta["codecs"]
        if codec["name"] != "sharding_indexed":
            return None
        conf = codec["configuration"]
        shard_shape = tuple(array_meta["chunk_grid"]["configuration"]["chunk_shape"])
        chunk = tuple(conf["chunk_shape"])
        index_codecs = [c["name"] for c in conf["index_codecs"]]
    except (KeyError, TypeError, ValueError):
        return None
    if (
        conf.get("index_location", "end") != "end"
        or index_codecs != ["bytes", "crc32c"]
        or any(s < a for s, a in zip(shard_shape, shape, strict=True))
        or chunk[1:] != shard_shape[1:]
        or array_meta.get("fill_value") not in (0, False, 0.0)
    ):
        return None
    n_chunks = -(-shard_shape[0] // chunk[0]) if shape else 1
    row_items = int(np.prod(chunk[1:], dtype=np.int64)) if len(chunk) > 1 else 1
    chunk_nbytes = int(chunk[0]) * row_items * dtype.itemsize if shape else dtype.itemsize
    codecs = list(conf["codecs"])
    delta = bool(codecs) and codecs[0].get("name") == "numcodecs.delta"
    if delta:
        dconf = codecs[0].get("configuration") or {}
        if (
            dtype.kind not in "iu"
            or np.dtype(dconf.get("dtype", dtype)) != dtype
            or np.dtype(dconf.get("astype") or dtype) != dtype
        ):
            return None
        codecs = codecs[1:]
    decode = _chunk_decoder(codecs, dtype, chunk_nbytes)
    if decode is None:
        return None
    index_nbytes = n_chunks * 16 + 4
    if len(shard_bytes) < index_nbytes:
        raise ValueError(
            f"shard file of {len(shard_bytes)} bytes is shorter than its index ({index_nbytes} bytes)"
        )
    index = np.frombuffer(
        shard_bytes, dtype="<u8", count=n_chunks * 2, offset=len(shard_bytes) - index_nbytes
    )
    return _ShardLayout(
        shape,
        dtype,
        int(chunk[0]) if shape else 1,
        row_items,
        chunk_nbytes,
        decode,
        delta,
        index,
        shard_bytes,
    )


def decode_sharded_array(
    array_meta: Mapping[str, Any], shard_bytes: bytes, rows: np.ndarray | None = None
) -> np.ndarray | None:
    """Decode a whole single-shard Zarr v3 array from its shard file bytes, without zarr.

    Handles what this writer produces (one shard covering the array, inner chunks split only along
    axis 0, optional ``numcodecs.delta``, ``bytes`` + optional ``zstd``/``blosc``, index at the end
    with ``crc32c``); returns ``None`` for anything else, and the caller falls back to zarr. Each
    inner chunk is decompressed straight into its rows of the output (the GIL is released while
    decompressing, so a thread pool decodes shards in parallel).

    Args:
        array_meta: the array's ``zarr.json`` (parsed).
        shard_bytes: the whole shard file.
        rows: sorted positions along axis 0 that the caller needs (``None``: all). Inner chunks
            holding none of them are not decompressed, and their rows are left uninitialised.

    Returns:
        The array, shape ``array_meta["shape"]``, dtype ``array_meta["data_type"]``.
    """
    lay = _shard_layout(array_meta, shard_bytes)
    if lay is None:
        return None
    shape, dtype = lay.shape, lay.dtype
    out = np.zeros(shape, dtype=dtype) if rows is None else np.empty(shape, dtype=dtype)
    flat = out.reshape(-1).view(np.uint8) if out.size else out.view(np.uint8)
    n_chunks = len(lay.index) // 2
    wanted = None
    if rows is not None and shape:
        wanted = np.zeros(n_chunks, dtype=bool)
        wanted[np.asarray(rows, dtype=np.int64) // lay.chunk_rows] = True
    n_rows = shape[0] if shape else 1
    row_bytes = lay.row_items * dtype.itemsize
    for k in range(n_chunks):
        if wanted is not None and not wanted[k]:
            continue
        first = k * lay.chunk_rows if shape else 0
        take = min(lay.chunk_rows, n_rows - first) if shape else 1
        encoded = lay.chunk_bytes(k)
        if encoded is None:
            if wanted is not None:
                out[first : first + take] = 0
            continue
        if take <= 0:
            continue
        lay.decode_into(encoded, flat[first * row_bytes : (first + take) * row_bytes])
    return out


def decode_sharded_rows(
    array_meta: Mapping[str, Any], shard_bytes: Any, order: np.ndarray, alloc: ArrayAlloc | None = None
) -> np.ndarray | None:
    """Decode the samples ``order`` (positions along axis 0, any order) of a single-shard array.

    Returns ``out`` of shape ``(len(order), *sample_shape)`` with ``out[k]`` = sample ``order[k]``,
    or ``None`` for a layout :func:`decode_sharded_array` does not handle. Each inner chunk holding
    asked samples is decompressed once into a small scratch buffer (it stays in the CPU cache) and
    its rows are copied to their places: the streaming loader decodes a shard straight into the
    order in which its batches consume it, so a batch is then a slice, not a gather. ``alloc``
    (``(shape, dtype) -> array``) provides ``out`` (the loader reuses buffers); default ``np.empty``.
    """
    lay = _shard_layout(array_meta, shard_bytes)
    if lay is None or not lay.shape:
        return None
    order = np.asarray(order, dtype=np.int64)
    out = (alloc or np.empty)((len(order), *lay.shape[1:]), lay.dtype)
    if not len(order):
        return out
    n_rows = lay.shape[0]
    if order.min() < 0 or order.max() >= n_rows:
        raise IndexError(f"sample positions out of range for a shard of {n_rows} samples")
    chunk_of = order // lay.chunk_rows
    by_chunk = np.argsort(chunk_of, kind="stable")
    sorted_chunks = chunk_of[by_chunk]
    cuts = np.flatnonzero(np.diff(sorted_chunks)) + 1
    starts = np.concatenate([[0], cuts]).tolist()
    ends = [*cuts.tolist(), len(order)]
    scratch = np.empty(lay.chunk_nbytes, dtype=np.uint8)
    rows_view = scratch.view(lay.dtype).reshape(lay.chunk_rows, *lay.shape[1:])
    row_bytes = lay.row_items * lay.dtype.itemsize
    for a, b in zip(starts, ends, strict=True):
        k = int(sorted_chunks[a])
        first = k * lay.chunk_rows
        take = min(lay.chunk_rows, n_rows - first)
        dest = by_chunk[a:b]
        local = order[dest] - first
        encoded = lay.chunk_bytes(k)
        if encoded is None:
            out[dest] = 0
            continue
        if take == 1 and b - a == 1:  # one sample in the chunk (e.g. an image): decode in place
            lay.decode_into(encoded, out[int(dest[0])].reshape(-1).view(np.uint8))
            continue
        lay.decode_into(encoded, scratch[: take * row_bytes])
        if b - a == 1:
            out[int(dest[0])] = rows_view[int(local[0])]
        else:
            out[dest] = rows_view[local]
    return out


def _decode_array(
    files: Mapping[str, bytes], prefix: str, path: str, rows: np.ndarray | None = None
) -> np.ndarray:
    import zarr
    from zarr.core.buffer import default_buffer_prototype

    meta = json.loads(files[f"{prefix}{path}/zarr.json"])
    shard_key = (
        f"{prefix}{path}/c/" + "/".join("0" for _ in meta["shape"]) if meta["shape"] else f"{prefix}{path}/c"
    )
    if shard_key in files:
        fast = decode_sharded_array(meta, files[shard_key], rows)
        if fast is not None:
            return fast
    proto = default_buffer_prototype()
    store_dict = {
        rel[len(prefix) :]: proto.buffer.from_bytes(data)
        for rel, data in files.items()
        if rel.startswith(prefix)
    }
    store = zarr.storage.MemoryStore(store_dict)
    return zarr.open_array(store=store, path=path, mode="r", zarr_format=3)[...]


def _decode_array_ordered(
    files: Mapping[str, bytes], prefix: str, path: str, order: np.ndarray, alloc: ArrayAlloc | None
) -> np.ndarray:
    meta = json.loads(files[f"{prefix}{path}/zarr.json"])
    shard_key = f"{prefix}{path}/c/" + "/".join("0" for _ in meta["shape"])
    if meta["shape"] and shard_key in files:
        fast = decode_sharded_rows(meta, files[shard_key], order, alloc)
        if fast is not None:
            return fast
    return _decode_array(files, prefix, path)[np.asarray(order, dtype=np.int64)]


def decode_shard(
    ref: ShardRef,
    files: Mapping[str, bytes],
    *,
    arrays: Sequence[str] | None,
    columns: Sequence[str] | None,
    rows: np.ndarray | None = None,
    order: np.ndarray | None = None,
    alloc: ArrayAlloc | None = None,
) -> ShardData:
    """Decode whole shard files (as fetched) into a :class:`ShardData`.

    Args:
        ref: the shard.
        files: ``{relative path: bytes}`` holding at least the group's files for the arrays asked
            and, when ``columns`` is non-empty, the rows file.
        arrays: array names to decode (``None``: all).
        columns: row columns to read (``None``: all; empty: none).
        rows: sorted sample offsets needed (``None``: all): fixed-shape arrays then decompress only
            the inner chunks holding them (the other samples are uninitialised).
        order: sample offsets in the order the caller will consume them: fixed-shape arrays then
            come back compact and in that order (``arrays[name][k]`` is sample ``order[k]``, see
            :func:`decode_sharded_rows`); ragged arrays and rows stay whole. Overrides ``rows``.
        alloc: with ``order``, provides the fixed arrays' buffers (``(shape, dtype) -> array``).
    """
    prefix = ref.files["arrays"].rstrip("/") + "/"
    meta = shard_metadata(files, ref)
    names = list(meta["arrays"]) if arrays is None else list(arrays)
    decoded: dict[str, Any] = {}
    if names and ref.samples:
        for name in names:
            info = meta["arrays"][name]
            if info["layout"] == "fixed" and order is not None:
                decoded[name] = _decode_array_ordered(files, prefix, name, order, alloc)
            elif info["layout"] == "fixed":
                decoded[name] = _decode_array(files, prefix, name, rows)
            else:
                decoded[name] = tuple(
                    _decode_array(files, prefix, f"{name}/{part}")
                    for part in (RAGGED_VALUES, RAGGED_OFFSETS, RAGGED_SHAPES)
                )
    rows = None
    if columns is None or len(columns):
        rows = pq.read_table(
            io.BytesIO(files[ref.files["rows"]]), columns=None if columns is None else list(columns)
        )
    return ShardData(ref, decoded, rows)


def files_for(ref: ShardRef, meta_arrays: Sequence[str] | None, want_rows: bool) -> list[str]:
    """The relative paths of a shard needed to decode the given arrays (``None``: all) and rows."""
    prefix = ref.files["arrays"].rstrip("/")
    rels = [f"{prefix}/zarr.json"]
    for rel in ref.array_files():
        if rel == f"{prefix}/zarr.json":
            continue
        name = rel[len(prefix) + 1 :].split("/", 1)[0]
        if meta_arrays is None or name in meta_arrays:
            rels.append(rel)
    if want_rows:
        rels.append(ref.files["rows"])
    return rels


# ---------------------------------------------------------------------------------------------
# Dataset and split views
# ---------------------------------------------------------------------------------------------


class Dataset:
    """A published dataset, as its manifest describes it.

    Attributes:
        url: the dataset root.
        manifest: the parsed ``manifest.json``.
        splits: split names with at least one shard, in :data:`~manifests.schema.SPLITS` order.
    """

    def __init__(
        self,
        url: str,
        manifest: dict[str, Any],
        fs: Any,
        root: str,
        verify: bool,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.manifest = manifest
        self._fs = fs
        self._fs_pid = os.getpid()
        self.root = root
        self.verify = verify
        self.storage_options = dict(storage_options or {})
        self._verified: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._getter = direct_getter(fs, self.storage_options)  # bulk S3 GETs through botocore
        by_split: dict[str, list[dict[str, Any]]] = {}
        for rec in manifest["shards"]:
            by_split.setdefault(rec["split"], []).append(rec)
        self._refs: dict[str, list[ShardRef]] = {}
        for split, recs in by_split.items():
            start = 0
            refs = []
            for rec in sorted(recs, key=lambda r: r["index"]):
                refs.append(
                    ShardRef(
                        split, rec["index"], rec["samples"], start, rec["files"], rec["sha256"], rec["bytes"]
                    )
                )
                start += rec["samples"]
            self._refs[split] = refs
        self.splits: tuple[str, ...] = tuple(
            sorted(self._refs, key=lambda s: SPLITS.index(s) if s in SPLITS else len(SPLITS))
        )

    @property
    def fs(self) -> Any:
        """The store's filesystem; re-created in a forked child (async clients such as s3fs are
        not fork-safe), so DataLoader workers each get their own connection pool."""
        if self._fs_pid != os.getpid():
            self._fs, _ = filesystem_for(self.url, {**self.storage_options, "skip_instance_cache": True})
            self._fs_pid = os.getpid()
        return self._fs

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_lock", None)
        state["_fs_pid"] = -1  # re-create the filesystem in the receiving process
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={sum(r.samples for r in self._refs[s])}" for s in self.splits)
        return f"Dataset({self.manifest.get('source')!r}, version={self.manifest.get('version')!r}, {sizes})"

    @property
    def array_names(self) -> list[str]:
        return list(self.manifest["schema"]["arrays"])

    @property
    def row_columns(self) -> list[str]:
        return [c["name"] for c in self.manifest["schema"]["columns"]]

    def shards(self, split: str) -> list[ShardRef]:
        return list(self._refs[split])

    def split(self, name: str) -> SplitView:
        """A view of one split. Raises ``KeyError`` naming the known splits."""
        if name not in self._refs:
            raise KeyError(f"{self.url}: no split {name!r}; known splits: {list(self.splits)}")
        return SplitView(self, name)

    def needs_verify(self, ref: ShardRef) -> bool:
        return self.verify and (ref.split, ref.index) not in self._verified

    def mark_verified(self, ref: ShardRef) -> None:
        with self._lock:
            self._verified.add((ref.split, ref.index))

    def read_shard(
        self,
        ref: ShardRef,
        *,
        arrays: Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
        rows: np.ndarray | None = None,
        order: np.ndarray | None = None,
    ) -> ShardData:
        """Read one whole shard (one GET per file) and decode it (only ``rows``, or in ``order``,
        when given; see :func:`decode_shard`)."""
        files = self.fetch_shard(ref, arrays=arrays, columns=columns)
        return decode_shard(ref, files, arrays=arrays, columns=columns, rows=rows, order=order)

    def fetch_shard(
        self,
        ref: ShardRef,
        *,
        arrays: Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """The files of a shard needed for ``arrays`` and ``columns`` (``None``: all), whole (one
        GET each, concurrent); every file, checked, when the shard still needs verifying."""
        verify = self.needs_verify(ref)
        want_rows = columns is None or len(columns) > 0
        rels = [*ref.array_files(), ref.files["rows"]] if verify else files_for(ref, arrays, want_rows)
        files = fetch_shard_files(self.fs, self.root, ref, rels, verify=verify, getter=self._getter)
        if verify:
            self.mark_verified(ref)
        return files

    def verify_shard(self, ref: ShardRef) -> None:
        """Check every file of a shard against the manifest's sha256 (once per shard)."""
        if not self.needs_verify(ref):
            return
        fetch_shard_files(self.fs, self.root, ref, [*ref.array_files(), ref.files["rows"]], verify=True)
        self.mark_verified(ref)


class _RandomAccessShard:
    """Per-shard handles for random access: opened Zarr arrays and the rows table."""

    def __init__(self, ds: Dataset, ref: ShardRef) -> None:
        import zarr

        ds.verify_shard(ref)
        self.ref = ref
        self.rows = pq.read_table(io.BytesIO(ds.fs.cat_file(f"{ds.root}/{ref.files['rows']}"))).to_pydict()
        group_url = f"{ds.root}/{ref.files['arrays']}"
        if is_local(ds.fs):
            store: Any = zarr.storage.LocalStore(group_url, read_only=True)
        else:
            protocol = ds.fs.protocol if isinstance(ds.fs.protocol, str) else ds.fs.protocol[0]
            store = zarr.storage.FsspecStore.from_url(
                f"{protocol}://{group_url.split('://', 1)[-1]}",
                storage_options=ds.storage_options or None,
                read_only=True,
            )
        group = zarr.open_group(store=store, mode="r", zarr_format=3)
        self.meta = group.attrs[SHARD_ATTRS_KEY]
        self.arrays: dict[str, Any] = {}
        for name, info in self.meta["arrays"].items():
            if info["layout"] == "fixed":
                self.arrays[name] = group[name]
            else:
                sub = group[name]
                self.arrays[name] = (sub[RAGGED_VALUES], sub[RAGGED_OFFSETS][...], sub[RAGGED_SHAPES][...])

    def sample(self, offset: int, arrays: Sequence[str], columns: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in arrays:
            a = self.arrays[name]
            if isinstance(a, tuple):
                values, offsets, shapes = a
                out[name] = values[int(offsets[offset]) : int(offsets[offset + 1])].reshape(
                    tuple(shapes[offset])
                )
            else:
                out[name] = a[offset]
        for name in columns:
            out[name] = self.rows[name][offset]
        return out


class SplitView:
    """One split (optionally filtered and column-selected): random access and iteration.

    Items are dicts: ``{array name: np.ndarray, row column: Python value}``. Positions follow the
    manifest's shard order, and within a shard the writer's ``sample_id`` order.
    """

    def __init__(
        self,
        dataset: Dataset,
        name: str,
        *,
        arrays: Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
        indices: np.ndarray | None = None,
    ) -> None:
        self.dataset = dataset
        self.name = name
        self.shard_refs = dataset.shards(name)
        self._starts = [r.start for r in self.shard_refs]
        self._total = sum(r.samples for r in self.shard_refs)
        self.arrays = list(dataset.array_names if arrays is None else arrays)
        self.row_columns = list(dataset.row_columns if columns is None else columns)
        self.indices = indices  # sorted global positions kept by a filter, or None for all
        self._cache: OrderedDict[int, _RandomAccessShard] = OrderedDict()
        self._cache_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()
        state.pop("_cache_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cache_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SplitView({self.name!r}, {len(self)} samples, columns={self.columns})"

    def __len__(self) -> int:
        return self._total if self.indices is None else len(self.indices)

    @property
    def columns(self) -> list[str]:
        """Array names then row column names that items carry."""
        return [*self.arrays, *self.row_columns]

    def _derive(self, **kw: Any) -> SplitView:
        args = {"arrays": self.arrays, "columns": self.row_columns, "indices": self.indices, **kw}
        return SplitView(self.dataset, self.name, **args)

    def select(self, columns: Sequence[str]) -> SplitView:
        """A view whose items carry only ``columns`` (array names and/or row columns)."""
        if isinstance(columns, str):
            columns = [columns]
        known_arrays, known_cols = self.dataset.array_names, self.dataset.row_columns
        unknown = [c for c in columns if c not in known_arrays and c not in known_cols]
        if unknown:
            raise KeyError(f"unknown columns {unknown}; known: {known_arrays + known_cols}")
        return self._derive(
            arrays=[c for c in columns if c in known_arrays], columns=[c for c in columns if c in known_cols]
        )

    def rows(self, columns: Sequence[str] | None = None) -> pa.Table:
        """The split's rows (after any filter) as one Arrow table; reads every rows file."""
        cols = None if columns is None else list(columns)
        tables = []
        for ref in self.shard_refs:
            if ref.samples == 0:
                continue
            self.dataset.verify_shard(ref)
            data = self.dataset.fs.cat_file(f"{self.dataset.root}/{ref.files['rows']}")
            tables.append(pq.read_table(io.BytesIO(data), columns=cols))
        if not tables:
            return pa.table({})
        table = pa.concat_tables(tables, promote_options="permissive")
        if self.indices is not None:
            table = table.take(pa.array(self.indices))
        return table

    def filter(self, predicate: Callable[[dict[str, Any]], bool] | None = None, **equals: Any) -> SplitView:
        """A view of the samples whose row metadata match.

        Args:
            predicate: called with each row as a dict (row columns only); keep when true.
            **equals: ``column=value``: equal (scalar column) or contains (list column, e.g. a
                multilabel ``labels``); a list/tuple/set value matches any of its members.

        Example: ``view.filter(label="AF")``, ``view.filter(source=["ptbxl", "cpsc2018"])``.
        """
        known = self.dataset.row_columns
        unknown = [c for c in equals if c not in known]
        if unknown:
            raise KeyError(f"unknown row columns {unknown}; known: {known}")
        table = self.rows()
        mask = np.ones(table.num_rows, dtype=bool)
        for col, want in equals.items():
            wanted = list(want) if isinstance(want, list | tuple | set | frozenset) else [want]
            column = table.column(col)
            if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
                flat_parent = pc.list_parent_indices(column)
                hits = pc.is_in(pc.list_flatten(column), value_set=pa.array(wanted)).to_numpy(
                    zero_copy_only=False
                )
                col_mask = np.zeros(table.num_rows, dtype=bool)
                col_mask[np.asarray(flat_parent)[hits]] = True
            else:
                col_mask = pc.is_in(column, value_set=pa.array(wanted)).to_numpy(zero_copy_only=False)
            mask &= col_mask
        if predicate is not None:
            rows = table.to_pylist()
            mask &= np.array([bool(predicate(r)) for r in rows], dtype=bool)
        base = np.arange(self._total, dtype=np.int64) if self.indices is None else self.indices
        return self._derive(indices=base[mask])

    # -- random access ------------------------------------------------------------------------

    def _locate(self, position: int) -> tuple[ShardRef, int]:
        k = bisect.bisect_right(self._starts, position) - 1
        while (
            self.shard_refs[k].samples == 0
            or position - self.shard_refs[k].start >= self.shard_refs[k].samples
        ):
            k += 1
        ref = self.shard_refs[k]
        return ref, position - ref.start

    def _shard(self, ref: ShardRef) -> _RandomAccessShard:
        with self._cache_lock:
            hit = self._cache.get(ref.index)
            if hit is not None:
                self._cache.move_to_end(ref.index)
                return hit
        opened = _RandomAccessShard(self.dataset, ref)
        with self._cache_lock:
            self._cache[ref.index] = opened
            while len(self._cache) > 8:
                self._cache.popitem(last=False)
        return opened

    def __getitem__(self, i: int) -> dict[str, Any]:
        if isinstance(i, bool) or not isinstance(i, int | np.integer):
            raise TypeError(f"index must be an int, got {type(i).__name__} {i!r}")
        n = len(self)
        if i < -n or i >= n:
            raise IndexError(f"index {i} out of range for split {self.name!r} with {n} samples")
        i = int(i) % n
        position = i if self.indices is None else int(self.indices[i])
        ref, offset = self._locate(position)
        return self._shard(ref).sample(offset, self.arrays, self.row_columns)

    # -- sequential access ----------------------------------------------------------------------

    def positions_by_shard(self) -> list[tuple[ShardRef, np.ndarray]]:
        """For each non-empty shard, the in-shard offsets this view keeps, in order."""
        out = []
        for ref in self.shard_refs:
            if ref.samples == 0:
                continue
            if self.indices is None:
                offsets = np.arange(ref.samples, dtype=np.int64)
            else:
                lo = np.searchsorted(self.indices, ref.start)
                hi = np.searchsorted(self.indices, ref.start + ref.samples)
                offsets = self.indices[lo:hi] - ref.start
            if len(offsets):
                out.append((ref, offsets))
        return out

    def fetch_shard(self, ref: ShardRef) -> dict[str, Any]:
        """The shard's files this view needs (see :meth:`Dataset.fetch_shard`)."""
        return self.dataset.fetch_shard(ref, arrays=self.arrays, columns=self.row_columns)

    def decode_shard(
        self,
        ref: ShardRef,
        files: Mapping[str, Any],
        order: np.ndarray | None = None,
        alloc: ArrayAlloc | None = None,
    ) -> ShardData:
        """Decode fetched files with this view's arrays and row columns (see :func:`decode_shard`)."""
        return decode_shard(
            ref, files, arrays=self.arrays, columns=self.row_columns, order=order, alloc=alloc
        )

    def read_shard(
        self, ref: ShardRef, rows: np.ndarray | None = None, order: np.ndarray | None = None
    ) -> ShardData:
        """Whole-shard read with this view's arrays and row columns (decoding only ``rows``, or in
        ``order``, if given; see :func:`decode_shard`)."""
        return self.dataset.read_shard(
            ref, arrays=self.arrays, columns=self.row_columns, rows=rows, order=order
        )

    def iter_shards(self) -> Iterator[tuple[ShardData, np.ndarray]]:
        for ref, offsets in self.positions_by_shard():
            yield self.read_shard(ref), offsets

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for data, offsets in self.iter_shards():
            for off in offsets:
                yield data.sample(int(off))

    # -- streaming (implemented in manifests.stream) ---------------------------------------------

    def numpy_batches(self, batch_size: int, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Collated NumPy batches; see :func:`manifests.stream.numpy_batches`."""
        from manifests.stream import numpy_batches

        return numpy_batches(self, batch_size, **kwargs)

    def torch(self, batch_size: int, **kwargs: Any) -> Any:
        """A PyTorch ``IterableDataset`` of collated batches; see :class:`manifests.stream.TorchStream`.

        Keyword arguments: ``shuffle, seed, epoch, rank, world_size, drop_last, lanes, block_shards,
        prefetch_shards, decode_threads, fetch_threads, start_batch``. Use it with
        ``DataLoader(ds, batch_size=None)``, or use :meth:`loader`, which also resumes exactly.
        """
        from manifests.stream import TorchStream

        return TorchStream(self, batch_size, **kwargs)

    def loader(self, batch_size: int, **kwargs: Any) -> Any:
        """A resumable DataLoader of collated batches (pinned on CUDA, or delivered on a device with
        ``device="cuda"`` through a page-locked shared ring); see :class:`manifests.stream.StreamLoader`."""
        from manifests.stream import StreamLoader

        return StreamLoader(self, batch_size, **kwargs)


def open_dataset(url: str, *, storage_options: dict | None = None, verify: bool = False) -> Dataset:
    """Open a published dataset by reading its ``manifest.json`` (and nothing else).

    Args:
        url: the dataset root (``<out>/<source>/<version>``), any fsspec URL.
        storage_options: fsspec options (credentials, ``client_kwargs={"endpoint_url": ...}``).
        verify: check each shard file's sha256 against the manifest on first read.

    Raises:
        DatasetNotFoundError: no manifest at ``url`` (absent, or never published).
        ValueError: the manifest is not valid JSON or has an unknown format version.
    """
    fs, root = filesystem_for(url, storage_options)
    path = f"{root}/{MANIFEST_FILE}"
    try:
        raw = fs.cat_file(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise DatasetNotFoundError(
            f"no dataset at {url}: {MANIFEST_FILE} is missing (not built, or not published)"
        ) from None
    try:
        manifest = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{url}/{MANIFEST_FILE}: not valid JSON: {exc}") from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version not in KNOWN_MANIFEST_VERSIONS:
        raise ValueError(
            f"{url}/{MANIFEST_FILE}: unknown format_version {version!r}; this reader knows "
            f"{sorted(KNOWN_MANIFEST_VERSIONS)}"
        )
    return Dataset(url, manifest, fs, root, verify, storage_options)
