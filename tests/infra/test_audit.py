"""The weekly checksum audit flow (``pipelines.flows.audit.audit_corpus``) against a real local Prefect
server (``prefect server start``, the ``prefect_api`` fixture of ``conftest.py``; it plays the part
of ``prefect_test_harness`` and is shared with the deployment test), over datasets written by the
real writer and publisher."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from manifests.schema import MANIFEST_FILE
from pipelines.flows.audit import AuditFailedError, audit_corpus, find_datasets
from tests.infra.datasets import flip_a_byte, write_tiny_dataset


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Two sources, one with two published versions, plus an unpublished folder (no manifest)."""
    out = tmp_path_factory.mktemp("built")
    write_tiny_dataset(out, "toy_ecg", "v1", {"train": 2, "test": 1})
    write_tiny_dataset(out, "toy_ecg", "v2", {"train": 1})
    write_tiny_dataset(out, "toy_eeg", "v1", {"train": 1, "val": 1})
    (out / "toy_eeg" / "v0-unpublished" / "rows").mkdir(parents=True)
    return out


def latest_artifact(key: str) -> str:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    assert artifacts, f"no artifact {key}"
    return max(artifacts, key=lambda a: a.created).data


def manifest_totals(dataset: Path) -> tuple[int, int, int]:
    shards = json.loads((dataset / MANIFEST_FILE).read_text())["shards"]
    return len(shards), sum(len(s["sha256"]) for s in shards), sum(sum(s["bytes"].values()) for s in shards)


def test_find_datasets_lists_only_published_versions(corpus: Path) -> None:
    found = find_datasets(str(corpus))
    assert found == {
        "toy_ecg": [str(corpus / "toy_ecg" / "v1"), str(corpus / "toy_ecg" / "v2")],
        "toy_eeg": [str(corpus / "toy_eeg" / "v1")],
    }
    assert find_datasets(str(corpus), ["toy_eeg", "absent"]) == {
        "absent": [],
        "toy_eeg": [str(corpus / "toy_eeg" / "v1")],
    }


def test_audit_passes_on_an_intact_corpus_and_publishes_artifacts(prefect_api, corpus: Path) -> None:
    report = audit_corpus(str(corpus))
    datasets = [corpus / "toy_ecg" / "v1", corpus / "toy_ecg" / "v2", corpus / "toy_eeg" / "v1"]
    totals = [manifest_totals(d) for d in datasets]
    assert report["datasets"] == 3
    assert report["shards"] == sum(t[0] for t in totals)
    assert report["files"] == sum(t[1] for t in totals)
    assert report["bytes"] == sum(t[2] for t in totals)
    assert report["problems"] == []
    assert [r["version"] for r in report["sources"]["toy_ecg"]] == ["v1", "v2"]
    markdown = latest_artifact("audit-toy-ecg")
    assert "Checksum audit of toy_ecg: OK" in markdown
    assert "| v1 |" in markdown and "| v2 |" in markdown
    assert "Checksum audit of toy_eeg: OK" in latest_artifact("audit-toy-eeg")


def test_audit_fails_on_a_flipped_byte_and_names_the_shard(prefect_api, corpus: Path, tmp_path: Path) -> None:
    copy = tmp_path / "built"
    shutil.copytree(corpus, copy)
    shard, relative = flip_a_byte(copy / "toy_eeg" / "v1")
    with pytest.raises(AuditFailedError) as caught:
        audit_corpus(str(copy), sources=["toy_eeg"])
    message = str(caught.value)
    assert f"shard {shard}: file {relative} fails its sha256 check" in message
    assert "toy_ecg" not in message  # not asked for, not audited
    markdown = latest_artifact("audit-toy-eeg")
    assert "Checksum audit of toy_eeg: FAILED" in markdown
    assert relative in markdown


def test_audit_fails_when_a_requested_source_or_the_whole_corpus_is_missing(
    prefect_api, corpus: Path, tmp_path: Path
) -> None:
    with pytest.raises(AuditFailedError, match=r"ghost: no published dataset under"):
        audit_corpus(str(corpus), sources=["toy_ecg", "ghost"])
    assert "missing" in latest_artifact("audit-ghost")
    with pytest.raises(AuditFailedError, match=r"no published dataset under .*manifest\.json"):
        audit_corpus(str(tmp_path / "empty"))
