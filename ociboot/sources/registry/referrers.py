"""Where a repository keeps the referrers of a manifest (distribution-spec v1.1): the raw lists.

    api(digest)   GET /v2/<name>/referrers/<digest>: the registry's list, or None when the
                  registry has no referrers API (404: distribution-spec "Unavailable Referrers API")
    tagged(tag)   the referrers tag schema's index (`sha256-<hex>`), or None when it does not exist

Both return bytes capped at MAX_MANIFEST_BYTES and believe nothing of them: verdict/ parses.
They read through the endpoint of a RegistrySource (pull) or a RegistryTarget (pull,push), whose
budget (the image's deadline) and auth they share.
"""

from __future__ import annotations

from urllib.parse import urlencode

from ...digest import Digest
from ...errors import RegistryError
from ...mediatypes import MediaType
from ...ref import ImageRef
from .endpoint import Endpoint, display
from .push import RegistryTarget
from .source import RegistrySource


class Referrers:
    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint

    @classmethod
    def of(cls, holder: RegistrySource | RegistryTarget) -> Referrers:
        return cls(holder.endpoint)

    @property
    def ref(self) -> ImageRef:
        return self._endpoint.ref

    def api(self, digest: Digest, artifact_type: str | None = None) -> bytes | None:
        endpoint = self._endpoint
        url = endpoint.url("referrers", str(digest))
        if artifact_type:
            url += "?" + urlencode({"artifactType": artifact_type})
        what = f"referrers of {digest} in {display(endpoint.ref)}"
        found = self._endpoint.find_document(url, MediaType.OCI_INDEX, what)
        if found is None:
            return None
        if found.media_type != MediaType.OCI_INDEX:
            raise RegistryError(
                f"{endpoint.host} answered the {what} with {found.media_type or 'no media type'}, "
                "not an OCI index"
            )
        if found.link:
            # A later page could hold the newest verdict: a part of the list is no list.
            raise RegistryError(f"{endpoint.host} paginates the {what}; ociboot reads one page only")
        return found.body

    def tagged(self, tag: str) -> bytes | None:
        endpoint = self._endpoint
        what = f"referrers index {tag} of {display(endpoint.ref)}"
        found = endpoint.find_document(endpoint.url("manifests", tag), MediaType.OCI_INDEX, what)
        return None if found is None else found.body
