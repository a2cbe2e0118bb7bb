"""Offline checks of infra/: the Prefect deployment file, the Dockerfile, the Kubernetes and Beam specs.

Each file is checked with the tool that reads it for real: Prefect's own entrypoint loader and
schedule model, ``dockerfile-parse`` (the Dockerfile's structure, stages and the lock it installs
from), PyYAML for the Kubernetes objects, and Beam's ``PipelineOptions`` for the runner options.
"""

from __future__ import annotations

import functools
import inspect
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from apache_beam.options.pipeline_options import PipelineOptions
from dockerfile_parse import DockerfileParser
from prefect.client.schemas.schedules import CronSchedule
from prefect.flows import Flow, load_flow_from_entrypoint

from pipelines.backends import load_beam_options
from tests.conftest import ROOT

INFRA = ROOT / "infra"

# ---------------------------------------------------------------------------------------------
# prefect.yaml
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prefect_spec() -> dict:
    return yaml.safe_load((INFRA / "prefect.yaml").read_text())


def test_prefect_yaml_has_nightly_build_and_weekly_audit_on_both_pool_kinds(prefect_spec: dict) -> None:
    deployments = {d["name"]: d for d in prefect_spec["deployments"]}
    assert set(deployments) == {"corpus-nightly", "audit-weekly", "corpus-nightly-k8s", "audit-weekly-k8s"}
    pools = {d["work_pool"]["name"] for d in deployments.values()}
    assert pools == {"climb-process", "climb-kubernetes"}
    for name, deployment in deployments.items():
        (schedule,) = deployment["schedules"]
        parsed = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
        _minute, _hour, day, month, weekday = parsed.cron.split()
        if name.startswith("corpus-nightly"):
            assert (day, month, weekday) == ("*", "*", "*"), f"{name} must run every day"
        else:
            assert day == "*" and month == "*" and weekday not in ("*", ""), f"{name} must run weekly"
    # The kubernetes pool runs the image the Dockerfile builds, where the code sits at /opt/climb.
    k8s = deployments["audit-weekly-k8s"]["work_pool"]["job_variables"]
    assert k8s["env"]["CLIMB_PROJECT_DIR"] == "/opt/climb"
    assert "CLIMB_PROJECT_DIR=/opt/climb" in (INFRA / "Dockerfile").read_text()


@functools.cache
def load_flow(entrypoint: str) -> Flow:
    """Prefect's own entrypoint loader, once per entrypoint (importing the build flow is not cheap)."""
    return load_flow_from_entrypoint(entrypoint)


@pytest.mark.parametrize("name", ["corpus-nightly", "audit-weekly", "corpus-nightly-k8s", "audit-weekly-k8s"])
def test_prefect_entrypoints_resolve_to_flows_that_take_their_parameters(
    prefect_spec: dict, name: str
) -> None:
    (deployment,) = [d for d in prefect_spec["deployments"] if d["name"] == name]
    path, _, function = deployment["entrypoint"].partition(":")
    assert not Path(path).is_absolute() and (ROOT / path).is_file(), f"{path} is not a file of the project"
    flow = load_flow(str(ROOT / path) + ":" + function)
    assert isinstance(flow, Flow)
    accepted = set(inspect.signature(flow.fn).parameters)
    assert set(deployment["parameters"]) <= accepted, f"{name}: unknown parameters for {flow.name}"
    assert "out" in deployment["parameters"]


def test_prefect_pull_step_runs_from_the_project_dir(prefect_spec: dict) -> None:
    (step,) = prefect_spec["pull"]
    assert step == {
        "prefect.deployments.steps.set_working_directory": {"directory": "{{ $CLIMB_PROJECT_DIR }}"}
    }


# ---------------------------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------------------------

DOCKER_INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "COMMENT",
}  # fmt: skip


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    return DockerfileParser(str(INFRA / "Dockerfile"))


def stages_of(parser: DockerfileParser) -> list[dict]:
    """``[{"name", "image", "instructions": [...]}]`` in file order."""
    stages: list[dict] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            parts = instruction["value"].split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append({"name": name, "image": parts[0], "instructions": []})
        elif stages:
            stages[-1]["instructions"].append(instruction)
    return stages


def test_dockerfile_parses_into_known_instructions_and_multiple_stages(dockerfile: DockerfileParser) -> None:
    unknown = {i["instruction"] for i in dockerfile.structure} - DOCKER_INSTRUCTIONS
    assert not unknown, f"unknown Dockerfile instructions {unknown}"
    stages = stages_of(dockerfile)
    names = [s["name"] for s in stages]
    assert names == ["uv", "beam-sdk", "builder", "runtime", "beam-worker"]
    assert len(set(names)) == len(names)
    for index, stage in enumerate(stages):
        earlier = set(names[:index])
        for instruction in stage["instructions"]:
            match = re.search(r"--from=(\S+)", instruction["value"])
            if instruction["instruction"] == "COPY" and match:
                assert match.group(1) in earlier, f"COPY --from={match.group(1)} names no earlier stage"
    # FROM of a later stage may name an earlier stage; every other image reference is pinned by an ARG.
    assert stages[-1]["image"] == "runtime"


def test_dockerfile_runs_as_non_root_and_installs_from_the_frozen_lock(dockerfile: DockerfileParser) -> None:
    stages = {s["name"]: s for s in stages_of(dockerfile)}
    for name in ("runtime", "beam-worker"):
        users = [i["value"] for i in stages[name]["instructions"] if i["instruction"] == "USER"]
        assert users, f"stage {name} sets no USER"
        assert users[-1].split(":")[0] not in ("root", "0"), f"stage {name} runs as root"
    builder = stages["builder"]["instructions"]
    runs = [i["value"] for i in builder if i["instruction"] == "RUN"]
    syncs = [r for r in runs if "uv sync" in r]
    assert syncs and all("--frozen" in r and "--no-dev" in r for r in syncs)
    copies = [i["value"] for i in builder if i["instruction"] == "COPY"]
    first_sync = next(
        i for i, ins in enumerate(builder) if ins["instruction"] == "RUN" and "uv sync" in ins["value"]
    )
    lock_copy = next(
        i for i, ins in enumerate(builder) if ins["instruction"] == "COPY" and "uv.lock" in ins["value"]
    )
    assert lock_copy < first_sync, "uv.lock must be in the image before uv sync runs"
    assert any("uv.lock" in c for c in copies)
    # torch is optional (a build arg) and CPU-only.
    assert re.search(r"^ARG WITH_TORCH=0$", dockerfile.content, re.MULTILINE), "torch must be opt-in"
    assert "download.pytorch.org/whl/cpu" in dockerfile.content


def test_dockerfile_beam_version_matches_the_lock(dockerfile: DockerfileParser) -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (beam,) = [p for p in lock["package"] if p["name"] == "apache-beam"]
    declared = re.search(r"^ARG BEAM_VERSION=(\S+)$", dockerfile.content, re.MULTILINE)
    assert declared, "no ARG BEAM_VERSION"
    assert declared.group(1) == beam["version"], "the Beam worker image must match the launcher's apache-beam"


def test_dockerfile_copies_only_paths_that_exist_and_are_not_ignored(dockerfile: DockerfileParser) -> None:
    ignore = (INFRA / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for stage in stages_of(dockerfile):
        for instruction in stage["instructions"]:
            if instruction["instruction"] != "COPY" or "--from=" in instruction["value"]:
                continue
            sources = [a for a in instruction["value"].split() if not a.startswith("--")][:-1]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the build context"
                assert source.rstrip("/") in allowed, f"COPY {source}: excluded by Dockerfile.dockerignore"


# ---------------------------------------------------------------------------------------------
# Kubernetes: the DaskCluster
# ---------------------------------------------------------------------------------------------

_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


def quantity_bytes(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i(?:B)?)", text)
    assert match, f"not a binary memory quantity: {text!r}"
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def test_dask_kubernetes_cluster_names_the_image_and_resources() -> None:
    documents = list(yaml.safe_load_all((INFRA / "dask" / "kubernetes-cluster.yaml").read_text()))
    kinds = {d["kind"]: d for d in documents}
    assert set(kinds) == {"DaskCluster", "DaskAutoscaler"}
    cluster = kinds["DaskCluster"]
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    assert kinds["DaskAutoscaler"]["spec"]["cluster"] == cluster["metadata"]["name"]
    worker_spec = cluster["spec"]["worker"]["spec"]
    scheduler_spec = cluster["spec"]["scheduler"]["spec"]
    assert cluster["spec"]["worker"]["replicas"] >= 1
    for spec in (worker_spec, scheduler_spec):
        (container,) = spec["containers"]
        assert container["image"] and ":" in container["image"]
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][bound])
        assert spec["securityContext"]["runAsNonRoot"] is True
    (worker,) = worker_spec["containers"]
    args = worker["args"]
    assert args[:2] == ["dask", "worker"]
    assert args[args.index("--nthreads") + 1] == "1"
    dask_limit = quantity_bytes(args[args.index("--memory-limit") + 1])
    assert dask_limit < quantity_bytes(worker["resources"]["limits"]["memory"]), (
        "Dask must pause before the OOM killer"
    )
    # The Service forwards to ports the scheduler container declares.
    (scheduler,) = scheduler_spec["containers"]
    declared = {p["name"] for p in scheduler["ports"]}
    assert {p["targetPort"] for p in cluster["spec"]["scheduler"]["service"]["ports"]} <= declared
    # The address the k8s deployment hands to the Dask backend is this cluster's scheduler Service.
    prefect_spec = yaml.safe_load((INFRA / "prefect.yaml").read_text())
    (build,) = [d for d in prefect_spec["deployments"] if d["name"] == "corpus-nightly-k8s"]
    name, namespace = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    assert (
        build["parameters"]["options"]["dask_address"]
        == f"tcp://{name}-scheduler.{namespace}.svc.cluster.local:8786"
    )


# ---------------------------------------------------------------------------------------------
# Beam runner options
# ---------------------------------------------------------------------------------------------

BEAM_ENV = {
    "GCP_PROJECT": "climb-project",
    "GCP_REGION": "europe-west4",
    "CLIMB_BUCKET": "climb-corpus",
    "CLIMB_BEAM_IMAGE": "europe-west4-docker.pkg.dev/climb-project/climb/climb-etl-beam:abc123",
    "GCP_SUBNETWORK": "regions/europe-west4/subnetworks/climb",
    "CLIMB_BEAM_SERVICE_ACCOUNT": "climb-beam@climb-project.iam.gserviceaccount.com",
    "FLINK_MASTER": "flink-jobmanager:8081",
}


@pytest.mark.parametrize("name", ["dataflow.yaml", "flink.yaml"])
def test_beam_options_files_are_options_beam_knows(name: str) -> None:
    path = INFRA / "beam" / name
    flags = load_beam_options(path, BEAM_ENV)
    known = PipelineOptions(list(flags)).get_all_options(retain_unknown_options=False)
    spec = yaml.safe_load(path.read_text())
    for key in spec:
        option = key[3:] if key.startswith("no_") else key
        assert option in known, f"{name}: {key} is not a Beam pipeline option"
    assert not any("${" in flag for flag in flags)
    image = BEAM_ENV["CLIMB_BEAM_IMAGE"]
    assert image in (known.get("sdk_container_image"), known.get("environment_config"))


def test_dataflow_options_target_dataflow_with_the_project_container() -> None:
    options = PipelineOptions(list(load_beam_options(INFRA / "beam" / "dataflow.yaml", BEAM_ENV)))
    values = options.get_all_options()
    assert values["runner"] == "DataflowRunner"
    assert values["project"] == "climb-project" and values["region"] == "europe-west4"
    assert values["temp_location"] == "gs://climb-corpus/beam/tmp"
    assert values["sdk_location"] == "container"
    assert values["use_public_ips"] is False
    assert "use_runner_v2" in values["experiments"]


def test_beam_options_name_an_unset_variable_without_values(tmp_path: Path) -> None:
    env = {k: v for k, v in BEAM_ENV.items() if k != "GCP_PROJECT"}
    with pytest.raises(
        ValueError, match=r"dataflow\.yaml: option 'project' needs the environment variable GCP_PROJECT"
    ):
        load_beam_options(INFRA / "beam" / "dataflow.yaml", env)
    nested = tmp_path / "nested.yaml"
    nested.write_text("runner: DataflowRunner\nlabels: {team: climb}\n")
    with pytest.raises(ValueError, match="option 'labels' is a mapping"):
        load_beam_options(nested, {})
