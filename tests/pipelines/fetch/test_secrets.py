"""A known secret never appears in a log record, an exception, a file under the destination,
the CLI's output or the argv of a child process."""

from __future__ import annotations

import base64
import contextlib
import logging
import threading
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.fetch.credentials import ChainCredentials, EnvCredentials
from pipelines.fetch.download import FetchFailures
from pipelines.fetch.mirror.physionet import PhysioNetMirror
from pipelines.fetch.source import fetch_source

from .conftest import FAST_RETRY, PROJECT

SECRET = "s3cr3t-Pa55-do-not-leak-7781"
USER = "carol"


class _ChildWatcher:
    """Polls this process's children (recursively) and keeps every argv it sees."""

    def __init__(self) -> None:
        self.argvs: list[list[str]] = []  # every child's argv, seen while watching
        self.new_children: set[int] = set()  # children started while watching
        self._before = {c.pid for c in psutil.Process().children(recursive=True)}
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    self.argvs.append(child.cmdline())
                    if child.pid not in self._before:
                        self.new_children.add(child.pid)
            self.polls += 1
            self._stop.wait(0.005)

    def __enter__(self) -> _ChildWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _needles() -> list[bytes]:
    basic = base64.b64encode(f"{USER}:{SECRET}".encode())
    return [SECRET.encode(), basic, SECRET.encode("utf-16-le")]


def _assert_clean(text: str | bytes, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    for needle in _needles():
        assert needle not in data, f"secret found in {where}"


def test_secret_appears_nowhere_after_a_full_fetch(physionet_tree, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, urllib3 included
    monkeypatch.setenv("PHYSIONET_USERNAME", USER)
    monkeypatch.setenv("PHYSIONET_PASSWORD", SECRET)
    manifest_url = f"https://physionet.org/files/{PROJECT}/"
    from .conftest import DATASET, make_manifest

    manifest = make_manifest(
        "physionet", url=manifest_url, checksums="SHA256SUMS.txt", dataset=DATASET, access="credentialed"
    )
    creds = ChainCredentials([EnvCredentials()])
    dest = tmp_path / "raw"
    errors: list[str] = []
    with PhysioNetMirror(physionet_tree, users={USER: SECRET}) as srv, _ChildWatcher() as watcher:
        log = fetch_source(
            manifest,
            dest,
            endpoints={"physionet": srv.url},
            credentials=creds,
            progress=False,
            retry=FAST_RETRY,
            register_checksums=True,
            checksums_dir=tmp_path / "catalog",
        )
        # a failing run too: its exception and the failed fetch log must be clean as well
        srv.faults.corrupt = "*HR00010.mat"
        with pytest.raises(FetchFailures) as info:
            fetch_source(
                manifest,
                tmp_path / "raw-failed",
                endpoints={"physionet": srv.url},
                credentials=creds,
                progress=False,
                retry=FAST_RETRY,
            )
        errors += [str(info.value), repr(info.value), *(str(e) for e in info.value.errors)]
        srv.faults.corrupt = None
        # and the CLI, in-process, with the secret only in the environment
        monkeypatch.setenv("CLIMB_ENDPOINT_PHYSIONET", srv.url)
        yaml_path = tmp_path / "catalog" / "demo_src.yaml"
        yaml_path.write_text(manifest.model_dump_json())  # JSON is YAML
        result = CliRunner().invoke(
            app, ["fetch", str(yaml_path), "--dest", str(tmp_path / "raw-cli"), "--no-progress"]
        )
    assert result.exit_code == 0, result.output
    assert srv.stats.auth_users and set(srv.stats.auth_users) == {USER}  # the secret really was used
    assert (
        log.status == "ok" and log.credential == "environment variables PHYSIONET_USERNAME/PHYSIONET_PASSWORD"
    )

    for record in caplog.records:
        _assert_clean(record.getMessage(), f"log record {record.name}")
    _assert_clean(caplog.text, "captured log text")
    for text in errors:
        _assert_clean(text, "exception text")
    _assert_clean(result.output, "CLI output")
    files = [p for p in tmp_path.rglob("*") if p.is_file() and "physionet" not in p.parts]
    assert len(files) > 10
    for p in files:
        _assert_clean(p.read_bytes(), str(p))
    assert watcher.polls > 0
    # the fetch spawns no child process at all (so none can carry the secret); children that
    # existed before (e.g. Prefect's local server from another test) are checked below too
    assert watcher.new_children == set()
    for argv in watcher.argvs:
        _assert_clean(" ".join(argv), f"child argv {argv[:2]}")


def test_secret_reprs_are_redacted():
    from pipelines.fetch.credentials import Credential, Secret, redact

    cred = Credential(USER, Secret(SECRET), "test")
    assert SECRET not in repr(cred) and SECRET not in str(cred.secret)
    assert redact(f"boom {SECRET} boom") == "boom *** boom"
    import pickle

    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(cred)


def test_no_verify_false_anywhere_in_the_fetch_code():
    root = Path(__file__).resolve().parents[3] / "pipelines" / "fetch"
    offenders = [
        p for p in root.rglob("*.py") if "verify=False" in p.read_text() or "verify = False" in p.read_text()
    ]
    assert offenders == []
