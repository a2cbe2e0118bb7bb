"""PhysioNet fetching against the loopback PhysioNet mirror: listing, selection, verification,
resume and every fault the issue names."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path

import pytest

from manifests.schema import SourceManifest
from pipelines.fetch.base import (
    STATE_DIR,
    AuthError,
    ChecksumMismatch,
    FetchError,
    FetchLog,
    MissingChecksums,
)
from pipelines.fetch.checksums import read_checksums_tsv
from pipelines.fetch.credentials import ChainCredentials
from pipelines.fetch.download import FetchFailures, RetryPolicy
from pipelines.fetch.mirror.physionet import PhysioNetMirror
from pipelines.fetch.source import fetch_source

from .conftest import DATASET, FAST_RETRY, PROJECT, make_manifest

LARGE = f"{DATASET}/g2/HR00010.mat"
LARGE_URL = f"/files/{PROJECT}/{LARGE}"


def _expected(tree: Path) -> dict[str, str]:
    """path -> sha256 of every file of the ptb-xl sub-folder, computed from the served tree."""
    proj = tree / PROJECT
    return {
        p.relative_to(proj).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (proj / DATASET).rglob("*")
        if p.is_file()
    }


def _published(dest: Path) -> dict[str, str]:
    return {
        p.relative_to(dest).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in dest.rglob("*")
        if p.is_file() and STATE_DIR not in p.parts
    }


def _fetch(manifest: SourceManifest, server: PhysioNetMirror, dest: Path, creds: ChainCredentials, **kw):
    kw.setdefault("retry", FAST_RETRY)
    return fetch_source(
        manifest, dest, endpoints={"physionet": server.url}, credentials=creds, progress=False, **kw
    )


def test_fetches_only_the_dataset_subfolder_verified_and_logged(
    physionet_tree, physionet_server, physionet_manifest, no_credentials, tmp_path
):
    dest = tmp_path / "raw"
    log = _fetch(physionet_manifest, physionet_server, dest, no_credentials)
    expected = _expected(physionet_tree)
    assert _published(dest) == expected  # cpsc_2018 is outside host.dataset: not fetched
    assert log.status == "ok"
    assert {r.path: r.sha256 for r in log.files} == expected
    assert all(r.checksum_source == "host" and r.status == "downloaded" for r in log.files)
    on_disk = json.loads((dest / STATE_DIR / "fetch-log.json").read_text())
    assert on_disk["file_count"] == len(expected)
    assert on_disk["base_url"] == f"{physionet_server.url}/files/{PROJECT}/"
    assert FetchLog.read(dest).files == log.files

    # a rerun verifies what is there and downloads nothing
    before = len(physionet_server.stats.requests)
    again = _fetch(physionet_manifest, physionet_server, dest, no_credentials)
    assert {r.status for r in again.files} == {"present"}
    assert again.bytes_transferred == 0
    assert len(physionet_server.stats.requests) == before + 1  # only SHA256SUMS.txt


def test_files_glob_selects_a_subset(physionet_server, physionet_manifest, no_credentials, tmp_path):
    log = _fetch(physionet_manifest, physionet_server, tmp_path / "raw", no_credentials, files="g1/*.hea")
    assert [r.path for r in log.files] == [f"{DATASET}/g1/HR0000{i}.hea" for i in (1, 2, 3)]
    full = _fetch(
        physionet_manifest, physionet_server, tmp_path / "raw2", no_credentials, files=f"{DATASET}/g2/*"
    )
    assert [r.path for r in full.files] == [LARGE]
    with pytest.raises(FetchError, match="no files to fetch match --files"):
        _fetch(physionet_manifest, physionet_server, tmp_path / "raw3", no_credentials, files="nothing/*")


def test_dropped_connection_at_random_byte_resumes_with_range(
    physionet_tree, physionet_server, physionet_manifest, no_credentials, tmp_path
):
    size = (physionet_tree / PROJECT / LARGE).stat().st_size
    drop_at = random.Random(3).randrange(1, size - 1)
    physionet_server.faults.drop_at_byte = drop_at
    physionet_server.faults.drop_times = 2  # two drops: the second resumed request is cut again
    physionet_server.faults.paths = LARGE_URL
    log = _fetch(physionet_manifest, physionet_server, tmp_path / "raw", no_credentials, files="g2/*")
    (rec,) = log.files
    assert rec.sha256 == _expected(physionet_tree)[LARGE]
    assert rec.size_bytes == size
    assert rec.bytes_transferred < 2 * size
    assert physionet_server.stats.bytes_sent[LARGE_URL] < 2 * size
    ranges = [r for m, p, s, r in physionet_server.stats.requests if p == LARGE_URL and s == 206]
    assert ranges and ranges[0] == f"bytes={drop_at}-"
    assert not list((tmp_path / "raw").rglob("*.part"))


def test_503_with_retry_after_is_honoured(
    physionet_server, physionet_manifest, no_credentials, tmp_path, caplog
):
    physionet_server.faults.unavailable = 2
    physionet_server.faults.retry_after_s = 1
    physionet_server.faults.paths = LARGE_URL
    log = _fetch(physionet_manifest, physionet_server, tmp_path / "raw", no_credentials, files="g2/*")
    assert log.files[0].attempts == 3
    assert physionet_server.stats.count(LARGE_URL, status=503) == 2
    delays = [
        r.args[2] for r in caplog.records if "retrying in" in r.msg and r.args and r.args[1] == "HTTP 503"
    ]
    assert len(delays) == 2
    assert all(d >= 1.0 for d in delays)  # never sooner than Retry-After


def test_429_storm_is_ridden_out(physionet_server, physionet_manifest, no_credentials, tmp_path):
    physionet_server.faults.too_many = 25
    physionet_server.faults.paths = "*.mat"  # the storm hits the downloads, across connections
    retry = RetryPolicy(attempts=30, base_s=0.001, cap_s=0.01)
    log = _fetch(physionet_manifest, physionet_server, tmp_path / "raw", no_credentials, retry=retry)
    assert log.status == "ok"
    assert sum(1 for _, _, s, _ in physionet_server.stats.requests if s == 429) == 25
    mats = [r for r in log.files if r.path.endswith(".mat")]
    assert sum(r.attempts for r in mats) == len(mats) + 25  # every 429 was retried, nothing else
    assert all(r.bytes_transferred == r.size_bytes for r in mats)


def test_429_storm_longer_than_the_retry_budget_fails_clearly(
    physionet_server, physionet_manifest, no_credentials, tmp_path
):
    physionet_server.faults.too_many = 1000
    with pytest.raises(FetchError, match=r"SHA256SUMS.txt: giving up after 6 attempts; last error: HTTP 429"):
        _fetch(physionet_manifest, physionet_server, tmp_path / "raw", no_credentials)


def test_corrupt_bytes_are_refetched_once_then_fail_naming_both_hashes(
    physionet_tree, physionet_server, physionet_manifest, no_credentials, tmp_path
):
    physionet_server.faults.corrupt = LARGE_URL
    dest = tmp_path / "raw"
    with pytest.raises(FetchFailures) as info:
        _fetch(physionet_manifest, physionet_server, dest, no_credentials)
    (err,) = info.value.errors
    assert isinstance(err, ChecksumMismatch)
    good = _expected(physionet_tree)[LARGE]
    served = bytearray((physionet_tree / PROJECT / LARGE).read_bytes())
    served[len(served) // 2] ^= 0xFF
    assert err.path == LARGE and err.expected == good and err.actual == hashlib.sha256(served).hexdigest()
    assert LARGE in str(info.value) and good in str(info.value) and err.actual in str(info.value)
    assert physionet_server.stats.count(LARGE_URL, method="GET") == 2  # fetched, refetched once, then failed
    assert not (dest / LARGE).exists() and not list(dest.rglob("*.part"))  # nothing unverified published
    others = _published(dest)
    assert LARGE not in others and len(others) == len(_expected(physionet_tree)) - 1
    log = FetchLog.read(dest)
    assert log.status == "failed" and LARGE in log.errors[0]


def test_corrupt_once_recovers_on_the_refetch(
    physionet_tree, physionet_server, physionet_manifest, no_credentials, tmp_path
):
    physionet_server.faults.corrupt = LARGE_URL
    physionet_server.faults.corrupt_times = 1
    log = _fetch(physionet_manifest, physionet_server, tmp_path / "raw", no_credentials, files="g2/*")
    (rec,) = log.files
    assert rec.sha256 == _expected(physionet_tree)[LARGE]
    assert rec.bytes_transferred == 2 * rec.size_bytes


def test_wrong_password_gives_a_clear_401_without_the_secret(
    physionet_tree, physionet_manifest, env_credentials, tmp_path, monkeypatch, caplog
):
    secret = "Wr0ng-pa55word-zz91"
    monkeypatch.setenv("PHYSIONET_USERNAME", "alice")
    monkeypatch.setenv("PHYSIONET_PASSWORD", secret)
    with (
        PhysioNetMirror(physionet_tree, users={"alice": "the-right-one"}) as srv,
        pytest.raises(AuthError) as info,
    ):
        _fetch(physionet_manifest, srv, tmp_path / "raw", env_credentials)
    text = str(info.value)
    assert "HTTP 401" in text
    assert "PHYSIONET_USERNAME/PHYSIONET_PASSWORD" in text
    assert "data use agreement" in text
    assert secret not in text and secret not in repr(info.value)
    assert secret not in caplog.text
    assert srv.stats.auth_users == ["alice"]


def test_unsigned_dua_gives_403_naming_the_agreement(
    physionet_tree, physionet_manifest, tmp_path, monkeypatch
):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login bob password bobs-secret-1\n")
    netrc.chmod(0o600)
    from pipelines.fetch.credentials import NetrcCredentials

    creds = ChainCredentials([NetrcCredentials(netrc)])
    with PhysioNetMirror(physionet_tree, users={"bob": "bobs-secret-1"}, dua_signed=set()) as srv:
        with pytest.raises(
            AuthError, match=r"HTTP 403.*machine 127.0.0.1.*sign the project's data use agreement"
        ):
            _fetch(physionet_manifest, srv, tmp_path / "raw", creds)
        with PhysioNetMirror(physionet_tree, users={"bob": "bobs-secret-1"}) as ok:
            log = _fetch(physionet_manifest, ok, tmp_path / "raw", creds, files="g1/*.hea")
    assert len(log.files) == 3 and log.credential == f"{netrc} (machine 127.0.0.1)"


def test_without_a_host_list_checksums_must_be_registered_then_are_enforced(
    physionet_tree, physionet_server, no_credentials, tmp_path
):
    manifest = make_manifest("physionet", url=f"https://physionet.org/files/{PROJECT}/", dataset=DATASET)
    catalog = tmp_path / "catalog"
    with pytest.raises(MissingChecksums, match="--register-checksums"):
        _fetch(manifest, physionet_server, tmp_path / "raw", no_credentials, checksums_dir=catalog)
    assert not list((tmp_path / "raw").rglob("*.mat"))

    # registering crawls the HTML listing and records path, size, sha256
    log = _fetch(
        manifest,
        physionet_server,
        tmp_path / "raw",
        no_credentials,
        checksums_dir=catalog,
        register_checksums=True,
    )
    pinned = read_checksums_tsv(catalog / "demo_src.checksums.tsv")
    expected = _expected(physionet_tree)
    assert {p: c.sha256 for p, c in pinned.items()} == expected
    assert {p: c.size for p, c in pinned.items()} == {r.path: r.size_bytes for r in log.files}

    # later fetches verify against the catalog: a changed byte on the host now fails
    physionet_server.faults.corrupt = LARGE_URL
    with pytest.raises(FetchFailures, match="checksum mismatch"):
        _fetch(manifest, physionet_server, tmp_path / "raw2", no_credentials, checksums_dir=catalog)


def test_a_stale_published_file_is_replaced(
    physionet_tree, physionet_server, physionet_manifest, no_credentials, tmp_path, caplog
):
    dest = tmp_path / "raw"
    target = dest / DATASET / "g1" / "HR00001.hea"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x" * target.stat().st_size if target.exists() else b"stale")
    log = _fetch(physionet_manifest, physionet_server, dest, no_credentials, files="g1/HR00001.hea")
    assert log.files[0].status == "downloaded"
    assert (
        hashlib.sha256(target.read_bytes()).hexdigest()
        == _expected(physionet_tree)[f"{DATASET}/g1/HR00001.hea"]
    )


def test_plain_http_to_a_non_loopback_endpoint_is_refused(physionet_manifest, no_credentials, tmp_path):
    with pytest.raises(FetchError, match="plain http is allowed only for loopback"):
        fetch_source(
            physionet_manifest,
            tmp_path,
            endpoints={"physionet": "http://mirror.example.org"},
            credentials=no_credentials,
            progress=False,
        )


def test_progress_log_lines_report_bytes(
    physionet_server, physionet_manifest, no_credentials, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="climb.fetch")
    _fetch(physionet_manifest, physionet_server, tmp_path / "raw", no_credentials, files="g2/*")
    final = [r for r in caplog.records if r.msg.startswith("%s: %s / %s")]
    assert final and final[-1].args[1] == "293.0 KiB"  # 300_000 bytes


def test_a_complete_part_file_is_verified_and_published_without_refetching(
    physionet_tree, physionet_server, physionet_manifest, no_credentials, tmp_path
):
    """Killed after the last byte but before the rename: the server answers 416, nothing is re-sent."""
    dest = tmp_path / "raw"
    part = dest / (LARGE + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes((physionet_tree / PROJECT / LARGE).read_bytes())
    log = _fetch(physionet_manifest, physionet_server, dest, no_credentials, files="g2/*")
    (rec,) = log.files
    assert rec.bytes_transferred == 0 and rec.resumed_from_bytes == rec.size_bytes
    assert physionet_server.stats.count(LARGE_URL, status=416) == 1
    assert (dest / LARGE).is_file() and not part.exists()


def test_a_server_that_ignores_range_restarts_the_file_cleanly(
    physionet_tree, physionet_server, physionet_manifest, no_credentials, tmp_path
):
    dest = tmp_path / "raw"
    data = (physionet_tree / PROJECT / LARGE).read_bytes()
    part = dest / (LARGE + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:1234])
    physionet_server.faults.ignore_range = True
    log = _fetch(physionet_manifest, physionet_server, dest, no_credentials, files="g2/*")
    (rec,) = log.files
    assert (dest / LARGE).read_bytes() == data  # not 1234 bytes twice
    assert rec.bytes_transferred == len(data)
