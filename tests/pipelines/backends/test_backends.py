"""One conformance suite for the local, Dask and Beam backends, plus Dask fault tolerance.

Every backend runs the same real shard writer (``shard_writer.write_test_shard``: a file per
shard via temp + rename, idempotent) over the same plans: Dask on a real 2-worker
``LocalCluster`` (processes), Beam on ``FnApiRunner`` with 2 SDK-harness processes. Each
backend's first build is run once per module and shared; Beam's reruns and failure runs use 2
worker threads instead of processes (same runner and pipeline), because every harness process
costs seconds of CPU to import Beam on a shared 2-core machine.
"""

from __future__ import annotations

import functools
import hashlib
import multiprocessing
import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import distributed
import pytest

from manifests.schema import ShardRecord
from pipelines.backends import BACKENDS, BackendOptions, ShardFailedError, get_backend
from pipelines.stages.plan import Item, ShardPlan
from tests.pipelines.backends.shard_writer import read_log, render_shard, write_test_shard

SHARDS_PER_SPLIT = {"train": 4, "val": 2, "test": 2}
ITEMS_PER_SHARD = 3


def make_plans(shards_per_split: dict[str, int] = SHARDS_PER_SPLIT) -> list[ShardPlan]:
    """Plans with distinct items; labels with nested JSON to exercise plan transport."""
    plans = []
    for split, count in shards_per_split.items():
        for index in range(count):
            items = tuple(
                Item(
                    item_id=f"{split}-rec-{index}-{k}",
                    subject_id=f"subj-{index}",
                    paths=(f"raw/{split}/{index}/{k}.hea", f"raw/{split}/{index}/{k}.dat"),
                    split=split,
                    item_key=hashlib.sha256(f"{split}/{index}/{k}".encode()).hexdigest()[:20],
                    labels={"codes": [k, k + 1], "age": 40 + k, "note": "ünïcode"},
                )
                for k in range(ITEMS_PER_SHARD)
            )
            plans.append(
                ShardPlan(split=split, index=index, items=tuple(sorted(items, key=lambda i: i.item_key)))
            )
    return plans


@pytest.fixture(scope="module")
def dask_cluster():
    """One real 2-worker, 1-thread, process-based LocalCluster for the module (loopback only)."""
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        memory_limit="1GiB",
    )
    yield cluster
    cluster.close()


def options_for(backend: str, cluster: distributed.LocalCluster, beam_mode: str) -> BackendOptions:
    if backend == "dask":
        return BackendOptions(workers=2, dask_address=cluster.scheduler_address)
    if backend == "beam":
        return BackendOptions(workers=2, beam_running_mode=beam_mode)
    return BackendOptions()


@dataclass
class Build:
    backend: str
    out: Path
    log: Path
    records: list[ShardRecord]
    streamed: list[ShardRecord]


class Builds:
    """Each backend's first build over the same plans, run once per module and shared by tests."""

    def __init__(self, root: Path, cluster: distributed.LocalCluster) -> None:
        self.root = root
        self.cluster = cluster
        self.done: dict[str, Build] = {}

    def run(
        self,
        backend: str,
        out: Path,
        log: Path,
        plans: list[ShardPlan],
        beam_mode: str = "multi_threading",
        **kwargs,
    ) -> tuple[list, list]:
        out.mkdir(parents=True, exist_ok=True)
        log.mkdir(parents=True, exist_ok=True)
        run_one = functools.partial(write_test_shard, out_dir=str(out), log_dir=str(log), **kwargs)
        streamed: list[ShardRecord] = []
        records = get_backend(backend)(
            run_one, plans, options=options_for(backend, self.cluster, beam_mode), on_result=streamed.append
        )
        return records, streamed

    def get(self, backend: str) -> Build:
        if backend not in self.done:
            out, log = self.root / backend / "out", self.root / backend / "log"
            plans = make_plans()
            random.Random(7).shuffle(plans)  # completion and input order must not matter
            records, streamed = self.run(backend, out, log, plans, "multi_processing", delay_s=0.1)
            self.done[backend] = Build(backend, out, log, records, streamed)
        return self.done[backend]


@pytest.fixture(scope="module")
def builds(tmp_path_factory, dask_cluster) -> Builds:
    return Builds(tmp_path_factory.mktemp("builds"), dask_cluster)


def shard_names(plans: list[ShardPlan]) -> list[str]:
    return [plan.name for plan in plans]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_plan_runs_exactly_once_and_writes_its_shard(builds: Builds, backend: str) -> None:
    build = builds.get(backend)
    log = read_log(build.log)
    starts = Counter(name for event, name, _ in log if event == "start")
    writes = Counter(name for event, name, _ in log if event == "write")
    expected = Counter(shard_names(make_plans()))
    assert starts == expected
    assert writes == expected
    for plan in make_plans():
        path = build.out / plan.split / f"part-{plan.index:05d}.txt"
        assert path.read_bytes() == render_shard(plan)
        assert not list(path.parent.glob("*.tmp-*")), "a temporary file was left behind"
    pids = {pid for _, _, pid in log}
    if backend == "local":
        assert pids == {os.getpid()}
    else:  # two worker processes, neither of them this one
        assert len(pids) == 2
        assert os.getpid() not in pids


@pytest.mark.parametrize("backend", BACKENDS)
def test_records_are_sorted_match_files_and_stream_as_shards_finish(builds: Builds, backend: str) -> None:
    build = builds.get(backend)
    keys = [(r.split, r.index) for r in build.records]
    expected_keys = sorted((p.split, p.index) for p in make_plans())
    assert keys == expected_keys
    assert sorted((r.split, r.index) for r in build.streamed) == expected_keys
    assert len(build.streamed) == len(build.records)
    for record in build.records:
        (relative,) = record.files.values()
        data = (build.out / relative).read_bytes()
        assert record.sha256 == {relative: hashlib.sha256(data).hexdigest()}
        assert record.bytes == {relative: len(data)}
        assert record.samples == ITEMS_PER_SHARD


def test_backends_write_byte_identical_shards_and_records(builds: Builds) -> None:
    reference = builds.get("local")
    files = sorted(p.relative_to(reference.out) for p in reference.out.rglob("*.txt"))
    assert len(files) == sum(SHARDS_PER_SPLIT.values())
    for backend in ("dask", "beam"):
        other = builds.get(backend)
        assert sorted(p.relative_to(other.out) for p in other.out.rglob("*.txt")) == files
        for relative in files:
            assert (other.out / relative).read_bytes() == (reference.out / relative).read_bytes()
        assert [r.model_dump() for r in other.records] == [r.model_dump() for r in reference.records]


@pytest.mark.parametrize("backend", BACKENDS)
def test_rerun_skips_every_finished_shard(builds: Builds, backend: str) -> None:
    build = builds.get(backend)
    before = {p: p.stat().st_mtime_ns for p in build.out.rglob("*.txt")}
    records, streamed = builds.run(backend, build.out, build.log, make_plans())
    assert [r.model_dump() for r in records] == [r.model_dump() for r in build.records]
    assert len(streamed) == len(records)
    log = read_log(build.log)
    rerun = log[2 * len(make_plans()) :]  # after the first build's start + write lines
    assert Counter(event for event, _, _ in rerun) == {"start": len(records), "skip": len(records)}
    assert {p: p.stat().st_mtime_ns for p in build.out.rglob("*.txt")} == before


@pytest.mark.parametrize("backend", BACKENDS)
def test_failing_shard_raises_an_error_naming_it(builds: Builds, backend: str, tmp_path: Path) -> None:
    plans = make_plans({"train": 3})
    with pytest.raises(ShardFailedError, match=r"shard train/part-00001 .*ValueError: planned failure"):
        builds.run(backend, tmp_path / "out", tmp_path / "log", plans, fail_shards=("train/part-00001",))


@pytest.mark.parametrize("backend", BACKENDS)
def test_duplicate_shard_names_are_refused(builds: Builds, backend: str, tmp_path: Path) -> None:
    plans = make_plans({"train": 2})
    with pytest.raises(ValueError, match=r"shard train/part-00001 is planned twice"):
        builds.run(backend, tmp_path / "out", tmp_path / "log", [*plans, plans[1]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_plans_gives_no_records(builds: Builds, backend: str, tmp_path: Path) -> None:
    records, streamed = builds.run(backend, tmp_path / "out", tmp_path / "log", [])
    assert records == [] and streamed == []


def test_get_backend_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match=r"unknown backend 'spark'.*local, dask, beam"):
        get_backend("spark")


def test_backend_options_are_checked() -> None:
    with pytest.raises(ValueError, match="workers must be >= 1"):
        BackendOptions(workers=0)
    with pytest.raises(TypeError, match="tuple of argv-style strings"):
        BackendOptions(beam_options="--runner=DataflowRunner")  # type: ignore[arg-type]
    assert BackendOptions(workers=3, threads_per_worker=2).in_flight_limit == 12


def test_beam_refuses_an_unpicklable_run_one(tmp_path: Path) -> None:
    counter = (i for i in range(10**6))  # a generator: Beam's pickler refuses it

    def run_one(plan: ShardPlan) -> ShardRecord:
        raise AssertionError(f"never called ({next(counter)})")

    with pytest.raises(TypeError, match="cannot be pickled for Beam workers"):
        get_backend("beam")(run_one, make_plans({"train": 1}))


def test_beam_remote_runner_needs_a_shared_results_url() -> None:
    options = BackendOptions(beam_runner="DataflowRunner", beam_options=("--project=p",))
    with pytest.raises(ValueError, match=r"set BackendOptions\.beam_results_url"):
        get_backend("beam")(
            functools.partial(write_test_shard, out_dir="x", log_dir="x"), make_plans(), options=options
        )


def test_dask_starts_and_closes_its_own_local_cluster(tmp_path: Path) -> None:
    plans = make_plans({"train": 3})
    run_one = functools.partial(write_test_shard, out_dir=str(tmp_path / "out"), log_dir=str(tmp_path))
    children_before = set(multiprocessing.active_children())
    records = get_backend("dask")(run_one, plans, options=BackendOptions(workers=1, max_memory="1GiB"))
    assert [(r.split, r.index) for r in records] == [("train", 0), ("train", 1), ("train", 2)]
    worker_pids = {pid for _, _, pid in read_log(tmp_path)}
    assert os.getpid() not in worker_pids
    assert set(multiprocessing.active_children()) <= children_before, "the LocalCluster was left running"
    for pid in worker_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_dask_local_cluster_is_quiet_and_hands_out_one_task_per_worker_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The backend's own cluster: no per-task profiler or GIL monitor in the workers, slow ticks,
    glibc's adaptive allocator (no MALLOC_TRIM_THRESHOLD_), and the scheduler assigns a worker one
    task per thread (no backlog to steal at the tail)."""
    import dask

    from pipelines.backends.dask import QUIET_CONFIG, local_cluster

    # Another nanny in this test process (the module's cluster) exports Dask's default here.
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    cluster = local_cluster(BackendOptions(workers=1, max_memory="1GiB"))
    try:
        with distributed.Client(cluster, set_as_default=False) as client:
            settings = client.run(
                lambda: {
                    key: dask.config.get(key) for key in QUIET_CONFIG if "worker" in key or "admin" in key
                }
            )
            (worker_settings,) = settings.values()
            assert worker_settings["distributed.worker.profile.enabled"] is False
            assert worker_settings["distributed.admin.system-monitor.gil.enabled"] is False
            assert worker_settings["distributed.admin.tick.interval"] == "1s"
            assert set(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()) == {None}
            assert cluster.scheduler.WORKER_SATURATION == 1.0
            assert "stealing" not in cluster.scheduler.extensions
    finally:
        cluster.close()


def test_dask_killed_worker(dask_cluster: distributed.LocalCluster, tmp_path: Path) -> None:
    """SIGKILL a worker process mid-build: Dask reruns its shard elsewhere and counts come out right."""
    plans = make_plans({"train": 6, "val": 2, "test": 2})
    out, log = tmp_path / "out", tmp_path / "log"
    out.mkdir()
    log.mkdir()
    run_one = functools.partial(write_test_shard, out_dir=str(out), log_dir=str(log), delay_s=0.6)
    with distributed.Client(dask_cluster, set_as_default=False) as client:
        worker_pids = set(client.run(os.getpid).values())
    assert len(worker_pids) == 2
    killed: list[tuple[int, str]] = []

    def kill_a_busy_worker(record: ShardRecord) -> None:
        if killed:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # find a shard started but not written, on a worker
            events = read_log(log)
            written = {name for event, name, _ in events if event == "write"}
            busy = [(pid, name) for event, name, pid in events if event == "start" and name not in written]
            if busy:
                pid, name = busy[-1]  # the latest start has the most sleep left
                os.kill(pid, signal.SIGKILL)
                killed.append((pid, name))
                return
            time.sleep(0.05)

    records = get_backend("dask")(
        run_one,
        plans,
        options=BackendOptions(dask_address=dask_cluster.scheduler_address, max_in_flight=4),
        on_result=kill_a_busy_worker,
    )
    assert len(killed) == 1
    killed_pid, interrupted = killed[0]
    assert killed_pid in worker_pids
    assert [(r.split, r.index) for r in records] == sorted((p.split, p.index) for p in plans)
    assert sum(r.samples for r in records) == len(plans) * ITEMS_PER_SHARD
    events = read_log(log)
    # the interrupted shard never finished on the killed worker, and was written by another process
    assert ("write", interrupted, killed_pid) not in events
    assert [pid for event, name, pid in events if event == "write" and name == interrupted] != []
    assert Counter(name for event, name, _ in events if event == "write") == Counter(shard_names(plans))
    for plan in plans:
        assert (out / plan.split / f"part-{plan.index:05d}.txt").read_bytes() == render_shard(plan)


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch):
    """moto's real S3 server on loopback with a bucket ``climb``; s3fs finds it via AWS_ENDPOINT_URL."""
    import socket

    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="climb")
    yield endpoint
    server.stop()


def test_beam_results_travel_through_an_object_store(s3_endpoint: str, tmp_path: Path) -> None:
    """The remote-runner path: shard results under ``beam_results_url`` on S3, kept only after a failure."""
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    plans = make_plans({"train": 3})
    options = BackendOptions(
        workers=2, beam_running_mode="multi_threading", beam_results_url="s3://climb/beam/results"
    )
    run_one = functools.partial(write_test_shard, out_dir=str(tmp_path / "out"), log_dir=str(tmp_path))
    streamed: list[ShardRecord] = []
    records = get_backend("beam")(run_one, plans, options=options, on_result=streamed.append)
    assert [(r.split, r.index) for r in records] == [("train", 0), ("train", 1), ("train", 2)]
    assert len(streamed) == 3
    for record in records:
        (relative,) = record.files.values()
        assert (
            record.sha256[relative] == hashlib.sha256((tmp_path / "out" / relative).read_bytes()).hexdigest()
        )
    assert fs.find("climb/beam/results") == [], "a successful run leaves nothing behind"

    failing = functools.partial(
        write_test_shard,
        out_dir=str(tmp_path / "out2"),
        log_dir=str(tmp_path),
        fail_shards=("train/part-00002",),
    )
    with pytest.raises(ShardFailedError, match=r"shard train/part-00002 .*planned failure"):
        get_backend("beam")(failing, make_plans({"train": 3}), options=options)
    kept = [path for path in fs.find("climb/beam/results") if "/failed/" in path]
    assert len(kept) == 1 and kept[0].endswith("/failed/train/part-00002.json")
