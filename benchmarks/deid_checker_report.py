"""The PS3.15 checker on pydicom's test files, raw and after our de-identification.

Runs ``tests/transforms/dicom/checker.py`` (the test oracle, written from the standard) twice
over every readable file among ``pydicom.data.get_testdata_files()``: once comparing each raw
file with itself (what a "de-identifier" that does nothing leaves), once comparing it with our
engine's output written to and read back from bytes. Images that may carry burned-in text
(ultrasound, secondary capture) are masked with a top-band rule; files that cannot be read, or
whose pixels cannot be decoded for masking, are counted by reason. Writes
``benchmarks/results/deid_checker.json`` and prints a table.

Usage: ``.venv/bin/python benchmarks/deid_checker_report.py``
"""

from __future__ import annotations

import io
import json
import logging
import os
import platform
import sys
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pydicom  # noqa: E402
from pydicom.data import get_testdata_files  # noqa: E402

from tests.transforms.dicom.checker import check_corpus, count_by_kind  # noqa: E402
from transforms.dicom.deid import BurnedInPolicy, deidentify_file, read_dicom, write_dataset  # noqa: E402
from transforms.problems import ItemError  # noqa: E402
from transforms.pseudonyms import DeidKey  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "deid_checker.json"


def main() -> None:
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    key = DeidKey(os.environ.get("CLIMB_DEID_SECRET", "benchmark-only-secret-0123456789").encode())
    policy = BurnedInPolicy("mask", ((0.0, 0.0, 1.0, 0.1),))
    skipped: Counter[str] = Counter()
    pairs, raw_pairs = [], []
    paths = sorted(Path(p) for p in get_testdata_files() if Path(p).is_file())
    for path in paths:
        try:
            original = read_dicom(path)
            out, _ = deidentify_file(path, None, key, "bench", burned_in=policy)
        except ItemError as exc:
            skipped[exc.problem.code] += 1
            continue
        buffer = io.BytesIO()
        write_dataset(out, buffer)
        buffer.seek(0)
        pairs.append((path.name, original, pydicom.dcmread(buffer, force=True)))
        raw_pairs.append((path.name, original, original))
    raw = count_by_kind(check_corpus(raw_pairs))
    ours = count_by_kind(check_corpus(pairs))
    report = {
        "benchmark": "deid_checker",
        "dataset": f"pydicom {pydicom.__version__} bundled test files",
        "files_seen": len(paths),
        "files_checked": len(pairs),
        "files_skipped_by_reason": dict(sorted(skipped.items())),
        "findings_raw": {"total": sum(raw.values()), "by_kind": raw},
        "findings_deidentified": {"total": sum(ours.values()), "by_kind": ours},
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(report, indent=2) + "\n")
    kinds = sorted(set(raw) | set(ours))
    print(f"{'finding':28s} {'raw':>8s} {'de-identified':>14s}")
    for kind in kinds:
        print(f"{kind:28s} {raw.get(kind, 0):8d} {ours.get(kind, 0):14d}")
    print(f"{'total':28s} {sum(raw.values()):8d} {sum(ours.values()):14d}")
    print(f"{len(pairs)} files checked of {len(paths)}; skipped {dict(skipped)} -> {RESULT}")


if __name__ == "__main__":
    main()
