"""ECG build benchmark: records/s end to end and peak RSS, against wfdb.rdrecord per record.

Input: synthetic CinC-format releases (``pipelines.demo.ecg_release``, the same bytes as the
real packaging: ``.hea`` + MAT v4 ``.mat``, 12 x 5000 int16, 500 Hz) of 5,000 and 20,000
records, generated once into ``$CLIMB_CACHE_DIR/bench``.

Measured in one run, each repeated ``--repeats`` times (median reported):

* ``climb``: ``build_source`` end to end (index, read, canonicalise, de-identify,
  validate, write Zarr + Parquet shards, publish), in a fresh subprocess per run, on the
  local backend (1 process) and on Dask with 2 worker processes. Peak RSS is sampled from
  the whole process tree (psutil, every 50 ms): summed over processes and the largest one.
* ``baseline``: ``wfdb.rdrecord`` on every record (read only: no resampling, no writing),
  in 1 and 2 processes: what reading alone costs the way CLIMB's loaders read.

Before timing, every input file is read once (warm page cache, for every configuration alike)
and one small untimed build fills the children's bytecode cache (``PYTHONPYCACHEPREFIX``, as a
deployed image compiles bytecode at install).

Usage: ``python benchmarks/ecg_build.py [--sizes 5000 20000] [--repeats 3]``; writes
``benchmarks/results/ecg_build.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "ecg_build.json"


def release(n: int) -> Path:
    from pipelines.demo.ecg_release import write_cinc_release

    base = Path(os.environ.get("CLIMB_CACHE_DIR", Path.home() / ".cache" / "climb-etl")) / "bench"
    root = base / f"georgia-{n}"
    marker = root / ".complete"
    if not marker.exists():
        write_cinc_release(root, "georgia", n, seed=n, via_wfdb=False)
        marker.write_text("ok")
    return root


def sample_tree_rss(proc: psutil.Process, stop: threading.Event, peaks: dict[str, Any]) -> None:
    """Peak RSS of the tree (sum and largest process) and the CPU seconds each process used."""
    cpu: dict[int, float] = {}
    while not stop.is_set():
        try:
            procs = [proc, *proc.children(recursive=True)]
            rss = []
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    rss.append(p.memory_info().rss)
                    times = p.cpu_times()
                    cpu[p.pid] = times.user + times.system  # children are sampled themselves
            peaks["sum"] = max(peaks.get("sum", 0), sum(rss))
            peaks["max_process"] = max(peaks.get("max_process", 0), max(rss, default=0))
            peaks["cpu_seconds"] = sum(cpu.values())
        except psutil.Error:
            pass
        stop.wait(0.05)


def run_measured(code: str) -> tuple[dict, dict[str, Any]]:
    """Run ``code`` in a fresh interpreter; it prints one JSON line last. Returns it and peak RSS."""
    from benchmarks.scale_ecg import bench_env  # here: scale_ecg imports this module

    env = bench_env(
        CLIMB_DEID_SECRET=os.environ.get("CLIMB_DEID_SECRET", "benchmark-secret-0123456789abcdef")
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    stop = threading.Event()
    peaks: dict[str, Any] = {}
    sampler = threading.Thread(
        target=sample_tree_rss, args=(psutil.Process(proc.pid), stop, peaks), daemon=True
    )
    sampler.start()
    out, err = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]), peaks


BUILD = """
import contextlib, json, time
from pipelines.stages.build import build_source, plan_build, BuildConfig
from pipelines.backends import BackendOptions, get_backend
if __name__ == "__main__":
    backend = {backend!r}
    config = BuildConfig(items_per_shard=512)
    waited, options = 0.0, None
    with contextlib.ExitStack() as stack:
        t, c_build = time.perf_counter(), time.process_time()
        ready = None
        if backend == "dask":  # as `climb build --backend dask`: the cluster starts while the plan is made
            from pipelines.backends.dask import cluster_started_early
            ready = stack.enter_context(
                cluster_started_early(BackendOptions(workers={workers}, max_memory="4GiB")))
        plan = plan_build("georgia", {raw!r}, {out!r}, config)
        if ready is not None:
            t_wait = time.perf_counter()
            options = ready()
            waited = time.perf_counter() - t_wait  # the part of the cluster start the plan did not hide
        r = build_source("georgia", {raw!r}, {out!r}, config, plan=plan,
                         map_shards=None if backend == "local" else get_backend(backend), backend_options=options)
        seconds = time.perf_counter() - t
        cpu = time.process_time() - c_build
    print(json.dumps({{"seconds": seconds, "build_seconds": seconds - waited, "startup_seconds": waited,
                      "client_cpu_seconds": cpu, "items": r.items_in,
                      "samples": r.samples_out, "quarantined": r.quarantined, "bytes": r.bytes}}))
"""

BASELINE = """
import json, time, glob, wfdb
from multiprocessing import Pool
def read(h):
    rec = wfdb.rdrecord(h[:-4])
    return rec.p_signal.shape[1]
files = sorted(glob.glob({raw!r} + "/**/*.hea", recursive=True))
t = time.perf_counter()
if {workers} == 1:
    n = sum(map(read, files))
else:
    with Pool({workers}) as pool:
        n = sum(pool.map(read, files, chunksize=64))
print(json.dumps({{"seconds": time.perf_counter() - t, "items": len(files), "samples": n}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        raw = release(n)
        # Untimed warm-up: every input file read once (warm page cache for every configuration)
        # and one small build, so the children's bytecode cache is filled (as a deployed image has it).
        for path in sorted(raw.rglob("*")):
            if path.is_file():
                path.read_bytes()
        with tempfile.TemporaryDirectory(prefix="climb-bench-") as out:
            run_measured(BUILD.format(raw=str(release(50)), out=out, backend="dask", workers=1))
        configs = [
            ("climb local (1 process)", BUILD, "local", 1),
            ("climb dask (2 workers)", BUILD, "dask", 2),
        ]
        if n == args.sizes[0]:
            # The baseline is measured once, on the first size (reading scales linearly).
            configs += [
                ("baseline wfdb.rdrecord (1 process)", BASELINE, "-", 1),
                ("baseline wfdb.rdrecord (2 processes)", BASELINE, "-", 2),
            ]
        for name, template, backend, workers in configs:
            runs, build_runs, startups, cpu_ms = [], [], [], []
            peaks_sum, peaks_max = [], []
            for _ in range(args.repeats):
                with tempfile.TemporaryDirectory(prefix="climb-bench-") as out:
                    code = template.format(raw=str(raw), out=out, backend=backend, workers=workers)
                    result, peaks = run_measured(code)
                runs.append(result["items"] / result["seconds"])
                build_runs.append(result["items"] / result.get("build_seconds", result["seconds"]))
                startups.append(result.get("startup_seconds", 0.0))
                cpu_ms.append(1e3 * peaks.get("cpu_seconds", 0.0) / result["items"])
                peaks_sum.append(peaks.get("sum", 0))
                peaks_max.append(peaks.get("max_process", 0))
            rows.append(
                {
                    "records": n,
                    "config": name,
                    "records_per_s_median": statistics.median(runs),
                    "records_per_s_runs": runs,
                    # Dask: without the part of the LocalCluster start the planning did not hide (beside it)
                    "build_records_per_s_median": statistics.median(build_runs),
                    "cluster_startup_s_median": statistics.median(startups),
                    # user + system CPU of the whole process tree, per record (load-insensitive)
                    "tree_cpu_ms_per_record_median": statistics.median(cpu_ms),
                    "peak_rss_tree_mb_median": statistics.median(peaks_sum) / 2**20,
                    "peak_rss_largest_process_mb_median": statistics.median(peaks_max) / 2**20,
                    "load_avg_1min_after": os.getloadavg()[0],
                }
            )
            print(
                f"{n:>6} {name:<38} {statistics.median(runs):>8.0f} rec/s "
                f"(build {statistics.median(build_runs):.0f}, CPU {statistics.median(cpu_ms):.2f} ms/rec)  "
                f"peak RSS tree {statistics.median(peaks_sum) / 2**20:>7.0f} MB, largest process "
                f"{statistics.median(peaks_max) / 2**20:>6.0f} MB",
                flush=True,
            )
    base = next(r for r in rows if r["config"] == "baseline wfdb.rdrecord (2 processes)")
    for ours in rows:
        if ours["config"].startswith("climb"):
            ours["ratio_vs_baseline_2proc"] = ours["records_per_s_median"] / base["records_per_s_median"]
    payload = {
        "benchmark": "ecg_build",
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_avg_at_end": os.getloadavg(),
        },
        "repeats": args.repeats,
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(payload, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
