"""Dask distributed backend: one task per shard plan on a ``LocalCluster`` or an existing cluster.

Why this shape:

* **One task per plan, one writer per shard.** Each plan is submitted as its own task
  (``pure=False``, a readable key ``run_shard-<split>-<index>-<run token>``), so no two tasks ever
  write the same shard.
* **Streamed, bounded.** At most ``options.in_flight_limit`` plans are submitted and unfinished at
  a time; results come back through :class:`distributed.as_completed` and are released at once.
  Only :class:`ShardRecord` metadata (a few hundred bytes) ever reaches the client: samples are
  written by the workers, never gathered.
* **Crash-tolerant by Dask's own machinery.** A worker process that dies mid-task has its tasks
  rescheduled on the others by the scheduler (``distributed.scheduler.allowed-failures``, default
  3, before :class:`distributed.scheduler.KilledWorker`); ``options.retries`` reruns a task whose
  ``run_one`` raised (transient storage errors). Both are safe because ``run_one`` is idempotent
  and publishes by rename, so a killed attempt leaves no torn shard.
* **Processes, one thread each** by default: the transforms are CPU-bound Python/NumPy.
* **A quiet local cluster.** Dask's defaults suit interactive analysis: a 20 ms event-loop
  tick, a 10 ms statistical profiler sampling every running task, a 1 ms GIL monitor and
  100 ms memory polls in every process. Measured on 2 cores, an idle 2-worker ``LocalCluster``
  used 16 % of a core that way (3.2 s of CPU in 20 s), taken from the workers' build time;
  with :data:`QUIET_CONFIG` it uses 2 %. It also keeps glibc's adaptive allocator in the
  workers (Dask's ``MALLOC_TRIM_THRESHOLD_`` costs the transforms 12-18 % more CPU per record,
  in page faults). The nannies stay (a killed worker is restarted and
  its task rerun). The client only waits on ``as_completed`` and the scheduler hands each
  worker one task at a time (``worker-saturation`` 1.0), so the tail is balanced without
  work stealing.

Without ``options.dask_address`` a ``distributed.LocalCluster`` is started on the loopback
interface and closed afterwards; with it, a client connects to the user's scheduler
(dask-kubernetes, Coiled, dask-gateway) and only the client is closed.
:func:`cluster_started_early` starts the local cluster in the background while the caller
plans (indexing a raw folder and starting worker processes each take a second or two), as
``climb build --backend dask`` does.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING

import dask
import distributed

from pipelines.backends import (
    BackendOptions,
    ShardFailedError,
    iterate_unique_plans,
    run_plan,
    sort_records,
)

if TYPE_CHECKING:
    from manifests.schema import ShardRecord
    from pipelines.stages.plan import ShardPlan

__all__ = ["QUIET_CONFIG", "cluster_started_early", "local_cluster", "map_shards"]

log = logging.getLogger(__name__)

#: Dask settings for batch builds on a ``LocalCluster`` (see the module docstring). Applied
#: around the cluster's start, so the nannies hand them to their worker processes; an existing
#: cluster (``dask_address``) keeps its own configuration.
QUIET_CONFIG: dict[str, object] = {
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.admin.system-monitor.gil.enabled": False,
    "distributed.worker.profile.enabled": False,
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.scheduler.worker-saturation": 1.0,
    "distributed.scheduler.work-stealing": False,
    # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in its workers, which also switches off
    # glibc's adaptive mmap threshold: every array over 128 KiB is then mmapped and unmapped.
    # Measured on the ECG transform (steady state, one process): 3.6x the page faults, twice the
    # system time, 12-18 % more CPU per record. Shards are small and short-lived; keep glibc's default.
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
}


def map_shards(
    run_one: Callable[[ShardPlan], ShardRecord],
    plans: Iterable[ShardPlan],
    *,
    options: BackendOptions | None = None,
    on_result: Callable[[ShardRecord], None] | None = None,
) -> list[ShardRecord]:
    """Run ``run_one`` on every plan as Dask tasks, streaming records back as shards finish.

    Args:
        run_one: picklable ``ShardPlan -> ShardRecord`` (a module-level function or a
            ``functools.partial`` of one); writes one shard, idempotent.
        plans: shard plans, consumed lazily as submission slots free up; names must be unique.
        options: workers, threads, memory, in-flight bound, retries and ``dask_address``.
        on_result: called in this process with each record as its shard finishes.

    Returns:
        One record per plan, sorted by ``(split, index)``.

    Raises:
        ShardFailedError: a shard's task failed (``run_one`` raised after its retries, or its
            workers kept dying); the message names the shard. Unfinished tasks are cancelled;
            finished shards stay written, so a rerun resumes.
        ValueError: a shard name appears twice in ``plans``.
    """
    options = options or BackendOptions()
    with _connect(options) as client:
        return _map_on_client(client, run_one, plans, options, on_result)


def local_cluster(options: BackendOptions) -> distributed.LocalCluster:
    """A loopback ``LocalCluster`` as the backend starts it: ``options.worker_count`` processes,
    ``options.threads_per_worker`` threads each, ``options.max_memory`` per worker, and
    :data:`QUIET_CONFIG`. The caller closes it."""
    with dask.config.set(QUIET_CONFIG):
        return distributed.LocalCluster(
            n_workers=options.worker_count,
            threads_per_worker=options.threads_per_worker,
            processes=True,
            memory_limit=options.max_memory,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.WARNING,  # the scheduler's INFO chatter drowns progress output
        )


@contextlib.contextmanager
def cluster_started_early(options: BackendOptions) -> Iterator[Callable[[], BackendOptions]]:
    """Start the backend's ``LocalCluster`` now, in a background thread; close it on exit.

    Yields a function that waits for the cluster and returns ``options`` with its
    ``dask_address``, for :func:`map_shards`. Options that already name a ``dask_address``
    are passed through and nothing is started. If the function is never called (the plan
    turned out to be published already), the cluster is closed unused.

    Example::

        with cluster_started_early(options) as ready:
            plan = plan_build(...)           # runs while the workers start
            build_source(..., map_shards=map_shards, backend_options=ready(), plan=plan)
    """
    if options.dask_address is not None:
        yield lambda: options
        return
    import concurrent.futures
    import dataclasses

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="climb-dask-start") as pool:
        future = pool.submit(local_cluster, options)

        def ready() -> BackendOptions:
            cluster = future.result()
            log.info(
                "dask: LocalCluster of %d worker(s) ready %.1f s after its start (%s)",
                options.worker_count,
                time.perf_counter() - started,
                cluster.scheduler_address,
            )
            return dataclasses.replace(options, dask_address=cluster.scheduler_address)

        try:
            yield ready
        finally:
            with contextlib.suppress(Exception):  # a start that failed was reported by ready()
                future.result().close()


@contextlib.contextmanager
def _connect(options: BackendOptions) -> Iterator[distributed.Client]:
    """A client on ``options.dask_address``, or on a ``LocalCluster`` started (and closed) here."""
    if options.dask_address is not None:
        with distributed.Client(options.dask_address, set_as_default=False) as client:
            yield client
        return
    started = time.perf_counter()
    cluster = local_cluster(options)
    log.info(
        "dask: LocalCluster of %d worker(s) started in %.1f s (%s)",
        options.worker_count,
        time.perf_counter() - started,
        cluster.scheduler_address,
    )
    try:
        with dask.config.set(QUIET_CONFIG), distributed.Client(cluster, set_as_default=False) as client:
            yield client
    finally:
        cluster.close()


def _map_on_client(
    client: distributed.Client,
    run_one: Callable[[ShardPlan], ShardRecord],
    plans: Iterable[ShardPlan],
    options: BackendOptions,
    on_result: Callable[[ShardRecord], None] | None,
) -> list[ShardRecord]:
    token = uuid.uuid4().hex[:8]
    pending: dict[str, tuple[distributed.Future, ShardPlan]] = {}  # task key -> (future, plan)

    def submit(plan: ShardPlan) -> distributed.Future:
        future = client.submit(
            run_plan,
            run_one,
            plan,
            key=f"run_shard-{plan.split}-{plan.index:05d}-{token}",
            pure=False,
            retries=options.retries,
        )
        pending[future.key] = (future, plan)
        return future

    remaining = iterate_unique_plans(plans)
    stream = distributed.as_completed(loop=client.loop)
    records: list[ShardRecord] = []
    try:
        stream.update([submit(plan) for plan in islice(remaining, options.in_flight_limit)])
        for future in stream:
            _, plan = pending.pop(future.key)
            try:
                record = future.result()
            except ShardFailedError:
                raise
            except Exception as exc:  # KilledWorker, cancellation, lost connection
                raise ShardFailedError(
                    f"shard {plan.name} failed on Dask: {type(exc).__name__}: {exc}"
                ) from exc
            finally:
                future.release()
            records.append(record)
            if on_result is not None:
                on_result(record)
            for next_plan in islice(remaining, 1):
                stream.add(submit(next_plan))
    except BaseException:
        with contextlib.suppress(Exception):
            client.cancel([future for future, _ in pending.values()], force=True)
        raise
    return sort_records(records)
