"""``climb fetch`` (exit codes, help, endpoint flags), endpoint resolution, the credential chain,
progress reporting and the mirror command."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.fetch.base import FetchError
from pipelines.fetch.credentials import (
    ChainCredentials,
    EnvCredentials,
    KaggleJsonCredentials,
    NetrcCredentials,
    PrefectSecretCredentials,
)
from pipelines.fetch.endpoints import (
    apply_override,
    check_url_scheme,
    parse_endpoint_options,
    resolve_base_url,
)
from pipelines.fetch.progress import LogProgress, RichProgress

from .conftest import DATASET, PROJECT, make_manifest

ROOT = Path(__file__).resolve().parents[3]


def _write_manifest(tmp_path: Path, **host) -> Path:
    manifest = make_manifest(**host)
    path = tmp_path / f"{manifest.id}.yaml"
    path.write_text(manifest.model_dump_json())
    return path


@pytest.fixture
def runner(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith(("CLIMB_ENDPOINT_", "PHYSIONET_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    return CliRunner()


def test_cli_fetches_and_reports(runner, physionet_server, tmp_path):
    yaml_path = _write_manifest(
        tmp_path,
        kind="physionet",
        url=f"https://physionet.org/files/{PROJECT}/",
        checksums="SHA256SUMS.txt",
        dataset=DATASET,
    )
    dest = tmp_path / "raw"
    result = runner.invoke(
        app,
        [
            "fetch",
            str(yaml_path),
            "--dest",
            str(dest),
            "--files",
            "g1/*.hea",
            "--endpoint",
            f"physionet={physionet_server.url}",
            "--connections",
            "2",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "demo_src: 3 files verified (3 downloaded" in result.output
    log = json.loads((dest / ".climb" / "fetch-log.json").read_text())
    assert log["max_connections"] == 2 and log["file_count"] == 3 and log["selection"] == "g1/*.hea"


def test_cli_exit_codes(runner, physionet_tree, tmp_path, monkeypatch):
    from pipelines.fetch.mirror.physionet import PhysioNetMirror

    yaml_path = _write_manifest(
        tmp_path,
        kind="physionet",
        url=f"https://physionet.org/files/{PROJECT}/",
        checksums="SHA256SUMS.txt",
        dataset=DATASET,
    )
    base = ["fetch", str(yaml_path), "--dest", str(tmp_path / "raw"), "--no-progress"]
    r = runner.invoke(app, ["fetch", "no_such_source_xyz"])
    assert r.exit_code == 2 and "unknown source 'no_such_source_xyz'" in r.output
    r = runner.invoke(app, [*base, "--endpoint", "physionet"])
    assert r.exit_code == 2 and "expected KIND=URL" in r.output
    r = runner.invoke(app, [*base, "--endpoint", "physionet=http://10.1.2.3:8080"])
    assert r.exit_code == 1 and "plain http is allowed only for loopback" in r.output
    monkeypatch.setenv("PHYSIONET_USERNAME", "dave")
    monkeypatch.setenv("PHYSIONET_PASSWORD", "wrong-pw-for-cli")
    with PhysioNetMirror(physionet_tree, users={"dave": "right"}) as srv:
        r = runner.invoke(app, [*base, "--endpoint", f"physionet={srv.url}"])
    assert r.exit_code == 3 and "HTTP 401" in r.output and "wrong-pw-for-cli" not in r.output
    monkeypatch.delenv("PHYSIONET_PASSWORD")
    (tmp_path / "x").mkdir()
    nosums = _write_manifest(
        tmp_path / "x", kind="physionet", url=f"https://physionet.org/files/{PROJECT}/", dataset=DATASET
    )
    with PhysioNetMirror(physionet_tree) as srv:
        r = runner.invoke(
            app,
            [
                "fetch",
                str(nosums),
                "--dest",
                str(tmp_path / "raw2"),
                "--no-progress",
                "--endpoint",
                f"physionet={srv.url}",
            ],
        )
        assert r.exit_code == 5 and "--register-checksums" in r.output
        r = runner.invoke(
            app,
            [
                "fetch",
                str(nosums),
                "--dest",
                str(tmp_path / "raw2"),
                "--no-progress",
                "--endpoint",
                f"physionet={srv.url}",
                "--register-checksums",
            ],
        )
        assert r.exit_code == 0 and (tmp_path / "x" / "demo_src.checksums.tsv").is_file()  # beside the YAML
    (tmp_path / "m").mkdir()
    manual = _write_manifest(
        tmp_path / "m",
        kind="manual",
        access="application",
        url="https://example.org/apply",
    )
    r = runner.invoke(
        app, ["fetch", str(manual), "--dest", str(tmp_path / "raw3"), "--manual-dir", str(tmp_path / "dl")]
    )
    assert (
        r.exit_code == 4
        and "download it by hand" in r.output
        and str(tmp_path / "dl" / "demo_src") in r.output
    )


def test_cli_help_explains_credentials_and_exit_codes(runner):
    result = runner.invoke(app, ["fetch", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for needle in (
        "--register-checksums",
        "--manual-dir",
        "--endpoint",
        "--connections",
        "PHYSIONET_USERNAME",
        "never accepted on the command line",
        "3 authentication refused",
        "4 manual download",
    ):
        assert needle in text, needle


def test_endpoint_resolution(monkeypatch):
    monkeypatch.delenv("CLIMB_ENDPOINT_PHYSIONET", raising=False)
    url = "https://physionet.org/files/challenge-2021/1.0.3/"
    assert resolve_base_url("physionet", url) == url
    assert resolve_base_url("physionet", url, {"physionet": "http://127.0.0.1:8080"}) == (
        "http://127.0.0.1:8080/files/challenge-2021/1.0.3/"
    )
    assert apply_override(url, "https://mirror.example.org/physionet/") == (
        "https://mirror.example.org/physionet/files/challenge-2021/1.0.3/"
    )
    monkeypatch.setenv("CLIMB_ENDPOINT_PHYSIONET", "http://[::1]:9000")
    assert resolve_base_url("physionet", url) == "http://[::1]:9000/files/challenge-2021/1.0.3/"
    assert resolve_base_url("physionet", url, {"physionet": "http://localhost:1"}).startswith(
        "http://localhost:1/"
    )
    monkeypatch.setenv("CLIMB_ENDPOINT_KAGGLE", "http://127.0.0.2:7")
    assert resolve_base_url("kaggle_competition", None) == "http://127.0.0.2:7/"  # shares kaggle's override
    for bad, why in [
        ("http://example.org/x", "only for loopback"),
        ("ftp://127.0.0.1/", "expected an https"),
        ("https://user:pw@example.org/", "credentials in URLs"),
    ]:
        with pytest.raises(FetchError, match=why):
            check_url_scheme(bad)
    assert parse_endpoint_options(["physionet=http://127.0.0.1:1", "KAGGLE = https://k.example"]) == {
        "physionet": "http://127.0.0.1:1",
        "kaggle": "https://k.example",
    }


def test_credential_chain_sources_and_order(tmp_path, monkeypatch, caplog):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine physionet.org login nina password netrc-pw\n")
    netrc.chmod(0o600)
    kj = tmp_path / "kaggle.json"
    kj.write_text(json.dumps({"username": "kim", "key": "kj-key"}))
    kj.chmod(0o644)
    chain = ChainCredentials(
        [EnvCredentials(), NetrcCredentials(netrc), KaggleJsonCredentials(kj), PrefectSecretCredentials()]
    )
    monkeypatch.delenv("PHYSIONET_USERNAME", raising=False)
    monkeypatch.delenv("PHYSIONET_PASSWORD", raising=False)
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    got = chain.get("physionet")
    assert got is not None and got.username == "nina" and got.secret.get() == "netrc-pw"
    assert got.origin == f"{netrc} (machine physionet.org)"
    monkeypatch.setenv("PHYSIONET_USERNAME", "eve")
    monkeypatch.setenv("PHYSIONET_PASSWORD", "env-pw")
    assert chain.get("physionet").username == "eve"  # the environment wins
    with caplog.at_level(logging.WARNING, logger="climb.fetch"):
        k = chain.get("kaggle")
    assert k.username == "kim" and k.origin == str(kj)
    assert "readable by other users" in caplog.text and "kj-key" not in caplog.text
    assert chain.get("tcia") is None  # nothing configured, and no prompt
    assert PrefectSecretCredentials().get("physionet") is None  # outside a flow run: no server touched


def test_progress_reporters_count_bytes(caplog):
    rich = RichProgress("demo")
    rich.add_total(1000)
    rich.advance(600)
    rich.advance(400)
    rich.file_done()
    task = rich._progress.tasks[0]
    assert task.total == 1000 and task.completed == 1000 and task.fields["files"] == 1
    rich.close()
    plain = LogProgress("demo", interval_s=0.0)
    plain.add_total(2048)
    with caplog.at_level(logging.INFO, logger="climb.fetch"):
        plain.advance(1024)
    assert "demo: 1.0 KiB / 2.0 KiB" in caplog.text


def test_mirror_command_serves_a_physionet_tree(physionet_tree, tmp_path):
    env = {**os.environ, "MIRROR_USERS": "amy:amy-pw"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.fetch.mirror",
            "physionet",
            "--root",
            str(physionet_tree),
            "--users-env",
            "MIRROR_USERS",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        url = line.split(" at ")[1].split(" ")[0]
        sums = f"{url}/files/{PROJECT}/SHA256SUMS.txt"
        assert requests.get(sums, timeout=10).status_code == 401
        resp = requests.get(sums, auth=("amy", "amy-pw"), timeout=10)
        assert resp.status_code == 200 and f"{DATASET}/g2/HR00010.mat" in resp.text
        assert "amy-pw" not in " ".join(proc.args)  # the password came through the environment
    finally:
        proc.terminate()
        proc.wait(10)
