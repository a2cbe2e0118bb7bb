"""Streaming throughput: this reader vs MosaicML Streaming (MDS), WebDataset, the CLIMB way, the ceiling.

Corpora (synthetic, :mod:`stream_corpus`): ECG int16 (12, 5000) and chest-radiograph-like grey
images uint8 (512, 512), generated once and written in every format from the same arrays, so every
reader reads identical samples:

* ``climb-etl``: this project's format (``manifests.writer``, default :data:`DEFAULT_FORMAT`:
  blosc-lz4 for ECG, delta + zstd-1 for pixels; ~64 MB shards), read with
  :class:`manifests.stream.StreamLoader` (shuffled, elastic order) with 2 DataLoader workers;
* ``climb-etl-threads``: the same loader in-process (``num_workers=0``): 2 decode threads and 2
  fetch threads, the same 2-core budget;
* ``mds``: MosaicML Streaming ``MDSWriter`` (``ndarray`` column, ``compression="zstd"``, 64 MB
  shards), read with ``StreamingDataset(shuffle=True)`` + ``DataLoader``. Locally MDS decompresses
  each shard into its cache on first use; the timed local runs read that cache (a prior untimed
  pass fills it), as a training job's later epochs would. From S3 every run starts with an empty
  cache (download + decompress included);
* ``webdataset``: ``.npy`` members in 64 MB tar shards, ``WebDataset(shardshuffle).shuffle(1000)``
  + ``.batched`` in a ``DataLoader``; from S3 each shard is streamed with ``curl`` from the endpoint;
* ``climb-way``: one raw file per sample in a shuffled map-style ``DataLoader`` — ``.mat`` read with
  ``scipy.io.loadmat`` for ECG, JPEG (quality 90) decoded with PIL for images; from S3, one GET per
  sample;
* ``ceiling``: this format's stored shard files read and decoded in a tight loop with no
  per-sample Python (:func:`manifests.reader.decode_sharded_array`), 2 processes.

Every reader: 2 DataLoader workers (``--workers``), batch 64, one full epoch (or ``--max-seconds``),
``--repeats`` times (default 3, readers interleaved), the median run kept with every run's rate.
Reported: samples/s, MB/s of decoded sample bytes, peak RSS of the process tree (psutil, sampled
every 50 ms). Local runs are repeated with a warm and a cold page cache (``echo 3 >
/proc/sys/vm/drop_caches``, needs root). S3 runs use moto's server on loopback, in its own process
(as an object store is), over the same full corpora (``--s3-ecg``/``--s3-images`` take a subset
for a quicker run; a subset of a few shards measures mostly the first fetch's latency).

MosaicML Streaming imports ``transformers``/``torchvision`` at import time for its text/vision
dataset classes, which this benchmark does not use; when they are not installed a stub module
stands in for them (see :func:`_stub_optional_imports`) so torch is not replaced.

Run: ``.venv/bin/python benchmarks/stream_bench.py`` (full size: 20,000 ECG + 5,000 images, locally
and from S3) → ``benchmarks/results/stream.json``; ``--quick`` for a smoke run. Built
corpora are cached under ``--workdir`` and reused while the generators and the format are unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import io
import json
import multiprocessing as mp
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from stream_corpus import CORPUS_VERSION, ECG_SHAPE, IMAGE_SHAPE, make_ecg, make_image  # noqa: E402

BATCH = 64
SHARD_BYTES = 64 << 20
#: The format "climb-etl" is written in: ``manifests.writer.DEFAULT_FORMAT`` unless ``--image-codec``
#: picks another codec for pixel arrays (to compare both on the same machine); set in :func:`main`.
FORMAT: Any = None
REPEATS = 3  # runs per reader and setting; the median is reported (--repeats)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Empty stand-ins for ``transformers``/``torchvision`` (imported, never used, by MDS)."""

    names = ("transformers", "torchvision")

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name.split(".")[0] in self.names:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: Any) -> types.ModuleType:
        module = types.ModuleType(spec.name)
        module.__path__ = []

        def attr(name: str) -> Any:
            if name.startswith("__"):
                raise AttributeError(name)
            return type(name, (), {"__init__": lambda self, *a, **k: None})

        module.__getattr__ = attr  # type: ignore[method-assign]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def _stub_optional_imports() -> None:
    missing = [n for n in _StubFinder.names if importlib.util.find_spec(n) is None]
    if missing:
        _StubFinder.names = tuple(missing)
        sys.meta_path.insert(0, _StubFinder())


class PeakRss:
    """Peak resident memory (MB) of this process and its children, sampled every 50 ms."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            with contextlib.suppress(Exception):
                total = self._proc.memory_info().rss
                for child in self._proc.children(recursive=True):
                    with contextlib.suppress(Exception):
                        total += child.memory_info().rss
            self.peak_mb = max(self.peak_mb, total / 1e6)
            self._stop.wait(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def drop_caches() -> bool:
    """Drop the page cache (root only); ``False`` when not allowed."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def warm_files(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                while fh.read(16 << 20):
                    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# building the corpora
# ---------------------------------------------------------------------------------------------


#: Bumped when the corpus layout on disk changes (the samples are :data:`CORPUS_VERSION`'s).
LAYOUT_VERSION = 2


def build(kind: str, n: int, out: Path, jobs: int = 1) -> Path:
    """Write ``n`` samples of ``kind`` in every format under ``out/<kind>-<n>``; reused when complete.

    The corpus is cut into chunks of one shard of this format's samples; each chunk is written
    in every format by one task (this format's shard ``k``, MDS partition ``k``, tar shard ``k``,
    the chunk's one-file-per-sample copies), ``jobs`` tasks at a time in processes, and MDS's
    partition indexes are merged at the end (``streaming.base.util.merge_index``). Every format
    holds the same samples whatever ``jobs`` is.
    """
    from manifests.publish import publish_dataset
    from manifests.writer import DEFAULT_FORMAT

    fmt = FORMAT or DEFAULT_FORMAT
    tag = "" if fmt == DEFAULT_FORMAT else f"-{fmt.image_compression}"
    base = out / f"{kind}-{n}{tag}"
    done = base / "done.json"
    identity = {"corpus_version": CORPUS_VERSION, "layout": LAYOUT_VERSION, "format": fmt.to_dict()}
    if done.exists() and {k: json.loads(done.read_text()).get(k) for k in identity} == identity:
        return base  # the same samples in the same format and layout: reuse
    shutil.rmtree(base, ignore_errors=True)
    shape, dtype = (ECG_SHAPE, "int16") if kind == "ecg" else (IMAGE_SHAPE, "uint8")
    per_shard = max(1, SHARD_BYTES // (int(np.prod(shape)) * np.dtype(dtype).itemsize))
    for sub in ("ours", "mds", "wds", "climb"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    chunks = [
        (kind, k, lo, min(lo + per_shard, n), str(base), fmt) for k, lo in enumerate(range(0, n, per_shard))
    ]
    if jobs > 1:
        with mp.get_context("fork").Pool(min(jobs, len(chunks))) as pool:
            records = pool.map(_build_chunk, chunks, chunksize=1)
    else:
        records = [_build_chunk(chunk) for chunk in chunks]
    _stub_optional_imports()
    from streaming.base.util import merge_index

    merge_index(str(base / "mds"), keep_local=True)
    publish_dataset(
        str(base / "ours"),
        source=kind,
        version="bench",
        shards=records,
        quarantine=[],
        items_in=n,
        info={"title": f"synthetic {kind}"},
        quarantine_max_fraction=0.0,
    )
    sizes = {
        sub: sum(p.stat().st_size for p in (base / sub).rglob("*") if p.is_file())
        for sub in ("ours", "mds", "wds", "climb")
    }
    build_s = time.perf_counter() - t0
    done.write_text(json.dumps({"n": n, "build_s": build_s, "jobs": jobs, "bytes": sizes, **identity}))
    print(f"built {kind} ×{n} in {build_s:.0f} s ({jobs} jobs): {sizes}", flush=True)
    return base


def _build_chunk(job: tuple[str, int, int, int, str, Any]) -> Any:
    """Samples ``lo:hi`` of ``kind`` in every format (chunk ``k``); returns this format's shard record."""
    from PIL import Image
    from scipy.io import savemat

    _stub_optional_imports()
    import webdataset as wds
    from streaming import MDSWriter

    from manifests.schema import Sample
    from manifests.writer import write_shard

    kind, k, lo, hi, root, fmt = job
    base = Path(root)
    make = make_ecg if kind == "ecg" else make_image
    shape, dtype = (ECG_SHAPE, "int16") if kind == "ecg" else (IMAGE_SHAPE, "uint8")
    samples = []
    mds = MDSWriter(
        out=str(base / "mds" / f"part-{k:05d}"),
        columns={"x": f"ndarray:{dtype}:{','.join(map(str, shape))}"},
        compression="zstd",
        size_limit=SHARD_BYTES,
    )
    with mds, wds.TarWriter(str(base / "wds" / f"shard-{k:06d}.tar")) as tar:
        for i in range(lo, hi):
            x = make(i)
            sid = f"{kind}{i:08d}"
            samples.append(Sample(sid, f"p{i}", "train", {"x": x}, {"label": i % 5}))
            mds.write({"x": x})
            tar.write({"__key__": sid, "npy": x})
            if kind == "ecg":
                savemat(base / "climb" / f"{sid}.mat", {"val": x}, do_compression=False)
            else:
                Image.fromarray(x).save(base / "climb" / f"{sid}.jpg", format="JPEG", quality=90)
    return write_shard(str(base / "ours"), "train", k, samples, source=kind, fmt=fmt)


# ---------------------------------------------------------------------------------------------
# readers: each returns an iterator of batches whose first dimension is the sample count
# ---------------------------------------------------------------------------------------------


def read_ours(url: str, workers: int, storage_options: dict | None = None) -> Iterator[Any]:
    """``workers`` DataLoader processes; 0: in-process, ``decode_threads=2`` threads decode (GIL released)."""
    from manifests import open_dataset

    view = open_dataset(url, storage_options=storage_options).split("train").select(["x"])
    loader = view.loader(BATCH, num_workers=workers, seed=0, pin_memory=False, decode_threads=2)
    for batch in loader:
        yield batch["x"]


def read_mds(local: str, remote: str | None, workers: int) -> Iterator[Any]:
    _stub_optional_imports()
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory
    from torch.utils.data import DataLoader

    clean_stale_shared_memory()
    ds = StreamingDataset(local=local, remote=remote, batch_size=BATCH, shuffle=True, shuffle_seed=0)
    for batch in DataLoader(ds, batch_size=BATCH, num_workers=workers):
        yield batch["x"]


def read_wds(urls: list[str], workers: int, *, seed: int = 0, pin: bool = False) -> Iterator[Any]:
    """``pin``: batches become tensors the DataLoader's pin thread pins (for copies to a GPU)."""
    import torch
    import webdataset as wds
    from torch.utils.data import DataLoader

    pipeline = (
        wds.WebDataset(urls, shardshuffle=len(urls), seed=seed, empty_check=False)
        .shuffle(1000)
        .decode()
        .to_tuple("npy")
        .batched(BATCH)
    )
    if pin:
        pipeline = pipeline.map_tuple(torch.from_numpy)
    for (batch,) in DataLoader(pipeline, batch_size=None, num_workers=workers, pin_memory=pin):
        yield batch


class ClimbFiles:
    """CLIMB's way: one file per sample (``.mat`` via scipy, JPEG via PIL); local paths or S3 keys."""

    def __init__(self, paths: list[str], kind: str, s3: dict | None = None) -> None:
        self.paths, self.kind, self.s3 = paths, kind, s3
        self._client: Any = None

    def __len__(self) -> int:
        return len(self.paths)

    def _read(self, path: str) -> Any:
        if self.s3 is None:
            return path
        if self._client is None:
            import boto3

            self._client = boto3.client("s3", endpoint_url=self.s3["endpoint"], region_name="us-east-1")
        body = self._client.get_object(Bucket=self.s3["bucket"], Key=path)["Body"].read()
        return io.BytesIO(body)

    def __getitem__(self, i: int) -> Any:
        import torch

        src = self._read(self.paths[i])
        if self.kind == "ecg":
            from scipy.io import loadmat

            return torch.from_numpy(loadmat(src)["val"])
        from PIL import Image

        with Image.open(src) as img:
            return torch.from_numpy(np.asarray(img))


def read_climb(dataset: ClimbFiles, workers: int, *, seed: int = 0, pin: bool = False) -> Iterator[Any]:
    import torch
    from torch.utils.data import DataLoader

    gen = torch.Generator().manual_seed(seed)
    yield from DataLoader(
        dataset, batch_size=BATCH, shuffle=True, num_workers=workers, generator=gen, pin_memory=pin
    )


def _ceiling_worker(args: tuple[list[str], dict | None]) -> int:
    import fsspec

    from manifests.reader import decode_sharded_array

    paths, storage_options = args
    if not paths:
        return 0
    # a fresh filesystem: an async client inherited through fork would not work here
    fs, _ = fsspec.core.url_to_fs(paths[0], **(storage_options or {}), skip_instance_cache=True)
    total = 0
    for meta_path, shard_path in zip(paths[0::2], paths[1::2], strict=True):
        meta = json.loads(fs.cat_file(meta_path))
        data = fs.cat_file(shard_path)  # the whole file, one GET (as the reader does)
        total += decode_sharded_array(meta, data).shape[0]
    return total


def read_ceiling(url: str, processes: int, storage_options: dict | None = None) -> Iterator[int]:
    """Yields one count per process: samples decoded from whole shards, no per-sample Python."""
    from manifests import open_dataset

    ds = open_dataset(url, storage_options=storage_options)
    jobs: list[tuple[list[str], dict | None]] = [([], storage_options) for _ in range(processes)]
    for k, ref in enumerate(ds.shards("train")):
        prefix = f"{url.rstrip('/')}/{ref.files['arrays']}/x"
        shard = next(p for p in ref.array_files() if p.startswith(f"{ref.files['arrays']}/x/c/"))
        jobs[k % processes][0].extend([f"{prefix}/zarr.json", f"{url.rstrip('/')}/{shard}"])
    with mp.get_context("fork").Pool(processes) as pool:
        yield from pool.imap_unordered(_ceiling_worker, jobs)


# ---------------------------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------------------------


def measure(
    name: str, make_iter: Callable[[], Iterator[Any]], sample_bytes: int, max_s: float
) -> dict[str, Any]:
    """One timed run; a reader that fails is reported with its error instead of stopping the benchmark."""
    try:
        return _measure(name, make_iter, sample_bytes, max_s)
    except Exception as exc:
        print(f"  {name:17s} FAILED: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
        return {"reader": name, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}


def _measure(
    name: str, make_iter: Callable[[], Iterator[Any]], sample_bytes: int, max_s: float
) -> dict[str, Any]:
    samples = 0
    with PeakRss() as rss:
        t0 = time.perf_counter()
        it = make_iter()
        try:
            for batch in it:
                samples += int(batch) if isinstance(batch, int) else int(batch.shape[0])
                if time.perf_counter() - t0 > max_s:
                    break
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
        seconds = time.perf_counter() - t0
    row = rate_row(name, samples, seconds, sample_bytes, rss.peak_mb, capped=seconds > max_s)
    print(
        f"  {name:11s} {row['samples']:7d} samples {row['seconds']:8.2f} s {row['samples_s']:9.1f} /s "
        f"{row['mb_s']:8.1f} MB/s rss {row['peak_rss_mb']:7.0f} MB",
        flush=True,
    )
    return row


def rate_row(
    name: str, samples: int, seconds: float, sample_bytes: int, peak_mb: float, **extra: Any
) -> dict[str, Any]:
    """One reader's measured run as a result row: samples/s, MB/s of decoded samples, peak RSS."""
    return {
        "reader": name,
        "samples": samples,
        **{k: v for k, v in extra.items() if k != "capped"},
        "seconds": round(seconds, 3),
        "samples_s": round(samples / seconds, 1),
        "mb_s": round(samples * sample_bytes / seconds / 1e6, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "capped": bool(extra.get("capped", False)),
    }


def ratios(rate: dict[str, float], ours: Sequence[str]) -> dict[str, float | None]:
    """This reader (the best of ``ours``) against the faster peer, the ceiling and the CLIMB way."""
    best = max((rate.get(name, 0.0) for name in ours), default=0.0)
    peer = max(rate.get("mds", 0.0), rate.get("webdataset", 0.0))

    def over(other: float) -> float | None:
        return round(best / other, 2) if best and other else None

    return {
        "vs_faster_peer": over(peer),
        "vs_ceiling": over(rate.get("ceiling", 0.0)),
        "vs_climb_way": over(rate.get("climb-way", 0.0)),
    }


def warm_up(readers: list[tuple[str, Callable[[], Iterator[Any]]]]) -> None:
    """Take two batches from each reader, untimed: imports and first-use costs stay out of the runs."""
    for name, make_iter in readers:
        it = make_iter()
        try:
            for k, _batch in enumerate(it):
                if k >= 1:
                    break
        except Exception as exc:
            print(f"  warm-up of {name} failed: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()


def run_local(kind: str, base: Path, workers: int, max_s: float, cache: str) -> list[dict[str, Any]]:
    sample_bytes = int(np.prod(ECG_SHAPE)) * 2 if kind == "ecg" else int(np.prod(IMAGE_SHAPE))
    ext = "mat" if kind == "ecg" else "jpg"
    climb = ClimbFiles(sorted(str(p) for p in (base / "climb").glob(f"*.{ext}")), kind)
    wds_urls = sorted(str(p) for p in (base / "wds").glob("*.tar"))
    readers: list[tuple[str, Callable[[], Iterator[Any]], Path]] = [
        ("climb-etl", lambda: read_ours(str(base / "ours"), workers), base / "ours"),
        ("climb-etl-threads", lambda: read_ours(str(base / "ours"), 0), base / "ours"),
        ("mds", lambda: read_mds(str(base / "mds"), None, workers), base / "mds"),
        ("webdataset", lambda: read_wds(wds_urls, workers), base / "wds"),
        ("climb-way", lambda: read_climb(climb, workers), base / "climb"),
        ("ceiling", lambda: read_ceiling(str(base / "ours"), workers), base / "ours"),
    ]
    if not (base / "mds-cache-ready").exists():  # MDS decompresses shards into its cache once
        for _ in read_mds(str(base / "mds"), None, workers):
            pass
        (base / "mds-cache-ready").write_text("1")
    rows = []
    print(f"{kind} local {cache}", flush=True)
    warm_up([(name, make_iter) for name, make_iter, _ in readers if name != "ceiling"])
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in readers}
    for _ in range(REPEATS):  # interleaved: a slow spell of the host hits every reader alike
        for name, make_iter, data_dir in readers:
            if cache == "cold":
                if not drop_caches():
                    raise SystemExit("cold-cache runs need root (echo 3 > /proc/sys/vm/drop_caches)")
            else:
                warm_files(data_dir)
            runs[name].append(measure(name, make_iter, sample_bytes, max_s))
    for measured in runs.values():
        rows.append({"corpus": kind, "storage": "local", "cache": cache, **median_row(measured)})
    return rows


def median_row(measured: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median samples/s (the lower middle for an even count), with every run's rate."""
    ok = sorted((m for m in measured if "samples_s" in m), key=lambda m: m["samples_s"])
    if not ok:
        return measured[-1]
    return {**ok[(len(ok) - 1) // 2], "runs_samples_s": [m.get("samples_s") for m in measured]}


def run_s3(kind: str, base: Path, workers: int, max_s: float) -> list[dict[str, Any]]:
    import boto3
    import s3fs

    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    port = _free_port()
    # the endpoint is its own process, as an object store is: serving bytes then costs the readers
    # no GIL time (an in-process moto server would slow in-process readers, not worker processes)
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    os.environ["S3_ENDPOINT_URL"] = endpoint  # MosaicML Streaming reads this
    rows = []
    try:
        _wait_for_bucket(endpoint, "bench")
        opts = {"key": "bench", "secret": "bench", "client_kwargs": {"endpoint_url": endpoint}}
        fs = s3fs.S3FileSystem(**opts)
        t0 = time.perf_counter()
        for sub in ("ours", "mds", "wds", "climb"):
            fs.put(str(base / sub), f"bench/{kind}/{sub}", recursive=True)
        print(f"{kind} S3: uploaded in {time.perf_counter() - t0:.0f} s", flush=True)
        sample_bytes = int(np.prod(ECG_SHAPE)) * 2 if kind == "ecg" else int(np.prod(IMAGE_SHAPE))
        ext = "mat" if kind == "ecg" else "jpg"
        keys = sorted(f"{kind}/climb/{p.name}" for p in (base / "climb").glob(f"*.{ext}"))
        climb = ClimbFiles(keys, kind, s3={"endpoint": endpoint, "bucket": "bench"})
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        wds_urls = [  # presigned GETs streamed by curl, as WebDataset reads private buckets over HTTP
            "pipe:curl -s -f '"
            + s3.generate_presigned_url(
                "get_object", Params={"Bucket": "bench", "Key": f"{kind}/wds/{p.name}"}, ExpiresIn=7200
            )
            + "'"
            for p in sorted((base / "wds").glob("*.tar"))
        ]
        url = f"s3://bench/{kind}/ours"

        def mds() -> Iterator[Any]:
            cache = base / "mds-s3-cache"
            shutil.rmtree(cache, ignore_errors=True)
            yield from read_mds(str(cache), f"s3://bench/{kind}/mds", workers)

        readers = [
            ("climb-etl", lambda: read_ours(url, workers, opts)),
            ("climb-etl-threads", lambda: read_ours(url, 0, opts)),
            ("mds", mds),
            ("webdataset", lambda: read_wds(wds_urls, workers)),
            ("climb-way", lambda: read_climb(climb, workers)),
            ("ceiling", lambda: read_ceiling(url, workers, opts)),
        ]
        print(f"{kind} s3", flush=True)
        warm_up([r for r in readers if r[0] not in ("mds", "ceiling")])
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in readers}
        for _ in range(REPEATS):
            for name, make_iter in readers:
                runs[name].append(measure(name, make_iter, sample_bytes, max_s))
        for measured in runs.values():
            rows.append({"corpus": kind, "storage": "s3-moto", "cache": "n/a", **median_row(measured)})
    finally:
        server.terminate()
        server.wait(timeout=30)
    return rows


def _wait_for_bucket(endpoint: str, bucket: str, timeout_s: float = 60.0) -> None:
    """Create ``bucket`` once the endpoint answers (the server process takes a few seconds to start)."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.create_bucket(Bucket=bucket)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setting: this reader vs the faster peer, the ceiling and the CLIMB way."""
    out = []
    settings = sorted({(r["corpus"], r["storage"], r["cache"]) for r in rows})
    for corpus, storage, cache in settings:
        rate = {
            r["reader"]: r["samples_s"]
            for r in rows
            if (r["corpus"], r["storage"], r["cache"]) == (corpus, storage, cache) and "samples_s" in r
        }
        out.append(
            {
                "corpus": corpus,
                "storage": storage,
                "cache": cache,
                **ratios(rate, ("climb-etl", "climb-etl-threads")),
            }
        )
    return out


def _quiet() -> None:
    import logging
    import warnings

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request log lines
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    warnings.filterwarnings("ignore", message=".*suggested max number of worker")


def main() -> None:
    _quiet()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 ECG + 500 images, S3 on 1,000 + 250")
    parser.add_argument("--ecg", type=int, default=20_000)
    parser.add_argument("--images", type=int, default=5_000)
    parser.add_argument("--s3-ecg", type=int, default=None, help="ECG samples from S3 (default: --ecg)")
    parser.add_argument("--s3-images", type=int, default=None, help="images from S3 (default: --images)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="runs per reader and setting (median kept)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="cap on one reader's run")
    parser.add_argument("--workdir", default="/tmp/climb-stream-bench")
    parser.add_argument(
        "--jobs", type=int, default=len(os.sched_getaffinity(0)), help="processes writing the corpora"
    )
    parser.add_argument("--skip-s3", action="store_true")
    parser.add_argument("--build-only", action="store_true", help="write the corpora and stop")
    parser.add_argument("--skip-cold", action="store_true")
    parser.add_argument(
        "--corpora", default="ecg,image", help="comma list; other corpora's rows in --out are kept"
    )
    parser.add_argument(
        "--skip-local", action="store_true", help="S3 runs only; keep the local rows already in --out"
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "stream.json"))
    parser.add_argument(
        "--image-codec",
        default=None,
        help="codec for pixel arrays instead of the default format's (e.g. blosc-lz4: raw-speed decode, "
        "2x the bytes); the corpus is then built separately",
    )
    args = parser.parse_args()
    global FORMAT, REPEATS
    REPEATS = max(1, args.repeats)
    from dataclasses import replace

    from manifests.writer import DEFAULT_FORMAT

    FORMAT = DEFAULT_FORMAT
    if args.image_codec:
        level = 1 if "zstd" in args.image_codec else 5
        FORMAT = replace(DEFAULT_FORMAT, image_compression=args.image_codec, image_level=level)
    if args.quick:
        args.ecg, args.images = 2_000, 500
        args.s3_ecg, args.s3_images = args.s3_ecg or 1_000, args.s3_images or 250
    args.s3_ecg = args.s3_ecg or args.ecg
    args.s3_images = args.s3_images or args.images
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rows: list[dict[str, Any]] = []
    builds = {}
    if args.build_only:
        for kind, n in (
            ("ecg", args.ecg),
            ("image", args.images),
            ("ecg", args.s3_ecg),
            ("image", args.s3_images),
        ):
            build(kind, n, work, args.jobs)
        return
    kinds = [k for k in args.corpora.split(",") if k]
    partial = args.skip_local or args.skip_s3 or set(kinds) != {"ecg", "image"}
    if partial and Path(args.out).exists():
        previous = json.loads(Path(args.out).read_text())  # keep the rows this run does not redo
        rows = [
            r
            for r in previous["rows"]
            if r["corpus"] not in kinds
            or (args.skip_local and r.get("storage") == "local")
            or (args.skip_s3 and r.get("storage") != "local")
        ]
        for r in rows:  # each row says which run measured it
            r.setdefault("run_started", previous.get("date"))
        builds = previous.get("corpora", {})
    local_sets = [(k, n) for k, n in (("ecg", args.ecg), ("image", args.images)) if k in kinds]
    for kind, n in () if args.skip_local else local_sets:
        base = build(kind, n, work, args.jobs)
        builds[f"{kind}-{n}"] = json.loads((base / "done.json").read_text())
        for cache in ("warm",) if args.skip_cold else ("warm", "cold"):
            rows += run_local(kind, base, args.workers, args.max_seconds, cache)
    if not args.skip_s3:
        for kind, n in [(k, n) for k, n in (("ecg", args.s3_ecg), ("image", args.s3_images)) if k in kinds]:
            base = build(kind, n, work, args.jobs)
            builds[f"{kind}-{n}"] = json.loads((base / "done.json").read_text())
            try:
                rows += run_s3(kind, base, args.workers, args.max_seconds)
            except Exception as exc:  # keep the local results
                print(f"{kind} S3 run failed: {type(exc).__name__}: {exc}", flush=True)
                rows.append({"corpus": kind, "storage": "s3-moto", "cache": "n/a", "error": repr(exc)[:300]})
    import torch
    import webdataset
    import zarr

    _stub_optional_imports()
    import streaming

    for r in rows:
        r.setdefault("run_started", started)
    load = os.getloadavg()
    result = {
        "benchmark": "stream",
        "date": started,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": len(os.sched_getaffinity(0)),
            "loadavg_at_end": [round(x, 2) for x in load],
            "note": "shared 2-core machine: other jobs ran at the same time, so absolute numbers are noisy",
        },
        "versions": {
            "torch": torch.__version__,
            "zarr": zarr.__version__,
            "mosaicml-streaming": streaming.__version__,
            "webdataset": getattr(webdataset, "__version__", "?"),
            "numpy": np.__version__,
        },
        "settings": {
            "batch": BATCH,
            "workers": args.workers,
            "shard_bytes": SHARD_BYTES,
            "quick": args.quick,
            "max_seconds": args.max_seconds,
            "format": FORMAT.to_dict(),
        },
        "corpora": builds,
        "rows": rows,
        "summary": summarise(rows),
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
