"""Measure compression and inner-chunk choices for the built-dataset format; record the choice.

For an ECG-like corpus (int16, 12×5000) and a radiograph-like image corpus (uint8, 512×512;
:mod:`stream_corpus`) this encodes one shard per setting with the real writer (:func:`manifests.writer.encode_shard`) and measures:

* ``ratio``: raw bytes / stored bytes;
* ``encode_mb_s``: raw MB/s through ``encode_shard`` (one thread);
* ``decode_mb_s``: raw MB/s of a whole-shard decode (:func:`manifests.reader.decode_sharded_array`,
  what the streaming loader does), one thread;
* ``random_ms``: mean time to read one random sample through the Zarr shard index from local
  disk (``SplitView[i]``), page cache warm.

Run: ``.venv/bin/python benchmarks/stream_format_choice.py [--quick]``; writes
``benchmarks/results/format_choice.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from stream_corpus import make_ecg, make_image  # noqa: E402

from manifests import open_dataset  # noqa: E402
from manifests.publish import publish_dataset  # noqa: E402
from manifests.reader import decode_sharded_array  # noqa: E402
from manifests.schema import Sample  # noqa: E402
from manifests.writer import DEFAULT_FORMAT, ShardFormat, encode_shard, write_shard  # noqa: E402

SETTINGS = [
    ("none", 0),
    ("blosc-lz4", 5),
    ("zstd", 1),
    ("zstd", 3),
    ("zstd", 9),
    ("blosc-zstd", 1),
    ("delta-zstd", 1),
    ("delta-zstd", 3),
]
CHUNKS = [("1 sample", 1), ("256 KiB", 256 << 10), ("1 MiB", 1 << 20), ("4 MiB", 4 << 20)]


def _samples(kind: str, n: int) -> list[Sample]:
    make = make_ecg if kind == "ecg" else make_image
    return [Sample(f"{kind}{i:06d}", f"p{i}", "train", {"x": make(i)}, {"label": i % 5}) for i in range(n)]


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_jpeg_ls(n: int, repeats: int) -> dict:
    """JPEG-LS (CharLS through pyjpegls), lossless, one image per frame: a reference point (it is
    not a Zarr codec, so the writer cannot use it without a codec of its own)."""
    import jpeg_ls

    images = [make_image(i) for i in range(n)]
    raw = sum(a.nbytes for a in images)
    t0 = time.perf_counter()
    frames = [bytes(jpeg_ls.encode_array(a)) for a in images]
    t_enc = time.perf_counter() - t0
    for a, f in zip(images, frames, strict=True):
        assert np.array_equal(jpeg_ls.decode(np.frombuffer(f, np.uint8)), a)
    t_dec = _best(lambda: [jpeg_ls.decode(np.frombuffer(f, np.uint8)) for f in frames], repeats)
    return {
        "corpus": "image",
        "compression": "jpeg-ls (reference, not a zarr codec)",
        "level": 0,
        "inner_chunk": "1 sample",
        "samples_per_chunk": 1,
        "ratio": round(raw / sum(len(f) for f in frames), 3),
        "encode_mb_s": round(raw / t_enc / 1e6, 1),
        "decode_mb_s": round(raw / t_dec / 1e6, 1),
        "random_ms": None,
    }


def measure(kind: str, n: int, repeats: int) -> list[dict]:
    samples = _samples(kind, n)
    raw = sum(s.arrays["x"].nbytes for s in samples)
    rows = []
    for compression, level in SETTINGS:
        for chunk_name, chunk_bytes in CHUNKS:
            per_sample = samples[0].arrays["x"].nbytes
            fmt = ShardFormat(
                compression=compression,
                level=level,
                inner_chunk_bytes=max(chunk_bytes, per_sample) if chunk_bytes > 1 else per_sample,
                image_compression=None,  # the setting under test applies to every array
            )
            t_enc = _best(lambda fmt=fmt: encode_shard("train", 0, samples, fmt=fmt), 1)
            files = encode_shard("train", 0, samples, fmt=fmt)
            stored = sum(len(v) for k, v in files.items() if "/x/" in k)
            meta = json.loads(files["arrays/train.zarr/00000/x/zarr.json"])
            shard = next(v for k, v in files.items() if k.startswith("arrays/train.zarr/00000/x/c/"))
            assert decode_sharded_array(meta, shard) is not None
            t_dec = _best(lambda meta=meta, shard=shard: decode_sharded_array(meta, shard), repeats)
            with tempfile.TemporaryDirectory() as tmp:
                rec = write_shard(tmp, "train", 0, samples, fmt=fmt)
                publish_dataset(
                    tmp,
                    source="bench",
                    version="v",
                    shards=[rec],
                    quarantine=[],
                    items_in=n,
                    info={},
                    quarantine_max_fraction=0.0,
                )
                view = open_dataset(tmp).split("train").select(["x"])
                view[0]
                idx = np.random.default_rng(0).integers(0, n, size=min(n, 40))
                t0 = time.perf_counter()
                for i in idx:
                    view[int(i)]
                random_ms = (time.perf_counter() - t0) / len(idx) * 1e3
            rows.append(
                {
                    "corpus": kind,
                    "compression": compression,
                    "level": level,
                    "inner_chunk": chunk_name,
                    "samples_per_chunk": max(1, fmt.inner_chunk_bytes // per_sample),
                    "ratio": round(raw / stored, 3),
                    "encode_mb_s": round(raw / t_enc / 1e6, 1),
                    "decode_mb_s": round(raw / t_dec / 1e6, 1),
                    "random_ms": round(random_ms, 3),
                }
            )
            r = rows[-1]
            print(
                f"{kind:5s} {compression:10s} {level:2d} {chunk_name:9s} ratio {r['ratio']:5.2f} "
                f"enc {r['encode_mb_s']:7.1f} MB/s dec {r['decode_mb_s']:7.1f} MB/s random {r['random_ms']:6.2f} ms",
                flush=True,
            )
    return rows


#: The reasons for :data:`manifests.writer.DEFAULT_FORMAT`, from this script's measurements.
WHY = (
    "Signals (ECG int16): blosc-lz4 with byte shuffle. Local streaming is bound by decode CPU on "
    "this machine, as it is for every peer, so decode speed ranks first and size second: blosc-lz4 "
    "stores ECG 1.85x smaller and decodes at ~0.9 GB/s per core, where zstd-1 gives 1.5x, zstd-3 "
    "1.8x, blosc-zstd-1 1.9x and delta + zstd-1 2.1x, each at a third of the speed or less; 'none' "
    "decodes fastest but doubles the bytes on disk and over the network. "
    "Pixels (uint8 / uint16 images): delta (numcodecs) + zstd-1. On the radiograph-like corpus "
    "(smooth anatomy + sensor noise of 1-3 grey levels) byte-oriented codecs find little: blosc-lz4 "
    "1.04x, zstd-1 1.23x, zstd-3 1.40x, zstd-9 1.47x, blosc-zstd-1 1.25x, because the noise fills "
    "the low bits; predicting each pixel from the previous one (delta) leaves only the noise, and "
    "zstd-1 then stores 2.08x smaller (delta + zstd-3: 1.85x and slower). Decoding costs ~0.3 GB/s "
    "per core (zstd-1 alone ~0.35, blosc-lz4 ~1.4), i.e. ~1 ms per 512x512 image on this loaded "
    "machine. JPEG-LS (CharLS) compresses a little more (2.33x) but decodes ~18x slower (16 MB/s) "
    "and is not a Zarr codec. Images are large, so bytes matter on object stores (moto's loopback "
    "server, like a remote bucket, is bandwidth-bound at 100-250 MB/s here) and on cold disks; the "
    "delta is undone with one prefix sum per inner chunk (torch's scan when torch is loaded, as in "
    "any training process; NumPy's otherwise). The delta filter is numcodecs' (zarr-python reads "
    "it); it is not in the Zarr v3 core spec, so readers outside zarr-python need numcodecs' delta. "
    "Inner chunks of 256 KiB (one 512x512 image, two ECG windows) keep random access to one small "
    "chunk; whole-shard decoding barely depends on the chunk size. Numbers were taken on the shared "
    "2-core machine (load average 5-8), so single rows are noisy; compression ratios are exact."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small corpora (for a smoke run)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "format_choice.json"))
    args = parser.parse_args()
    n_ecg, n_img, repeats = (48, 24, 2) if args.quick else (256, 128, 3)
    try:  # a training process has torch loaded; the reader then undoes delta with torch's scan
        import torch  # noqa: F401

        prefix_sum = "torch"
    except ImportError:  # pragma: no cover - torch is optional
        prefix_sum = "numpy"
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rows = measure("ecg", n_ecg, repeats) + measure("image", n_img, repeats)
    rows.append(measure_jpeg_ls(n_img, repeats))
    r = rows[-1]
    print(f"image jpeg-ls ratio {r['ratio']:5.2f} dec {r['decode_mb_s']:7.1f} MB/s", flush=True)
    import zarr

    result = {
        "benchmark": "format_choice",
        "date": started,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": len(__import__("os").sched_getaffinity(0)),
        },
        "versions": {"zarr": zarr.__version__, "numpy": np.__version__},
        "corpora": {"ecg": f"{n_ecg} × int16 (12, 5000)", "image": f"{n_img} × uint8 (512, 512)"},
        "quick": args.quick,
        "delta_prefix_sum": prefix_sum,
        "rows": rows,
        "choice": DEFAULT_FORMAT.to_dict(),
        "why": WHY,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
