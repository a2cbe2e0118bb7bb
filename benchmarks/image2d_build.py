"""2D image build benchmark: throughput per core of the image2d pipeline on a VinDr-CXR-like release.

Input: a synthetic PhysioNet ``vindr-cxr/1.0.0`` release written by the demo's generator
(:func:`pipelines.demo.cxr_release.write_vindr_cxr_release`: CR radiographs written by pydicom,
12 bits stored in 16, about 30 % MONOCHROME1, planted identifiers, the label CSVs), at
radiograph sizes like the real release's (rows x cols cycled through ``SIZES``: about
2,300-3,100 px a side, 10-16 MB per uncompressed file). Generated once into
``$CLIMB_CACHE_DIR/bench/vindr-cxr-<n>``, in batches so memory stays flat.

Measured in a fresh process per run (median of ``--repeats``): ``build_source("vindr_cxr", ...)``
on the local backend (one process, one core): index, read DICOM, modality/VOI LUT, MONOCHROME1
inversion, resize to 1024 px long side, PS3.15 de-identification with keyed UIDs, validation,
Zarr + Parquet shards, publish. Reported:

* ``records_per_s`` and ``raw_mb_per_s`` (MB of raw DICOM read per second of wall time, whole build);
* ``shard_cpu_ms_per_record`` and ``raw_mb_per_cpu_s``: CPU time of the shard thread
  (``thread_time``) per record, and raw MB per CPU second: the per-core throughput that a
  loaded machine barely distorts (``infra/sizing.md`` uses it for the 2D modalities);
* ``built_over_raw``: bytes written ÷ raw bytes (the storage ratio ``c`` of the sizing note).

Usage (full size)::

    .venv/bin/python benchmarks/image2d_build.py --images 120 --repeats 3

writes ``benchmarks/results/image2d_build.json`` (``image2d_build_<n>.json`` for other sizes).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.scale_ecg import PRELUDE, bench_env, read_spans, run_child  # noqa: E402

RESULTS_DIR = ROOT / "benchmarks" / "results"
#: (rows, cols): VinDr-CXR radiographs are mostly 2,000-3,100 px a side.
SIZES = ((3072, 2540), (2800, 2400), (2304, 2304), (2500, 2048))
BATCH = 8
ITEMS_PER_SHARD = 32

# Runs after scale_ecg's PRELUDE, which defines ``timed_backend`` (per-shard span and CPU records) and ``report``.
BUILD = """
from pipelines.stages.build import BuildConfig, build_source
from pipelines.backends.local import map_shards
r = build_source("vindr_cxr", {raw!r}, {out!r}, BuildConfig(items_per_shard={ips}), map_shards=timed_backend(map_shards))
report(r, bytes=r.bytes)
"""


def release(n: int) -> Path:
    """A VinDr-CXR-like release of ``n`` radiographs (cached; generated in batches of ``BATCH``)."""
    from pipelines.demo.cxr_release import write_vindr_cxr_release

    base = Path(os.environ.get("CLIMB_CACHE_DIR", Path.home() / ".cache" / "climb-etl")) / "bench"
    root = base / f"vindr-cxr-{n}"
    marker = root / ".complete"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    tables: dict[str, list[list[str]]] = {"image_labels_train.csv": [], "image_labels_test.csv": []}
    for start in range(0, n, BATCH):
        count = min(BATCH, n - start)
        with tempfile.TemporaryDirectory(prefix="climb-vindr-", dir=base) as tmp:
            write_vindr_cxr_release(
                tmp, count, seed=1000 + start, sizes=SIZES[start % len(SIZES) :] + SIZES[: start % len(SIZES)]
            )
            for split in ("train", "test"):
                (root / split).mkdir(parents=True, exist_ok=True)
                for path in Path(tmp, split).glob("*.dicom"):
                    shutil.move(path, root / split / path.name)
            for name, rows in tables.items():
                with open(Path(tmp) / "annotations" / name, newline="") as handle:
                    table = list(csv.reader(handle))
                rows.extend(table if not rows else table[1:])
        print(f"release: {start + count}/{n} radiographs", flush=True)
    (root / "annotations").mkdir(exist_ok=True)
    for name, rows in tables.items():
        with open(root / "annotations" / name, "w", newline="") as handle:
            csv.writer(handle).writerows(rows)
    marker.write_text("ok")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    raw = release(args.images)
    raw_bytes = sum(path.stat().st_size for path in raw.rglob("*") if path.is_file())
    env = bench_env(
        CLIMB_DEID_SECRET=os.environ.get("CLIMB_DEID_SECRET", "benchmark-secret-0123456789abcdef")
    )
    runs = []
    with tempfile.TemporaryDirectory(prefix="climb-image2d-") as work:
        for repeat in range(args.repeats):
            out, spans = Path(work) / f"out-{repeat}", Path(work) / f"spans-{repeat}"
            spans.mkdir()
            load_before = os.getloadavg()[0]
            result, wall, cpu = run_child(
                PRELUDE.format(spans=str(spans))
                + BUILD.format(raw=str(raw), out=str(out), ips=ITEMS_PER_SHARD),
                env,
            )
            shutil.rmtree(out, ignore_errors=True)
            row = {**result, "wall_s": wall, "tree_cpu_s": cpu, **read_spans(spans)}
            row["records_per_s"] = result["items"] / result["total_s"]
            row["raw_mb_per_s"] = raw_bytes / 1e6 / result["total_s"]
            row["raw_mb_per_cpu_s"] = (
                raw_bytes / 1e6 / (row["shard_cpu_ms_per_record"] * result["items"] / 1000)
            )
            row["built_over_raw"] = result["bytes"] / raw_bytes
            row["load_1min_before_after"] = [load_before, os.getloadavg()[0]]
            runs.append(row)
            print(
                f"[{repeat + 1}/{args.repeats}] {result['items']} radiographs in {result['total_s']:.1f} s: "
                f"{row['records_per_s']:.1f} rec/s, {row['raw_mb_per_s']:.1f} MB/s; "
                f"{row['shard_cpu_ms_per_record']:.0f} ms CPU/record = {row['raw_mb_per_cpu_s']:.1f} MB per CPU-s; "
                f"load {load_before:.1f}",
                flush=True,
            )
    summary = {
        key: statistics.median(run[key] for run in runs)
        for key in (
            "records_per_s",
            "raw_mb_per_s",
            "shard_cpu_ms_per_record",
            "raw_mb_per_cpu_s",
            "built_over_raw",
            "total_s",
        )
    }
    summary["raw_mb_per_record"] = raw_bytes / 1e6 / args.images
    print(json.dumps({k: round(v, 3) for k, v in summary.items()}, indent=1))
    payload = {
        "benchmark": "image2d_build",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["benchmarks/image2d_build.py", *sys.argv[1:]]),
        "source": "vindr_cxr (synthetic release: pipelines.demo.cxr_release.write_vindr_cxr_release)",
        "images": args.images,
        "sizes_rows_cols": SIZES,
        "raw_bytes": raw_bytes,
        "items_per_shard": ITEMS_PER_SHARD,
        "backend": "local (1 process)",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_avg_at_end": os.getloadavg(),
        },
        "summary": summary,
        "runs": runs,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    target = RESULTS_DIR / (
        "image2d_build.json" if args.images == 120 else f"image2d_build_{args.images}.json"
    )
    target.write_text(json.dumps(payload, indent=1))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
