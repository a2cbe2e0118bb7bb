"""The demo mirror's content: one small raw release per implemented source, on the host its
manifest names, generated once and cached.

Layout of the cache folder (``$CLIMB_CACHE_DIR`` or ``~/.cache/climb-etl``, then
``demo-mirror-v5-<records>/``), one folder per protocol the embedded mirror speaks:

* ``physionet/``: PhysioNet projects (``challenge-2021/1.0.3`` for the four CinC ECG sources,
  ``vindr-cxr/1.0.0``, ``mimic-cxr-jpg/2.0.0``, ``vindr-mammo/1.0.0``), each with its
  ``SHA256SUMS.txt``. The open ``challenge-2021`` project is also uploaded to the S3 endpoint as
  PhysioNet's open-data bucket lays it out (``physionet-open/challenge-2021/1.0.3/``).
* ``kaggle/datasets/<owner>/<slug>/``: the two Kaggle datasets.
* ``tcia/<Collection>/<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/``: the NBIA collections.
* ``https/``: plain HTTPS downloads: the TCIA pages' label files (``wp-content/uploads/...``)
  and CheXpert's zip behind Stanford AIMI's time-limited link.
* ``pins/`` and ``pins-https/``: ``<id>.checksums.tsv`` for the hosts that publish no SHA-256
  (Kaggle, NBIA zips, the manual CheXpert folder; the HTTPS label files): the demo's catalog.
* ``planted.json``: per source, every identifier and date planted in the raw files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIRROR_VERSION = "demo-mirror-v5"

#: The S3 bucket and prefix of PhysioNet's open data on AWS (Registry of Open Data).
PHYSIONET_OPEN_BUCKET = "physionet-open"
#: Where Stanford AIMI's time-limited CheXpert link points (an Azure blob; the demo serves the
#: same path over plain HTTPS).
CHEXPERT_URL = "https://aimistanforddatasets01.blob.core.windows.net/chexpertchestxrays-u20210408/"
CHEXPERT_ZIP = "CheXpert-v1.0.zip"
#: The TCIA pages' downloads (label files the NBIA API does not serve).
TCIA_PAGES_URL = "https://www.cancerimagingarchive.net/wp-content/uploads/"


@dataclass(frozen=True)
class DemoSource:
    """How the demo serves one source.

    Attributes:
        id: source id.
        host: the protocol the demo fetches it over: ``physionet``, ``s3`` (PhysioNet's open
            bucket), ``kaggle``, ``tcia`` (+ the label file over ``https``), or ``manual``
            (CheXpert: a zip over ``https``, unpacked into the manual folder, verified).
        project: the PhysioNet project folder (``<slug>/<version>``) or Kaggle dataset, or TCIA
            collection.
    """

    id: str
    host: str
    project: str


DEMO_SOURCES_SPEC: tuple[DemoSource, ...] = (
    DemoSource("ptbxl", "physionet", "challenge-2021/1.0.3"),
    DemoSource("chapman_shaoxing", "physionet", "challenge-2021/1.0.3"),
    DemoSource("georgia", "s3", "challenge-2021/1.0.3"),
    DemoSource("cpsc2018", "physionet", "challenge-2021/1.0.3"),
    DemoSource("vindr_cxr", "physionet", "vindr-cxr/1.0.0"),
    DemoSource("chexpert", "manual", "CheXpert-v1.0"),
    DemoSource("mimic_cxr", "physionet", "mimic-cxr-jpg/2.0.0"),
    DemoSource("covid19_xray", "kaggle", "darshan1504/covid19-detection-xray-dataset"),
    DemoSource("coronahack", "kaggle", "praveengovi/coronahack-chest-xraydataset"),
    DemoSource("vindr_mammo", "physionet", "vindr-mammo/1.0.0"),
    DemoSource("cbis_ddsm", "tcia", "CBIS-DDSM"),
    DemoSource("cmmd", "tcia", "CMMD"),
)
SPEC = {s.id: s for s in DEMO_SOURCES_SPEC}
DEMO_SOURCES = tuple(SPEC)
ECG_SOURCES = ("ptbxl", "chapman_shaoxing", "georgia", "cpsc2018")


def cache_root() -> Path:
    return Path(os.environ.get("CLIMB_CACHE_DIR", Path.home() / ".cache" / "climb-etl"))


def mirror_cache_dir(records: int) -> Path:
    return cache_root() / f"{MIRROR_VERSION}-{records}"


def sizes_for(records: int) -> dict[str, int]:
    """Release sizes from ``--records`` (the ECG record count): images are far heavier than ECG
    records (each is resampled to the manifest's 2048-pixel canvas), so fewer."""
    return {
        "ecg": records,
        "vindr_cxr": max(5, records // 4),
        "chexpert": max(2, records // 10),  # training patients; two frontal views each, + valid
        "mimic_cxr": max(3, records // 8),  # studies, two views each
        "covid19_xray": max(1, records // 30),  # per class and split
        "coronahack": 1,  # per metadata case and split (6 cases, 2 outside the classes)
        "vindr_mammo": max(2, records // 20),  # studies, four views each
        "cmmd": max(3, records // 10),  # patients
        "cbis_ddsm": max(4, records // 6),  # full mammograms
    }


def sha256_path(path: Path) -> str:
    from pipelines.fetch.download import sha256_file

    return sha256_file(path)


def write_pins(folder: Path, source: str, files: dict[str, Path]) -> Path:
    """``<folder>/<source>.checksums.tsv`` (path, size, SHA-256) for ``files`` (host path -> file)."""
    from pipelines.fetch.checksums import PinnedChecksum, write_checksums_tsv

    pins = {rel: PinnedChecksum(p.stat().st_size, sha256_path(p)) for rel, p in sorted(files.items())}
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{source}.checksums.tsv"
    write_checksums_tsv(out, pins)
    return out


def _files_below(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- one generator per source


def _gen_ecg(tmp: Path, sources: Sequence[str], records: int) -> dict[str, list[dict[str, Any]]]:
    from pipelines.demo.ecg_release import write_cinc_release

    project = tmp / "physionet" / "challenge-2021" / "1.0.3"
    planted: dict[str, list[dict[str, Any]]] = {}
    for source in sources:
        seed = 100 + ECG_SOURCES.index(source)
        durations = (6.0, 60.0) if source == "cpsc2018" else (10.0, 10.0)
        written = write_cinc_release(
            project, source, records, seed=seed, durations_s=durations, via_wfdb=False
        )
        planted[source] = [
            {
                "record": r.record,
                "split": "",
                "identifiers": [r.record, r.patient_name, r.mrn],
                "dates": [r.recorded.strftime("%Y%m%d")],
                # the shifted dates of other records can fall on this day: search the date with
                # its time of day (kept by whole-week shifts, so never equal after a shift)
                "datetimes": [r.recorded.strftime("%Y-%m-%dT%H:%M"), r.recorded.strftime("%Y-%m-%d %H:%M")],
            }
            for r in written
        ]
    return planted


def _gen_image(tmp: Path, source: str, records: int) -> dict[str, list[dict[str, Any]]]:
    """Write one 2D source's release (and its pins), return its planted list."""
    from pipelines.demo import cxr_release as cxr
    from pipelines.demo import mammo_release as mammo

    n = sizes_for(records)[source]
    spec = SPEC[source]
    if source == "vindr_cxr":
        release = cxr.write_vindr_cxr_release(tmp / "physionet" / spec.project, n, seed=200)
    elif source == "mimic_cxr":
        release = cxr.write_mimic_cxr_release(tmp / "physionet" / spec.project, n, seed=201)
    elif source == "vindr_mammo":
        release = mammo.write_vindr_mammo_release(tmp / "physionet" / spec.project, n, seed=202)
    elif source in ("covid19_xray", "coronahack"):
        folder = tmp / "kaggle" / "datasets" / spec.project
        if source == "covid19_xray":
            release = cxr.write_covid19_xray_release(folder, n, seed=203, colour_every=3)
        else:
            release = cxr.write_coronahack_release(folder, n, seed=204)
        write_pins(tmp / "pins", source, _files_below(folder))
    elif source in ("cmmd", "cbis_ddsm"):
        from pipelines.fetch.mirror.tcia import write_series_zip, zip_cache_dir

        collection = tmp / "tcia" / spec.project
        pages = tmp / "https" / "wp-content" / "uploads"
        if source == "cmmd":
            release = mammo.write_cmmd_release(collection, pages, n, seed=205)
            label_names: Sequence[str] = (mammo.CMMD_XLSX,)
        else:
            release = mammo.write_cbis_ddsm_release(collection, pages, n, seed=206)
            label_names = mammo.CBIS_FILES
        zips = zip_cache_dir(tmp / "tcia")
        pinned = {}
        for series in sorted(collection.glob("*/*/*")):
            patient, study, uid = series.relative_to(collection).parts
            pinned[f"{patient}/{study}/{uid}.zip"] = write_series_zip(series, zips / f"{uid}.zip")
        write_pins(tmp / "pins", source, pinned)
        write_pins(tmp / "pins-https", source, {name: pages / name for name in label_names})
    elif source == "chexpert":
        staging = tmp / "chexpert-staging"
        release = cxr.write_chexpert_release(staging, n, seed=207)
        write_pins(tmp / "pins", source, _files_below(staging))
        target = tmp / "https" / "chexpertchestxrays-u20210408" / CHEXPERT_ZIP
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zf:  # JPEGs: deflate gains nothing
            for rel, path in _files_below(staging).items():
                zf.writestr(zipfile.ZipInfo(rel, date_time=(2019, 1, 22, 0, 0, 0)), path.read_bytes())
        write_pins(tmp / "pins-https", source, {CHEXPERT_ZIP: target})
        shutil.rmtree(staging)
    else:
        raise ValueError(f"no demo generator for {source!r}")
    skipped = [{**item.to_json(), "skipped": True} for item in release.skipped]  # not items by design
    return {source: [*(item.to_json() for item in release.items), *skipped]}


def _generate_group(tmp: str, group: Sequence[str], records: int) -> dict[str, list[dict[str, Any]]]:
    """Generate a group of sources (run in a worker process)."""
    planted: dict[str, list[dict[str, Any]]] = {}
    ecg = [s for s in group if s in ECG_SOURCES]
    if ecg:
        planted.update(_gen_ecg(Path(tmp), ecg, records))
    for source in group:
        if source not in ECG_SOURCES:
            planted.update(_gen_image(Path(tmp), source, records))
    return planted


def _balanced_groups(sources: Sequence[str], workers: int) -> list[list[str]]:
    """ECG (one ECGSYN simulation shared by the four) in one group, images spread over the others."""
    ecg = [s for s in sources if s in ECG_SOURCES]
    images = [s for s in sources if s not in ECG_SOURCES]
    groups: list[list[str]] = [ecg] if ecg else []
    lanes = max(1, workers - len(groups)) if images else 0
    image_groups: list[list[str]] = [[] for _ in range(lanes)]
    for i, source in enumerate(images):
        image_groups[i % lanes].append(source)
    return [g for g in groups + image_groups if g]


def prepare_mirror(
    records: int,
    sources: Sequence[str] = DEMO_SOURCES,
    *,
    workers: int = 2,
    on_progress: Callable[[str], None] | None = None,
) -> Path:
    """The mirror's cache folder with every release in ``sources``, generated on first use (in
    ``workers`` processes) and published by rename, so a killed run never leaves half a mirror."""
    root = mirror_cache_dir(records)
    done = root / "planted.json"
    if done.exists() and set(json.loads(done.read_text())) >= set(sources):
        return root
    wanted = list(dict.fromkeys([*sources, *(json.loads(done.read_text()) if done.exists() else [])]))
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-mirror-", dir=root.parent))
    planted: dict[str, list[dict[str, Any]]] = {}
    groups = _balanced_groups(wanted, workers)
    try:
        if workers > 1 and len(groups) > 1:
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(len(groups), mp_context=ctx) as pool:
                futures = [pool.submit(_generate_group, str(tmp), g, records) for g in groups]
                for future in futures:
                    planted.update(future.result())
                    if on_progress:
                        on_progress(", ".join(sorted(planted)))
        else:
            for group in groups:
                planted.update(_generate_group(str(tmp), group, records))
        from pipelines.fetch.mirror.server import write_sha256sums

        physionet = tmp / "physionet"
        for source in wanted:
            spec = SPEC[source]
            if spec.host in ("physionet", "s3"):
                project = physionet / spec.project
                if not (project / "SHA256SUMS.txt").exists():
                    write_sha256sums(project)
        (tmp / "planted.json").write_text(json.dumps(planted, indent=1, sort_keys=True))
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)  # the TCIA zip cache (.tcia-nbia-zips) is inside: it moves too
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
