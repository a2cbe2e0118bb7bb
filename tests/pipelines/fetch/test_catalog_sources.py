"""The real catalog: every source manifest maps to a fetcher whose host spec parses, and the
CinC 2021 ECG sources fetch through their own manifests from a PhysioNet mirror serving the
real sample records of ``../shared/samples/ecg/cinc2021``."""

from __future__ import annotations

import hashlib
import shutil

import pytest
import wfdb

from manifests.schema import load_catalog, load_source_manifest
from pipelines.fetch.base import FetchError, ManualDownloadRequired
from pipelines.fetch.credentials import ChainCredentials
from pipelines.fetch.hosts.github import GitHubArchiveFetcher
from pipelines.fetch.hosts.huggingface import HuggingFaceFetcher
from pipelines.fetch.hosts.kaggle import KaggleCompetitionFetcher, KaggleDatasetFetcher
from pipelines.fetch.hosts.manual import ManualFetcher
from pipelines.fetch.mirror.physionet import PhysioNetMirror
from pipelines.fetch.mirror.server import write_sha256sums
from pipelines.fetch.source import fetch_source, make_fetcher

from .conftest import FAST_RETRY


def test_every_catalog_source_has_a_fetcher_whose_host_spec_parses(tmp_path):
    catalog = load_catalog()
    assert len(catalog) >= 4
    for sid, manifest in catalog.items():
        fetcher = make_fetcher(manifest, credentials=ChainCredentials([]))
        assert manifest.host.kind in fetcher.kinds or isinstance(fetcher, ManualFetcher), sid
        if isinstance(fetcher, GitHubArchiveFetcher):
            owner, repo, ref = fetcher.repo_and_ref()
            assert owner and repo and ref, sid
        elif isinstance(fetcher, KaggleDatasetFetcher):
            assert all(fetcher.slugs()[:2]), sid
        elif isinstance(fetcher, KaggleCompetitionFetcher):
            assert fetcher.competition(), sid
        elif isinstance(fetcher, HuggingFaceFetcher):
            assert fetcher.repo()[0], sid
        elif isinstance(fetcher, ManualFetcher):
            # without --manual-dir: instructions, never a crash or a prompt
            with pytest.raises(ManualDownloadRequired, match="download it by hand"):
                fetcher.list_files(None)
        fetcher.close()


@pytest.fixture
def cinc_tree(tmp_path, samples_dir):
    """The sample HR* (PTB-XL) and E* (Georgia) records placed as the challenge's training/ folders."""
    proj = tmp_path / "physionet" / "challenge-2021" / "1.0.3"
    placed = {}
    for src in sorted((samples_dir / "ecg" / "cinc2021").iterdir()):
        db = "ptb-xl" if src.name.startswith("HR") else "georgia" if src.name.startswith("E") else None
        if db is None:
            continue
        rel = f"training/{db}/g1/{src.name}"
        (proj / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, proj / rel)
        placed[rel] = hashlib.sha256(src.read_bytes()).hexdigest()
    write_sha256sums(proj)
    return tmp_path / "physionet", placed


@pytest.mark.parametrize(("source", "db"), [("ptbxl", "ptb-xl"), ("georgia", "georgia")])
def test_cinc2021_sources_fetch_through_their_catalog_manifests(cinc_tree, tmp_path, source, db):
    root, placed = cinc_tree
    manifest = load_source_manifest(source)
    with PhysioNetMirror(root) as srv:
        log = fetch_source(
            manifest,
            tmp_path / source,
            endpoints={"physionet": srv.url},
            credentials=ChainCredentials([]),
            progress=False,
            retry=FAST_RETRY,
        )
    expected = {p: h for p, h in placed.items() if p.startswith(f"training/{db}/")}
    assert expected and {r.path: r.sha256 for r in log.files} == expected
    first_header = sorted(p for p in expected if p.endswith(".hea"))[0]
    record = wfdb.rdheader(str(tmp_path / source / first_header[: -len(".hea")]))
    assert record.n_sig == 12  # the fetched files are the real, intact records
    hits = sorted((tmp_path / source).glob(manifest.layout.records)) if manifest.layout else []
    assert len(hits) == sum(1 for p in expected if p.endswith(".hea"))  # the layout glob finds them


def test_unknown_host_kind_is_a_clear_error():
    from pipelines.fetch.source import fetcher_class

    with pytest.raises(FetchError, match="no fetcher for host kind 'ftp'"):
        fetcher_class("ftp")
