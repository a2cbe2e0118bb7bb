"""Hugging Face Hub datasets: huggingface_hub's own listing against the loopback Hub, LFS
SHA-256 verification, CDN redirect, token and gated repositories."""

from __future__ import annotations

import hashlib

import pytest

from pipelines.fetch.base import AuthError, MissingChecksums
from pipelines.fetch.credentials import ChainCredentials, EnvCredentials
from pipelines.fetch.mirror.huggingface import HubMirror
from pipelines.fetch.source import fetch_source

from .conftest import FAST_RETRY, make_manifest, write_random


@pytest.fixture
def hub_root(tmp_path):
    root = tmp_path / "hub"
    repo = root / "climb" / "mimic-notes-demo"
    files = {
        "data/train-00000.parquet": write_random(repo / "data" / "train-00000.parquet", 40_000, seed=1),
        "data/test-00000.parquet": write_random(repo / "data" / "test-00000.parquet", 20_000, seed=2),
        "README.md": b"# demo\n",
    }
    (repo / "README.md").write_bytes(files["README.md"])
    return root, files


def _run(srv, tmp_path, creds, **kw):
    manifest = make_manifest("huggingface", dataset="climb/mimic-notes-demo@main")
    return fetch_source(
        manifest,
        tmp_path / "raw",
        endpoints={"huggingface": srv.url},
        credentials=creds,
        progress=False,
        retry=FAST_RETRY,
        checksums_dir=tmp_path / "cat",
        **kw,
    )


def test_lfs_files_verified_by_the_hub_sha256_with_token(hub_root, tmp_path, monkeypatch):
    root, files = hub_root
    monkeypatch.setenv("HF_TOKEN", "hf_test_token_123456")
    creds = ChainCredentials([EnvCredentials()])
    with HubMirror(root, token="hf_test_token_123456", page_size=2) as srv:
        with pytest.raises(MissingChecksums, match=r"README\.md"):  # non-LFS files carry no SHA-256
            _run(srv, tmp_path, creds)
        log = _run(srv, tmp_path, creds, files="data/*")
        cdn_hits = [p for _, p, s, _ in srv.stats.requests if p.startswith("/cdn/") and s == 200]
    assert {r.path: r.checksum_source for r in log.files} == {
        "data/test-00000.parquet": "host",
        "data/train-00000.parquet": "host",
    }
    for r in log.files:
        assert (tmp_path / "raw" / r.path).read_bytes() == files[r.path]
        assert r.sha256 == hashlib.sha256(files[r.path]).hexdigest()
    assert len(cdn_hits) == 2  # LFS files came through the CDN redirect


def test_private_and_gated_repositories_name_the_token(hub_root, tmp_path, monkeypatch):
    root, _ = hub_root
    with (
        HubMirror(root, token="hf_right") as srv,
        pytest.raises(AuthError, match="no credential was found for huggingface"),
    ):
        _run(srv, tmp_path, ChainCredentials([]))
    monkeypatch.setenv("HF_TOKEN", "hf_right")
    with HubMirror(root, token="hf_right", gated=True) as srv, pytest.raises(AuthError) as info:
        _run(srv, tmp_path, ChainCredentials([EnvCredentials()]))
    assert "HTTP 403" in str(info.value) and "environment variable HF_TOKEN" in str(info.value)
    assert "accepting their conditions" in str(info.value) and "hf_right" not in str(info.value)
