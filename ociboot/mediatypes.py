"""Media types of OCI and Docker manifests, configs and layers, and what they imply.

Media types are an open set (image-index.md: an unknown `mediaType` MUST NOT be an error while
walking an index), so descriptors keep them as `str`; this enum names the ones we act on.
"""

from __future__ import annotations

from enum import StrEnum


class MediaType(StrEnum):
    OCI_INDEX = "application/vnd.oci.image.index.v1+json"
    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
    OCI_EMPTY = "application/vnd.oci.empty.v1+json"
    IN_TOTO = "application/vnd.in-toto+json"  # an in-toto statement: ociboot's verdicts (verdict/)
    OCI_LAYOUT_HEADER = "application/vnd.oci.layout.header.v1+json"
    OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
    OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
    OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
    OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
    OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
    DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
    DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
    DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
    DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
    DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
    DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"


#: Sent as `Accept` for every manifest request (docs/measurements.md: without Docker v2 a registry
#: down-converts to schema1; without the OCI index type an index answers 404).
MANIFEST_ACCEPT = (
    MediaType.OCI_MANIFEST,
    MediaType.OCI_INDEX,
    MediaType.DOCKER_MANIFEST,
    MediaType.DOCKER_MANIFEST_LIST,
)

INDEX_TYPES = frozenset({MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = frozenset({MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST})
SCHEMA1_TYPES = frozenset({MediaType.DOCKER_SCHEMA1, MediaType.DOCKER_SCHEMA1_SIGNED})
CONFIG_TYPES = frozenset({MediaType.OCI_CONFIG, MediaType.DOCKER_CONFIG})

_LAYER_COMPRESSION: dict[str, str] = {
    MediaType.OCI_LAYER: "none",
    MediaType.OCI_LAYER_GZIP: "gzip",
    MediaType.OCI_LAYER_ZSTD: "zstd",
    MediaType.OCI_LAYER_NONDIST: "none",
    MediaType.OCI_LAYER_NONDIST_GZIP: "gzip",
    MediaType.OCI_LAYER_NONDIST_ZSTD: "zstd",
    MediaType.DOCKER_LAYER: "none",
    MediaType.DOCKER_LAYER_GZIP: "gzip",
    MediaType.DOCKER_LAYER_ZSTD: "zstd",
    MediaType.DOCKER_FOREIGN_LAYER: "gzip",
}


def is_index(media_type: str | None) -> bool:
    return media_type in INDEX_TYPES


def is_manifest(media_type: str | None) -> bool:
    return media_type in MANIFEST_TYPES


def is_encrypted(media_type: str | None) -> bool:
    # ocicrypt appends "+encrypted" to the layer type (containers/ocicrypt spec).
    return bool(media_type) and "+encrypted" in str(media_type)


def is_layer(media_type: str | None) -> bool:
    return media_type in _LAYER_COMPRESSION


def layer_compression(media_type: str | None) -> str | None:
    """The compression a layer media type declares ("none", "gzip", "zstd"), None if unknown."""
    return _LAYER_COMPRESSION.get(media_type or "")


def unreadable_layer(media_type: str | None) -> str | None:
    """Why a layer of this media type cannot be read, or None if it can."""
    if is_encrypted(media_type):
        return "an encrypted layer (ociboot does not decrypt layers)"
    if layer_compression(media_type) is None:
        return "not a layer type ociboot reads"
    return None
