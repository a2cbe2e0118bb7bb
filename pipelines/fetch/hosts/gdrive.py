"""Google Drive shared files: ``host.dataset = "<file id>=<name>[,<file id>=<name>...]"``.

``<base>/uc?export=download&id=<id>`` answers small files with a redirect to the file and large
ones (those Drive cannot virus-scan) with an HTML confirmation page whose ``download-form``
names the real download URL and its hidden fields (``id``, ``export``, ``confirm``, ``uuid``).
The fetcher reads that form, without executing anything, and downloads from the form's
action (which must be https, or loopback in tests), with Range resume. Digests are pinned in
the catalog (Drive publishes none).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from html.parser import HTMLParser
from urllib.parse import urlencode

import requests

from pipelines.fetch.base import Fetcher, FetchError, ManualDownloadRequired, RemoteFile, select_files
from pipelines.fetch.endpoints import check_url_scheme


class _DownloadForm(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and (a.get("id") == "download-form" or self.action is None):
            self.action, self._in_form = a.get("action"), True
        elif tag == "input" and self._in_form and a.get("name"):
            self.fields[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False


def parse_confirmation_page(html: str) -> tuple[str, dict[str, str]] | None:
    """The download form's action URL and hidden fields, or ``None`` if the page has no form."""
    parser = _DownloadForm()
    parser.feed(html)
    if not parser.action:
        return None
    return parser.action, parser.fields


class GoogleDriveFetcher(Fetcher):
    """Files shared by link on Google Drive."""

    kinds = ("gdrive",)
    credential_scope = None
    default_connections = 2
    auth_advice = "The file is not shared publicly ('anyone with the link'); ask its owner."

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._resolved: dict[str, str] = {}
        self._lock = threading.Lock()

    def file_ids(self) -> dict[str, str]:
        """name -> Drive file id, from ``host.dataset``."""
        out: dict[str, str] = {}
        for item in (self.manifest.host.dataset or "").split(","):
            file_id, sep, name = item.strip().partition("=")
            if not sep or not file_id or not name:
                raise FetchError(
                    f"{self.manifest.id}: host.dataset must be '<file id>=<name>,...', got {item!r}"
                )
            out[name.strip()] = file_id.strip()
        return out

    def list_files(self, selection: str | None) -> list[RemoteFile]:
        if not self.manifest.host.dataset:
            from pipelines.fetch.hosts.manual import ManualFetcher

            manual = ManualFetcher(self.manifest, "", None, self.retry)
            raise ManualDownloadRequired(
                f"{self.manifest.id}: the manifest names no Google Drive file ids (host.dataset), so it cannot "
                "be fetched automatically.\n" + manual.instructions([], 0)
            )
        base = self.base_url if self.base_url.endswith("/") else self.base_url + "/"
        files = [
            RemoteFile(name, None, None, f"{base}uc?{urlencode({'export': 'download', 'id': fid})}")
            for name, fid in sorted(self.file_ids().items())
        ]
        return select_files(files, selection)

    def reject_response(self, remote: RemoteFile, headers: Mapping[str, str]) -> str | None:
        """An HTML page instead of the file means the confirmation expired: pass it again next time."""
        if "text/html" in headers.get("Content-Type", ""):
            with self._lock:
                self._resolved.pop(remote.path, None)
            return "Google Drive answered an HTML page instead of the file (confirmation expired)"
        return None

    def resolve_download(self, session: requests.Session, remote: RemoteFile) -> tuple[str, dict[str, str]]:
        """Pass the large-file confirmation page once per file; later attempts reuse the URL."""
        with self._lock:
            known = self._resolved.get(remote.path)
        if known is not None:
            return known, {}
        resp = self.get(remote.url, what=f"{remote.path} (Drive confirmation)", stream=True)
        try:
            if "text/html" not in resp.headers.get("Content-Type", ""):
                url = resp.url  # no confirmation needed: the (redirected) URL serves the file
            else:
                form = parse_confirmation_page(resp.text)
                if form is None:
                    raise FetchError(
                        f"{remote.path}: Google Drive answered an HTML page without a download form "
                        "(quota exceeded, or the file is not shared)"
                    )
                action, fields = form
                url = check_url_scheme(action, "Drive download form action") + "?" + urlencode(fields)
        finally:
            resp.close()
        with self._lock:
            self._resolved[remote.path] = url
        return url, {}
