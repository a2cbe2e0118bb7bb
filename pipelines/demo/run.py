"""``climb demo``: the whole system on an embedded default, offline, in a few minutes.

1. Generate (once, cached) a small raw release per demo source, laid out exactly like the
   real one: the CinC 2021 re-packaging on PhysioNet for the four ECG sources (wfdb + scipy,
   simulated ECG) and VinDr-CXR 1.0.0 (pydicom CR radiographs and the label CSVs), with
   identifiers planted in the headers.
2. Serve it from a loopback PhysioNet mirror that speaks PhysioNet's protocol (Basic auth,
   Range, directory listings, ``SHA256SUMS.txt``), with credentials generated for this run.
3. Run the real Prefect ``build_corpus`` flow (an ephemeral Prefect server) over every
   implemented source: fetch over HTTP with the real fetchers, index, transform,
   de-identify, validate, shard (Dask ``LocalCluster`` by default), publish.
4. Stream one epoch of every split back through the streaming reader and check every sample
   is seen exactly once.
5. Print a summary table and write the HTML build report.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from pipelines.console import console
from pipelines.demo.ecg_release import write_cinc_release

MIRROR_PROJECT = Path("challenge-2021") / "1.0.3"
MIRROR_VERSION = "demo-mirror-v3"
DEFAULT_RECORDS = 60
DEMO_SOURCES = ("ptbxl", "chapman_shaoxing", "georgia", "cpsc2018", "vindr_cxr")
VINDR_PROJECT = Path("vindr-cxr") / "1.0.0"


def mirror_cache_dir(records: int) -> Path:
    base = Path(os.environ.get("CLIMB_CACHE_DIR", Path.home() / ".cache" / "climb-etl"))
    return base / f"{MIRROR_VERSION}-{records}"


def prepare_mirror(records: int = DEFAULT_RECORDS, sources: Sequence[str] = DEMO_SOURCES) -> Path:
    """The mirror's root folder (``<root>/challenge-2021/1.0.3/training/...``), generated on first use.

    ``<root>/planted.json`` lists every identifier planted in the headers (record names,
    patient names, MRNs, recording dates), for the checks that grep the outputs.
    """
    from pipelines.fetch.mirror.server import write_sha256sums

    root = mirror_cache_dir(records)
    done = root / "planted.json"
    if done.exists() and set(json.loads(done.read_text())) >= set(sources):
        return root
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-mirror-", dir=root.parent if root.parent.exists() else None))
    planted: dict[str, list[dict[str, Any]]] = {}
    project = tmp / MIRROR_PROJECT
    for i, source in enumerate(sources):
        if source == "vindr_cxr":
            from pipelines.demo.vindr_release import write_vindr_release

            # Radiographs are large: a third as many images as ECG records.
            records_written = write_vindr_release(tmp / VINDR_PROJECT, max(5, records // 3), seed=100 + i)
            write_sha256sums(tmp / VINDR_PROJECT)
        else:
            durations = (6.0, 60.0) if source == "cpsc2018" else (10.0, 10.0)
            records_written = write_cinc_release(
                project, source, records, seed=100 + i, durations_s=durations
            )
        planted[source] = [
            {
                "record": r.record,
                "patient_name": r.patient_name,
                "mrn": r.mrn,
                "recorded": r.recorded.isoformat(),
                "age": r.age,
            }
            for r in records_written
        ]
    write_sha256sums(project)
    (tmp / "planted.json").write_text(json.dumps(planted, indent=1))
    root.parent.mkdir(parents=True, exist_ok=True)
    if root.exists():
        import shutil

        shutil.rmtree(root)
    os.replace(tmp, root)
    return root


@contextmanager
def running_mirror(root: Path):
    """A PhysioNet mirror on loopback with one-off credentials, exported for the fetchers.

    The password lives only in this process's environment (``PHYSIONET_PASSWORD``), the way a
    user's would; it is never printed, logged or passed on a command line.
    """
    from pipelines.fetch.mirror.physionet import PhysioNetMirror

    user = f"demo-{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(24)
    saved = {k: os.environ.get(k) for k in ("PHYSIONET_USERNAME", "PHYSIONET_PASSWORD")}
    os.environ["PHYSIONET_USERNAME"] = user
    os.environ["PHYSIONET_PASSWORD"] = password
    mirror = PhysioNetMirror(root, users={user: password}).start()
    try:
        yield mirror
    finally:
        mirror.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def shared_dask_cluster(backend: str, workers: int):
    """One Dask ``LocalCluster`` for every source of the demo (not one per source): yields its
    scheduler address, or None for the other backends."""
    if backend != "dask":
        yield None
        return
    import logging

    from distributed import LocalCluster

    with LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        memory_limit="4GiB",
        silence_logs=logging.WARNING,
    ) as cluster:
        yield cluster.scheduler_address
        logging.getLogger("distributed").setLevel(logging.WARNING)  # Prefect's setup lowered it


@dataclass
class StreamCheck:
    source: str
    samples_expected: int
    samples_seen: int
    unique_seen: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.samples_seen == self.unique_seen == self.samples_expected


def stream_epoch(dataset_url: str, source: str, batch_size: int = 64) -> StreamCheck:
    """One shuffled epoch of every split through the streaming reader (NumPy batches)."""
    from manifests import open_dataset
    from manifests.stream import numpy_batches

    dataset = open_dataset(dataset_url)
    expected = int(dataset.manifest["counts"]["samples_out"])
    seen: list[str] = []
    started = time.perf_counter()
    for split in dataset.splits:
        view = dataset.split(split)
        if len(view) == 0:
            continue
        for batch in numpy_batches(view, batch_size, shuffle=True, seed=0, epoch=0):
            seen.extend(str(s) for s in batch["sample_id"])
    return StreamCheck(source, expected, len(seen), len(set(seen)), time.perf_counter() - started)


@dataclass
class DemoResult:
    out: Path
    summaries: dict[str, dict[str, Any]]
    streams: dict[str, StreamCheck]
    report: Path | None
    seconds: float
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and all(s.ok for s in self.streams.values())


def summary_table(result: DemoResult) -> Table:
    table = Table(title=f"climb demo: {len(result.summaries)} sources in {result.seconds:.0f} s")
    for col in (
        "source",
        "items",
        "samples",
        "quarantined (top reasons)",
        "shards",
        "MB",
        "records/s",
        "epoch check",
    ):
        table.add_column(
            col, justify="left" if col.startswith(("source", "quarantined", "epoch")) else "right"
        )
    for source, s in sorted(result.summaries.items()):
        reasons = Counter(s.get("quarantine_reasons", {})).most_common(2)
        reason_text = f" ({', '.join(f'{c} {n}' for c, n in reasons)})" if reasons else ""
        stream = result.streams.get(source)
        check = (
            f"[green]{stream.samples_seen} seen once[/]"
            if stream and stream.ok
            else f"[red]{stream.samples_seen if stream else 0}/{s['samples_out']}[/]"
        )
        table.add_row(
            source,
            str(s["items_in"]),
            str(s["samples_out"]),
            f"{s['quarantined']}{reason_text}",
            str(s["shards"]),
            f"{s['bytes'] / 1e6:.1f}",
            f"{s.get('items_per_s', 0):.0f}",
            check,
        )
    return table


def run_demo(
    out: str | Path = "climb-demo-out",
    *,
    sources: Sequence[str] | None = None,
    backend: str = "dask",
    workers: int = 2,
    records: int = DEFAULT_RECORDS,
    report: bool = True,
) -> DemoResult:
    """Run the demo end to end (see the module docstring). Never raises for a failed source:
    failures are collected in the result (the CLI exits non-zero on them)."""
    started = time.perf_counter()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    chosen = tuple(sources or DEMO_SOURCES)
    unknown = [s for s in chosen if s not in DEMO_SOURCES]
    if unknown:
        raise ValueError(f"the demo mirror has no release for {unknown}; choose from {list(DEMO_SOURCES)}")
    os.environ.setdefault("PREFECT_HOME", str(out / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    if not os.environ.get("CLIMB_DEID_SECRET"):
        # A one-off random secret, not a built-in default: the demo's pseudonyms are not meant to
        # be stable across runs. Real builds must set their own (see README).
        os.environ["CLIMB_DEID_SECRET"] = secrets.token_hex(32)
        console.print("demo: CLIMB_DEID_SECRET not set; using a random one-off secret for this run")

    with console.status("demo: generating the raw releases (first run only)..."):
        root = prepare_mirror(records, DEMO_SOURCES)
    from pipelines.flows.build import build_corpus

    summaries: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    built_root = out / "built"
    options: dict[str, Any] = {"backend": backend, "workers": workers}
    with running_mirror(root) as mirror, shared_dask_cluster(backend, workers) as address:
        if address:
            options["dask_address"] = address
        console.print(f"demo: PhysioNet mirror on {mirror.url} (Basic auth, one-off credentials)")
        with console.status(f"demo: Prefect build_corpus over {', '.join(chosen)} ({backend} backend)..."):
            try:
                summaries = build_corpus(
                    str(built_root),
                    sources=list(chosen),
                    raw_root=None,
                    endpoints={"physionet": mirror.url},
                    config={"items_per_shard": 64},
                    options=options,
                )
            except Exception as exc:  # the flow's own message names each failed source
                failures.append(str(exc))
    streams: dict[str, StreamCheck] = {}
    for source, summary in summaries.items():
        streams[source] = stream_epoch(summary["dataset_url"], source)
        if not streams[source].ok:
            failures.append(
                f"{source}: streamed {streams[source].samples_seen} samples, expected {summary['samples_out']}"
            )
    report_path = None
    if report and summaries:
        from pipelines.report import render_report

        report_path = render_report(str(built_root), str(out / "report.html"))
    return DemoResult(out, summaries, streams, report_path, time.perf_counter() - started, failures)
