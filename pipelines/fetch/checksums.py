"""Checksum lists: PhysioNet's ``SHA256SUMS.txt`` and the catalog's TFDS-style ``<id>.checksums.tsv``.

``<id>.checksums.tsv`` sits beside ``manifests/sources/<id>.yaml``: one line per file,
``path<TAB>size<TAB>sha256``, sorted by path, written by ``climb fetch <id> --register-checksums``
and checked on every later fetch.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from manifests.schema import SOURCES_DIR
from pipelines.fetch.base import FetchError

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class PinnedChecksum:
    """A file's pinned size (bytes; ``None`` when the list has none) and SHA-256 hex digest."""

    size: int | None
    sha256: str


def checksums_tsv_path(source_id: str, directory: Path = SOURCES_DIR) -> Path:
    """``manifests/sources/<id>.checksums.tsv``."""
    return directory / f"{source_id}.checksums.tsv"


def parse_sha256sums(text: str, origin: str = "SHA256SUMS.txt") -> dict[str, PinnedChecksum]:
    """Parse ``sha256sum`` output (``<hex>  <path>`` or ``<hex> *<path>``) into path -> checksum.

    Raises:
        FetchError: a line that is not ``<64 hex digits> <path>``, naming ``origin`` and the line number.
    """
    out: dict[str, PinnedChecksum] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, _, rest = line.partition(" ")
        path = rest.lstrip(" ").lstrip("*")
        if not _HEX64.match(digest) or not path:
            raise FetchError(f"{origin}: line {n} is not '<sha256> <path>': {line[:120]!r}")
        out[path.removeprefix("./")] = PinnedChecksum(None, digest.lower())
    return out


def read_checksums_tsv(path: Path) -> dict[str, PinnedChecksum]:
    """Read a ``path\\tsize\\tsha256`` file; a missing file gives ``{}``.

    Raises:
        FetchError: a malformed line, naming the file and line number.
    """
    if not path.is_file():
        return {}
    out: dict[str, PinnedChecksum] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 3 or not fields[1].isdigit() or not _HEX64.match(fields[2]):
            raise FetchError(f"{path}: line {n} is not 'path<TAB>size<TAB>sha256': {line[:120]!r}")
        out[fields[0]] = PinnedChecksum(int(fields[1]), fields[2].lower())
    return out


def write_checksums_tsv(path: Path, entries: dict[str, PinnedChecksum]) -> None:
    """Write ``entries`` sorted by path (temporary name, then rename)."""
    lines = [f"{p}\t{c.size}\t{c.sha256}\n" for p, c in sorted(entries.items()) if c.size is not None]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex}")
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, path)
