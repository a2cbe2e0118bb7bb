"""``climb demo`` end to end, reduced size: mirror -> Prefect flow -> shards -> epoch -> report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pipelines.demo.run import DEMO_SOURCES, mirror_cache_dir
from tests.conftest import output_text

RECORDS = 4


def test_climb_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CLIMB_DEID_SECRET", "PREFECT_HOME", "PREFECT_API_URL")
    }
    env["COLUMNS"] = "200"
    climb = Path(sys.executable).with_name("climb")
    proc = subprocess.run(
        [str(climb), "demo", "--out", str(out), "--records", str(RECORDS), "--backend", "local"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]

    # The summary names every implemented source with its counts and the epoch check.
    for source in DEMO_SOURCES:
        assert source in output
    assert output.count("seen once") == len(DEMO_SOURCES)
    assert "report:" in output and (out / "report.html").is_file()

    planted = json.loads((mirror_cache_dir(RECORDS) / "planted.json").read_text())
    built = out / "built"
    for source in DEMO_SOURCES:
        current = json.loads((built / source / "current.json").read_text())["version"]
        manifest = json.loads((built / source / current / "manifest.json").read_text())
        counts = manifest["counts"]
        expected_items = len(planted[source])  # the mirror's release for this source
        assert expected_items >= RECORDS
        assert counts["items_in"] == expected_items == counts["items_published"] + counts["quarantined"]
        assert counts["samples_out"] >= expected_items - counts["quarantined"]
        assert manifest["deid"]["actions"], "no de-identification report"
        assert f"{counts['samples_out']} seen once" in output

    # No identifier planted by the mirror reaches any output byte (datasets and report).
    # (``out/raw`` holds the fetched raw release itself: input, not output.)
    text = output_text(built, out / "report.html")
    assert len(text) > 100_000
    for source, records in planted.items():
        if source not in DEMO_SOURCES:
            continue
        for record in records:
            for key in ("record", "patient_name", "mrn"):
                assert record[key] not in text, f"{source}: planted {key} leaked"
            assert record["patient_name"].replace("^", " ") not in text, f"{source}: planted name leaked"
            day = record["recorded"][:10]
            for form in (day, day.replace("-", "")):
                assert form not in text, f"{source}: original date {form} leaked"
    # The demo's one-off credentials never reach the outputs or the console.
    assert "PHYSIONET_PASSWORD" not in text
