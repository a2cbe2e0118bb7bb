"""Prefect 3 flow ``audit_corpus``: re-verify every published shard against its ``manifest.json``.

Run weekly (``infra/prefect.yaml``, deployment ``audit-weekly``) over the built corpus
(``<out>/<source>/<version>/manifest.json``, e.g. ``s3://<bucket>/built``): bit rot, a partial
copy, or a hand-edited file in an object store shows up here rather than in a training run.

* Each dataset is opened with :func:`manifests.reader.open_dataset` ``(url, verify=True)``, the
  same reader training uses, and every shard is checked with ``Dataset.verify_shard``: each file
  the manifest lists is read whole and its size and sha256 compared with the manifest.
* Mismatches do not stop the audit: every dataset is checked, one ``audit-<source>`` markdown
  artifact per source is published, and only then the flow fails (:class:`AuditFailedError`,
  naming each bad shard and file).
* Credentials for object stores come from the environment (``AWS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``),
  never from flow parameters, which Prefect stores and shows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import fsspec
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.task_runners import ThreadPoolTaskRunner

from manifests.schema import MANIFEST_FILE

#: Datasets audited at once: the work is reading (I/O bound) and hashing (hashlib releases the GIL).
AUDIT_THREADS = 4


class AuditFailedError(RuntimeError):
    """At least one published file does not match its manifest (or a dataset cannot be read)."""


def find_datasets(out: str, sources: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Published datasets under ``out``: ``{source: [dataset URL, ...]}`` (sorted).

    A dataset is a folder ``<out>/<source>/<version>/`` holding ``manifest.json``; a folder
    without one was never published and is not a dataset.

    Args:
        out: the built-corpus root, any fsspec URL (``/data/built``, ``s3://bucket/built``).
        sources: only these source ids; ``None``: every source found.

    Returns:
        Dataset URLs per source. A requested source with nothing published maps to ``[]``.
    """
    fs, root = fsspec.core.url_to_fs(out)
    root = root.rstrip("/")
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    local = protocol in ("file", "local")
    found: dict[str, list[str]] = {source: [] for source in sources or ()}
    for path in sorted(fs.glob(f"{root}/*/*/{MANIFEST_FILE}")):
        dataset = path.rsplit("/", 1)[0]
        source = dataset.rsplit("/", 2)[-2]
        if sources is not None and source not in found:
            continue
        found.setdefault(source, []).append(dataset if local else f"{protocol}://{dataset}")
    return dict(sorted(found.items()))


@task(name="audit-dataset", retries=1, retry_delay_seconds=5, cache_policy=NONE)
def audit_dataset(dataset_url: str) -> dict[str, Any]:
    """Check every shard file of one dataset against its manifest.

    Returns:
        ``{"url", "source", "version", "shards", "files", "bytes", "seconds", "problems"}``;
        ``problems`` lists one message per bad shard (naming the dataset, shard and file), or says why
        the manifest could not be read. Never raises for a mismatch: the flow decides.
    """
    from manifests.reader import ShardIntegrityError, open_dataset

    started = time.perf_counter()
    summary: dict[str, Any] = {
        "url": dataset_url,
        "source": dataset_url.rstrip("/").rsplit("/", 2)[-2],
        "version": dataset_url.rstrip("/").rsplit("/", 1)[-1],
        "shards": 0,
        "files": 0,
        "bytes": 0,
        "problems": [],
    }
    try:
        dataset = open_dataset(dataset_url, verify=True)
    except (OSError, ValueError, KeyError) as exc:
        summary["problems"].append(f"{dataset_url}: cannot open the manifest: {type(exc).__name__}: {exc}")
        summary["seconds"] = round(time.perf_counter() - started, 3)
        return summary
    for split in dataset.splits:
        for ref in dataset.shards(split):
            summary["shards"] += 1
            summary["files"] += len(ref.sha256)
            summary["bytes"] += sum(ref.bytes.values())
            try:
                dataset.verify_shard(ref)
            except ShardIntegrityError as exc:
                summary["problems"].append(f"{dataset_url}: {exc}")
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return summary


def render_audit_markdown(source: str, results: Sequence[dict[str, Any]]) -> str:
    """The ``audit-<source>`` artifact: one row per dataset version, then every problem."""
    bad = sum(1 for r in results if r["problems"])
    lines = [
        f"## Checksum audit of {source}: {'FAILED' if bad else 'OK'}",
        "",
        "| version | shards | files | MB | seconds | status |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        status = f"{len(r['problems'])} problem(s)" if r["problems"] else "ok"
        lines.append(
            f"| {r['version']} | {r['shards']} | {r['files']} | {r['bytes'] / 1e6:.2f} | {r['seconds']:.1f} | {status} |"
        )
    if not results:
        lines.append("| (none published) | 0 | 0 | 0 | 0 | missing |")
    problems = [p for r in results for p in r["problems"]]
    if problems:
        lines += ["", "### Problems", ""]
        lines += [f"- {p}" for p in problems]
    return "\n".join(lines) + "\n"


def artifact_key(source: str) -> str:
    """``audit-<source>`` in the characters Prefect allows for keys (lowercase, digits, dashes)."""
    return "audit-" + "".join(c if c.isalnum() else "-" for c in source.lower())


@flow(name="audit-corpus", task_runner=ThreadPoolTaskRunner(max_workers=AUDIT_THREADS))
def audit_corpus(out: str, sources: list[str] | None = None) -> dict[str, Any]:
    """Re-verify every published shard's sha256 against its ``manifest.json`` under ``out``.

    Args:
        out: the built-corpus root (``<out>/<source>/<version>/manifest.json``), any fsspec URL.
        sources: source ids to audit; ``None``: every source found under ``out``.

    Returns:
        ``{"datasets", "shards", "files", "bytes", "problems": [...], "sources": {source: [per-dataset summary]}}``.

    Raises:
        AuditFailedError: a file differs from its manifest, a manifest cannot be read, a
            requested source has nothing published, or nothing at all is published under
            ``out`` (a wrong path must not pass as a clean audit). Raised after every dataset
            was checked and every artifact published.
    """
    logger = get_run_logger()
    datasets = find_datasets(out, sources)
    futures = {source: [audit_dataset.submit(url) for url in urls] for source, urls in datasets.items()}
    by_source = {source: [future.result() for future in batch] for source, batch in futures.items()}
    problems: list[str] = []
    for source, results in by_source.items():
        create_markdown_artifact(
            key=artifact_key(source),
            markdown=render_audit_markdown(source, results),
            description=f"sha256 audit of {source} under {out}",
        )
        if not results:
            problems.append(f"{source}: no published dataset under {out}")
        problems += [p for r in results for p in r["problems"]]
        for r in results:
            logger.info(
                "%s %s: %d shards, %d files, %d problems",
                source,
                r["version"],
                r["shards"],
                r["files"],
                len(r["problems"]),
            )
    if not by_source:
        problems.append(f"no published dataset under {out} (no <source>/<version>/{MANIFEST_FILE})")
    flat = [r for results in by_source.values() for r in results]
    report = {
        "datasets": len(flat),
        "shards": sum(r["shards"] for r in flat),
        "files": sum(r["files"] for r in flat),
        "bytes": sum(r["bytes"] for r in flat),
        "problems": problems,
        "sources": by_source,
    }
    if problems:
        raise AuditFailedError(f"checksum audit of {out} failed: " + "; ".join(problems))
    return report
