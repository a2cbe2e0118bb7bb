"""Cloud buckets through fsspec: ``host.url = "s3://bucket/prefix/"`` (also ``gs://``, ``az://``).

Credentials are the cloud SDK's own defaults (for S3: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, instance roles; BDSP's IIIC bucket needs the keys BDSP issues); ``access: open``
buckets are read anonymously. ``--endpoint s3=<url>`` (or ``CLIMB_ENDPOINT_S3``) points s3fs at
another S3 endpoint (an institutional store, moto in tests). Objects are read in 1 MiB blocks
from the ``.part`` file's size on, so a killed fetch resumes; verification and publishing are
the shared ones. S3 ETags are not SHA-256, so digests are pinned in the catalog.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import fsspec

from pipelines.fetch.base import AuthError, Fetcher, FetchError, RemoteFile, select_files
from pipelines.fetch.download import HttpDownloader, Transfer
from pipelines.fetch.endpoints import check_url_scheme, endpoint_override

BLOCK_BYTES = 1 << 20
_PROTOCOLS = {"s3": "s3", "gcs": "gs", "azure": "az"}


class BucketFetcher(Fetcher):
    """Objects under one bucket prefix."""

    kinds = ("s3", "gcs", "azure")
    credential_scope = None
    default_connections = 8
    auth_advice: ClassVar[str] = (
        "The bucket refused the cloud SDK's default credentials (environment, profile or instance role); "
        "check they grant read access to {host.url}, and for BDSP that your data use agreement is approved."
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.storage_options: dict[str, Any] = {}
        self._fs: fsspec.AbstractFileSystem | None = None

    def configure_endpoint(self, endpoints: Mapping[str, str] | None) -> None:
        """Apply ``--endpoint <kind>=URL`` and anonymous access for open buckets."""
        kind = self.manifest.host.kind
        url = self.manifest.host.url or ""
        scheme = urlsplit(url).scheme
        if scheme != _PROTOCOLS.get(kind):
            raise FetchError(
                f"{self.manifest.id}: host.url must be a {_PROTOCOLS.get(kind)}:// URL, got {url!r}"
            )
        override = endpoint_override(kind, endpoints)
        if kind == "s3":
            self.storage_options["anon"] = self.manifest.host.access == "open"
            if override:
                self.storage_options["client_kwargs"] = {
                    "endpoint_url": check_url_scheme(override, "--endpoint s3")
                }
                self.base_url = f"{url} via {override}"
        elif override:
            self.storage_options["endpoint_url"] = check_url_scheme(override, f"--endpoint {kind}")

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        if self._fs is None:
            protocol = _PROTOCOLS[self.manifest.host.kind]
            self._fs = fsspec.filesystem(protocol, skip_instance_cache=True, **self.storage_options)
        return self._fs

    @property
    def origin(self) -> str:
        return (
            "anonymous access"
            if self.storage_options.get("anon")
            else "the cloud SDK's default credential chain"
        )

    def describe_auth_failure(self, status: int, what: str) -> str:
        return (
            f"{self.manifest.id}: the bucket refused access to {what} (HTTP {status}) using {self.origin}. "
            + self.auth_advice.format(manifest=self.manifest, host=self.manifest.host)
        )

    def list_files(self, selection: str | None) -> list[RemoteFile]:
        url = (self.manifest.host.url or "").rstrip("/")
        protocol = _PROTOCOLS[self.manifest.host.kind]
        root = url.split("://", 1)[1]
        try:
            found = self.fs.find(root, detail=True)
        except PermissionError:
            raise AuthError(self.describe_auth_failure(403, f"the listing of {url}")) from None
        except FileNotFoundError:
            raise FetchError(f"{self.manifest.id}: bucket prefix {url} not found") from None
        files = []
        for key, info in sorted(found.items()):
            if info.get("type", "file") != "file":
                continue
            rel = key[len(root) :].lstrip("/")
            files.append(RemoteFile(rel, int(info["size"]), None, f"{protocol}://{key}"))
        return select_files(files, selection)

    def transfer(self, remote: RemoteFile, part: Path, downloader: HttpDownloader) -> Transfer:
        """Copy the object into ``part`` from its current size on, in 1 MiB blocks."""
        tr = Transfer(
            resumed_from_bytes=part.stat().st_size if part.exists() else 0, server_total=remote.size
        )
        key = remote.url.split("://", 1)[1]
        for attempt in range(1, self.retry.attempts + 1):
            offset = part.stat().st_size if part.exists() else 0
            if remote.size is not None and offset >= remote.size:
                if offset > remote.size:
                    part.unlink()
                    continue
                return tr
            tr.attempts += 1
            try:
                with self.fs.open(key, "rb", block_size=BLOCK_BYTES) as src, open(part, "ab") as dst:
                    src.seek(offset)
                    for block in iter(lambda: src.read(BLOCK_BYTES), b""):
                        dst.write(block)
                        tr.bytes_transferred += len(block)
                        downloader.progress.advance(len(block))
                return tr
            except PermissionError:
                raise AuthError(self.describe_auth_failure(403, remote.path)) from None
            except FileNotFoundError:
                raise FetchError(f"{remote.path}: not found in the bucket ({remote.url})") from None
            except OSError as exc:
                if attempt == self.retry.attempts:
                    raise FetchError(
                        f"{remote.path}: giving up after {attempt} attempts: {type(exc).__name__}"
                    ) from None
                time.sleep(self.retry.delay_s(attempt))
        return tr
