"""A small but real shard writer for the backend tests: one file per shard, temp + rename, idempotent.

It stands in for ``run_shard`` (which the stage module owns) with the same contract: it writes
``<out>/<split>/part-NNNNN.txt`` (one line per item: item key and a digest of the item id), publishes
it by rename, writes a ``.done.json`` beside it last, and on a rerun returns the recorded result
when the done record matches the plan's fingerprint and the file's sha256. Every call appends
``<event> <shard> <pid>`` lines to ``<log_dir>/calls.log`` (``O_APPEND``: whole lines from many
processes), so tests can count how often, and where, each shard ran.

It lives in an importable module (not the test file) because Dask and Beam workers import it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path

from manifests.schema import ShardRecord
from pipelines.stages.plan import ShardPlan

LOG_FILE = "calls.log"


def log_event(log_dir: str, event: str, plan: ShardPlan) -> None:
    """Append one ``<event> <shard name> <pid>`` line to the call log."""
    line = f"{event} {plan.name} {os.getpid()}\n".encode()
    descriptor = os.open(Path(log_dir) / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)


def read_log(log_dir: Path) -> list[tuple[str, str, int]]:
    """The call log as ``(event, shard name, pid)`` tuples, in order."""
    path = log_dir / LOG_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        event, name, pid = line.split()
        rows.append((event, name, int(pid)))
    return rows


def render_shard(plan: ShardPlan) -> bytes:
    """The shard file's bytes: one ``<item_key> <sha256(item_id)[:16]>`` line per item."""
    lines = [
        f"{item.item_key} {hashlib.sha256(item.item_id.encode()).hexdigest()[:16]}" for item in plan.items
    ]
    return ("\n".join(lines) + "\n").encode()


def write_test_shard(
    plan: ShardPlan,
    *,
    out_dir: str,
    log_dir: str,
    delay_s: float = 0.0,
    fail_shards: tuple[str, ...] = (),
) -> ShardRecord:
    """Write one shard (or skip it when its done record is valid) and return its record.

    Args:
        plan: the shard to write.
        out_dir: dataset root (local path).
        log_dir: where ``calls.log`` goes.
        delay_s: seconds to sleep before writing (a slow-ish shard, for the killed-worker test).
        fail_shards: shard names for which this raises ``ValueError`` (a failing transform).
    """
    log_event(log_dir, "start", plan)
    relative = f"{plan.split}/part-{plan.index:05d}.txt"
    target = Path(out_dir) / relative
    done = target.with_suffix(".done.json")
    if done.exists():
        recorded = json.loads(done.read_text())
        if (
            recorded["fingerprint"] == plan.fingerprint()
            and target.exists()
            and hashlib.sha256(target.read_bytes()).hexdigest() == recorded["record"]["sha256"][relative]
        ):
            log_event(log_dir, "skip", plan)
            return ShardRecord.model_validate(recorded["record"])
    if plan.name in fail_shards:
        raise ValueError(f"planned failure for {len(plan.items)} items")
    if delay_s:
        time.sleep(delay_s)
    payload = render_shard(plan)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f"{target.name}.tmp-{uuid.uuid4().hex}")
    temporary.write_bytes(payload)
    os.replace(temporary, target)
    record = ShardRecord(
        split=plan.split,
        index=plan.index,
        samples=len(plan.items),
        items=len(plan.items),
        files={"rows": relative},
        bytes={relative: len(payload)},
        sha256={relative: hashlib.sha256(payload).hexdigest()},
    )
    done_temporary = done.with_name(f"{done.name}.tmp-{uuid.uuid4().hex}")
    done_temporary.write_text(json.dumps({"fingerprint": plan.fingerprint(), "record": record.model_dump()}))
    os.replace(done_temporary, done)
    log_event(log_dir, "write", plan)
    return record
