"""Transform stage: a factory that returns the pure per-item function of a source.

``make_item_fn(manifest, key)`` composes read -> canonicalise -> de-identify -> validate for the
source's modality (MEDS stage-factory pattern). The returned callable is a
``functools.partial`` of a module-level function, so it pickles for Dask and Beam workers,
and it does no I/O but reading the item's own raw files.

An item gives either samples or one quarantine record: when any window of a record fails
validation the whole item is quarantined, so a record is never half-published.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from manifests.schema import QuarantineRecord, Sample, SourceManifest
from pipelines.stages.plan import Item
from transforms.problems import ItemError, Problem
from transforms.pseudonyms import DeidKey, derive_subject_keys, pseudonymise_id

log = logging.getLogger(__name__)


@dataclass
class ItemResult:
    """Samples of one item, or the reason it was quarantined; plus de-identification actions."""

    samples: list[Sample] = field(default_factory=list)
    quarantine: QuarantineRecord | None = None
    deid_actions: Counter[str] = field(default_factory=Counter)


ItemFn = Callable[[Item], ItemResult]


def _quarantine(item: Item, problems: list[Problem], path: str | None = None) -> ItemResult:
    first = problems[0]
    detail = "; ".join(p.detail for p in problems)
    # The raw path is logged locally, for the operator; the output row holds only the key.
    log.warning("quarantined %s (%s): %s", path or item.item_id, first.code, detail)
    return ItemResult(quarantine=QuarantineRecord(item_id=item.item_key, code=first.code, detail=detail))


def process_ecg_item(
    item: Item, *, source: str, namespace: str, key: DeidKey, spec: Any, classes: tuple[str, ...]
) -> ItemResult:
    """Read, canonicalise, de-identify and validate one ECG record.

    Args:
        item: the indexed record; ``item.paths[0]`` is a ``.hea`` header or a CPSC2018 ``.mat``.
        source: source id, written to each row.
        namespace: de-identification namespace.
        key: the de-identification key.
        spec: the :class:`transforms.ecg.EcgSpec`.
        classes: the label set (CLIMB's 7 superclasses, in order).

    Returns:
        One sample per 10 s window (``signal`` int16 µV (12, 5000), ``lead_mask`` bool (12,)),
        or a quarantine record naming the first problem.
    """
    from transforms.ecg import canonicalise, deidentify, read_cpsc2018_mat, read_wfdb_record, validate
    from transforms.ecg.labels import normalise_codes, superclasses_for

    path = item.paths[0]
    try:
        raw = read_wfdb_record(path) if path.endswith(".hea") else read_cpsc2018_mat(path)
        if not raw.dx_codes and item.labels.get("dx_codes"):
            raw.dx_codes = list(item.labels["dx_codes"])
        windows = canonicalise(raw, spec)
    except ItemError as exc:
        return _quarantine(item, [exc.problem], path)
    except Exception as exc:  # a reader bug must not stop the build; it is quarantined and logged
        log.exception("unexpected error reading %s", path)
        return _quarantine(
            item, [Problem("read_error", f"unexpected {type(exc).__name__} while reading")], path
        )
    if not windows:
        return _quarantine(item, [Problem("no_windows", "record shorter than the minimum window")], path)

    keys = derive_subject_keys(key, namespace, item.subject_id)
    record_pseudonym = pseudonymise_id(key, namespace, "record", item.item_id)
    codes = normalise_codes(windows[0].dx_codes)
    if "climb_superclasses" in item.labels:
        superclasses = np.asarray(item.labels["climb_superclasses"], dtype=np.int8)
        climb_label = int(item.labels["climb_label"])
    else:
        superclasses = np.asarray(superclasses_for(codes), dtype=np.int8)
        climb_label = -1
    result = ItemResult()
    problems: list[Problem] = []
    for window in windows:
        clean, actions = deidentify(window, keys, record_pseudonym)
        result.deid_actions.update(actions)
        problems.extend(validate(clean, spec))
        start = clean.start_datetime
        result.samples.append(
            Sample(
                sample_id=f"{item.item_key}-w{clean.window_index:03d}",
                subject_id=keys.pseudonym,
                split=item.split,
                arrays={"signal": clean.signal, "lead_mask": clean.lead_mask},
                row={
                    "record_id": record_pseudonym,
                    "age_years": clean.age_years,
                    "sex": clean.sex,
                    "dx_codes": list(codes),
                    "superclasses": [int(v) for v in superclasses],
                    "climb_label": climb_label,
                    "window_index": clean.window_index,
                    "n_windows": clean.n_windows,
                    "window_start_s": float(clean.window_start_s),
                    "record_duration_s": float(clean.record_duration_s),
                    "source_fs_hz": float(clean.source_fs_hz),
                    "start_datetime": start.isoformat() if start is not None else None,
                },
            )
        )
    if problems:
        return _quarantine(item, problems, path)
    return result


def make_ecg_item_fn(manifest: SourceManifest, key: DeidKey) -> ItemFn:
    from transforms.ecg import EcgSpec

    return functools.partial(
        process_ecg_item,
        source=manifest.id,
        namespace=manifest.deid.namespace,
        key=key,
        spec=EcgSpec.from_manifest(manifest.canonical),
        classes=tuple(manifest.labels.classes),
    )


def ecg_spec_dict(manifest: SourceManifest) -> dict[str, Any]:
    from transforms.ecg import EcgSpec

    return EcgSpec.from_manifest(manifest.canonical).to_dict()


#: layout.format -> (item-function factory, canonical-spec recorder), as ``"module:function"``.
#: A factory takes (manifest, key) and returns a picklable ``Item -> ItemResult``.
ITEM_FUNCTIONS: dict[str, tuple[str, str]] = {
    "cinc_mat": ("pipelines.stages.transform:make_ecg_item_fn", "pipelines.stages.transform:ecg_spec_dict"),
    "wfdb": ("pipelines.stages.transform:make_ecg_item_fn", "pipelines.stages.transform:ecg_spec_dict"),
    "dicom": (
        "pipelines.stages.image2d_source:make_image2d_item_fn",
        "pipelines.stages.image2d_source:image2d_spec_dict",
    ),
    "jpeg": (
        "pipelines.stages.image2d_source:make_image2d_item_fn",
        "pipelines.stages.image2d_source:image2d_spec_dict",
    ),
    "image": (
        "pipelines.stages.image2d_source:make_image2d_item_fn",
        "pipelines.stages.image2d_source:image2d_spec_dict",
    ),
}


_ECG_DEID = (
    "keyed HMAC-SHA256 pseudonyms and per-patient date offsets (whole weeks, 1-10 years back); "
    "header comments reduced to age (capped at 90), sex and diagnosis codes; record names replaced"
)
#: layout.format -> one sentence on what de-identification did, for the built manifest.
_DICOM_DEID = (
    "PS3.15 Basic Application Level Confidentiality Profile (Table E.1-1 at every sequence depth): "
    "keyed 2.25 UIDs, per-patient date offsets, private tags removed, burned-in text masked or "
    "quarantined; only pixels and a few coded header fields reach the output"
)
_IMAGE_DEID = "pixels only: EXIF, ICC and text chunks dropped; raw file names replaced by keyed pseudonyms"
DEID_METHODS: dict[str, str] = {
    "cinc_mat": _ECG_DEID,
    "wfdb": _ECG_DEID,
    "dicom": _DICOM_DEID,
    "jpeg": _IMAGE_DEID,
    "image": _IMAGE_DEID,
}


def _entry(manifest: SourceManifest) -> tuple[str, str]:
    fmt = manifest.layout.format if manifest.layout else None
    if fmt not in ITEM_FUNCTIONS:
        raise NotImplementedError(
            f"source {manifest.id}: no transform for format {fmt!r} yet (status: {manifest.status})"
        )
    return ITEM_FUNCTIONS[fmt]


def make_item_fn(manifest: SourceManifest, key: DeidKey) -> ItemFn:
    """The pure per-item function of a source (picklable ``functools.partial``).

    Raises:
        NotImplementedError: the source's format has no transform yet.
    """
    from pipelines.stages.index import resolve

    return resolve(_entry(manifest)[0])(manifest, key)


def canonical_spec_dict(manifest: SourceManifest) -> dict[str, Any]:
    """The canonical spec actually applied, as recorded in the built manifest."""
    from pipelines.stages.index import resolve

    return resolve(_entry(manifest)[1])(manifest)
