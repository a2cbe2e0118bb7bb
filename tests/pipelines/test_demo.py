"""``climb demo`` end to end, reduced size: every implemented source generated, served by a
loopback mirror of its host's protocol, fetched by the real fetchers, built by the Prefect flow,
streamed back, and reported; nothing the mirror planted reaches an output byte."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from manifests.schema import load_catalog
from pipelines.demo.releases import DEMO_SOURCES, ECG_SOURCES, SPEC, mirror_cache_dir
from tests.conftest import output_text

RECORDS = 4
#: source host in the demo -> the fetch log's host kind (what actually fetched it).
FETCHED_BY = {"physionet": "physionet", "s3": "s3", "kaggle": "kaggle", "tcia": "tcia", "manual": "manual"}


def test_the_demo_covers_every_implemented_source():
    implemented = {sid for sid, m in load_catalog().items() if m.status == "implemented"}
    assert set(DEMO_SOURCES) == implemented
    for source in DEMO_SOURCES:  # served by the host its manifest names (S3: PhysioNet's open bucket)
        kind = load_catalog()[source].host.kind
        assert SPEC[source].host == kind or (SPEC[source].host, kind) == ("s3", "physionet"), source


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

    # The summary names every implemented source, the host it came from, and the epoch check.
    rows = {line.split("│")[1].strip(): line for line in output.splitlines() if line.count("│") > 5}
    assert set(DEMO_SOURCES) <= set(rows), output[-3000:]
    assert output.count("seen once") == len(DEMO_SOURCES)
    assert "report:" in output and (out / "report.html").is_file()
    for label in ("PhysioNet", "S3 (physionet-open)", "Kaggle API", "TCIA + HTTPS", "HTTPS + manual"):
        assert label in output

    planted = json.loads((mirror_cache_dir(RECORDS) / "planted.json").read_text())
    built = out / "built"
    for source in DEMO_SOURCES:
        # fetched by the fetcher of its host, over loopback, every file verified
        fetch_log = json.loads((out / "raw" / source / ".climb" / "fetch-log.json").read_text())
        assert fetch_log["status"] == "ok" and fetch_log["host_kind"] == FETCHED_BY[SPEC[source].host]
        assert fetch_log["files"] and all(len(f["sha256"]) == 64 for f in fetch_log["files"])
        current = json.loads((built / source / "current.json").read_text())["version"]
        manifest = json.loads((built / source / current / "manifest.json").read_text())
        counts = manifest["counts"]
        published = [p for p in planted[source] if not p.get("skipped")]
        assert counts["items_in"] == counts["items_published"] + counts["quarantined"]
        assert counts["quarantined"] == 0, (source, counts)
        assert counts["items_in"] == len(published), source  # every generated item, each once
        assert counts["samples_out"] >= counts["items_in"]
        assert manifest["deid"]["actions"], f"{source}: no de-identification report"
        row = rows[source]
        cells = [c.strip() for c in row.split("│")[1:-1]]
        assert cells[2] == str(counts["items_in"]) and cells[3] == str(counts["samples_out"]), row
        assert re.search(rf"\b{counts['samples_out']} seen once", row), row

    # No identifier planted by the mirror reaches any output byte (datasets and report).
    # (``out/raw`` and ``out/manual`` hold the fetched raw releases: input, not output.)
    text = output_text(built, out / "report.html")
    assert len(text) > 100_000
    checked = 0
    for source in DEMO_SOURCES:
        for item in planted[source]:
            for value in item["identifiers"]:
                assert value not in text, f"{source}: planted {value!r} leaked"
                checked += 1
            for date in item["dates"]:
                forms = [date] if source in ECG_SOURCES else [date, f"{date[:4]}-{date[4:6]}-{date[6:]}"]
                forms.append(f"{date[:4]}:{date[4:6]}:{date[6:]}")  # EXIF
                for form in forms:
                    assert form not in text, f"{source}: original date {form} leaked"
            for stamp in item.get("datetimes", []):
                assert stamp not in text, f"{source}: original date and time {stamp} leaked"
    assert checked > 200
    # The demo's one-off credentials never reach the outputs or the console.
    assert "PHYSIONET_PASSWORD" not in text and "KAGGLE_KEY" not in text
