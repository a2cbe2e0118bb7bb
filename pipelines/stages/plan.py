"""Items and shard plans: what the index stage produces and what every backend maps over.

A build is planned up front: the index gives items with stable ids; each item goes to one
shard of its split by a keyed hash of its id; each :class:`ShardPlan` names exactly one
output shard, so exactly one task ever writes it (Zarr sharded writes lose data with two
writers). Plans are small, picklable and sorted, so every backend sees the same work.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Item:
    """One raw recording/image/study, as the index found it.

    Attributes:
        item_id: the source's own stable id (e.g. the record name). Raw: never written to an output;
            outputs use :attr:`item_key`.
        subject_id: the source's patient id (raw). Where a release has none, the item id stands in.
        paths: raw file paths, absolute or relative to the raw root; the first one is the entry point.
        split: assigned split name.
        labels: per-item labels from the index (e.g. CLIMB's published multi-hot), JSON-able.
        item_key: pseudonymous, stable key of the item (HMAC of the item id): used for shard
            assignment, sample ids and quarantine rows.
    """

    item_id: str
    subject_id: str
    paths: tuple[str, ...]
    split: str
    item_key: str
    labels: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ShardPlan:
    """The items of one output shard: exactly one task writes it.

    Attributes:
        split: split name.
        index: shard index within the split (``part-{index:05d}``).
        items: the items, sorted by ``item_key``.
    """

    split: str
    index: int
    items: tuple[Item, ...]

    @property
    def name(self) -> str:
        return f"{self.split}/part-{self.index:05d}"

    def fingerprint(self) -> str:
        """sha256 of the plan's item keys: a done record is only valid for the same plan."""
        digest = hashlib.sha256(self.name.encode())
        for item in self.items:
            digest.update(b"\x00" + item.item_key.encode())
        return digest.hexdigest()
