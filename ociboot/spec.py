"""The OCI/Docker vocabulary: Descriptor, Platform, Manifest, Index, ImageConfig.

Each type has a strict `from_json(raw)` taking the raw bytes (kept by the caller for digest
checks): malformed JSON, wrong field types and missing required fields raise InvalidManifest
naming `what`.  Unknown fields are ignored, as the specs require of consumers.
"""

from __future__ import annotations

import datetime as dt
import json
import platform as _host
from dataclasses import dataclass, field
from typing import Any

from .digest import Digest
from .errors import InvalidManifest, UnsupportedMediaType
from .mediatypes import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    SCHEMA1_TYPES,
    MediaType,
)

#: manifests and configs are read into memory: cap them (containers/image uses 4 MiB).
MAX_MANIFEST_BYTES = 4 << 20
#: Descriptors one document may list (an index's manifests, a manifest's layers, the images of
#: a docker-archive's manifest.json), and all the indexes of one resolution together: real
#: images list tens; without a cap, one index naming a nested index thousands of times at two
#: levels multiplies a few MB into gigabytes of entries.
MAX_DESCRIPTORS = 10_000


def parse_time(text: str | None) -> dt.datetime | None:
    """An RFC 3339 time (a config's `created`, an annotation) in UTC; None when absent or not
    one.  Without an offset the time could be anyone's: None too; and one whose UTC instant is
    outside years 1-9999, which no datetime can hold."""
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    try:
        return when.astimezone(dt.UTC)
    except OverflowError:  # `9999-12-31T23:59:59-01:00`: its UTC instant is past year 9999
        return None


def parse_json(raw: bytes, what: str) -> Any:
    """Any JSON value from at most MAX_MANIFEST_BYTES; InvalidManifest naming `what` if it is not one."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise InvalidManifest(f"{what} is {len(raw)} bytes, over the {MAX_MANIFEST_BYTES} byte cap")
    try:
        return json.loads(raw)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, bad encodings
        raise InvalidManifest(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        # json recurses per nesting level: `[[[[...` far below the size cap exhausts the stack.
        raise InvalidManifest(f"{what} is not valid JSON: nested too deeply") from None


def load_json(raw: bytes, what: str) -> dict[str, Any]:
    value = parse_json(raw, what)
    if not isinstance(value, dict):
        raise InvalidManifest(f"{what} is not a JSON object")
    return value


def _get(
    obj: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str, required: bool = False
) -> Any:
    value = obj.get(key)
    if value is None:
        if required:
            raise InvalidManifest(f"{what}: missing {key!r}")
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidManifest(f"{what}: {key!r} has the wrong type ({type(value).__name__})")
    return value


def descriptor_list(obj: dict[str, Any], key: str, what: str) -> list[Any]:
    """The list under `key` (None reads as empty), at most MAX_DESCRIPTORS long."""
    value = _get(obj, key, list, what) or []
    if len(value) > MAX_DESCRIPTORS:
        raise InvalidManifest(
            f"{what}: {key!r} lists {len(value)} entries, over the cap of {MAX_DESCRIPTORS}"
        )
    return value


def _str_list(obj: dict[str, Any], key: str, what: str) -> tuple[str, ...]:
    value = _get(obj, key, list, what) or []
    if not all(isinstance(v, str) for v in value):
        raise InvalidManifest(f"{what}: {key!r} must be a list of strings")
    return tuple(value)


def _str_map(obj: dict[str, Any], key: str, what: str) -> dict[str, str]:
    value = _get(obj, key, dict, what) or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidManifest(f"{what}: {key!r} must map strings to strings")
    return dict(value)


# --- platforms -------------------------------------------------------------------------------

_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armhf": "arm",
    "armel": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64el": "ppc64le",
}
# containerd's platforms.Normalize: the variant a bare arch implies.
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"invalid platform {text!r}: expected os/arch[/variant]")
        return cls(parts[0].lower(), parts[1].lower(), parts[2].lower() if len(parts) == 3 else None)

    @classmethod
    def host(cls) -> Platform:
        """The platform this process runs on, as skopeo picks it by default."""
        arch = _host.machine().lower()
        arch = _ARCH_ALIASES.get(arch, arch)
        variant = None
        if arch == "arm":
            machine = _host.machine().lower()
            variant = "v6" if machine.startswith("armv6") else "v7"
        return cls("linux", arch, variant)

    @classmethod
    def from_json(cls, obj: Any, what: str) -> Platform:
        if not isinstance(obj, dict):
            raise InvalidManifest(f"{what}: 'platform' is not an object")
        os_ = _get(obj, "os", str, what, required=True)
        arch = _get(obj, "architecture", str, what, required=True)
        return cls(os_, arch, _get(obj, "variant", str, what) or None, _get(obj, "os.version", str, what))

    def normalized(self) -> Platform:
        arch = _ARCH_ALIASES.get(self.architecture, self.architecture)
        variant = self.variant or _DEFAULT_VARIANT.get(arch)
        if arch == "amd64" and variant == "v1":
            variant = None
        return Platform(self.os, arch, variant, self.os_version)

    def machine(self) -> tuple[str, str]:
        """(os, architecture), normalized: what decides whether an image can run at all (the
        variant is left out: configs often omit the one their index entry names)."""
        normal = self.normalized()
        return normal.os, normal.architecture

    def matches(self, candidate: Platform) -> bool:
        """Does `candidate` (from an index) satisfy this wanted platform?

        A wanted platform without a variant accepts the architecture's default variant only,
        mirroring containerd's matcher (linux/arm64 matches arm64/v8, linux/arm matches arm/v7).
        """
        want, have = self.normalized(), candidate.normalized()
        if (want.os, want.architecture) != (have.os, have.architecture):
            return False
        return want.variant == have.variant or (self.variant is None and have.variant is None)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


# --- descriptors -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict, compare=False)
    urls: tuple[str, ...] = ()
    artifact_type: str | None = None

    @classmethod
    def from_json(cls, obj: Any, what: str) -> Descriptor:
        if not isinstance(obj, dict):
            raise InvalidManifest(f"{what}: descriptor is not an object")
        media_type = _get(obj, "mediaType", str, what, required=True)
        digest_text = _get(obj, "digest", str, what, required=True)
        try:
            digest = Digest.parse(digest_text)
        except InvalidManifest as exc:
            raise InvalidManifest(f"{what}: {exc}") from None
        size = _get(obj, "size", int, what, required=True)
        if size < 0:
            raise InvalidManifest(f"{what}: negative size {size}")
        platform = obj.get("platform")
        urls = _str_list(obj, "urls", what)
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            platform=Platform.from_json(platform, what) if platform is not None else None,
            annotations=_str_map(obj, "annotations", what),
            urls=urls,
            artifact_type=_get(obj, "artifactType", str, what),
        )

    @property
    def ref_name(self) -> str | None:
        return self.annotations.get("org.opencontainers.image.ref.name")


def _check_schema(obj: dict[str, Any], what: str) -> None:
    declared = obj.get("schemaVersion")
    # JSON `true` == 1 in Python; it is not a schema version.
    version = None if isinstance(declared, bool) else declared
    media_type = _get(obj, "mediaType", str, what)  # a list here is not hashable: type first
    if version == 1 or media_type in SCHEMA1_TYPES:
        raise UnsupportedMediaType(
            f"{what} is a Docker schema1 manifest, which is deprecated and not supported; "
            "re-push the image with a current client"
        )
    if version != 2:
        raise InvalidManifest(f"{what}: schemaVersion must be 2, got {declared!r}")


@dataclass(frozen=True, slots=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict, compare=False)
    subject: Descriptor | None = None
    artifact_type: str | None = None

    @classmethod
    def from_json(cls, raw: bytes, what: str = "manifest", media_type: str | None = None) -> Manifest:
        obj = load_json(raw, what)
        declared = _get(obj, "mediaType", str, what)
        if declared and declared not in MANIFEST_TYPES | INDEX_TYPES | SCHEMA1_TYPES:
            # e.g. the withdrawn OCI artifact manifest (image-spec 1.1-rc), which has no schemaVersion
            raise UnsupportedMediaType(f"{what} has unsupported media type {declared!r}")
        _check_schema(obj, what)
        mt = declared or media_type or MediaType.OCI_MANIFEST
        if mt in INDEX_TYPES or "manifests" in obj:
            raise InvalidManifest(f"{what} is an index, not an image manifest")
        if mt not in MANIFEST_TYPES:
            raise UnsupportedMediaType(f"{what} has unsupported media type {mt!r}")
        _get(obj, "layers", list, what, required=True)
        layers = descriptor_list(obj, "layers", what)
        subject = obj.get("subject")
        return cls(
            media_type=mt,
            config=Descriptor.from_json(_get(obj, "config", dict, what, required=True), f"{what} config"),
            layers=tuple(Descriptor.from_json(d, f"{what} layer {i}") for i, d in enumerate(layers)),
            annotations=_str_map(obj, "annotations", what),
            subject=Descriptor.from_json(subject, f"{what} subject") if subject is not None else None,
            artifact_type=_get(obj, "artifactType", str, what),
        )


@dataclass(frozen=True, slots=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls, raw: bytes, what: str = "index", media_type: str | None = None) -> Index:
        obj = load_json(raw, what)
        _check_schema(obj, what)
        declared = _get(obj, "mediaType", str, what)
        mt = declared or media_type or MediaType.OCI_INDEX
        if mt not in INDEX_TYPES:
            raise InvalidManifest(f"{what} has media type {mt!r}, not an index")
        # Docker 25 `docker save image@digest` wrote "manifests": null (moby/moby#47210).
        entries = descriptor_list(obj, "manifests", what)
        return cls(
            media_type=mt,
            manifests=tuple(Descriptor.from_json(d, f"{what} entry {i}") for i, d in enumerate(entries)),
            annotations=_str_map(obj, "annotations", what),
        )


def sniff_manifest_type(raw: bytes, content_type: str | None, what: str) -> str:
    """The media type of a manifest body: its own `mediaType`, else the transport's, else shape."""
    obj = load_json(raw, what)
    declared = obj.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    if obj.get("schemaVersion") == 1 and not isinstance(obj.get("schemaVersion"), bool):
        return MediaType.DOCKER_SCHEMA1
    transport = (content_type or "").split(";")[0].strip()
    # Only a manifest type is evidence: registries and layouts also say application/json or
    # application/octet-stream (or a descriptor type, as in ggcr's test_index) for manifests.
    if transport in MANIFEST_TYPES | INDEX_TYPES | SCHEMA1_TYPES:
        return transport
    if "manifests" in obj:
        return MediaType.OCI_INDEX
    if "config" in obj or "layers" in obj:
        return MediaType.OCI_MANIFEST
    raise InvalidManifest(f"{what}: cannot tell whether this is a manifest or an index")


# --- image config ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class History:
    created_by: str | None
    empty_layer: bool
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class ImageConfig:
    architecture: str
    os: str
    variant: str | None
    diff_ids: tuple[Digest, ...]
    created: str | None = None
    labels: dict[str, str] = field(default_factory=dict, compare=False)
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: str | None = None
    working_dir: str | None = None
    history: tuple[History, ...] = ()

    @classmethod
    def from_json(cls, raw: bytes, what: str = "config") -> ImageConfig:
        obj = load_json(raw, what)
        rootfs = _get(obj, "rootfs", dict, what, required=True)
        if rootfs.get("type") != "layers":
            raise InvalidManifest(f"{what}: rootfs.type must be 'layers', got {rootfs.get('type')!r}")
        diff_ids = []
        for i, text in enumerate(descriptor_list(rootfs, "diff_ids", f"{what} rootfs")):
            if not isinstance(text, str):
                raise InvalidManifest(f"{what}: diff_ids[{i}] is not a string")
            try:
                diff_ids.append(Digest.parse(text))
            except InvalidManifest as exc:
                raise InvalidManifest(f"{what}: diff_ids[{i}]: {exc}") from None
        conf = _get(obj, "config", dict, what) or {}
        history = []
        for i, h in enumerate(_get(obj, "history", list, what) or []):
            if not isinstance(h, dict):
                raise InvalidManifest(f"{what}: history[{i}] is not an object")
            entry = f"{what} history[{i}]"
            history.append(
                History(
                    _get(h, "created_by", str, entry),
                    _get(h, "empty_layer", bool, entry) or False,
                    _get(h, "comment", str, entry),
                )
            )
        return cls(
            architecture=_get(obj, "architecture", str, what) or "",
            os=_get(obj, "os", str, what) or "",
            variant=_get(obj, "variant", str, what),
            diff_ids=tuple(diff_ids),
            created=_get(obj, "created", str, what),
            labels=_str_map(conf, "Labels", f"{what} config"),
            env=_str_list(conf, "Env", f"{what} config"),
            entrypoint=_str_list(conf, "Entrypoint", f"{what} config"),
            cmd=_str_list(conf, "Cmd", f"{what} config"),
            user=_get(conf, "User", str, f"{what} config") or None,
            working_dir=_get(conf, "WorkingDir", str, f"{what} config") or None,
            history=tuple(history),
        )

    @property
    def platform(self) -> Platform:
        return Platform(self.os, self.architecture, self.variant)
