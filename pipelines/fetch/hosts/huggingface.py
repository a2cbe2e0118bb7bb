"""Hugging Face Hub datasets: ``host.dataset = "owner/name[@revision]"``.

The file list comes from ``huggingface_hub.HfApi(endpoint=...).list_repo_tree(recursive=True)``
(the client library, pointed at the endpoint override), which gives each file's size and, for
LFS files, its SHA-256; other files are pinned in the catalog. Files are downloaded from
``hf_hub_url(...)`` (``<endpoint>/datasets/<repo>/resolve/<revision>/<path>``) through the shared
downloader, so they resume and retry like every other host. ``HF_TOKEN`` (or ``~/.netrc`` machine
huggingface.co) is sent as a bearer token; ``requests`` drops it on the redirect to the CDN.
Pin a commit as the revision for reproducible builds.
"""

from __future__ import annotations

from typing import Any, ClassVar

import requests

from pipelines.fetch.base import AuthError, Fetcher, FetchError, RemoteFile, select_files


class HuggingFaceFetcher(Fetcher):
    """A dataset repository on the Hub."""

    kinds = ("huggingface",)
    credential_scope = "huggingface"
    default_connections = 8
    auth_advice: ClassVar[str] = (
        "Check HF_TOKEN; gated datasets also require accepting their conditions on the dataset page first "
        "(https://huggingface.co/datasets/{host.dataset})."
    )

    def repo(self) -> tuple[str, str]:
        spec = self.manifest.host.dataset or ""
        repo_id, _, revision = spec.partition("@")
        if repo_id.count("/") != 1 or not all(repo_id.split("/")):
            raise FetchError(
                f"{self.manifest.id}: host.dataset must be 'owner/name[@revision]', got {spec!r}"
            )
        return repo_id, revision or "main"

    @property
    def endpoint(self) -> str:
        return self.base_url.rstrip("/")

    def configure_session(self, session: requests.Session) -> None:
        if self.credential is not None:
            session.headers["Authorization"] = f"Bearer {self.credential.secret.get()}"

    def list_files(self, selection: str | None) -> list[RemoteFile]:
        from huggingface_hub import HfApi, hf_hub_url
        from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
        from huggingface_hub.hf_api import RepoFile

        repo_id, revision = self.repo()
        token: Any = self.credential.secret.get() if self.credential is not None else False
        api = HfApi(endpoint=self.endpoint, token=token)
        try:
            entries = list(
                api.list_repo_tree(repo_id, recursive=True, revision=revision, repo_type="dataset")
            )
        except GatedRepoError:
            raise AuthError(self.describe_auth_failure(403, f"dataset {repo_id}")) from None
        except RepositoryNotFoundError:
            # the Hub answers 401 for both a missing repository and a private one without access
            raise AuthError(
                self.describe_auth_failure(401, f"dataset {repo_id} (missing, or private)")
            ) from None
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            raise FetchError(f"{self.manifest.id}: listing {repo_id} failed with HTTP {status}") from None
        files = []
        for entry in entries:
            if not isinstance(entry, RepoFile):  # a folder
                continue
            sha = entry.lfs.sha256 if entry.lfs is not None else None
            url = hf_hub_url(
                repo_id, entry.path, repo_type="dataset", revision=revision, endpoint=self.endpoint
            )
            files.append(RemoteFile(entry.path, int(entry.size), sha, url))
        return select_files(sorted(files, key=lambda f: f.path), selection)
