"""``climb build`` and ``climb status`` through the real CLI (typer's CliRunner, in-process)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.demo.ecg_release import write_cinc_release
from tests.conftest import TEST_SECRET

runner = CliRunner()


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    write_cinc_release(root, "georgia", 6, seed=21)
    return root


def test_build_then_rerun_says_up_to_date_and_status_lists_it(raw, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / "out"
    first = runner.invoke(
        app,
        [
            "build",
            "georgia",
            "--raw-dir",
            str(raw),
            "--out",
            str(out),
            "--items-per-shard",
            "2",
            "--log-json",
        ],
    )
    assert first.exit_code == 0, first.output
    assert "georgia: built v1-" in first.output and "6 items -> 6 samples" in first.output
    again = runner.invoke(
        app,
        [
            "build",
            "georgia",
            "--raw-dir",
            str(raw),
            "--out",
            str(out),
            "--items-per-shard",
            "2",
            "--log-json",
        ],
    )
    assert again.exit_code == 0, again.output
    assert "up to date, nothing to do" in again.output
    status = runner.invoke(app, ["status", "--out", str(out), "--json"])
    assert status.exit_code == 0, status.output
    rows = json.loads(status.output)
    assert [r["source"] for r in rows] == ["georgia"]
    assert rows[0]["samples"] == 6 and rows[0]["manifest_current"] is True and len(rows[0]["versions"]) == 1


def test_build_without_secret_fails_clearly(raw, tmp_path, monkeypatch):
    monkeypatch.delenv("CLIMB_DEID_SECRET")
    result = runner.invoke(app, ["build", "georgia", "--raw-dir", str(raw), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "CLIMB_DEID_SECRET" in result.output
    assert not list(tmp_path.rglob("manifest.json"))


def test_build_rejects_bad_arguments_without_a_traceback(raw, tmp_path):
    unknown = runner.invoke(app, ["build", "no_such_source", "--raw-dir", str(raw), "--out", str(tmp_path)])
    assert unknown.exit_code == 2 and "unknown source" in unknown.output and "Traceback" not in unknown.output
    policy = runner.invoke(
        app, ["build", "georgia", "--raw-dir", str(raw), "--out", str(tmp_path), "--split-policy", "random"]
    )
    assert policy.exit_code == 2 and "unknown split policy" in policy.output
    planned = runner.invoke(app, ["build", "tuab", "--raw-dir", str(raw), "--out", str(tmp_path)])
    assert planned.exit_code == 2 and "tuab" in planned.output


def test_secret_never_appears_in_build_output(raw, tmp_path):
    result = runner.invoke(
        app, ["build", "georgia", "--raw-dir", str(raw), "--out", str(tmp_path / "o"), "--log-json"]
    )
    assert result.exit_code == 0, result.output
    assert TEST_SECRET not in result.output
    for path in (tmp_path / "o").rglob("*"):
        if path.is_file():
            assert TEST_SECRET.encode() not in path.read_bytes(), path


def test_help_on_every_command():
    for args in (
        ["--help"],
        ["build", "--help"],
        ["status", "--help"],
        ["demo", "--help"],
        ["flow", "run", "--help"],
        ["fetch", "--help"],
        ["sources", "--help"],
        ["deid", "--help"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        assert "Usage" in result.output


def test_build_on_beam_takes_pipeline_options_from_a_file(raw, tmp_path, monkeypatch):
    """A real FnApiRunner build whose runner settings come from ``--beam-options-file`` (JSON)."""
    monkeypatch.setenv("COLUMNS", "200")
    spec = tmp_path / "beam.json"
    spec.write_text(json.dumps({"direct_num_workers": 2, "direct_running_mode": "multi_threading"}))
    out = tmp_path / "out"
    beam = ["--backend", "beam", "--beam-options-file", str(spec), "--log-json"]
    result = runner.invoke(
        app, ["build", "georgia", "--raw-dir", str(raw), "--out", str(out), "--items-per-shard", "2", *beam]
    )
    assert result.exit_code == 0, result.output
    assert "georgia: built v1-" in result.output and "6 items -> 6 samples" in result.output
    # The same file with a contradicting --workers: the options reached the runner's PipelineOptions.
    clash = runner.invoke(
        app,
        ["build", "georgia", "--raw-dir", str(raw), "--out", str(tmp_path / "o2"), "--workers", "3", *beam],
    )
    assert clash.exit_code == 2, clash.output
    assert "workers=3 contradicts --direct_num_workers=2" in clash.output
    assert not list((tmp_path / "o2").rglob("manifest.json"))


def test_build_on_beam_refuses_bad_options_files_naming_the_file(raw, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("CLIMB_TEST_UNSET_PROJECT", raising=False)
    spec = tmp_path / "dataflow.yaml"
    spec.write_text("runner: DataflowRunner\nproject: ${CLIMB_TEST_UNSET_PROJECT}\n")
    base = ["build", "georgia", "--raw-dir", str(raw), "--out", str(tmp_path / "o"), "--backend", "beam"]
    unset = runner.invoke(app, [*base, "--beam-options-file", str(spec)])
    assert unset.exit_code == 2 and "Traceback" not in unset.output
    unwrapped = "".join(unset.output.split())  # the console wraps long paths at any character
    assert f"{spec}:option'project'" in unwrapped and "CLIMB_TEST_UNSET_PROJECT" in unwrapped
    monkeypatch.setenv("CLIMB_TEST_UNSET_PROJECT", "p")
    clash = runner.invoke(app, [*base, "--beam-options-file", str(spec), "--runner", "FlinkRunner"])
    assert clash.exit_code == 2
    assert "--runnerFlinkRunnercontradictstheBeamoptions,whichnametherunnerDataflowRunner" in "".join(
        clash.output.split()
    )
    remote = runner.invoke(app, [*base, "--beam-options-file", str(spec)])
    assert remote.exit_code == 2 and "beam_results_url" in "".join(remote.output.split())
    assert not list((tmp_path / "o").rglob("manifest.json"))


def test_dask_build_starts_its_cluster_early_and_writes_what_local_writes(raw, tmp_path, monkeypatch):
    """``--backend dask`` (cluster started while indexing) gives the local build's bytes; a rerun is a no-op."""
    from pipelines.backends import BackendOptions
    from pipelines.backends.dask import cluster_started_early

    monkeypatch.setenv("COLUMNS", "200")
    args = ["build", "georgia", "--raw-dir", str(raw), "--items-per-shard", "2", "--log-json"]
    local = runner.invoke(app, [*args, "--out", str(tmp_path / "local")])
    assert local.exit_code == 0, local.output
    dask_args = [*args, "--out", str(tmp_path / "dask"), "--backend", "dask", "--workers", "1"]
    built = runner.invoke(app, dask_args)
    assert built.exit_code == 0, built.output
    assert "6 items -> 6 samples" in built.output

    def shard_hashes(root):
        (manifest,) = root.glob("georgia/v*/manifest.json")
        data = json.loads(manifest.read_text())
        return manifest.parent.name, sorted(
            (rel, digest) for shard in data["shards"] for rel, digest in shard["sha256"].items()
        )

    assert shard_hashes(tmp_path / "dask") == shard_hashes(tmp_path / "local")
    again = runner.invoke(app, dask_args)
    assert again.exit_code == 0, again.output
    assert "up to date, nothing to do" in again.output

    # the helper itself: options with an address pass through untouched; otherwise an address appears
    given = BackendOptions(workers=1, dask_address="tcp://127.0.0.1:1")
    with cluster_started_early(given) as ready:
        assert ready() is given
    with cluster_started_early(BackendOptions(workers=1, max_memory="1GiB")) as ready:
        address = ready().dask_address
        assert address is not None and address.startswith("tcp://127.0.0.1:")
