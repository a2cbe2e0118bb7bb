"""``climb sources list|show`` through the real Typer app, on the real catalog and on broken copies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from manifests.schema import SOURCES_DIR, load_source_manifest
from pipelines.cli import app

IDS = sorted(p.stem for p in SOURCES_DIR.glob("*.yaml"))


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "160", "NO_COLOR": "1"})


def test_list_shows_every_id_and_the_totals(runner: CliRunner) -> None:
    result = runner.invoke(app, ["sources", "list"])
    assert result.exit_code == 0, result.output
    assert len(IDS) == 45
    for source_id in IDS:
        assert source_id in result.output
    assert "implemented" in result.output and "planned" in result.output
    assert "4,505,190" in result.output  # sum of the per-source N printed above it
    assert "4.51 M samples" in result.output
    statuses = [load_source_manifest(i).status for i in IDS]
    n_implemented = statuses.count("implemented")
    assert n_implemented >= 4
    assert f"{n_implemented} implemented, {len(IDS) - n_implemented} planned" in result.output
    assert "1,790,594" in result.output  # RSPECT's row


def test_list_json_parses_and_adds_up(runner: CliRunner) -> None:
    result = runner.invoke(app, ["sources", "list", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rows = data["sources"]
    assert [r["id"] for r in rows] == IDS
    assert {r["status"] for r in rows if r["id"] in {"ptbxl", "georgia", "cpsc2018", "chapman_shaoxing"}} == {
        "implemented"
    }
    totals = data["totals"]
    assert totals["total_items"] == sum(r["climb_reported_items"] for r in rows)
    for group, n in totals["items_by_group"].items():
        assert n == sum(r["climb_reported_items"] for r in rows if r["group"] == group)
    assert abs(sum(totals["share_percent_by_group"].values()) - 100.0) < 1e-2
    chapman = next(r for r in rows if r["id"] == "chapman_shaoxing")
    assert (chapman["climb_reported_items"], chapman["expected_items"]) == (40258, 10247)


def test_show_ptbxl_prints_its_fields(runner: CliRunner) -> None:
    result = runner.invoke(app, ["sources", "show", "ptbxl"])
    assert result.exit_code == 0, result.output
    on_disk = yaml.safe_load((SOURCES_DIR / "ptbxl.yaml").read_text(encoding="utf-8"))
    for text in (
        on_disk["title"],
        "host.url",
        on_disk["host"]["url"],
        on_disk["host"]["dataset"],
        "layout.records",
        on_disk["layout"]["records"],
        "labels.superclasses",
        "split.table",
        on_disk["split"]["table"],
        "canonical.sampling_rate_hz",
        "deid.namespace",
        "expected.splits.train",
        "quarantine_max_fraction",
        "climb_notes",
        "implemented",
    ):
        assert str(text) in result.output, text


def test_show_json_round_trips_the_manifest(runner: CliRunner) -> None:
    result = runner.invoke(app, ["sources", "show", "cpsc2018", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    on_disk = yaml.safe_load((SOURCES_DIR / "cpsc2018.yaml").read_text(encoding="utf-8"))
    for key in ("id", "title", "host", "licence", "climb_notes", "status"):
        assert data[key] == on_disk[key], key
    assert data["layout"]["extra"] == on_disk["layout"]["extra"]
    assert data["climb_reported_items"] == 6192
    assert data["expected"]["items"] == 6877
    assert len(data["content_hash"]) == 64


def test_show_unknown_id_exits_2_and_lists_the_known_ids(runner: CliRunner) -> None:
    result = runner.invoke(app, ["sources", "show", "ptb_xl"])
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "unknown source 'ptb_xl'" in result.stderr
    assert "ptbxl" in result.stderr and "vital" in result.stderr


def test_show_rejects_a_path_as_an_id(runner: CliRunner) -> None:
    result = runner.invoke(app, ["sources", "show", "../sources/ptbxl"])
    assert result.exit_code == 2
    assert "unknown source" in result.stderr


def _broken_copy(tmp_path: Path) -> Path:
    """A sources folder with a good ptbxl and a tuab whose host.access is not an access kind."""
    (tmp_path / "ptbxl.yaml").write_text(
        (SOURCES_DIR / "ptbxl.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    data = yaml.safe_load((SOURCES_DIR / "tuab.yaml").read_text(encoding="utf-8"))
    data["host"]["access"] = "by-email"
    bad = tmp_path / "tuab.yaml"
    bad.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return bad


@pytest.mark.parametrize("command", [["list"], ["list", "--json"], ["show", "tuab"]])
def test_malformed_manifest_exits_2_naming_file_and_field(
    runner: CliRunner, tmp_path: Path, command: list[str]
) -> None:
    bad = _broken_copy(tmp_path)
    result = runner.invoke(app, ["sources", *command, "--sources-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    message = " ".join(result.stderr.split())  # undo any wrapping
    assert str(bad) in message
    assert "host.access" in message
    assert result.stdout == ""


def test_show_a_good_manifest_beside_a_bad_one(runner: CliRunner, tmp_path: Path) -> None:
    _broken_copy(tmp_path)
    result = runner.invoke(app, ["sources", "show", "ptbxl", "--sources-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == "ptbxl"


def test_yaml_syntax_error_exits_2_naming_the_file(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "ptbxl.yaml"
    bad.write_text("id: ptbxl\nhost: {kind: physionet, access: open\n", encoding="utf-8")
    result = runner.invoke(app, ["sources", "list", "--sources-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    message = " ".join(result.stderr.split())
    assert f"{bad}: not valid YAML" in message


def test_missing_sources_dir_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["sources", "list", "--sources-dir", str(tmp_path / "absent")])
    assert result.exit_code == 2
    assert "Invalid value for '--sources-dir'" in result.output
