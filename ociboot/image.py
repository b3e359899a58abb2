"""From a source to one verified image: index -> manifest -> config, every digest checked.

Sources hand back raw, unverified bytes; this module is where manifests and configs become
trusted.  Each body is checked against every digest anyone claimed for it (the reference, the
source's own claim, the descriptor that led here, with its size), and its own digest is always
computed so a ResolvedImage knows what it is even when it was reached by tag.

Index walking follows image-index.md: unknown media types are skipped, not errors (l.50); the
first entry matching the wanted platform wins (l.91); nested indexes are followed to a bounded
depth, each digest once (a repeated entry adds nothing a first match could not find), and all
the indexes of one walk list at most MAX_DESCRIPTORS entries.  Entries that are not images
(artifacts with `artifactType`, BuildKit attestations with platform unknown/unknown) are
skipped.  An image entry without `platform` is identified by
fetching its config (oras-project/oras#636, #1252).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from enum import StrEnum

from .digest import Digest, VerifyingReader
from .errors import DigestMismatch, InvalidManifest, NoMatchingPlatform, UnsupportedMediaType
from .mediatypes import (
    CONFIG_TYPES,
    MediaType,
    is_encrypted,
    is_index,
    is_layer,
    is_manifest,
    unreadable_layer,
)
from .ref import ImageRef
from .sources import ImageSource, RawManifest
from .spec import (
    MAX_DESCRIPTORS,
    MAX_MANIFEST_BYTES,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    sniff_manifest_type,
)

#: Index -> index -> ... nesting followed before giving up (real images use one or two levels).
MAX_INDEX_DEPTH = 8
#: Configs are read into memory like manifests (containers/image caps both at 4 MiB).
MAX_CONFIG_BYTES = MAX_MANIFEST_BYTES
_FOREIGN_TYPES = frozenset(
    {
        MediaType.DOCKER_FOREIGN_LAYER,
        MediaType.OCI_LAYER_NONDIST,
        MediaType.OCI_LAYER_NONDIST_GZIP,
        MediaType.OCI_LAYER_NONDIST_ZSTD,
    }
)


@dataclass(frozen=True, slots=True)
class LayerRef:
    """One layer: the compressed blob's descriptor and the uncompressed tar's diff_id."""

    descriptor: Descriptor
    diff_id: Digest


@dataclass(frozen=True, slots=True)
class ResolvedImage:
    ref: ImageRef
    source: ImageSource = field(compare=False, repr=False)
    manifest_digest: Digest
    manifest_raw: bytes = field(repr=False)
    manifest: Manifest
    media_type: str
    config_digest: Digest
    config_raw: bytes = field(repr=False)
    config: ImageConfig
    platform: Platform
    index_digest: Digest | None
    index: Index | None
    platforms: tuple[Platform, ...]
    layers: tuple[LayerRef, ...]
    #: Things worth telling a user that do not stop the image from being read.
    notes: tuple[str, ...] = ()
    #: The platform its index entry declares (what machines are served it), None for no index.
    declared: Platform | None = None

    @property
    def pinned_ref(self) -> ImageRef:
        return self.ref.with_digest(self.manifest_digest)


class EntryKind(StrEnum):
    IMAGE = "image"
    INDEX = "index"
    ARTIFACT = "artifact"
    ATTESTATION = "attestation"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One manifest listed by an index (or a nested index), classified."""

    descriptor: Descriptor
    kind: EntryKind
    platform: Platform | None
    parent: Digest
    depth: int


@dataclass(frozen=True, slots=True)
class IndexListing:
    """What the reference names, and for an index every entry reachable from it, in order."""

    ref: ImageRef
    digest: Digest
    media_type: str
    raw: bytes = field(repr=False)
    index: Index | None
    entries: tuple[IndexEntry, ...]

    @property
    def images(self) -> tuple[IndexEntry, ...]:
        return tuple(e for e in self.entries if e.kind is EntryKind.IMAGE)

    @property
    def platforms(self) -> tuple[Platform, ...]:
        return tuple(e.platform for e in self.images if e.platform is not None)


def resolve(
    source: ImageSource, platform: Platform | None = None, top: Fetched | None = None
) -> ResolvedImage:
    """The one image `source.ref` names; for an index, the first entry matching `platform`.

    `platform` defaults to the host's, as skopeo does.  A lone manifest is returned whatever its
    platform (skopeo and crane do the same); when a platform was asked for and differs, a note says so.
    """
    resolved = _Resolver(source, top).resolve(platform or Platform.host())
    if platform is not None and resolved.index is None and not platform.matches(resolved.platform):
        note = f"the image is {resolved.platform}, not the requested {platform} (it is not in an index)"
        return replace(resolved, notes=(*resolved.notes, note))
    return resolved


def resolve_all(source: ImageSource) -> list[ResolvedImage]:
    """Every image an index lists (nested indexes included), in index order; one for a manifest."""
    return _Resolver(source).resolve_all()[1]


def resolve_index(
    source: ImageSource, limit: int, top: Fetched | None = None
) -> tuple[IndexListing, list[ResolvedImage]]:
    """`resolve_all` with the listing it walked, which tells what was skipped as not an image;
    one walk, so the images are the ones that listing names.  Each manifest once (an index may
    list one twice), and more than `limit` of them is an error before any is resolved."""
    return _Resolver(source, top).resolve_all(limit)


def pin(source: ImageSource) -> Fetched:
    """The manifest or index `source.ref` names now, read once and verified against every digest
    claimed for it: what a promotion checks and copies by digest, whatever the tag does next (a
    resolution given it as `top` reads it no more)."""
    return _Resolver(source)._fetch_top()


def describe_index(source: ImageSource) -> IndexListing:
    """The top manifest or index and its classified entries, without reading any image config
    except for entries that declare no platform."""
    return _Resolver(source).listing()


@dataclass(slots=True)
class _Walk:
    """What one index walk has seen: entries listed so far, and what it already followed."""

    top: Digest
    listed: int = 0
    seen: set[tuple[Digest, Platform | None]] = field(default_factory=set)
    expanded: set[Digest] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Fetched:
    """A manifest or index as read and verified."""

    raw: bytes = field(repr=False)
    digest: Digest
    media_type: str

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.raw))


class _Resolver:
    """One resolution: remembers what it fetched so nothing is read (or verified) twice."""

    def __init__(self, source: ImageSource, top: Fetched | None = None) -> None:
        """`top`: what `pin` read of `source`, so that the resolution is of exactly that."""
        self.source = source
        self.ref = source.ref
        self._manifests: dict[Digest, Fetched] = {} if top is None else {top.digest: top}
        self._configs: dict[Digest, bytes] = {}
        self._top: Fetched | None = top

    # --- public operations -------------------------------------------------------------------

    def listing(self) -> IndexListing:
        top = self._fetch_top()
        if not is_index(top.media_type):
            return IndexListing(self.ref, top.digest, top.media_type, top.raw, None, ())
        index = Index.from_json(top.raw, self._what("index", top.digest), top.media_type)
        entries: list[IndexEntry] = []
        self._walk(index, top.digest, 0, {top.digest}, _Walk(top.digest), entries)
        return IndexListing(self.ref, top.digest, top.media_type, top.raw, index, tuple(entries))

    def resolve(self, wanted: Platform) -> ResolvedImage:
        listing = self.listing()
        if listing.index is None:
            return self._image(listing, None, None)
        for entry in listing.images:
            if entry.platform is not None and wanted.matches(entry.platform):
                return self._image(listing, entry.descriptor, entry.platform)
        self._no_image(listing)
        raise NoMatchingPlatform(
            str(wanted),
            tuple(str(p) for p in listing.platforms),
            self._what("index", listing.digest),
        )

    def resolve_all(self, limit: int | None = None) -> tuple[IndexListing, list[ResolvedImage]]:
        listing = self.listing()
        if listing.index is None:
            return listing, [self._image(listing, None, None)]
        self._no_image(listing)
        entries = listing.images
        if limit is not None:
            # Once per digest and machine: one manifest listed for two platforms is judged for
            # each, since it is served to both.
            first: dict[tuple[Digest, tuple[str, str] | None], IndexEntry] = {}
            for entry in entries:
                machine = entry.platform.machine() if entry.platform is not None else None
                first.setdefault((entry.descriptor.digest, machine), entry)
            entries = tuple(first.values())
            if len(entries) > limit:
                raise InvalidManifest(
                    f"{self._what('index', listing.digest)} lists {len(entries)} images, "
                    f"more than the {limit} judged at once; choose a platform"
                )
        return listing, [self._image(listing, e.descriptor, e.platform) for e in entries]

    # --- index walking -----------------------------------------------------------------------

    def _walk(
        self, index: Index, digest: Digest, depth: int, path: set[Digest], walk: _Walk, out: list[IndexEntry]
    ) -> None:
        walk.listed += len(index.manifests)
        if walk.listed > MAX_DESCRIPTORS:
            raise InvalidManifest(
                f"{self._what('index', walk.top)} and the indexes it nests list more than "
                f"{MAX_DESCRIPTORS} entries"
            )
        for desc in index.manifests:
            if (desc.digest, desc.platform) in walk.seen:
                continue
            walk.seen.add((desc.digest, desc.platform))
            kind, platform = self._classify(desc)
            out.append(IndexEntry(desc, kind, platform, digest, depth))
            if kind is not EntryKind.INDEX:
                continue
            if desc.digest in path:
                # Content addressing makes a true cycle unconstructible with honest digests,
                # but a source that lies must still end in an error, never a hang.
                raise InvalidManifest(f"{self._what('index', digest)} refers to itself via {desc.digest}")
            if depth + 1 > MAX_INDEX_DEPTH:
                raise InvalidManifest(
                    f"{self._what('index', desc.digest)}: index nesting deeper than {MAX_INDEX_DEPTH}"
                )
            if desc.digest in walk.expanded:
                continue
            walk.expanded.add(desc.digest)
            child = self._fetch_child(desc)
            if not is_index(child.media_type):
                listed = self._what("index", digest)
                raise InvalidManifest(
                    f"{listed} lists {desc.digest} as an index, but it is {child.media_type}"
                )
            nested = Index.from_json(child.raw, self._what("index", desc.digest), child.media_type)
            self._walk(nested, desc.digest, depth + 1, path | {desc.digest}, walk, out)

    def _classify(self, desc: Descriptor) -> tuple[EntryKind, Platform | None]:
        if is_index(desc.media_type):
            return EntryKind.INDEX, desc.platform
        if not is_manifest(desc.media_type):
            # image-index.md: an unknown media type MUST NOT be an error; it is just not ours.
            return EntryKind.UNKNOWN, desc.platform
        # An artifactType on the entry is the index's word; a runtime that picks the entry by
        # platform runs whatever manifest it points at, so that manifest decides (below).
        if desc.artifact_type and desc.platform is None:
            return EntryKind.ARTIFACT, desc.platform
        # BuildKit stores provenance/SBOM attestations as manifests with platform unknown/unknown.
        # Its annotation alone makes no attestation: runtimes choose an entry by platform, not by
        # annotations, so one that declares a real platform is the image those machines run.
        if desc.platform is not None and (desc.platform.os, desc.platform.architecture) == (
            "unknown",
            "unknown",
        ):
            return EntryKind.ATTESTATION, desc.platform
        if (
            desc.annotations.get("vnd.docker.reference.type") == "attestation-manifest"
            and desc.platform is None
        ):
            return EntryKind.ATTESTATION, desc.platform
        if desc.platform is not None and not desc.artifact_type:
            return EntryKind.IMAGE, desc.platform
        # No platform in the index: only the manifest and its config can tell (oras#636).
        fetched = self._fetch_child(desc)
        if is_index(fetched.media_type):
            return EntryKind.INDEX, None
        manifest = Manifest.from_json(fetched.raw, self._what("manifest", desc.digest), fetched.media_type)
        if manifest.config.media_type not in CONFIG_TYPES or manifest.artifact_type:
            return EntryKind.ARTIFACT, desc.platform
        if desc.platform is not None:
            return EntryKind.IMAGE, desc.platform
        config = ImageConfig.from_json(self._config(manifest, desc.digest), self._what("config", desc.digest))
        return EntryKind.IMAGE, config.platform

    def _no_image(self, listing: IndexListing) -> None:
        """An index with nothing to run deserves a clearer word than 'no such platform'."""
        if listing.images:
            return
        what = self._what("index", listing.digest)
        if not listing.entries:
            raise InvalidManifest(f"{what} lists no manifests")
        kinds = sorted({e.kind.value for e in listing.entries if e.kind is not EntryKind.INDEX})
        raise UnsupportedMediaType(
            f"{what} holds no container image (only: {', '.join(kinds) or 'empty indexes'})"
        )

    # --- one image ---------------------------------------------------------------------------

    def _image(
        self, listing: IndexListing, desc: Descriptor | None, declared: Platform | None
    ) -> ResolvedImage:
        fetched = self._fetch_top() if desc is None else self._fetch_child(desc)
        what = self._what("manifest", fetched.digest)
        if is_index(fetched.media_type):
            raise InvalidManifest(f"{what} is an index where an image manifest was expected")
        manifest = Manifest.from_json(fetched.raw, what, fetched.media_type)
        notes = self._check_manifest(manifest, what)
        config_raw = self._config(manifest, fetched.digest)
        config = ImageConfig.from_json(config_raw, self._what("config", manifest.config.digest))
        self._check_diff_ids(manifest, config, config_raw, what)
        platform = config.platform if config.architecture and config.os else declared
        if platform is None:
            raise InvalidManifest(f"{self._what('config', manifest.config.digest)} names no os/architecture")
        return ResolvedImage(
            ref=self.ref,
            source=self.source,
            manifest_digest=fetched.digest,
            manifest_raw=fetched.raw,
            manifest=manifest,
            media_type=fetched.media_type,
            config_digest=manifest.config.digest,
            config_raw=config_raw,
            config=config,
            platform=platform,
            index_digest=listing.digest if listing.index is not None else None,
            index=listing.index,
            platforms=listing.platforms,
            layers=tuple(LayerRef(d, i) for d, i in zip(manifest.layers, config.diff_ids, strict=True)),
            notes=notes,
            declared=declared,
        )

    def _check_manifest(self, manifest: Manifest, what: str) -> tuple[str, ...]:
        config_type = manifest.config.media_type
        if config_type not in CONFIG_TYPES:
            kind = f", artifactType {manifest.artifact_type}" if manifest.artifact_type else ""
            raise UnsupportedMediaType(
                f"{what} is an artifact (config type {config_type}{kind}), not a container image"
            )
        unknown = [(i, d) for i, d in enumerate(manifest.layers) if not is_layer(d.media_type)]
        if unknown and len(unknown) == len(manifest.layers) and not is_encrypted(unknown[0][1].media_type):
            # No layer at all is a layer: an artifact under an image config type, not an image.
            i, layer = unknown[0]
            raise UnsupportedMediaType(
                f"{what}: layer {i} ({layer.digest}) has unsupported media type {layer.media_type!r}"
            )
        notes = []
        for i, layer in enumerate(manifest.layers):
            # Only what reads a layer needs its type: inspect shows the image whatever its
            # layers are, and index_layer refuses the layer when a command must read it.
            problem = unreadable_layer(layer.media_type)
            if problem is not None:
                notes.append(f"layer {i} ({layer.digest}) has media type {layer.media_type!r}: {problem}")
            if layer.media_type in _FOREIGN_TYPES:
                where = f" from {', '.join(layer.urls)}" if layer.urls else ""
                notes.append(f"layer {i} ({layer.digest}) is a foreign/non-distributable layer{where}")
        return tuple(notes)

    def _check_diff_ids(self, manifest: Manifest, config: ImageConfig, raw: bytes, what: str) -> None:
        if manifest.config.media_type == MediaType.DOCKER_CONFIG and manifest.layers:
            # Docker configs must carry rootfs.diff_ids (manifest-v2-2.md, image spec v1.2);
            # ImageConfig reads a missing list as empty, so look at the raw JSON.
            rootfs = json.loads(raw).get("rootfs") or {}
            if rootfs.get("diff_ids") is None:
                raise InvalidManifest(f"config {manifest.config.digest} of {what}: missing rootfs.diff_ids")
        if len(manifest.layers) != len(config.diff_ids):
            raise InvalidManifest(
                f"{what} has {len(manifest.layers)} layers but its config "
                f"{manifest.config.digest} lists {len(config.diff_ids)} diff_ids"
            )

    # --- fetching and verifying --------------------------------------------------------------

    def _fetch_top(self) -> Fetched:
        if self._top is None:
            raw = self.source.get_manifest(None)
            expected = [d for d in (raw.digest, self.ref.digest) if d is not None]
            self._top = self._verified(raw, None, expected, raw.media_type)
            self._manifests.setdefault(self._top.digest, self._top)
        return self._top

    def _fetch_child(self, desc: Descriptor) -> Fetched:
        cached = self._manifests.get(desc.digest)
        if cached is not None:
            return cached
        raw = self.source.get_manifest(desc.digest)
        expected = [d for d in (desc.digest, raw.digest) if d is not None]
        fetched = self._verified(raw, desc, expected, raw.media_type or desc.media_type)
        self._manifests[desc.digest] = fetched
        return fetched

    def _verified(
        self, raw: RawManifest, desc: Descriptor | None, expected: list[Digest], content_type: str | None
    ) -> Fetched:
        where = f"manifest {desc.digest} at {raw.where}" if desc else f"manifest at {raw.where}"
        if len(raw.data) > MAX_MANIFEST_BYTES:
            raise InvalidManifest(f"{where} is {len(raw.data)} bytes, over the {MAX_MANIFEST_BYTES} byte cap")
        if desc is not None and len(raw.data) != desc.size:
            raise DigestMismatch(f"{desc.size} bytes", f"{len(raw.data)} bytes", where)
        # Every claim (descriptor, reference, Docker-Content-Digest) against one hash per algorithm.
        claims = ([desc.digest] if desc is not None else []) + list(expected)
        hashed: dict[str, Digest] = {}
        for claim in claims:
            if claim.algorithm not in hashed:
                hashed[claim.algorithm] = Digest.of(raw.data, claim.algorithm)
            actual = hashed[claim.algorithm]
            if actual != claim:
                raise DigestMismatch(str(claim), str(actual), where)
        algorithm = expected[0].algorithm if expected else "sha256"
        digest = hashed.get(algorithm) or Digest.of(raw.data, algorithm)
        media_type = sniff_manifest_type(raw.data, content_type, self._what("manifest", digest))
        return Fetched(raw.data, digest, media_type)

    def _config(self, manifest: Manifest, manifest_digest: Digest) -> bytes:
        desc = manifest.config
        cached = self._configs.get(desc.digest)
        if cached is not None:
            return cached
        what = f"config {desc.digest} of manifest {manifest_digest}"
        if desc.size > MAX_CONFIG_BYTES:
            raise InvalidManifest(f"{what} is {desc.size} bytes, over the {MAX_CONFIG_BYTES} byte cap")
        with self.source.open_blob(desc) as stream:
            # The descriptor's size bounds the read: VerifyingReader refuses a longer stream.
            data = VerifyingReader(stream, desc.digest, what, desc.size).read()
        self._configs[desc.digest] = data
        return data

    def _what(self, kind: str, digest: Digest) -> str:
        return f"{kind} {digest} of {self.ref.display}"
