"""One source, end to end: plan -> run shards on a backend -> publish.

The CLI (``climb build``) and the Prefect flow (``pipelines.flows.build``) call these same
functions; the flow only wraps them in tasks.

Versions: ``<out>/<source>/<version>/`` where the version is a hash of everything that
affects the bytes: the source manifest, the build config, the code of the transform and
write path, the input fingerprint and the de-identification key's fingerprint. An unchanged
source is therefore found already published and is not rebuilt; any change gives a new
version beside the old one, and ``<out>/<source>/current.json`` points at the newest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import fsspec

from manifests.schema import (
    MANIFEST_FILE,
    QuarantineRecord,
    ShardRecord,
    SourceManifest,
    load_source_manifest,
)
from pipelines.stages.index import IndexResult, fingerprint_inputs, index_source, plan_shards
from pipelines.stages.plan import ShardPlan
from pipelines.stages.transform import canonical_spec_dict, make_item_fn
from pipelines.stages.write import ShardContext, run_shard
from transforms.pseudonyms import DeidKey

log = logging.getLogger(__name__)

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
#: Code whose change changes the output bytes (and so the version).
VERSIONED_CODE = ("transforms", "manifests/schema.py", "manifests/writer.py", "pipelines/stages")
CURRENT_FILE = "current.json"
MapShards = Callable[..., list[ShardRecord]]


@dataclass(frozen=True)
class BuildConfig:
    """Options that change what a build writes (all part of the version hash).

    Attributes:
        items_per_shard: items per shard (one write task each).
        max_items_per_split: keep only the first N items (by key) per split, for smoke runs.
        split_policy: override the manifest's split policy (``subject_hash``, ``climb_published``).
    """

    items_per_shard: int = 256
    max_items_per_split: int | None = None
    split_policy: str | None = None

    def config_hash(self) -> str:
        payload = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


def code_version() -> str:
    """sha256 over the source of the modules that shape the output (short form)."""
    digest = hashlib.sha256()
    for entry in VERSIONED_CODE:
        path = PACKAGE_ROOT / entry
        files = sorted(path.rglob("*.py")) + sorted(path.rglob("*.csv")) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(PACKAGE_ROOT)).encode() + b"\x00" + file.read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class BuildPlan:
    """Everything decided before any shard is written."""

    manifest: SourceManifest
    raw_dir: str
    out: str
    version: str
    dataset_url: str
    plans: list[ShardPlan]
    index: IndexResult
    provenance: dict[str, Any]
    config: BuildConfig
    storage_options: dict[str, Any] = field(default_factory=dict)

    @property
    def items_in(self) -> int:
        return sum(len(p.items) for p in self.plans)


def _apply_policy(manifest: SourceManifest, config: BuildConfig) -> SourceManifest:
    if config.split_policy is None or config.split_policy == manifest.split.policy:
        return manifest
    split = manifest.split.model_copy(update={"policy": config.split_policy})
    return manifest.model_copy(update={"split": split})


def plan_build(
    source: str | SourceManifest,
    raw_dir: str,
    out: str,
    config: BuildConfig | None = None,
    key: DeidKey | None = None,
    storage_options: dict[str, Any] | None = None,
) -> BuildPlan:
    """Index the raw folder and plan the shards; decide the version.

    Raises:
        MissingSecretError: no de-identification secret in the environment (when ``key`` is None).
    """
    config = config or BuildConfig()
    key = key or DeidKey.from_env()
    manifest = source if isinstance(source, SourceManifest) else load_source_manifest(source)
    manifest = _apply_policy(manifest, config)
    index = index_source(manifest, raw_dir, key)
    items = index.items
    if config.max_items_per_split is not None:
        kept: list = []
        for split_items in index.by_split().values():
            kept.extend(sorted(split_items, key=lambda it: it.item_key)[: config.max_items_per_split])
        index.skipped["max_items_per_split"] += len(items) - len(kept)
        items = kept
    plans = plan_shards(items, config.items_per_shard)
    provenance = {
        "source_manifest_sha256": manifest.content_hash(),
        "input_fingerprint": fingerprint_inputs(
            [*(p for it in items for p in it.paths), *index.tables], raw_dir
        ),
        "code_version": code_version(),
        "config_sha256": config.config_hash(),
        "config": asdict(config),
        "deid_key_fingerprint": key.fingerprint(),
        "index_skipped": dict(index.skipped),
    }
    fetch_log = Path(raw_dir) / ".climb" / "fetch-log.json"
    if fetch_log.exists():
        provenance["fetch_log_sha256"] = hashlib.sha256(fetch_log.read_bytes()).hexdigest()
    version_digest = hashlib.sha256(
        json.dumps(
            {k: provenance[k] for k in sorted(provenance) if k != "index_skipped"}, sort_keys=True
        ).encode()
    ).hexdigest()
    version = f"v{manifest.manifest_version}-{version_digest[:12]}"
    dataset_url = f"{out.rstrip('/')}/{manifest.id}/{version}"
    return BuildPlan(
        manifest=manifest,
        raw_dir=str(raw_dir),
        out=out,
        version=version,
        dataset_url=dataset_url,
        plans=plans,
        index=index,
        provenance=provenance,
        config=config,
        storage_options=dict(storage_options or {}),
    )


def is_published(plan: BuildPlan) -> bool:
    """True when this exact version's ``manifest.json`` exists (nothing to do)."""
    fs, path = fsspec.core.url_to_fs(f"{plan.dataset_url}/{MANIFEST_FILE}", **plan.storage_options)
    return bool(fs.exists(path))


def shard_context(plan: BuildPlan, key: DeidKey | None = None) -> ShardContext:
    key = key or DeidKey.from_env()
    return ShardContext(
        dataset_url=plan.dataset_url,
        item_fn=make_item_fn(plan.manifest, key),
        source=plan.manifest.id,
        storage_options=plan.storage_options,
    )


def map_shards_local(
    run_one: Callable[[ShardPlan], ShardRecord],
    plans: Iterable[ShardPlan],
    *,
    options: Any = None,
    on_result: Callable[[ShardRecord], None] | None = None,
) -> list[ShardRecord]:
    """In-process backend: one shard after the other."""
    records = []
    for plan in plans:
        record = run_one(plan)
        if on_result is not None:
            on_result(record)
        records.append(record)
    return records


def run_shards(
    plan: BuildPlan,
    *,
    map_shards: MapShards | None = None,
    backend_options: Any = None,
    on_result: Callable[[ShardRecord], None] | None = None,
    key: DeidKey | None = None,
) -> list[ShardRecord]:
    """Run every shard plan on a backend (default: in-process)."""
    import functools

    run_one = functools.partial(run_shard, context=shard_context(plan, key))
    mapper = map_shards or map_shards_local
    records = mapper(run_one, plan.plans, options=backend_options, on_result=on_result)
    return sorted(records, key=lambda r: (r.split, r.index))


def deid_report(records: Sequence[ShardRecord], manifest: SourceManifest) -> dict[str, Any]:
    """Actions by kind and count, plus the method, for the built manifest."""
    actions: Counter[str] = Counter()
    for record in records:
        actions.update(record.deid_actions)
    from pipelines.stages.transform import DEID_METHODS

    fmt = manifest.layout.format if manifest.layout else ""
    return {
        "method": DEID_METHODS.get(fmt, "keyed HMAC-SHA256 pseudonyms and per-patient date offsets"),
        "namespace": manifest.deid.namespace,
        "actions": dict(sorted(actions.items())),
    }


def publish_build(plan: BuildPlan, records: Sequence[ShardRecord]) -> dict[str, Any]:
    """Merge shard records into ``manifest.json`` (written last) and point ``current.json`` at it.

    Raises:
        QuarantineThresholdError: too many items quarantined (nothing is published).
        CountMismatchError: items in != items published + quarantined.
    """
    from manifests.publish import publish_dataset

    quarantine = [QuarantineRecord(**row) for r in records for row in r.quarantine]
    manifest = plan.manifest
    info = {
        "title": manifest.title,
        "licence": manifest.licence,
        "citation": manifest.citation,
        "group": manifest.group,
        "modality": manifest.modality,
        "host": manifest.host.model_dump(mode="json"),
        "canonical": canonical_spec_dict(manifest),
        "labels": manifest.labels.model_dump(mode="json"),
        "split_policy": manifest.split.model_dump(mode="json"),
        "deid": deid_report(records, manifest),
        "provenance": plan.provenance,
        "throughput": {
            "shard_seconds": round(sum(r.seconds for r in records), 3),
            "shards_reused": sum(1 for r in records if r.skipped),
        },
    }
    published = publish_dataset(
        plan.dataset_url,
        source=manifest.id,
        version=plan.version,
        shards=[r.publish_fields() for r in records],
        quarantine=quarantine,
        items_in=plan.items_in,
        info=info,
        quarantine_max_fraction=manifest.quarantine_max_fraction,
        storage_options=plan.storage_options or None,
    )
    write_current_pointer(plan)
    return published


def write_current_pointer(plan: BuildPlan) -> None:
    """``<out>/<source>/current.json`` names the newest published version (temp + rename)."""
    fs, path = fsspec.core.url_to_fs(
        f"{plan.out.rstrip('/')}/{plan.manifest.id}/{CURRENT_FILE}", **plan.storage_options
    )
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with fs.open(tmp, "w") as fh:
        fh.write(json.dumps({"version": plan.version, "source": plan.manifest.id}, sort_keys=True))
    fs.mv(tmp, path)


@dataclass
class BuildResult:
    source: str
    version: str
    dataset_url: str
    status: str  # "built" | "up_to_date"
    items_in: int
    samples_out: int
    quarantined: int
    shards: int
    bytes: int
    seconds: float
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def items_per_s(self) -> float:
        return self.items_in / self.seconds if self.seconds > 0 else 0.0


def summarise(plan: BuildPlan, manifest: dict[str, Any], status: str, seconds: float) -> BuildResult:
    counts = manifest.get("counts", {})
    shards = manifest.get("shards", [])
    return BuildResult(
        source=plan.manifest.id,
        version=plan.version,
        dataset_url=plan.dataset_url,
        status=status,
        items_in=int(counts.get("items_in", plan.items_in)),
        samples_out=int(counts.get("samples_out", 0)),
        quarantined=int(counts.get("quarantined", 0)),
        shards=len(shards),
        bytes=sum(sum(s.get("bytes", {}).values()) for s in shards),
        seconds=seconds,
        quarantine_reasons=dict(counts.get("quarantined_by_code", {})),
        manifest=manifest,
    )


def read_published_manifest(plan: BuildPlan) -> dict[str, Any]:
    fs, path = fsspec.core.url_to_fs(f"{plan.dataset_url}/{MANIFEST_FILE}", **plan.storage_options)
    return json.loads(fs.cat_file(path))


def build_source(
    source: str | SourceManifest,
    raw_dir: str,
    out: str,
    config: BuildConfig | None = None,
    *,
    map_shards: MapShards | None = None,
    backend_options: Any = None,
    overwrite: bool = False,
    on_result: Callable[[ShardRecord], None] | None = None,
    key: DeidKey | None = None,
    storage_options: dict[str, Any] | None = None,
    plan: BuildPlan | None = None,
) -> BuildResult:
    """Build one source: the whole path, or nothing when this version is already published.

    Args:
        source: source id or manifest.
        raw_dir: the raw release folder (as fetched, or a ``--manual-dir``).
        out: output root URL (any fsspec URL).
        config: build options that affect the output.
        map_shards: a backend's ``map_shards`` (default: in-process).
        overwrite: rebuild even if this version is published (done records are ignored too).
        plan: a plan :func:`plan_build` already made for these arguments (the CLI makes one
            to size its progress bar); ``None`` plans here. Indexing is the costly part of
            planning (a listing and a ``stat`` per raw file), so it is not done twice.
    """
    started = time.perf_counter()
    key = key or DeidKey.from_env()
    if plan is None:
        plan = plan_build(source, raw_dir, out, config, key=key, storage_options=storage_options)
    if is_published(plan) and not overwrite:
        return summarise(plan, read_published_manifest(plan), "up_to_date", time.perf_counter() - started)
    if overwrite:
        fs, path = fsspec.core.url_to_fs(plan.dataset_url, **plan.storage_options)
        if fs.exists(path):
            fs.rm(path, recursive=True)
    records = run_shards(
        plan, map_shards=map_shards, backend_options=backend_options, on_result=on_result, key=key
    )
    manifest = publish_build(plan, records)
    return summarise(plan, manifest, "built", time.perf_counter() - started)
