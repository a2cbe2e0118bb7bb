"""Publish a built dataset: merge shard records into ``manifest.json``, written last.

A dataset exists for readers only once its ``manifest.json`` exists (MosaicML Streaming's
``index.json`` rule). ``publish_dataset`` therefore:

1. checks the shard records (no duplicates, known splits) and that the counts add up:
   ``items_in == sum(shard.items) + len(quarantine)``; ``samples_out == sum(shard.samples)``
   (one item may give several samples: ECG windows);
2. checks that every file a shard record lists is in the store with the recorded size, and reads
   each shard group's metadata (schema, statistics) — one small JSON per shard;
3. writes ``quarantine.parquet`` (always, even empty);
4. fails with :class:`QuarantineThresholdError` when too many items were quarantined — *without*
   writing ``manifest.json``, so a failed build never looks published;
5. writes each split's root Zarr group (``arrays/<split>.zarr/zarr.json``), ``croissant.json``,
   and finally ``manifest.json`` (local: temp + ``os.replace``; object stores: one PUT, which is
   atomic per object).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import math
import os
import shutil
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from manifests.schema import (
    ARRAYS_DIR,
    CROISSANT_FILE,
    MANIFEST_FILE,
    QUARANTINE_COLUMNS,
    QUARANTINE_FILE,
    ROWS_DIR,
    SPLITS,
    QuarantineRecord,
    ShardRecord,
)
from manifests.writer import SHARD_ATTRS_KEY, filesystem_for, is_local

#: Version of manifest.json's layout; readers refuse versions they do not know.
MANIFEST_FORMAT_VERSION = 1
#: Top-level manifest keys that ``info`` may not override.
RESERVED_KEYS = frozenset(
    {
        "format_version",
        "source",
        "version",
        "created_at",
        "schema",
        "splits",
        "shards",
        "counts",
        "storage",
        "files",
    }
)


class QuarantineThresholdError(RuntimeError):
    """Too large a share of items was quarantined: a systematic bug, not a small data loss."""


class CountMismatchError(RuntimeError):
    """Items in != items published + items quarantined, or the shard records disagree."""


class SchemaMismatchError(ValueError):
    """Two shards disagree on an array's dtype/rank or a column's type."""


def _sort_key(record: ShardRecord) -> tuple[int, int, str]:
    order = SPLITS.index(record.split) if record.split in SPLITS else len(SPLITS)
    return (order, record.index, record.split)


def _check_records(shards: Sequence[ShardRecord]) -> list[ShardRecord]:
    seen: set[tuple[str, int]] = set()
    out = []
    for rec in shards:
        rec = ShardRecord.model_validate(rec) if not isinstance(rec, ShardRecord) else rec
        if rec.split not in SPLITS:
            raise CountMismatchError(f"shard {rec.split}/{rec.index}: unknown split; allowed {list(SPLITS)}")
        key = (rec.split, rec.index)
        if key in seen:
            raise CountMismatchError(f"shard {rec.split}/{rec.index} is listed twice")
        seen.add(key)
        if rec.samples < 0 or rec.items < 0 or rec.quarantined < 0:
            raise CountMismatchError(f"shard {rec.split}/{rec.index}: negative count in {rec}")
        out.append(rec)
    return sorted(out, key=_sort_key)


def _write_bytes(fs: Any, root: str, rel: str, data: bytes) -> None:
    """Write one file: local temp + fsync + ``os.replace``; object stores one PUT."""
    if is_local(fs):
        final = os.path.join(root, rel)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        tmp = f"{final}.tmp-{os.getpid()}"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    else:
        fs.pipe_file(f"{root}/{rel}", data)


def _check_files_present(fs: Any, root: str, shards: Sequence[ShardRecord]) -> None:
    listed: dict[str, int] = {}
    for prefix in (ROWS_DIR, ARRAYS_DIR):
        try:
            found = fs.find(f"{root}/{prefix}", detail=True)
        except FileNotFoundError:
            found = {}
        for path, info in found.items():
            rel = path[len(root.rstrip("/")) + 1 :] if path.startswith(root.rstrip("/")) else path
            listed[rel.lstrip("/")] = int(info.get("size") or 0)
    for rec in shards:
        for rel, size in rec.bytes.items():
            if rel not in listed:
                raise CountMismatchError(f"shard {rec.split}/{rec.index}: file {rel} is missing from {root}")
            if listed[rel] != size:
                raise CountMismatchError(
                    f"shard {rec.split}/{rec.index}: file {rel} has {listed[rel]} bytes, the record says {size}"
                )


def _read_shard_metadata(fs: Any, root: str, shards: Sequence[ShardRecord]) -> list[dict[str, Any]]:
    paths = [f"{root}/{rec.files['arrays']}/zarr.json" for rec in shards]
    if not paths:
        return []
    blobs = fs.cat(paths)
    metas = []
    for rec, path in zip(shards, paths, strict=True):
        meta = json.loads(blobs[path])["attributes"][SHARD_ATTRS_KEY]
        if meta["samples"] != rec.samples:
            raise CountMismatchError(
                f"shard {rec.split}/{rec.index}: group says {meta['samples']} samples, record says {rec.samples}"
            )
        metas.append(meta)
    return metas


def _merge_schema(shards: Sequence[ShardRecord], metas: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    arrays: dict[str, dict[str, Any]] = {}
    columns: dict[str, str] = {}
    for rec, meta in zip(shards, metas, strict=True):
        if meta["samples"] == 0:
            continue
        where = f"shard {rec.split}/{rec.index}"
        for name, info in meta["arrays"].items():
            ndim = len(info["shape"]) if info["layout"] == "fixed" else info["ndim"]
            have = arrays.get(name)
            if have is None:
                entry = {"dtype": info["dtype"], "ndim": ndim, "layout": info["layout"]}
                if info["layout"] == "fixed":
                    entry["shape"] = list(info["shape"])
                arrays[name] = entry
                continue
            if have["dtype"] != info["dtype"] or have["ndim"] != ndim:
                raise SchemaMismatchError(
                    f"{where}: array {name!r} is {info['dtype']} with {ndim} dims, earlier shards "
                    f"have {have['dtype']} with {have['ndim']} dims"
                )
            if have["layout"] == "fixed" and (info["layout"] != "fixed" or info["shape"] != have["shape"]):
                have["layout"] = "ragged"
                have.pop("shape", None)
        for name, typ in meta["columns"].items():
            columns[name] = _merge_type(columns.get(name), typ, f"{where}: column {name!r}")
    return {
        "arrays": arrays,
        "columns": [{"name": name, "type": typ} for name, typ in columns.items()],
    }


def _merge_type(have: str | None, new: str, where: str) -> str:
    if have is None or have == new or new == "null":
        return have or new
    if have == "null":
        return new
    numeric = {"int64", "double"}
    if {have, new} <= numeric:
        return "double"
    if have.startswith("list<") and new.startswith("list<") and "null" in (have + new):
        return have if "null" not in have else new
    raise SchemaMismatchError(f"{where} is {new}; earlier shards have {have}")


def _merge_stats(metas: Sequence[Mapping[str, Any]], splits: Sequence[str] | None = None) -> dict[str, Any]:
    acc: dict[str, dict[str, float]] = {}
    for meta in metas:
        if splits is not None and meta["split"] not in splits:
            continue
        for name, info in meta["arrays"].items():
            st = info["stats"]
            if not st["count"]:
                continue
            a = acc.setdefault(
                name, {"count": 0, "sum": 0.0, "sum_sq": 0.0, "min": math.inf, "max": -math.inf}
            )
            a["count"] += st["count"]
            a["sum"] += st["sum"]
            a["sum_sq"] += st["sum_sq"]
            a["min"] = min(a["min"], st["min"])
            a["max"] = max(a["max"], st["max"])
    out = {}
    for name, a in sorted(acc.items()):
        mean = a["sum"] / a["count"]
        var = max(0.0, a["sum_sq"] / a["count"] - mean * mean)
        out[name] = {
            "count": int(a["count"]),
            "mean": mean,
            "std": math.sqrt(var),
            "min": a["min"],
            "max": a["max"],
        }
    return out


def _quarantine_bytes(quarantine: Sequence[QuarantineRecord]) -> bytes:
    from manifests.writer import arrow_without_pandas_probe

    arrow_without_pandas_probe()
    ordered = sorted(quarantine, key=lambda q: (q.item_id, q.code, q.detail))
    item_col, code_col, detail_col = QUARANTINE_COLUMNS
    table = pa.table(
        {
            item_col: pa.array([q.item_id for q in ordered], type=pa.string()),
            code_col: pa.array([q.code for q in ordered], type=pa.string()),
            detail_col: pa.array([q.detail for q in ordered], type=pa.string()),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def _sweep_local_leftovers(root: str) -> list[str]:
    """Remove ``.tmp-*``/``.trash-*`` names left by killed local writes; return what was removed."""
    removed = []
    for top in (os.path.join(root, ROWS_DIR), os.path.join(root, ARRAYS_DIR)):
        if not os.path.isdir(top):
            continue
        for dirpath, dirs, files in os.walk(top):
            for name in [*dirs, *files]:
                if name.startswith((".tmp-", ".trash-")):
                    path = os.path.join(dirpath, name)
                    if os.path.isdir(path):
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        os.remove(path)
                    removed.append(path)
            dirs[:] = [d for d in dirs if not d.startswith((".tmp-", ".trash-"))]
    return removed


def _root_group_bytes() -> bytes:
    return json.dumps({"attributes": {}, "zarr_format": 3, "node_type": "group"}, indent=2).encode()


def build_manifest(
    *,
    source: str,
    version: str,
    shards: Sequence[ShardRecord],
    quarantine: Sequence[QuarantineRecord],
    items_in: int,
    info: Mapping[str, Any],
    metas: Sequence[Mapping[str, Any]],
    created_at: str,
) -> dict[str, Any]:
    """The manifest dict from checked shard records and their group metadata (pure)."""
    bad = RESERVED_KEYS & set(info)
    if bad:
        raise ValueError(f"info may not set reserved manifest keys {sorted(bad)}")
    splits: dict[str, dict[str, int]] = {}
    for rec in shards:
        s = splits.setdefault(rec.split, {"samples": 0, "shards": 0, "items": 0})
        s["samples"] += rec.samples
        s["shards"] += 1
        s["items"] += rec.items
    by_code = Counter(q.code for q in quarantine)
    storage = next((m["storage"] for m in metas if m.get("storage")), None)
    statistics = dict(info.get("statistics") or {})
    statistics["arrays"] = _merge_stats(metas)
    statistics["arrays_by_split"] = {s: _merge_stats(metas, [s]) for s in splits}
    manifest: dict[str, Any] = {
        "format_version": MANIFEST_FORMAT_VERSION,
        "source": source,
        "version": version,
        "created_at": created_at,
        "schema": _merge_schema(shards, metas),
        "splits": splits,
        "shards": [rec.model_dump(mode="json") for rec in shards],
        "counts": {
            "items_in": items_in,
            "items_published": sum(r.items for r in shards),
            "samples_out": sum(r.samples for r in shards),
            "quarantined": len(quarantine),
            "quarantined_by_code": dict(sorted(by_code.items())),
        },
        "storage": storage,
        "files": {"quarantine": QUARANTINE_FILE, "croissant": CROISSANT_FILE},
    }
    for key, value in info.items():
        manifest[key] = value
    manifest["statistics"] = statistics
    return manifest


def publish_dataset(
    dataset_url: str,
    *,
    source: str,
    version: str,
    shards: Sequence[ShardRecord],
    quarantine: Sequence[QuarantineRecord],
    items_in: int,
    info: dict,
    quarantine_max_fraction: float,
    storage_options: dict | None = None,
) -> dict:
    """Merge shard records into ``manifest.json`` and publish the dataset (manifest written last).

    Args:
        dataset_url: the dataset root, any fsspec URL.
        source: source id (``"ptbxl"``).
        version: the build version (changes when inputs, config or code change).
        shards: every shard's :class:`~manifests.schema.ShardRecord` (any order).
        quarantine: every quarantined item.
        items_in: items the index produced for this build.
        info: manifest blocks written verbatim at the top level: ``title``, ``licence``,
            ``modality``, ``canonical``, ``labels``, ``split_policy``, ``deid`` (report),
            ``provenance`` (source checksums / fetch log, code version, config hash), and
            optionally ``statistics`` (merged with the per-array statistics computed here from
            the shards: count, mean, std, min, max over every element, overall and per split).
        quarantine_max_fraction: the largest allowed ``len(quarantine) / items_in``.
        storage_options: fsspec options.

    Returns:
        The manifest dict, as written.

    Raises:
        CountMismatchError: counts do not add up, a shard is listed twice, or a listed file is
            missing or has another size. Nothing is written.
        QuarantineThresholdError: too many items quarantined; ``quarantine.parquet`` is written
            (to inspect), ``manifest.json`` is not.
        SchemaMismatchError: shards disagree on array dtypes/ranks or column types.
    """
    records = _check_records(shards)
    published = sum(r.items for r in records)
    if items_in != published + len(quarantine):
        raise CountMismatchError(
            f"{source} {version}: items_in={items_in} but published {published} + quarantined "
            f"{len(quarantine)} = {published + len(quarantine)}"
        )
    fs, root = filesystem_for(dataset_url, storage_options)
    _check_files_present(fs, root, records)
    metas = _read_shard_metadata(fs, root, records)
    quarantine_bytes = _quarantine_bytes(quarantine)
    _write_bytes(fs, root, QUARANTINE_FILE, quarantine_bytes)
    fraction = len(quarantine) / items_in if items_in else 0.0
    if fraction > quarantine_max_fraction:
        codes = Counter(q.code for q in quarantine).most_common(5)
        raise QuarantineThresholdError(
            f"{source} {version}: {len(quarantine)} of {items_in} items quarantined "
            f"({fraction:.2%} > {quarantine_max_fraction:.2%}); most common reasons: {codes}; "
            f"see {dataset_url.rstrip('/')}/{QUARANTINE_FILE}. The dataset was not published."
        )
    manifest = build_manifest(
        source=source,
        version=version,
        shards=records,
        quarantine=quarantine,
        items_in=items_in,
        info=info,
        metas=metas,
        created_at=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
    )
    if is_local(fs):
        _sweep_local_leftovers(root)
    for split in manifest["splits"]:
        _write_bytes(fs, root, f"{ARRAYS_DIR}/{split}.zarr/zarr.json", _root_group_bytes())
    from manifests.croissant import build_croissant

    croissant = build_croissant(manifest, quarantine_sha256=hashlib.sha256(quarantine_bytes).hexdigest())
    _write_bytes(fs, root, CROISSANT_FILE, (json.dumps(croissant, indent=1) + "\n").encode())
    if is_local(fs):
        # The durability barrier: shard files are written without a flush each (see
        # manifests/writer.py); everything reaches the disk here, before the manifest that makes
        # the dataset exist. A power cut earlier leaves no manifest, and a rerun re-hashes every
        # shard against its done record and rewrites any that came back torn.
        os.sync()
    _write_bytes(fs, root, MANIFEST_FILE, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    return manifest
