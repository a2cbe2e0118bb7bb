"""Whole-object GETs from S3 through botocore's synchronous client, for the streaming reader.

s3fs (aiohttp underneath) is the reader's filesystem for ``s3://`` URLs: it discovers, lists and
reads the manifest. For the bulk of the bytes (whole shard files, one GET each) botocore's
synchronous client costs about half the client CPU per byte of s3fs's ``cat_file`` (measured on a
32 MB object from moto's server on loopback: 0.06 s against 0.12 s of client CPU, and 2–3× less
wall time), and it is thread-safe, so the loader's fetch threads each run their own GETs.

Only plain storage options are translated (``key``, ``secret``, ``token``, ``anon``,
``client_kwargs`` with endpoint/region/TLS settings); anything else (profiles, requester-pays,
custom sessions…) keeps the s3fs path, see :func:`direct_getter`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

#: storage_options keys this module understands (others: use s3fs).
_PLAIN_OPTIONS = frozenset({"key", "secret", "token", "anon", "client_kwargs", "skip_instance_cache"})
#: client_kwargs that botocore's ``create_client`` takes directly.
_CLIENT_KWARGS = frozenset({"endpoint_url", "region_name", "use_ssl", "verify"})


class S3Getter:
    """``get(path) -> bytes`` for ``bucket/key`` paths; one botocore client per process."""

    def __init__(self, storage_options: Mapping[str, Any]) -> None:
        self._options = dict(storage_options)
        self._client: Any = None
        self._pid = -1
        self._lock = threading.Lock()

    def _make_client(self) -> Any:
        import botocore.session
        from botocore import UNSIGNED
        from botocore.config import Config

        opts = self._options
        session = botocore.session.get_session()
        kwargs: dict[str, Any] = dict(opts.get("client_kwargs") or {})
        kwargs.setdefault("region_name", os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
        config = Config(max_pool_connections=16, retries={"max_attempts": 5, "mode": "standard"})
        if opts.get("anon"):
            config = config.merge(Config(signature_version=UNSIGNED))
        else:
            if opts.get("key") is not None:
                kwargs["aws_access_key_id"] = opts["key"]
            if opts.get("secret") is not None:
                kwargs["aws_secret_access_key"] = opts["secret"]
            if opts.get("token") is not None:
                kwargs["aws_session_token"] = opts["token"]
        return session.create_client("s3", config=config, **kwargs)

    @property
    def client(self) -> Any:
        """The client of this process (re-created after a fork: connection pools are not shared)."""
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                self._client = self._make_client()
                self._pid = os.getpid()
            return self._client

    def get(self, path: str) -> bytes:
        """The whole object at ``bucket/key``. Raises ``FileNotFoundError`` when it does not exist."""
        bucket, _, key = path.partition("/")
        client = self.client
        try:
            response = client.get_object(Bucket=bucket, Key=key)
        except client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"s3://{path}") from None
        body = response["Body"]
        try:
            return body.read()
        finally:
            body.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"_options": self._options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["_options"])  # type: ignore[misc]


def direct_getter(fs: Any, storage_options: Mapping[str, Any]) -> S3Getter | None:
    """An :class:`S3Getter` for an s3fs filesystem opened with plain options, else ``None``."""
    protocol = getattr(fs, "protocol", None)
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol or ())
    if "s3" not in protocols:
        return None
    if set(storage_options) - _PLAIN_OPTIONS:
        return None
    if set(storage_options.get("client_kwargs") or {}) - _CLIENT_KWARGS:
        return None
    try:
        import botocore  # noqa: F401  (s3fs depends on it through aiobotocore)
    except ImportError:  # pragma: no cover
        return None
    return S3Getter(storage_options)
