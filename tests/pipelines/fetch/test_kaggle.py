"""Kaggle datasets and competitions against the loopback Kaggle API (token auth, pagination,
signed storage redirects, 403 for unaccepted competition rules)."""

from __future__ import annotations

import json

import pytest

from pipelines.fetch.base import AuthError
from pipelines.fetch.credentials import ChainCredentials, EnvCredentials, KaggleJsonCredentials
from pipelines.fetch.hosts import kaggle as kaggle_host
from pipelines.fetch.mirror.kaggle import KaggleMirror
from pipelines.fetch.source import fetch_source

from .conftest import FAST_RETRY, make_manifest, write_random

KEY = "kaggle-key-0f0f0f0f"


@pytest.fixture
def kaggle_root(tmp_path):
    root = tmp_path / "kaggle"
    data = {}
    for i in range(5):
        rel = f"images/img_{i}.bin"
        data[rel] = write_random(root / "datasets" / "owner1" / "chest-xray" / rel, 1000 + i, seed=i)
    data["labels.csv"] = write_random(root / "datasets" / "owner1" / "chest-xray" / "labels.csv", 64, seed=99)
    write_random(root / "competitions" / "rsna-pneumonia" / "stage_2_train.bin", 2048, seed=5)
    return root, data


def _run(manifest, srv, dest, creds, tmp_path, **kw):
    return fetch_source(
        manifest,
        dest,
        endpoints={"kaggle": srv.url},
        credentials=creds,
        progress=False,
        retry=FAST_RETRY,
        checksums_dir=tmp_path / "cat",
        register_checksums=True,
        **kw,
    )


def test_dataset_files_listed_over_pages_and_downloaded(kaggle_root, tmp_path, monkeypatch):
    root, data = kaggle_root
    monkeypatch.setattr(kaggle_host, "PAGE_SIZE", 2)  # force three pages
    cfg = tmp_path / "kcfg"
    cfg.mkdir()
    (cfg / "kaggle.json").write_text(json.dumps({"username": "kuser", "key": KEY}))
    (cfg / "kaggle.json").chmod(0o600)
    creds = ChainCredentials([KaggleJsonCredentials(cfg / "kaggle.json")])
    manifest = make_manifest("kaggle", dataset="owner1/chest-xray")
    with KaggleMirror(root, users={"kuser": KEY}) as srv:
        log = _run(manifest, srv, tmp_path / "raw", creds, tmp_path)
        list_calls = srv.stats.count("/v1/datasets.DatasetApiService/ListDatasetFiles")
        assert srv.storage_saw_auth is False  # the API key never went to the storage URL
    assert list_calls == 3
    assert {r.path for r in log.files} == set(data)
    for rel, content in data.items():
        assert (tmp_path / "raw" / rel).read_bytes() == content
    assert log.credential == str(cfg / "kaggle.json")
    assert all(r.url.startswith(srv.url) for r in log.files)


def test_selection_and_wrong_key(kaggle_root, tmp_path, monkeypatch):
    root, _ = kaggle_root
    monkeypatch.setenv("KAGGLE_USERNAME", "kuser")
    monkeypatch.setenv("KAGGLE_KEY", "not-the-key")
    creds = ChainCredentials([EnvCredentials()])
    manifest = make_manifest("kaggle", dataset="owner1/chest-xray")
    with KaggleMirror(root, users={"kuser": KEY}) as srv:
        with pytest.raises(AuthError) as info:
            _run(manifest, srv, tmp_path / "raw", creds, tmp_path)
        assert "HTTP 401" in str(info.value) and "KAGGLE_USERNAME/KAGGLE_KEY" in str(info.value)
        assert "not-the-key" not in str(info.value)
        monkeypatch.setenv("KAGGLE_KEY", KEY)
        log = _run(manifest, srv, tmp_path / "raw", creds, tmp_path, files="images/img_[01].bin")
    assert [r.path for r in log.files] == ["images/img_0.bin", "images/img_1.bin"]


def test_competition_rules_must_be_accepted(kaggle_root, tmp_path, monkeypatch):
    root, _ = kaggle_root
    monkeypatch.setenv("KAGGLE_USERNAME", "kuser")
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    creds = ChainCredentials([EnvCredentials()])
    manifest = make_manifest("kaggle_competition", dataset="rsna-pneumonia", access="competition")
    with KaggleMirror(root, users={"kuser": KEY}) as srv:
        with pytest.raises(AuthError) as info:
            _run(manifest, srv, tmp_path / "raw", creds, tmp_path)
        text = str(info.value)
        assert "HTTP 403" in text
        assert "accept the competition rules" in text
        assert "https://www.kaggle.com/competitions/rsna-pneumonia/rules" in text
        assert "KAGGLE_USERNAME/KAGGLE_KEY" in text and KEY not in text
        srv.accepted_rules["rsna-pneumonia"] = {"kuser"}
        srv.faults.paths = "/blobs/*"
        srv.faults.drop_at_byte, srv.faults.drop_times = 1000, 1
        log = _run(manifest, srv, tmp_path / "raw", creds, tmp_path)
    (rec,) = log.files
    assert rec.path == "stage_2_train.bin" and rec.size_bytes == 2048
    assert rec.bytes_transferred == 2048  # resumed through a fresh signed URL
    assert (tmp_path / "raw" / "stage_2_train.bin").read_bytes() == (
        root / "competitions" / "rsna-pneumonia" / "stage_2_train.bin"
    ).read_bytes()
