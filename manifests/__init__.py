"""climb-etl: manifests — the data contract, the shard writer, the publisher and the reader.

Light to import: heavy modules (zarr, torch) load only when used.

Usage::

    from manifests import open_dataset
    train = open_dataset("s3://bucket/ptbxl/v1").split("train")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "Dataset",
    "DatasetNotFoundError",
    "ShardIntegrityError",
    "SplitView",
    "open_dataset",
]

if TYPE_CHECKING:
    from manifests.reader import Dataset, DatasetNotFoundError, ShardIntegrityError, SplitView, open_dataset


def __getattr__(name: str) -> Any:
    if name in __all__:
        from manifests import reader

        return getattr(reader, name)
    raise AttributeError(f"module 'manifests' has no attribute {name!r}")
