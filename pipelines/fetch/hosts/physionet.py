"""PhysioNet projects (``https://physionet.org/files/<project>/<version>/``), open and credentialed.

Files come from the project's ``SHA256SUMS.txt`` (``host.checksums``), which PhysioNet
publishes for every version and which gives the SHA-256 each file is verified against; without
it, the ``files/`` directory listing is crawled and the catalog's ``<id>.checksums.tsv`` pins the
hashes. ``host.dataset`` limits the fetch to one sub-folder of the project (e.g. the CinC 2021
challenge's ``training/ptb-xl``). Credentialed projects use HTTP Basic auth, as ``wget --user``
does, from ``PHYSIONET_USERNAME``/``PHYSIONET_PASSWORD``, ``~/.netrc`` (machine physionet.org) or a
Prefect Secret block. PhysioNet throttles each connection (about 50 KB/s), so the default is 8
parallel connections.
"""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import quote

from pipelines.fetch.base import Fetcher, RemoteFile, select_files
from pipelines.fetch.checksums import parse_sha256sums
from pipelines.fetch.hosts.listing import crawl_listing, glob_prefixes


class PhysioNetFetcher(Fetcher):
    """PhysioNet over HTTPS: Basic auth, Range resume, ``SHA256SUMS.txt``."""

    kinds = ("physionet",)
    credential_scope = "physionet"
    default_connections = 8
    auth_advice: ClassVar[str] = (
        "Check the PhysioNet username/password; for credentialed or restricted projects you must also "
        "be a credentialed user and sign the project's data use agreement on the website first "
        "({host.url})."
    )

    @property
    def prefix(self) -> str:
        """The sub-folder of the project this source needs ('' for all of it)."""
        return (self.manifest.host.dataset or "").strip("/")

    def root_url(self) -> str:
        return self.base_url if self.base_url.endswith("/") else self.base_url + "/"

    def list_files(self, selection: str | None) -> list[RemoteFile]:
        root = self.root_url()
        checksums = self.manifest.host.checksums
        if checksums:
            text = self.get(root + quote(checksums), what=checksums).text
            pinned = parse_sha256sums(text, origin=f"{self.manifest.id}: {checksums}")
            paths = sorted(pinned)
        else:
            pinned = {}
            paths = crawl_listing(self, root, self.prefix, prefixes=glob_prefixes(selection, self.prefix))
        if self.prefix:
            paths = [p for p in paths if p.startswith(self.prefix + "/")]
        files = [
            RemoteFile(p, None, pinned[p].sha256 if p in pinned else None, root + quote(p)) for p in paths
        ]
        return select_files(files, selection, self.prefix)
