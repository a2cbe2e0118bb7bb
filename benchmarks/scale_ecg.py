"""Scaling benchmark: the same ECG build on every backend, and Prefect's orchestration overhead.

One synthetic CinC release (default 20,000 records), built in a fresh subprocess per run with:
``local`` (in-process), Dask with 1 and 2 worker processes, Beam (FnApiRunner) with 1 and 2
workers, and the Prefect ``build_source`` flow on Dask with 2 workers (ephemeral Prefect
server; its start-up is included, as a user pays it). Reported: records/s (median of
``--repeats``), scaling efficiency (2-worker ÷ 1-worker throughput) per engine, and the Prefect
overhead ((flow time − bare time) ÷ bare time, Dask 2 workers both).

Usage: ``python benchmarks/scale_ecg.py [--records 20000] [--repeats 2]``; writes
``benchmarks/results/scale_ecg.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.ecg_build import BUILD, release, run_measured  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "scale_ecg.json"

BUILD_BEAM = """
import json, time
from pipelines.stages.build import build_source, BuildConfig
from pipelines.backends import BackendOptions, get_backend
t = time.perf_counter()
r = build_source("georgia", {raw!r}, {out!r}, BuildConfig(items_per_shard=512), map_shards=get_backend("beam"),
                 backend_options=BackendOptions(workers={workers}))
print(json.dumps({{"seconds": time.perf_counter() - t, "items": r.items_in}}))
"""

FLOW = """
import json, os, tempfile, time
os.environ["PREFECT_HOME"] = tempfile.mkdtemp()
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
t = time.perf_counter()
from pipelines.flows.build import build_source
r = build_source("georgia", {out!r}, raw_dir={raw!r}, config={{"items_per_shard": 512}},
                 options={{"backend": "dask", "workers": {workers}, "max_memory": "4GiB"}})
print(json.dumps({{"seconds": time.perf_counter() - t, "items": r["items_in"]}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="run only these configurations (names as printed)")
    args = parser.parse_args()
    raw = release(args.records)
    configs = [
        ("local", BUILD, "local", 1),
        ("dask-1", BUILD, "dask", 1),
        ("dask-2", BUILD, "dask", 2),
        ("beam-1", BUILD_BEAM, "beam", 1),
        ("beam-2", BUILD_BEAM, "beam", 2),
        ("prefect-flow-dask-2", FLOW, "dask", 2),
    ]
    rows = {}
    if args.only:
        configs = [c for c in configs if c[0] in args.only]
    for name, template, backend, workers in configs:
        seconds = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory(prefix="climb-scale-") as out:
                result, _ = run_measured(
                    template.format(raw=str(raw), out=out, backend=backend, workers=workers)
                )
            seconds.append(result["seconds"])
        median = statistics.median(seconds)
        rows[name] = {
            "seconds_runs": seconds,
            "seconds_median": median,
            "records_per_s": args.records / median,
        }
        print(f"{name:<22} {args.records / median:>8.0f} rec/s  ({median:.1f} s)", flush=True)
    summary = {}
    ratios = {
        "dask_efficiency_2w_over_1w": ("dask-2", "dask-1"),
        "beam_efficiency_2w_over_1w": ("beam-2", "beam-1"),
    }
    for key, (two, one) in ratios.items():
        if two in rows and one in rows:
            summary[key] = rows[two]["records_per_s"] / rows[one]["records_per_s"]
    if "dask-2" in rows and "prefect-flow-dask-2" in rows:
        bare = rows["dask-2"]["seconds_median"]
        summary["prefect_overhead_fraction"] = (rows["prefect-flow-dask-2"]["seconds_median"] - bare) / bare
    print(json.dumps(summary, indent=1))
    payload = {
        "benchmark": "scale_ecg",
        "date": time.strftime("%Y-%m-%d"),
        "records": args.records,
        "repeats": args.repeats,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_avg_at_end": os.getloadavg(),
        },
        "rows": rows,
        "summary": summary,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    target = RESULTS if not args.only else RESULTS.with_name(f"scale_ecg_{'_'.join(args.only)}.json")
    target.write_text(json.dumps(payload, indent=1))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
