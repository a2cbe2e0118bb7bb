"""The three backends build the ECG sources to byte-identical shards and manifests.

Same raw input, same config, same key: ``local`` (in-process), ``dask`` (a real 2-worker
``LocalCluster``) and ``beam`` (``FnApiRunner``, 2 worker processes). Every published file must
be identical byte for byte, except the manifest's build-time fields (``created_at`` and the
timing block ``throughput``) and Croissant's ``datePublished`` (the same timestamp), which are
compared after removing them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.backends import BackendOptions, get_backend
from pipelines.demo.ecg_release import write_cinc_release
from pipelines.stages.build import BuildConfig, build_source
from pipelines.stages.write import WORK_DIR
from tests.conftest import TEST_SECRET
from transforms.pseudonyms import DeidKey

KEY = DeidKey(TEST_SECRET.encode())
SOURCES = ("georgia", "cpsc2018")
TIMING_FIELDS = ("created_at", "throughput")


@pytest.fixture(scope="module")
def raw_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    write_cinc_release(root / "georgia", "georgia", 9, seed=31)
    write_cinc_release(root / "cpsc2018", "cpsc2018", 5, seed=32, durations_s=(6.0, 32.0))
    return root


def _published_files(dataset: Path) -> dict[str, bytes]:
    files = {}
    for path in sorted(dataset.rglob("*")):
        rel = path.relative_to(dataset).as_posix()
        if path.is_file() and not rel.startswith(WORK_DIR + "/"):
            files[rel] = path.read_bytes()
    return files


def _comparable(files: dict[str, bytes]) -> dict[str, bytes]:
    manifest = json.loads(files["manifest.json"])
    for name in TIMING_FIELDS:
        assert name in manifest, f"manifest has no {name}"
        manifest.pop(name)
    croissant = json.loads(files["croissant.json"])
    assert croissant.pop("datePublished") == manifest_created(files)
    return {
        **files,
        "manifest.json": json.dumps(manifest, sort_keys=True).encode(),
        "croissant.json": json.dumps(croissant, sort_keys=True).encode(),
    }


def manifest_created(files: dict[str, bytes]) -> str:
    return json.loads(files["manifest.json"])["created_at"]


def test_local_dask_and_beam_write_identical_bytes(raw_root, tmp_path):
    from distributed import LocalCluster

    outputs: dict[str, dict[str, dict[str, bytes]]] = {}
    # One Dask cluster for both sources (a cluster start per build would dominate the test).
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        backends = {
            "local": (None, None),
            "dask": (get_backend("dask"), BackendOptions(workers=2, dask_address=cluster.scheduler_address)),
            "beam": (get_backend("beam"), BackendOptions(workers=2)),
        }
        for backend, (mapper, options) in backends.items():
            for source in SOURCES:
                result = build_source(
                    source,
                    str(raw_root / source),
                    str(tmp_path / backend),
                    BuildConfig(items_per_shard=2),
                    map_shards=mapper,
                    backend_options=options,
                    key=KEY,
                )
                assert result.status == "built" and result.shards >= 3
                outputs.setdefault(backend, {})[source] = _comparable(
                    _published_files(Path(result.dataset_url))
                )
    for source in SOURCES:
        reference = outputs["local"][source]
        assert any(name.endswith(".parquet") for name in reference) and any(
            "zarr" in name for name in reference
        )
        for backend in ("dask", "beam"):
            other = outputs[backend][source]
            assert sorted(other) == sorted(reference), f"{backend}/{source}: different file lists"
            differing = [name for name in reference if reference[name] != other[name]]
            assert not differing, f"{backend}/{source}: files differ from local: {differing[:5]}"
