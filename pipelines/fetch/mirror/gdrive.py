"""A Google Drive look-alike: ``/uc?export=download&id=<id>`` and the large-file confirmation page.

Files smaller than ``confirm_above_bytes`` are redirected (303) to ``/download?id=<id>&export=download``;
larger ones get Drive's HTML "can't scan this file for viruses" page with a ``download-form``
whose hidden ``confirm`` and ``uuid`` fields must come back. ``/download`` without them answers
the page again; with ``single_use_confirmations`` a confirmation is good for one download
(as Drive's expire). Files live at ``<root>/<id>``.
"""

from __future__ import annotations

import html
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from pipelines.fetch.mirror.server import Faults, MirrorHandler, MirrorServer, resolve_below


class GoogleDriveHandler(MirrorHandler):
    server: GoogleDriveMirror

    def _page(self, file_id: str, size: int) -> None:
        token = self.server.uuids.setdefault(file_id, uuid.uuid4().hex)
        body = f"""<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<div class="uc-main"><p class="uc-warning-caption">Google Drive can't scan this file for viruses.</p>
<p class="uc-warning-subcaption"><span class="uc-name-size"><a href="/open?id={html.escape(file_id)}">{html.escape(file_id)}</a>
 ({size // (1 << 20)}M)</span> is too large for Google to scan for viruses. Would you still like to download this file?</p>
<form id="download-form" action="{self.server.url}/download" method="get">
<input type="submit" id="uc-download-link" class="goog-inline-block jfk-button jfk-button-action" value="Download anyway"/>
<input type="hidden" name="id" value="{html.escape(file_id)}">
<input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t">
<input type="hidden" name="uuid" value="{token}">
</form></div></body></html>"""
        self.send_body(200, body.encode(), "text/html; charset=utf-8")

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        file_id = query.get("id", "")
        target = resolve_below(self.server.root, file_id) if file_id else None
        if target is None or not target.is_file():
            self.send_body(404, b"Not Found\n")
            return
        size = target.stat().st_size
        large = size >= self.server.confirm_above_bytes
        if parts.path == "/uc" and query.get("export") == "download":
            if large:
                self._page(file_id, size)
            else:
                self.send_redirect(f"/download?id={file_id}&export=download", 303)
            return
        if parts.path == "/download":
            if large and (query.get("confirm") != "t" or query.get("uuid") != self.server.uuids.get(file_id)):
                self._page(file_id, size)
                return
            if large and self.server.single_use_confirmations:
                self.server.uuids.pop(file_id, None)  # the next request needs a fresh confirmation
            self.send_file(
                target,
                parts.path + "/" + file_id,
                extra_headers={"Content-Disposition": f'attachment; filename="{file_id}"'},
            )
            return
        self.send_body(404, b"Not Found\n")


class GoogleDriveMirror(MirrorServer):
    """Serve ``<root>/<file id>`` the way Drive does."""

    handler_class = GoogleDriveHandler

    def __init__(
        self,
        root: str | Path,
        faults: Faults | None = None,
        confirm_above_bytes: int = 100_000,
        single_use_confirmations: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.confirm_above_bytes = confirm_above_bytes
        self.single_use_confirmations = single_use_confirmations
        self.uuids: dict[str, str] = {}
        super().__init__(root, faults, host, port)
