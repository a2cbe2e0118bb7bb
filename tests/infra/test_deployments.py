"""infra/prefect.yaml deployed to a real local Prefect server and run by a real process worker, offline.

The nightly corpus build and the weekly audit are deployed with the real ``prefect deploy`` CLI from
``infra/prefect.yaml`` onto the ``climb-process`` work pool; flow runs are created from them and a
``prefect worker start --run-once`` process runs them (each in its own subprocess, from
``CLIMB_PROJECT_DIR`` as the file's pull step says). The build builds a small synthetic ECG source
(the demo release: real WFDB files), then the audit runs over the built corpus and a
tampered copy of the dataset beside it (the flow run fails, naming the shard, and the artifacts say
which dataset passed).
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
from prefect.client.schemas.objects import StateType
from prefect.workers.process import ProcessWorker

from manifests import open_dataset
from pipelines.demo.ecg_release import write_cinc_release
from pipelines.flows.audit import find_datasets
from tests.conftest import ROOT
from tests.infra.conftest import PREFECT, server_environment
from tests.infra.datasets import flip_a_byte

POOL = "climb-process"
CLI_TIMEOUT_S = 420


def run_cli(args: list[str], env: dict[str, str], log: Path) -> str:
    """Run a ``prefect`` command from the project root; fail with its output when it fails."""
    completed = subprocess.run(
        [PREFECT, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    output = completed.stdout + completed.stderr
    with open(log, "a") as handle:
        handle.write(f"$ prefect {' '.join(args)}\n{output}\n")
    assert completed.returncode == 0, (
        f"prefect {' '.join(args)} exited {completed.returncode}:\n{output[-4000:]}"
    )
    return output


def run_worker_once(env: dict[str, str], log: Path) -> None:
    run_cli(
        [
            "worker",
            "start",
            "--pool",
            POOL,
            "--type",
            "process",
            "--run-once",
            "--name",
            f"test-{uuid.uuid4().hex[:6]}",
        ],
        env,
        log,
    )


def test_nightly_build_and_weekly_audit_deploy_and_run_on_a_process_worker(
    prefect_api: str, tmp_path: Path
) -> None:
    spec = {
        d["name"]: d for d in yaml.safe_load((ROOT / "infra" / "prefect.yaml").read_text())["deployments"]
    }
    env = server_environment(tmp_path / "prefect-cli-home", prefect_api)
    env["CLIMB_PROJECT_DIR"] = str(ROOT)
    log = tmp_path / "prefect-cli.log"
    raw_root = tmp_path / "raw"
    write_cinc_release(raw_root / "georgia", "georgia", 6, seed=11)
    out = tmp_path / "built"

    with get_client(sync_client=True) as client:
        client.create_work_pool(
            WorkPoolCreate(
                name=POOL, type="process", base_job_template=ProcessWorker.get_default_base_job_template()
            )
        )
    run_cli(
        [
            "--no-prompt",
            "deploy",
            "--prefect-file",
            "infra/prefect.yaml",
            "--name",
            "corpus-nightly",
            "--name",
            "audit-weekly",
        ],
        env,
        log,
    )

    with get_client(sync_client=True) as client:
        build = client.read_deployment_by_name("build-corpus/corpus-nightly")
        audit = client.read_deployment_by_name("audit-corpus/audit-weekly")
        for deployment, name in ((build, "corpus-nightly"), (audit, "audit-weekly")):
            assert deployment.work_pool_name == POOL
            assert [s.schedule.cron for s in deployment.schedules] == [spec[name]["schedules"][0]["cron"]]
            assert deployment.parameters == spec[name]["parameters"]
            assert deployment.entrypoint == spec[name]["entrypoint"]
        # The nightly build, on a small ECG source with the in-process backend (Dask is tested elsewhere).
        build_run = client.create_flow_run_from_deployment(
            build.id,
            parameters={
                "out": str(out),
                "sources": ["georgia"],
                "raw_root": str(raw_root),
                "config": {"items_per_shard": 3},
                "options": {"backend": "local"},
            },
        )
    run_worker_once(env, log)

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(build_run.id).state
        assert state.type == StateType.COMPLETED, (
            f"build run {state.type}: {state.message}\n{log.read_text()[-4000:]}"
        )
    (dataset_url,) = find_datasets(str(out))["georgia"]
    dataset = open_dataset(dataset_url)
    assert sum(len(dataset.split(s)) for s in dataset.splits) == dataset.manifest["counts"]["samples_out"] > 0

    # The weekly audit, over the built corpus plus a tampered copy of the dataset (one flipped byte):
    # the untouched dataset passes, the copy fails, and so does the flow run, naming the shard.
    tampered = out / "georgia_tampered" / Path(dataset_url).name
    shutil.copytree(dataset_url, tampered)
    shard, relative = flip_a_byte(tampered)
    with get_client(sync_client=True) as client:
        audit_run = client.create_flow_run_from_deployment(audit.id, parameters={"out": str(out)})
    run_worker_once(env, log)

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(audit_run.id).state
        assert state.type == StateType.FAILED, f"audit run {state.type}: {state.message}"
        assert f"shard {shard}: file {relative} fails its sha256 check" in state.message
        assert "georgia_tampered" in state.message
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["audit-georgia", "audit-georgia-tampered"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[audit_run.id]),
            )
        )
    by_key = {a.key: a.data for a in artifacts}
    assert "Checksum audit of georgia: OK" in by_key["audit-georgia"]
    assert "Checksum audit of georgia_tampered: FAILED" in by_key["audit-georgia-tampered"]
    assert relative in by_key["audit-georgia-tampered"]
