"""`oci:DIR[:REF]` and `oci-archive:FILE[:REF]`: an OCI image layout, as a directory or a tar.

image-layout.md: `oci-layout` holds `imageLayoutVersion`; `index.json` is an image index whose
entries name images by the `org.opencontainers.image.ref.name` annotation (annotations.md);
blobs live at `blobs/<alg>/<encoded>`.  Bytes are returned raw; image.py verifies them.
"""

from __future__ import annotations

import math
from typing import IO

from ..digest import Digest
from ..errors import ImageNotFound, InvalidManifest, UnsupportedMediaType
from ..mediatypes import MediaType
from ..ref import ImageRef, Transport
from ..spec import Descriptor, Index, load_json
from . import RawManifest, SourceOptions, deadline_of
from ._store import Store, open_store


def blob_path(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.hex}"


def check_layout_header(store: Store, where: str) -> None:
    """image-layout.md#oci-layout-file: the marker file and its version (1.x is readable)."""
    if not store.exists("oci-layout"):
        hint = ""
        if store.exists("manifest.json"):
            hint = "; it has manifest.json, so it looks like a docker-archive: use docker-archive:"
        raise ImageNotFound(f"{where} is not an OCI image layout: no oci-layout file{hint}")
    header = load_json(store.read("oci-layout"), f"oci-layout of {where}")
    version = header.get("imageLayoutVersion")
    if not isinstance(version, str):
        raise InvalidManifest(f"oci-layout of {where}: missing 'imageLayoutVersion'")
    if version.split(".")[0] != "1":
        raise UnsupportedMediaType(f"{where}: image layout version {version!r} is not supported (1.x is)")


def read_index(store: Store, where: str) -> tuple[bytes, Index]:
    if not store.exists("index.json"):
        raise ImageNotFound(f"{where} is not an OCI image layout: no index.json")
    raw = store.read("index.json")
    return raw, Index.from_json(raw, f"index.json of {where}")


class LayoutSource:
    """An OCI layout read in place; `store` is a directory or a tar archive."""

    def __init__(self, ref: ImageRef, store: Store, deadline: float = math.inf) -> None:
        self._ref = ref
        self.deadline = deadline
        self.store = store
        self.where = f"{ref.transport}:{ref.path}"
        check_layout_header(store, self.where)
        self.index_raw, self.index = read_index(store, self.where)

    @property
    def ref(self) -> ImageRef:
        return self._ref

    def get_manifest(self, digest: Digest | None = None) -> RawManifest:
        if digest is not None:
            known = next((d for d in self.index.manifests if d.digest == digest), None)
            if known is None and not self.store.exists(blob_path(digest)) and self._is_index_json(digest):
                # index.json itself is the image when it lists the platforms unnamed (below): by
                # its digest it is what a promotion pinned, checks and copies.
                return self._index_json()
            return self._read_manifest(digest, known.media_type if known else None)
        if self._ref.digest is not None:
            # Pinned by digest (`oci:DIR:@sha256:...`, or ImageRef.with_digest): that blob, whether
            # or not index.json lists it; image.py verifies the bytes against the digest.
            return self.get_manifest(self._ref.digest)
        entry = self._select()
        if entry is None:
            return self._index_json()
        return self._read_manifest(entry.digest, entry.media_type)

    def _index_json(self) -> RawManifest:
        media_type = self.index.media_type or MediaType.OCI_INDEX
        return RawManifest(self.index_raw, media_type, None, f"index.json of {self.where}")

    def _is_index_json(self, digest: Digest) -> bool:
        return Digest.of(self.index_raw, digest.algorithm) == digest

    def _select(self) -> Descriptor | None:
        """The index.json entry the reference names; None means index.json itself."""
        entries = self.index.manifests
        names = sorted({d.ref_name for d in entries if d.ref_name})
        wanted = self._ref.name
        if self._ref.index is not None:
            if not 0 <= self._ref.index < len(entries):
                raise ImageNotFound(f"{self.where} has {len(entries)} entries, no @{self._ref.index}")
            return entries[self._ref.index]
        if wanted:
            hits = [d for d in entries if d.ref_name == wanted]
            if not hits and wanted.startswith(("sha256:", "sha512:")):
                hits = [d for d in entries if str(d.digest) == wanted]
            if not hits:
                listing = ", ".join(names) if names else "none"
                raise ImageNotFound(f"{self.where} has no image named {wanted!r} (names: {listing})")
            if len({d.digest for d in hits}) > 1:
                raise ImageNotFound(f"{self.where}: the name {wanted!r} names {len(hits)} different images")
            return hits[0]
        if not entries:
            raise ImageNotFound(f"{self.where} holds no images (index.json lists no manifests)")
        if len(entries) == 1:
            return entries[0]
        if not names:
            # Unnamed entries are typically one image per platform: let image.py pick one.
            return None
        raise ImageNotFound(
            f"{self.where} has {len(entries)} images, choose one: "
            f"{self._ref.transport}:{self._ref.path}:NAME (names: {', '.join(names)})"
        )

    def _read_manifest(self, digest: Digest, media_type: str | None) -> RawManifest:
        path = blob_path(digest)
        if not self.store.exists(path):
            raise ImageNotFound(f"manifest {digest} not found in {self.where} (no {path})")
        return RawManifest(self.store.read(path), media_type, digest, f"{self.where} {digest}")

    def open_blob(self, descriptor: Descriptor) -> IO[bytes]:
        path = blob_path(descriptor.digest)
        if not self.store.exists(path):
            extra = ""
            if descriptor.urls:
                extra = f"; it is a non-distributable layer served from {', '.join(descriptor.urls)}"
            raise ImageNotFound(
                f"blob {descriptor.digest} ({descriptor.media_type}) not found in {self.where}{extra}"
            )
        return self.store.open(path)

    def close(self) -> None:
        self.store.close()


def open_layout(ref: ImageRef, options: SourceOptions) -> LayoutSource:
    deadline = deadline_of(options)
    store = open_store(ref.path, archive=ref.transport == Transport.OCI_ARCHIVE, deadline=deadline)
    return LayoutSource(ref, store, deadline)
