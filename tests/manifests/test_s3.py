"""Write, publish and read a dataset on S3: moto's real server on loopback, s3fs as the client."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import numpy as np
import pytest

from manifests import DatasetNotFoundError, ShardIntegrityError, open_dataset
from manifests.writer import write_shard
from tests.manifests.test_writer import make_samples, write_and_publish


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_options() -> Iterator[dict]:
    """A moto S3 server on 127.0.0.1 with one bucket; dummy credentials set for this module only."""
    import boto3
    from moto.server import ThreadedMotoServer

    mp = pytest.MonkeyPatch()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        mp.setenv(key, value)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="climb")
    try:
        yield {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": endpoint}}
    finally:
        server.stop()
        mp.undo()


def test_s3_round_trip_random_access_and_verify(s3_options: dict) -> None:
    url = "s3://climb/syn/v1"
    samples = make_samples(9, "train")
    records = write_and_publish(
        url, {("train", 0): samples[:5], ("train", 1): samples[5:]}, storage_options=s3_options
    )
    view = open_dataset(url, storage_options=s3_options, verify=True).split("train")
    assert [x["sample_id"] for x in view] == [s.sample_id for s in samples]
    np.testing.assert_array_equal(view[7]["signal"], samples[7].arrays["signal"])
    np.testing.assert_array_equal(view[6]["events"], samples[6].arrays["events"])
    # streaming from S3: whole-shard GETs, the same order as any other store
    streamed = [sid for b in view.numpy_batches(4, seed=3, lanes=2) for sid in b["sample_id"]]
    assert sorted(streamed) == sorted(s.sample_id for s in samples)
    # DataLoader workers are forked after the parent used s3fs: each must open its own client
    by_workers = [sid for b in view.loader(4, num_workers=2, seed=3, lanes=2) for sid in b["sample_id"]]
    assert by_workers == streamed
    # the same samples written locally give the same bytes
    local = write_shard("memory://climb-s3-compare/ds", "train", 1, samples[5:], source="synthetic")
    assert local.sha256 == records[1].sha256


def test_s3_without_manifest_is_absent_and_tampering_is_caught(s3_options: dict) -> None:
    import s3fs

    url = "s3://climb/partial/v1"
    write_shard(url, "train", 0, make_samples(3), storage_options=s3_options)
    with pytest.raises(DatasetNotFoundError, match="no dataset at s3://climb/partial/v1"):
        open_dataset(url, storage_options=s3_options)
    url = "s3://climb/tamper/v1"
    records = write_and_publish(url, {("train", 0): make_samples(3)}, storage_options=s3_options)
    fs = s3fs.S3FileSystem(**s3_options)
    victim = records[0].files["rows"]
    data = bytearray(fs.cat_file(f"climb/tamper/v1/{victim}"))
    data[-20] ^= 0xFF
    fs.pipe_file(f"climb/tamper/v1/{victim}", bytes(data))
    with pytest.raises(ShardIntegrityError, match=f"shard train/00000: file {victim}"):
        list(open_dataset(url, storage_options=s3_options, verify=True).split("train"))


def test_s3_bulk_gets_go_through_botocore_and_match_the_s3fs_path(s3_options: dict) -> None:
    import s3fs

    from manifests.s3get import S3Getter

    url = "s3://climb/direct/v1"
    samples = make_samples(10, "train")
    write_and_publish(url, {("train", 0): samples[:6], ("train", 1): samples[6:]}, storage_options=s3_options)
    direct = open_dataset(url, storage_options=s3_options)
    assert isinstance(direct._getter, S3Getter)
    # an option this module does not translate keeps the s3fs path for everything
    fallback = open_dataset(url, storage_options={**s3_options, "default_block_size": 1 << 20})
    assert fallback._getter is None

    def stream(ds) -> list[tuple[str, bytes]]:
        return [
            (sid, sig.tobytes())
            for b in ds.split("train").numpy_batches(3, seed=2)
            for sid, sig in zip(b["sample_id"], b["signal"], strict=True)
        ]

    got = stream(direct)
    assert got == stream(fallback)
    by_id = {s.sample_id: s.arrays["signal"].tobytes() for s in samples}
    assert sorted(got) == sorted(by_id.items())
    # a shard file gone from the bucket is reported by the botocore path as missing
    ref = direct.shards("train")[1]
    chunk = next(p for p in ref.array_files() if "/signal/c/" in p)
    s3fs.S3FileSystem(**s3_options).rm_file(f"climb/direct/v1/{chunk}")
    with pytest.raises(ShardIntegrityError, match="a file listed in the manifest is missing"):
        open_dataset(url, storage_options=s3_options).split("train").read_shard(ref)
