"""The canonical 2D image (DESIGN.md "Canonical forms"): X-ray, mammography, and colour images.

Grey DICOM pixels go through the display chain of PS3.3 C.11 and PS3.4 N.2.1.1:

1. Modality LUT (0028,3000) or Rescale Slope/Intercept (0028,1053)/(0028,1052): stored values to
   modality units (HU for CT).
2. VOI LUT: a VOI LUT Sequence (0028,3010) when present, else the first Window Center/Width
   (0028,1050)/(0028,1051) with its VOI LUT Function (0028,1056).
3. MONOCHROME1 inversion, so that higher always means brighter.

Steps 1 and 2 are pydicom's own ``apply_modality_lut`` and ``apply_voi_lut``. Their output
range is then moved to start at 0 and stored as **uint16**: after windowing the range is the
one pydicom windows into (``[0, 2**BitsStored - 1]`` for unsigned data, shifted by
slope/intercept when a rescale exists; ``2**n - 1`` for a LUT of n bits); without a VOI step it
is the range the stored bits can reach after the modality step (CT: HU + 1024). Ranges wider
than uint16 are scaled down to fit. The sample keeps ``max_value`` (the top of that range) and
the original ``bits_stored``.

Colour (RGB, YBR converted by pydicom, PALETTE COLOR through its palette) becomes uint8 RGB.

The long side is resized to ``spec.long_side_px`` with the aspect ratio kept, using Pillow's
Lanczos filter on a float32 image (an anti-aliased reduction: its support widens with the scale
factor). Pixel spacing comes from Pixel Spacing (0028,0030); when that is missing or zero,
Imager Pixel Spacing (0018,1164); else it is unknown (``None``). It is rescaled with the image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

from transforms.dicom.read import RawImage2D, decode_frames, read_int
from transforms.problems import ItemError

UINT16_MAX = 65535
SPACING_SOURCES = ("PixelSpacing", "ImagerPixelSpacing", "file", "unknown")


@dataclass(frozen=True)
class Image2DSpec:
    """What a canonical 2D image looks like for one source.

    Attributes:
        long_side_px: the long side after resizing, pixels.
        upscale: resize images smaller than ``long_side_px`` up too (else they keep their size).
        apply_voi: apply the VOI LUT / window (else only modality LUT and inversion).

    Raises:
        ValueError: on a non-positive size.
    """

    long_side_px: int = 1024
    upscale: bool = True
    apply_voi: bool = True

    def __post_init__(self) -> None:
        if self.long_side_px < 1:
            raise ValueError(f"long_side_px must be positive, got {self.long_side_px}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": "image2d", "configuration": asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Image2DSpec:
        """Inverse of :meth:`to_dict`.

        >>> Image2DSpec.from_dict(Image2DSpec(512).to_dict()) == Image2DSpec(512)
        True
        """
        if data.get("name") != "image2d":
            raise ValueError(f"not an image2d spec: {data.get('name')!r}")
        return cls(**data["configuration"])


@dataclass
class Image2DSample:
    """One canonical 2D image.

    Attributes:
        pixels: grey uint16 ``(H, W)`` with values in ``[0, max_value]``, or colour uint8
            ``(H, W, 3)`` RGB.
        max_value: the top of the grey value range (255 for colour).
        bits_stored: Bits Stored (0028,0101) of the source (8 for 8-bit JPEG/PNG).
        original_shape: ``(rows, cols)`` before resizing.
        pixel_spacing_mm: ``(row, column)`` spacing after resizing, or ``None`` when unknown.
        spacing_source: where the spacing came from (:data:`SPACING_SOURCES`).
        frame_index: the frame of a multi-frame image (0 otherwise).
        inverted: MONOCHROME1 was inverted.
    """

    pixels: np.ndarray
    max_value: int
    bits_stored: int
    original_shape: tuple[int, int]
    pixel_spacing_mm: tuple[float, float] | None
    spacing_source: str
    frame_index: int = 0
    inverted: bool = False

    @property
    def is_colour(self) -> bool:
        return self.pixels.ndim == 3


# --------------------------------------------------------------------------- grey value chain


def _stored_range(ds: Dataset) -> tuple[float, float]:
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0) or 0) == 0:
        return 0.0, float(2**bits - 1)
    return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)


def _modality_range(ds: Dataset) -> tuple[float, float]:
    """Range of the modality step's output (PS3.3 C.11.1)."""
    if ds.get("ModalityLUTSequence"):
        depth = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**depth - 1)
    lo, hi = _stored_range(ds)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        ends = (lo * float(slope) + float(intercept), hi * float(slope) + float(intercept))
        return min(ends), max(ends)
    return lo, hi


def _voi_range(ds: Dataset) -> tuple[float, float] | None:
    """Range of the VOI step's output, or ``None`` when no VOI step applies."""
    if ds.get("VOILUTSequence"):
        depth = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**depth - 1)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        return _modality_range(ds)  # pydicom windows into the modality output range
    return None


def apply_lut_chain(frame: np.ndarray, ds: Dataset, apply_voi: bool = True) -> tuple[np.ndarray, int, bool]:
    """Modality LUT, VOI LUT and MONOCHROME1 inversion for one grey frame.

    Args:
        frame: stored values, ``(rows, cols)``.
        ds: the dataset the frame belongs to (its LUT attributes are read).
        apply_voi: apply the VOI step.

    Returns:
        ``(pixels, max_value, inverted)``: uint16 ``(rows, cols)`` in ``[0, max_value]``.

    Raises:
        ItemError: ``bad_lut`` when pydicom rejects the LUT attributes.
    """
    try:
        values = apply_modality_lut(frame, ds)
        lo, hi = _modality_range(ds)
        if apply_voi:
            voi_range = _voi_range(ds)
            if voi_range is not None:
                values = apply_voi_lut(values, ds, index=0, prefer_lut=True)
                lo, hi = voi_range
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ItemError("bad_lut", f"modality/VOI LUT attributes cannot be applied: {exc}") from exc
    values = np.asarray(values, dtype=np.float64) - lo
    span = hi - lo
    if span > UINT16_MAX:
        values *= UINT16_MAX / span
        span = UINT16_MAX
    top = round(span)
    out = np.clip(np.rint(values), 0, top)
    inverted = str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1"
    if inverted:
        out = top - out
    return out.astype(np.uint16), int(top), inverted


# --------------------------------------------------------------------------- spacing and size


def read_pixel_spacing(ds: Dataset) -> tuple[tuple[float, float] | None, str]:
    """(row, column) spacing in mm and its source: Pixel Spacing, else Imager Pixel Spacing."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        try:
            spacing = (float(value[0]), float(value[1])) if value is not None and len(value) >= 2 else None
        except (TypeError, ValueError):
            spacing = None
        if spacing is not None and spacing[0] > 0 and spacing[1] > 0 and all(np.isfinite(spacing)):
            return spacing, keyword
    return None, "unknown"


def target_shape(shape: tuple[int, int], spec: Image2DSpec) -> tuple[int, int]:
    """``(rows, cols)`` after resizing: the long side becomes ``spec.long_side_px``.

    >>> target_shape((2000, 1000), Image2DSpec(1024)), target_shape((10, 20), Image2DSpec(1024, upscale=False))
    ((1024, 512), (10, 20))
    """
    rows, cols = shape
    scale = spec.long_side_px / max(rows, cols)
    if scale > 1 and not spec.upscale:
        return rows, cols
    return max(1, round(rows * scale)), max(1, round(cols * scale))


def resize_long_side(pixels: np.ndarray, spec: Image2DSpec, max_value: int) -> np.ndarray:
    """Lanczos resize (anti-aliased) to :func:`target_shape`, dtype kept, values clipped.

    Args:
        pixels: uint16 ``(H, W)`` or uint8 ``(H, W, 3)``.
        max_value: values are clipped to ``[0, max_value]`` after resampling (Lanczos rings).
    """
    rows, cols = pixels.shape[:2]
    new_rows, new_cols = target_shape((rows, cols), spec)
    if (new_rows, new_cols) == (rows, cols):
        return pixels
    channels = [pixels] if pixels.ndim == 2 else [pixels[..., c] for c in range(pixels.shape[2])]
    resized = []
    for channel in channels:
        img = Image.fromarray(channel.astype(np.float32), mode="F")
        out = np.asarray(img.resize((new_cols, new_rows), Image.Resampling.LANCZOS))
        resized.append(np.clip(np.rint(out), 0, max_value).astype(pixels.dtype))
    return resized[0] if pixels.ndim == 2 else np.stack(resized, axis=-1)


# --------------------------------------------------------------------------- colour


def _to_rgb_uint8(frame: np.ndarray, ds: Dataset) -> np.ndarray:
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric == "PALETTE COLOR":
        try:
            frame = apply_color_lut(frame, ds)
        except (ValueError, KeyError, AttributeError) as exc:
            raise ItemError("bad_lut", f"palette colour LUT cannot be applied: {exc}") from exc
        bits = 16 if frame.dtype == np.uint16 else 8
    else:
        bits = read_int(ds, "BitsStored", 8)
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise ItemError("bad_pixels", f"colour frame has shape {frame.shape}, expected (rows, cols, 3)")
    if bits <= 8 and frame.dtype == np.uint8:
        return np.ascontiguousarray(frame)
    scaled = np.rint(frame.astype(np.float64) * (255.0 / (2**bits - 1)))
    return np.clip(scaled, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- public entry points


def canonicalise_dicom_frames(ds: Dataset, spec: Image2DSpec) -> list[Image2DSample]:
    """Every frame of a DICOM image in canonical form (one sample per frame).

    Raises:
        ItemError: ``no_pixel_data``, ``undecodable_pixels`` (transfer syntax named), ``bad_lut``.
    """
    frames = decode_frames(ds)
    spacing, source = read_pixel_spacing(ds)
    bits = read_int(ds, "BitsStored", 8)
    samples_per_pixel = read_int(ds, "SamplesPerPixel", 1)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    colour = samples_per_pixel == 3 or photometric == "PALETTE COLOR"
    out = []
    for index, frame in enumerate(frames):
        if colour:
            pixels, top, inverted = _to_rgb_uint8(frame, ds), 255, False
        else:
            pixels, top, inverted = apply_lut_chain(frame, ds, spec.apply_voi)
        out.append(_finish(pixels, top, bits, spacing, source, spec, index, inverted))
    return out


def canonicalise_dicom_image(ds: Dataset, spec: Image2DSpec, frame_index: int = 0) -> Image2DSample:
    """One frame (default the first) of a DICOM image in canonical form.

    Raises:
        ItemError: as :func:`canonicalise_dicom_frames`, or ``missing_frame``.
    """
    samples = canonicalise_dicom_frames(ds, spec)
    if not 0 <= frame_index < len(samples):
        raise ItemError("missing_frame", f"frame {frame_index} requested, the image has {len(samples)}")
    return samples[frame_index]


def canonicalise_raw_image(raw: RawImage2D, spec: Image2DSpec) -> Image2DSample:
    """A JPEG/PNG image (see :func:`transforms.dicom.read.read_image_file`) in canonical form.

    Grey 8-bit values are kept (uint16 out, ``max_value`` 255); 16-bit values likewise.
    """
    pixels = raw.pixels
    if pixels.ndim == 2:
        top = 255 if pixels.dtype == np.uint8 else UINT16_MAX
        pixels = pixels.astype(np.uint16)
    else:
        top = 255
    source = "file" if raw.pixel_spacing_mm else "unknown"
    return _finish(pixels, top, raw.bits_stored, raw.pixel_spacing_mm, source, spec, 0, False)


def _finish(
    pixels: np.ndarray,
    top: int,
    bits: int,
    spacing: tuple[float, float] | None,
    source: str,
    spec: Image2DSpec,
    index: int,
    inverted: bool,
) -> Image2DSample:
    rows, cols = pixels.shape[:2]
    resized = resize_long_side(pixels, spec, top)
    new_spacing = None
    if spacing is not None:
        new_spacing = (spacing[0] * rows / resized.shape[0], spacing[1] * cols / resized.shape[1])
    return Image2DSample(
        pixels=resized,
        max_value=top,
        bits_stored=bits,
        original_shape=(rows, cols),
        pixel_spacing_mm=new_spacing,
        spacing_source=source,
        frame_index=index,
        inverted=inverted,
    )
