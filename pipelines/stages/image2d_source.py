"""2D radiology sources (DICOM, JPEG, PNG): index, per-item transform and canonical spec.

Registered in :data:`pipelines.stages.index.INDEXERS` and
:data:`pipelines.stages.transform.ITEM_FUNCTIONS` for the formats ``dicom``, ``jpeg`` and
``image``.

* :func:`index_image2d_source`: per-source label and split readers
  (:data:`pipelines.stages.image2d_labels.LABEL_READERS`); official splits where the release
  has them, else a patient-level keyed hash (:func:`pipelines.stages.index.split_for_subject`).
* :func:`process_image2d_item`: read -> (DICOM: PS3.15 de-identification, then pixels from the
  de-identified dataset only) -> canonicalise -> validate -> pad. No DICOM header reaches the
  output except :data:`DICOM_ROW_FIELDS` (coded, non-identifying values, checked against the
  Code String character set); JPEG/PNG containers give pixels only (EXIF and text chunks
  dropped by the reader).

The array shape policy: every sample of a source is ``size x size`` (``size`` =
``canonical.long_side_px``): the long side is resized to ``size`` with the aspect kept, and the
image is placed at the top-left corner of a zero canvas. ``valid_rows``/``valid_cols`` in the
row give the image's extent, so a loader can crop or mask the padding. Fixed shapes keep the
Zarr arrays dense (no ragged offsets) and batches stackable. Grey images are uint16 ``(S, S)``
(or uint8 when the manifest's ``canonical.dtype`` is uint8, as for the 8-bit JPEG releases;
a wider input is then scaled to 0..255 and ``max_value`` says 255); colour images uint8
``(S, S, 3)``. Colour files in a grey source become grey by ITU-R BT.601 luma. Images smaller
than ``size`` are upscaled (Lanczos), so every sample fills its canvas along its long side.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from manifests.schema import QuarantineRecord, Sample, SourceManifest
from pipelines.stages.image2d_labels import LABEL_READERS, LabelFileError
from pipelines.stages.index import IndexResult, RawFolderError, split_for_subject
from pipelines.stages.plan import Item
from pipelines.stages.transform import ItemFn, ItemResult
from transforms.problems import ItemError, Problem
from transforms.pseudonyms import DeidKey, derive_subject_keys, pseudonymise_id

log = logging.getLogger(__name__)

#: DICOM attributes copied to the row (after de-identification): coded values only.
DICOM_ROW_FIELDS = {
    "Modality": "modality",
    "ViewPosition": "view_position",
    "ImageLaterality": "laterality",
    "PhotometricInterpretation": "photometric_interpretation",
}
#: Code String (VR CS) characters, PS3.5 Table 6.2-1: anything else is not copied.
_CODE_STRING = re.compile(r"^[A-Z0-9 _]{1,16}$")
#: ITU-R BT.601 luma weights, for colour images in grey sources.
_LUMA = np.array([0.299, 0.587, 0.114])
#: What JPEG/PNG de-identification does (counted once per image in the report).
ACTION_CONTAINER_METADATA = "X:container_metadata"


# --------------------------------------------------------------------------- settings


def image2d_settings(manifest: SourceManifest) -> dict[str, Any]:
    """The canonical settings a source's manifest asks for, with defaults filled in.

    Keys: ``size_px`` (long side and canvas size, default 1024), ``colour`` (``grey``/``rgb``),
    ``dtype`` (grey images: ``uint16`` default, ``uint8`` for 8-bit releases), ``apply_voi``,
    ``burned_in`` (a :class:`transforms.dicom.BurnedInPolicy` dict; default quarantine),
    ``dicom_options`` (PS3.15 options; default the engine's).

    Raises:
        ValueError: an unknown colour or dtype.
    """
    from transforms.dicom import DEFAULT_OPTIONS, BurnedInPolicy

    canonical = manifest.canonical
    colour = str(canonical.get("colour", "grey"))
    if colour not in ("grey", "rgb"):
        raise ValueError(f"source {manifest.id}: canonical.colour must be grey or rgb, got {colour!r}")
    dtype = str(canonical.get("dtype", "uint16" if colour == "grey" else "uint8"))
    if colour == "grey" and dtype not in ("uint16", "uint8"):
        raise ValueError(f"source {manifest.id}: grey images are uint16 or uint8, got {dtype!r}")
    if colour == "rgb":
        dtype = "uint8"
    burned_in = BurnedInPolicy.from_dict(canonical.get("burned_in", {"action": "quarantine"}))
    return {
        "size_px": int(canonical.get("long_side_px", 1024)),
        "colour": colour,
        "dtype": dtype,
        "apply_voi": bool(canonical.get("apply_voi", True)),
        "burned_in": burned_in.to_dict(),
        "dicom_options": sorted(canonical.get("dicom_options", DEFAULT_OPTIONS)),
    }


def image2d_spec_dict(manifest: SourceManifest) -> dict[str, Any]:
    """The canonical spec recorded in the built manifest (round-trips through ``Image2DSpec``)."""
    from transforms.dicom import Image2DSpec

    settings = image2d_settings(manifest)
    spec = Image2DSpec(long_side_px=settings["size_px"], apply_voi=settings["apply_voi"])
    return {
        "image2d": spec.to_dict(),
        "array": {
            "name": "image",
            "shape": [settings["size_px"], settings["size_px"]]
            + ([3] if settings["colour"] == "rgb" else []),
            "dtype": settings["dtype"],
            "colour": settings["colour"],
            "padding": "top_left, zero fill; valid_rows/valid_cols give the image extent",
        },
        "pixel_pipeline": (
            ["modality_lut", "voi_lut", "monochrome1_invert", "resize_long_side_lanczos", "pad_square"]
            if manifest.layout and manifest.layout.format == "dicom"
            else ["exif_orientation", "resize_long_side_lanczos", "pad_square"]
        ),
        "burned_in": settings["burned_in"],
        "dicom_options": settings["dicom_options"],
        "dicom_row_fields": sorted(DICOM_ROW_FIELDS.values()),
    }


# --------------------------------------------------------------------------- index


def index_image2d_source(manifest: SourceManifest, raw_dir: Path, key: DeidKey) -> IndexResult:
    """Items of a 2D radiology source: one per image, with labels and split.

    Raises:
        RawFolderError: no reader for this source, a label file missing or malformed, no image
            found, or two images with one id.
    """
    if manifest.layout is None:
        raise RawFolderError(f"source {manifest.id}: the manifest has no layout")
    reader = LABEL_READERS.get(manifest.id)
    if reader is None:
        raise NotImplementedError(
            f"source {manifest.id}: no 2D label reader yet (status: {manifest.status}); "
            f"implemented: {sorted(LABEL_READERS)}"
        )
    try:
        found = reader(manifest, Path(raw_dir))
    except LabelFileError as exc:
        raise RawFolderError(f"source {manifest.id}: {exc}") from None
    if not found.entries:
        raise RawFolderError(
            f"source {manifest.id}: no labelled images matching {manifest.layout.records!r} under "
            f"{raw_dir} (left out: {dict(found.skipped)}); run `climb fetch {manifest.id}` or point "
            "--raw-dir at the release folder"
        )
    namespace = manifest.deid.namespace
    policy = manifest.split.policy
    fractions = manifest.split.fractions
    items: list[Item] = []
    seen: dict[str, Path] = {}
    for entry in found.entries:
        if entry.item_id in seen:
            raise RawFolderError(
                f"source {manifest.id}: image {entry.item_id} appears twice: {seen[entry.item_id]} and {entry.path}"
            )
        seen[entry.item_id] = entry.path
        split = entry.split
        if split is None or policy == "subject_hash":
            if split is None and policy == "official":
                # the official split names only the test set: val is carved out by patient
                split = split_for_subject(entry.subject_id, namespace, _train_val(fractions))
            else:
                split = split_for_subject(entry.subject_id, namespace, fractions)
        items.append(
            Item(
                item_id=entry.item_id,
                subject_id=entry.subject_id,
                paths=tuple(str(p) for p in (entry.path, *entry.extra_paths)),
                split=split,
                item_key=pseudonymise_id(key, namespace, "item", entry.item_id),
                labels=entry.labels,
            )
        )
    return IndexResult(
        items=items, skipped=Counter(found.skipped), tables=_layout_tables(manifest, Path(raw_dir))
    )


def _layout_tables(manifest: SourceManifest, raw_dir: Path) -> list[str]:
    """The files ``layout.extra`` names that exist in the release (label, split, metadata tables)."""
    extra = manifest.layout.extra if manifest.layout else {}
    names = [
        n for v in extra.values() for n in ([v] if isinstance(v, str) else v if isinstance(v, list) else [])
    ]
    return sorted({str(raw_dir / n) for n in names if isinstance(n, str) and (raw_dir / n).is_file()})


def _train_val(fractions: dict[str, float]) -> dict[str, float]:
    train, val = fractions.get("train", 0.8), fractions.get("val", 0.1)
    return {"train": train / (train + val), "val": val / (train + val)}


# --------------------------------------------------------------------------- transform


def _quarantine(item: Item, problem: Problem, path: str) -> ItemResult:
    # The raw path goes to the local log only; the output row holds the pseudonymous key.
    log.warning("quarantined %s (%s): %s", path, problem.code, problem.detail)
    return ItemResult(
        quarantine=QuarantineRecord(item_id=item.item_key, code=problem.code, detail=problem.detail)
    )


def _dicom_fields(ds: Any) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for keyword, column in DICOM_ROW_FIELDS.items():
        value = ds.get(keyword)
        if keyword == "ImageLaterality" and not value:
            value = ds.get("Laterality")
        text = str(value).strip().upper() if value is not None else ""
        out[column] = text if _CODE_STRING.match(text) else None
    return out


def _to_output(pixels: np.ndarray, max_value: int, colour: str, dtype: str) -> tuple[np.ndarray, int]:
    """Colour conversion and grey dtype; returns (pixels, new max value)."""
    if colour == "grey" and pixels.ndim == 3:
        pixels = np.clip(np.rint(pixels.astype(np.float64) @ _LUMA), 0, 255).astype(np.uint16)
        max_value = 255
    elif colour == "rgb" and pixels.ndim == 2:
        scaled = pixels.astype(np.float64) * (255.0 / max(max_value, 1))
        pixels = np.repeat(np.clip(np.rint(scaled), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
        return pixels, 255
    if colour == "grey" and dtype == "uint8":
        if max_value != 255:
            pixels = np.rint(pixels.astype(np.float64) * (255.0 / max(max_value, 1)))
            max_value = 255
        return np.clip(pixels, 0, 255).astype(np.uint8), max_value
    return pixels, max_value


def _pad_square(pixels: np.ndarray, size_px: int) -> np.ndarray:
    canvas = np.zeros((size_px, size_px, *pixels.shape[2:]), dtype=pixels.dtype)
    rows, cols = min(pixels.shape[0], size_px), min(pixels.shape[1], size_px)
    canvas[:rows, :cols, ...] = pixels[:rows, :cols, ...]
    return canvas


def process_image2d_item(
    item: Item,
    *,
    fmt: str,
    namespace: str,
    key: DeidKey,
    settings: dict[str, Any],
    columns: tuple[str, ...],
) -> ItemResult:
    """Read, de-identify (DICOM), canonicalise, validate and pad one image.

    Args:
        item: the indexed item: one or more DICOM, JPEG or PNG files (``item.paths``).
        fmt: ``dicom``, ``jpeg`` or ``image``.
        namespace: de-identification namespace (pseudonyms, UID remapping, date offsets).
        key: the de-identification key.
        settings: :func:`image2d_settings` of the source.
        columns: label columns from the index copied into each row.

    Returns:
        One sample per frame of each file (ids ``<item_key>-f<NNN>`` in order): ``image`` uint16/uint8 ``(S, S)`` or uint8 ``(S, S, 3)``, row with
        the labels, ``original_rows``/``original_cols`` (pixels before resizing),
        ``valid_rows``/``valid_cols`` (extent in the canvas), ``pixel_spacing_mm`` (row, column,
        after resizing; ``None`` when unknown), ``spacing_source``, ``max_value``,
        ``bits_stored``, ``inverted`` (MONOCHROME1), ``image_index``/``n_images`` (file within the
        item), ``frame``/``n_frames``, and for DICOM the
        :data:`DICOM_ROW_FIELDS`. Or one quarantine record naming the first problem.
    """
    from transforms.dicom import (
        BurnedInPolicy,
        Image2DSpec,
        canonicalise_dicom_frames,
        canonicalise_raw_image,
        deidentify_dataset,
        read_dicom,
        read_image_file,
        validate,
    )

    spec = Image2DSpec(long_side_px=settings["size_px"], apply_voi=settings["apply_voi"])
    keys = derive_subject_keys(key, namespace, item.subject_id)
    burned_in = BurnedInPolicy.from_dict(settings["burned_in"])
    labels = {name: item.labels.get(name) for name in columns}
    result = ItemResult()
    # Every image of the item (one for most sources; every view of a breast for CMMD) must pass,
    # or the whole item is quarantined: an item is never half-published.
    for image_index, path in enumerate(item.paths):
        header: dict[str, str | None] = {}
        try:
            if fmt == "dicom":
                ds, actions = deidentify_dataset(
                    read_dicom(path),
                    keys,
                    key,
                    namespace,
                    settings["dicom_options"],
                    burned_in,
                    in_place=True,
                )
                header = _dicom_fields(ds)
                frames = canonicalise_dicom_frames(ds, spec)
            else:
                frames = [canonicalise_raw_image(read_image_file(path), spec)]
                actions = Counter({ACTION_CONTAINER_METADATA: 1})
        except ItemError as exc:
            return _quarantine(item, exc.problem, path)
        except Exception as exc:  # a reader bug must not stop the build: quarantined and logged
            log.exception("unexpected error reading %s", path)
            return _quarantine(
                item, Problem("read_error", f"unexpected {type(exc).__name__} while reading"), path
            )
        if not frames:
            return _quarantine(item, Problem("no_frames", "the image has no frames"), path)
        result.deid_actions.update(actions)
        for frame in frames:
            problems = validate(frame, spec)
            if problems:
                return _quarantine(item, problems[0], path)
            pixels, max_value = _to_output(
                frame.pixels, frame.max_value, settings["colour"], settings["dtype"]
            )
            spacing = frame.pixel_spacing_mm
            result.samples.append(
                Sample(
                    sample_id=f"{item.item_key}-f{len(result.samples):03d}",
                    subject_id=keys.pseudonym,
                    split=item.split,
                    arrays={"image": _pad_square(pixels, settings["size_px"])},
                    row={
                        **labels,
                        "original_rows": int(frame.original_shape[0]),
                        "original_cols": int(frame.original_shape[1]),
                        "valid_rows": int(pixels.shape[0]),
                        "valid_cols": int(pixels.shape[1]),
                        "pixel_spacing_mm": [float(spacing[0]), float(spacing[1])] if spacing else None,
                        "spacing_source": frame.spacing_source,
                        "max_value": int(max_value),
                        "bits_stored": int(frame.bits_stored),
                        "inverted": bool(frame.inverted),
                        "image_index": image_index,
                        "n_images": len(item.paths),
                        "frame": int(frame.frame_index),
                        "n_frames": len(frames),
                        **{column: header.get(column) for column in DICOM_ROW_FIELDS.values()},
                    },
                )
            )
    return result


def make_image2d_item_fn(manifest: SourceManifest, key: DeidKey) -> ItemFn:
    """The picklable per-item function of a 2D source (``functools.partial``)."""
    if manifest.layout is None:
        raise RawFolderError(f"source {manifest.id}: the manifest has no layout")
    return functools.partial(
        process_image2d_item,
        fmt=manifest.layout.format,
        namespace=manifest.deid.namespace,
        key=key,
        settings=image2d_settings(manifest),
        columns=label_columns(manifest.id),
    )


#: source id -> label columns its reader writes (every row of a source has the same columns).
LABEL_COLUMNS: dict[str, tuple[str, ...]] = {
    "vindr_cxr": ("labels", "label_votes", "n_readers", "local_findings"),
    "chexpert": ("labels", "sex", "age_years", "frontal_lateral", "ap_pa"),
    "covid19_xray": ("label", "label_name"),
    "coronahack": ("label", "label_name", "virus_category"),
    "mimic_cxr": ("labels", "view_position_csv"),
    "vindr_mammo": ("label", "label_name", "breast_density", "breast_laterality", "breast_view"),
    "cmmd": ("label", "label_name", "abnormality", "subtype", "age_years"),
    "cbis_ddsm": ("label", "label_name", "pathology", "abnormality_types", "breast_density"),
}


def label_columns(source: str) -> tuple[str, ...]:
    """The label columns of a source's rows (empty for a source without a reader)."""
    return LABEL_COLUMNS.get(source, ())
