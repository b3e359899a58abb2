"""Image sources: one medium each, all returning *raw, unverified* bytes.

Verification happens once, above the sources (image.py for manifests and configs, layer.py for
layer blobs).  A source only finds bytes: the manifest or index a reference names, any manifest
by digest, and any blob as a stream.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Protocol

from ..digest import Digest
from ..ref import ImageRef, Transport
from ..spec import Descriptor

if TYPE_CHECKING:
    from .registry.client import RegistryClient


@dataclass(frozen=True, slots=True)
class RawManifest:
    """A manifest or index body exactly as stored.

    `media_type` is what the medium says it is (Content-Type, the index descriptor); `digest`
    is the digest it is *claimed* to have (by the reference, an index entry or
    Docker-Content-Digest) and None when nothing names one; image.py verifies it.
    """

    data: bytes
    media_type: str | None
    digest: Digest | None
    where: str


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """Transport settings a user can give (skopeo's flags of the same names).

    The time bounds of one image live here and only here (docs/security.md): `timeout` is the
    wall-clock deadline for reading all of it, counted from opening its source: its network
    reads (manifests, config, blobs, tokens, retries and resumes) and, whatever the medium, the
    streaming of its layers; a transfer that moves fewer than `stall_bytes` in `stall_seconds`
    of waiting has stalled.
    """

    creds: str | None = field(default=None, repr=False)  # USER[:PASS]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    authfile: str | None = None
    tls_verify: bool = True
    cert_dir: str | None = None
    plain_http: bool | None = None  # None: plain HTTP only for loopback hosts
    # Ten minutes moves a multi-GiB image on an ordinary link; a stall is caught long before.
    timeout: float = 600.0
    stall_seconds: float = 30.0
    stall_bytes: int = 1024
    retries: int = 3


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds from `90s`, `2m`, `1h`, `500ms` or a bare number of seconds; always positive."""
    match = _DURATION.fullmatch(text.strip())
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"] if match else 0.0
    if seconds <= 0:
        raise ValueError(f"not a duration: {text!r} (expected e.g. 90s, 2m, 1h)")
    return seconds


def deadline_of(options: SourceOptions) -> float:
    """The `time.monotonic()` by which an image opened now must have been read (`timeout`)."""
    return time.monotonic() + options.timeout


class ImageSource(Protocol):
    @property
    def ref(self) -> ImageRef: ...

    @property
    def deadline(self) -> float:
        """`time.monotonic()` by which everything of this image must be read: the registry's
        transfers and, for every medium, the streaming of its layers (a small blob can inflate
        for hours), from when the source was opened (SourceOptions.timeout)."""
        ...

    def get_manifest(self, digest: Digest | None = None) -> RawManifest:
        """The manifest or index the reference names (digest=None), or the one with `digest`."""
        ...

    def open_blob(self, descriptor: Descriptor) -> IO[bytes]:
        """A stream of the blob's raw bytes (a context manager; close it)."""
        ...

    def close(self) -> None: ...


SourceFactory = Callable[[ImageRef, SourceOptions], ImageSource]


def _factories() -> dict[Transport, SourceFactory]:
    # Imported lazily so that reading a local archive never imports the HTTP stack.
    from . import docker_archive, layout

    return {
        Transport.OCI: layout.open_layout,
        Transport.OCI_ARCHIVE: layout.open_layout,
        Transport.DOCKER_ARCHIVE: docker_archive.open_docker_archive,
    }


def open_source(
    ref: ImageRef, options: SourceOptions | None = None, registry: RegistryClient | None = None
) -> ImageSource:
    """The source `ref` names.  `registry` is the run's shared registry state (tokens,
    connections); without it a registry source has its own."""
    options = options or SourceOptions()
    if ref.transport is Transport.DOCKER:
        from .registry.source import RegistrySource

        return RegistrySource(ref, options, registry)
    return _factories()[ref.transport](ref, options)
