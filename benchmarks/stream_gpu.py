"""Streaming to a GPU: batches copied to the device, for 2, 4, 8 and 14 DataLoader workers.

The GPU leg of the streaming benchmark (``stream_bench.py`` is the 2-core CPU one). It uses the same
corpora (``stream_bench.build``: 20,000 synthetic 12 × 5000 int16 ECGs and 5,000 512 × 512 uint8
radiograph-like images, identical samples in every format), the same readers and the same
settings (batch 64, shuffled, seed 0), and adds what a training job on a GPU machine does:

* every batch goes to the device with ``tensor.to(device, non_blocking=True)`` from pinned
  memory (``pin_memory=True`` in every DataLoader; a batch that still arrives unpinned is pinned
  in the loop, inside the timing), and each run ends with ``torch.cuda.synchronize()``, inside
  the timing, so the copies are counted;
* the readers run with 2, 4, 8 and 14 DataLoader workers (``--workers``; 14 leaves two of a
  16-core machine's cores to the training loop and the pin thread); the ceiling runs as that many
  processes decoding the stored shards with no per-sample Python and no copy to the device (the
  CPU bound of this format);
* one epoch of 20,000 ECGs lasts well under a second at 14 workers, so each run reads whole
  epochs, each a fresh iteration of the reader (DataLoader workers restart, PyTorch's default),
  until ``--min-seconds`` have passed, and stops at ``--max-seconds`` even mid-epoch.

The page cache is warm (the cold-cache runs are ``stream_bench.py``'s). Results are written after
every run to ``--out``, so a run stopped by ``--deadline`` (or killed) keeps what it measured.

Run on the GPU machine: ``python3 benchmarks/stream_gpu.py`` (``--device cuda``); the same script
runs on CPU (``--device cpu``, no copies) and is tested that way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import stream_bench as sb  # noqa: E402
from stream_corpus import ECG_SHAPE, IMAGE_SHAPE  # noqa: E402

BATCH = sb.BATCH
READERS = ("climb-etl", "climb-etl-pin", "mds", "webdataset", "climb-way", "ceiling")


def _tensor(batch: Any) -> Any:
    """The sample array of a reader's batch (a dict, a 1-tuple or a tensor) as a torch tensor."""
    import torch

    if isinstance(batch, dict):
        batch = batch["x"]
    elif isinstance(batch, (tuple, list)):
        batch = batch[0]
    return batch if isinstance(batch, torch.Tensor) else torch.from_numpy(np.asarray(batch))


def epoch_readers(
    kind: str, base: Path, workers: int, device: Any
) -> dict[str, Callable[[int], Iterator[Any]]]:
    """For each reader, ``epoch -> iterator of batches`` (tensors; the ceiling yields sample counts).

    ``climb-etl`` delivers batches on ``device`` itself (``loader(device=...)``: workers collate
    into a page-locked shared ring the GPU copies from); ``climb-etl-pin`` is the same loader on
    PyTorch's usual path (per-batch shared memory, the DataLoader's pin thread, then ``.to``),
    as every peer is read.
    """
    from torch.utils.data import DataLoader

    from manifests import open_dataset

    ext = "mat" if kind == "ecg" else "jpg"
    climb = sb.ClimbFiles(sorted(str(p) for p in (base / "climb").glob(f"*.{ext}")), kind)
    wds_urls = sorted(str(p) for p in (base / "wds").glob("*.tar"))
    view = open_dataset(str(base / "ours")).split("train").select(["x"])

    def ours(**options: Any) -> Callable[[int], Iterator[Any]]:
        def run(epoch: int) -> Iterator[Any]:
            for batch in view.loader(BATCH, num_workers=workers, seed=0, epoch=epoch, **options):
                yield batch["x"]

        return run

    mds_state: dict[str, Any] = {}

    def mds(epoch: int) -> Iterator[Any]:
        # one StreamingDataset per run (its epochs advance on each iteration), as in training
        sb._stub_optional_imports()
        from streaming import StreamingDataset
        from streaming.base.util import clean_stale_shared_memory

        if epoch == 0 or "ds" not in mds_state:
            clean_stale_shared_memory()
            mds_state["ds"] = StreamingDataset(
                local=str(base / "mds"), batch_size=BATCH, shuffle=True, shuffle_seed=0
            )
        loader = DataLoader(mds_state["ds"], batch_size=BATCH, num_workers=workers, pin_memory=True)
        for batch in loader:
            yield batch["x"]

    def wds(epoch: int) -> Iterator[Any]:
        return sb.read_wds(wds_urls, workers, seed=epoch, pin=True)

    def climb_way(epoch: int) -> Iterator[Any]:
        return sb.read_climb(climb, workers, seed=epoch, pin=True)

    def ceiling(epoch: int) -> Iterator[int]:
        yield from sb.read_ceiling(str(base / "ours"), workers)

    return {
        "climb-etl": ours(device=device),
        "climb-etl-pin": ours(pin_memory=True),
        "mds": mds,
        "webdataset": wds,
        "climb-way": climb_way,
        "ceiling": ceiling,
    }


def measure(
    name: str,
    epoch_iter: Callable[[int], Iterator[Any]],
    *,
    sample_bytes: int,
    device: Any,
    min_s: float,
    max_s: float,
) -> dict[str, Any]:
    """Whole epochs until ``min_s`` (cut at ``max_s``), every batch copied to ``device``."""
    import torch

    samples = epochs = 0
    capped = False
    cuda = device.type == "cuda"
    with sb.PeakRss() as rss:
        t0 = time.perf_counter()
        while not capped:
            it = epoch_iter(epochs)
            try:
                for batch in it:
                    if isinstance(batch, int):  # the ceiling: decoded on the CPU, not copied
                        samples += batch
                    else:
                        x = _tensor(batch)
                        if cuda and x.device.type != "cuda":
                            if not x.is_pinned():
                                x = x.pin_memory()
                            x = x.to(device, non_blocking=True)
                        samples += int(x.shape[0])
                    if time.perf_counter() - t0 > max_s:
                        capped = True
                        break
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
            epochs += 1
            if time.perf_counter() - t0 >= min_s:
                break
        if cuda:
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
    row = sb.rate_row(name, samples, seconds, sample_bytes, rss.peak_mb, epochs=epochs, capped=capped)
    print(
        f"  {name:11s} {samples:8d} samples {epochs:3d} epochs {seconds:7.2f} s "
        f"{row['samples_s']:9.1f} /s {row['mb_s']:8.1f} MB/s rss {row['peak_rss_mb']:7.0f} MB",
        flush=True,
    )
    return row


def check_device_batches(base: Path, device: Any, workers: int = 2) -> dict[str, Any]:
    """The batches ``loader(device=...)`` delivers equal the CPU loader's, batch for batch."""
    import torch

    from manifests import open_dataset

    view = open_dataset(str(base / "ours")).split("train")
    cpu = view.loader(BATCH, num_workers=workers, seed=0, epoch=1, pin_memory=False)
    dev = view.loader(BATCH, num_workers=workers, seed=0, epoch=1, device=device)
    batches = 0
    equal = True
    for a, b in zip(cpu, dev, strict=True):
        batches += 1
        equal &= b["x"].device.type == torch.device(device).type
        equal &= bool(torch.equal(a["x"], b["x"].cpu())) and a["sample_id"] == b["sample_id"]
    return {"workers": workers, "batches": batches, "equal": bool(equal)}


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per corpus and worker count: this reader vs the faster peer, the ceiling and the CLIMB way."""
    out = []
    for corpus, workers in sorted({(r["corpus"], r["workers"]) for r in rows}):
        rate = {
            r["reader"]: r["samples_s"]
            for r in rows
            if (r["corpus"], r["workers"]) == (corpus, workers) and "samples_s" in r
        }
        out.append(
            {
                "corpus": corpus,
                "workers": workers,
                "climb_etl_samples_s": max(rate.get("climb-etl", 0.0), rate.get("climb-etl-pin", 0.0))
                or None,
                **sb.ratios(rate, ("climb-etl", "climb-etl-pin")),
            }
        )
    return out


def merge_runs(paths: list[str]) -> dict[str, Any]:
    """One result from several runs' files, oldest first: a row measured later (with a rate)
    replaces the same (corpus, workers, reader) row, whose rate is kept in ``earlier_runs``;
    failed rows never replace measured ones. Every row names its run (``run_started``)."""
    results = [json.loads(Path(p).read_text()) for p in paths]
    rows: dict[tuple[str, int, str], dict[str, Any]] = {}
    for res in results:
        for row in res["rows"]:
            key = (row["corpus"], row["workers"], row["reader"])
            row = {**row, "run_started": row.get("run_started", res["date"])}
            earlier = rows.get(key)
            if earlier is None or "samples_s" in row or "samples_s" not in earlier:
                if earlier is not None and "samples_s" in earlier:  # keep its rate beside the new one
                    row["earlier_runs"] = [
                        *earlier.get("earlier_runs", []),
                        {"run_started": earlier["run_started"], "samples_s": earlier["samples_s"]},
                    ]
                rows[key] = row
    merged = {
        **results[-1],
        "date": results[0]["date"],
        "runs": [
            {k: res.get(k) for k in ("date", "machine", "settings", "device_check", "elapsed_s", "complete")}
            for res in results
        ],
        "rows": sorted(rows.values(), key=lambda r: (r["workers"], r["corpus"], READERS.index(r["reader"]))),
    }
    merged["summary"] = summarise(merged["rows"])
    return merged


def machine(device: Any) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": len(os.sched_getaffinity(0)),
        "device": str(device),
        "torch": torch.__version__,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        info["cpu_model"] = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    return info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    sb._quiet()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ecg", type=int, default=20_000)
    parser.add_argument("--images", type=int, default=5_000)
    parser.add_argument("--workers", default="2,4,8,14", help="comma list of DataLoader worker counts")
    parser.add_argument("--device", default="cuda", help="cuda (copies batches to the GPU) or cpu")
    parser.add_argument("--min-seconds", type=float, default=4.0, help="whole epochs until this long")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="cap on one run")
    parser.add_argument("--repeats", type=int, default=1, help="runs per reader and setting (median kept)")
    parser.add_argument("--readers", default=",".join(READERS))
    parser.add_argument("--corpora", default="ecg,image")
    parser.add_argument("--deadline", type=float, default=None, help="start no run after this many seconds")
    parser.add_argument("--workdir", default="/tmp/climb-stream-bench")
    parser.add_argument(
        "--jobs", type=int, default=len(os.sched_getaffinity(0)), help="processes writing the corpora"
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "stream_gpu.json"))
    parser.add_argument(
        "--merge", nargs="+", default=None, help="merge these runs' result files into --out and stop"
    )
    args = parser.parse_args(argv)
    if args.merge:
        merged = merge_runs(args.merge)
        Path(args.out).write_text(json.dumps(merged, indent=1) + "\n")
        print(json.dumps(merged["summary"], indent=1))
        return merged
    t_start = time.monotonic()
    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible (use --device cpu)")
    from manifests.writer import DEFAULT_FORMAT

    sb.FORMAT = DEFAULT_FORMAT
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    kinds = [k for k in args.corpora.split(",") if k]
    sizes = {"ecg": args.ecg, "image": args.images}
    readers = [r for r in args.readers.split(",") if r]
    unknown = sorted(set(readers) - set(READERS))
    if unknown:
        raise SystemExit(f"unknown readers {unknown}; known: {', '.join(READERS)}")
    worker_counts = [int(w) for w in args.workers.split(",") if w]
    bases, corpora = {}, {}
    for kind in kinds:  # build (16 processes on the GPU machine), warm the page cache, fill MDS's cache
        base = sb.build(kind, sizes[kind], work, args.jobs)
        bases[kind] = base
        corpora[f"{kind}-{sizes[kind]}"] = json.loads((base / "done.json").read_text())
        if not (base / "mds-cache-ready").exists():
            for _ in sb.read_mds(str(base / "mds"), None, max(worker_counts)):
                pass
            (base / "mds-cache-ready").write_text("1")
        sb.warm_files(base)
    if device.type == "cuda":
        torch.zeros(1, device=device)  # CUDA context up before any timing
    checks = {}
    for kind in kinds:
        try:
            checks[kind] = check_device_batches(bases[kind], device)
        except Exception as exc:  # reported; the runs go on
            checks[kind] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        print(f"device batches {kind}: {checks[kind]}", flush=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result: dict[str, Any] = {
        "benchmark": "stream_gpu",
        "date": started,
        "machine": machine(device),
        "settings": {
            "batch": BATCH,
            "workers": worker_counts,
            "min_seconds": args.min_seconds,
            "max_seconds": args.max_seconds,
            "repeats": args.repeats,
            "cache": "warm",
            "format": DEFAULT_FORMAT.to_dict(),
        },
        "corpora": corpora,
        "device_check": checks,
        "rows": [],
        "complete": False,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        result["summary"] = summarise(result["rows"])
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        os.replace(tmp, out)

    warmed: set[str] = set()
    stopped = False
    for workers in worker_counts:
        for kind in kinds:
            sample_bytes = int(np.prod(ECG_SHAPE)) * 2 if kind == "ecg" else int(np.prod(IMAGE_SHAPE))
            make = epoch_readers(kind, bases[kind], workers, device)
            if kind not in warmed:  # imports and first-use costs stay out of the runs
                sb.warm_up([(n, (lambda f=make[n]: f(0))) for n in readers if n != "ceiling"])
                warmed.add(kind)
            print(f"{kind} × {workers} workers", flush=True)
            runs: dict[str, list[dict[str, Any]]] = {n: [] for n in readers}
            for _ in range(max(1, args.repeats)):
                for name in readers:
                    if args.deadline is not None and time.monotonic() - t_start > args.deadline:
                        stopped = True
                        break
                    try:
                        row = measure(
                            name,
                            make[name],
                            sample_bytes=sample_bytes,
                            device=device,
                            min_s=args.min_seconds,
                            max_s=args.max_seconds,
                        )
                    except Exception as exc:  # one failing reader does not stop the others
                        print(f"  {name} FAILED: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
                        row = {"reader": name, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                    runs[name].append(row)
                if stopped:
                    break
            result["rows"] = [r for r in result["rows"] if (r["corpus"], r["workers"]) != (kind, workers)]
            result["rows"] += [
                {"corpus": kind, "workers": workers, **sb.median_row(measured)}
                for measured in runs.values()
                if measured
            ]
            save()
            if stopped:
                break
        if stopped:
            break
    result["complete"] = not stopped
    result["elapsed_s"] = round(time.monotonic() - t_start, 1)
    save()
    print(json.dumps(result["summary"], indent=1))
    print(f"wrote {out}{'' if not stopped else ' (stopped at the deadline)'}")
    return result


if __name__ == "__main__":
    main()
