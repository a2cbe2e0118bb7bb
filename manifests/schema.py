"""The data contract: typed source manifests, built-dataset layout names, samples and shard records.

This is the only module that spells out file names, column names and split names
(MEDS ``schema.py`` style). Source manifests (``manifests/sources/<id>.yaml``) are parsed
into :class:`SourceManifest`; a malformed file fails with the file and field named.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# ---------------------------------------------------------------------------------------------
# Names used on disk and in tables
# ---------------------------------------------------------------------------------------------

TRAIN, VAL, TEST = "train", "val", "test"
SPLITS: tuple[str, ...] = (TRAIN, VAL, TEST)

MANIFEST_FILE = "manifest.json"
CROISSANT_FILE = "croissant.json"
QUARANTINE_FILE = "quarantine.parquet"
ROWS_DIR = "rows"
ARRAYS_DIR = "arrays"
SHARD_DONE_SUFFIX = ".done.json"

#: Columns every rows/ Parquet file has (more may follow: labels and per-source metadata).
COL_SAMPLE_ID = "sample_id"  # stable, unique, pseudonymous sample key
COL_SUBJECT_ID = "subject_id"  # pseudonymous subject id
COL_SOURCE = "source"
COL_SPLIT = "split"
COL_SHARD = "shard"  # shard index within the split
COL_OFFSET = "offset"  # position of the sample within its shard

#: Columns of quarantine.parquet.
QUARANTINE_COLUMNS = ("item_id", "code", "detail")

SOURCES_DIR = Path(__file__).resolve().parent / "sources"

Group = Literal["1d", "2d", "3d", "multimodal", "graph"]
AccessKind = Literal[
    "open",  # anonymous HTTPS
    "credentialed",  # account + data use agreement (PhysioNet credentialed, restricted)
    "registration",  # free account / licence click-through
    "competition",  # Kaggle competition: rules must be accepted
    "application",  # application-only: the user downloads by hand into --manual-dir
]
HostKind = Literal[
    "physionet",
    "kaggle",
    "kaggle_competition",
    "tcia",
    "https",
    "zenodo",
    "figshare",
    "mendeley",
    "github",
    "gdrive",
    "huggingface",
    "s3",
    "gcs",
    "azure",
    "ftp",
    "manual",
]
SplitPolicy = Literal["subject_hash", "official", "climb_published"]


# ---------------------------------------------------------------------------------------------
# Source manifests
# ---------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HostSpec(_Strict):
    """Where the raw release lives and how it is reached.

    ``url`` is the real host's base URL; ``--endpoint KIND=URL`` (or ``CLIMB_ENDPOINT_<KIND>``)
    overrides it for mirrors and tests. ``checksums`` names the host-published checksum list
    (PhysioNet ``SHA256SUMS.txt``) or is ``null`` when the catalog pins its own
    ``<id>.checksums.tsv``.
    """

    kind: HostKind
    access: AccessKind
    url: str | None = None
    dataset: str | None = None  # Kaggle "owner/slug", competition name, TCIA collection, HF repo id
    checksums: str | None = None
    agreement: str | None = None  # the licence / DUA a user must accept first, by name or URL


class LayoutSpec(_Strict):
    """How records sit in the raw release."""

    records: str  # glob, relative to the raw root, that finds one file per item
    format: str  # reader name: "cinc_mat", "wfdb", "cpsc2018_mat", "dicom", "jpeg", ...
    extra: dict[str, Any] = Field(default_factory=dict)


class LabelSpec(_Strict):
    kind: Literal["multiclass", "multilabel", "binary", "regression", "ordinal", "none", "other"]
    classes: list[str] = Field(default_factory=list)
    vocabulary: str | None = None  # e.g. "snomed_ct"
    superclasses: str | None = None  # e.g. "climb_ecg_7"
    notes: str | None = None


class SplitSpec(_Strict):
    policy: SplitPolicy = "subject_hash"
    table: str | None = None  # file under shared/reference (climb_published) or in the release (official)
    fractions: dict[str, float] = Field(default_factory=lambda: {TRAIN: 0.8, VAL: 0.1, TEST: 0.1})

    @field_validator("fractions")
    @classmethod
    def _fractions_sum_to_one(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = set(value) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown split names {sorted(unknown)}; allowed: {list(SPLITS)}")
        if abs(sum(value.values()) - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1, got {sum(value.values())}")
        return value


class DeidSpec(_Strict):
    namespace: str


class ExpectedSpec(_Strict):
    """Counts CLIMB reports: to check a full build against, not to trust."""

    items: int | None = None
    splits: dict[str, int] = Field(default_factory=dict)
    size_bytes: int | None = None
    notes: str | None = None


class SourceManifest(_Strict):
    """One CLIMB dataset: what it is, where it lives, how it becomes samples."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str
    manifest_version: int = 1
    group: Group
    modality: str
    host: HostSpec
    manual_instructions: str | None = None
    licence: str
    citation: str | None = None
    raw_formats: list[str] = Field(default_factory=list)
    layout: LayoutSpec | None = None
    labels: LabelSpec
    split: SplitSpec = Field(default_factory=SplitSpec)
    canonical: dict[str, Any] = Field(default_factory=dict)
    deid: DeidSpec
    expected: ExpectedSpec = Field(default_factory=ExpectedSpec)
    quarantine_max_fraction: float = Field(0.01, ge=0.0, le=1.0)
    status: Literal["implemented", "planned"] = "planned"
    climb_notes: list[str] = Field(default_factory=list)  # where CLIMB's facts or code are wrong

    def content_hash(self) -> str:
        """sha256 of the manifest's canonical JSON: part of every build's version."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()


class ManifestError(ValueError):
    """A source manifest is missing or malformed; the message names the file and field."""


def load_source_manifest(path_or_id: str | Path) -> SourceManifest:
    """Load and validate one source manifest, by id (``"ptbxl"``) or by path.

    Raises:
        ManifestError: unknown id, unreadable YAML, or a field that fails validation
            (the message names the file and each bad field).
    """
    path = Path(path_or_id)
    if path.suffix not in (".yaml", ".yml"):
        path = SOURCES_DIR / f"{path_or_id}.yaml"
        if not path.exists():
            known = ", ".join(sorted(p.stem for p in SOURCES_DIR.glob("*.yaml")))
            raise ManifestError(f"unknown source {str(path_or_id)!r}; known sources: {known}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        manifest = SourceManifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise ManifestError(f"{path}: invalid source manifest: {problems}") from None
    if manifest.id != path.stem:
        raise ManifestError(f"{path}: id {manifest.id!r} does not match the file name {path.stem!r}")
    return manifest


def load_catalog(directory: Path = SOURCES_DIR) -> dict[str, SourceManifest]:
    """Every source manifest in ``directory``, by id, sorted."""
    return {p.stem: load_source_manifest(p) for p in sorted(directory.glob("*.yaml"))}


# ---------------------------------------------------------------------------------------------
# Samples and what the writer returns
# ---------------------------------------------------------------------------------------------


@dataclass
class Sample:
    """One de-identified, validated sample, ready for the writer.

    Attributes:
        sample_id: stable, unique, pseudonymous key; shard order and reader order depend on it.
        subject_id: pseudonymous subject id.
        split: one of :data:`SPLITS`.
        arrays: named arrays (e.g. ``{"signal": int16 (12, 5000), "lead_mask": bool (12,)}``);
            the same names, dtypes and ranks for every sample of a source.
        row: Parquet columns beside the ids: labels and metadata. Values are JSON-able scalars
            or lists of scalars. Never identifiers.
    """

    sample_id: str
    subject_id: str
    split: str
    arrays: dict[str, np.ndarray]
    row: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QuarantineRecord:
    """An item that did not become samples, and why. ``item_id`` is pseudonymous."""

    item_id: str
    code: str
    detail: str


class ShardRecord(BaseModel):
    """What ``run_shard`` wrote for one (split, shard) and what the manifest lists."""

    model_config = ConfigDict(extra="forbid")

    split: str
    index: int
    samples: int
    files: dict[str, str]  # role -> path relative to the dataset root
    bytes: dict[str, int]  # path -> size in bytes
    sha256: dict[str, str]  # path -> hex digest
    items: int = 0
    quarantined: int = 0
    # Filled by the write stage for the build's bookkeeping (done records); not part of the
    # published shard listing: ``publish_fields()`` drops them.
    quarantine: list[dict[str, str]] = Field(default_factory=list)
    deid_actions: dict[str, int] = Field(default_factory=dict)
    seconds: float = 0.0
    skipped: bool = False

    def publish_fields(self) -> ShardRecord:
        """This record without the build-only bookkeeping (what ``manifest.json`` lists)."""
        return self.model_copy(
            update={"quarantine": [], "deid_actions": {}, "seconds": 0.0, "skipped": False}
        )
