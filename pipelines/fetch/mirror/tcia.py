"""A TCIA/NBIA look-alike: ``/nbia-api/services/v1/getSeries``, ``getImage`` (a zip per series) and
``/nbia-api/oauth/token``.

Layout under ``root``: ``<Collection>/<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/*.dcm``.
Zips are built deterministically (sorted entries, fixed timestamps) and cached, so their
SHA-256 is stable and Range works. ``users`` makes every collection restricted (bearer token
from the OAuth endpoint required).
"""

from __future__ import annotations

import json
import secrets
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from pipelines.fetch.mirror.server import Faults, MirrorHandler, MirrorServer

API = "/nbia-api/services/v1"


class TciaHandler(MirrorHandler):
    server: TciaMirror

    def _json(self, status: int, payload: object) -> None:
        self.send_body(status, json.dumps(payload).encode(), "application/json")

    def _authorised(self) -> bool:
        if self.server.users is None:
            return True
        header = self.headers.get("Authorization", "")
        return header.startswith("Bearer ") and header[7:] in self.server.tokens

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != "/nbia-api/oauth/token":
            self._json(404, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        users = self.server.users or {}
        if form.get("grant_type") != "password" or users.get(form.get("username", "")) != form.get(
            "password"
        ):
            self._json(401, {"error": "invalid_grant", "error_description": "Bad credentials"})
            return
        token = secrets.token_hex(16)
        self.server.tokens.add(token)
        self.server.stats.auth_users.append(form["username"])
        self._json(200, {"access_token": token, "token_type": "bearer", "expires_in": 7200})

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if self.maybe_429(parts.path):
            return
        if not self._authorised():
            self._json(401, {"error": "unauthorized"})
            return
        if parts.path == f"{API}/getSeries":
            collection = query.get("Collection", "")
            self._json(200, self.server.series_list(collection))
            return
        if parts.path == f"{API}/getImage":
            zipped = self.server.series_zip(query.get("SeriesInstanceUID", ""))
            if zipped is None:
                self.send_body(404, b"")
                return
            self.send_file(zipped, parts.path + "/" + query["SeriesInstanceUID"], "application/zip")
            return
        self._json(404, {"error": "not found"})


class TciaMirror(MirrorServer):
    """Serve DICOM series folders as NBIA does."""

    handler_class = TciaHandler

    def __init__(
        self,
        root: str | Path,
        faults: Faults | None = None,
        users: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.users = users
        self.tokens: set[str] = set()
        super().__init__(root, faults, host, port)
        self._zips = zip_cache_dir(self.root)

    def _series_dirs(self) -> dict[str, Path]:
        return {p.name: p for p in self.root.glob("*/*/*/*") if p.is_dir()}

    def series_list(self, collection: str) -> list[dict[str, object]]:
        out = []
        for series in sorted((self.root / collection).glob("*/*/*")) if collection else []:
            if not series.is_dir():
                continue
            dcm = sorted(series.glob("*"))
            out.append(
                {
                    "SeriesInstanceUID": series.name,
                    "StudyInstanceUID": series.parent.name,
                    "PatientID": series.parent.parent.name,
                    "Collection": collection,
                    "Modality": "CT",
                    "ImageCount": len(dcm),
                    "FileSize": sum(p.stat().st_size for p in dcm),
                }
            )
        return out

    def series_zip(self, uid: str) -> Path | None:
        folder = self._series_dirs().get(uid)
        if folder is None:
            return None
        return write_series_zip(folder, self._zips / f"{uid}.zip")


def zip_cache_dir(root: str | Path) -> Path:
    """Where a mirror serving ``root`` keeps its series zips (beside ``root``)."""
    root = Path(root).resolve()
    return root.parent / f".{root.name}-nbia-zips"


def write_series_zip(folder: Path, out: Path) -> Path:
    """The zip NBIA's ``getImage`` returns for one series folder, built once: sorted entries and
    fixed timestamps, so the bytes (and the SHA-256 a catalog pins) are stable."""
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(folder.iterdir()):
                info = zipfile.ZipInfo(p.name, date_time=(1980, 1, 1, 0, 0, 0))
                zf.writestr(info, p.read_bytes())
        tmp.replace(out)
    return out
