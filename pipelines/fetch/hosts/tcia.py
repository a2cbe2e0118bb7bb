"""The Cancer Imaging Archive (TCIA) through the NBIA REST API: ``host.dataset = "<Collection>"``.

``GET <base>/getSeries?Collection=<c>`` lists the collection's series (JSON: ``PatientID``,
``StudyInstanceUID``, ``SeriesInstanceUID``, ...); ``GET <base>/getImage?SeriesInstanceUID=<uid>``
returns one zip of the series' DICOM files. Each series lands as
``<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>.zip`` and is extracted safely into
``<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/``,
so ``--files 'LIDC-IDRI-0001/*'`` fetches one patient. Restricted collections need a TCIA
account: with ``TCIA_USERNAME``/``TCIA_PASSWORD`` (or ``~/.netrc``) the fetcher gets an OAuth
access token from ``<nbia-api>/oauth/token`` and sends it as a bearer token.

NBIA publishes no digests and builds the zips on the fly; the catalog pins what
``--register-checksums`` saw. If NBIA ever re-zips a series differently, the fetch fails
with both digests shown and the pin must be re-registered after a check.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar
from urllib.parse import urlencode

import requests

from pipelines.fetch.base import Fetcher, FetchError, RemoteFile, select_files
from pipelines.fetch.download import request_with_retry


def _component(value: Any, what: str) -> str:
    text = str(value or "").strip()
    if not text or text in (".", "..") or "/" in text or "\\" in text:
        raise FetchError(f"TCIA returned an unusable {what} {text!r}")
    return text


class TciaFetcher(Fetcher):
    """A TCIA collection, one zip per series."""

    kinds = ("tcia",)
    credential_scope = "tcia"
    default_connections = 4
    auth_advice: ClassVar[str] = (
        "Check TCIA_USERNAME/TCIA_PASSWORD; restricted collections also need an approved data access request "
        "for {host.dataset} on the TCIA website first."
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._token: str | None = None
        self._token_lock = threading.Lock()

    @property
    def api(self) -> str:
        return self.base_url if self.base_url.endswith("/") else self.base_url + "/"

    def token_url(self) -> str:
        head, sep, _ = self.api.partition("/services/")
        if not sep:
            raise FetchError(f"{self.manifest.id}: cannot find the NBIA OAuth endpoint below {self.api}")
        return head + "/oauth/token"

    def access_token(self) -> str | None:
        """An OAuth access token for the configured credential (fetched once), or ``None`` when anonymous."""
        if self.credential is None:
            return None
        with self._token_lock:
            if self._token is None:
                form = {
                    "username": self.credential.username or "",
                    "password": self.credential.secret.get(),
                    "client_id": "nbia",
                    "grant_type": "password",
                }
                with requests.Session() as bare:  # not self.session: its setup needs this token
                    resp = request_with_retry(
                        bare,
                        "POST",
                        self.token_url(),
                        fetcher=self,
                        retry=self.retry,
                        what="TCIA access token",
                        data=form,
                    )
                    self._token = str(resp.json()["access_token"])
            return self._token

    def configure_session(self, session: requests.Session) -> None:
        token = self.access_token()
        if token is not None:
            session.headers["Authorization"] = f"Bearer {token}"

    def list_files(self, selection: str | None) -> list[RemoteFile]:
        collection = self.manifest.host.dataset
        if not collection:
            raise FetchError(f"{self.manifest.id}: host.dataset must name the TCIA collection")
        query = urlencode({"Collection": collection, "format": "json"})
        series = self.get(f"{self.api}getSeries?{query}", what=f"series list of {collection}").json()
        files = []
        for s in series:
            patient = _component(s.get("PatientID"), "PatientID")
            study = _component(s.get("StudyInstanceUID"), "StudyInstanceUID")
            uid = _component(s.get("SeriesInstanceUID"), "SeriesInstanceUID")
            url = f"{self.api}getImage?{urlencode({'SeriesInstanceUID': uid})}"
            files.append(
                RemoteFile(
                    f"{patient}/{study}/{uid}.zip",
                    None,
                    None,
                    url,
                    extract=True,
                    extract_dir=f"{patient}/{study}/{uid}",
                )
            )
        return select_files(sorted(files, key=lambda f: f.path), selection)
