"""Kill ``climb fetch`` (a real child process) mid-download with SIGKILL, rerun, and check the
file resumes from its ``.part`` with a correct hash and nothing duplicated or torn."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipelines.fetch.credentials import ChainCredentials
from pipelines.fetch.mirror.physionet import PhysioNetMirror
from pipelines.fetch.mirror.server import Faults
from pipelines.fetch.source import fetch_source

from .conftest import DATASET, FAST_RETRY, PROJECT, make_manifest, write_random

ROOT = Path(__file__).resolve().parents[3]


def test_sigkill_mid_download_then_rerun_resumes(tmp_path):
    proj = tmp_path / "physionet" / PROJECT
    data = write_random(proj / DATASET / "g1" / "BIG.mat", 600_000, seed=11)
    from pipelines.fetch.mirror.server import write_sha256sums

    write_sha256sums(proj)
    manifest = make_manifest(
        "physionet",
        url=f"https://physionet.org/files/{PROJECT}/",
        checksums="SHA256SUMS.txt",
        dataset=DATASET,
    )
    yaml_path = tmp_path / "demo_src.yaml"
    yaml_path.write_text(manifest.model_dump_json())
    dest = tmp_path / "raw"
    final = dest / DATASET / "g1" / "BIG.mat"
    part = final.with_name("BIG.mat.part")

    with PhysioNetMirror(tmp_path / "physionet", Faults(bandwidth_bytes_per_s=150_000)) as srv:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLIMB_ENDPOINT_")}
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipelines.fetch.cli",
                str(yaml_path),
                "--dest",
                str(dest),
                "--endpoint",
                f"physionet={srv.url}",
                "--connections",
                "1",
                "--no-progress",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not part.exists() or part.stat().st_size < 100_000):
            assert child.poll() is None, child.stdout.read().decode() if child.stdout else ""
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        assert child.returncode == -signal.SIGKILL
        killed_at = part.stat().st_size
        assert 100_000 <= killed_at < len(data)
        assert not final.exists()  # nothing unverified was published

        srv.faults.bandwidth_bytes_per_s = None
        log = fetch_source(
            manifest,
            dest,
            endpoints={"physionet": srv.url},
            credentials=ChainCredentials([]),
            progress=False,
            retry=FAST_RETRY,
        )

    (rec,) = log.files
    assert rec.resumed_from_bytes == killed_at
    assert rec.bytes_transferred == len(data) - killed_at
    assert final.read_bytes() == data
    assert rec.sha256 == hashlib.sha256(data).hexdigest()
    assert not part.exists()
    assert sorted(p.name for p in final.parent.iterdir()) == ["BIG.mat"]
    ranged = [r for m, p, s, r in srv.stats.requests if p.endswith("BIG.mat") and s == 206]
    assert ranged == [f"bytes={killed_at}-"]
