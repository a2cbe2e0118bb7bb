"""Prefect 3 flows: ``build_source`` (one source) and ``build_corpus`` (fan-out over sources).

The flows only orchestrate: each task body is one call into :mod:`pipelines.stages` (or the
fetchers), the same functions ``climb build`` calls.

* ``fetch`` retries transient failures (the fetchers already retry HTTP 429/5xx inside; the
  task retry covers a dropped host or a killed worker) and is limited per host.
* ``plan`` indexes the raw folder once and computes the version: a hash of the input
  fingerprint, the config, the code of the transform/write path, the source manifest and the
  key. The plan object goes to ``build`` in memory (``quote``: Prefect neither walks nor
  persists it), so the release is indexed once per run, as in ``climb build``.
* ``build`` runs the shards on the chosen backend and publishes (on Dask without a scheduler
  address, the ``LocalCluster`` starts while ``plan`` indexes, as in ``climb build``). Its Prefect cache key is the
  version plus the output URL, so an unchanged source is skipped by Prefect's cache; the
  storage stays the truth (a published ``manifest.json`` is also found without the cache,
  and a missing one is rebuilt even if Prefect remembers a result: ``refresh_cache``).
* one ``build-<source>`` markdown artifact per build: counts, quarantine share and reasons,
  de-identification actions, throughput.

The de-identification secret comes from ``CLIMB_DEID_SECRET`` or, when unset, from a
Prefect Secret block named ``climb-deid-secret``; it is never a flow parameter (parameters
are stored in the Prefect database and shown in the UI).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.context import TaskRunContext
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from manifests.schema import load_source_manifest
from pipelines.stages import build as stages
from transforms.pseudonyms import SECRET_ENV, DeidKey, MissingSecretError

SECRET_BLOCK = "climb-deid-secret"
_host_gates: dict[str, threading.BoundedSemaphore] = {}
_host_gates_lock = threading.Lock()


def resolve_deid_key() -> DeidKey:
    """The secret from the environment, else from the Prefect Secret block ``climb-deid-secret``."""
    if os.environ.get(SECRET_ENV):
        return DeidKey.from_env()
    try:
        from prefect.blocks.system import Secret

        value = Secret.load(SECRET_BLOCK).get()
    except Exception:  # no block, no server: fall through to the clear error below
        value = None
    if not value:
        raise MissingSecretError(
            f"no de-identification secret: set {SECRET_ENV} or create the Prefect Secret block "
            f"{SECRET_BLOCK!r} (prefect block create secret)"
        )
    return DeidKey(str(value).encode("utf-8"))


def _host_gate(host: str, limit: int) -> threading.BoundedSemaphore:
    with _host_gates_lock:
        if host not in _host_gates:
            _host_gates[host] = threading.BoundedSemaphore(limit)
        return _host_gates[host]


def _is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what a retry can fix: connection trouble and server-side HTTP errors."""
    try:
        state.result()
    except (ConnectionError, TimeoutError, OSError) as exc:
        return not isinstance(exc, FileNotFoundError | PermissionError)
    except Exception as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None) or getattr(exc, "status", None)
        return isinstance(status, int) and (status == 429 or status >= 500)
    return False


@task(
    name="fetch", retries=2, retry_delay_seconds=[3, 9], retry_condition_fn=_is_transient, cache_policy=NONE
)
def fetch_task(
    source: str, dest: str, endpoints: dict[str, str] | None, per_host_connections: int = 2
) -> str:
    """Fetch a source's raw files into ``dest`` (verified, resumable); returns ``dest``."""
    from pipelines.fetch.source import fetch_source

    manifest = load_source_manifest(source)
    with _host_gate(manifest.host.kind, per_host_connections):
        fetch_source(manifest, dest, endpoints=endpoints, progress=False)
    return dest


@task(name="plan", cache_policy=NONE, persist_result=False)
def plan_task(source: str, raw_dir: str, out: str, config: dict[str, Any]) -> stages.BuildPlan:
    """Index and plan once: the version, the shard plans, the item count (never cached).

    The plan itself goes to the build task (in memory, never persisted: it lists every item),
    so the raw release is indexed once per flow run, as ``climb build`` does.
    """
    return stages.plan_build(source, raw_dir, out, stages.BuildConfig(**config), key=resolve_deid_key())


def build_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Cache key of the build task: the version (inputs + config + code + manifest + key) and the output."""
    return f"climb-build:{parameters['out']}:{parameters['source']}:{parameters['version']}"


@task(name="build", cache_key_fn=build_cache_key, persist_result=True)
def build_task(
    source: str,
    raw_dir: str,
    out: str,
    config: dict[str, Any],
    options: dict[str, Any],
    version: str,
    plan: stages.BuildPlan | None = None,
) -> dict[str, Any]:
    """Run the shards on the backend and publish (skipped by cache for an unchanged version).

    ``plan`` is the plan task's result (passed wrapped in :func:`prefect.utilities.annotations.quote`
    so Prefect does not walk its items); ``None`` plans again here (a direct call).
    """
    from pipelines.cli_build import BuildOptions

    opts = BuildOptions(**options)
    key = resolve_deid_key()
    result = stages.build_source(
        source,
        raw_dir,
        out,
        stages.BuildConfig(**config),
        map_shards=opts.map_shards(),
        backend_options=opts.backend_options() if opts.backend != "local" else None,
        key=key,
        plan=plan,
    )
    if result.version != version:
        raise RuntimeError(
            f"{source}: inputs changed during the build (planned {version}, built {result.version})"
        )
    summary = asdict(result)
    summary.pop("manifest")
    summary["items_per_s"] = result.items_per_s
    return summary


def build_artifact_markdown(summary: dict[str, Any], manifest: dict[str, Any]) -> str:
    """The ``build-<source>`` artifact: a markdown table of what this build did."""
    counts = manifest.get("counts", {})
    items = counts.get("items_in", summary["items_in"]) or 0
    share = (counts.get("quarantined", 0) / items) if items else 0.0
    lines = [
        f"## {summary['source']} {summary['version']} ({summary['status']})",
        "",
        "| items in | samples out | quarantined | quarantine share | shards | MB | seconds | items/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {items} | {counts.get('samples_out', summary['samples_out'])} | {counts.get('quarantined', 0)} | "
        f"{share:.2%} | {summary['shards']} | {summary['bytes'] / 1e6:.1f} | {summary['seconds']:.1f} | "
        f"{summary.get('items_per_s', 0):.0f} |",
        "",
    ]
    reasons = counts.get("quarantined_by_code", {})
    if reasons:
        lines += ["| quarantine reason | items |", "|---|---:|"]
        lines += [f"| {code} | {n} |" for code, n in sorted(reasons.items(), key=lambda kv: -kv[1])]
        lines.append("")
    actions = manifest.get("deid", {}).get("actions", {})
    if actions:
        lines += ["| de-identification action | count |", "|---|---:|"]
        lines += [f"| {name} | {n} |" for name, n in actions.items()]
    return "\n".join(lines)


def _dask_started_early(stack: contextlib.ExitStack, options: dict[str, Any]) -> Any:
    """For the Dask backend with no ``dask_address``: a ``LocalCluster`` starting now, in the
    background (:func:`pipelines.backends.dask.cluster_started_early`), closed with ``stack``;
    its ``ready()`` gives the options with its address. ``None`` for any other backend."""
    from pipelines.cli_build import BuildOptions

    opts = BuildOptions(**options)
    if opts.backend != "dask" or opts.dask_address is not None:
        return None
    from pipelines.backends.dask import cluster_started_early

    return stack.enter_context(cluster_started_early(opts.backend_options()))


@flow(name="build-source", log_prints=False)
def build_source(
    source: str,
    out: str,
    raw_dir: str | None = None,
    endpoints: dict[str, str] | None = None,
    config: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build one source: fetch (when no ``raw_dir`` is given) -> plan -> build -> publish.

    Args:
        source: source id.
        out: output root URL.
        raw_dir: an existing raw release folder; ``None`` fetches into ``<out>/../raw/<source>``
            (or ``$CLIMB_RAW_ROOT/<source>``).
        endpoints: host base-URL overrides for the fetchers (mirrors, tests, the demo).
        config: :class:`pipelines.stages.build.BuildConfig` fields.
        options: :class:`pipelines.cli_build.BuildOptions` fields (backend, workers, ...).

    Returns:
        The build summary (counts, version, URL, ``cached``: whether Prefect's cache skipped the build).
    """
    logger = get_run_logger()
    started = time.perf_counter()
    config = dict(config or {})
    options = dict(options or {})
    if raw_dir is None:
        raw_root = os.environ.get("CLIMB_RAW_ROOT") or str(Path(out).parent / "raw")
        raw_dir = fetch_task(source, f"{raw_root.rstrip('/')}/{source}", endpoints)
    with contextlib.ExitStack() as stack:
        ready = _dask_started_early(stack, options)  # the workers start while the plan indexes
        plan = plan_task(source, raw_dir, out, config)
        logger.info(
            "%s: version %s, %d items in %d shards", source, plan.version, plan.items_in, len(plan.plans)
        )
        # Storage is the truth: a version Prefect remembers but whose manifest is gone is rebuilt.
        published = stages.is_published(plan)
        build = build_task if published else build_task.with_options(refresh_cache=True)
        if ready is not None and not published:  # an unused cluster closes with the stack
            options = {**options, "dask_address": ready().dask_address}
        state = build(source, raw_dir, out, config, options, plan.version, quote(plan), return_state=True)
    summary = dict(state.result())
    summary["cached"] = state.name == "Cached"
    summary["flow_seconds"] = round(time.perf_counter() - started, 3)
    manifest = stages.read_published_manifest(plan)
    create_markdown_artifact(
        key=f"build-{source.replace('_', '-')}",
        markdown=build_artifact_markdown(summary, manifest),
        description=f"climb build of {source}",
    )
    return summary


@task(name="build-one-source", cache_policy=NONE)
def _build_one(
    source: str,
    out: str,
    raw_dir: str | None,
    endpoints: dict[str, str] | None,
    config: dict[str, Any],
    options: dict[str, Any],
) -> dict[str, Any]:
    return build_source(source, out, raw_dir=raw_dir, endpoints=endpoints, config=config, options=options)


@flow(name="build-corpus", task_runner=ThreadPoolTaskRunner(max_workers=2))
def build_corpus(
    out: str,
    sources: Sequence[str] | None = None,
    raw_root: str | None = None,
    endpoints: dict[str, str] | None = None,
    config: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Build many sources: one ``build-source`` run each, at most two at a time (CPU bound),
    fetches limited per host inside.

    Args:
        out: output root URL.
        sources: source ids; ``None``: every implemented source in the catalog.
        raw_root: folder holding ``<source>/`` raw releases; ``None`` fetches each source.

    Returns:
        Summary per source. A failed source fails the corpus flow after the others finish.
    """
    from manifests.schema import load_catalog

    if sources is None:
        sources = [sid for sid, m in load_catalog().items() if m.status == "implemented"]
    futures = {
        source: _build_one.submit(
            source,
            out,
            f"{raw_root.rstrip('/')}/{source}" if raw_root else None,
            endpoints,
            dict(config or {}),
            dict(options or {}),
        )
        for source in sources
    }
    results: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    for source, future in futures.items():
        try:
            results[source] = future.result()
        except Exception as exc:
            failures.append(f"{source}: {exc}")
    if failures:
        raise RuntimeError("corpus build failed for " + "; ".join(failures))
    return results
