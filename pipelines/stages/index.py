"""Index stage: raw files + source manifest -> items with splits -> shard plans.

A pure function of the raw folder and the manifest (no network, no writes). Splits are
patient-level and deterministic:

* ``subject_hash`` (default): a keyed hash of the subject id picks the split by the
  manifest's fractions. The key is public (``climb-split`` + the source namespace), not the
  de-identification secret, so two sites with different secrets get the same split.
* ``climb_published``: CLIMB's frozen label/split table (``shared/reference``, shipped in
  ``transforms/ecg/data``); records outside the table are left out of the build and counted.
* ``official``: the release's own split file (2D sources).

Shards are contiguous runs of items sorted by their pseudonymous ``item_key`` (an HMAC, so
this is a keyed-hash assignment with equal shard sizes).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from manifests.schema import SPLITS, SourceManifest
from pipelines.stages.plan import Item, ShardPlan
from transforms.pseudonyms import DeidKey, pseudonymise_id

log = logging.getLogger(__name__)

#: CPSC2018 original-release classes (REFERENCE.csv, 1..9) as SNOMED CT codes, the codes the
#: CinC 2020/2021 re-packaging of the same records uses.
CPSC2018_CLASS_SNOMED = {
    "1": "426783006",  # Normal (sinus rhythm)
    "2": "164889003",  # AF
    "3": "270492004",  # I-AVB
    "4": "164909002",  # LBBB
    "5": "59118001",  # RBBB
    "6": "284470004",  # PAC
    "7": "164884008",  # PVC (CinC: ventricular ectopics)
    "8": "429622005",  # STD
    "9": "164931005",  # STE
}


class RawFolderError(ValueError):
    """The raw folder does not hold what the source manifest describes."""


@dataclass
class IndexResult:
    """Items of a source and what the index left out (with reasons, counted)."""

    items: list[Item]
    skipped: Counter[str] = field(default_factory=Counter)
    #: Files other than the items' own that shaped the index (label and patient tables): part of
    #: the input fingerprint, so editing one gives a new version.
    tables: list[str] = field(default_factory=list)

    def by_split(self) -> dict[str, list[Item]]:
        out: dict[str, list[Item]] = {}
        for item in self.items:
            out.setdefault(item.split, []).append(item)
        return out


def split_for_subject(subject_id: str, namespace: str, fractions: dict[str, float]) -> str:
    """Deterministic patient-level split from a keyed hash of the subject id.

    Args:
        subject_id: the raw subject id (never written anywhere).
        namespace: the source's de-identification namespace (part of the public key).
        fractions: split name -> fraction, summing to 1, in :data:`SPLITS` order.

    >>> split_for_subject("p1", "ptbxl", {"train": 1.0})
    'train'
    >>> split_for_subject("p1", "ptbxl", {"train": .8, "val": .1, "test": .1}) in SPLITS
    True
    """
    digest = hmac.digest(f"climb-split:{namespace}".encode(), subject_id.encode(), "sha256")
    position = int.from_bytes(digest[:8], "big") / 2**64
    cumulative = 0.0
    ordered = [s for s in SPLITS if s in fractions]
    for name in ordered:
        cumulative += fractions[name]
        if position < cumulative:
            return name
    return ordered[-1]


def _scan(raw_dir: Path, pattern: str) -> list[Path]:
    """Files under ``raw_dir`` matching a glob (``**`` recursive), sorted, hidden/partial files skipped."""
    head, _, name_glob = pattern.rpartition("/")
    if head == "**" and "*" in name_glob and "/" not in name_glob and "**" not in name_glob:
        names = _walk_matching(str(raw_dir), name_glob)  # the common "**/*.hea": no pathlib per entry
        return [Path(raw_dir, *parts) for parts in sorted(names)]
    found = [
        p
        for p in raw_dir.glob(pattern)
        if not p.name.startswith(".") and not p.name.endswith((".part", ".tmp")) and os.path.isfile(p)
    ]
    return sorted(found, key=lambda p: p.parts)  # Path order on POSIX, without Path.__lt__ per comparison


def _walk_matching(root: str, name_glob: str) -> list[tuple[str, ...]]:
    """Relative parts of every file under ``root`` (any depth) whose name matches ``name_glob``.

    As ``Path(root).glob("**/" + name_glob)`` then the filters of :func:`_scan`: case-sensitive
    names, hidden folders entered but not symlinked ones, entries that are not files (after
    following links) left out; but one ``scandir`` per folder and no ``stat`` per regular file.
    """
    import fnmatch

    match = re.compile(fnmatch.translate(name_glob)).match
    found: list[tuple[str, ...]] = []
    stack: list[tuple[str, tuple[str, ...]]] = [(root, ())]
    while stack:
        folder, rel = stack.pop()
        try:
            listing = os.scandir(folder)
        except OSError:  # unreadable or vanished folder: pathlib's glob skips it too
            continue
        with listing:
            for entry in listing:
                name = entry.name
                try:
                    if entry.is_dir():
                        if not entry.is_symlink():  # pathlib's ** (3.11) does not follow folder links
                            stack.append((entry.path, (*rel, name)))
                    elif (
                        match(name)
                        and not name.startswith(".")
                        and not name.endswith((".part", ".tmp"))
                        and entry.is_file()
                    ):
                        found.append((*rel, name))
                except OSError:
                    continue
    return found


def _read_cpsc_reference(raw_dir: Path, name: str) -> tuple[dict[str, list[str]], list[str]]:
    """REFERENCE.csv of the original CPSC2018 release: record -> SNOMED codes (first..third label); the files read."""
    labels: dict[str, list[str]] = {}
    paths = _scan(raw_dir, f"**/{name}")
    for path in paths:
        with path.open(newline="") as fh:
            for row in csv.reader(fh):
                if not row or not row[0] or row[0].lower() == "recording":
                    continue
                codes = [
                    CPSC2018_CLASS_SNOMED[c.strip()] for c in row[1:] if c.strip() in CPSC2018_CLASS_SNOMED
                ]
                labels[row[0].strip()] = codes
    return labels, [str(p) for p in paths]


def _load_published_table(manifest: SourceManifest) -> dict[str, dict[str, Any]]:
    from transforms.ecg.labels import load_climb_table

    if not manifest.split.table:
        raise RawFolderError(f"source {manifest.id}: split policy climb_published needs split.table")
    return load_climb_table(manifest.split.table)


def _read_subject_table(manifest: SourceManifest, raw_dir: Path) -> tuple[dict[str, str], list[str]]:
    """Record name -> patient id from the source's own metadata table, when the release has it; and the tables read.

    Configured by ``layout.extra.subject_table`` (``file``, ``record_column``,
    ``subject_column``, ``record_name`` format for the record column's integer value). PTB-XL's
    ``ptbxl_database.csv`` gives ``patient_id`` per ``ecg_id``: 21,799 records of 18,869 patients.

    Raises:
        RawFolderError: the table exists but lacks a configured column, or names one record twice
            with different patients.
    """
    spec = manifest.layout.extra.get("subject_table") if manifest.layout else None
    if not spec:
        return {}, []
    tables = _scan(raw_dir, f"**/{spec['file']}")
    subjects: dict[str, str] = {}
    for path in tables:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {spec["record_column"], spec["subject_column"]} - set(reader.fieldnames or ())
            if missing:
                raise RawFolderError(f"{path}: no column {', '.join(sorted(missing))} for patient ids")
            for line, row in enumerate(reader, start=2):
                try:
                    record = spec["record_name"].format(int(float(row[spec["record_column"]])))
                    subject = str(int(float(row[spec["subject_column"]])))
                except (TypeError, ValueError):
                    raise RawFolderError(
                        f"{path}, line {line}: record or patient id is not a number"
                    ) from None
                if subjects.setdefault(record, subject) != subject:
                    raise RawFolderError(f"{path}: record {record} is listed for two different patients")
    return subjects, [str(p) for p in tables]


def index_ecg_source(manifest: SourceManifest, raw_dir: Path, key: DeidKey) -> IndexResult:
    """Items of a CinC-packaged ECG source (``.hea`` + ``.mat``), or the original CPSC2018 release.

    CinC headers carry no patient id. Where the source's own metadata table is in the raw
    folder (``layout.extra.subject_table``: PTB-XL's ``ptbxl_database.csv``), records are
    grouped by patient, so every record of a patient lands in one split; otherwise each record
    stands for its own subject (Georgia, Chapman-Shaoxing and CPSC2018 are one recording per
    patient; PTB-XL without its table is the documented limit of the CinC packaging).
    """
    if manifest.layout is None:
        raise RawFolderError(f"source {manifest.id}: the manifest has no layout")
    namespace = manifest.deid.namespace
    headers = _scan(raw_dir, manifest.layout.records)
    entries: list[tuple[str, tuple[str, ...], dict[str, Any]]] = [(p.stem, (str(p),), {}) for p in headers]
    original = manifest.layout.extra.get("original_release")
    reference_tables: list[str] = []
    if original:
        reference, reference_tables = _read_cpsc_reference(
            raw_dir, original.get("reference", "REFERENCE.csv")
        )
        header_stems = {p.stem for p in headers}
        for mat in _scan(raw_dir, original["records"]):
            # A .mat with a sibling .hea is the CinC packaging, already indexed above.
            if mat.with_suffix(".hea").exists() or mat.stem in header_stems:
                continue
            entries.append((mat.stem, (str(mat),), {"dx_codes": reference.get(mat.stem, [])}))
    if not entries:
        raise RawFolderError(
            f"source {manifest.id}: no records matching {manifest.layout.records!r} under {raw_dir}; "
            f"run `climb fetch {manifest.id}` or point --raw-dir at the release folder"
        )
    seen: dict[str, str] = {}
    skipped: Counter[str] = Counter()
    table = _load_published_table(manifest) if manifest.split.policy == "climb_published" else None
    subjects, subject_tables = _read_subject_table(manifest, raw_dir)
    items: list[Item] = []
    for record, paths, labels in entries:
        if record in seen:
            # Two files claim one record id: a stable key must be unique (TFDS rule).
            raise RawFolderError(
                f"source {manifest.id}: record {record} appears twice: {seen[record]} and {paths[0]}"
            )
        seen[record] = paths[0]
        subject = subjects.get(record, record)
        if table is not None:
            row = table.get(record)
            if row is None:
                skipped["not_in_published_table"] += 1
                continue
            split = row["split"]
            labels = {**labels, "climb_superclasses": list(row["superclasses"]), "climb_label": row["label"]}
        else:
            split = split_for_subject(subject, namespace, manifest.split.fractions)
        items.append(
            Item(
                item_id=record,
                subject_id=subject,
                paths=paths,
                split=split,
                item_key=pseudonymise_id(key, namespace, "item", record),
                labels=labels,
            )
        )
    return IndexResult(items=items, skipped=skipped, tables=reference_tables + subject_tables)


#: layout.format -> indexer, as ``"module:function"`` (imported on use, so a modality's
#: dependencies load only when one of its sources is built). New modalities register here.
INDEXERS: dict[str, str] = {
    "cinc_mat": "pipelines.stages.index:index_ecg_source",
    "wfdb": "pipelines.stages.index:index_ecg_source",
    "dicom": "pipelines.stages.image2d_source:index_image2d_source",
    "jpeg": "pipelines.stages.image2d_source:index_image2d_source",
    "image": "pipelines.stages.image2d_source:index_image2d_source",
}


def resolve(ref: str) -> Any:
    """Import ``"package.module:attribute"``."""
    import importlib

    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


def index_source(manifest: SourceManifest, raw_dir: str | os.PathLike[str], key: DeidKey) -> IndexResult:
    """Index a raw release folder into items with splits.

    Raises:
        RawFolderError: the folder is missing, empty for this source, or has duplicate ids.
        NotImplementedError: the source's format has no indexer yet.
    """
    root = Path(raw_dir)
    if not root.is_dir():
        raise RawFolderError(f"raw folder {root} does not exist")
    if manifest.layout is None or manifest.layout.format not in INDEXERS:
        fmt = manifest.layout.format if manifest.layout else None
        raise NotImplementedError(
            f"source {manifest.id}: no indexer for format {fmt!r} yet (status: {manifest.status})"
        )
    return resolve(INDEXERS[manifest.layout.format])(manifest, root, key)


def plan_shards(items: Iterable[Item], items_per_shard: int) -> list[ShardPlan]:
    """Group items into shard plans: per split, sorted by ``item_key``, contiguous runs.

    Args:
        items: indexed items.
        items_per_shard: at most this many items per shard (> 0).

    Returns:
        Plans sorted by (split order of :data:`SPLITS`, index).
    """
    if items_per_shard <= 0:
        raise ValueError(f"items_per_shard must be positive, got {items_per_shard}")
    by_split: dict[str, list[Item]] = {}
    for item in items:
        by_split.setdefault(item.split, []).append(item)
    plans: list[ShardPlan] = []
    for split in sorted(by_split, key=lambda s: (SPLITS.index(s) if s in SPLITS else len(SPLITS), s)):
        ordered = sorted(by_split[split], key=lambda it: it.item_key)
        for index, start in enumerate(range(0, len(ordered), items_per_shard)):
            plans.append(
                ShardPlan(split=split, index=index, items=tuple(ordered[start : start + items_per_shard]))
            )
    return plans


def fingerprint_inputs(paths: Sequence[str], raw_dir: str | os.PathLike[str]) -> str:
    """sha256 over (relative path, size, mtime_ns) of every input file: cheap change detection.

    Each entry path brings its siblings with the same stem (a ``.hea`` brings its ``.mat`` or
    ``.dat`` files). Each folder is listed once, so the cost is one ``stat`` per file.
    A verified fetch log (sha256 per file) is the stronger fingerprint and is part of the
    version when present; this stat-based one catches edits, additions and removals.
    """
    # Lexical paths (no realpath per file: that is ~10 lstat calls each on a 100k-file release).
    root = os.path.abspath(raw_dir)
    stems_by_dir: dict[str, set[str]] = {}
    for path in paths:
        folder, name = os.path.split(os.path.abspath(path))
        stems_by_dir.setdefault(folder, set()).add(os.path.splitext(name)[0])
    entries: list[str] = []
    for folder, stems in stems_by_dir.items():
        prefix = os.path.relpath(folder, root)
        prefix = "" if prefix == "." else prefix + os.sep
        with os.scandir(folder) as listing:
            for entry in listing:
                stem = entry.name.split(".", 1)[0]
                if stem in stems and entry.is_file() and not entry.name.endswith((".part", ".tmp")):
                    stat = entry.stat()
                    entries.append(f"{prefix}{entry.name}\x00{stat.st_size}\x00{stat.st_mtime_ns}\n")
    digest = hashlib.sha256()
    for line in sorted(entries):
        digest.update(line.encode())
    return digest.hexdigest()
