"""The Prefect ``build_source``/``build_corpus`` flows against a real (temporary) Prefect server."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.testing.utilities import prefect_test_harness

from manifests import open_dataset
from pipelines.demo.ecg_release import write_cinc_release
from pipelines.flows.build import build_corpus, build_source


@pytest.fixture(scope="module")
def prefect_server():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def raw_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    write_cinc_release(root / "georgia", "georgia", 8, seed=3)
    write_cinc_release(root / "cpsc2018", "cpsc2018", 5, seed=4, durations_s=(6.0, 25.0))
    return root


def test_build_source_flow_builds_then_hits_the_cache(prefect_server, raw_root, tmp_path):
    out = str(tmp_path / "out")
    config = {"items_per_shard": 3}
    first = build_source("georgia", out, raw_dir=str(raw_root / "georgia"), config=config)
    assert first["status"] == "built" and first["cached"] is False
    assert first["items_in"] == 8 and first["samples_out"] + first["quarantined"] == 8
    dataset = open_dataset(first["dataset_url"])
    assert sum(len(dataset.split(s)) for s in dataset.splits) == first["samples_out"]

    second = build_source("georgia", out, raw_dir=str(raw_root / "georgia"), config=config)
    assert second["cached"] is True
    assert second["version"] == first["version"]

    # A config change is a new version: no cache hit.
    third = build_source("georgia", out, raw_dir=str(raw_root / "georgia"), config={"items_per_shard": 2})
    assert third["cached"] is False and third["version"] != first["version"]

    # Storage is the truth: a version Prefect remembers but whose files are gone is rebuilt.
    shutil.rmtree(first["dataset_url"])
    fourth = build_source("georgia", out, raw_dir=str(raw_root / "georgia"), config=config)
    assert fourth["cached"] is False and fourth["status"] == "built" and fourth["version"] == first["version"]
    assert (Path(first["dataset_url"]) / "manifest.json").is_file()

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["build-georgia"]))
        )
    assert artifacts, "no build-georgia artifact"
    assert "quarantine share" in artifacts[0].data and first["version"] in "".join(a.data for a in artifacts)


def test_build_corpus_fans_out(prefect_server, raw_root, tmp_path):
    out = str(tmp_path / "out")
    results = build_corpus(
        out, sources=["georgia", "cpsc2018"], raw_root=str(raw_root), config={"items_per_shard": 4}
    )
    assert set(results) == {"georgia", "cpsc2018"}
    assert results["georgia"]["items_in"] == 8
    assert results["cpsc2018"]["items_in"] == 5
    # CPSC records of 6-25 s give one or more 10 s windows each.
    assert results["cpsc2018"]["samples_out"] >= 5


def test_build_source_on_dask_starts_the_cluster_while_planning(prefect_server, raw_root, tmp_path, caplog):
    """The flow's Dask path starts its LocalCluster in the background during ``plan`` (as
    ``climb build`` does) and writes the local backend's bytes."""

    def shard_hashes(root: Path) -> list[tuple[str, str]]:
        (manifest,) = root.glob("georgia/v*/manifest.json")
        shards = json.loads(manifest.read_text())["shards"]
        return sorted((rel, digest) for shard in shards for rel, digest in shard["sha256"].items())

    config = {"items_per_shard": 3}
    raw = str(raw_root / "georgia")
    local = build_source("georgia", str(tmp_path / "local"), raw_dir=raw, config=config)
    with caplog.at_level(logging.INFO, logger="pipelines.backends.dask"):
        on_dask = build_source(
            "georgia",
            str(tmp_path / "dask"),
            raw_dir=raw,
            config=config,
            options={"backend": "dask", "workers": 1},
        )
    assert on_dask["status"] == "built" and on_dask["version"] == local["version"]
    early = [r.getMessage() for r in caplog.records if "after its start" in r.getMessage()]
    assert len(early) == 1 and "LocalCluster of 1 worker(s) ready" in early[0]
    assert shard_hashes(tmp_path / "dask") == shard_hashes(tmp_path / "local")
