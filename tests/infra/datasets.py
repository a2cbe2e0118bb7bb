"""Tiny built datasets written by the real shard writer and publisher, for the audit tests.

``write_tiny_dataset`` writes ``<out>/<source>/<version>/`` with ``manifests.writer.write_shard``
(Zarr v3 arrays + Parquet rows per shard) and ``manifests.publish.publish_dataset``
(``manifest.json`` last), so the audit sees exactly what a build publishes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from manifests.publish import publish_dataset
from manifests.schema import MANIFEST_FILE, Sample
from manifests.writer import write_shard


def write_tiny_dataset(
    out: Path, source: str, version: str, shards: dict[str, int], per_shard: int = 3
) -> Path:
    """Publish a dataset with ``shards[split]`` shards of ``per_shard`` samples each; returns its root.

    Samples: ``signal`` int16 (2, 64) of a seeded random walk, row ``label`` int.
    """
    root = out / source / version
    rng = np.random.default_rng(sum(map(ord, source + version)))
    records = []
    for split, count in shards.items():
        for index in range(count):
            samples = [
                Sample(
                    sample_id=f"{split}-{index}-{k:03d}",
                    subject_id=f"subj-{k}",
                    split=split,
                    arrays={
                        "signal": np.cumsum(rng.integers(-50, 50, size=(2, 64)), axis=1).astype(np.int16)
                    },
                    row={"label": int(k % 3)},
                )
                for k in range(per_shard)
            ]
            records.append(write_shard(str(root), split, index, samples, source=source))
    items = sum(r.items for r in records)
    publish_dataset(
        str(root),
        source=source,
        version=version,
        shards=records,
        quarantine=[],
        items_in=items,
        info={"title": f"tiny {source}"},
        quarantine_max_fraction=0.0,
    )
    return root


def flip_a_byte(dataset: Path) -> tuple[str, str]:
    """Flip one byte in the middle of a shard file the manifest lists; returns ``(shard, file)``.

    The size stays the same, so only the sha256 check can catch it.
    """
    manifest = json.loads((dataset / MANIFEST_FILE).read_text())
    shard = manifest["shards"][-1]
    relative = shard["files"]["rows"]
    path = dataset / relative
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return f"{shard['split']}/{shard['index']:05d}", relative
