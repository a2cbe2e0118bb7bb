"""Plain HTTPS (Zenodo-like static hosting), GitHub archives and Google Drive, each against its
loopback look-alike, through ``fetch_source``."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from pipelines.fetch.base import AuthError, FetchError
from pipelines.fetch.checksums import read_checksums_tsv
from pipelines.fetch.credentials import ChainCredentials, EnvCredentials
from pipelines.fetch.download import FetchFailures
from pipelines.fetch.mirror.gdrive import GoogleDriveMirror
from pipelines.fetch.mirror.github import GitHubMirror, write_repo_archive
from pipelines.fetch.mirror.server import StaticMirror
from pipelines.fetch.source import fetch_source

from .conftest import FAST_RETRY, make_manifest, write_random


def _run(manifest, endpoints, dest, catalog, creds=None, **kw):
    return fetch_source(
        manifest,
        dest,
        endpoints=endpoints,
        credentials=creds or ChainCredentials([]),
        progress=False,
        retry=FAST_RETRY,
        checksums_dir=catalog,
        **kw,
    )


def test_zenodo_like_https_register_then_verify_and_extract(tmp_path):
    root = tmp_path / "zenodo"
    rec = root / "records" / "123" / "files"
    data = write_random(rec / "signals.bin", 50_000, seed=1)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("labels/train.csv")
        info.size = 6
        tf.addfile(info, io.BytesIO(b"a,b\n1\n"))
    (rec / "labels.tar.gz").write_bytes(buf.getvalue())
    manifest = make_manifest("zenodo", url="https://zenodo.org/records/123/files/")
    catalog = tmp_path / "catalog"
    with StaticMirror(root) as srv:
        log = _run(manifest, {"zenodo": srv.url}, tmp_path / "raw", catalog, register_checksums=True)
        pinned = read_checksums_tsv(catalog / "demo_src.checksums.tsv")
        assert pinned["signals.bin"].sha256 == hashlib.sha256(data).hexdigest()
        assert pinned["signals.bin"].size == 50_000
        assert (tmp_path / "raw" / "labels" / "train.csv").read_bytes() == b"a,b\n1\n"  # unpacked in place
        assert {r.checksum_source for r in log.files} == {"registered"}
        # the next fetch lists from the catalog and verifies against it
        log2 = _run(manifest, {"zenodo": srv.url}, tmp_path / "raw2", catalog)
        assert {r.checksum_source for r in log2.files} == {"catalog"}
        assert sorted(r.path for r in log2.files) == ["labels.tar.gz", "signals.bin"]
        (rec / "signals.bin").write_bytes(data[:-1] + b"\x00")  # the host's file changed
        with pytest.raises(FetchFailures, match=r"signals.bin: checksum mismatch"):
            _run(manifest, {"zenodo": srv.url}, tmp_path / "raw3", catalog)


def test_single_file_url_with_basic_auth_from_env(tmp_path, monkeypatch):
    root = tmp_path / "site"
    data = write_random(root / "dl" / "isic.zip.bin", 3000, seed=2)
    manifest = make_manifest("https", url="https://isic.example.org/dl/isic.zip.bin")
    monkeypatch.setenv("CLIMB_HTTPS_USERNAME", "u1")
    monkeypatch.setenv("CLIMB_HTTPS_PASSWORD", "pw-https-1")
    creds = ChainCredentials([EnvCredentials()])
    with StaticMirror(root, users={"u1": "pw-https-1"}) as srv:
        log = _run(
            manifest, {"https": srv.url}, tmp_path / "raw", tmp_path / "cat", creds, register_checksums=True
        )
        assert (tmp_path / "raw" / "isic.zip.bin").read_bytes() == data
        assert log.credential == "environment variables CLIMB_HTTPS_USERNAME/CLIMB_HTTPS_PASSWORD"
        monkeypatch.setenv("CLIMB_HTTPS_PASSWORD", "nope-nope")
        with pytest.raises(AuthError, match=r"HTTP 401.*CLIMB_HTTPS_USERNAME/CLIMB_HTTPS_PASSWORD"):
            _run(manifest, {"https": srv.url}, tmp_path / "raw4", tmp_path / "cat", creds)


def test_github_archive_follows_the_codeload_redirect_and_extracts(tmp_path, monkeypatch):
    files = {"README.md": b"# labels\n", "data/split.csv": b"id,split\n1,train\n"}
    archive = write_repo_archive(tmp_path / "gh", "climb-org", "labels", "v1.2", files)
    manifest = make_manifest("github", dataset="climb-org/labels@v1.2")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_token_abc123")
    creds = ChainCredentials([EnvCredentials()])
    with GitHubMirror(tmp_path / "gh", token="ghp_token_abc123") as srv:
        log = _run(
            manifest, {"github": srv.url}, tmp_path / "raw", tmp_path / "cat", creds, register_checksums=True
        )
        statuses = [s for _, p, s, _ in srv.stats.requests]
    (rec,) = log.files
    assert rec.path == "labels-v1.2.tar.gz" and rec.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert statuses == [302, 200]
    out = tmp_path / "raw"  # the <repo>-<ref>/ top folder is stripped: the repository's paths are the layout
    assert (out / "data" / "split.csv").read_bytes() == files["data/split.csv"]
    assert (out / "README.md").read_bytes() == files["README.md"]
    marker = out / ".climb" / "extracted" / "labels-v1.2.tar.gz.json"
    assert marker.is_file()
    (out / "README.md").write_bytes(b"edited")  # a rerun neither re-downloads nor re-extracts
    with GitHubMirror(tmp_path / "gh", token="ghp_token_abc123") as srv:
        again = _run(manifest, {"github": srv.url}, tmp_path / "raw", tmp_path / "cat", creds)
    assert again.files[0].status == "present" and (out / "README.md").read_bytes() == b"edited"


def test_github_archive_with_an_escaping_entry_is_refused(tmp_path):
    path = tmp_path / "gh" / "o" / "r" / "v1.tar.gz"
    path.parent.mkdir(parents=True)
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo("r-v1/../../../evil.sh")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"hi"))
    manifest = make_manifest("github", dataset="o/r@v1")
    with GitHubMirror(tmp_path / "gh") as srv, pytest.raises(FetchError, match="refusing entry"):
        _run(manifest, {"github": srv.url}, tmp_path / "raw", tmp_path / "cat", register_checksums=True)
    assert not list(tmp_path.rglob("evil.sh"))


def test_github_dataset_spec_is_checked(tmp_path):
    with pytest.raises(FetchError, match="owner/repo@ref"):
        _run(
            make_manifest("github", dataset="just-a-name"),
            {"github": "http://127.0.0.1:9"},
            tmp_path,
            tmp_path,
        )


def test_google_drive_confirmation_page_then_range_resume(tmp_path):
    root = tmp_path / "drive"
    big = write_random(root / "1AbCdEfG", 250_000, seed=3)
    small = write_random(root / "9ZyX", 500, seed=4)
    manifest = make_manifest("gdrive", dataset="1AbCdEfG=cohort.zip.bin,9ZyX=readme.txt")
    with GoogleDriveMirror(root, confirm_above_bytes=100_000) as srv:
        srv.faults.paths = "/download/1AbCdEfG"
        srv.faults.drop_at_byte = 120_000
        srv.faults.drop_times = 1
        log = _run(manifest, {"gdrive": srv.url}, tmp_path / "raw", tmp_path / "cat", register_checksums=True)
        reqs = list(srv.stats.requests)
    assert (tmp_path / "raw" / "cohort.zip.bin").read_bytes() == big
    assert (tmp_path / "raw" / "readme.txt").read_bytes() == small
    big_rec = next(r for r in log.files if r.path == "cohort.zip.bin")
    assert big_rec.bytes_transferred == len(big)  # resumed, not restarted
    confirm_pages = [r for r in reqs if r[1] == "/uc" and r[2] == 200]
    assert len(confirm_pages) == 1  # the page was passed once, the resume reused the confirmed URL
    assert ("GET", "/download/1AbCdEfG", 206, "bytes=120000-") in reqs


def test_figshare_article_zip_is_named_and_unpacked(tmp_path):
    import zipfile

    art = tmp_path / "figshare" / "ndownloader" / "articles" / "4879853"
    art.parent.mkdir(parents=True)
    with zipfile.ZipFile(art, "w") as zf:
        zf.writestr("dmr/img1.jpg", b"jpegbytes")
        zf.writestr("Dataset_Info.txt", b"info")
    manifest = make_manifest("figshare", url="https://figshare.com/ndownloader/articles/4879853")
    with StaticMirror(tmp_path / "figshare") as srv:
        log = _run(
            manifest, {"figshare": srv.url}, tmp_path / "raw", tmp_path / "cat", register_checksums=True
        )
        again = _run(manifest, {"figshare": srv.url}, tmp_path / "raw", tmp_path / "cat")
    assert [r.path for r in log.files] == ["4879853.zip"]
    assert (tmp_path / "raw" / "dmr" / "img1.jpg").read_bytes() == b"jpegbytes"
    assert again.files[0].status == "present" and again.files[0].checksum_source == "catalog"


def test_drive_source_without_file_ids_prints_manual_instructions(tmp_path):
    from pipelines.fetch.base import ManualDownloadRequired

    manifest = make_manifest("gdrive")
    with pytest.raises(ManualDownloadRequired, match="names no Google Drive file ids"):
        _run(manifest, {"gdrive": "http://127.0.0.1:9"}, tmp_path / "raw", tmp_path / "cat")


def test_an_expired_drive_confirmation_is_passed_again_and_the_file_resumes(tmp_path):
    root = tmp_path / "drive"
    big = write_random(root / "1Big", 250_000, seed=8)
    manifest = make_manifest("gdrive", dataset="1Big=big.bin")
    with GoogleDriveMirror(root, confirm_above_bytes=100_000, single_use_confirmations=True) as srv:
        srv.faults.paths, srv.faults.drop_at_byte, srv.faults.drop_times = "/download/1Big", 100_000, 1
        log = _run(manifest, {"gdrive": srv.url}, tmp_path / "raw", tmp_path / "cat", register_checksums=True)
        reqs = list(srv.stats.requests)
    assert (tmp_path / "raw" / "big.bin").read_bytes() == big
    assert log.files[0].bytes_transferred == len(big)  # the HTML page was never written into the file
    pages = [r for r in reqs if r[1] == "/uc" and r[2] == 200]
    assert len(pages) == 2  # confirmed twice: once at the start, once after the expired resume
    assert ("GET", "/download/1Big", 206, "bytes=100000-") in reqs


def test_two_fetches_never_write_the_same_file(physionet_tree, physionet_manifest, tmp_path):
    import fcntl
    import hashlib as _h

    from pipelines.fetch.mirror.physionet import PhysioNetMirror

    from .conftest import DATASET

    rel = f"{DATASET}/g1/HR00001.hea"
    locks = tmp_path / "raw" / ".climb" / "locks"
    locks.mkdir(parents=True)
    with (
        open(locks / (_h.sha1(rel.encode()).hexdigest() + ".lock"), "a+") as held,
        PhysioNetMirror(physionet_tree) as srv,
    ):
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # "another process" is writing this file
        with pytest.raises(FetchFailures, match="another fetch of this destination is writing it"):
            _run(physionet_manifest, {"physionet": srv.url}, tmp_path / "raw", tmp_path / "cat", files="g1/*")
        assert (
            not (tmp_path / "raw" / rel).exists()
            and (tmp_path / "raw" / f"{DATASET}/g1/HR00002.hea").exists()
        )
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
        log = _run(
            physionet_manifest, {"physionet": srv.url}, tmp_path / "raw", tmp_path / "cat", files="g1/*"
        )
    assert len(log.files) == 6
