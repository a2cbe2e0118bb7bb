"""Credentials for fetching: a chain of providers, each naming where its secret came from.

Order (first hit wins): environment variables, ``~/.netrc``, ``~/.kaggle/kaggle.json``, and a
Prefect Secret block when running inside a flow. Cloud buckets use their SDK's own defaults
(s3fs/boto3 env, profiles, instance roles) and need nothing here.

Rules this module enforces: a secret is held in :class:`Secret`, whose ``repr``/``str`` are
redacted; no provider prompts; every :class:`Credential` carries an ``origin`` string that
names the variable or file it came from, so a 401 can say *which* credential failed without
showing it. Every secret loaded is registered with :func:`redact` so error texts can be
scrubbed as a last line of defence.
"""

from __future__ import annotations

import json
import logging
import netrc
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("climb.fetch")

_KNOWN_SECRETS: set[str] = set()
_KNOWN_LOCK = threading.Lock()

#: scope -> (username variable, secret variable); a ``None`` username means token-only.
ENV_VARIABLES: dict[str, tuple[str | None, str]] = {
    "physionet": ("PHYSIONET_USERNAME", "PHYSIONET_PASSWORD"),
    "kaggle": ("KAGGLE_USERNAME", "KAGGLE_KEY"),
    "tcia": ("TCIA_USERNAME", "TCIA_PASSWORD"),
    "huggingface": (None, "HF_TOKEN"),
    "github": (None, "GITHUB_TOKEN"),
    "https": ("CLIMB_HTTPS_USERNAME", "CLIMB_HTTPS_PASSWORD"),
}

#: scope -> the host name a ``~/.netrc`` ``machine`` line is looked up under.
NETRC_MACHINES: dict[str, str] = {
    "physionet": "physionet.org",
    "kaggle": "api.kaggle.com",
    "tcia": "services.cancerimagingarchive.net",
    "huggingface": "huggingface.co",
    "github": "github.com",
}


class Secret:
    """A secret string whose ``repr`` and ``str`` never show it; call :meth:`get` to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        if value:
            with _KNOWN_LOCK:
                _KNOWN_SECRETS.add(value)

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:  # never pickle a secret to a worker by accident
        raise TypeError("a Secret cannot be pickled; workers load credentials themselves")


@dataclass(frozen=True)
class Credential:
    """A username (or ``None`` for a bare token) and a secret, with where they came from.

    Attributes:
        username: account name, or ``None`` for token-only hosts.
        secret: the password / API key / token.
        origin: human-readable origin, e.g. ``"environment variables PHYSIONET_USERNAME/PHYSIONET_PASSWORD"``.
    """

    username: str | None
    secret: Secret = field(repr=False)
    origin: str


class CredentialProvider(Protocol):
    """Something that may hold a credential for a scope (``"physionet"``, ``"kaggle"``...)."""

    def get(self, scope: str, host: str | None = None) -> Credential | None:
        """The credential for ``scope`` (and ``host``, for per-host stores like netrc), or ``None``."""
        ...


def redact(text: str) -> str:
    """Replace every secret this process has loaded with ``***`` in ``text``."""
    with _KNOWN_LOCK:
        secrets = sorted(_KNOWN_SECRETS, key=len, reverse=True)
    for s in secrets:
        if len(s) >= 4:
            text = text.replace(s, "***")
    return text


class EnvCredentials:
    """Credentials from environment variables (:data:`ENV_VARIABLES`)."""

    def __init__(self, variables: dict[str, tuple[str | None, str]] | None = None) -> None:
        self.variables = variables or ENV_VARIABLES

    def get(self, scope: str, host: str | None = None) -> Credential | None:
        names = self.variables.get(scope)
        if names is None:
            return None
        user_var, secret_var = names
        secret = os.environ.get(secret_var)
        if not secret:
            return None
        if user_var is None:
            return Credential(None, Secret(secret), f"environment variable {secret_var}")
        user = os.environ.get(user_var)
        if not user:
            return None
        return Credential(user, Secret(secret), f"environment variables {user_var}/{secret_var}")


class NetrcCredentials:
    """Credentials from ``~/.netrc`` (or ``$NETRC``), looked up by host name."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else Path(os.environ.get("NETRC") or Path.home() / ".netrc")

    def get(self, scope: str, host: str | None = None) -> Credential | None:
        machine = host or NETRC_MACHINES.get(scope)
        if not machine or not self.path.is_file():
            return None
        try:
            entry = netrc.netrc(str(self.path)).authenticators(machine)
        except (netrc.NetrcParseError, OSError) as exc:
            # the parse error text may quote a line of the file: say only where it is
            log.warning("ignoring %s: cannot parse it (%s)", self.path, type(exc).__name__)
            return None
        if not entry or not entry[2]:
            return None
        login, _account, password = entry
        return Credential(login or None, Secret(password), f"{self.path} (machine {machine})")


class KaggleJsonCredentials:
    """Kaggle's ``kaggle.json`` (``$KAGGLE_CONFIG_DIR`` or ``~/.kaggle``): ``{"username", "key"}``."""

    def __init__(self, path: str | Path | None = None) -> None:
        if path is None:
            base = os.environ.get("KAGGLE_CONFIG_DIR") or str(Path.home() / ".kaggle")
            path = Path(base) / "kaggle.json"
        self.path = Path(path)

    def get(self, scope: str, host: str | None = None) -> Credential | None:
        if scope != "kaggle" or not self.path.is_file():
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            user, key = data["username"], data["key"]
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("ignoring %s: expected a JSON object with 'username' and 'key'", self.path)
            return None
        if self.path.stat().st_mode & 0o077:
            log.warning("%s is readable by other users; chmod 600 it", self.path)
        return Credential(str(user), Secret(str(key)), str(self.path))


class PrefectSecretCredentials:
    """Prefect Secret blocks ``climb-<scope>-username`` / ``climb-<scope>-password``, inside a flow run.

    Outside a Prefect run context this provider returns ``None`` without touching a server.
    """

    def get(self, scope: str, host: str | None = None) -> Credential | None:
        try:
            from prefect.context import FlowRunContext, TaskRunContext

            if FlowRunContext.get() is None and TaskRunContext.get() is None:
                return None
            from prefect.blocks.system import Secret as PrefectSecret
        except ImportError:
            return None
        try:
            block: Any = PrefectSecret.load(f"climb-{scope}-password")
            password = block.get()
        except (ValueError, RuntimeError):
            return None
        try:
            user_block: Any = PrefectSecret.load(f"climb-{scope}-username")
            user: str | None = user_block.get()
        except (ValueError, RuntimeError):
            user = None
        return Credential(user, Secret(str(password)), f"Prefect Secret block climb-{scope}-password")


class ChainCredentials:
    """Ask each provider in turn; the first credential found wins."""

    def __init__(self, providers: list[CredentialProvider]) -> None:
        self.providers = providers

    def get(self, scope: str, host: str | None = None) -> Credential | None:
        for provider in self.providers:
            found = provider.get(scope, host)
            if found is not None:
                return found
        return None


def default_credentials() -> ChainCredentials:
    """Environment, then ``~/.netrc``, then ``kaggle.json``, then Prefect Secret blocks."""
    return ChainCredentials(
        [EnvCredentials(), NetrcCredentials(), KaggleJsonCredentials(), PrefectSecretCredentials()]
    )
