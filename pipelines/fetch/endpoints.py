"""Host base URLs and their overrides (``--endpoint KIND=URL``, ``CLIMB_ENDPOINT_<KIND>``, flow config).

An override replaces the scheme and host of the manifest's URL and prefixes its path, so
``https://physionet.org/files/challenge-2021/1.0.3/`` with ``physionet=http://127.0.0.1:8080``
becomes ``http://127.0.0.1:8080/files/challenge-2021/1.0.3/``, and with an institutional mirror
``https://mirror.example.org/physionet`` becomes ``https://mirror.example.org/physionet/files/...``.
Tests, the demo mirror and real mirrors therefore run the very same code path as the real host.

Plain ``http`` is allowed only for loopback hosts (127.0.0.0/8, ::1, localhost): anything that
crosses a network is HTTPS, and TLS certificates are always verified.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from pipelines.fetch.base import FetchError

#: The real hosts' base URLs, used when the manifest gives none.
DEFAULT_BASE_URLS: dict[str, str] = {
    "physionet": "https://physionet.org/",
    "kaggle": "https://api.kaggle.com/",
    "kaggle_competition": "https://api.kaggle.com/",
    "tcia": "https://services.cancerimagingarchive.net/nbia-api/services/v1/",
    "github": "https://github.com/",
    "gdrive": "https://drive.google.com/",
    "huggingface": "https://huggingface.co/",
    "zenodo": "https://zenodo.org/",
    "figshare": "https://figshare.com/",
    "mendeley": "https://data.mendeley.com/",
}

#: Kinds that share an override key with another kind.
ENDPOINT_ALIASES: dict[str, str] = {"kaggle_competition": "kaggle", "gcs": "s3", "azure": "s3"}

ENV_PREFIX = "CLIMB_ENDPOINT_"


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``."""
    if not host:
        return False
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url_scheme(url: str, what: str = "endpoint") -> str:
    """Return ``url`` if it is https, or http on a loopback host; raise otherwise.

    Raises:
        FetchError: the URL is not http(s), or is plain http to a non-loopback host.
    """
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise FetchError(
            f"{what}: credentials in URLs are not allowed; use the environment, ~/.netrc or a secret block"
        )
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        return url
    if parts.scheme == "http":
        raise FetchError(
            f"{what} {url!r}: plain http is allowed only for loopback hosts (127.0.0.1, ::1, localhost); use https"
        )
    raise FetchError(f"{what} {url!r}: expected an https:// URL")


def parse_endpoint_options(options: list[str] | None) -> dict[str, str]:
    """Parse ``["physionet=http://127.0.0.1:8080", ...]`` into ``{"physionet": url}``.

    Raises:
        FetchError: an option without ``=``.
    """
    parsed: dict[str, str] = {}
    for opt in options or []:
        kind, sep, url = opt.partition("=")
        if not sep or not kind.strip() or not url.strip():
            raise FetchError(f"--endpoint {opt!r}: expected KIND=URL, e.g. physionet=http://127.0.0.1:8080")
        parsed[kind.strip().lower()] = url.strip()
    return parsed


def endpoint_override(kind: str, endpoints: Mapping[str, str] | None = None) -> str | None:
    """The override for ``kind``: explicit ``endpoints`` first, then ``CLIMB_ENDPOINT_<KIND>``."""
    keys = [kind] + ([ENDPOINT_ALIASES[kind]] if kind in ENDPOINT_ALIASES else [])
    for key in keys:
        if endpoints and key in endpoints:
            return endpoints[key]
    for key in keys:
        value = os.environ.get(ENV_PREFIX + key.upper())
        if value:
            return value
    return None


def apply_override(url: str, override: str) -> str:
    """Move ``url`` onto the ``override`` base (scheme + host, path prefixed)."""
    base = urlsplit(override)
    orig = urlsplit(url)
    path = base.path.rstrip("/") + (orig.path if orig.path.startswith("/") else "/" + orig.path)
    return urlunsplit((base.scheme, base.netloc, path, orig.query, orig.fragment))


def resolve_base_url(kind: str, manifest_url: str | None, endpoints: Mapping[str, str] | None = None) -> str:
    """The base URL to use for a host: the manifest's (or the host default) after any override.

    Raises:
        FetchError: no URL is known for the host, or the result is not https / loopback http.
    """
    url = manifest_url or DEFAULT_BASE_URLS.get(kind)
    override = endpoint_override(kind, endpoints)
    if url is None:
        if override is None:
            raise FetchError(
                f"no URL known for host kind {kind!r}: set host.url in the manifest or pass --endpoint"
            )
        url = override
    elif override is not None:
        check_url_scheme(override, f"--endpoint {kind}")
        url = apply_override(url, override)
    return check_url_scheme(url, f"{kind} URL")


def rebase_url(url: str, real_base: str, base_url: str) -> str:
    """Map a URL the real host hands out (``real_base`` + path) onto the overridden ``base_url``."""
    real = urlsplit(real_base)
    parts = urlsplit(url)
    if parts.netloc == real.netloc and real.netloc != urlsplit(base_url).netloc:
        return apply_override(url, base_url)
    return url
