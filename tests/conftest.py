"""Test-wide settings: the shared samples, a test-only secret, and Prefect kept local and quiet."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SAMPLES = SHARED / "samples"
REFERENCE = SHARED / "reference"

# A secret for tests only; the product itself has no default (transforms.pseudonyms).
TEST_SECRET = "climb-test-secret-0123456789abcdef"
os.environ["CLIMB_DEID_SECRET"] = TEST_SECRET

_prefect_home = tempfile.mkdtemp(prefix="climb-prefect-home-")
os.environ.setdefault("PREFECT_HOME", _prefect_home)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """``../shared/samples``; a missing folder fails the test (it is part of the checkout's layout)."""
    assert SAMPLES.is_dir(), f"missing {SAMPLES}: tests need ../shared beside the project root"
    return SAMPLES


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    assert REFERENCE.is_dir(), f"missing {REFERENCE}: tests need ../shared beside the project root"
    return REFERENCE


def output_text(*roots: Path) -> str:
    """Every byte under ``roots`` (files or folders) as latin-1 text, plus every decoded Parquet
    value: compressed Parquet pages would hide a leaked string from a plain byte search."""
    import json

    import pyarrow.parquet as pq

    parts: list[str] = []
    for root in roots:
        for path in [root] if root.is_file() else sorted(root.rglob("*")):
            if path.is_file():
                parts.append(path.read_bytes().decode("latin-1"))
                if path.suffix == ".parquet":
                    parts.append(json.dumps(pq.read_table(path).to_pylist(), default=str))
    return "\n".join(parts)
