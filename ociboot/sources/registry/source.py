"""docker:// — manifests and blobs from a registry (OCI distribution-spec v1.1), raw.

We keep raw manifest bytes and never verify here (image.py and layer.py do, once).
"""

from __future__ import annotations

import io

from ...digest import Digest
from ...errors import InvalidManifest, RegistryError
from ...mediatypes import MANIFEST_ACCEPT
from ...ref import ImageRef
from ...spec import MAX_MANIFEST_BYTES, Descriptor
from .. import RawManifest, SourceOptions
from .blob import BlobStream
from .client import RegistryClient
from .endpoint import Endpoint, display
from .transport import CHUNK, Session, metered, read_capped

_ACCEPT = ", ".join(MANIFEST_ACCEPT)


class RegistrySource:
    """An ImageSource over a registry.  `client` holds what it shares with the run's other
    sources (tokens, connections); without one the source has its own, closed with it."""

    def __init__(self, ref: ImageRef, options: SourceOptions, client: RegistryClient | None = None) -> None:
        self._ref = ref
        self._own = client is None
        self._endpoint = Endpoint(client or RegistryClient(), ref, options)
        self.deadline = self._endpoint.budget.deadline

    @property
    def ref(self) -> ImageRef:
        return self._ref

    @property
    def host(self) -> str:
        return self._endpoint.host

    @property
    def scheme(self) -> str:
        return self._endpoint.scheme

    def session(self) -> Session:
        """This thread's session for the registry (shared through the client)."""
        return self._endpoint.session()

    def get_manifest(self, digest: Digest | None = None) -> RawManifest:
        ref, endpoint = self._ref, self._endpoint
        reference = str(digest or ref.digest or "") or ref.tag or "latest"
        what = f"manifest {reference} of {endpoint.host}/{ref.repository}"
        url = endpoint.url("manifests", reference)
        attempt = 0
        while True:
            response, transfer = endpoint.request("GET", url, {"Accept": _ACCEPT}, what)
            try:
                length = response.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > MAX_MANIFEST_BYTES:
                    raise InvalidManifest(f"{what} is {length} bytes, over the {MAX_MANIFEST_BYTES} byte cap")
                with metered(transfer):
                    data = read_capped(response, MAX_MANIFEST_BYTES + 1, what)
                break
            except RegistryError as error:
                # The connection dropped mid-body: the GET is idempotent, so ask again (bounded).
                if not error.temporary or attempt >= endpoint.options.retries:
                    raise
                attempt += 1
            finally:
                response.close()
        if len(data) > MAX_MANIFEST_BYTES:
            raise InvalidManifest(f"{what} is over the {MAX_MANIFEST_BYTES} byte cap")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip() or None
        claimed = digest or ref.digest
        if claimed is None and (header := response.headers.get("Docker-Content-Digest")):
            try:
                claimed = Digest.parse(header.strip())
            except InvalidManifest:
                raise InvalidManifest(f"{what}: invalid Docker-Content-Digest {header!r}") from None
        return RawManifest(data, media_type, claimed, where=f"{display(ref)} ({what})")

    def open_blob(self, descriptor: Descriptor) -> io.BufferedReader:
        return io.BufferedReader(BlobStream(self._endpoint, descriptor), buffer_size=CHUNK)

    @property
    def endpoint(self) -> Endpoint:
        """This repository as requests reach it (auth, budget): what reads beside it share."""
        return self._endpoint

    def close(self) -> None:
        # A shared client's connections stay open for the run's next source.
        if self._own:
            self._endpoint.client.close()
