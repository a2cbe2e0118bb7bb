"""``climb demo``: the whole system on an embedded default, offline, in a few minutes.

1. Generate (once, cached) a small raw release per implemented source, laid out exactly like
   the real one, with identifiers planted in the headers (:mod:`pipelines.demo.releases`).
2. Serve each from a loopback mirror speaking the protocol of the host its manifest names:
   PhysioNet (Basic auth with credentials generated for this run, ``SHA256SUMS.txt``), PhysioNet's
   open-data bucket on an S3 endpoint (moto's server), Kaggle's API, TCIA's NBIA API, and plain
   HTTPS (the TCIA pages' label files; CheXpert's zip behind Stanford AIMI's link, unpacked into
   the manual-download folder and verified by the manual fetcher).
3. Fetch every source through the real fetchers (``fetch_source``): listed, downloaded,
   verified against the host's or the catalog's SHA-256, published, logged.
4. Run the real Prefect ``build_corpus`` flow (an ephemeral Prefect server, started in the
   background while the releases are generated) over every source: index, transform,
   de-identify, validate, shard (one Dask ``LocalCluster`` shared by all sources by default),
   publish.
5. Stream one epoch of every split back through the streaming reader and check every sample
   is seen exactly once; print a summary table and write the HTML build report.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from pipelines.console import console
from pipelines.demo.releases import (
    CHEXPERT_URL,
    DEMO_SOURCES,
    PHYSIONET_OPEN_BUCKET,
    SPEC,
    TCIA_PAGES_URL,
    mirror_cache_dir,
    prepare_mirror,
)

__all__ = ["DEMO_SOURCES", "DemoResult", "mirror_cache_dir", "run_demo", "summary_table"]

log = logging.getLogger("climb.demo")
DEFAULT_RECORDS = 60
#: What the summary table says each host is.
HOST_LABELS = {
    "physionet": "PhysioNet",
    "s3": "S3 (physionet-open)",
    "kaggle": "Kaggle API",
    "tcia": "TCIA + HTTPS",
    "manual": "HTTPS + manual",
}
_CREDENTIAL_VARS = ("PHYSIONET_USERNAME", "PHYSIONET_PASSWORD", "KAGGLE_USERNAME", "KAGGLE_KEY")


@dataclass
class Mirrors:
    """The running loopback hosts: base URLs by host kind, for ``fetch_source(endpoints=...)``."""

    endpoints: dict[str, str]
    servers: list[Any] = field(default_factory=list)


@contextmanager
def running_mirrors(root: Path, kinds: set[str]) -> Iterator[Mirrors]:
    """Start the loopback hosts ``kinds`` needs, with one-off credentials, and stop them after.

    Credentials live only in this process's environment (``PHYSIONET_*``, ``KAGGLE_*``), the way
    a user's would, for the duration; they are never printed, logged or put on a command line.
    """
    saved = {k: os.environ.get(k) for k in _CREDENTIAL_VARS}
    mirrors = Mirrors({})
    with ExitStack() as stack:

        def serve(name: str, server: Any) -> None:
            server.start()
            stack.callback(server.stop)
            mirrors.endpoints[name] = server.url
            mirrors.servers.append(server)

        try:
            if kinds & {"physionet"}:
                from pipelines.fetch.mirror.physionet import PhysioNetMirror

                user, password = f"demo-{secrets.token_hex(4)}", secrets.token_urlsafe(24)
                os.environ["PHYSIONET_USERNAME"], os.environ["PHYSIONET_PASSWORD"] = user, password
                serve("physionet", PhysioNetMirror(root / "physionet", users={user: password}))
            if kinds & {"kaggle"}:
                from pipelines.fetch.mirror.kaggle import KaggleMirror

                user, key = f"demo{secrets.token_hex(4)}", secrets.token_hex(16)
                os.environ["KAGGLE_USERNAME"], os.environ["KAGGLE_KEY"] = user, key
                serve("kaggle", KaggleMirror(root / "kaggle", users={user: key}))
            if kinds & {"tcia"}:
                from pipelines.fetch.mirror.tcia import TciaMirror

                serve("tcia", TciaMirror(root / "tcia"))
            if kinds & {"tcia", "manual"}:
                from pipelines.fetch.mirror.server import StaticMirror

                serve("https", StaticMirror(root / "https"))
            if kinds & {"s3"}:
                mirrors.endpoints["s3"] = stack.enter_context(_s3_endpoint(root))
            yield mirrors
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@contextmanager
def _s3_endpoint(root: Path) -> Iterator[str]:
    """moto's S3 server on loopback holding PhysioNet's open bucket (the CinC 2021 project)."""
    import json
    import socket

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        import s3fs

        # moto accepts any key pair; these are not credentials of anything
        fs = s3fs.S3FileSystem(key="demo-upload", secret="demo-upload", client_kwargs={"endpoint_url": url})
        fs.mkdir(PHYSIONET_OPEN_BUCKET)
        # public read, as the real open-data bucket: the fetcher reads it anonymously
        arn = f"arn:aws:s3:::{PHYSIONET_OPEN_BUCKET}"
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "PublicRead",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": ["s3:GetObject", "s3:ListBucket"],
                    "Resource": [arn, f"{arn}/*"],
                }
            ],
        }
        fs.call_s3("put_bucket_policy", Bucket=PHYSIONET_OPEN_BUCKET, Policy=json.dumps(policy))
        # the bucket holds what the demo fetches from it: Georgia's folder of the CinC 2021 project
        from pipelines.demo.ecg_release import CINC_LAYOUT

        rel = f"training/{CINC_LAYOUT['georgia'][0]}"
        project = root / "physionet" / SPEC["georgia"].project
        prefix = f"{PHYSIONET_OPEN_BUCKET}/{SPEC['georgia'].project}"
        fs.put(str(project / rel) + "/", f"{prefix}/{rel}/", recursive=True)
        fs.put(str(project / "SHA256SUMS.txt"), f"{prefix}/SHA256SUMS.txt")
        yield url
    finally:
        server.stop()


def _env_credentials() -> Any:
    """Only the demo's own environment credentials: never the user's ``~/.netrc``,
    ``kaggle.json`` or Prefect blocks, which must not be sent to the loopback mirror."""
    from pipelines.fetch.credentials import ChainCredentials, EnvCredentials

    scopes = {
        "physionet": ("PHYSIONET_USERNAME", "PHYSIONET_PASSWORD"),
        "kaggle": ("KAGGLE_USERNAME", "KAGGLE_KEY"),
    }
    return ChainCredentials([EnvCredentials(scopes)])


def fetch_demo_source(source: str, root: Path, raw_root: Path, mirrors: Mirrors) -> dict[str, Any]:
    """Fetch one source from the mirror with the real fetchers into ``raw_root/<source>``."""
    from manifests.schema import load_source_manifest
    from pipelines.fetch.source import fetch_source

    spec = SPEC[source]
    manifest = load_source_manifest(source)
    dest = raw_root / source
    common: dict[str, Any] = {
        "endpoints": mirrors.endpoints,
        "credentials": _env_credentials(),
        "progress": False,
        "checksums_dir": root / "pins",
    }
    started = time.perf_counter()
    if spec.host == "s3":
        # PhysioNet publishes its open projects on AWS as s3://physionet-open/<slug>/<version>/
        host = manifest.host.model_copy(
            update={"kind": "s3", "url": f"s3://{PHYSIONET_OPEN_BUCKET}/{spec.project}/"}
        )
        manifest = manifest.model_copy(update={"host": host})
        files = f"{manifest.host.dataset or ''}/*".lstrip("/") if manifest.host.dataset else None
        _pin_from_sha256sums(root, spec, manifest.id)
        log_ = fetch_source(manifest, dest, files=files, **common)
    elif spec.host == "tcia":
        # the label file comes from the collection's TCIA page (plain HTTPS), the series from NBIA
        _fetch_https(manifest, TCIA_PAGES_URL, dest, root, mirrors)
        log_ = fetch_source(manifest, dest, **common)
    elif spec.host == "manual":
        # CheXpert: Stanford AIMI's time-limited link (HTTPS) to a zip, unpacked into the
        # manual-download folder, then verified and published by the manual fetcher
        manual = raw_root.parent / "manual"
        _fetch_https(manifest, CHEXPERT_URL, manual / source, root, mirrors)
        log_ = fetch_source(manifest, dest, manual_dir=str(manual), **common)
    else:
        log_ = fetch_source(manifest, dest, **common)
    return {
        "source": source,
        "host": spec.host,
        "files": len(log_.files),
        "bytes": sum(f.size_bytes for f in log_.files),
        "seconds": time.perf_counter() - started,
    }


def _pin_from_sha256sums(root: Path, spec: Any, source: str) -> None:
    """S3 ETags are not SHA-256: pin the bucket's files from the project's ``SHA256SUMS.txt``
    (paths relative to the bucket prefix), as ``climb fetch --register-checksums`` would."""
    from pipelines.fetch.checksums import PinnedChecksum, parse_sha256sums, write_checksums_tsv

    project = root / "physionet" / spec.project
    sums = parse_sha256sums((project / "SHA256SUMS.txt").read_text())
    out = root / "pins" / f"{source}.checksums.tsv"
    if not out.exists():
        pins = {p: PinnedChecksum((project / p).stat().st_size, c.sha256) for p, c in sums.items()}
        write_checksums_tsv(out, pins)


def _fetch_https(manifest: Any, real_url: str, dest: Path, root: Path, mirrors: Mirrors) -> None:
    from pipelines.fetch.source import fetch_source

    host = manifest.host.model_copy(update={"kind": "https", "url": real_url, "dataset": None})
    fetch_source(
        manifest.model_copy(update={"host": host}),
        dest,
        endpoints={"https": mirrors.endpoints["https"]},
        credentials=_env_credentials(),
        progress=False,
        checksums_dir=root / "pins-https",
    )


@contextmanager
def shared_dask_cluster(backend: str, workers: int) -> Iterator[str | None]:
    """One Dask ``LocalCluster`` for every source of the demo (not one per source): yields its
    scheduler address, or None for the other backends."""
    if backend != "dask":
        yield None
        return
    import dask
    from distributed import Client, fire_and_forget

    from pipelines.backends import BackendOptions
    from pipelines.backends.dask import QUIET_CONFIG, local_cluster

    logging.getLogger("distributed").setLevel(logging.WARNING)
    # started as the Dask backend starts its own (quiet profiler and monitors, glibc's malloc)
    options = BackendOptions(workers=workers, threads_per_worker=1, max_memory="4GiB")
    with local_cluster(options) as cluster, dask.config.set(QUIET_CONFIG):
        # not the default client, not a context manager: this may be entered and left on
        # different threads (BackgroundCluster)
        client = Client(cluster, set_as_default=False)
        try:
            # import the transform path in the workers now, while the main process fetches
            for worker in client.scheduler_info()["workers"]:
                fire_and_forget(client.submit(_warm_worker, workers=[worker], pure=False))
            yield cluster.scheduler_address
        finally:
            client.close()
        logging.getLogger("distributed").setLevel(logging.WARNING)  # Prefect's setup lowered it


class BackgroundCluster:
    """:func:`shared_dask_cluster` entered in a background thread: its worker processes start
    (and import the transform path) while the main process generates and fetches."""

    def __init__(self, backend: str, workers: int) -> None:
        self._context = shared_dask_cluster(backend, workers)
        self._entered = False
        self.address: str | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._enter, name="dask-cluster-start", daemon=True)

    def _enter(self) -> None:
        try:
            self.address = self._context.__enter__()
            self._entered = True
        except BaseException as exc:  # re-raised by wait()
            self.error = exc

    def start(self) -> BackgroundCluster:
        self._thread.start()
        return self

    def wait(self) -> str | None:
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.address

    def close(self) -> None:
        self._thread.join()
        if self._entered:
            self._entered = False
            self._context.__exit__(None, None, None)


def _warm_worker() -> None:
    import pipelines.stages.build
    import pipelines.stages.image2d_source  # noqa: F401
    import transforms.dicom.deid  # noqa: F401


class EphemeralPrefectServer:
    """Prefect's ephemeral API server, started early as a subprocess so it imports and migrates
    its database while the releases are generated and fetched.

    It is the process Prefect itself starts for a flow run without ``PREFECT_API_URL``
    (``SubprocessASGIServer``: uvicorn serving ``prefect.server.api.server:create_app``, no UI,
    marked ephemeral), launched by the demo instead so the demo's own process never imports the
    server. ``PREFECT_API_URL`` points the flow at it; it is stopped when the demo ends. A
    ``PREFECT_API_URL`` already set (a real server) is used as it is.
    """

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.api_url = os.environ.get("PREFECT_API_URL") or None

    def start(self) -> EphemeralPrefectServer:
        if self.api_url:
            return self
        import importlib.util
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        spec = importlib.util.find_spec("prefect")
        assert spec is not None and spec.origin is not None, "prefect is not installed"
        app_dir = Path(spec.origin).parent.parent
        env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--app-dir",
                    str(app_dir),
                    "--factory",
                    "prefect.server.api.server:create_app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--log-level",
                    "error",
                    "--lifespan",
                    "on",
                ],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.api_url = f"http://127.0.0.1:{port}/api"
        os.environ["PREFECT_API_URL"] = self.api_url
        return self

    def wait(self, timeout_s: float = 180.0) -> None:
        """Block until the API answers ``/health``.

        Raises:
            RuntimeError: the server exited or did not answer in time (its log is named).
        """
        import urllib.error
        import urllib.request

        if self.process is None or self.api_url is None:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the Prefect server exited with code {self.process.returncode}; see {self.log_path}"
                )
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the Prefect server did not answer within {timeout_s:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        os.environ.pop("PREFECT_API_URL", None)


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
    fetches: dict[str, dict[str, Any]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures and all(s.ok for s in self.streams.values())


def summary_table(result: DemoResult) -> Table:
    table = Table(title=f"climb demo: {len(result.summaries)} sources in {result.seconds:.0f} s")
    for col in (
        "source",
        "fetched from",
        "items",
        "samples",
        "quarantined (top reasons)",
        "shards",
        "MB",
        "records/s",
        "epoch check",
    ):
        left = col.startswith(("source", "fetched", "quarantined", "epoch"))
        table.add_column(col, justify="left" if left else "right")
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
            HOST_LABELS.get(SPEC[source].host, SPEC[source].host) if source in SPEC else "",
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
    timings: dict[str, float] = {}
    mark = started

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        timings[name] = round(now - mark, 2)
        mark = now

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    chosen = tuple(dict.fromkeys(sources or DEMO_SOURCES))
    unknown = [s for s in chosen if s not in SPEC]
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

    warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr version 3")
    prefect_server = EphemeralPrefectServer(out / ".prefect" / "server.log").start()
    try:
        cluster = BackgroundCluster(backend, workers).start()
        try:
            return _run_with_cluster(
                out, chosen, backend, workers, records, report, prefect_server, cluster, timings, lap, started
            )
        finally:
            cluster.close()
    finally:
        prefect_server.stop()


def _run_with_cluster(
    out: Path,
    chosen: tuple[str, ...],
    backend: str,
    workers: int,
    records: int,
    report: bool,
    prefect_server: EphemeralPrefectServer,
    cluster: BackgroundCluster,
    timings: dict[str, float],
    lap: Any,
    started: float,
) -> DemoResult:
    # generated in this process: the Prefect server and the Dask workers start on the other core
    with console.status("demo: generating the raw releases (first run only)..."):
        root = prepare_mirror(records, chosen, workers=1)
    lap("generate")
    raw_root = out / "raw"
    fetches: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    kinds = {SPEC[s].host for s in chosen}
    summaries: dict[str, dict[str, Any]] = {}
    fetch_log = logging.getLogger("climb.fetch")
    fetch_level = fetch_log.level
    fetch_log.setLevel(logging.WARNING)  # the summary says what was fetched; errors still show
    with running_mirrors(root, kinds) as mirrors:
        hosts = ", ".join(sorted(HOST_LABELS[k] for k in kinds))
        console.print(f"demo: mirror serving {hosts} on loopback (one-off credentials)")
        with (
            console.status(f"demo: fetching {len(chosen)} sources over their hosts' protocols..."),
            ThreadPoolExecutor(4) as pool,
        ):
            futures = {s: pool.submit(fetch_demo_source, s, root, raw_root, mirrors) for s in chosen}
            for source, future in futures.items():
                try:
                    fetches[source] = future.result()
                except Exception as exc:
                    failures.append(f"{source}: fetch failed: {type(exc).__name__}: {exc}")
    fetch_log.setLevel(fetch_level)
    lap("fetch")
    address = cluster.wait()
    lap("dask_cluster_wait")
    prefect_server.wait()
    lap("prefect_server_wait")
    fetched = [s for s in chosen if s in fetches]
    options: dict[str, Any] = {"backend": backend, "workers": workers}
    if address:
        options["dask_address"] = address
    if fetched:
        from pipelines.flows.build import build_corpus

        with console.status(f"demo: Prefect build_corpus over {len(fetched)} sources ({backend} backend)..."):
            try:
                summaries = build_corpus(
                    str(out / "built"),
                    sources=fetched,
                    raw_root=str(raw_root),
                    config={"items_per_shard": 64},
                    options=options,
                )
            except Exception as exc:  # the flow's own message names each failed source
                failures.append(str(exc))
    lap("build_corpus")
    streams: dict[str, StreamCheck] = {}
    for source, summary in summaries.items():
        streams[source] = stream_epoch(summary["dataset_url"], source)
        if not streams[source].ok:
            failures.append(
                f"{source}: streamed {streams[source].samples_seen} samples, expected {summary['samples_out']}"
            )
    lap("stream_epoch")
    report_path = None
    if report and summaries:
        from pipelines.report import render_report

        report_path = render_report(str(out / "built"), str(out / "report.html"))
    lap("report")
    log.info("demo timings (s): %s", timings)
    return DemoResult(
        out,
        summaries,
        streams,
        report_path,
        time.perf_counter() - started,
        failures,
        fetches,
        timings,
    )
