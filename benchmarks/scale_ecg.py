"""Scaling benchmark: the same ECG build on every backend, and Prefect's orchestration overhead.

One synthetic CinC release (default 20,000 records, ``benchmarks.ecg_build.release``), built in
a fresh subprocess per run with: ``local`` (in-process), Dask with 1 and 2 worker processes,
Beam (``FnApiRunner``, multi-process SDK harnesses) with 1 and 2 workers, and the Prefect
``build_source`` flow on Dask with 2 workers. Runs are interleaved (every configuration once,
then again) so slow drifts of a shared machine's load hit all of them alike.

Measured per run:

* ``total_s``: the whole build as a user runs it, from before the entry module's import to the
  end (Dask: cluster start + build + close; Beam: harness start-up inside the pipeline).
* ``startup_s`` (Dask): starting the ``LocalCluster`` (``pipelines.backends.dask.local_cluster``,
  the backend's own settings); ``build_s``: the ``build_source`` call on the started cluster
  (index, plan, shards, publish).
* ``span_s``: first shard start to last shard end, from a record each shard task writes (wall
  clock, start/end, and its thread's CPU time) — the engine's *build throughput*, without
  cluster or harness start-up and without the serial plan/publish steps around it. The
  scaling efficiency (2-worker ÷ 1-worker records/s) is reported on the span and on the total.
* ``shard_cpu_ms_per_record``: CPU time of the transform threads per record (``thread_time``):
  what a worker core spends per record, which a loaded machine barely distorts (two workers on
  two busy cores show up in the span, not here).
* ``tree_cpu_s``: CPU time of the child and every process it waited for (``RUSAGE_CHILDREN``).

Prefect: one real ``prefect server start`` (SQLite, no UI, no background services) is started
once, before the runs, and the flow runs against it as deployments' flow runs do; its start-up
is reported as ``prefect_server_start_s``. The overhead is ``(flow total − dask-2 total) ÷
dask-2 total``: same backend, same cluster settings, both in fresh processes, both timed from
before their imports (the flow's includes importing Prefect, creating the flow and task runs,
the artifact, and the server's API work on the same cores). Separately, a trivial flow in a
fresh process with no server (Prefect's ephemeral mode, what ``climb flow run`` does without
``PREFECT_API_URL``) gives ``ephemeral_startup_s``: that process's time minus the same trivial
flow's time against the running server (``..._new_home_s``: the first run in a fresh
``PREFECT_HOME``, which also creates and migrates the SQLite database; without: the next run).

Usage (full size; about 15-20 min on 2 quiet cores)::

    .venv/bin/python benchmarks/scale_ecg.py --records 20000 --repeats 2

``--only dask-1 dask-2`` runs a subset (written to ``scale_ecg_<names>.json``); results go to
``benchmarks/results/scale_ecg.json`` (or ``scale_ecg_<records>.json`` with ``--records`` other
than 20,000).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.ecg_build import release  # noqa: E402

RESULTS_DIR = ROOT / "benchmarks" / "results"
PREFECT = str(Path(sys.executable).with_name("prefect"))
ITEMS_PER_SHARD = 512
SERVER_START_TIMEOUT_S = 300

# Shared by the child scripts: a shard wrapper (pickled by value from __main__) that records each
# shard's wall span and its thread's CPU time in SPANS, one small JSON file per shard.
PRELUDE = """
import functools, json, os, time
T0 = time.perf_counter()
SPANS = {spans!r}

def timed(run_one, plan):
    import json, os, time, uuid
    wall, cpu = time.time(), time.thread_time()
    record = run_one(plan)
    row = {{"start": wall, "end": time.time(), "cpu": time.thread_time() - cpu, "pid": os.getpid(),
           "items": len(plan.items)}}
    with open(os.path.join(SPANS, uuid.uuid4().hex + ".json"), "w") as handle:
        json.dump(row, handle)
    return record

def timed_backend(mapper):
    def map_shards(run_one, plans, **kwargs):
        return mapper(functools.partial(timed, run_one), plans, **kwargs)
    return map_shards

def report(result, **fields):
    print(json.dumps({{"total_s": time.perf_counter() - T0, "items": result.items_in,
                      "samples": result.samples_out, "quarantined": result.quarantined, **fields}}))
"""

LOCAL = """
from pipelines.stages.build import BuildConfig, build_source
from pipelines.backends.local import map_shards
r = build_source("georgia", {raw!r}, {out!r}, BuildConfig(items_per_shard={ips}), map_shards=timed_backend(map_shards))
report(r)
"""

DASK = """
from pipelines.stages.build import BuildConfig, build_source
from pipelines.backends import BackendOptions
from pipelines.backends.dask import local_cluster, map_shards
if __name__ == "__main__":
    options = BackendOptions(workers={workers}, max_memory="4GiB")
    t = time.perf_counter()
    cluster = local_cluster(options)
    startup = time.perf_counter() - t
    t = time.perf_counter()
    r = build_source("georgia", {raw!r}, {out!r}, BuildConfig(items_per_shard={ips}),
                     map_shards=timed_backend(map_shards),
                     backend_options=BackendOptions(workers={workers}, dask_address=cluster.scheduler_address))
    build = time.perf_counter() - t
    t = time.perf_counter()
    cluster.close()
    report(r, startup_s=startup, build_s=build, close_s=time.perf_counter() - t)
"""

BEAM = """
from pipelines.stages.build import BuildConfig, build_source
from pipelines.backends import BackendOptions
from pipelines.backends.beam import map_shards
if __name__ == "__main__":
    r = build_source("georgia", {raw!r}, {out!r}, BuildConfig(items_per_shard={ips}),
                     map_shards=timed_backend(map_shards),
                     backend_options=BackendOptions(workers={workers}, beam_running_mode="multi_processing"))
    report(r)
"""

FLOW = """
import json, time
T0 = time.perf_counter()
from pipelines.flows.build import build_source
if __name__ == "__main__":
    r = build_source("georgia", {out!r}, raw_dir={raw!r}, config={{"items_per_shard": {ips}}},
                     options={{"backend": "dask", "workers": {workers}, "max_memory": "4GiB"}})
    print(json.dumps({{"total_s": time.perf_counter() - T0, "items": r["items_in"], "samples": r["samples_out"],
                      "quarantined": r["quarantined"], "cached": r["cached"]}}))
"""

TRIVIAL_FLOW = """
import json, time
T0 = time.perf_counter()
from prefect import flow
@flow
def noop():
    return 1
noop()
print(json.dumps({"total_s": time.perf_counter() - T0}))
"""

CONFIGS: dict[str, tuple[str, int]] = {
    "local": (LOCAL, 1),
    "dask-1": (DASK, 1),
    "dask-2": (DASK, 2),
    "beam-1": (BEAM, 1),
    "beam-2": (BEAM, 2),
    "prefect-flow-dask-2": (FLOW, 2),
}


WARM_UP = """
import importlib
for name in ("pipelines.flows.build", "pipelines.backends.dask", "pipelines.backends.beam",
             "pipelines.stages.build", "pipelines.stages.write", "manifests.publish", "pandas",
             "pyarrow.parquet", "distributed.nanny", "apache_beam.runners.worker.sdk_worker_main",
             "apache_beam.runners.portability.fn_api_runner", "prefect.server.api.server", "uvicorn"):
    importlib.import_module(name)
print("{}")
"""


def bench_env(**extra: str) -> dict[str, str]:
    """The children's environment: bytecode cached under the benchmark cache, as deployed.

    The container image compiles bytecode at install (``UV_COMPILE_BYTECODE=1``); a development
    venv may have none and ``PYTHONDONTWRITEBYTECODE=1`` set, so every process would compile
    every module it imports (Prefect, pandas, Beam: seconds per process) and start-up would be
    measured at several times its deployed cost. The children write and reuse ``.pyc`` files
    under ``PYTHONPYCACHEPREFIX`` instead; a warm-up import fills it before any timed run.
    """
    cache = (
        Path(os.environ.get("CLIMB_CACHE_DIR", Path.home() / ".cache" / "climb-etl")) / "bench" / "pycache"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    env.update(extra)
    return env


def prefect_env(home: Path, api_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in bench_env().items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="300",
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def start_prefect_server(home: Path) -> tuple[subprocess.Popen, str, float]:
    """``prefect server start`` on a free loopback port; returns the process, API URL and start-up seconds."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = prefect_env(home, None)
    env["PREFECT_API_DATABASE_CONNECTION_URL"] = f"sqlite+aiosqlite:///{home}/prefect.db"
    log = open(home / "server.log", "wb")  # noqa: SIM115 (the server outlives this function)
    started = time.perf_counter()
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui", "--no-services"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"prefect server exited ({server.returncode}); see {home / 'server.log'}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return server, url, time.perf_counter() - started
        except OSError:
            pass
        if time.perf_counter() - started > SERVER_START_TIMEOUT_S:
            server.terminate()
            raise RuntimeError(f"prefect server not healthy after {SERVER_START_TIMEOUT_S} s")
        time.sleep(0.25)


def run_child(code: str, env: dict[str, str]) -> tuple[dict, float, float]:
    """Run ``code`` in a fresh interpreter; returns its last JSON line, wall seconds and tree CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=False
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall, cpu


def read_spans(folder: Path) -> dict[str, float]:
    rows = [json.loads(path.read_text()) for path in folder.glob("*.json")]
    if not rows:
        return {}
    items = sum(row["items"] for row in rows)
    span = max(row["end"] for row in rows) - min(row["start"] for row in rows)
    return {
        "span_s": span,
        "span_records_per_s": items / span if span > 0 else 0.0,
        "shard_cpu_ms_per_record": 1000 * sum(row["cpu"] for row in rows) / items,
        "shard_wall_ms_per_record": 1000 * sum(row["end"] - row["start"] for row in rows) / items,
        "shard_processes": len({row["pid"] for row in rows}),
        "shards_run": len(rows),
    }


def median_of(runs: list[dict], key: str) -> float | None:
    values = [run[key] for run in runs if run.get(key) is not None]
    return statistics.median(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", nargs="*", choices=sorted(CONFIGS), help="run only these configurations")
    parser.add_argument(
        "--items-per-shard",
        type=int,
        default=ITEMS_PER_SHARD,
        help="shard size (default 512: ~40 shards at 20,000 records; small runs need smaller shards "
        "or two workers get unequal shares)",
    )
    args = parser.parse_args()
    names = [name for name in CONFIGS if not args.only or name in args.only]
    raw = release(args.records)
    secret = os.environ.get("CLIMB_DEID_SECRET", "benchmark-secret-0123456789abcdef")
    work = Path(tempfile.mkdtemp(prefix="climb-scale-"))
    runs: dict[str, list[dict]] = {name: [] for name in names}
    prefect: dict[str, float] = {}
    server = None
    try:
        env = bench_env(CLIMB_DEID_SECRET=secret)
        run_child(WARM_UP, env)
        if "prefect-flow-dask-2" in names:
            (work / "server").mkdir()
            server, api_url, prefect["prefect_server_start_s"] = start_prefect_server(work / "server")
            print(f"prefect server healthy after {prefect['prefect_server_start_s']:.1f} s", flush=True)
            (work / "home").mkdir()
            flow_env = {**prefect_env(work / "home", api_url), "CLIMB_DEID_SECRET": secret}
            served, _, _ = run_child(TRIVIAL_FLOW, flow_env)
            (work / "ephemeral").mkdir()
            ephemeral_env = {**prefect_env(work / "ephemeral", None), "CLIMB_DEID_SECRET": secret}
            first, _, _ = run_child(TRIVIAL_FLOW, ephemeral_env)  # creates and migrates its database
            again, _, _ = run_child(TRIVIAL_FLOW, ephemeral_env)  # the same PREFECT_HOME: database exists
            prefect["trivial_flow_served_s"] = served["total_s"]
            prefect["trivial_flow_ephemeral_new_home_s"] = first["total_s"]
            prefect["trivial_flow_ephemeral_s"] = again["total_s"]
            prefect["ephemeral_startup_new_home_s"] = first["total_s"] - served["total_s"]
            prefect["ephemeral_startup_s"] = again["total_s"] - served["total_s"]
            print(
                f"trivial flow: {served['total_s']:.1f} s against the server, ephemeral "
                f"{first['total_s']:.1f} s (new PREFECT_HOME) / {again['total_s']:.1f} s (existing)",
                flush=True,
            )
        for repeat in range(args.repeats):
            for name in names:
                template, workers = CONFIGS[name]
                out, spans = work / f"out-{name}-{repeat}", work / f"spans-{name}-{repeat}"
                spans.mkdir()
                code = PRELUDE.format(spans=str(spans)) + template.format(
                    raw=str(raw), out=str(out), workers=workers, ips=args.items_per_shard
                )
                child_env = flow_env if name.startswith("prefect") else env
                load_before = os.getloadavg()[0]
                result, wall, cpu = run_child(code, child_env)
                shutil.rmtree(out, ignore_errors=True)
                row = {**result, "wall_s": wall, "tree_cpu_s": cpu, **read_spans(spans)}
                row["load_1min_before_after"] = [load_before, os.getloadavg()[0]]
                runs[name].append(row)
                span = f", span {row['span_records_per_s']:.0f} rec/s" if "span_s" in row else ""
                print(
                    f"[{repeat + 1}/{args.repeats}] {name:<20} total {result['total_s']:6.1f} s "
                    f"({result['items'] / result['total_s']:.0f} rec/s){span}, load {load_before:.1f}",
                    flush=True,
                )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    rows = {}
    for name, name_runs in runs.items():
        row = {key: median_of(name_runs, key) for key in name_runs[0] if isinstance(name_runs[0][key], float)}
        row["records_per_s"] = args.records / row["total_s"]
        row["runs"] = name_runs
        rows[name] = row
    summary: dict[str, float] = dict(prefect)
    for engine in ("dask", "beam"):
        one, two = rows.get(f"{engine}-1"), rows.get(f"{engine}-2")
        if one and two:
            summary[f"{engine}_efficiency_total_2w_over_1w"] = two["records_per_s"] / one["records_per_s"]
            summary[f"{engine}_efficiency_span_2w_over_1w"] = (
                two["span_records_per_s"] / one["span_records_per_s"]
            )
            summary[f"{engine}_shard_cpu_ratio_2w_over_1w"] = (
                two["shard_cpu_ms_per_record"] / one["shard_cpu_ms_per_record"]
            )
    if "dask-1" in rows and "dask-2" in rows:
        build = {n: args.records / rows[n]["build_s"] for n in ("dask-1", "dask-2")}
        summary["dask_efficiency_build_2w_over_1w"] = build["dask-2"] / build["dask-1"]
    if "dask-2" in rows and "prefect-flow-dask-2" in rows:
        bare = rows["dask-2"]["total_s"]
        summary["prefect_overhead_fraction"] = (rows["prefect-flow-dask-2"]["total_s"] - bare) / bare
        summary["prefect_overhead_s"] = rows["prefect-flow-dask-2"]["total_s"] - bare
    print(json.dumps({k: round(v, 3) for k, v in summary.items()}, indent=1))
    payload = {
        "benchmark": "scale_ecg",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "records": args.records,
        "items_per_shard": args.items_per_shard,
        "repeats": args.repeats,
        "command": " ".join(["benchmarks/scale_ecg.py", *sys.argv[1:]]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_avg_at_end": os.getloadavg(),
        },
        "rows": rows,
        "summary": summary,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stem = "scale_ecg" if args.records == 20000 else f"scale_ecg_{args.records}"
    if args.items_per_shard != ITEMS_PER_SHARD:
        stem += f"_ips{args.items_per_shard}"
    if args.only:
        stem += "_" + "_".join(args.only)
    target = RESULTS_DIR / f"{stem}.json"
    target.write_text(json.dumps(payload, indent=1))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
