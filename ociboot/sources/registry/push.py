"""RegistryTarget: blobs and manifests written to a registry (distribution-spec "Push").

A blob goes up in one monolithic upload (POST, then PUT with `?digest=`) streamed from its
reader in CHUNK pieces, never held whole; the registry checks the digest.  A manifest goes up as
the exact bytes given, so its digest is the one the source had.  A blob another repository of
the registry holds is mounted (`?mount=&from=`) instead of sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import IO
from urllib.parse import urlencode, urljoin

from ...digest import Digest
from ...errors import InvalidManifest, RegistryError
from ...mediatypes import MANIFEST_ACCEPT
from ...ref import ImageRef
from ...spec import Descriptor
from ...streams import ReadStream
from .. import SourceOptions
from .client import RegistryClient
from .endpoint import Endpoint
from .token import same_origin
from .transport import CHUNK, Budget, Response

_ACCEPT = ", ".join(MANIFEST_ACCEPT)


class _Body:
    """An upload body of exactly `size` bytes, read in CHUNK pieces as requests sends it (it
    takes the length from len() and streams what iteration yields).  Each piece is sent only
    within the image's deadline: a registry that takes the body slowly, but never slowly enough
    to stall, would otherwise hold an upload from a local stream (an archive) for as long as it
    likes; only reads from the network are metered against the deadline."""

    def __init__(self, stream: IO[bytes] | ReadStream, size: int, what: str, budget: Budget) -> None:
        self._stream = stream
        self._size = size
        self._what = what
        self._budget = budget

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        left = self._size
        while left:
            if self._budget.left() <= 0:
                raise self._budget.expired(self._what)
            chunk = self._stream.read(min(left, CHUNK))
            if not chunk:
                raise RegistryError(f"{self._what}: its reader ended {left} bytes short of {self._size}")
            left -= len(chunk)
            yield chunk
        if self._stream.read(1):
            raise RegistryError(f"{self._what}: its reader holds more than the {self._size} bytes declared")


class RegistryTarget:
    """One repository written to; `client` as for RegistrySource.  `mount_from` names the
    repositories of the same registry that blobs may be mounted from (their pull scope is
    asked for with this repository's push scope)."""

    def __init__(
        self,
        ref: ImageRef,
        options: SourceOptions,
        client: RegistryClient | None = None,
        mount_from: tuple[str, ...] = (),
    ) -> None:
        self._own = client is None
        scopes = (f"repository:{ref.repository}:pull,push", *(f"repository:{r}:pull" for r in mount_from))
        self._endpoint = Endpoint(client or RegistryClient(), ref, options, scopes)

    def blob_exists(self, descriptor: Descriptor) -> bool:
        endpoint = self._endpoint
        url = endpoint.url("blobs", str(descriptor.digest))
        what = f"blob {descriptor.digest}"
        response, _ = endpoint.request("HEAD", url, {}, what, allow=frozenset({200, 404}))
        response.close()
        return response.status_code == 200

    def manifest_digest(self, reference: str) -> Digest | None:
        """The digest the repository holds under `reference` (a tag or a digest), None if none:
        what a promotion need not push again.  The registry's word, from a HEAD."""
        endpoint = self._endpoint
        url = endpoint.url("manifests", reference)
        what = f"manifest {reference}"
        headers = {"Accept": _ACCEPT}
        response, _ = endpoint.request("HEAD", url, headers, what, allow=frozenset({200, 404}))
        response.close()
        if response.status_code == 404:
            return None
        stored = response.headers.get("Docker-Content-Digest", "").strip()
        try:
            return Digest.parse(stored)
        except InvalidManifest:
            raise RegistryError(f"{what}: invalid Docker-Content-Digest {stored!r}") from None

    def upload_blob(self, descriptor: Descriptor, stream: IO[bytes] | ReadStream) -> bool:
        """Send the blob `descriptor` names, read from `stream`; False if the registry has it."""
        if self.blob_exists(descriptor):
            return False
        what = f"upload of blob {descriptor.digest}"
        location = self._start_upload(what)
        self._finish_upload(
            location, descriptor, _Body(stream, descriptor.size, what, self._endpoint.budget), what
        )
        return True

    def mount_blob(self, descriptor: Descriptor, repository: str) -> bool:
        """Mount the blob from `repository` of the same registry: True if the registry did;
        False if it did not (it may not hold the blob there, or may not mount at all)."""
        query = {"mount": str(descriptor.digest), "from": repository}
        endpoint = self._endpoint
        url = endpoint.url("blobs", "uploads/") + "?" + urlencode(query)
        what = f"mount of blob {descriptor.digest} from {repository}"
        response, _ = endpoint.request(
            "POST", url, {"Content-Length": "0"}, what, allow=frozenset({201, 202})
        )
        response.close()
        if response.status_code == 201:
            return True
        # 202: an upload session was opened instead; cancel it rather than leave it to expire.
        location = self._location(response, what)
        cancel, _ = endpoint.request("DELETE", location, {}, what, allow=frozenset({204, 404}))
        cancel.close()
        return False

    def upload_manifest(self, data: bytes, media_type: str, reference: str | None = None) -> Digest:
        """PUT the manifest's exact bytes under `reference` (a tag; by default its digest)."""
        digest = Digest.parse("sha256:" + hashlib.sha256(data).hexdigest())
        endpoint = self._endpoint
        what = f"upload of manifest {reference or digest}"
        url = endpoint.url("manifests", reference or str(digest))
        headers = {"Content-Type": media_type}
        response, _ = endpoint.request("PUT", url, headers, what, data=data, allow=frozenset({201}))
        response.close()
        stored = response.headers.get("Docker-Content-Digest", "").strip()
        if stored and stored != str(digest):
            raise RegistryError(f"{what}: the registry stored it as {stored}, not {digest}")
        return digest

    @property
    def endpoint(self) -> Endpoint:
        """This repository as requests reach it (auth, budget): what reads beside it share."""
        return self._endpoint

    def close(self) -> None:
        if self._own:
            self._endpoint.client.close()

    def _start_upload(self, what: str) -> str:
        endpoint = self._endpoint
        url = endpoint.url("blobs", "uploads/")
        response, _ = endpoint.request("POST", url, {"Content-Length": "0"}, what, allow=frozenset({202}))
        response.close()
        return self._location(response, what)

    def _finish_upload(self, location: str, descriptor: Descriptor, body: _Body, what: str) -> None:
        separator = "&" if "?" in location else "?"
        url = f"{location}{separator}{urlencode({'digest': str(descriptor.digest)})}"
        headers = {"Content-Type": "application/octet-stream"}
        response, _ = self._endpoint.request("PUT", url, headers, what, data=body, allow=frozenset({201}))
        response.close()

    def _location(self, response: Response, what: str) -> str:
        """The upload session's URL; one on another origin would get our credentials: refused."""
        endpoint = self._endpoint
        base = f"{endpoint.scheme}://{endpoint.host}/"
        location = urljoin(base, response.headers.get("Location", ""))
        if not response.headers.get("Location") or not same_origin(location, base):
            raise RegistryError(f"{what}: {endpoint.host} gave no upload location on its own origin")
        return location
