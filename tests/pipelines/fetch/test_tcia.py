"""TCIA/NBIA: series list, one zip per series, extraction, patient selection, restricted collections."""

from __future__ import annotations

import shutil

import pydicom
import pytest
from pydicom.data import get_testdata_file

from pipelines.fetch.base import AuthError
from pipelines.fetch.credentials import ChainCredentials, EnvCredentials
from pipelines.fetch.mirror.tcia import TciaMirror
from pipelines.fetch.source import fetch_source

from .conftest import FAST_RETRY, make_manifest

TCIA_URL = "https://services.cancerimagingarchive.net/nbia-api/services/v1/"


@pytest.fixture
def tcia_root(tmp_path):
    """pydicom's bundled CT_small.dcm and MR_small.dcm, placed as two patients' series."""
    root = tmp_path / "tcia"
    ct, mr = get_testdata_file("CT_small.dcm"), get_testdata_file("MR_small.dcm")
    for patient, study, series, src in [
        ("PAT-0001", "1.2.3.1", "1.2.3.1.1", ct),
        ("PAT-0002", "1.2.3.2", "1.2.3.2.1", mr),
    ]:
        folder = root / "DEMO-COLL" / patient / study / series
        folder.mkdir(parents=True)
        shutil.copy(src, folder / "1-1.dcm")
    return root


def _run(srv, tmp_path, creds=None, **kw):
    manifest = make_manifest("tcia", dataset="DEMO-COLL", url=TCIA_URL)
    return fetch_source(
        manifest,
        tmp_path / "raw",
        endpoints={"tcia": srv.url},
        credentials=creds or ChainCredentials([]),
        progress=False,
        retry=FAST_RETRY,
        checksums_dir=tmp_path / "cat",
        register_checksums=True,
        **kw,
    )


def test_collection_series_zips_are_fetched_and_extracted(tcia_root, tmp_path):
    with TciaMirror(tcia_root) as srv:
        log = _run(srv, tmp_path)
    assert [r.path for r in log.files] == ["PAT-0001/1.2.3.1/1.2.3.1.1.zip", "PAT-0002/1.2.3.2/1.2.3.2.1.zip"]
    ds = pydicom.dcmread(tmp_path / "raw" / "PAT-0001" / "1.2.3.1" / "1.2.3.1.1" / "1-1.dcm")
    original = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    assert ds.SOPInstanceUID == original.SOPInstanceUID
    assert (ds.pixel_array == original.pixel_array).all()


def test_one_patient_and_a_restricted_collection(tcia_root, tmp_path, monkeypatch):
    monkeypatch.setenv("TCIA_USERNAME", "reader")
    monkeypatch.setenv("TCIA_PASSWORD", "wrong-tcia-pw")
    creds = ChainCredentials([EnvCredentials()])
    with TciaMirror(tcia_root, users={"reader": "tcia-pw-1"}) as srv:
        with pytest.raises(
            AuthError, match=r"HTTP 401.*TCIA_USERNAME/TCIA_PASSWORD.*data access request"
        ) as info:
            _run(srv, tmp_path, creds)
        assert "wrong-tcia-pw" not in str(info.value)
        monkeypatch.setenv("TCIA_PASSWORD", "tcia-pw-1")
        log = _run(srv, tmp_path, ChainCredentials([EnvCredentials()]), files="PAT-0002/*")
        assert srv.stats.auth_users == ["reader"]
    assert [r.path for r in log.files] == ["PAT-0002/1.2.3.2/1.2.3.2.1.zip"]
    assert not (tmp_path / "raw" / "PAT-0001").exists()
