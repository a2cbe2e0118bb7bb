"""Fixtures for the fetch tests: tiny synthetic releases served by the loopback mirrors.

Provenance: every served file is random bytes written here (seeded), never real data; the
PhysioNet project mimics the layout of ``challenge-2021/1.0.3`` (``training/<db>/g1/*.hea|.mat``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from manifests.schema import SourceManifest
from pipelines.fetch.credentials import ChainCredentials, EnvCredentials
from pipelines.fetch.download import RetryPolicy
from pipelines.fetch.mirror.physionet import PhysioNetMirror
from pipelines.fetch.mirror.server import Faults, write_sha256sums

PROJECT = "challenge-2021/1.0.3"
DATASET = "training/ptb-xl"

#: Short backoffs so fault tests take well under a second each (Retry-After is still honoured).
FAST_RETRY = RetryPolicy(attempts=6, base_s=0.01, cap_s=0.05, connect_timeout_s=5, read_timeout_s=5)


def make_manifest(kind: str = "physionet", source_id: str = "demo_src", **host: Any) -> SourceManifest:
    """A minimal valid source manifest for ``kind``; ``host`` fields as keyword arguments."""
    host_spec = {"kind": kind, "access": "open", **host}
    return SourceManifest.model_validate(
        {
            "id": source_id,
            "title": "Demo source",
            "group": "1d",
            "modality": "ecg",
            "host": host_spec,
            "licence": "CC-BY-4.0",
            "labels": {"kind": "none"},
            "deid": {"namespace": "demo"},
        }
    )


def write_random(path: Path, size: int, seed: int) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


@pytest.fixture
def physionet_tree(tmp_path: Path) -> Path:
    """``<root>/challenge-2021/1.0.3/`` with two databases, one large file and ``SHA256SUMS.txt``."""
    root = tmp_path / "physionet"
    proj = root / PROJECT
    for i in range(1, 4):
        write_random(proj / DATASET / "g1" / f"HR0000{i}.hea", 200 + i, seed=i)
        write_random(proj / DATASET / "g1" / f"HR0000{i}.mat", 4000 + 10 * i, seed=100 + i)
    write_random(proj / DATASET / "g2" / "HR00010.mat", 300_000, seed=7)  # the "large" file
    write_random(
        proj / "training" / "cpsc_2018" / "g1" / "A0001.mat", 5000, seed=9
    )  # another db: not fetched
    write_sha256sums(proj)
    return root


@pytest.fixture
def physionet_server(physionet_tree: Path) -> Iterator[PhysioNetMirror]:
    with PhysioNetMirror(physionet_tree) as srv:
        yield srv


@pytest.fixture
def physionet_manifest() -> SourceManifest:
    return make_manifest(
        "physionet",
        url=f"https://physionet.org/files/{PROJECT}/",
        checksums="SHA256SUMS.txt",
        dataset=DATASET,
    )


@pytest.fixture
def no_credentials() -> ChainCredentials:
    """A credential chain that finds nothing (keeps the developer's ~/.netrc out of tests)."""
    return ChainCredentials([])


@pytest.fixture
def env_credentials() -> ChainCredentials:
    return ChainCredentials([EnvCredentials()])


@pytest.fixture(autouse=True)
def _fetch_logs_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="climb.fetch")


__all__ = ["DATASET", "FAST_RETRY", "PROJECT", "Faults", "make_manifest", "write_random"]
