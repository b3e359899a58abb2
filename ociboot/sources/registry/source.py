"""docker:// — manifests and blobs from a registry (OCI distribution-spec v1.1), raw.

We keep raw manifest bytes and never verify here (image.py and layer.py do, once).
"""

from __future__ import annotations

import io

from ...digest import Digest
from ...errors import InvalidManifest
from ...mediatypes import MANIFEST_ACCEPT
from ...ref import ImageRef
from ...spec import Descriptor
from .. import RawManifest, SourceOptions
from .blob import BlobStream
from .client import RegistryClient
from .endpoint import Endpoint, display
from .transport import CHUNK, Session

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
        document = endpoint.get_document(endpoint.url("manifests", reference), _ACCEPT, what)
        claimed = digest or ref.digest
        if claimed is None and (header := document.content_digest):
            try:
                claimed = Digest.parse(header.strip())
            except InvalidManifest:
                raise InvalidManifest(f"{what}: invalid Docker-Content-Digest {header!r}") from None
        return RawManifest(document.body, document.media_type, claimed, where=f"{display(ref)} ({what})")

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
