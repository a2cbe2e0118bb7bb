"""Fetchers: one per access kind, behind one interface the source manifests name.

Quick start::

    from manifests.schema import load_source_manifest
    from pipelines.fetch import fetch_source

    log = fetch_source(load_source_manifest("ptbxl"), "raw/ptbxl", files="g1/*")
    print(log.total_bytes, log.files[0].sha256)

Layout of this package:

- :mod:`.base`: :class:`RemoteFile`, :class:`FetchRecord`, :class:`FetchLog`, the :class:`Fetcher`
  interface and the errors (:class:`FetchError`, :class:`AuthError`, :class:`ChecksumMismatch`,
  :class:`MissingChecksums`, :class:`ManualDownloadRequired`, :class:`UnsafeArchiveError`).
- :mod:`.source`: :func:`fetch_source` (what the CLI and the flows call) and the host-kind table.
- :mod:`.download`: the shared HTTP engine (bounded connections, Range resume, retry with
  backoff honouring ``Retry-After``, verify, publish by rename) and :class:`RetryPolicy`.
- :mod:`.credentials`: the credential chain (env, ``~/.netrc``, ``kaggle.json``, Prefect Secret).
- :mod:`.endpoints`: base URLs and ``--endpoint``/``CLIMB_ENDPOINT_<KIND>`` overrides (https only,
  plain http for loopback).
- :mod:`.checksums`, :mod:`.archives`, :mod:`.progress`: checksum lists, safe extraction, progress.
- :mod:`.hosts`: one module per access kind (PhysioNet, Kaggle, TCIA, HTTPS/Zenodo/figshare/
  Mendeley, GitHub, Google Drive, Hugging Face, cloud buckets, manual).
- :mod:`.mirror`: loopback servers speaking each host's protocol, with fault injection, for
  tests, benchmarks and the demo mirror (``python -m pipelines.fetch.mirror --help``).
"""

from pipelines.fetch.base import (
    AuthError,
    ChecksumMismatch,
    Fetcher,
    FetchError,
    FetchLog,
    FetchRecord,
    ManualDownloadRequired,
    MissingChecksums,
    RemoteFile,
    UnsafeArchiveError,
)
from pipelines.fetch.download import FetchFailures, RetryPolicy
from pipelines.fetch.source import fetch_source

__all__ = [
    "AuthError",
    "ChecksumMismatch",
    "FetchError",
    "FetchFailures",
    "FetchLog",
    "FetchRecord",
    "Fetcher",
    "ManualDownloadRequired",
    "MissingChecksums",
    "RemoteFile",
    "RetryPolicy",
    "UnsafeArchiveError",
    "fetch_source",
]
