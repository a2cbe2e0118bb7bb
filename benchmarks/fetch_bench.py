"""Fetch throughput against a PhysioNet-like loopback server with a per-connection bandwidth cap.

PhysioNet throttles each connection (about 50 KB/s), so parallel connections are the
throughput. This benchmark serves N files through :class:`PhysioNetMirror` with a
per-connection cap (scaled up so the run is short), fetches them with ``fetch_source`` at 1,
4, 8 and 16 connections, and with ``wget -c`` run file by file (CLIMB's own downloader's way),
in the same run, and reports aggregate MB/s. ``fetch_source`` also verifies every file's
SHA-256 against ``SHA256SUMS.txt``; ``wget -c`` verifies nothing.

Usage: ``.venv/bin/python benchmarks/fetch_bench.py [--files 16] [--file-kib 256] [--cap-kib 256]``.
Writes ``benchmarks/results/fetch.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from manifests.schema import SourceManifest  # noqa: E402
from pipelines.fetch.credentials import ChainCredentials  # noqa: E402
from pipelines.fetch.download import RetryPolicy  # noqa: E402
from pipelines.fetch.mirror.physionet import PhysioNetMirror  # noqa: E402
from pipelines.fetch.mirror.server import Faults, write_sha256sums  # noqa: E402
from pipelines.fetch.source import fetch_source  # noqa: E402

PROJECT = "bench-project/1.0.0"


def build_tree(root: Path, n_files: int, size_bytes: int) -> int:
    rng = random.Random(0)
    proj = root / PROJECT
    for i in range(n_files):
        p = proj / "records" / f"r{i:04d}.dat"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(size_bytes))
    write_sha256sums(proj)
    return n_files * size_bytes


def manifest() -> SourceManifest:
    return SourceManifest.model_validate(
        {
            "id": "bench",
            "title": "bench",
            "group": "1d",
            "modality": "ecg",
            "licence": "none",
            "labels": {"kind": "none"},
            "deid": {"namespace": "bench"},
            "host": {
                "kind": "physionet",
                "access": "open",
                "url": f"https://physionet.org/files/{PROJECT}/",
                "checksums": "SHA256SUMS.txt",
                "dataset": "records",
            },
        }
    )


def run_fetch(server: PhysioNetMirror, dest: Path, connections: int) -> float:
    shutil.rmtree(dest, ignore_errors=True)
    t0 = time.perf_counter()
    log = fetch_source(
        manifest(),
        dest,
        endpoints={"physionet": server.url},
        max_connections=connections,
        credentials=ChainCredentials([]),
        progress=False,
        retry=RetryPolicy(base_s=0.05),
    )
    elapsed = time.perf_counter() - t0
    assert log.status == "ok" and all(r.status == "downloaded" for r in log.files)
    return elapsed


def run_wget(server: PhysioNetMirror, dest: Path, names: list[str]) -> float:
    wget = shutil.which("wget")
    if wget is None:
        raise SystemExit("wget not found: apt-get install -y wget")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    t0 = time.perf_counter()
    for name in names:  # one file at a time, as CLIMB's downloader does
        url = f"{server.url}/files/{PROJECT}/records/{name}"
        subprocess.run([wget, "-c", "-q", "-O", str(dest / name), url], check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--file-kib", type=int, default=256)
    ap.add_argument("--cap-kib", type=int, default=256, help="per-connection cap, KiB/s (PhysioNet: ~50)")
    ap.add_argument("--connections", default="1,4,8,16")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fetch.json"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="climb-fetch-bench-"))
    try:
        total = build_tree(tmp / "srv", args.files, args.file_kib * 1024)
        names = sorted(p.name for p in (tmp / "srv" / PROJECT / "records").iterdir())
        cap = args.cap_kib * 1024
        rows = []
        with PhysioNetMirror(tmp / "srv", Faults(bandwidth_bytes_per_s=cap)) as server:
            for n in [int(c) for c in args.connections.split(",")]:
                s = run_fetch(server, tmp / f"dest-{n}", n)
                rows.append(
                    {
                        "tool": "climb fetch",
                        "connections": n,
                        "seconds": round(s, 3),
                        "MB_per_s": round(total / s / 1e6, 3),
                        "verified_sha256": True,
                    }
                )
            s = run_wget(server, tmp / "dest-wget", names)
            rows.append(
                {
                    "tool": "wget -c (file by file)",
                    "connections": 1,
                    "seconds": round(s, 3),
                    "MB_per_s": round(total / s / 1e6, 3),
                    "verified_sha256": False,
                }
            )
        wget_version = subprocess.run(
            ["wget", "--version"], capture_output=True, text=True
        ).stdout.splitlines()[0]
        result = {
            "benchmark": "fetch throughput vs per-connection bandwidth cap",
            "date": datetime.now(UTC).isoformat(),
            "dataset": {"files": args.files, "file_bytes": args.file_kib * 1024, "total_bytes": total},
            "per_connection_cap_bytes_per_s": cap,
            "ideal_MB_per_s_per_connection": round(cap / 1e6, 3),
            "hardware": {
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
                "platform": platform.platform(),
            },
            "versions": {"python": platform.python_version(), "wget": wget_version},
            "results": rows,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        base = rows[0]["MB_per_s"]
        print(f"{args.files} files x {args.file_kib} KiB, cap {args.cap_kib} KiB/s per connection")
        print(f"{'tool':<24}{'conns':>6}{'seconds':>10}{'MB/s':>9}{'x 1 conn':>10}")
        for r in rows:
            print(
                f"{r['tool']:<24}{r['connections']:>6}{r['seconds']:>10.2f}{r['MB_per_s']:>9.3f}"
                f"{r['MB_per_s'] / base:>10.2f}"
            )
        print(f"wrote {args.out}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
