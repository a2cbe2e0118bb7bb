"""open_dataset: manifest-only discovery, random access, iteration, select, filter, verify."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from manifests import DatasetNotFoundError, ShardIntegrityError, open_dataset
from tests.manifests.test_writer import make_samples, write_and_publish


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list]:
    url = str(tmp_path_factory.mktemp("reader") / "ds")
    train = make_samples(11, "train", prefix="t")
    val = make_samples(4, "val", prefix="v", seed=3)
    write_and_publish(
        url, {("train", 0): train[:4], ("train", 1): train[4:9], ("train", 2): train[9:], ("val", 0): val}
    )
    return url, train


def test_missing_manifest_means_no_dataset(tmp_path: Path) -> None:
    from manifests.writer import write_shard

    write_shard(str(tmp_path), "train", 0, make_samples(3))
    with pytest.raises(DatasetNotFoundError, match=f"no dataset at {tmp_path}"):
        open_dataset(str(tmp_path))


def test_splits_len_and_unknown_split(built) -> None:
    url, _train = built
    ds = open_dataset(url)
    assert ds.splits == ("train", "val")
    assert len(ds.split("train")) == 11 and len(ds.split("val")) == 4
    with pytest.raises(KeyError, match=r"no split 'test'; known splits: \['train', 'val'\]"):
        ds.split("test")


def test_random_access_matches_iteration_and_the_samples(built) -> None:
    url, train = built
    view = open_dataset(url).split("train")
    items = list(view)
    assert [x["sample_id"] for x in items] == [s.sample_id for s in train]
    for i in (0, 3, 4, 10, -1):
        got, want = view[i], train[i]
        np.testing.assert_array_equal(got["signal"], want.arrays["signal"])
        np.testing.assert_array_equal(got["events"], want.arrays["events"])
        assert got["labels"] == want.row["labels"] and got["source"] == "synthetic"
    with pytest.raises(IndexError, match="index 11 out of range for split 'train' with 11 samples"):
        view[11]
    with pytest.raises(TypeError, match="index must be an int, got float"):
        view[1.0]


def test_select_keeps_only_the_named_columns(built) -> None:
    url, _ = built
    view = open_dataset(url).split("train").select(["signal", "label"])
    assert view.columns == ["signal", "label"]
    assert set(view[2]) == {"signal", "label"}
    assert all(set(x) == {"signal", "label"} for x in view)
    with pytest.raises(KeyError, match="unknown columns \\['nope'\\]"):
        view.select(["nope"])


def test_filter_on_scalar_list_and_predicate(built) -> None:
    url, train = built
    view = open_dataset(url).split("train")
    af = view.filter(label="AF")
    assert [x["sample_id"] for x in af] == [s.sample_id for s in train if s.row["label"] == "AF"]
    assert af[1]["sample_id"] == [s.sample_id for s in train if s.row["label"] == "AF"][1]
    mi = view.filter(labels="MI")
    assert [x["sample_id"] for x in mi] == [s.sample_id for s in train if "MI" in s.row["labels"]]
    both = view.filter(label=["AF", "MI"], source="synthetic")
    assert len(both) == sum(s.row["label"] in ("AF", "MI") for s in train)
    old = view.filter(lambda row: row["age"] >= 27).filter(label="NORM")
    assert [x["sample_id"] for x in old] == [
        s.sample_id for s in train if s.row["age"] >= 27 and s.row["label"] == "NORM"
    ]
    assert len(view.filter(source="elsewhere")) == 0
    with pytest.raises(KeyError, match="unknown row columns \\['colour'\\]"):
        view.filter(colour="red")


def test_verify_catches_a_flipped_byte_naming_the_shard(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    records = write_and_publish(
        url, {("train", 0): make_samples(3), ("train", 1): make_samples(3, prefix="u")}
    )
    victim = next(p for p in records[1].sha256 if "/signal/c/" in p)
    path = Path(url) / victim
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    view = open_dataset(url, verify=True).split("train")
    assert view[0]["sample_id"] == "s0000"  # shard 0 is intact
    with pytest.raises(ShardIntegrityError, match=f"shard train/00001: file {victim} fails its sha256"):
        view[4]
    with pytest.raises(ShardIntegrityError, match="shard train/00001"):
        list(open_dataset(url, verify=True).split("train"))


def test_memory_store_round_trip() -> None:
    url = "memory://climb-reader-test/ds"
    samples = make_samples(6, "test")
    write_and_publish(url, {("test", 0): samples[:2], ("test", 1): samples[2:]})
    view = open_dataset(url, verify=True).split("test")
    np.testing.assert_array_equal(view[5]["signal"], samples[5].arrays["signal"])
    assert [x["sample_id"] for x in view] == [s.sample_id for s in samples]


@pytest.mark.parametrize("compression", ["none", "zstd", "blosc-lz4", "blosc-zstd", "delta-zstd"])
def test_fast_shard_decoder_matches_zarr_and_decodes_only_asked_rows(compression: str) -> None:
    import json

    import zarr
    from zarr.core.buffer import default_buffer_prototype

    from manifests.reader import decode_sharded_array
    from manifests.writer import ShardFormat, encode_shard

    files = encode_shard("train", 0, make_samples(11), fmt=ShardFormat(compression, 3, inner_chunk_bytes=500))
    prefix = "arrays/train.zarr/00000/"
    proto = default_buffer_prototype()
    store = zarr.storage.MemoryStore(
        {k[len(prefix) :]: proto.buffer.from_bytes(v) for k, v in files.items() if k.startswith(prefix)}
    )
    for name in ("signal", "mask", "events/values"):
        meta = json.loads(files[f"{prefix}{name}/zarr.json"])
        shard = next(v for k, v in files.items() if k.startswith(f"{prefix}{name}/c/"))
        expected = zarr.open_array(store=store, path=name, mode="r")[...]
        fast = decode_sharded_array(meta, shard)
        assert fast is not None and fast.dtype == expected.dtype
        np.testing.assert_array_equal(fast, expected)
        rows = np.array([1, 7]) if fast.shape[0] > 7 else np.array([0])
        partial = decode_sharded_array(meta, shard, rows)
        np.testing.assert_array_equal(partial[rows], expected[rows])
    meta = json.loads(files[f"{prefix}signal/zarr.json"])
    meta["codecs"][0]["configuration"]["index_location"] = "start"
    assert decode_sharded_array(meta, b"") is None  # not this writer's layout: zarr decodes instead


def test_memory_mapped_local_chunks_read_and_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import manifests.reader as reader

    monkeypatch.setattr(reader, "MMAP_MIN_BYTES", 1)  # map every chunk file, however small
    url = str(tmp_path / "ds")
    samples = make_samples(7)
    records = write_and_publish(url, {("train", 0): samples[:3], ("train", 1): samples[3:]})
    view = open_dataset(url, verify=True).split("train")
    assert [x["sample_id"] for x in view] == [s.sample_id for s in samples]
    for batch in view.numpy_batches(3, seed=1):
        for i, sid in enumerate(batch["sample_id"]):
            np.testing.assert_array_equal(
                batch["signal"][i], next(s for s in samples if s.sample_id == sid).arrays["signal"]
            )
    victim = Path(url) / next(p for p in records[0].sha256 if "/signal/c/" in p)
    data = bytearray(victim.read_bytes())
    data[3] ^= 0x10
    victim.write_bytes(bytes(data))
    with pytest.raises(ShardIntegrityError, match=r"shard train/00000: file .*signal/c/.* fails its sha256"):
        list(open_dataset(url, verify=True).split("train"))


@pytest.mark.parametrize("with_torch", [False, True])
def test_pixel_arrays_are_delta_coded_and_decode_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_torch: bool
) -> None:
    """uint8 / uint16 arrays get the delta + zstd codec; the fast decoder (NumPy or torch prefix
    sum) and zarr give back the exact pixels, for whole shards, asked rows and random access."""
    import json
    import sys

    from manifests.reader import decode_sharded_array
    from manifests.schema import Sample

    if with_torch:
        import torch  # noqa: F401
    else:
        monkeypatch.delitem(sys.modules, "torch", raising=False)
    rng = np.random.default_rng(7)
    base = np.cumsum(rng.integers(-3, 4, size=(9, 40, 33)), axis=2)  # smooth rows, wrapping deltas
    samples = [
        Sample(
            f"i{i:03d}",
            f"p{i}",
            "train",
            {
                "grey": (base[i] * 997 + 40000).astype(np.uint16),
                "rgb": (base[i][..., None] * [1, 3, 7] + 128).astype(np.uint8),
                "ragged": rng.integers(0, 256, size=int(rng.integers(1, 50)), dtype=np.uint8),
            },
            {"label": i % 2},
        )
        for i in range(9)
    ]
    url = str(tmp_path / "ds")
    records = write_and_publish(url, {("train", 0): samples}, ragged={"ragged"})
    root = Path(url) / records[0].files["arrays"]
    for name in ("grey", "rgb", "ragged/values"):
        meta = json.loads((root / name / "zarr.json").read_text())
        inner = [c["name"] for c in meta["codecs"][0]["configuration"]["codecs"]]
        assert inner == ["numcodecs.delta", "bytes", "zstd"], (name, inner)
        shard = (root / name / "c" / "/".join("0" for _ in meta["shape"])).read_bytes()
        fast = decode_sharded_array(meta, shard)
        assert fast is not None
        if name != "ragged/values":
            want = np.stack([s.arrays[name] for s in samples])
            np.testing.assert_array_equal(fast, want)
            rows = np.array([2, 8])
            np.testing.assert_array_equal(decode_sharded_array(meta, shard, rows)[rows], want[rows])
        else:
            np.testing.assert_array_equal(fast, np.concatenate([s.arrays["ragged"] for s in samples]))
    view = open_dataset(url).split("train")
    for i in (0, 5, 8):  # random access goes through zarr, which decodes numcodecs.delta itself
        np.testing.assert_array_equal(view[i]["grey"], samples[i].arrays["grey"])
        np.testing.assert_array_equal(view[i]["ragged"], samples[i].arrays["ragged"])
    for batch in view.numpy_batches(4, seed=3):
        for k, sid in enumerate(batch["sample_id"]):
            s = next(s for s in samples if s.sample_id == sid)
            np.testing.assert_array_equal(batch["rgb"][k], s.arrays["rgb"])
            np.testing.assert_array_equal(batch["grey"][k], s.arrays["grey"])


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "uint16", "int32", "uint32", "int64", "uint64"])
def test_prefix_sum_wraps_like_numpy_with_and_without_torch(
    monkeypatch: pytest.MonkeyPatch, dtype: str
) -> None:
    import sys

    import torch  # noqa: F401

    from manifests.reader import prefix_sum_inplace

    info = np.iinfo(dtype)
    deltas = np.random.default_rng(1).integers(info.min, info.max, size=5000, dtype=dtype, endpoint=True)
    want = np.cumsum(deltas, dtype=dtype)
    with_torch = deltas.copy()
    prefix_sum_inplace(with_torch)
    np.testing.assert_array_equal(with_torch, want)
    monkeypatch.delitem(sys.modules, "torch")
    without = deltas.copy()
    prefix_sum_inplace(without)
    np.testing.assert_array_equal(without, want)


@pytest.mark.parametrize("per_chunk", [4, 1])
@pytest.mark.parametrize("compression", ["none", "blosc-lz4", "delta-zstd"])
def test_ordered_decode_places_each_asked_sample_at_its_position(compression: str, per_chunk: int) -> None:
    """decode_sharded_rows(order) == the whole array taken at order, for any order (repeats too),
    with several samples per inner chunk and a partial last chunk, or one sample per chunk."""
    import json

    from manifests.reader import decode_sharded_array, decode_sharded_rows
    from manifests.writer import ShardFormat, encode_shard

    samples = make_samples(23, signal_shape=(3, 40))  # int16 3x40 = 240 B a sample
    fmt = ShardFormat(compression, 3, inner_chunk_bytes=1000 if per_chunk == 4 else 240)
    files = encode_shard("train", 0, samples, fmt=fmt)
    prefix = "arrays/train.zarr/00000/signal"
    meta = json.loads(files[f"{prefix}/zarr.json"])
    assert meta["codecs"][0]["configuration"]["chunk_shape"][0] == per_chunk
    shard = files[f"{prefix}/c/0/0/0"]
    whole = decode_sharded_array(meta, shard)
    np.testing.assert_array_equal(whole, np.stack([s.arrays["signal"] for s in samples]))
    rng = np.random.default_rng(0)
    for order in (rng.permutation(23), np.array([22, 0, 5, 5, 21]), np.array([], dtype=np.int64)):
        got = decode_sharded_rows(meta, shard, order)
        assert got.shape == (len(order), 3, 40)
        np.testing.assert_array_equal(got, whole[order])
    with pytest.raises(IndexError, match="out of range for a shard of 23 samples"):
        decode_sharded_rows(meta, shard, np.array([3, 23]))
