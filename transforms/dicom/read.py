"""Reading 2D images: DICOM pixel data (every transfer syntax we can decode) and JPEG/PNG files.

DICOM decoding goes through pydicom's pixel backends: its own native decoders (uncompressed,
RLE Lossless, Deflated), pylibjpeg-libjpeg (JPEG baseline, extended, lossless, JPEG-LS via
pyjpegls too) and pylibjpeg-openjpeg (JPEG 2000). A transfer syntax no installed plugin can
decode, or data that breaks while decoding, raises :class:`ItemError` ``undecodable_pixels``
naming the transfer syntax (by UID and name) so the quarantine table says which plugin is
missing. JPEG and PNG files (sources that ship them: MIMIC-CXR-JPG, CheXpert...) are read with
Pillow; EXIF orientation is applied and every other piece of metadata dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from pydicom.dataset import Dataset
from pydicom.uid import UID

from transforms.problems import ItemError


@dataclass
class RawImage2D:
    """A decoded 2D image before canonicalisation.

    Attributes:
        pixels: grey ``(H, W)`` uint8/uint16 or colour ``(H, W, 3)`` uint8.
        bits_stored: significant bits of a grey image (8 or 16 for JPEG/PNG).
        pixel_spacing_mm: (row, column) spacing, or ``None`` when the file does not say.
    """

    pixels: np.ndarray
    bits_stored: int
    pixel_spacing_mm: tuple[float, float] | None = None


def read_int(ds: Dataset, keyword: str, default: int) -> int:
    """An integer attribute (Rows, NumberOfFrames...), ``default`` when absent or empty.

    Raises:
        ItemError: ``bad_attribute`` when the value is not an integer (``"1A"``).
    """
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ItemError("bad_attribute", f"{keyword} is not an integer") from exc


def transfer_syntax_of(ds: Dataset) -> str:
    """``"<uid> (<name>)"`` of the dataset's transfer syntax, for messages."""
    meta = getattr(ds, "file_meta", None)
    uid = str(getattr(meta, "TransferSyntaxUID", "") or "") if meta is not None else ""
    if not uid:
        return "unknown transfer syntax"
    return f"{uid} ({UID(uid).name})"


def decode_frames(ds: Dataset) -> np.ndarray:
    """All frames of a DICOM image as stored values, before any LUT.

    Returns:
        ``(frames, rows, cols)`` for one sample per pixel, ``(frames, rows, cols, 3)`` for
        colour (YBR converted to RGB by pydicom); dtype as pydicom decodes it.

    Raises:
        ItemError: ``no_pixel_data`` or ``undecodable_pixels`` (the transfer syntax named).
    """
    if "PixelData" not in ds:
        raise ItemError("no_pixel_data", "the DICOM file holds no Pixel Data (7FE0,0010)")
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise ItemError(
            "undecodable_pixels",
            f"pixel data cannot be decoded: transfer syntax {transfer_syntax_of(ds)}: {type(exc).__name__}",
        ) from exc
    frames = read_int(ds, "NumberOfFrames", 1)
    samples = read_int(ds, "SamplesPerPixel", 1)
    if frames == 1:
        arr = arr[np.newaxis]
    expected_ndim = 4 if samples > 1 else 3
    if arr.ndim != expected_ndim:
        raise ItemError("undecodable_pixels", f"decoded pixel array has unexpected shape {arr.shape}")
    return arr


def read_image_file(path: str | Path) -> RawImage2D:
    """Read a JPEG or PNG with Pillow: grey stays grey (uint8 or uint16), colour becomes RGB uint8.

    Raises:
        ItemError: ``unreadable_image`` when Pillow cannot open or decode the file.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L"):
                pixels = np.asarray(img, dtype=np.uint16)
                bits = 16
            elif mode in ("I", "F"):
                pixels = np.clip(np.asarray(img), 0, 65535).astype(np.uint16)
                bits = 16
            elif mode in ("L", "LA", "1"):
                pixels = np.asarray(img.convert("L"), dtype=np.uint8)
                bits = 8
            else:
                pixels = np.asarray(img.convert("RGB"), dtype=np.uint8)
                bits = 8
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ItemError(
            "unreadable_image", f"image cannot be read: {type(exc).__name__}", path=str(path)
        ) from exc
    if pixels.ndim == 3 and pixels.shape[2] == 3 and _is_grey(pixels):
        pixels = np.ascontiguousarray(pixels[..., 0])
    return RawImage2D(pixels=np.ascontiguousarray(pixels), bits_stored=bits)


def _is_grey(rgb: np.ndarray) -> bool:
    """An RGB file whose three channels are equal is a grey image saved as colour."""
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))
