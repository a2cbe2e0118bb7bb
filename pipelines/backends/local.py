"""In-process backend: plans run one after another in the caller's process, for debugging.

No pickling and no subprocesses: a breakpoint inside ``run_one`` stops here, and a traceback
points straight at the failing line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from pipelines.backends import BackendOptions, iterate_unique_plans, run_plan, sort_records

if TYPE_CHECKING:
    from manifests.schema import ShardRecord
    from pipelines.stages.plan import ShardPlan

__all__ = ["map_shards"]


def map_shards(
    run_one: Callable[[ShardPlan], ShardRecord],
    plans: Iterable[ShardPlan],
    *,
    options: BackendOptions | None = None,
    on_result: Callable[[ShardRecord], None] | None = None,
) -> list[ShardRecord]:
    """Run ``run_one`` on every plan in this process, in the order given.

    Args:
        run_one: ``ShardPlan -> ShardRecord``; writes one shard (idempotent).
        plans: shard plans, consumed lazily; shard names must be unique.
        options: unused here (accepted so every backend has the same signature).
        on_result: called with each record as its shard finishes.

    Returns:
        One record per plan, sorted by ``(split, index)``.

    Raises:
        ShardFailedError: ``run_one`` raised; the message names the shard. Shards already
            finished stay written (a rerun skips them).
        ValueError: a shard name appears twice in ``plans``.
    """
    del options
    records = []
    for plan in iterate_unique_plans(plans):
        record = run_plan(run_one, plan)
        records.append(record)
        if on_result is not None:
            on_result(record)
    return sort_records(records)
