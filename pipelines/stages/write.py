"""Write stage: ``run_shard(plan, context)``, the only code that writes shards.

1. If the shard's done record exists, names the same plan, and every file it lists still
   has the recorded sha256, return the recorded result (a rerun skips finished shards).
2. Otherwise run the item function over the plan's items, write the samples through
   :func:`manifests.writer.write_shard` (temporary name, then publish by rename).
3. Write the done record last (temporary name, then rename), with counts, quarantine rows,
   de-identification actions and the file hashes.

One plan is one shard and one task, on every backend: no two writers ever touch a shard.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import fsspec
from threadpoolctl import threadpool_limits

from manifests.schema import QuarantineRecord, Sample, ShardRecord
from manifests.writer import write_shard
from pipelines.stages.plan import ShardPlan
from pipelines.stages.transform import ItemFn

WORK_DIR = "_work"


@dataclass(frozen=True)
class ShardContext:
    """Everything a worker needs to run a shard (picklable).

    Attributes:
        dataset_url: the version folder, ``<out>/<source>/<version>``.
        item_fn: the source's per-item function (:func:`pipelines.stages.transform.make_item_fn`).
        storage_options: fsspec options for the output filesystem.
    """

    dataset_url: str
    item_fn: ItemFn
    source: str
    storage_options: dict[str, Any] = field(default_factory=dict)


def done_path(dataset_url: str, plan: ShardPlan) -> str:
    return f"{dataset_url.rstrip('/')}/{WORK_DIR}/done/{plan.split}-part-{plan.index:05d}.done.json"


def _sha256_of(fs: fsspec.AbstractFileSystem, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_done_record(plan: ShardPlan, context: ShardContext) -> ShardRecord | None:
    """The valid done record of a shard, or None when the shard must be (re)written."""
    fs, path = fsspec.core.url_to_fs(done_path(context.dataset_url, plan), **context.storage_options)
    if not fs.exists(path):
        return None
    try:
        record = json.loads(fs.cat_file(path))
        shard = ShardRecord.model_validate(record["shard"])
    except (ValueError, KeyError, OSError):
        return None
    if record.get("plan_fingerprint") != plan.fingerprint():
        return None
    root = context.dataset_url.rstrip("/")
    for rel, digest in shard.sha256.items():
        fs_file, file_path = fsspec.core.url_to_fs(f"{root}/{rel}", **context.storage_options)
        if not fs_file.exists(file_path) or _sha256_of(fs_file, file_path) != digest:
            return None
    return shard


def run_shard(plan: ShardPlan, context: ShardContext) -> ShardRecord:
    """Transform and write one shard, or return its valid done record.

    Returns:
        The shard record, with the build bookkeeping filled: ``quarantine`` rows,
        ``deid_actions`` counts, ``items``/``quarantined`` counts, ``seconds``, and
        ``skipped=True`` when a valid done record was reused.
    """
    existing = read_done_record(plan, context)
    if existing is not None:
        return existing.model_copy(update={"skipped": True})
    # One BLAS thread: shards are the parallelism (one task per core), and single-threaded
    # BLAS sums are the same bits on every machine and backend.
    with threadpool_limits(limits=1, user_api="blas"):
        return _run_shard(plan, context)


def _run_shard(plan: ShardPlan, context: ShardContext) -> ShardRecord:
    started = time.perf_counter()
    samples: list[Sample] = []
    quarantine: list[QuarantineRecord] = []
    actions: Counter[str] = Counter()
    items_ok = 0
    for item in plan.items:
        result = context.item_fn(item)
        actions.update(result.deid_actions)
        if result.quarantine is not None:
            quarantine.append(result.quarantine)
        else:
            items_ok += 1
            samples.extend(result.samples)
    samples.sort(key=lambda s: s.sample_id)
    written = write_shard(
        context.dataset_url,
        plan.split,
        plan.index,
        samples,
        storage_options=context.storage_options or None,
        source=context.source,
    )
    shard = written.model_copy(
        update={
            "items": items_ok,
            "quarantined": len(quarantine),
            "quarantine": [vars(q) for q in sorted(quarantine, key=lambda q: q.item_id)],
            "deid_actions": dict(sorted(actions.items())),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
    record = {"plan": plan.name, "plan_fingerprint": plan.fingerprint(), "shard": shard.model_dump()}
    fs, path = fsspec.core.url_to_fs(done_path(context.dataset_url, plan), **context.storage_options)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with fs.open(tmp, "w") as fh:
        fh.write(json.dumps(record, sort_keys=True, indent=1))
    fs.mv(tmp, path)
    return shard
