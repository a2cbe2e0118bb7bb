"""Validation of canonical 2D images (DESIGN.md: an empty list means valid; never raises on data)."""

from __future__ import annotations

import numpy as np

from transforms.dicom.canonical import SPACING_SOURCES, Image2DSample, Image2DSpec, target_shape
from transforms.problems import Problem


def validate(sample: Image2DSample, spec: Image2DSpec) -> list[Problem]:
    """Check a canonical 2D sample against its spec; an empty list means valid.

    Problems: ``bad_dtype``, ``bad_shape``, ``bad_size``, ``out_of_range``, ``flat_image``,
    ``bad_spacing``.
    """
    problems: list[Problem] = []
    pixels = sample.pixels
    if pixels.ndim == 2:
        if pixels.dtype != np.uint16:
            problems.append(Problem("bad_dtype", f"grey image must be uint16, got {pixels.dtype}"))
    elif pixels.ndim == 3 and pixels.shape[2] == 3:
        if pixels.dtype != np.uint8:
            problems.append(Problem("bad_dtype", f"colour image must be uint8 RGB, got {pixels.dtype}"))
    else:
        problems.append(Problem("bad_shape", f"expected (H, W) or (H, W, 3), got {pixels.shape}"))
        return problems
    expected = target_shape(sample.original_shape, spec)
    if pixels.shape[:2] != expected:
        problems.append(Problem("bad_size", f"size {pixels.shape[:2]} is not the spec's {expected}"))
    if pixels.size and int(pixels.max()) > sample.max_value:
        problems.append(Problem("out_of_range", f"a value exceeds max_value {sample.max_value}"))
    if pixels.size == 0 or int(pixels.min()) == int(pixels.max()):
        problems.append(Problem("flat_image", "every pixel has the same value"))
    if sample.pixel_spacing_mm is not None and not all(
        np.isfinite(v) and v > 0 for v in sample.pixel_spacing_mm
    ):
        problems.append(Problem("bad_spacing", f"pixel spacing {sample.pixel_spacing_mm} is not positive"))
    if sample.spacing_source not in SPACING_SOURCES:
        problems.append(Problem("bad_spacing", f"unknown spacing source {sample.spacing_source!r}"))
    return problems
