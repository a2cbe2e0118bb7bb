"""The streaming benchmarks run on CPU: the same samples in every format, every reader reads whole
epochs, the device path's batches equal the CPU loader's, and merged runs keep every rate.

(Numbers are never checked here; these are the benchmarks' correctness.)
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from scipy.io import loadmat

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import stream_bench  # noqa: E402
import stream_gpu  # noqa: E402
from stream_corpus import make_ecg  # noqa: E402

N = 600  # two shards of this format (559 ECGs per 64 MB shard)


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    work = tmp_path_factory.mktemp("stream-bench")
    out = work / "stream_gpu.json"
    result = stream_gpu.main(
        [
            *("--ecg", str(N), "--corpora", "ecg", "--workers", "2", "--device", "cpu"),
            *("--min-seconds", "0.2", "--max-seconds", "60", "--jobs", "2"),
            *("--workdir", str(work), "--out", str(out)),
        ]
    )
    return work, result


def test_the_parallel_build_writes_the_same_samples_in_every_format(gpu_run) -> None:
    work, _ = gpu_run
    base = work / f"ecg-{N}"
    done = json.loads((base / "done.json").read_text())
    assert done["jobs"] == 2 and done["layout"] == stream_bench.LAYOUT_VERSION
    from manifests import open_dataset

    view = open_dataset(str(base / "ours")).split("train")
    assert len(view) == N
    stream_bench._stub_optional_imports()
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()
    mds = StreamingDataset(local=str(base / "mds"), shuffle=False, batch_size=1)
    assert len(mds) == N
    tars = sorted((base / "wds").glob("*.tar"))
    assert len(tars) == 2
    with tarfile.open(tars[1]) as tar:
        wds_first = {m.name.split(".")[0]: m for m in tar.getmembers()}
        key = min(wds_first)
        wds_x = np.load(io.BytesIO(tar.extractfile(wds_first[key]).read()))
    i = int(key.removeprefix("ecg"))
    assert i == 559  # the second tar starts where the second shard does
    for j in (0, 558, 559, N - 1):
        x = make_ecg(j)
        row = view[j]
        assert row["sample_id"] == f"ecg{j:08d}"
        np.testing.assert_array_equal(row["x"], x)
        np.testing.assert_array_equal(mds[j]["x"], x)
        np.testing.assert_array_equal(loadmat(base / "climb" / f"ecg{j:08d}.mat")["val"], x)
    np.testing.assert_array_equal(wds_x, make_ecg(i))


def test_every_reader_reads_whole_epochs_and_the_device_batches_match(gpu_run) -> None:
    _, result = gpu_run
    assert result["complete"] is True
    check = result["device_check"]["ecg"]
    assert check == {"workers": 2, "batches": -(-N // 64), "equal": True}
    rows = {r["reader"]: r for r in result["rows"]}
    assert set(rows) == set(stream_gpu.READERS)
    for name, row in rows.items():
        assert "error" not in row, (name, row)
        assert not row["capped"] and row["epochs"] >= 1, (name, row)
        assert row["samples"] == N * row["epochs"], (name, row)  # every sample, every epoch
        assert row["samples_s"] > 0 and row["peak_rss_mb"] > 0
    (summary,) = result["summary"]
    assert summary["corpus"] == "ecg" and summary["workers"] == 2
    best = max(rows["climb-etl"]["samples_s"], rows["climb-etl-pin"]["samples_s"])
    peer = max(rows["mds"]["samples_s"], rows["webdataset"]["samples_s"])
    assert summary["vs_faster_peer"] == round(best / peer, 2)


def test_merged_runs_keep_every_rate_and_never_let_a_failure_replace_a_measurement(
    gpu_run, tmp_path: Path
) -> None:
    _, result = gpu_run
    first = dict(result, date="2026-01-01T00:00:00Z")
    later_rows = [
        {"corpus": "ecg", "workers": 2, "reader": "climb-etl", "samples_s": 1.0, "samples": 1},
        {"corpus": "ecg", "workers": 2, "reader": "mds", "error": "RuntimeError: boom"},
    ]
    second = dict(result, date="2026-01-02T00:00:00Z", rows=later_rows)
    paths = []
    for k, res in enumerate((first, second)):
        paths.append(tmp_path / f"run{k}.json")
        paths[-1].write_text(json.dumps(res))
    merged = stream_gpu.merge_runs([str(p) for p in paths])
    rows = {r["reader"]: r for r in merged["rows"]}
    ours = rows["climb-etl"]
    assert ours["samples_s"] == 1.0 and ours["run_started"] == "2026-01-02T00:00:00Z"
    old = next(r for r in result["rows"] if r["reader"] == "climb-etl")["samples_s"]
    assert ours["earlier_runs"] == [{"run_started": "2026-01-01T00:00:00Z", "samples_s": old}]
    assert "error" not in rows["mds"] and rows["mds"]["run_started"] == "2026-01-01T00:00:00Z"
    assert [r["date"] for r in merged["runs"]] == ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]
