"""Crawling HTML directory listings (PhysioNet ``files/`` pages, Apache/nginx autoindex)."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import TYPE_CHECKING
from urllib.parse import unquote, urljoin, urlsplit

if TYPE_CHECKING:
    from pipelines.fetch.base import Fetcher


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)


def parse_listing_links(html: str) -> list[str]:
    """Every ``<a href>`` of a listing page, in page order."""
    parser = _Links()
    parser.feed(html)
    return parser.hrefs


def glob_prefixes(pattern: str | None, base: str = "") -> list[str] | None:
    """The literal folder prefixes of a ``--files`` glob (``None``: no pruning possible).

    ``"g1/HR0*"`` -> ``["g1/"]``; patterns are also tried below ``base`` (the dataset folder).
    """
    if not pattern:
        return None
    out = []
    for p in (x.strip() for x in pattern.split(",")):
        cut = min((i for i, ch in enumerate(p) if ch in "*?["), default=len(p))
        literal = p[:cut].rsplit("/", 1)[0] + "/" if "/" in p[:cut] else ""
        if not literal:
            return None
        out.append(literal)
        if base:
            out.append(base.strip("/") + "/" + literal)
    return out


def crawl_listing(
    fetcher: Fetcher,
    root_url: str,
    start: str = "",
    max_pages: int = 100_000,
    prefixes: list[str] | None = None,
) -> list[str]:
    """File paths (relative to ``root_url``) under the listing at ``root_url + start``.

    Follows only links that stay below the page they were found on (no parent, no other
    host, no query strings), so a crawl cannot wander off the project. With ``prefixes``
    (from :func:`glob_prefixes`), folders that cannot hold a selected file are not visited.
    """
    root_url = root_url if root_url.endswith("/") else root_url + "/"
    todo = [start.strip("/") + "/" if start.strip("/") else ""]
    seen: set[str] = set()
    files: list[str] = []
    while todo:
        rel_dir = todo.pop()
        if rel_dir in seen:
            continue
        seen.add(rel_dir)
        if len(seen) > max_pages:
            break
        page_url = urljoin(root_url, rel_dir)
        html = fetcher.get(page_url, what=f"listing {rel_dir or '/'}").text
        for href in parse_listing_links(html):
            if href.startswith(("?", "#", "mailto:")) or href in ("../", "./", "/"):
                continue
            target = urljoin(page_url, href)
            if urlsplit(target).query or not target.startswith(page_url) or target == page_url:
                continue
            rel = unquote(target[len(root_url) :])
            if rel.endswith("/"):
                if prefixes is None or any(rel.startswith(p) or p.startswith(rel) for p in prefixes):
                    todo.append(rel)
            else:
                files.append(rel)
    return sorted(set(files))
