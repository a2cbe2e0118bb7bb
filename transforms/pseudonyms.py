"""Keyed pseudonyms and per-patient date offsets (DESIGN.md, "De-identification").

One secret key drives everything: a patient's pseudonym is
``HMAC-SHA256(secret, namespace + "\\x1f" + kind + "\\x1f" + original id)`` and their date
offset comes from the same key, so every modality of one patient shifts by the same number
of days and intervals survive. Sources that share patients (MIMIC-IV, MIMIC-CXR,
MIMIC-IV-ECG) share a namespace so their samples link.

The secret comes from the environment (``CLIMB_DEID_SECRET``) or a secret manager; it is
never written to an output, and its ``repr`` is redacted so it cannot leak through a log
line or a traceback. There is no built-in default: a missing secret is an error.

Examples:
    >>> key = DeidKey(b"test-only-secret-not-for-real-data")
    >>> keys = derive_subject_keys(key, "ptbxl", "patient-17")
    >>> keys == derive_subject_keys(key, "ptbxl", "patient-17")
    True
    >>> keys.pseudonym.startswith("ptbxl-") and len(keys.pseudonym) == 6 + 20
    True
    >>> keys.date_offset_days % 7 == 0 and -3650 <= keys.date_offset_days <= -364
    True
    >>> "test-only" in repr(key)
    False
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass, field

SECRET_ENV = "CLIMB_DEID_SECRET"
"""Environment variable that holds the de-identification secret."""

MIN_SECRET_BYTES = 16

#: Offsets are whole weeks (day-of-week patterns survive) between about 1 and 10 years back.
MIN_OFFSET_WEEKS = 52
MAX_OFFSET_WEEKS = 521


class MissingSecretError(RuntimeError):
    """Raised when no de-identification secret is configured."""


@dataclass(frozen=True)
class DeidKey:
    """The de-identification secret. Its value never appears in ``repr`` or ``str``.

    Args:
        secret: raw key bytes, at least 16 bytes.

    Raises:
        ValueError: when the secret is shorter than 16 bytes.
    """

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the de-identification secret must be at least {MIN_SECRET_BYTES} bytes long")

    def __repr__(self) -> str:
        return "DeidKey(secret=<redacted>)"

    __str__ = __repr__

    @classmethod
    def from_env(cls, env: str = SECRET_ENV) -> DeidKey:
        """Read the secret from the environment variable ``env``.

        Raises:
            MissingSecretError: when the variable is unset or empty; the message says how to set it.
        """
        value = os.environ.get(env, "")
        if not value:
            raise MissingSecretError(
                f"no de-identification secret: set the environment variable {env} to a long random "
                f"string (e.g. `export {env}=$(python -c 'import secrets; print(secrets.token_hex(32))')`) "
                "and keep it in your secret manager; the same secret must be used for every rebuild "
                "so pseudonyms and date offsets stay stable"
            )
        return cls(value.encode("utf-8"))

    def digest(self, *parts: str) -> bytes:
        """HMAC-SHA256 of the parts joined by the unit separator (0x1F)."""
        message = "\x1f".join(parts).encode("utf-8")
        return hmac.digest(self.secret, message, "sha256")  # one-shot C HMAC: same bytes as hmac.new

    def fingerprint(self) -> str:
        """A short, non-reversible id of the key (for manifests: which key built this)."""
        return self.digest("climb-key-fingerprint").hex()[:12]


@dataclass(frozen=True)
class SubjectKeys:
    """What de-identification needs to know about one patient.

    Attributes:
        pseudonym: stable pseudonymous subject id, ``<namespace>-<20 hex>``.
        date_offset_days: days to add to every date and time of this patient (negative, whole weeks).
    """

    pseudonym: str
    date_offset_days: int


def pseudonymise_id(key: DeidKey, namespace: str, kind: str, original: str, length: int = 20) -> str:
    """Keyed pseudonym for any identifier (subject, record, study, file name).

    Args:
        key: the de-identification key.
        namespace: the source's de-identification namespace (``deid.namespace`` in its manifest).
        kind: what the id names (``"subject"``, ``"record"``, ...); different kinds never collide.
        original: the original identifier.
        length: hex characters kept (20 = 80 bits).

    Returns:
        ``"<namespace>-<hex>"`` for subjects, ``"<kind>-<hex>"`` otherwise.
    """
    hex_id = key.digest(namespace, kind, original).hex()[:length]
    prefix = namespace if kind == "subject" else kind
    return f"{prefix}-{hex_id}"


def derive_subject_keys(key: DeidKey, namespace: str, subject_id: str) -> SubjectKeys:
    """Pseudonym and date offset of one patient, both derived from the key.

    Args:
        key: the de-identification key.
        namespace: the source's de-identification namespace.
        subject_id: the original patient id as the source gives it.
    """
    pseudonym = pseudonymise_id(key, namespace, "subject", subject_id)
    offset_digest = key.digest(namespace, "date-offset", subject_id)
    span = MAX_OFFSET_WEEKS - MIN_OFFSET_WEEKS + 1
    weeks = MIN_OFFSET_WEEKS + int.from_bytes(offset_digest[:8], "big") % span
    return SubjectKeys(pseudonym=pseudonym, date_offset_days=-7 * weeks)


def cap_age_years(age: float | int | None, cap: int = 90) -> int | None:
    """HIPAA Safe Harbor: ages over 89 are reported as 90.

    >>> cap_age_years(93), cap_age_years(89), cap_age_years(None)
    (90, 89, None)
    """
    if age is None:
        return None
    age_int = int(age)
    return cap if age_int > cap - 1 else age_int
