"""The build report: real built ECG sources plus synthetic image, volume and video datasets written
with the real shard writer, rendered to HTML and opened in headless Chromium.

Chromium proves what a reader would see: every per-source section is there, every embedded image
decodes (the page's load script counts ``naturalWidth == 0`` images), the counts on the page are
the manifests' counts, and the screenshot is a picture, not a blank page.
"""

from __future__ import annotations

import base64
import html.parser
import io
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from manifests.publish import publish_dataset
from manifests.schema import MANIFEST_FILE, QuarantineRecord, Sample, load_source_manifest
from manifests.writer import write_shard
from pipelines.cli_report import report_command
from pipelines.demo import cxr_release as cxr
from pipelines.demo import mammo_release as mammo
from pipelines.demo.ecg_release import write_cinc_release
from pipelines.report import (
    ReportError,
    classify_array,
    count_labels,
    find_built_sources,
    middle_slices,
    pick_sample_positions,
    render_report,
    section_id,
    video_frames,
    write_report,
)
from pipelines.stages.build import BuildConfig, build_source

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)

# ---------------------------------------------------------------------------------------------
# Synthetic non-ECG datasets, written by the real writer and published by the real publisher
# ---------------------------------------------------------------------------------------------


def synthetic_xray(rng: np.random.Generator, i: int) -> dict[str, np.ndarray]:
    """A grey uint16 (72, 96) image: a vertical gradient, two bright discs (lungs) and noise."""
    yy, xx = np.mgrid[0:72, 0:96]
    img = 8000 + 60 * yy
    for cx in (30, 66):
        img = img + 20000 * (((xx - cx) / 16) ** 2 + ((yy - 36) / 26) ** 2 < 1)
    img = img + rng.normal(0, 600, img.shape) + 300 * i
    return {"image": np.clip(img, 0, 65535).astype(np.uint16)}


def synthetic_derm(rng: np.random.Generator, i: int) -> dict[str, np.ndarray]:
    """An RGB uint8 (56, 56, 3) skin patch with a dark lesion."""
    yy, xx = np.mgrid[0:56, 0:56]
    skin = np.stack([np.full((56, 56), 214), np.full((56, 56), 170), np.full((56, 56), 140)], axis=-1)
    lesion = ((xx - 28 - i) / (10 + i)) ** 2 + ((yy - 26) / 12) ** 2 < 1
    img = skin - 110 * lesion[..., None] + rng.normal(0, 6, skin.shape)
    return {"image": np.clip(img, 0, 255).astype(np.uint8)}


def synthetic_ct(rng: np.random.Generator, i: int) -> dict[str, np.ndarray]:
    """An int16 HU (20, 40, 48) volume: air, a body ellipsoid of soft tissue, a bony core."""
    zz, yy, xx = np.mgrid[0:20, 0:40, 0:48]
    r = ((zz - 10) / 9) ** 2 + ((yy - 20) / 17) ** 2 + ((xx - 24) / 21) ** 2
    vol = np.where(r < 1, 40, -1000) + np.where(r < 0.15, 900, 0) + rng.normal(0, 10, r.shape) + i
    return {"volume": vol.astype(np.int16)}


def synthetic_echo(rng: np.random.Generator, i: int) -> dict[str, np.ndarray]:
    """A uint8 (10, 32, 32, 3) video: a disc whose radius beats over time."""
    t, yy, xx = np.mgrid[0:10, 0:32, 0:32]
    radius = 7 + 4 * np.sin(2 * np.pi * t / 10 + i)
    disc = ((xx - 16) ** 2 + (yy - 16) ** 2) < radius**2
    frame = 30 + 180 * disc + rng.normal(0, 5, disc.shape)
    return {"video": np.repeat(np.clip(frame, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)}


SYNTHETIC = {
    # source: (make arrays, modality, group, labels block, label of sample i, canonical block)
    "synthetic_xray": (
        synthetic_xray,
        "xray_chest",
        "2d",
        {"kind": "multiclass", "classes": ["normal", "nodule", "effusion"]},
        lambda i: i % 3,
        {"name": "image_grey", "configuration": {"dtype": "uint16", "long_side_px": 96}},
    ),
    "synthetic_derm": (
        synthetic_derm,
        "dermoscopy",
        "2d",
        {"kind": "binary", "classes": ["benign", "malignant"]},
        lambda i: i % 2,
        {"name": "image_rgb", "configuration": {"dtype": "uint8"}},
    ),
    "synthetic_ct": (
        synthetic_ct,
        "ct_chest",
        "3d",
        {"kind": "none"},
        None,
        {"name": "volume", "configuration": {"dtype": "int16", "units": "HU"}},
    ),
    "synthetic_echo": (
        synthetic_echo,
        "echo_video",
        "3d",
        {"kind": "regression"},
        lambda i: 40.0 + 3.5 * i,
        {"name": "video", "configuration": {"dtype": "uint8", "fps": 30}},
    ),
}


def write_synthetic_dataset(out: Path | str, source: str, *, with_pointer: bool) -> dict:
    """Write ``<out>/<source>/v1-synthetic`` (train: 2 shards, test: 1 shard, one quarantined
    item) with :func:`write_shard` + :func:`publish_dataset`; return the manifest."""
    make, modality, group, labels, label_of, canonical = SYNTHETIC[source]
    rng = np.random.default_rng(len(source))
    url = f"{str(out).rstrip('/')}/{source}/v1-synthetic"
    layout = [("train", 0, range(0, 4)), ("train", 1, range(4, 7)), ("test", 0, range(7, 9))]
    records = []
    for split, index, numbers in layout:
        samples = []
        for i in numbers:
            row = {"label": label_of(i)} if label_of else {"view": "axial"}
            samples.append(Sample(f"{source}-s{i:03d}", f"subj-{i // 2}", split, make(rng, i), row))
        records.append(
            write_shard(url, split, index, samples, source=source, quarantined=1 if index == 1 else 0)
        )
    quarantine = [QuarantineRecord("item-q1", "unreadable_pixels", "pixel data ended early (planted)")]
    manifest = publish_dataset(
        url,
        source=source,
        version="v1-synthetic",
        shards=records,
        quarantine=quarantine,
        items_in=9 + len(quarantine),
        info={
            "title": f"Synthetic {modality} for report tests",
            "modality": modality,
            "group": group,
            "licence": "CC0-1.0",
            "labels": labels,
            "canonical": canonical,
            "deid": {"method": "synthetic: nothing to remove", "actions": {"pixels_checked": 9}},
            "throughput": {"shard_seconds": 0.5, "shards_reused": 0},
        },
        quarantine_max_fraction=0.5,
    )
    if with_pointer:
        pointer = json.dumps({"source": source, "version": "v1-synthetic"}).encode()
        fs, root = fsspec.core.url_to_fs(str(out))
        fs.pipe_file(f"{root.rstrip('/')}/{source}/current.json", pointer)
    return manifest


#: The demo's 2D sources, each written by its demo release generator (small) and built for real.
IMAGE_SOURCES = {
    "vindr_cxr": lambda raw: cxr.write_vindr_cxr_release(raw, 3, seed=1, sizes=((150, 128),)),
    "chexpert": lambda raw: cxr.write_chexpert_release(raw, 2, seed=2, valid_patients=1, sizes=((150, 128),)),
    "mimic_cxr": lambda raw: cxr.write_mimic_cxr_release(raw, 2, seed=3, sizes=((150, 128),)),
    "covid19_xray": lambda raw: cxr.write_covid19_xray_release(raw, 1, seed=4, size=(128, 150)),
    "coronahack": lambda raw: cxr.write_coronahack_release(raw, 1, seed=5, size=(128, 150)),
    "vindr_mammo": lambda raw: mammo.write_vindr_mammo_release(raw, 1, seed=6, size=(160, 128)),
    "cmmd": lambda raw: mammo.write_cmmd_release(raw, raw, 2, seed=7, size=(160, 128)),
    "cbis_ddsm": lambda raw: mammo.write_cbis_ddsm_release(raw, raw, 2, seed=8, size=(160, 128)),
}


def build_image_source(source: str, base: Path, out: Path) -> None:
    """Generate ``source``'s small demo release and build it at 192 pixels a side (not the
    manifest's 1024-2048: the report is what is tested here)."""
    raw = base / f"raw-{source}"
    IMAGE_SOURCES[source](raw)
    manifest = load_source_manifest(source)
    manifest = manifest.model_copy(update={"canonical": {**manifest.canonical, "long_side_px": 192}})
    build_source(manifest, str(raw), str(out), BuildConfig(items_per_shard=4))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two built ECG sources (CinC releases through the real build), the demo's eight 2D sources
    (their demo releases through the real build) and four synthetic datasets."""
    base = tmp_path_factory.mktemp("report")
    out = base / "out"
    write_cinc_release(base / "raw-georgia", "georgia", 12, seed=1)
    build_source("georgia", str(base / "raw-georgia"), str(out), BuildConfig(items_per_shard=4))
    write_cinc_release(base / "raw-cpsc", "cpsc2018", 6, seed=2, durations_s=(6, 30))
    build_source("cpsc2018", str(base / "raw-cpsc"), str(out), BuildConfig(items_per_shard=4))
    for source in IMAGE_SOURCES:
        build_image_source(source, base, out)
    for k, source in enumerate(SYNTHETIC):
        write_synthetic_dataset(out, source, with_pointer=k % 2 == 0)
    return out


def manifests_on_disk(out: Path) -> dict[str, dict]:
    """Each source's current manifest, read straight from disk (not through the report code)."""
    found = {}
    for source_dir in sorted(p for p in out.iterdir() if p.is_dir()):
        pointer = source_dir / "current.json"
        if pointer.exists():
            version = json.loads(pointer.read_text())["version"]
        else:
            (version,) = [p.name for p in source_dir.iterdir() if (p / MANIFEST_FILE).exists()]
        found[source_dir.name] = json.loads((source_dir / version / MANIFEST_FILE).read_text())
    return found


@pytest.fixture(scope="module")
def report(corpus: Path) -> Path:
    return render_report(str(corpus), samples_per_source=3)


# ---------------------------------------------------------------------------------------------
# Reading the page back
# ---------------------------------------------------------------------------------------------


class PageParser(html.parser.HTMLParser):
    """Collects sections, ``data-field`` values (with their text), images and the body's attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str] = {}
        self.sections: dict[str, dict[str, str]] = {}
        self.fields: list[dict] = []  # {"source", "field", "value", "text", attrs...}
        self.images: list[dict[str, str]] = []
        self._source: str | None = None
        self._field: dict | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = a
        if tag == "section" and "data-source" in a:
            self._source = a["data-source"]
            self.sections[a["data-source"]] = a
        if tag == "tr" and "data-source" in a:
            self._source = a["data-source"]
        if "data-field" in a:
            self._field = {"source": self._source, **a, "text": ""}
            self.fields.append(self._field)
        if tag == "img":
            self.images.append({"source": self._source or "", **a})

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "div"):
            self._field = None
        if tag == "section":
            self._source = None

    def handle_data(self, data: str) -> None:
        if self._field is not None:
            self._field["text"] += data


def parse_page(text: str) -> PageParser:
    parser = PageParser()
    parser.feed(text)
    return parser


def run_chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    assert Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing: install the Debian chromium package (.ci/run does)"
    )
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def test_chromium_loads_every_image_and_shows_the_manifest_counts(
    corpus: Path, report: Path, tmp_path: Path
) -> None:
    manifests = manifests_on_disk(corpus)
    assert set(manifests) == {"georgia", "cpsc2018", *IMAGE_SOURCES, *SYNTHETIC}
    proc = run_chromium(["--virtual-time-budget=5000", "--dump-dom", report.as_uri()], tmp_path / "profile")
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = parse_page(proc.stdout)

    # The load script ran and found every image decoded.
    assert page.body.get("data-loaded") == "1", "the page's load script did not run"
    n_img = len(re.findall(r"<img\b", report.read_text()))
    assert int(page.body["data-images"]) == n_img == len(page.images)
    assert page.body["data-broken"] == "0"

    # One section per source, with its id, and pictures in each.
    for source, manifest in manifests.items():
        assert source in page.sections, f"no section for {source}"
        assert page.sections[source]["id"] == section_id(source)
        assert any(img["source"] == source for img in page.images), f"no picture in {source}'s section"
        counts = manifest["counts"]
        for key in ("items_in", "samples_out", "quarantined"):
            hits = [f for f in page.fields if f["source"] == source and f["data-field"] == key]
            # the summary table row and the section's card
            assert len(hits) == 2, (source, key, hits)
            for hit in hits:
                assert int(hit["data-value"]) == counts[key]
                assert int(hit["text"].strip().replace(",", "")) == counts[key]
        split_cells = [f for f in page.fields if f["source"] == source and f["data-field"] == "split_samples"]
        assert sorted(int(f["text"].replace(",", "")) for f in split_cells) == sorted(
            v["samples"] for v in manifest["splits"].values()
        )
        quarantine_cells = {
            f["data-code"]: int(f["data-value"])
            for f in page.fields
            if f["source"] == source and f["data-field"] == "quarantine_count"
        }
        assert quarantine_cells == counts["quarantined_by_code"]
        deid_cells = {
            f["data-kind"]: int(f["text"].replace(",", ""))
            for f in page.fields
            if f["source"] == source and f["data-field"] == "deid_action"
        }
        assert deid_cells == manifest["deid"]["actions"]
        shard_cells = [f for f in page.fields if f["source"] == source and f["data-field"] == "shard_samples"]
        assert [int(f["data-value"]) for f in shard_cells] == [s["samples"] for s in manifest["shards"]]


def test_screenshot_is_a_picture(report: Path, tmp_path: Path) -> None:
    png = tmp_path / "report.png"
    proc = run_chromium(
        [f"--screenshot={png}", "--window-size=1400,2400", "--virtual-time-budget=5000", report.as_uri()],
        tmp_path / "profile",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert png.exists() and png.stat().st_size > 20_000
    with Image.open(png) as im:
        assert im.size == (1400, 2400)
        grey = np.asarray(im.convert("L"), dtype=np.float64)
        colours = len(im.convert("RGB").getcolors(maxcolors=1 << 20) or [])
    assert grey.std() > 10, "the screenshot is (nearly) one colour"
    assert colours > 200
    # Rows of the page differ: text, tables and plots, not a blank band with a header.
    assert (grey.std(axis=1) > 5).mean() > 0.3


def decode_images(text: str) -> dict[str, np.ndarray]:
    """``{alt text: RGB array}`` of every embedded PNG."""
    out = {}
    for alt, data in re.findall(r'<img class="plot" alt="([^"]*)" src="data:image/png;base64,([^"]+)"', text):
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            assert im.format == "PNG"
            out[html.unescape(alt)] = np.asarray(im.convert("RGB"))
    return out


def test_each_modality_gets_its_pictures(report: Path, corpus: Path) -> None:
    text = report.read_text()
    sections = {
        m.group(1): m.start()
        for m in re.finditer(r'<section class="source" id="[^"]+" data-source="([^"]+)"', text)
    }
    order = sorted(sections, key=sections.get)
    bounds = {
        s: (sections[s], sections[order[i + 1]] if i + 1 < len(order) else len(text))
        for i, s in enumerate(order)
    }

    def alts(source: str) -> list[str]:
        lo, hi = bounds[source]
        return list(decode_images(text[lo:hi]))

    for ecg in ("georgia", "cpsc2018"):
        traces = [a for a in alts(ecg) if a.startswith("signal of ")]
        assert len(traces) == 3, alts(ecg)
        assert "value histograms of signal" in alts(ecg)
        assert "label distribution of superclasses" in alts(ecg)
    for source in IMAGE_SOURCES:  # the demo's radiographs and mammograms: thumbnails and labels
        assert "image thumbnails" in alts(source), (source, alts(source))
        assert "value histograms of image" in alts(source), (source, alts(source))
        assert any(a.startswith("label distribution of ") for a in alts(source)), (source, alts(source))
    assert "image thumbnails" in alts("synthetic_xray")
    assert "image thumbnails" in alts("synthetic_derm")
    assert "label distribution of label" in alts("synthetic_xray")
    assert sum(a.startswith("volume middle slices of ") for a in alts("synthetic_ct")) == 3
    assert sum(a.startswith("video frames of ") for a in alts("synthetic_echo")) == 3
    assert "label distribution of label" in alts("synthetic_echo")  # regression: a histogram
    for alt, pixels in decode_images(text).items():
        assert pixels.shape[0] > 50 and pixels.shape[1] > 100, alt
        assert pixels.std() > 5, f"{alt} is blank"


def test_label_counts_match_the_rows(corpus: Path) -> None:
    manifests = manifests_on_disk(corpus)
    manifest = manifests["georgia"]
    root = corpus / "georgia" / manifest["version"]
    classes = manifest["labels"]["classes"]
    rows = {
        split: [
            v
            for f in sorted((root / "rows" / split).glob("*.parquet"))
            for v in pq.read_table(f)["superclasses"].to_pylist()
        ]
        for split in manifest["splits"]
    }
    got = count_labels(manifest, rows, "superclasses")
    for split, lists in rows.items():
        want = Counter()
        for multi_hot in lists:
            want.update(name for name, flag in zip(classes, multi_hot, strict=True) if flag)
        assert got.by_split[split] == dict(want)
    xray = manifests["synthetic_xray"]
    got = count_labels(xray, {"train": [0, 1, 2, 0, -1, None]}, "label")
    assert got.by_split["train"] == {"normal": 2, "nodule": 1, "effusion": 1}
    assert got.unlabelled["train"] == 2


def test_classify_array_follows_the_canonical_forms() -> None:
    assert classify_array((12, 5000), "ecg", "1d") == "timeseries"
    assert classify_array((19, 2000), "eeg", "1d") == "timeseries"
    assert classify_array((5000,), "gait", "1d") == "timeseries"
    assert classify_array((1024, 832), "xray_chest", "2d") == "image_grey"
    assert classify_array((1, 1024, 832), "mammography", "2d") == "image_grey"
    assert classify_array((512, 512, 1), "mri_brain_2d", "2d") == "image_grey"
    assert classify_array((768, 1024, 3), "dermoscopy", "2d") == "image_rgb"
    assert classify_array((3, 512, 512), "pathology", "2d") == "image_rgb"
    assert classify_array((64, 256, 256), "ct_chest", "3d") == "volume"
    assert classify_array((1, 64, 256, 256), "ct_head", "3d") == "volume"
    assert classify_array((32, 112, 112, 3), "echo_video", "3d") == "video"
    assert classify_array((32, 224, 224), "endoscopy_video", "2d") == "video"
    assert classify_array((2, 3, 4, 5, 6), "genomics", None) == "none"


def test_middle_slices_and_frames_pick_the_middle_and_spread() -> None:
    d, h, w = 9, 6, 4
    vol = np.zeros((d, h, w), dtype=np.int16)
    vol[d // 2] += 100
    vol[:, h // 2, :] += 10
    vol[:, :, w // 2] += 1
    (_, axial), (_, coronal), (_, sagittal) = middle_slices(vol)
    assert axial.shape == (h, w) and (axial >= 100).all()
    assert coronal.shape == (d, w) and ((coronal % 100) >= 10).all()
    assert sagittal.shape == (d, h) and (sagittal % 10 == 1).all()
    video = np.arange(20)[:, None, None] * np.ones((20, 2, 2), dtype=np.uint8)
    frames = video_frames(video, 4)
    assert frames[0][0] == 0 and frames[-1][0] == 19 and len(frames) == 4
    assert all((f == i).all() for i, f in frames)


def test_pick_sample_positions_spreads_over_splits() -> None:
    picks = pick_sample_positions({"test": 2, "train": 8, "val": 0}, 3)
    assert picks[0] == ("train", 0) and picks[-1] == ("test", 1)
    assert len(picks) == 3
    assert pick_sample_positions({"train": 2}, 5) == [("train", 0), ("train", 1)]
    assert pick_sample_positions({"train": 0}, 3) == []


def test_broken_source_is_reported_not_fatal(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(corpus / "synthetic_xray", out / "synthetic_xray")
    shutil.copytree(corpus / "synthetic_derm", out / "synthetic_derm")
    bad = out / "synthetic_derm" / "v1-synthetic" / MANIFEST_FILE
    bad.write_text("{ not json")
    result = write_report(str(out), tmp_path / "r.html", samples_per_source=1)
    assert [s.source for s in result.failed] == ["synthetic_derm"]
    text = result.path.read_text()
    assert 'id="src-synthetic_xray"' in text and 'id="src-synthetic_derm"' in text
    assert "v1-synthetic" in result.failed[0].error and "cannot open" in result.failed[0].error
    assert "cannot open the dataset" in text
    # An unreadable version pointer is reported the same way, naming the pointer file.
    (out / "synthetic_xray" / "current.json").write_text("[]")
    result = write_report(str(out), tmp_path / "r2.html", samples_per_source=1)
    assert sorted(s.source for s in result.failed) == ["synthetic_derm", "synthetic_xray"]
    assert "current.json" in next(s.error for s in result.failed if s.source == "synthetic_xray")


def test_nothing_to_report_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=re.escape(str(tmp_path))):
        render_report(str(tmp_path))
    assert find_built_sources(str(tmp_path / "absent")) == []


def test_cli_writes_the_report(corpus: Path, tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(report_command)
    dest = tmp_path / "cli.html"
    result = CliRunner().invoke(app, [str(corpus), "--dest", str(dest), "--samples", "1"])
    assert result.exit_code == 0, result.output
    n = len(manifests_on_disk(corpus))
    assert n == 2 + len(IMAGE_SOURCES) + len(SYNTHETIC)
    assert dest.exists() and f"report of {n} sources" in " ".join(result.output.split())
    assert dest.read_text().count('<section class="source"') == n
    empty = CliRunner().invoke(app, [str(tmp_path / "nothing")])
    assert empty.exit_code == 2 and "no built dataset" in " ".join(empty.output.split())


def test_default_destination_is_under_out(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "one"
    shutil.copytree(corpus / "synthetic_ct", out / "synthetic_ct")
    path = render_report(str(out), samples_per_source=1)
    assert path == out / "report.html" and path.exists()
    assert not list(out.glob(".*.tmp")), "temporary file left behind"
    # A dataset root works too: the report covers that one dataset.
    single = render_report(str(out / "synthetic_ct" / "v1-synthetic"), str(tmp_path / "single.html"))
    assert single.read_text().count('<section class="source"') == 1
    assert os.path.getsize(single) > 10_000


def test_docstring_examples() -> None:
    import doctest

    import pipelines.report

    result = doctest.testmod(pipelines.report)
    assert result.attempted >= 5 and result.failed == 0


def test_long_recordings_are_drawn_as_a_window_and_histograms_subsample() -> None:
    from pipelines.report import display_window, plot_channel_histograms, plot_timeseries, subsample

    fs_hz = 200.0
    t = np.arange(int(fs_hz * 600)) / fs_hz  # a 10-minute, 3-channel "EEG"
    eeg = np.stack([50 * np.sin(2 * np.pi * f * t) for f in (2.0, 7.0, 11.0)]).astype(np.float32)
    start, stop = display_window(eeg.shape[-1], fs_hz)
    assert (stop - start) / fs_hz == 10.0 and start / fs_hz == 295.0
    png = plot_timeseries(eeg[:, start:stop], fs_hz=fs_hz, units="uV", start_s=start / fs_hz)
    with Image.open(io.BytesIO(png)) as im:
        assert np.asarray(im.convert("L")).std() > 5
    big = np.arange(5_000_000, dtype=np.int16)
    assert subsample(big, 1000).size <= 1000
    hist = plot_channel_histograms([eeg], "timeseries", units="uV")
    assert hist.startswith(b"\x89PNG")


def test_report_over_an_object_store(tmp_path: Path) -> None:
    out = "memory://climb-report-test/out"
    write_synthetic_dataset(out, "synthetic_derm", with_pointer=True)
    write_synthetic_dataset(out, "synthetic_ct", with_pointer=False)
    found = find_built_sources(out)
    assert [(b.source, b.version) for b in found] == [
        ("synthetic_ct", "v1-synthetic"),
        ("synthetic_derm", "v1-synthetic"),
    ]
    result = write_report(out, tmp_path / "mem.html", samples_per_source=2)
    assert not result.failed
    page = parse_page(result.path.read_text())
    assert set(page.sections) == {"synthetic_ct", "synthetic_derm"}
    samples = {f["source"]: int(f["data-value"]) for f in page.fields if f["data-field"] == "samples_out"}
    assert samples == {"synthetic_ct": 9, "synthetic_derm": 9}


def test_sample_caption_names_window_and_classes(corpus: Path) -> None:
    from pipelines.report import sample_caption

    manifest = manifests_on_disk(corpus)["cpsc2018"]
    classes = manifest["labels"]["classes"]
    multi_hot = [0] * len(classes)
    multi_hot[0] = multi_hot[-1] = 1
    sample = {"sample_id": "item-abc-w001", "window_index": 1, "n_windows": 3, "superclasses": multi_hot}
    caption = sample_caption(sample, "val", manifest, "superclasses")
    assert caption.startswith("val · item-abc-w001 · window 2/3 · ")
    assert caption.endswith(", ".join(sorted([classes[0], classes[-1]])))
