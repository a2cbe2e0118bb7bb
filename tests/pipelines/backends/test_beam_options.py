"""Beam pipeline options pass through to ``PipelineOptions``: from a file, on the local runner (a
real ``FnApiRunner`` run) and for Dataflow (the options a job would get, built without submitting).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import DirectOptions, GoogleCloudOptions, WorkerOptions

from pipelines.backends import BackendOptions, get_backend, load_beam_options, resolve_beam_runner
from pipelines.backends.beam import pipeline_options
from pipelines.cli_build import BuildOptions, beam_fields
from tests.conftest import ROOT
from tests.pipelines.backends.shard_writer import read_log, write_test_shard
from tests.pipelines.backends.test_backends import make_plans

DATAFLOW_ENV = {
    "GCP_PROJECT": "climb-project",
    "GCP_REGION": "europe-west4",
    "CLIMB_BUCKET": "climb-corpus",
    "CLIMB_BEAM_IMAGE": "europe-west4-docker.pkg.dev/climb-project/climb/climb-etl-beam:abc123",
    "GCP_SUBNETWORK": "regions/europe-west4/subnetworks/climb",
    "CLIMB_BEAM_SERVICE_ACCOUNT": "climb-beam@climb-project.iam.gserviceaccount.com",
}


def test_an_options_file_sets_the_local_runners_workers_in_a_real_run(tmp_path: Path) -> None:
    """``direct_num_workers``/``direct_running_mode`` from a JSON file reach FnApiRunner: two
    SDK-harness processes, neither of them this one, write the shards."""
    spec = tmp_path / "local.json"
    spec.write_text(json.dumps({"direct_num_workers": 2, "direct_running_mode": "multi_processing"}))
    options = BackendOptions(beam_options=load_beam_options(spec))
    runner, built = pipeline_options(options)
    assert runner == "FnApiRunner"
    assert built.view_as(DirectOptions).direct_num_workers == 2
    assert built.view_as(DirectOptions).direct_running_mode == "multi_processing"

    out, log = tmp_path / "out", tmp_path / "log"
    out.mkdir()
    log.mkdir()
    plans = make_plans({"train": 4})
    run_one = functools.partial(write_test_shard, out_dir=str(out), log_dir=str(log), delay_s=0.2)
    records = get_backend("beam")(run_one, plans, options=options)
    assert [(r.split, r.index) for r in records] == [("train", i) for i in range(4)]
    pids = {pid for event, _, pid in read_log(log) if event == "write"}
    assert len(pids) == 2 and os.getpid() not in pids


def test_backend_fields_win_and_contradictions_are_refused() -> None:
    flags = ("--direct_num_workers=2", "--direct_running_mode=multi_threading")
    runner, built = pipeline_options(BackendOptions(workers=2, beam_options=flags))
    assert (runner, built.view_as(DirectOptions).direct_running_mode) == ("FnApiRunner", "multi_threading")
    _, defaults = pipeline_options(BackendOptions(workers=3))
    assert defaults.view_as(DirectOptions).direct_num_workers == 3
    assert defaults.view_as(DirectOptions).direct_running_mode == "multi_processing"
    with pytest.raises(ValueError, match="workers=3 contradicts --direct_num_workers=2"):
        pipeline_options(BackendOptions(workers=3, beam_options=flags))
    with pytest.raises(ValueError, match="beam_running_mode=in_memory contradicts"):
        pipeline_options(BackendOptions(beam_running_mode="in_memory", beam_options=flags))
    with pytest.raises(ValueError, match="beam_running_mode must be one of"):
        BackendOptions(beam_running_mode="threads")


def test_dataflow_options_from_the_infra_file_are_what_a_job_would_get() -> None:
    """The constructed ``PipelineOptions`` for Dataflow (nothing is submitted)."""
    flags = load_beam_options(ROOT / "infra" / "beam" / "dataflow.yaml", DATAFLOW_ENV)
    options = BackendOptions(beam_options=flags, beam_results_url="gs://climb-corpus/beam/results")
    runner, built = pipeline_options(options)
    assert runner == "DataflowRunner"
    assert "runner" not in built.get_all_options(drop_default=True)  # the runner travels separately
    cloud = built.view_as(GoogleCloudOptions)
    assert (cloud.project, cloud.region) == ("climb-project", "europe-west4")
    assert cloud.temp_location == "gs://climb-corpus/beam/tmp"
    assert cloud.service_account_email == DATAFLOW_ENV["CLIMB_BEAM_SERVICE_ACCOUNT"]
    worker = built.view_as(WorkerOptions)
    assert worker.machine_type == "n2-highmem-8" and worker.max_num_workers == 64
    assert worker.sdk_container_image == DATAFLOW_ENV["CLIMB_BEAM_IMAGE"]
    # FnApiRunner's settings are not added to a remote runner's options.
    assert "direct_num_workers" not in built.get_all_options(drop_default=True)
    # The same runner named twice is fine; two different runners are not.
    assert (
        pipeline_options(BackendOptions(beam_runner="DataflowRunner", beam_options=flags))[0]
        == "DataflowRunner"
    )
    with pytest.raises(
        ValueError,
        match="--runner FlinkRunner contradicts the Beam options, which name the runner DataflowRunner",
    ):
        pipeline_options(BackendOptions(beam_runner="FlinkRunner", beam_options=flags))


def test_cli_beam_fields_merge_the_file_then_flags_and_take_the_runner_from_the_file(tmp_path: Path) -> None:
    spec = tmp_path / "flink.yaml"
    spec.write_text("runner: FlinkRunner\nflink_master: localhost:8081\nparallelism: 4\n")
    fields = beam_fields(None, spec, ["--parallelism=8"], None, "s3://climb/beam/results")
    assert fields["beam_runner"] == "FlinkRunner"
    assert fields["beam_options"] == ("--flink_master=localhost:8081", "--parallelism=4", "--parallelism=8")
    options = BuildOptions(backend="beam", **fields).backend_options()
    assert options.beam_results_url == "s3://climb/beam/results" and options.beam_runner == "FlinkRunner"
    runner, built = pipeline_options(options)
    assert runner == "FlinkRunner" and built.get_all_options()["parallelism"] == 8  # the later flag wins
    # The flows get options as JSON: a list of flags works the same.
    as_json = json.loads(
        json.dumps({"backend": "beam", **{**fields, "beam_options": list(fields["beam_options"])}})
    )
    assert BuildOptions(**as_json).backend_options() == options
    with pytest.raises(ValueError, match="unknown Beam running mode 'threads'"):
        beam_fields(None, None, [], "threads", None)
    with pytest.raises(ValueError, match=r"missing\.yaml: cannot read the Beam options file"):
        beam_fields(None, tmp_path / "missing.yaml", [], None, None)
    assert resolve_beam_runner(None, ("--runner", "SparkRunner", "--x=1")) == ("SparkRunner", ("--x=1",))
