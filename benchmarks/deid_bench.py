"""DICOM de-identification throughput and residue: ours vs dicognito vs pydicom/deid.

Files: every CT, MR and CR image among pydicom's bundled test files (the same files for all
three tools, in the same run). For each tool, each pass parses every file from bytes already in
memory and de-identifies it (no disk I/O, one process); files/s is the best of ``--repeats``
passes. Then every tool's output is written, read back, and run through the PS3.15 checker
(``tests/transforms/dicom/checker.py``) with the same options our engine uses, so each tool's
residue (findings by kind) sits beside its speed.

Tools and settings:

- ours: ``transforms.dicom.deid.deidentify_dataset``, default options (Retain Longitudinal
  Temporal Information with Modified Dates, Retain Patient Characteristics, Clean Descriptors).
- dicognito: ``Anonymizer().anonymize(ds)``, its defaults.
- pydicom/deid: ``replace_identifiers(ds, deid=DeidRecipe(), remove_private=True)``, its
  default recipe (``deid.dicom``).

Writes ``benchmarks/results/deid.json`` and prints a table.

Usage: ``.venv/bin/python benchmarks/deid_bench.py [--repeats 3]``
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pydicom  # noqa: E402
from pydicom.data import get_testdata_files  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402

from tests.transforms.dicom.checker import check_corpus, count_by_kind  # noqa: E402
from transforms.dicom.deid import deidentify_dataset, read_dicom, subject_keys_for_dataset  # noqa: E402
from transforms.problems import ItemError  # noqa: E402
from transforms.pseudonyms import DeidKey  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "deid.json"
MODALITIES = {"CT", "MR", "CR"}


def load_files() -> list[tuple[str, bytes]]:
    """(name, bytes) of every CT/MR/CR image among pydicom's test files."""
    out = []
    for name in sorted(get_testdata_files()):
        path = Path(name)
        if not path.is_file():
            continue
        try:
            ds = read_dicom(path)
        except ItemError:
            continue
        if str(ds.get("Modality", "")) in MODALITIES and "PixelData" in ds:
            out.append((str(path.relative_to(Path(pydicom.__file__).parent / "data")), path.read_bytes()))
    return out


def make_ours() -> Callable[[Dataset], Dataset]:
    key = DeidKey(os.environ.get("CLIMB_DEID_SECRET", "benchmark-only-secret-0123456789").encode())

    def run(ds: Dataset) -> Dataset:
        keys = subject_keys_for_dataset(ds, key, "bench")
        return deidentify_dataset(ds, keys, key, "bench", in_place=True)[0]

    return run


def make_dicognito() -> Callable[[Dataset], Dataset]:
    from dicognito.anonymizer import Anonymizer

    anonymizer = Anonymizer(seed="benchmark")

    def run(ds: Dataset) -> Dataset:
        anonymizer.anonymize(ds)
        return ds

    return run


def make_pydicom_deid() -> Callable[[Dataset], Dataset]:
    from deid.config import DeidRecipe
    from deid.dicom import replace_identifiers

    recipe = DeidRecipe()

    def run(ds: Dataset) -> Dataset:
        return replace_identifiers([ds], deid=recipe, save=False, remove_private=True)[0]

    return run


def _parse(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data), force=True)


def time_pass(
    run: Callable[[Dataset], Dataset], files: list[tuple[str, bytes]]
) -> tuple[float, Counter[str]]:
    """Seconds for one pass over ``files`` (parse + de-identify), and failures by exception type."""
    failures: Counter[str] = Counter()
    start = time.perf_counter()
    for _name, data in files:
        try:
            run(_parse(data))
        except Exception as exc:
            failures[type(exc).__name__] += 1
    return time.perf_counter() - start, failures


def check_outputs(run: Callable[[Dataset], Dataset], files: list[tuple[str, bytes]]) -> dict:
    """Write and read back every output, then run the PS3.15 checker over them."""
    pairs = []
    failures: Counter[str] = Counter()
    for name, data in files:
        try:
            out = run(_parse(data))
            buffer = io.BytesIO()
            out.save_as(buffer, enforce_file_format=False)
            buffer.seek(0)
            pairs.append((name, _parse(data), pydicom.dcmread(buffer, force=True)))
        except Exception as exc:
            failures[f"{type(exc).__name__}"] += 1
    findings = count_by_kind(check_corpus(pairs))
    return {
        "files_checked": len(pairs),
        "failures": dict(failures),
        "checker_findings_total": sum(findings.values()),
        "checker_findings_by_kind": findings,
    }


def measure_cli_folder(n_files: int, workers: int) -> dict:
    """``climb deid dicom``'s engine end to end (read, de-identify, write) on a folder of
    synthetic 512 x 512 CT slices carrying PHI, with ``workers`` processes."""
    import copy
    import tempfile

    import numpy as np

    from pipelines.cli_deid import DicomJob, list_files, run_dicom_job
    from tests.transforms.dicom.synthetic import write_synthetic_corpus
    from transforms.dicom.deid import BurnedInPolicy
    from transforms.dicom.profile import DEFAULT_OPTIONS

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = write_synthetic_corpus(root / "seed")
        template = pydicom.dcmread(corpus.files[0])
        template.Rows = template.Columns = 512
        template.PixelData = np.random.default_rng(0).integers(0, 4095, (512, 512), dtype=np.uint16).tobytes()
        in_dir = root / "in"
        for index in range(n_files):
            ds = copy.deepcopy(template)
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
            ds.InstanceNumber = index + 1
            target = in_dir / f"patient{index % 10}" / f"slice{index:05d}.dcm"
            target.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(target, enforce_file_format=True)
        size = sum(p.stat().st_size for p in in_dir.rglob("*.dcm"))
        key = DeidKey(b"benchmark-only-secret-0123456789")
        job = DicomJob(in_dir, root / "out", key, "bench", DEFAULT_OPTIONS, BurnedInPolicy())
        files = list_files(in_dir)
        start = time.perf_counter()
        results = run_dicom_job(job, files, workers, show_progress=False)
        elapsed = time.perf_counter() - start
    written = sum(r.output is not None for r in results)
    return {
        "files": n_files,
        "written": written,
        "workers": workers,
        "files_per_s": round(n_files / elapsed, 1),
        "mb_per_s": round(size / elapsed / 1e6, 1),
        "what_is_timed": "list + read + de-identify + write each file (temp + rename), worker start-up included",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--cli-files", type=int, default=400, help="synthetic 512x512 CT files for the CLI run"
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    os.environ.setdefault("MESSAGELEVEL", "0")  # pydicom/deid's own logger
    files = load_files()
    tools = {
        "climb (ours)": (make_ours, "climb-etl"),
        "dicognito": (make_dicognito, "dicognito"),
        "pydicom/deid": (make_pydicom_deid, "deid"),
    }
    runners = {label: factory() for label, (factory, _package) in tools.items()}
    best: dict[str, float] = dict.fromkeys(runners, float("inf"))
    parse_best = float("inf")
    for _ in range(args.repeats):  # interleaved, so every tool sees the same machine load
        start = time.perf_counter()
        for _name, data in files:
            _parse(data)
        parse_best = min(parse_best, time.perf_counter() - start)
        for label, run in runners.items():
            elapsed, _failures = time_pass(run, files)
            best[label] = min(best[label], elapsed)
    results = {}
    for label, (_factory, package) in tools.items():
        try:
            package_version = version(package)
        except Exception:
            package_version = "source"
        results[label] = {
            "version": package_version,
            "files_per_s": round(len(files) / best[label], 1),
            "deid_only_ms_per_file": round(1000 * (best[label] - parse_best) / len(files), 2),
            **check_outputs(runners[label], files),
        }
    report = {
        "benchmark": "deid",
        "dataset": f"pydicom {pydicom.__version__} test files, modalities {sorted(MODALITIES)}",
        "files": len(files),
        "total_bytes": sum(len(d) for _, d in files),
        "what_is_timed": "parse from in-memory bytes + de-identify, one process, best of interleaved repeats; "
        "deid_only_ms_per_file subtracts the best parse-only pass",
        "parse_only_files_per_s": round(len(files) / parse_best, 1),
        "repeats": args.repeats,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "results": results,
        "cli_folder": [measure_cli_folder(args.cli_files, w) for w in sorted({1, os.cpu_count() or 1})],
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(report, indent=2) + "\n")
    kinds = sorted({k for r in results.values() for k in r["checker_findings_by_kind"]})
    header = f"{'tool':14s} {'files/s':>9s} {'findings':>9s}  " + " ".join(f"{k[:14]:>14s}" for k in kinds)
    print(f"{len(files)} CT/MR/CR files ({report['total_bytes'] / 1e6:.1f} MB)")
    print(header)
    for label, r in results.items():
        row = " ".join(f"{r['checker_findings_by_kind'].get(k, 0):14d}" for k in kinds)
        print(f"{label:14s} {r['files_per_s']:9.1f} {r['checker_findings_total']:9d}  {row}")
    for run in report["cli_folder"]:
        print(
            f"climb deid dicom, {run['files']} synthetic 512x512 CT files, {run['workers']} worker(s): "
            f"{run['files_per_s']} files/s, {run['mb_per_s']} MB/s"
        )
    print(f"-> {RESULT}")


if __name__ == "__main__":
    main()
