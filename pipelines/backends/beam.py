"""Apache Beam backend: shard plans as a Beam pipeline, one keyed group (one writer) per shard.

The pipeline::

    ReadFromText(<work>/plans.jsonl)        one JSON line per ShardPlan
      | Map(decode)                          -> ShardPlan
      | Map(key by plan.name)                -> (shard name, plan)
      | GroupByKey()                         each shard name is one group: exactly one writer
      | ParDo(run shard, drop its record)    -> <work>/done/<split>/part-NNNNN.json

Choices, and why:

* **Plans travel as a file, not ``beam.Create``.** ``Create`` embeds its elements in the job
  graph, and Dataflow refuses job graphs over 10 MB; a corpus has tens of thousands of plans. A
  JSON Lines file under the work URL scales on every runner and is human-readable.
* **Results come back as one small JSON file per shard** under ``<work>/done/`` (written by the
  worker that ran the shard, temp name then move), not through the pipeline: a runner's workers
  cannot call back into the launcher, and ``.done.json`` files of ``run_shard`` are the stage's
  private business. The launcher polls that folder while the pipeline runs, so ``on_result``
  fires as shards finish (a progress bar works on Dataflow too), and reads it once more at the
  end. For local runners the work URL is a temporary folder, deleted afterwards; remote runners
  need ``options.beam_results_url`` on shared storage (``gs://bucket/tmp/climb``).
* **Failures name the shard.** The worker writes ``<work>/failed/<shard>.json`` with the error
  before re-raising (so the runner may still retry a transient failure); if the pipeline fails,
  the launcher raises :class:`ShardFailedError` with those messages.
* **Local runs use ``FnApiRunner``** with ``direct_num_workers`` SDK-harness processes
  (``direct_running_mode="multi_processing"``), which works offline; the Prism runner (the
  DirectRunner's newer engine) downloads a binary on first use and fails without a network.
  ``options.beam_runner`` picks ``DataflowRunner``/``FlinkRunner``/``SparkRunner`` instead, and
  ``options.beam_options`` passes their flags through unchanged.

``run_one`` is pickled by Beam's pickler (cloudpickle); it is checked before the pipeline starts
so a closure over a lock or an open file fails here with a clear message, not on a worker.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import apache_beam as beam
import fsspec
from apache_beam.internal import pickler
from apache_beam.options.pipeline_options import PipelineOptions
from fsspec.implementations.local import LocalFileSystem

from manifests.schema import ShardRecord
from pipelines.backends import (
    BackendOptions,
    ShardFailedError,
    iterate_unique_plans,
    run_plan,
    sort_records,
)
from pipelines.stages.plan import Item, ShardPlan

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = ["map_shards", "pipeline_options"]

LOCAL_RUNNER = "FnApiRunner"
PLANS_FILE = "plans.jsonl"
DONE_DIR = "done"
FAILED_DIR = "failed"
#: Seconds between polls of the done folder: local disk, or an object store (list calls cost money).
POLL_LOCAL_S = 0.25
POLL_REMOTE_S = 5.0


def map_shards(
    run_one: Callable[[ShardPlan], ShardRecord],
    plans: Iterable[ShardPlan],
    *,
    options: BackendOptions | None = None,
    on_result: Callable[[ShardRecord], None] | None = None,
) -> list[ShardRecord]:
    """Run ``run_one`` on every plan in a Beam pipeline, one keyed group per shard.

    Args:
        run_one: picklable ``ShardPlan -> ShardRecord``; writes one shard, idempotent.
        plans: shard plans; names must be unique. They are written to ``<work>/plans.jsonl``
            first (plans are small: item ids, paths, labels).
        options: ``beam_runner`` (default ``FnApiRunner``), ``workers`` (local harness
            processes), ``beam_running_mode``, ``beam_options`` passthrough, ``beam_results_url``.
        on_result: called in this process with each record as its shard's result file appears.

    Returns:
        One record per plan, sorted by ``(split, index)``.

    Raises:
        ShardFailedError: a shard's ``run_one`` raised and the pipeline failed; the message names
            every failed shard and its error.
        TypeError: ``run_one`` cannot be pickled.
        ValueError: a shard name appears twice; or a remote runner without ``beam_results_url``.
        RuntimeError: the pipeline finished but some shard left no result (names them).
    """
    options = options or BackendOptions()
    plans = list(iterate_unique_plans(plans))
    if not plans:
        return []
    _check_picklable(run_one)
    with _work_folder(options) as (fs, work):
        _write_plans(fs, work, plans)
        pipeline = _build_pipeline(run_one, work, options)
        return _run_and_collect(pipeline, fs, work, plans, on_result)


# ---------------------------------------------------------------------------------------------
# Plans as JSON lines
# ---------------------------------------------------------------------------------------------


def _encode_plan(plan: ShardPlan) -> str:
    """One plan as a JSON line (item labels must be JSON-able, as :class:`Item` requires)."""
    return json.dumps(asdict(plan), sort_keys=True, separators=(",", ":"))


def _decode_plan(line: str) -> ShardPlan:
    """The inverse of :func:`_encode_plan`."""
    data = json.loads(line)
    items = tuple(
        Item(
            item_id=item["item_id"],
            subject_id=item["subject_id"],
            paths=tuple(item["paths"]),
            split=item["split"],
            item_key=item["item_key"],
            labels=item["labels"],
        )
        for item in data["items"]
    )
    return ShardPlan(split=data["split"], index=int(data["index"]), items=items)


def _write_plans(fs: AbstractFileSystem, work: str, plans: list[ShardPlan]) -> None:
    with fs.open(f"{work}/{PLANS_FILE}", "w", encoding="utf-8") as handle:
        for plan in plans:
            handle.write(_encode_plan(plan) + "\n")


# ---------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------


class _RunShardFn(beam.DoFn):
    """Runs the one plan of a shard group and drops its record (or its error) under ``work``."""

    def __init__(self, run_one: Callable[[ShardPlan], ShardRecord], work: str) -> None:
        self._run_one = run_one
        self._work = work

    def process(self, element: tuple[str, Iterable[ShardPlan]]) -> Iterator[str]:
        name, grouped = element
        group = list(grouped)
        if len(group) != 1:
            raise ValueError(f"shard {name} has {len(group)} plans: each shard must have exactly one writer")
        fs, _ = fsspec.core.url_to_fs(self._work)
        try:
            record = run_plan(self._run_one, group[0])
        except ShardFailedError as exc:
            _write_atomically(fs, f"{self._work}/{FAILED_DIR}/{name}.json", json.dumps({"error": str(exc)}))
            raise
        _write_atomically(fs, f"{self._work}/{DONE_DIR}/{name}.json", record.model_dump_json())
        yield name


def pipeline_options(options: BackendOptions) -> tuple[str, PipelineOptions]:
    """The runner name and the :class:`PipelineOptions` a build with ``options`` runs under.

    ``options.beam_options`` pass through unchanged. A ``--runner`` among them is taken as the
    runner (it must match ``options.beam_runner`` unless that is the default ``FnApiRunner``).
    For the local ``FnApiRunner``, ``direct_num_workers`` is ``options.workers`` (else the flag,
    else the CPU count) and ``direct_running_mode`` is ``options.beam_running_mode`` (else the
    flag, else ``multi_processing``). Nothing is submitted: for Dataflow this shows exactly
    what a job would get.

    Raises:
        ValueError: a flag contradicts a field set in ``options`` (the message names both).
    """
    from pipelines.backends import flag_value, resolve_beam_runner

    requested = None if options.beam_runner == LOCAL_RUNNER else options.beam_runner
    runner, flags = resolve_beam_runner(requested, options.beam_options)
    if runner != LOCAL_RUNNER:
        return runner, PipelineOptions(list(flags))
    workers = flag_value(flags, "direct_num_workers")
    if options.workers is not None and workers is not None and int(workers) != options.workers:
        raise ValueError(
            f"workers={options.workers} contradicts --direct_num_workers={workers} in the Beam options"
        )
    mode = flag_value(flags, "direct_running_mode")
    if options.beam_running_mode is not None and mode is not None and mode != options.beam_running_mode:
        raise ValueError(
            f"beam_running_mode={options.beam_running_mode} contradicts --direct_running_mode={mode} "
            "in the Beam options"
        )
    num_workers = options.workers if options.workers is not None else int(workers or options.worker_count)
    return runner, PipelineOptions(
        list(flags),
        direct_num_workers=num_workers,
        direct_running_mode=options.beam_running_mode or mode or "multi_processing",
    )


def _build_pipeline(
    run_one: Callable[[ShardPlan], ShardRecord], work: str, options: BackendOptions
) -> beam.Pipeline:
    runner, beam_options = pipeline_options(options)
    if runner == LOCAL_RUNNER:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        pipeline = beam.Pipeline(runner=FnApiRunner(), options=beam_options)
    else:
        pipeline = beam.Pipeline(runner=runner, options=beam_options)
    _ = (
        pipeline
        | "ReadPlans" >> beam.io.ReadFromText(f"{work}/{PLANS_FILE}")
        | "DecodePlans" >> beam.Map(_decode_plan)
        | "KeyByShard" >> beam.Map(lambda plan: (plan.name, plan))
        | "OneWriterPerShard" >> beam.GroupByKey()
        | "RunShard" >> beam.ParDo(_RunShardFn(run_one, work))
    )
    return pipeline


def _run_and_collect(
    pipeline: beam.Pipeline,
    fs: AbstractFileSystem,
    work: str,
    plans: list[ShardPlan],
    on_result: Callable[[ShardRecord], None] | None,
) -> list[ShardRecord]:
    failure: list[BaseException] = []

    def run() -> None:
        try:
            pipeline.run().wait_until_finish()
        except BaseException as exc:
            failure.append(exc)

    runner = threading.Thread(target=run, name="climb-beam-pipeline", daemon=True)
    runner.start()
    poll_s = POLL_LOCAL_S if isinstance(fs, LocalFileSystem) else POLL_REMOTE_S
    records: dict[str, ShardRecord] = {}
    while runner.is_alive():
        runner.join(poll_s)
        _collect_new(fs, work, records, on_result)
    _collect_new(fs, work, records, on_result)
    if failure:
        errors = _read_failures(fs, work)
        if errors:
            raise ShardFailedError("; ".join(errors)) from failure[0]
        raise failure[0]
    missing = sorted(plan.name for plan in plans if plan.name not in records)
    if missing:
        raise RuntimeError(f"the Beam pipeline finished but left no result for shards {', '.join(missing)}")
    return sort_records(records.values())


def _collect_new(
    fs: AbstractFileSystem,
    work: str,
    records: dict[str, ShardRecord],
    on_result: Callable[[ShardRecord], None] | None,
) -> None:
    """Read result files not seen yet; ``records`` maps shard name -> record."""
    root = f"{work}/{DONE_DIR}"
    if not fs.exists(root):
        return
    prefix = fs._strip_protocol(root).rstrip("/") + "/"
    for path in sorted(fs.find(root)):
        if not path.endswith(".json"):
            continue  # a result still being written under its temporary name
        name = path[len(prefix) : -len(".json")]
        if name in records:
            continue
        record = ShardRecord.model_validate_json(fs.cat_file(path))
        records[name] = record
        if on_result is not None:
            on_result(record)


def _read_failures(fs: AbstractFileSystem, work: str) -> list[str]:
    root = f"{work}/{FAILED_DIR}"
    if not fs.exists(root):
        return []
    return [
        json.loads(fs.cat_file(path))["error"] for path in sorted(fs.find(root)) if path.endswith(".json")
    ]


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _check_picklable(run_one: Callable[..., Any]) -> None:
    try:
        pickler.dumps(run_one)
    except Exception as exc:
        raise TypeError(
            f"run_one ({run_one!r}) cannot be pickled for Beam workers: {type(exc).__name__}: {exc}; "
            "use a module-level function or a functools.partial of one"
        ) from exc


def _write_atomically(fs: AbstractFileSystem, path: str, text: str) -> None:
    """Write ``text`` under a temporary name, then move it to ``path`` (readers never see half)."""
    temporary = f"{path}.tmp-{uuid.uuid4().hex}"
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(temporary, text.encode("utf-8"))
    fs.mv(temporary, path)


@contextlib.contextmanager
def _work_folder(options: BackendOptions) -> Iterator[tuple[AbstractFileSystem, str]]:
    """The run's work folder: a local temporary one, or ``run-<time>-<token>`` under the results URL.

    A temporary folder is always deleted; a folder under ``beam_results_url`` is deleted after a
    successful run and kept after a failure (its ``failed/`` records say what went wrong).
    """
    if options.beam_results_url is None:
        from pipelines.backends import resolve_beam_runner

        requested = None if options.beam_runner == LOCAL_RUNNER else options.beam_runner
        runner, _ = resolve_beam_runner(requested, options.beam_options)
        if runner != LOCAL_RUNNER:
            raise ValueError(
                f"the {runner} runs on remote workers: set BackendOptions.beam_results_url "
                "to a folder they can write (gs://…, s3://…)"
            )
        with tempfile.TemporaryDirectory(prefix="climb-beam-") as folder:
            yield fsspec.filesystem("file"), folder
        return
    fs, base = fsspec.core.url_to_fs(options.beam_results_url)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    root = base.rstrip("/") + f"/run-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
    work = root if protocol in ("file", "local") else f"{protocol}://{root}"
    fs.makedirs(root, exist_ok=True)
    yield fs, work
    with contextlib.suppress(Exception):
        fs.rm(root, recursive=True)
