"""The shard writer: round trips for every canonical dtype, deterministic bytes, safe publishing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manifests import DatasetNotFoundError, open_dataset
from manifests.publish import publish_dataset
from manifests.schema import COL_OFFSET, COL_SAMPLE_ID, COL_SHARD, Sample, ShardRecord
from manifests.writer import ShardFormat, ShardWriteError, encode_shard, write_shard

ROOT = Path(__file__).resolve().parents[2]
CANONICAL_DTYPES = ["int16", "uint16", "uint8", "float16", "float32", "bool", "int8"]


def random_array(rng: np.random.Generator, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Random values spanning the dtype's range (floats: normal; bool: coin flips)."""
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return rng.random(shape) < 0.5
    if dt.kind == "f":
        return rng.normal(0, 100, shape).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dt)


def make_samples(
    n: int,
    split: str = "train",
    *,
    prefix: str = "s",
    seed: int = 0,
    ragged: bool = True,
    signal_shape: tuple[int, ...] = (3, 40),
) -> list[Sample]:
    """Small synthetic samples: a fixed int16 ``signal``, a bool ``mask``, optionally a ragged
    float32 ``events``, and row columns ``label`` (str), ``labels`` (list[str]), ``age`` (int)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        arrays = {
            "signal": random_array(rng, "int16", signal_shape),
            "mask": random_array(rng, "bool", (signal_shape[0],)),
        }
        if ragged:
            arrays["events"] = random_array(rng, "float32", (int(rng.integers(0, 5)), 2))
        row = {"label": ["AF", "NORM", "MI"][i % 3], "labels": ["AF", "MI"][: i % 3], "age": 20 + i}
        out.append(Sample(f"{prefix}{i:04d}", f"subj{i % 4}", split, arrays, row))
    return out


def write_and_publish(url: str, shards: dict[tuple[str, int], list[Sample]], **kw) -> list[ShardRecord]:
    records = [
        write_shard(url, split, index, samples, source="synthetic", **kw)
        for (split, index), samples in shards.items()
    ]
    items = sum(r.items for r in records)
    publish_dataset(
        url,
        source="synthetic",
        version="v1",
        shards=records,
        quarantine=[],
        items_in=items,
        info={"title": "synthetic test data", "licence": "CC0-1.0"},
        quarantine_max_fraction=0.0,
        storage_options=kw.get("storage_options"),
    )
    return records


@pytest.mark.parametrize("dtype", CANONICAL_DTYPES)
def test_round_trip_fixed_and_ragged_every_dtype(tmp_path: Path, dtype: str) -> None:
    rng = np.random.default_rng(1)
    samples = [
        Sample(
            f"id{i}",
            f"p{i}",
            "train",
            {"fixed": random_array(rng, dtype, (2, 3, 5)), "ragged": random_array(rng, dtype, (i + 1, 3))},
            {"k": i},
        )
        for i in range(6)
    ]
    write_and_publish(str(tmp_path), {("train", 0): samples[:4], ("train", 1): samples[4:]})
    view = open_dataset(str(tmp_path), verify=True).split("train")
    assert len(view) == 6
    schema = view.dataset.manifest["schema"]["arrays"]
    assert schema["fixed"] == {"dtype": dtype, "ndim": 3, "layout": "fixed", "shape": [2, 3, 5]}
    assert schema["ragged"] == {"dtype": dtype, "ndim": 2, "layout": "ragged"}
    got = {item["sample_id"]: item for item in view}
    for s in samples:
        item = got[s.sample_id]
        for name in ("fixed", "ragged"):
            assert item[name].dtype == np.dtype(dtype)
            np.testing.assert_array_equal(item[name], s.arrays[name])
        assert item["k"] == s.row["k"]
    # random access gives the same as iteration
    for i in range(len(view)):
        item = view[i]
        np.testing.assert_array_equal(item["ragged"], got[item["sample_id"]]["ragged"])


def test_encoding_is_deterministic_and_order_free() -> None:
    samples = make_samples(9)
    a = encode_shard("train", 3, samples, source="x")
    b = encode_shard("train", 3, list(reversed(samples)), source="x")
    assert a == b
    assert list(a)[-1] == "rows/train/part-00003.parquet"
    c = encode_shard("train", 3, make_samples(9, seed=1), source="x")
    assert a.keys() == c.keys() and a != c


def test_local_and_memory_stores_give_byte_identical_shards(tmp_path: Path) -> None:
    samples = make_samples(7, "val")
    local = write_shard(str(tmp_path), "val", 2, samples)
    memory = write_shard("memory://climb-test-identical/ds", "val", 2, list(reversed(samples)))
    assert local.sha256 == memory.sha256
    assert local.bytes == memory.bytes
    for rel, digest in local.sha256.items():
        import hashlib

        assert hashlib.sha256((tmp_path / rel).read_bytes()).hexdigest() == digest


def test_shard_record_lists_every_file_written(tmp_path: Path) -> None:
    rec = write_shard(str(tmp_path), "train", 0, make_samples(5))
    on_disk = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert sorted(rec.sha256) == on_disk
    assert sorted(rec.bytes) == on_disk
    assert rec.files == {"rows": "rows/train/part-00000.parquet", "arrays": "arrays/train.zarr/00000"}
    assert rec.samples == 5 and rec.items == 5
    rows = pq.read_table(tmp_path / rec.files["rows"]).to_pydict()
    assert rows[COL_SAMPLE_ID] == sorted(rows[COL_SAMPLE_ID])
    assert rows[COL_OFFSET] == list(range(5))
    assert rows[COL_SHARD] == [0] * 5
    assert "source" not in rows


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: setattr(s[1], "split", "val"), "belongs to split 'val'"),
        (lambda s: setattr(s[1], "sample_id", s[0].sample_id), "duplicate sample_id"),
        (lambda s: s[2].arrays.__setitem__("signal", s[2].arrays["signal"].astype(np.float32)), "float32"),
        (lambda s: s[2].arrays.pop("mask"), "has arrays"),
        (lambda s: s[0].row.__setitem__("shard", 3), "reserved column name 'shard'"),
        (lambda s: s[0].arrays.__setitem__("mask", np.array(["a"] * 3)), "unsupported dtype"),
    ],
)
def test_bad_samples_fail_naming_the_shard_and_write_nothing(tmp_path: Path, mutate, message: str) -> None:
    samples = make_samples(4)
    mutate(samples)
    with pytest.raises(ShardWriteError, match=message) as info:
        write_shard(str(tmp_path), "train", 7, samples)
    assert "shard train/00007" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_empty_shard_round_trips(tmp_path: Path) -> None:
    records = [
        write_shard(str(tmp_path), "train", 0, make_samples(3)),
        write_shard(str(tmp_path), "train", 1, []),
    ]
    publish_dataset(
        str(tmp_path),
        source="s",
        version="v",
        shards=records,
        quarantine=[],
        items_in=3,
        info={},
        quarantine_max_fraction=0.0,
    )
    view = open_dataset(str(tmp_path), verify=True).split("train")
    assert len(view) == 3
    assert [x["sample_id"] for x in view] == ["s0000", "s0001", "s0002"]


@pytest.mark.parametrize("compression", ["none", "zstd", "lz4", "blosc-zstd"])
def test_every_compression_round_trips(tmp_path: Path, compression: str) -> None:
    samples = make_samples(5, "test")
    write_and_publish(
        str(tmp_path),
        {("test", 0): samples},
        fmt=ShardFormat(compression=compression, level=3, inner_chunk_bytes=512),
    )
    view = open_dataset(str(tmp_path)).split("test")
    assert view.dataset.manifest["storage"]["compression"] == compression
    for s, item in zip(samples, view, strict=True):
        np.testing.assert_array_equal(item["signal"], s.arrays["signal"])
        np.testing.assert_array_equal(item["events"], s.arrays["events"])


_KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from tests.manifests.test_writer import make_samples
    import manifests.writer as w

    calls = {{"n": 0}}
    real = w._write_file

    def dying_write(path, data):
        calls["n"] += 1
        if calls["n"] == {kill_at}:
            real(path, data[: len(data) // 2])  # a torn file, then the process dies
            os.kill(os.getpid(), signal.SIGKILL)
        real(path, data)

    w._write_file = dying_write
    samples = make_samples(12)
    w.write_shard({url!r}, "train", 0, samples[:6])
    w.write_shard({url!r}, "train", 1, samples[6:])
    """
)


@pytest.mark.parametrize("kill_at", [3, 8])
def test_write_killed_mid_shard_leaves_no_dataset_and_a_rerun_completes_it(
    tmp_path: Path, kill_at: int
) -> None:
    url = str(tmp_path / "ds")
    script = _KILL_SCRIPT.format(root=str(ROOT), url=url, kill_at=kill_at)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    leftovers = [p.name for p in Path(url).rglob(".tmp-*")]
    assert leftovers, "the kill should have happened inside a temporary name"
    with pytest.raises(DatasetNotFoundError, match="no dataset at"):
        open_dataset(url)
    # the rerun: same plans, same writer, then publish
    samples = make_samples(12)
    records = [write_shard(url, "train", 0, samples[:6]), write_shard(url, "train", 1, samples[6:])]
    publish_dataset(
        url,
        source="s",
        version="v",
        shards=records,
        quarantine=[],
        items_in=12,
        info={},
        quarantine_max_fraction=0.0,
    )
    view = open_dataset(url, verify=True).split("train")
    assert [x["sample_id"] for x in view] == [s.sample_id for s in samples]
    assert not list(Path(url).rglob(".tmp-*")), "publish sweeps leftovers of killed writes"
    assert not [
        p
        for p in Path(url).rglob("*")
        if p.is_file()
        and os.path.relpath(p, url)
        not in {
            *records[0].sha256,
            *records[1].sha256,
            "manifest.json",
            "croissant.json",
            "quarantine.parquet",
            "arrays/train.zarr/zarr.json",
        }
    ]


dtypes = st.sampled_from(CANONICAL_DTYPES)


@st.composite
def shard_samples(draw: st.DrawFn) -> list[Sample]:
    n = draw(st.integers(1, 6))
    fixed_dtype, ragged_dtype = draw(dtypes), draw(dtypes)
    fixed_shape = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=3)))
    ragged_ndim = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        rshape = tuple(int(x) for x in rng.integers(0, 4, size=ragged_ndim))
        out.append(
            Sample(
                f"h{seed}-{i}",
                f"p{i}",
                "train",
                {
                    "a": random_array(rng, fixed_dtype, fixed_shape),
                    "b": random_array(rng, ragged_dtype, rshape),
                },
                {"score": float(rng.normal()), "tags": [str(t) for t in range(i % 3)]},
            )
        )
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(samples=shard_samples(), chunk=st.sampled_from([1, 64, 1 << 20]))
def test_hypothesis_round_trip(samples: list[Sample], chunk: int) -> None:
    url = f"memory://climb-hypothesis/{uuid.uuid4().hex}"
    write_and_publish(url, {("train", 0): samples}, fmt=ShardFormat(inner_chunk_bytes=chunk))
    view = open_dataset(url, verify=True).split("train")
    by_id = {s.sample_id: s for s in samples}
    assert len(view) == len(samples)
    for item in view:
        s = by_id[item["sample_id"]]
        assert item["a"].dtype == s.arrays["a"].dtype and item["a"].shape == s.arrays["a"].shape
        np.testing.assert_array_equal(item["a"], s.arrays["a"])
        np.testing.assert_array_equal(item["b"], s.arrays["b"])
        assert item["b"].shape == s.arrays["b"].shape
        assert item["score"] == s.row["score"] and item["tags"] == s.row["tags"]


@pytest.mark.parametrize("compression", ["none", "zstd", "lz4", "blosc-lz4", "blosc-zstd", "delta-zstd"])
@pytest.mark.parametrize("n", [1, 7, 64])
def test_direct_shard_encoding_is_byte_identical_to_zarrs_writer(
    monkeypatch, compression: str, n: int
) -> None:
    """The writer encodes shards chunk by chunk with zarr's own numcodecs objects; the files are the
    ones zarr's array assignment writes (every canonical dtype, fixed and ragged, padded last chunks)."""
    import manifests.writer as writer

    rng = np.random.default_rng(n)
    samples = []
    for i in range(n):
        arrays = {f"fixed_{dt}": random_array(rng, dt, (3, 50)) for dt in CANONICAL_DTYPES}
        arrays["ragged_int16"] = random_array(rng, "int16", (int(rng.integers(1, 90)),))
        arrays["ragged_uint8"] = random_array(rng, "uint8", (int(rng.integers(1, 40)), 3))
        samples.append(Sample(f"s{i:03d}", "p", "train", arrays, {"age": i}))
    fmt = ShardFormat(compression=compression, level=3, inner_chunk_bytes=700)
    calls = []
    real = writer._write_sharded
    monkeypatch.setattr(writer, "_write_sharded", lambda *a: calls.append(1) or real(*a))
    direct = encode_shard("train", 0, samples, fmt=fmt)
    assert len(calls) == len(CANONICAL_DTYPES) + 2  # every array took the direct path
    monkeypatch.setattr(writer, "_write_sharded", lambda *a: False)  # zarr's own writer
    through_zarr = encode_shard("train", 0, samples, fmt=fmt)
    assert sorted(direct) == sorted(through_zarr)
    for key in direct:
        assert direct[key] == through_zarr[key], key


@pytest.mark.parametrize("dtype", ["bool", "uint8", "int8", "uint16", "int16"])
def test_integer_array_stats_are_exact(dtype: str) -> None:
    """Shard statistics of 16-bit-or-less arrays equal exact integer arithmetic, across stats blocks."""
    from manifests.writer import _STATS_BLOCK, _array_stats

    info = np.iinfo(dtype) if dtype != "bool" else None
    rng = np.random.default_rng(7)
    n = _STATS_BLOCK * 2 + 12_345  # three blocks, the last partial
    if info is None:
        values = rng.integers(0, 2, size=n).astype(bool)
    else:
        values = rng.integers(int(info.min), int(info.max) + 1, size=n, dtype=np.int64).astype(dtype)
        values[: _STATS_BLOCK + 5] = info.max if abs(int(info.max)) >= abs(int(info.min)) else info.min
    ints = values.astype(np.int64)
    stats = _array_stats(values)
    assert stats["count"] == n
    assert stats["sum"] == float(int(ints.sum()))
    exact_sq = int((ints * ints).sum())  # int64: at most 2**32 * 2**21.1 < 2**63
    assert stats["sum_sq"] == float(exact_sq)
    assert stats["min"] == float(ints.min()) and stats["max"] == float(ints.max())


def test_writing_shards_does_not_import_pandas_and_to_pandas_still_works(tmp_path: Path) -> None:
    """The pyarrow probe spares a build process pandas; pyarrow still imports it when asked to."""
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import pyarrow.parquet as pq
        from manifests.schema import Sample
        from manifests.writer import write_shard
        s = Sample("a", "p1", "train", {{"x": np.arange(3, dtype=np.int16)}}, {{"label": 1}})
        record = write_shard({str(tmp_path)!r}, "train", 0, [s], source="src")
        assert "pandas" not in sys.modules, "writing a shard imported pandas"
        frame = pq.read_table({str(tmp_path)!r} + "/" + record.files["rows"]).to_pandas()
        assert "pandas" in sys.modules and frame["label"].tolist() == [1]
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2], env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")
