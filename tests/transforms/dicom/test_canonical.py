"""2D reading and canonical form on pydicom's test files and on files written here."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian

from transforms.dicom.canonical import (
    Image2DSample,
    Image2DSpec,
    apply_lut_chain,
    canonicalise_dicom_frames,
    canonicalise_dicom_image,
    canonicalise_raw_image,
)
from transforms.dicom.deid import read_dicom
from transforms.dicom.read import read_image_file
from transforms.dicom.validate import validate
from transforms.problems import ItemError

NO_RESIZE = Image2DSpec(long_side_px=100_000, upscale=False)

warnings.filterwarnings("ignore", module="pydicom")


def _readable_pixel_files() -> list[tuple[Path, Dataset]]:
    out = []
    for name in sorted(get_testdata_files()):
        path = Path(name)
        if not path.is_file():
            continue
        try:
            ds = read_dicom(path)
        except ItemError:
            continue
        if "PixelData" in ds:
            out.append((path, ds))
    return out


FILES = _readable_pixel_files()


def _pydicom_chain(ds: Dataset) -> np.ndarray:
    arr = ds.pixel_array
    return np.asarray(apply_voi_lut(apply_modality_lut(arr, ds), ds, index=0), dtype=np.float64)


def test_lut_chain_matches_pydicom_on_windowed_test_files() -> None:
    checked = 0
    for path, ds in FILES:
        grey = str(ds.get("SamplesPerPixel", 1)) == "1" and str(ds.get("NumberOfFrames", 1) or 1) == "1"
        if not grey or "WindowCenter" not in ds:
            continue
        try:
            expected = _pydicom_chain(ds)
        except Exception:  # pydicom cannot decode it either (truncated test files)
            with pytest.raises(ItemError):
                canonicalise_dicom_image(ds, NO_RESIZE)
            continue
        sample = canonicalise_dicom_image(ds, NO_RESIZE)
        ours = sample.pixels.astype(np.float64)
        assert sample.pixels.dtype == np.uint16 and ours.shape == expected.shape, path.name
        if ds.PhotometricInterpretation == "MONOCHROME1":
            assert sample.inverted
            combined = expected + ours  # inverted: pydicom's value + ours is constant
        else:
            combined = expected - ours  # the same values, moved to start at 0
        assert np.ptp(combined) <= 1.0, path.name
        assert ours.min() >= 0 and ours.max() <= sample.max_value
        checked += 1
    assert checked >= 30


def _lut_dataset(photometric: str = "MONOCHROME2") -> Dataset:
    """8 x 16 image, 12-bit stored values, a 16-bit modality LUT and a 12-bit VOI LUT."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns = 8, 16
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    stored = (np.arange(128, dtype=np.uint16) * 32).reshape(8, 16)
    ds.PixelData = stored.tobytes()
    modality = Dataset()
    modality.LUTDescriptor = [4096, 0, 16]
    modality.ModalityLUTType = "US"
    modality.LUTData = [int(v) for v in np.sqrt(np.arange(4096) / 4095.0) * 65535]
    modality["LUTData"].VR = "US"
    ds.ModalityLUTSequence = Sequence([modality])
    voi = Dataset()
    voi.LUTDescriptor = [0, 0, 12]  # 0 = 65536 entries (PS3.3 C.11.2.1.1)
    voi.LUTData = [int(v) for v in (np.arange(65536) // 16)]
    voi["LUTData"].VR = "US"
    ds.VOILUTSequence = Sequence([voi])
    return ds


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_lut_sequences_match_pydicom(photometric: str) -> None:
    ds = _lut_dataset(photometric)
    expected = _pydicom_chain(ds)
    sample = canonicalise_dicom_image(ds, NO_RESIZE)
    assert sample.max_value == 4095 and sample.pixels.dtype == np.uint16
    if photometric == "MONOCHROME1":
        assert np.array_equal(sample.pixels, 4095 - expected.astype(np.uint16))
    else:
        assert np.array_equal(sample.pixels, expected.astype(np.uint16))


def test_monochrome1_test_files_come_out_inverted() -> None:
    mono1 = [(p, ds) for p, ds in FILES if ds.get("PhotometricInterpretation") == "MONOCHROME1"]
    assert len(mono1) >= 3
    for path, ds in mono1:
        without_voi = canonicalise_dicom_image(ds, Image2DSpec(100_000, upscale=False, apply_voi=False))
        modality = np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64)
        # higher modality values (more attenuation in MONOCHROME1 = whiter) must come out darker
        assert without_voi.inverted, path.name
        corr = np.corrcoef(modality.ravel(), without_voi.pixels.astype(np.float64).ravel())[0, 1]
        assert corr < -0.999, path.name


def test_every_compressed_test_file_decodes_or_names_its_transfer_syntax() -> None:
    decoded: set[str] = set()
    for path, ds in FILES:
        meta = getattr(ds, "file_meta", None)
        syntax = UID(str(meta.get("TransferSyntaxUID", "") if meta is not None else ""))
        if not syntax.is_transfer_syntax or not syntax.is_compressed:
            continue
        try:
            samples = canonicalise_dicom_frames(ds, Image2DSpec(64))
        except ItemError as exc:
            assert exc.problem.code == "undecodable_pixels", path.name
            assert str(syntax) in exc.problem.detail and syntax.name in exc.problem.detail
            continue
        assert samples and all(validate(s, Image2DSpec(64)) in ([], [s_flat(s)]) for s in samples), path.name
        decoded.add(str(syntax))
    # JPEG baseline, JPEG lossless, JPEG-LS lossless + near-lossless, JPEG 2000 both, RLE
    for uid in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
                "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
                "1.2.840.10008.1.2.5"):  # fmt: skip
        assert uid in decoded, uid


def s_flat(sample: Image2DSample):
    """The one problem a decoded test image may legitimately have (a uniform test pattern)."""
    return next((p for p in validate(sample, Image2DSpec(64)) if p.code == "flat_image"), None)


def test_lossless_encodings_decode_to_the_same_pixels() -> None:
    reference = canonicalise_dicom_image(pydicom.dcmread(get_testdata_file("MR_small.dcm")), NO_RESIZE)
    for name in (
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
    ):
        sample = canonicalise_dicom_image(pydicom.dcmread(get_testdata_file(name)), NO_RESIZE)
        assert np.array_equal(sample.pixels, reference.pixels), name


def test_multiframe_gives_one_sample_per_frame() -> None:
    ds = pydicom.dcmread(get_testdata_file("rtdose.dcm"))
    samples = canonicalise_dicom_frames(ds, Image2DSpec(32))
    assert len(samples) == int(ds.NumberOfFrames) == 15
    assert [s.frame_index for s in samples] == list(range(15))
    assert not np.array_equal(samples[0].pixels, samples[7].pixels)
    colour = canonicalise_dicom_frames(
        pydicom.dcmread(get_testdata_file("SC_rgb_rle_2frame.dcm")), Image2DSpec(32)
    )
    assert len(colour) == 2 and colour[0].pixels.shape == (32, 32, 3) and colour[0].pixels.dtype == np.uint8


def test_colour_and_palette_become_rgb_uint8() -> None:
    for name in (
        "examples_rgb_color.dcm",
        "examples_palette.dcm",
        "SC_rgb_rle_16bit.dcm",
        "examples_ybr_color.dcm",
    ):
        sample = canonicalise_dicom_image(pydicom.dcmread(get_testdata_file(name)), Image2DSpec(64))
        assert sample.pixels.dtype == np.uint8 and sample.pixels.shape[2] == 3, name
        assert max(sample.pixels.shape[:2]) == 64
        assert validate(sample, Image2DSpec(64)) == [], name


def _cr(spacing: list[float] | None, imager: list[float] | None, rows: int = 300, cols: int = 200) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 10, 9, 0
    ds.PixelData = (np.indices((rows, cols)).sum(axis=0) % 1024).astype(np.uint16).tobytes()
    if spacing is not None:
        ds.PixelSpacing = spacing
    if imager is not None:
        ds.ImagerPixelSpacing = imager
    return ds


def test_spacing_falls_back_and_scales_with_the_resize() -> None:
    spec = Image2DSpec(150)
    own = canonicalise_dicom_image(_cr([0.2, 0.1], [0.3, 0.3]), spec)
    assert own.spacing_source == "PixelSpacing" and own.pixels.shape == (150, 100)
    assert own.pixel_spacing_mm == pytest.approx((0.4, 0.2))
    zero = canonicalise_dicom_image(_cr([0, 0], [0.15, 0.15]), spec)
    assert zero.spacing_source == "ImagerPixelSpacing" and zero.pixel_spacing_mm == pytest.approx((0.3, 0.3))
    none = canonicalise_dicom_image(_cr(None, None), spec)
    assert none.spacing_source == "unknown" and none.pixel_spacing_mm is None
    assert none.bits_stored == 10 and none.max_value == 1023 and none.original_shape == (300, 200)


def test_resize_is_anti_aliased_and_keeps_aspect() -> None:
    ds = _cr(None, None, rows=400, cols=800)
    checker = (np.indices((400, 800)).sum(axis=0) % 2 * 1000).astype(np.uint16)  # 1-pixel checkerboard
    ds.PixelData = checker.tobytes()
    sample = canonicalise_dicom_image(ds, Image2DSpec(200))
    assert sample.pixels.shape == (100, 200)
    inner = sample.pixels[5:-5, 5:-5].astype(np.float64)
    assert abs(inner.mean() - 500) < 10 and inner.std() < 10  # nearest-neighbour would give 0 or 1000
    small = canonicalise_dicom_image(_cr(None, None, rows=30, cols=20), Image2DSpec(200, upscale=False))
    assert small.pixels.shape == (30, 20)


def test_jpeg_and_png_inputs(tmp_path: Path) -> None:
    grey16 = np.arange(64 * 32, dtype=np.uint16).reshape(64, 32) * 16
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    rgb = np.zeros((40, 20, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 2] = 200, np.arange(20, dtype=np.uint8)[None, :] * 10
    Image.fromarray(rgb).save(tmp_path / "c.png")
    Image.fromarray((grey16 // 256).astype(np.uint8)).save(tmp_path / "g8.jpg", quality=95)
    g16 = read_image_file(tmp_path / "g16.png")
    assert g16.pixels.dtype == np.uint16 and np.array_equal(g16.pixels, grey16) and g16.bits_stored == 16
    colour = read_image_file(tmp_path / "c.png")
    assert colour.pixels.shape == (40, 20, 3) and np.array_equal(colour.pixels, rgb)
    g8 = read_image_file(tmp_path / "g8.jpg")
    assert g8.pixels.dtype == np.uint8 and g8.pixels.shape == (64, 32)
    spec = Image2DSpec(128)
    for raw in (g16, colour, g8):
        sample = canonicalise_raw_image(raw, spec)
        assert max(sample.pixels.shape[:2]) == 128
        assert validate(sample, spec) == []
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(ItemError) as info:
        read_image_file(tmp_path / "bad.png")
    assert info.value.problem.code == "unreadable_image"


def test_validate_reports_problems() -> None:
    spec = Image2DSpec(16)
    good = Image2DSample(np.arange(256, dtype=np.uint16).reshape(16, 16), 255, 8, (16, 16), None, "unknown")
    assert validate(good, spec) == []
    codes = lambda s: {p.code for p in validate(s, spec)}  # noqa: E731
    assert "bad_dtype" in codes(
        Image2DSample(good.pixels.astype(np.float32), 255, 8, (16, 16), None, "unknown")
    )
    assert "flat_image" in codes(
        Image2DSample(np.zeros((16, 16), np.uint16), 255, 8, (16, 16), None, "unknown")
    )
    assert "bad_size" in codes(Image2DSample(good.pixels[:8], 255, 8, (16, 16), None, "unknown"))
    assert "out_of_range" in codes(Image2DSample(good.pixels, 100, 8, (16, 16), None, "unknown"))
    assert "bad_spacing" in codes(Image2DSample(good.pixels, 255, 8, (16, 16), (0.0, 1.0), "PixelSpacing"))


def test_spec_round_trips_and_pickles() -> None:
    spec = Image2DSpec(512, upscale=False, apply_voi=False)
    assert Image2DSpec.from_dict(spec.to_dict()) == spec
    assert pickle.loads(pickle.dumps(spec)) == spec
    with pytest.raises(ValueError):
        Image2DSpec(0)


def test_apply_lut_chain_alone_on_ct() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    pixels, top, inverted = apply_lut_chain(ds.pixel_array, ds)
    hu = apply_modality_lut(ds.pixel_array, ds)
    assert not inverted and pixels.dtype == np.uint16
    assert np.ptp(hu - pixels.astype(np.float64)) <= 1  # HU moved to start at 0 (no window in this file)
    assert top >= int(pixels.max())


def test_exif_orientation_applied_and_grey_rgb_collapsed(tmp_path: Path) -> None:
    grey = np.zeros((20, 40), dtype=np.uint8)
    grey[:, :10] = 255  # a bright band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(grey).convert("RGB").save(tmp_path / "rot.png", exif=exif)
    raw = read_image_file(tmp_path / "rot.png")
    assert raw.pixels.shape == (40, 20)  # rotated for display, and grey again (R == G == B)
    assert raw.pixels[:10].min() == 255 and raw.pixels[10:].max() == 0  # the band is now on top
