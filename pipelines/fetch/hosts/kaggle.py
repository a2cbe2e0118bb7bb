"""Kaggle datasets (``host.dataset = "owner/slug"``) and competitions (``host.dataset = "<name>"``).

Speaks the REST protocol the official client (``kaggle`` 1.7+/2.x through ``kagglesdk``) speaks:
``POST <base>/v1/<service>/<method>`` with a JSON body, HTTP Basic auth with the username and
API key (what ``kaggle.json`` holds), and a redirect to a signed storage URL for each download.
Request and response bodies are built and parsed with ``kagglesdk``'s own typed messages
(``ApiListDatasetFilesRequest``, ``ApiDownloadDataFileRequest``...), so the wire format is the
client's.

Why not call ``kagglesdk.KaggleClient`` itself: its base URL is chosen from a fixed enum
(``KAGGLE_API_ENVIRONMENT``: prod, staging, ``http://localhost``...), so it cannot be pointed at an
institutional mirror or a loopback test server without patching a private attribute; it
follows the storage redirect inside one streamed POST, so a download cannot resume with Range,
be retried on 429/5xx or run on bounded parallel connections; and ``import kaggle`` reads
credentials and authenticates at import time. The same messages over our own session keep
all of that. The API key is sent only to the API, never to the storage URL.

Kaggle publishes no SHA-256: sizes come from the listing and digests from the catalog's
``<id>.checksums.tsv`` (``--register-checksums``).
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

import requests
from kagglesdk.competitions.types.competition_api_service import (
    ApiDownloadDataFileRequest,
    ApiListDataFilesRequest,
    ApiListDataFilesResponse,
)
from kagglesdk.datasets.types.dataset_api_service import (
    ApiDownloadDatasetRequest,
    ApiListDatasetFilesRequest,
    ApiListDatasetFilesResponse,
)

from pipelines.fetch.base import Fetcher, FetchError, RemoteFile, select_files
from pipelines.fetch.endpoints import check_url_scheme

DATASET_SERVICE = "datasets.DatasetApiService"
COMPETITION_SERVICE = "competitions.CompetitionApiService"
PAGE_SIZE = 200


class _BearerAuth(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self._token}"
        return r

    def __repr__(self) -> str:
        return "_BearerAuth('***')"


class _KaggleBase(Fetcher):
    credential_scope = "kaggle"
    default_connections = 4

    def configure_session(self, session: requests.Session) -> None:
        """No session-wide auth: the key goes only to API calls, never to storage URLs."""

    def _auth(self) -> Any:
        if self.credential is None:
            return None
        if self.credential.username is None:
            return _BearerAuth(self.credential.secret.get())
        return (self.credential.username, self.credential.secret.get())

    def api_url(self, service: str, method: str) -> str:
        base = self.base_url if self.base_url.endswith("/") else self.base_url + "/"
        return f"{base}v1/{service}/{method}"

    def call(self, service: str, method: str, request: Any, what: str, **kwargs: Any) -> requests.Response:
        """POST one API message (serialised by kagglesdk) and return the HTTP response."""
        body = type(request).to_dict(request)
        return self.post(self.api_url(service, method), what=what, json=body, auth=self._auth(), **kwargs)

    def _redirect_target(self, resp: requests.Response, what: str) -> str:
        if resp.status_code in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
            location = requests.compat.urljoin(resp.url, resp.headers["Location"])
            return check_url_scheme(location, f"{what} download URL")
        raise FetchError(
            f"{self.manifest.id}: {what}: expected a redirect to the file, got HTTP {resp.status_code}"
        )


class KaggleDatasetFetcher(_KaggleBase):
    """A Kaggle dataset, file by file."""

    kinds = ("kaggle",)
    auth_advice: ClassVar[str] = (
        "Check the Kaggle username and API key (KAGGLE_USERNAME/KAGGLE_KEY or ~/.kaggle/kaggle.json); "
        "some datasets also require accepting their licence on kaggle.com first (https://www.kaggle.com/datasets/{host.dataset})."
    )

    def slugs(self) -> tuple[str, str, int | None]:
        spec = (self.manifest.host.dataset or "").strip("/")
        parts = spec.split("/")
        if len(parts) == 2 and all(parts):
            return parts[0], parts[1], None
        if len(parts) == 4 and parts[2] == "versions" and parts[3].isdigit():
            return parts[0], parts[1], int(parts[3])
        raise FetchError(
            f"{self.manifest.id}: host.dataset must be 'owner/slug' or 'owner/slug/versions/N', got {spec!r}"
        )

    def list_files(self, selection: str | None) -> list[RemoteFile]:
        owner, slug, version = self.slugs()
        files: list[RemoteFile] = []
        token = ""
        while True:
            req = ApiListDatasetFilesRequest()
            req.owner_slug, req.dataset_slug, req.page_size = owner, slug, PAGE_SIZE
            if version is not None:
                req.dataset_version_number = version
            if token:
                req.page_token = token
            resp = ApiListDatasetFilesResponse.from_dict(
                self.call(
                    DATASET_SERVICE, "ListDatasetFiles", req, what=f"file list of {owner}/{slug}"
                ).json()
            )
            for f in resp.dataset_files:
                files.append(
                    RemoteFile(
                        f.name,
                        f.total_bytes or None,
                        None,
                        f"{self.api_url(DATASET_SERVICE, 'DownloadDataset')}#{quote(f.name)}",
                    )
                )
            token = resp.next_page_token
            if not token:
                break
        return select_files(files, selection)

    def resolve_download(self, session: requests.Session, remote: RemoteFile) -> tuple[str, dict[str, str]]:
        owner, slug, version = self.slugs()
        req = ApiDownloadDatasetRequest()
        req.owner_slug, req.dataset_slug, req.file_name = owner, slug, remote.path
        if version is not None:
            req.dataset_version_number = version
        resp = self.call(DATASET_SERVICE, "DownloadDataset", req, what=remote.path, allow_redirects=False)
        resp.close()
        return self._redirect_target(resp, remote.path), {}


class KaggleCompetitionFetcher(_KaggleBase):
    """A Kaggle competition's data files (the rules must have been accepted on the website)."""

    kinds = ("kaggle_competition",)
    auth_advice: ClassVar[str] = (
        "Check the Kaggle username and API key (KAGGLE_USERNAME/KAGGLE_KEY or ~/.kaggle/kaggle.json), and "
        "accept the competition rules on the website first: https://www.kaggle.com/competitions/{host.dataset}/rules"
    )

    def competition(self) -> str:
        name = (self.manifest.host.dataset or "").strip("/")
        if not name or "/" in name:
            raise FetchError(f"{self.manifest.id}: host.dataset must be the competition name, got {name!r}")
        return name

    def list_files(self, selection: str | None) -> list[RemoteFile]:
        name = self.competition()
        files: list[RemoteFile] = []
        token = ""
        while True:
            req = ApiListDataFilesRequest()
            req.competition_name, req.page_size = name, PAGE_SIZE
            if token:
                req.page_token = token
            resp = ApiListDataFilesResponse.from_dict(
                self.call(
                    COMPETITION_SERVICE, "ListDataFiles", req, what=f"file list of competition {name}"
                ).json()
            )
            for f in resp.files:
                files.append(
                    RemoteFile(
                        f.name,
                        f.total_bytes or None,
                        None,
                        f"{self.api_url(COMPETITION_SERVICE, 'DownloadDataFile')}#{quote(f.name)}",
                    )
                )
            token = resp.next_page_token
            if not token:
                break
        return select_files(files, selection)

    def resolve_download(self, session: requests.Session, remote: RemoteFile) -> tuple[str, dict[str, str]]:
        req = ApiDownloadDataFileRequest()
        req.competition_name, req.file_name = self.competition(), remote.path
        resp = self.call(
            COMPETITION_SERVICE, "DownloadDataFile", req, what=remote.path, allow_redirects=False
        )
        resp.close()
        return self._redirect_target(resp, remote.path), {}
