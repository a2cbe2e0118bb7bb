"""GitHub repositories as release archives: ``host.dataset = "owner/repo@ref"``.

Downloads ``<base>/<owner>/<repo>/archive/<ref>.tar.gz`` (GitHub answers with a redirect to
codeload), pins it by size + SHA-256 in the catalog (GitHub publishes no digest; pin a tag
or commit, not a branch) and extracts it safely into the destination, dropping the archive's
``<repo>-<ref>/`` top folder (so the repository's own paths are the raw layout). ``GITHUB_TOKEN`` (or
``~/.netrc`` machine github.com) is sent as a bearer token for private repositories or higher
rate limits; ``requests`` drops it on the redirect to another host.
"""

from __future__ import annotations

from typing import ClassVar

import requests

from pipelines.fetch.base import Fetcher, FetchError, RemoteFile, select_files


class GitHubArchiveFetcher(Fetcher):
    """One repository snapshot as a ``.tar.gz`` archive."""

    kinds = ("github",)
    credential_scope = "github"
    default_connections = 2
    auth_advice: ClassVar[str] = "Check GITHUB_TOKEN: it needs read access to the repository."

    def repo_and_ref(self) -> tuple[str, str, str]:
        spec = self.manifest.host.dataset or ""
        repo_path, _, ref = spec.partition("@")
        owner, _, repo = repo_path.partition("/")
        if not owner or not repo or "/" in repo or not ref:
            raise FetchError(
                f"{self.manifest.id}: host.dataset must be 'owner/repo@ref' (a tag or commit), got {spec!r}"
            )
        return owner, repo, ref

    def configure_session(self, session: requests.Session) -> None:
        if self.credential is not None:
            session.headers["Authorization"] = f"Bearer {self.credential.secret.get()}"

    def list_files(self, selection: str | None) -> list[RemoteFile]:
        owner, repo, ref = self.repo_and_ref()
        base = self.base_url if self.base_url.endswith("/") else self.base_url + "/"
        name = f"{repo}-{ref}.tar.gz"
        url = f"{base}{owner}/{repo}/archive/{ref}.tar.gz"
        files = [RemoteFile(name, None, None, url, extract=True, strip_components=1)]
        return select_files(files, selection)
