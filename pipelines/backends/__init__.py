"""Execution backends: the same shard plans run in-process, on Dask, or on Apache Beam.

Every backend module (:mod:`.local`, :mod:`.dask`, :mod:`.beam`) exposes exactly one function,
``map_shards(run_one, plans, *, options=None, on_result=None) -> list[ShardRecord]``:

* ``run_one`` is a picklable callable ``ShardPlan -> ShardRecord`` (in a build,
  ``functools.partial(run_shard, context=ctx)``). It is the only code that writes, it writes one
  shard via temp + rename, and it is idempotent (a shard whose done record is valid is skipped),
  so a backend may rerun a plan after a crash without harm.
* each plan names exactly one output shard and is given to exactly one task (Zarr sharded writes
  lose data with two writers); duplicate shard names are refused before anything runs.
* ``on_result`` is called in the caller's process as each shard finishes (progress bars); the
  returned list is sorted by ``(split, index)`` whatever the completion order.
* a plan whose ``run_one`` raises stops the map with :class:`ShardFailedError`, whose message
  names the shard.

Pick one by name with :func:`get_backend`::

    records = get_backend("dask")(run_one, plans, options=BackendOptions(workers=8))
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from manifests.schema import ShardRecord
    from pipelines.stages.plan import ShardPlan

BACKENDS: tuple[str, ...] = ("local", "dask", "beam")

#: FnApiRunner's ``direct_running_mode`` values.
BEAM_RUNNING_MODES: tuple[str, ...] = ("multi_processing", "multi_threading", "in_memory")
#: Runners ``climb build --runner`` names in its help (any Beam runner name is passed through).
BEAM_RUNNERS: tuple[str, ...] = ("FnApiRunner", "DataflowRunner", "FlinkRunner", "SparkRunner")

#: Default cap on plans submitted but not finished, per worker thread (Dask) — bounds client memory.
IN_FLIGHT_PER_THREAD = 2


@dataclass(frozen=True)
class BackendOptions:
    """How a backend runs: worker counts, memory, batching and runner passthrough.

    Attributes:
        workers: worker processes (Dask ``n_workers``, Beam ``direct_num_workers``). ``None``: the
            machine's CPU count.
        threads_per_worker: threads per Dask worker process. 1 by default: the transforms are
            CPU-bound Python/NumPy, so processes scale and threads mostly contend for the GIL.
        dask_address: scheduler address of an existing Dask cluster (``tcp://host:8786``; from
            dask-kubernetes, Coiled, dask-gateway). ``None`` starts a ``LocalCluster`` and closes
            it afterwards.
        max_memory: memory limit per worker, a Dask size string (``"4GiB"``) or ``"auto"``
            (the machine's memory divided among workers). Beam runners take theirs from
            ``beam_options`` (e.g. ``--machine_type`` on Dataflow).
        max_in_flight: most plans submitted and not yet finished at once (the batch size of the
            Dask submission loop); ``None``: ``IN_FLIGHT_PER_THREAD`` × total worker threads.
            Each plan is small, but bounding it keeps client memory flat for any corpus size.
        retries: Dask task retries on an exception raised by ``run_one`` (transient object-store
            errors). A worker that dies is handled separately: the scheduler reruns its tasks
            elsewhere (up to ``distributed.scheduler.allowed-failures`` times).
        beam_runner: ``"FnApiRunner"`` (local, default), or ``"DataflowRunner"``,
            ``"FlinkRunner"``, ``"SparkRunner"``, ``"PortableRunner"``...
        beam_running_mode: FnApiRunner's ``direct_running_mode``: ``"multi_processing"`` (one
            SDK harness process per worker), ``"multi_threading"``, ``"in_memory"``. ``None``:
            a ``--direct_running_mode`` in ``beam_options``, else ``"multi_processing"``.
        beam_options: further Beam pipeline options passed through unchanged, argv style
            (``("--project=p", "--region=europe-west4", "--temp_location=gs://b/tmp")``), e.g.
            from :func:`load_beam_options`. A ``--runner``, ``--direct_num_workers`` or
            ``--direct_running_mode`` among them must agree with the fields above where those
            are set (``pipelines.backends.beam.pipeline_options`` refuses a contradiction).
        beam_results_url: fsspec URL of a folder where Beam workers drop one JSON record per
            finished shard, read back by the launcher. ``None``: a local temporary folder, which
            only works for local runners; remote runners need a shared URL (``gs://…``).
    """

    workers: int | None = None
    threads_per_worker: int = 1
    dask_address: str | None = None
    max_memory: str | None = "auto"
    max_in_flight: int | None = None
    retries: int = 2
    beam_runner: str = "FnApiRunner"
    beam_running_mode: str | None = None
    beam_options: tuple[str, ...] = field(default_factory=tuple)
    beam_results_url: str | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"BackendOptions.workers must be >= 1, got {self.workers}")
        if self.threads_per_worker < 1:
            raise ValueError(f"BackendOptions.threads_per_worker must be >= 1, got {self.threads_per_worker}")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ValueError(f"BackendOptions.max_in_flight must be >= 1, got {self.max_in_flight}")
        if self.retries < 0:
            raise ValueError(f"BackendOptions.retries must be >= 0, got {self.retries}")
        if isinstance(self.beam_options, str | bytes) or not isinstance(self.beam_options, tuple):
            raise TypeError("BackendOptions.beam_options must be a tuple of argv-style strings")
        if self.beam_running_mode not in (None, *BEAM_RUNNING_MODES):
            raise ValueError(
                f"BackendOptions.beam_running_mode must be one of {', '.join(BEAM_RUNNING_MODES)}, "
                f"got {self.beam_running_mode!r}"
            )

    @property
    def worker_count(self) -> int:
        """``workers``, or the CPU count when unset."""
        return self.workers if self.workers is not None else max(1, os.cpu_count() or 1)

    @property
    def in_flight_limit(self) -> int:
        """``max_in_flight``, or its default for this many worker threads."""
        if self.max_in_flight is not None:
            return self.max_in_flight
        return IN_FLIGHT_PER_THREAD * self.worker_count * self.threads_per_worker


class ShardFailedError(RuntimeError):
    """``run_one`` raised for a shard; the message names the shard and the original error.

    Picklable (one string argument), so it crosses Dask and Beam process boundaries intact.
    """


class MapShards(Protocol):
    def __call__(
        self,
        run_one: Callable[[ShardPlan], ShardRecord],
        plans: Iterable[ShardPlan],
        *,
        options: BackendOptions | None = None,
        on_result: Callable[[ShardRecord], None] | None = None,
    ) -> list[ShardRecord]: ...


def get_backend(name: str) -> MapShards:
    """The ``map_shards`` function of backend ``name`` (one of :data:`BACKENDS`).

    Raises:
        ValueError: unknown backend name (the message lists the known ones).
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module = importlib.import_module(f"{__name__}.{name}")
    return module.map_shards


def iterate_unique_plans(plans: Iterable[ShardPlan]) -> Iterator[ShardPlan]:
    """Yield ``plans`` lazily, refusing a shard name seen before (two writers for one shard).

    Raises:
        ValueError: a shard name appears twice.
    """
    seen: set[str] = set()
    for plan in plans:
        if plan.name in seen:
            raise ValueError(f"shard {plan.name} is planned twice: each shard must have exactly one writer")
        seen.add(plan.name)
        yield plan


def run_plan(run_one: Callable[[ShardPlan], ShardRecord], plan: ShardPlan) -> ShardRecord:
    """Run one plan, turning any exception into a :class:`ShardFailedError` naming the shard.

    The original exception is kept as ``__cause__`` where the process boundary allows; its type
    and message are always in the new message.
    """
    try:
        return run_one(plan)
    except ShardFailedError:
        raise
    except Exception as exc:
        raise ShardFailedError(
            f"shard {plan.name} ({len(plan.items)} items) failed: {type(exc).__name__}: {exc}"
        ) from exc


def sort_records(records: Iterable[ShardRecord]) -> list[ShardRecord]:
    """Records sorted by ``(split, index)``: plain string order of the split name, then index."""
    return sorted(records, key=lambda record: (record.split, record.index))


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def load_beam_options(path: str | Path, environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Beam pipeline options from a YAML or JSON mapping (``infra/beam/dataflow.yaml``), as argv flags.

    Keys are Beam option names without ``--``. ``${VAR}`` in a value is replaced from ``environ``
    (default: ``os.environ``). A list gives the flag once per item; ``true`` gives a bare flag
    (``--no_use_public_ips``); ``false`` and ``null`` leave the option out.

    Returns:
        Flags for :attr:`BackendOptions.beam_options`, in file order.

    Raises:
        ValueError: not a YAML mapping, a nested mapping, or an unset ``${VAR}`` (the message
            names the file, the key and the variable; never a value).
    """
    import yaml

    path = Path(path)
    environ = os.environ if environ is None else environ
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML too
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the Beam options file: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not a YAML or JSON file: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of Beam option names to values")

    def expand(key: str, value: object) -> str:
        text = str(value)

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise ValueError(
                    f"{path}: option {key!r} needs the environment variable {name}, which is unset"
                )
            return environ[name]

        return _ENV_REFERENCE.sub(substitute, text)

    flags: list[str] = []
    for key, value in data.items():
        if value is None or value is False:
            continue
        if value is True:
            flags.append(f"--{key}")
        elif isinstance(value, list):
            flags += [f"--{key}={expand(key, item)}" for item in value]
        elif isinstance(value, dict):
            raise ValueError(f"{path}: option {key!r} is a mapping; Beam options are scalars or lists")
        else:
            flags.append(f"--{key}={expand(key, value)}")
    return tuple(flags)


def flag_value(flags: Iterable[str], name: str) -> str | None:
    """The value of ``--name=value`` (or ``--name value``) in argv-style ``flags``; the last one wins."""
    value = None
    flags = list(flags)
    for position, flag in enumerate(flags):
        if flag.startswith(f"--{name}="):
            value = flag.split("=", 1)[1]
        elif flag == f"--{name}" and position + 1 < len(flags) and not flags[position + 1].startswith("--"):
            value = flags[position + 1]
    return value


def without_flag(flags: Iterable[str], name: str) -> tuple[str, ...]:
    """``flags`` without any ``--name=value`` / ``--name value``."""
    flags = list(flags)
    kept: list[str] = []
    skip = False
    for position, flag in enumerate(flags):
        if skip:
            skip = False
            continue
        if flag.startswith(f"--{name}="):
            continue
        if flag == f"--{name}":
            skip = position + 1 < len(flags) and not flags[position + 1].startswith("--")
            continue
        kept.append(flag)
    return tuple(kept)


def resolve_beam_runner(runner: str | None, flags: Iterable[str]) -> tuple[str, tuple[str, ...]]:
    """The runner to use and the flags without ``--runner``: ``runner`` when given, else the
    ``--runner`` among ``flags`` (an options file's ``runner:`` key), else ``FnApiRunner``.

    Raises:
        ValueError: ``runner`` and the flags name different runners.
    """
    named = flag_value(flags, "runner")
    if runner is not None and named is not None and named != runner:
        raise ValueError(f"--runner {runner} contradicts the Beam options, which name the runner {named}")
    return runner or named or "FnApiRunner", without_flag(flags, "runner")
