"""`docker-archive:FILE[:NAME:TAG | :@INDEX]`: what `docker save` and `podman save` write.

Two forms exist (moby/docker-image-spec, "Combined Image JSON + Filesystem Changeset Format"):

- legacy: `manifest.json` = `[{Config, RepoTags, Layers, LayerSources?}]`, one `<id>/layer.tar`
  per layer, `<hex>.json` configs.  No manifest exists, so one is synthesised (Docker schema2,
  canonical JSON) with RawManifest.digest None: nothing claims a digest for it.
- Docker 25+: the same `manifest.json` plus a full OCI layout (`oci-layout`, `index.json`,
  `blobs/`).  The real OCI manifests are preferred; `manifest.json` still selects the image.

Only the bytes are found here; image.py and layer.py verify them.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import deque
from dataclasses import dataclass
from typing import IO, Any

from ..digest import Digest
from ..errors import (
    ImageNotFound,
    InvalidManifest,
    UnsupportedCompression,
    UnsupportedMediaType,
)
from ..mediatypes import INDEX_TYPES, MANIFEST_TYPES, MediaType
from ..ref import DOCKER_HUB, ImageRef, names_host
from ..spec import MAX_DESCRIPTORS, MAX_MANIFEST_BYTES, Descriptor, ImageConfig, Index, load_json, parse_json
from . import RawManifest, SourceOptions, deadline_of
from ._store import Store, open_store
from .layout import blob_path

# Magic numbers of layer files (a `docker save` layer is a plain tar; kaniko writes .tar.gz).
_COMPRESSED = {b"\x1f\x8b": MediaType.DOCKER_LAYER_GZIP, b"\x28\xb5\x2f\xfd": MediaType.DOCKER_LAYER_ZSTD}
_NO_MEDIA_TYPE = {
    b"\xfd7zXZ\x00": "xz",
    b"BZh": "bzip2",
    b"\x04\x22\x4d\x18": "lz4",
    b"\x02\x21\x4c\x18": "lz4",
}

_CONTAINERD_NAME = "io.containerd.image.name"
_OCI_REF_NAME = "org.opencontainers.image.ref.name"
#: Docker 25 with `"manifests": null` (moby/moby#47210): manifests are found by scanning blobs;
#: anything bigger than this is a layer, not a manifest.
_SCAN_LIMIT = 1 << 20


def normalize_name(text: str) -> str:
    """`busybox` -> `docker.io/library/busybox:latest` (Docker Hub rules, as `docker save` tags)."""
    name, tag = text, "latest"
    slash, colon = text.rfind("/"), text.rfind(":")
    if colon > slash:
        name, tag = text[:colon], text[colon + 1 :]
    first, _, rest = name.partition("/")
    if rest and names_host(name):
        host, path = first, rest
    else:
        host, path = DOCKER_HUB, name
    if host in ("index.docker.io", "registry-1.docker.io"):
        host = DOCKER_HUB
    if host == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    return f"{host}/{path}:{tag}"


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """One image of `manifest.json`."""

    config: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]

    @classmethod
    def from_json(cls, obj: Any, what: str) -> ArchiveEntry:
        if not isinstance(obj, dict):
            raise InvalidManifest(f"{what} is not an object")
        config, layers, tags = obj.get("Config"), obj.get("Layers"), obj.get("RepoTags") or []
        if not isinstance(config, str) or not config:
            raise InvalidManifest(f"{what}: missing 'Config'")
        if not isinstance(layers, list) or not all(isinstance(p, str) for p in layers):
            raise InvalidManifest(f"{what}: 'Layers' must be a list of paths")
        if len(layers) > MAX_DESCRIPTORS:
            raise InvalidManifest(
                f"{what}: 'Layers' lists {len(layers)} layers, over the cap of {MAX_DESCRIPTORS}"
            )
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise InvalidManifest(f"{what}: 'RepoTags' must be a list of strings")
        return cls(config, tuple(tags), tuple(layers))


def parse_manifest_json(raw: bytes, where: str) -> list[ArchiveEntry]:
    what = f"manifest.json of {where}"
    value = parse_json(raw, what)
    if not isinstance(value, list):
        raise InvalidManifest(f"{what} must be a list of images, got {json.dumps(value)[:40]}")
    if len(value) > MAX_DESCRIPTORS:
        raise InvalidManifest(f"{what} lists {len(value)} images, over the cap of {MAX_DESCRIPTORS}")
    entries = [ArchiveEntry.from_json(obj, f"{what} entry {i}") for i, obj in enumerate(value)]
    if not entries:
        raise ImageNotFound(f"{where} holds no images (manifest.json is an empty list)")
    return entries


class DockerArchiveSource:
    def __init__(self, ref: ImageRef, store: Store, deadline: float = math.inf) -> None:
        self._ref = ref
        self.deadline = deadline
        self.store = store
        self.where = f"docker-archive:{ref.path}"
        self.is_oci = store.exists("oci-layout") and store.exists("index.json")
        self._blobs: dict[Digest, str] = {}  # synthesised descriptors -> archive member
        self._synthesised: Digest | None = None
        choice = self._choose(self._entries())
        if isinstance(choice, Descriptor):
            self._manifest = self._read_blob_manifest(choice.digest, choice.media_type)
        else:
            self._manifest = self._manifest_for(choice)

    @property
    def ref(self) -> ImageRef:
        return self._ref

    # --- selection ---------------------------------------------------------------------------

    def _entries(self) -> list[ArchiveEntry]:
        if not self.store.exists("manifest.json"):
            if self.store.exists("repositories"):
                raise UnsupportedMediaType(
                    f"{self.where} has only the legacy 'repositories' file and no manifest.json "
                    "(docker save before Docker 1.10); this form is not supported: save it again "
                    "with a current docker or podman"
                )
            if self.is_oci:
                raise ImageNotFound(
                    f"{self.where} has no manifest.json but is an OCI layout: use oci-archive:"
                )
            raise ImageNotFound(f"{self.where} is not a docker-archive: no manifest.json")
        return parse_manifest_json(self.store.read("manifest.json"), self.where)

    def _choose(self, entries: list[ArchiveEntry]) -> ArchiveEntry | Descriptor:
        if self._ref.index is not None:
            if not 0 <= self._ref.index < len(entries):
                raise ImageNotFound(
                    f"{self.where} has {len(entries)} image(s); @{self._ref.index} is out of range"
                )
            return entries[self._ref.index]
        if self._ref.name:
            wanted = normalize_name(self._ref.name)
            hits = [e for e in entries if any(normalize_name(tag) == wanted for tag in e.repo_tags)]
            if len({e.config for e in hits}) > 1:
                # `docker load` tags in order, so the last one would run: neither is "the" image.
                raise ImageNotFound(
                    f"{self.where}: the tag {self._ref.name!r} names {len(hits)} different images"
                )
            if hits:
                return hits[0]
            named = self._oci_entry_named(self._ref.name, wanted)
            if named is not None:
                return named
            raise ImageNotFound(f"{self.where} has no image tagged {self._ref.name!r} ({_listing(entries)})")
        if len(entries) == 1:
            return entries[0]
        raise ImageNotFound(
            f"{self.where} has {len(entries)} images, choose one: "
            f"docker-archive:{self._ref.path}:NAME:TAG or :@INDEX ({_listing(entries)})"
        )

    def _oci_entry_named(self, name: str, normalized: str) -> Descriptor | None:
        """Docker 25+ index.json names images by containerd's annotation (moby/moby#44598)."""
        if not self.is_oci:
            return None
        for desc in self._index().manifests:
            full = desc.annotations.get(_CONTAINERD_NAME)
            if (full and normalize_name(full) == normalized) or desc.annotations.get(_OCI_REF_NAME) == name:
                return desc
        return None

    def _index(self) -> Index:
        return Index.from_json(self.store.read("index.json"), f"index.json of {self.where}")

    # --- the manifest ------------------------------------------------------------------------

    def _manifest_for(self, entry: ArchiveEntry) -> RawManifest:
        config_raw = self._read_member(entry.config, "config")
        config_digest = Digest.of(config_raw)
        if self.is_oci:
            found = self._find_oci_manifest(config_digest)
            if found is not None:
                return found
        return self._synthesise(entry, config_raw, config_digest)

    def _find_oci_manifest(self, config_digest: Digest) -> RawManifest | None:
        """The real manifest naming `config_digest`: via index.json, else by scanning blobs."""
        queue, seen = deque(self._index().manifests), set()
        listed = len(queue)
        while queue:
            desc = queue.popleft()
            if desc.digest in seen or not self.store.exists(blob_path(desc.digest)):
                continue
            seen.add(desc.digest)
            raw = self.store.read(blob_path(desc.digest))
            if desc.media_type in INDEX_TYPES:
                nested = Index.from_json(raw, f"{self.where} index {desc.digest}").manifests
                listed += len(nested)
                if listed > MAX_DESCRIPTORS:
                    raise InvalidManifest(
                        f"the indexes of {self.where} list more than {MAX_DESCRIPTORS} entries"
                    )
                queue.extend(nested)
            elif desc.media_type in MANIFEST_TYPES and _names_config(raw, config_digest):
                return RawManifest(raw, desc.media_type, desc.digest, f"{self.where} {desc.digest}")
        # moby/moby#47210: `docker save image@digest` wrote "manifests": null; the manifest is
        # still among the blobs, and its file name claims its digest.
        for name in self.store.names():
            if not name.startswith("blobs/") or not self.store.exists(name):
                continue  # not a blob, or a link that leads nowhere readable
            if self.store.size(name) > _SCAN_LIMIT:
                continue
            alg, _, hex_ = name.removeprefix("blobs/").partition("/")
            try:
                digest = Digest.parse(f"{alg}:{hex_}")
            except InvalidManifest:
                continue
            if digest in seen or digest == config_digest:
                continue
            with self.store.open(name) as f:
                if f.read(1) != b"{":
                    continue
            raw = self.store.read(name)
            if _names_config(raw, config_digest):
                obj = json.loads(raw)
                declared = obj.get("mediaType")
                # Only a string is a media type; anything else is left to image.py to refuse.
                media_type = declared if isinstance(declared, str) and declared else MediaType.OCI_MANIFEST
                return RawManifest(raw, media_type, digest, f"{self.where} {digest}")
        return None

    def _synthesise(self, entry: ArchiveEntry, config_raw: bytes, config_digest: Digest) -> RawManifest:
        # `LayerSources` is deliberately not used: it describes the registry's (compressed,
        # possibly foreign) blob, while the archive holds other bytes; descriptors must name the
        # bytes open_blob() returns, or verification above would fail.
        config = ImageConfig.from_json(config_raw, f"config {entry.config} of {self.where}")
        if len(config.diff_ids) != len(entry.layers):
            raise InvalidManifest(
                f"{self.where}: manifest.json lists {len(entry.layers)} layers for {entry.config}, "
                f"its rootfs.diff_ids {len(config.diff_ids)}"
            )
        self._blobs[config_digest] = entry.config
        layers = [
            self._layer_descriptor(path, diff_id)
            for path, diff_id in zip(entry.layers, config.diff_ids, strict=True)
        ]
        obj = {
            "schemaVersion": 2,
            "mediaType": MediaType.DOCKER_MANIFEST.value,
            "config": {
                "mediaType": MediaType.DOCKER_CONFIG.value,
                "size": len(config_raw),
                "digest": str(config_digest),
            },
            "layers": layers,
        }
        data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
        self._synthesised = Digest.of(data)
        tag = f" {entry.repo_tags[0]}" if entry.repo_tags else ""
        return RawManifest(data, MediaType.DOCKER_MANIFEST, None, f"{self.where}{tag} (synthesised manifest)")

    def _layer_descriptor(self, path: str, diff_id: Digest) -> dict[str, Any]:
        """Sniff a layer file: a plain tar's digest IS its diff_id (layer.py checks it as bytes
        pass, so no extra read); a compressed file needs one extra hashing pass."""
        size = self._member_size(path, "layer")
        with self.store.open(path) as f:
            head = f.read(6)
        for magic, kind in _NO_MEDIA_TYPE.items():
            if head.startswith(magic):
                raise UnsupportedCompression(
                    f"layer {path} of {self.where} is {kind}-compressed; no Docker or OCI layer "
                    "media type exists for it"
                )
        media_type, digest = MediaType.DOCKER_LAYER, diff_id
        for magic, kind_type in _COMPRESSED.items():
            if head.startswith(magic):
                media_type, digest = kind_type, self._hash_member(path)
        self._blobs[digest] = path
        return {"mediaType": media_type.value, "size": size, "digest": str(digest)}

    def _hash_member(self, path: str) -> Digest:
        h = hashlib.sha256()
        with self.store.open(path) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return Digest("sha256", h.hexdigest())

    def _member_size(self, path: str, what: str) -> int:
        if not self.store.exists(path):
            raise ImageNotFound(f"{what} {path} named by manifest.json is missing from {self.where}")
        return self.store.size(path)

    def _read_member(self, path: str, what: str) -> bytes:
        self._member_size(path, what)
        return self.store.read(path, MAX_MANIFEST_BYTES)

    def _read_blob_manifest(self, digest: Digest, media_type: str | None) -> RawManifest:
        path = blob_path(digest)
        if not self.store.exists(path):
            raise ImageNotFound(f"manifest {digest} not found in {self.where} (no {path})")
        return RawManifest(self.store.read(path), media_type, digest, f"{self.where} {digest}")

    # --- ImageSource -------------------------------------------------------------------------

    def get_manifest(self, digest: Digest | None = None) -> RawManifest:
        if digest is None or digest == self._manifest.digest:
            return self._manifest
        if digest == self._synthesised:
            m = self._manifest
            return RawManifest(m.data, m.media_type, digest, m.where)
        if self.is_oci and self.store.exists(blob_path(digest)):
            return self._read_blob_manifest(digest, None)
        raise ImageNotFound(f"manifest {digest} not found in {self.where}")

    def open_blob(self, descriptor: Descriptor) -> IO[bytes]:
        path = self._blobs.get(descriptor.digest)
        if path is None and self.is_oci and self.store.exists(blob_path(descriptor.digest)):
            path = blob_path(descriptor.digest)
        if path is None:
            raise ImageNotFound(
                f"blob {descriptor.digest} ({descriptor.media_type}) not found in {self.where}"
            )
        return self.store.open(path)

    def close(self) -> None:
        self.store.close()


def _names_config(raw: bytes, config_digest: Digest) -> bool:
    try:
        obj = load_json(raw, "blob")
    except InvalidManifest:
        return False
    config = obj.get("config")
    return isinstance(config, dict) and config.get("digest") == str(config_digest) and "layers" in obj


def _listing(entries: list[ArchiveEntry]) -> str:
    tags = [t for e in entries for t in e.repo_tags]
    untagged = [f"@{i}" for i, e in enumerate(entries) if not e.repo_tags]
    parts = []
    if tags:
        parts.append("tags: " + ", ".join(tags))
    if untagged:
        parts.append("untagged: " + ", ".join(untagged))
    return "; ".join(parts) or "no images"


def open_docker_archive(ref: ImageRef, options: SourceOptions) -> DockerArchiveSource:
    deadline = deadline_of(options)
    return DockerArchiveSource(ref, open_store(ref.path, archive=True, deadline=deadline), deadline)
