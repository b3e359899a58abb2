"""What a registry lists: its repositories (`GET /v2/_catalog`) and a repository's tags
(`GET /v2/<name>/tags/list`), page by page (distribution-spec "Listing Tags", the catalog API
of distribution), following RFC 8288 `Link: <...>; rel="next"`.

    repositories(...)   every repository the catalog lists, sorted
    tags(...)           every tag of one repository, sorted

A listing is one exchange with the registry as far as bounds go: one deadline (--timeout) and
one stall budget for all its pages, the image bounds of the transport.  Nothing the registry says
is believed beyond its grammar: a page is capped in bytes, a listing in pages and in names, every
name must parse as a repository or a tag (distribution/reference), and a next page may only be
the same API on the same origin (a Link to another host or scheme would take our credentials
there) that was not asked for before (a loop).  A listing past a cap is an error, never cut
short: an audit that silently skipped what did not fit would pass what it never saw.

Found by trying Debian's docker-registry 2.8: the catalog pages (at most `catalog: maxentries`
names a page, 1000 by default; an `n` above that is answered 400 PAGINATION_NUMBER_INVALID), but
tags/list ignores `n` and `last` and sends every tag at once, in no useful order.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

from ...errors import (
    AuthenticationError,
    CatalogClosed,
    ImageNotFound,
    InvalidListing,
    InvalidManifest,
    RegistryError,
)
from ...ref import ImageRef, Transport, valid_repository, valid_tag
from ...spec import parse_json
from .. import SourceOptions
from .client import RegistryClient
from .endpoint import Endpoint
from .token import same_origin

#: Pages of one listing: a registry that hands out new next-page URLs for ever is given up on.
MAX_PAGES = 10_000
#: Repositories one catalog may list; more is an error.
MAX_REPOSITORIES = 100_000
#: Tags one repository may list; more is an error.
MAX_TAGS = 100_000

CATALOG_SCOPE = "registry:catalog:*"
# RFC 8288 section 3: `<target>` then `;`-separated parameters; links are separated by `,`.
_LINK = re.compile(r"<([^>]*)>((?:\s*;[^;,]*)*)")


def repositories(
    client: RegistryClient, registry: str, options: SourceOptions, page_size: int | None = None
) -> list[str]:
    """Every repository the registry's catalog lists, sorted; CatalogClosed when it lists none
    to us (401, 403, 404: give the images as a list instead)."""
    ref = ImageRef(Transport.DOCKER, registry=registry)
    endpoint = Endpoint(client, ref, options, (CATALOG_SCOPE,), label=f"catalog of {registry}")
    url = f"{endpoint.scheme}://{endpoint.host}/v2/_catalog"
    listing = _Listing(endpoint, "catalog", "repositories", "repository", valid_repository, MAX_REPOSITORIES)
    try:
        return listing.read(url, page_size)
    except (AuthenticationError, ImageNotFound) as error:  # 401 (past our credentials), 403, 404
        raise CatalogClosed(
            f"{endpoint.host} does not list its repositories ({error}): the catalog is closed; "
            "give --from FILE with the images to audit"
        ) from None


def tags(
    client: RegistryClient,
    registry: str,
    repository: str,
    options: SourceOptions,
    page_size: int | None = None,
) -> list[str]:
    """Every tag of `repository`, sorted; none when the registry answers 404 (a catalog lists
    repositories whose tags were all deleted).  Another status carrying a not-found code is
    ImageNotFound: only a 404 says there is nothing to list."""
    ref = ImageRef(Transport.DOCKER, registry=registry, repository=repository)
    endpoint = Endpoint(client, ref, options, label=f"tags of {registry}/{repository}")
    url = f"{endpoint.scheme}://{endpoint.host}/v2/{repository}/tags/list"
    listing = _Listing(endpoint, f"tag list of {repository}", "tags", "tag", valid_tag, MAX_TAGS)
    try:
        return listing.read(url, page_size)
    except ImageNotFound as missing:
        if missing.status == 404:
            return []
        raise


class _Listing:
    """One listing read page by page: `key` is the JSON member holding the page's names."""

    def __init__(
        self, endpoint: Endpoint, what: str, key: str, kind: str, valid: Callable[[str], bool], cap: int
    ) -> None:
        self.endpoint, self.host = endpoint, endpoint.host
        self.what, self.key, self.kind, self.valid, self.cap = what, key, kind, valid, cap

    def read(self, url: str, page_size: int | None) -> list[str]:
        if page_size is not None:
            if page_size < 1:
                raise ValueError(f"page size {page_size}: not a positive number")
            url += f"?n={page_size}"
        first, seen = url, {url}
        names: set[str] = set()
        page: str | None = url
        number = 0
        while page is not None:
            number += 1
            if number > MAX_PAGES:
                raise InvalidListing(f"{self.host}: the {self.what} runs over {MAX_PAGES} pages")
            body, link = self._page(page, number)
            for name in self._names(body, number):
                names.add(name)
                if len(names) > self.cap:
                    raise InvalidListing(f"{self.host}: the {self.what} lists over {self.cap} {self.key}")
            page = None if link is None else self._next(first, page, link)
            if page is not None:
                if page in seen:
                    raise InvalidListing(
                        f"{self.host}: the {self.what} loops: page {number} links back to a page already read"
                    )
                seen.add(page)
        return sorted(names)

    def _page(self, url: str, number: int) -> tuple[bytes, str | None]:
        """One page's body and the target of its rel="next" link, if any."""
        what = f"{self.what} page {number}"
        try:
            page = self.endpoint.get_document(url, "application/json", what)
        except InvalidManifest as exc:  # over the cap
            raise InvalidListing(f"{self.host}: the {exc}") from None
        except RegistryError as error:
            if error.status == 400 and "PAGINATION_NUMBER_INVALID" in error.codes:
                raise InvalidListing(
                    f"{self.host} refuses the page size asked for the {self.what}: {error}"
                ) from None
            raise
        return page.body, next_link(page.link)

    def _names(self, body: bytes, number: int) -> list[str]:
        what = f"{self.what} page {number}"
        try:
            document = parse_json(body, f"{self.host}: the {what}")
        except InvalidManifest as exc:
            raise InvalidListing(str(exc)) from None
        if not isinstance(document, dict):
            raise InvalidListing(f"{self.host}: the {what} is not a JSON object")
        repository = self.endpoint.ref.repository
        if self.kind == "tag" and document.get("name", repository) != repository:
            shown = repr(document.get("name"))[:80]
            raise InvalidListing(f"{self.host}: the {what} is for {shown}, not {repository!r}")
        listed = document.get(self.key)
        if listed is None:  # distribution sends null for a repository whose tags were all deleted
            return []
        if not isinstance(listed, list):
            raise InvalidListing(f"{self.host}: the {what} has {self.key} that are not a list")
        for name in listed:
            if not isinstance(name, str) or not self.valid(name):
                shown = repr(name)[:80]
                raise InvalidListing(f"{self.host}: the {what} lists {shown}, not a valid {self.kind} name")
        return listed

    def _next(self, first: str, current: str, link: str) -> str:
        """The next page's absolute URL: relative to the page that named it (RFC 8288 section
        3.2), and only the same API at the same origin, where our credentials may go."""
        try:
            target = urljoin(current, link)
            parts = urlsplit(target)
        except ValueError:  # e.g. an unclosed IPv6 bracket
            shown = repr(link[:80])
            raise InvalidListing(f"{self.host}: the {self.what}'s next page is no URL: {shown}") from None
        if not same_origin(target, first):
            origin = f"{parts.scheme}://{parts.netloc}"[:80]
            raise InvalidListing(
                f"{self.host}: the {self.what}'s next page is on {origin!r}: "
                "refusing to follow it (our credentials go only to the registry)"
            )
        if parts.path != urlsplit(first).path:
            raise InvalidListing(
                f"{self.host}: the {self.what}'s next page is another API: {parts.path[:80]!r}"
            )
        return target


def next_link(header: str) -> str | None:
    """The target of the first `rel="next"` link of a Link header (RFC 8288), None if none."""
    for match in _LINK.finditer(header):
        for parameter in match.group(2).split(";"):
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "rel" and "next" in value.strip().strip('"').lower().split():
                return match.group(1).strip()
    return None
