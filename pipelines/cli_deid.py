"""``climb deid``: de-identification engines usable on their own, outside the pipeline.

``climb deid dicom IN_DIR OUT_DIR`` de-identifies every DICOM file under ``IN_DIR``
(recursively) with the PS3.15 Basic Profile engine of :mod:`transforms.dicom.deid` and writes
each one to ``OUT_DIR/<patient pseudonym>/file-<keyed hash>.dcm``. Two files are written
*beside* ``OUT_DIR``, never inside it, because they hold original paths:

- ``<OUT_DIR>.pairs.csv``: ``original,output`` relative paths, one row per file written;
- ``<OUT_DIR>.report.json``: counts, the actions taken, and every file skipped with its reason
  (not DICOM, unreadable, DICOMDIR, burned-in annotation quarantined, ...).

The secret comes from ``CLIMB_DEID_SECRET`` only (never the command line). Files are processed
in parallel worker processes; each output is written to a temporary name and renamed.

Exit codes: 0 done (skipped files are listed in the report); 1 a file failed unexpectedly;
2 usage (missing secret, bad option, output not empty or inside the input).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pydicom.config
import typer

from transforms.dicom.deid import (
    BurnedInPolicy,
    deidentify_dataset,
    read_dicom,
    subject_keys_for_dataset,
    write_dataset,
)
from transforms.dicom.profile import ALL_OPTIONS, DEFAULT_OPTIONS
from transforms.problems import ItemError
from transforms.pseudonyms import DeidKey, MissingSecretError, pseudonymise_id

deid_app = typer.Typer(help="De-identify files outside the pipeline.", no_args_is_help=True)

EXIT_FAILED, EXIT_USAGE = 1, 2
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"


@dataclass(frozen=True)
class DicomJob:
    """Everything a worker needs (sent once per worker process, pickled, never on argv)."""

    in_dir: Path
    out_dir: Path
    key: DeidKey
    namespace: str
    options: frozenset[str]
    burned_in: BurnedInPolicy


@dataclass(frozen=True)
class FileResult:
    """What happened to one input file (``output`` is ``None`` when skipped)."""

    original: str
    output: str | None
    code: str | None
    detail: str
    actions: dict[str, int]


_JOB: DicomJob | None = None


def quiet_pydicom() -> None:
    """Silence pydicom's value warnings: they quote element values (UIDs, names) into logs."""
    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?")
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE


@contextmanager
def quiet_pydicom_here() -> Iterator[None]:
    """:func:`quiet_pydicom` for the duration of a block, then the caller's settings back."""
    logger = logging.getLogger("pydicom")
    level, mode = logger.level, pydicom.config.settings.reading_validation_mode
    with warnings.catch_warnings():
        try:
            quiet_pydicom()
            yield
        finally:
            logger.setLevel(level)
            pydicom.config.settings.reading_validation_mode = mode


def _init_worker(job: DicomJob) -> None:
    global _JOB
    _JOB = job
    quiet_pydicom()


def deidentify_one(job: DicomJob, relative: str) -> FileResult:
    """De-identify one file of the job; never raises (failures become the result's code)."""
    source = job.in_dir / relative
    try:
        ds = read_dicom(source)
        if str(ds.get("SOPClassUID", "")) == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
            return FileResult(
                relative, None, "dicomdir", "DICOMDIR skipped: rebuild it from the output files", {}
            )
        keys = subject_keys_for_dataset(ds, job.key, job.namespace)
        out, actions = deidentify_dataset(
            ds, keys, job.key, job.namespace, job.options, job.burned_in, in_place=True
        )
        name = pseudonymise_id(job.key, job.namespace, "file", relative)
        output = f"{keys.pseudonym}/{name}.dcm"
        target = job.out_dir / output
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
        try:
            write_dataset(out, temporary)
            temporary.replace(target)
        finally:
            temporary.unlink(missing_ok=True)
        return FileResult(relative, output, None, "", dict(actions))
    except ItemError as exc:
        return FileResult(relative, None, exc.problem.code, exc.problem.detail, {})
    except Exception as exc:  # the message may quote data: keep only the type
        return FileResult(relative, None, "error", f"unexpected {type(exc).__name__}", {})


def _deidentify_in_worker(relative: str) -> FileResult:
    assert _JOB is not None, "worker not initialised"
    return deidentify_one(_JOB, relative)


def list_files(in_dir: Path) -> list[str]:
    """Every regular file under ``in_dir``, as sorted POSIX relative paths."""
    return sorted(p.relative_to(in_dir).as_posix() for p in in_dir.rglob("*") if p.is_file())


def parse_options(text: str | None) -> frozenset[str]:
    """``"a,b"`` -> option set; ``None`` -> the defaults; ``"basic"`` -> no options."""
    if text is None:
        return DEFAULT_OPTIONS
    names = {part.strip() for part in text.split(",") if part.strip()}
    if names == {"basic"}:
        return frozenset()
    unknown = names - ALL_OPTIONS
    if unknown:
        raise typer.BadParameter(
            f"unknown options {sorted(unknown)}; choose from {sorted(ALL_OPTIONS)} or 'basic'"
        )
    return frozenset(names)


def parse_mask(rects: list[str] | None) -> BurnedInPolicy:
    """``--mask-rect x0,y0,x1,y1`` (fractions of width/height) -> a masking policy."""
    if not rects:
        return BurnedInPolicy()
    parsed = []
    for rect in rects:
        try:
            x0, y0, x1, y1 = (float(v) for v in rect.split(","))
        except ValueError as exc:
            raise typer.BadParameter(f"--mask-rect wants x0,y0,x1,y1 fractions, got {rect!r}") from exc
        parsed.append((x0, y0, x1, y1))
    try:
        return BurnedInPolicy("mask", tuple(parsed))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def sidecar_paths(out_dir: Path) -> tuple[Path, Path]:
    """``(<OUT_DIR>.pairs.csv, <OUT_DIR>.report.json)``, beside the output folder."""
    out_dir = out_dir.resolve()
    return out_dir.parent / f"{out_dir.name}.pairs.csv", out_dir.parent / f"{out_dir.name}.report.json"


def run_dicom_job(
    job: DicomJob, files: list[str], workers: int, show_progress: bool = True
) -> list[FileResult]:
    """De-identify ``files`` (relative to ``job.in_dir``) with ``workers`` processes."""
    results: list[FileResult] = []
    label = "de-identifying"
    with (
        quiet_pydicom_here(),
        typer.progressbar(length=len(files), label=label, file=sys.stderr, hidden=not show_progress) as bar,
    ):
        if workers <= 1:
            for relative in files:
                results.append(deidentify_one(job, relative))
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(job,)) as pool:
                chunk = max(1, min(64, len(files) // (workers * 8) or 1))
                for result in pool.map(_deidentify_in_worker, files, chunksize=chunk):
                    results.append(result)
                    bar.update(1)
    return results


@deid_app.command("dicom")
def deid_dicom_command(
    in_dir: Path = typer.Argument(..., help="Folder of DICOM files (searched recursively)."),
    out_dir: Path = typer.Argument(..., help="Output folder (created; must be empty and outside IN_DIR)."),
    options: str | None = typer.Option(
        None,
        "--options",
        help="Comma-separated PS3.15 options (e.g. retain-long-modified-dates,retain-patient-chars,"
        "clean-descriptors, the default), or 'basic' for the Basic Profile alone.",
    ),
    namespace: str = typer.Option(
        "dicom",
        "--namespace",
        help="De-identification namespace: pseudonyms and UIDs are consistent within one.",
    ),
    workers: int = typer.Option(
        max(1, os.cpu_count() or 1), "--workers", min=1, help="Worker processes (default: one per CPU)."
    ),
    mask_rect: list[str] | None = typer.Option(
        None,
        "--mask-rect",
        help="Mask this rectangle (x0,y0,x1,y1 as fractions of width/height; repeatable) in images that "
        "may carry burned-in text, instead of skipping them.",
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """De-identify a folder of DICOM files (PS3.15 Basic Profile, Table E.1-1)."""
    try:
        key = DeidKey.from_env()
    except MissingSecretError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    chosen = parse_options(options)
    policy = parse_mask(mask_rect)
    in_dir, out_dir = in_dir.resolve(), out_dir.resolve()
    if not in_dir.is_dir():
        typer.echo(f"error: {in_dir} is not a folder", err=True)
        raise typer.Exit(EXIT_USAGE)
    if out_dir == in_dir or in_dir in out_dir.parents:
        typer.echo("error: OUT_DIR must not be inside IN_DIR (the outputs would be read as inputs)", err=True)
        raise typer.Exit(EXIT_USAGE)
    if out_dir.exists() and any(out_dir.iterdir()):
        typer.echo(f"error: {out_dir} is not empty; choose a new output folder", err=True)
        raise typer.Exit(EXIT_USAGE)
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs_path, report_path = sidecar_paths(out_dir)

    files = list_files(in_dir)
    job = DicomJob(in_dir, out_dir, key, namespace, chosen, policy)
    results = run_dicom_job(job, files, min(workers, max(1, len(files))), show_progress=not quiet)

    with pairs_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["original", "output"])
        for result in results:
            if result.output is not None:
                writer.writerow([result.original, result.output])
    actions: Counter[str] = Counter()
    for result in results:
        actions.update(result.actions)
    skipped = [{"path": r.original, "code": r.code, "detail": r.detail} for r in results if r.output is None]
    by_code = Counter(str(r.code) for r in results if r.output is None)
    report = {
        "files": len(results),
        "written": sum(r.output is not None for r in results),
        "skipped": len(skipped),
        "skipped_by_reason": dict(sorted(by_code.items())),
        "options": sorted(chosen),
        "namespace": namespace,
        "burned_in": policy.to_dict(),
        "key_fingerprint": key.fingerprint(),
        "actions": dict(sorted(actions.items())),
        "skipped_files": skipped,
    }
    report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    typer.echo(
        f"{report['written']} of {report['files']} files de-identified into {out_dir}; "
        f"{report['skipped']} skipped {dict(by_code) if by_code else ''}".rstrip()
    )
    typer.echo(f"pairs: {pairs_path}\nreport: {report_path}")
    if by_code.get("error"):
        raise typer.Exit(EXIT_FAILED)
