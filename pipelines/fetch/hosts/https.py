"""Plain HTTPS hosts: Zenodo, figshare, Mendeley Data, ISIC buckets, any static web server.

The file list is the catalog's ``<id>.checksums.tsv`` (paths relative to ``host.url``, which
pins size and SHA-256: these hosts publish no SHA-256 of their own). Without one (the first
``--register-checksums`` run) it is ``host.dataset`` (comma-separated paths), or the HTML
directory listing when ``host.url`` ends with ``/``, or the single file ``host.url`` names.
Archives (zip, tar, tar.gz) are extracted safely into their own folder after verification
(as ``unzip`` in place would), so a zip holding ``PROTEINS/...`` gives ``<dest>/PROTEINS/...``.
figshare's whole-article links (``/ndownloader/articles/<id>``) are zips and are named
``<id>.zip``.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import ClassVar
from urllib.parse import quote, unquote, urlsplit

from pipelines.fetch.archives import ARCHIVE_SUFFIXES
from pipelines.fetch.base import Fetcher, RemoteFile, select_files
from pipelines.fetch.checksums import checksums_tsv_path, read_checksums_tsv
from pipelines.fetch.hosts.listing import crawl_listing, glob_prefixes


def is_archive(path: str) -> bool:
    return path.lower().endswith(ARCHIVE_SUFFIXES)


class HttpsFetcher(Fetcher):
    """Static files over HTTPS (Basic auth from ``CLIMB_HTTPS_*`` or ``~/.netrc`` when the host needs it)."""

    kinds = ("https", "zenodo", "figshare", "mendeley")
    credential_scope = "https"
    default_connections = 4
    auth_advice: ClassVar[str] = (
        "Check the credential, and accept the dataset's licence ({host.agreement}) on its website."
    )

    def root_url(self) -> str:
        return self.base_url if self.base_url.endswith("/") else self.base_url.rsplit("/", 1)[0] + "/"

    def list_files(self, selection: str | None) -> list[RemoteFile]:
        from manifests.schema import SOURCES_DIR

        pinned = read_checksums_tsv(checksums_tsv_path(self.manifest.id, self.checksums_dir or SOURCES_DIR))
        root = self.root_url()
        url_path = urlsplit(self.base_url).path
        if "/ndownloader/articles/" in url_path:  # figshare: the whole article as one zip
            name = f"{PurePosixPath(url_path).name}.zip"
            return select_files([RemoteFile(name, None, None, self.base_url, extract=True)], selection)
        if pinned:
            paths = sorted(pinned)
        elif self.manifest.host.dataset:
            paths = [p.strip() for p in self.manifest.host.dataset.split(",") if p.strip()]
        elif self.base_url.endswith("/"):
            paths = crawl_listing(self, root, prefixes=glob_prefixes(selection))
        else:
            paths = [unquote(PurePosixPath(urlsplit(self.base_url).path).name)]
        files = [RemoteFile(p, None, None, root + quote(p), extract=is_archive(p)) for p in paths]
        return select_files(files, selection)
