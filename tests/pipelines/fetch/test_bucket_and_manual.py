"""S3 buckets through s3fs against moto's real server, and application-only sources from --manual-dir."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from pipelines.fetch.base import STATE_DIR, ChecksumMismatch, ManualDownloadRequired
from pipelines.fetch.checksums import PinnedChecksum, write_checksums_tsv
from pipelines.fetch.credentials import ChainCredentials
from pipelines.fetch.download import FetchFailures
from pipelines.fetch.source import fetch_source

from .conftest import FAST_RETRY, make_manifest


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def test_s3_prefix_register_resume_and_verify(moto_url, aws_env, tmp_path):
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    s3.create_bucket(Bucket="bdsp-iiic")
    objects = {f"eeg/sub-{i}/rec.edf": bytes([i]) * (300_000 + i) for i in range(3)}
    objects["other/skip.txt"] = b"not under the prefix"
    for key, body in objects.items():
        s3.put_object(Bucket="bdsp-iiic", Key=key, Body=body)
    manifest = make_manifest("s3", url="s3://bdsp-iiic/eeg/", access="credentialed")
    dest = tmp_path / "raw"
    # a killed earlier run left half of one object behind
    part = dest / "sub-1" / "rec.edf.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(objects["eeg/sub-1/rec.edf"][:100_000])
    run = {
        "endpoints": {"s3": moto_url},
        "credentials": ChainCredentials([]),
        "progress": False,
        "retry": FAST_RETRY,
        "checksums_dir": tmp_path / "cat",
    }
    log = fetch_source(manifest, dest, register_checksums=True, **run)
    assert sorted(r.path for r in log.files) == ["sub-0/rec.edf", "sub-1/rec.edf", "sub-2/rec.edf"]
    for r in log.files:
        body = objects[f"eeg/{r.path}"]
        assert (dest / r.path).read_bytes() == body
        assert r.sha256 == hashlib.sha256(body).hexdigest()
    resumed = next(r for r in log.files if r.path == "sub-1/rec.edf")
    assert resumed.resumed_from_bytes == 100_000
    assert resumed.bytes_transferred == len(objects["eeg/sub-1/rec.edf"]) - 100_000
    assert not list(dest.rglob("*.part"))

    # the object changes in the bucket: the pinned digest catches it, nothing is published
    s3.put_object(Bucket="bdsp-iiic", Key="eeg/sub-2/rec.edf", Body=b"\x07" * 300_002)
    with pytest.raises(FetchFailures) as info:
        fetch_source(manifest, tmp_path / "raw2", **run)
    assert isinstance(info.value.errors[0], ChecksumMismatch) and info.value.errors[0].path == "sub-2/rec.edf"
    assert not (tmp_path / "raw2" / "sub-2" / "rec.edf").exists()


def _manual_manifest():
    return make_manifest(
        "manual",
        access="application",
        url="https://isip.piconepress.com/projects/nedc/html/tuh_eeg/",
        agreement="TUH EEG Corpus data use agreement (signed, emailed to help@nedcdata.org)",
        source_id="tuh_demo",
    )


def test_manual_source_prints_instructions_then_verifies_what_was_placed(tmp_path):
    files = {"edf/train/aaaaaaaa_s001_t000.edf": b"0" * 1000, "edf/eval/bbbbbbbb_s001_t000.edf": b"1" * 2000}
    catalog = tmp_path / "cat"
    write_checksums_tsv(
        catalog / "tuh_demo.checksums.tsv",
        {p: PinnedChecksum(len(b), hashlib.sha256(b).hexdigest()) for p, b in files.items()},
    )
    manual = tmp_path / "downloads"
    (manual / "edf" / "train").mkdir(parents=True)
    (manual / "edf" / "train" / "aaaaaaaa_s001_t000.edf").write_bytes(
        files["edf/train/aaaaaaaa_s001_t000.edf"]
    )
    run = {
        "credentials": ChainCredentials([]),
        "progress": False,
        "retry": FAST_RETRY,
        "checksums_dir": catalog,
    }
    with pytest.raises(ManualDownloadRequired) as info:
        fetch_source(_manual_manifest(), tmp_path / "raw", manual_dir=str(manual), **run)
    text = str(info.value)
    assert "https://isip.piconepress.com/projects/nedc/html/tuh_eeg/" in text
    assert "TUH EEG Corpus data use agreement" in text
    assert str(manual) in text
    assert "Missing 1 of 2 files" in text and "edf/eval/bbbbbbbb_s001_t000.edf" in text
    assert "edf/train/aaaaaaaa_s001_t000.edf" not in text.split("e.g.:")[1]

    # the user places the file, but with the wrong bytes: refused, not published
    (manual / "edf" / "eval").mkdir()
    (manual / "edf" / "eval" / "bbbbbbbb_s001_t000.edf").write_bytes(b"2" * 2000)
    with pytest.raises(FetchFailures, match=r"edf/eval/bbbbbbbb_s001_t000.edf: checksum mismatch"):
        fetch_source(_manual_manifest(), tmp_path / "raw", manual_dir=str(manual), **run)
    assert not (tmp_path / "raw" / "edf" / "eval" / "bbbbbbbb_s001_t000.edf").exists()

    (manual / "edf" / "eval" / "bbbbbbbb_s001_t000.edf").write_bytes(files["edf/eval/bbbbbbbb_s001_t000.edf"])
    log = fetch_source(_manual_manifest(), tmp_path / "raw", manual_dir=str(manual), **run)
    assert {r.path: r.status for r in log.files} == {
        "edf/eval/bbbbbbbb_s001_t000.edf": "manual",
        "edf/train/aaaaaaaa_s001_t000.edf": "present",
    }
    for p, b in files.items():
        assert (tmp_path / "raw" / p).read_bytes() == b
    assert (tmp_path / "raw" / STATE_DIR / "fetch-log.json").is_file()


def test_manual_source_without_a_manual_dir_says_where_to_put_files(tmp_path):
    with pytest.raises(ManualDownloadRequired, match="passed as --manual-dir DIR"):
        fetch_source(
            _manual_manifest(),
            tmp_path / "raw",
            credentials=ChainCredentials([]),
            progress=False,
            checksums_dir=tmp_path,
        )
