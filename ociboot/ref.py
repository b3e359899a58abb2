"""Image references in the containers-transports grammar (containers-transports(5)); no I/O.

    docker://HOST/REPO[:TAG][@DIGEST]      a bare name means docker:// with Docker Hub rules
    oci:DIR[:REF | :@INDEX | :@DIGEST]
    oci-archive:FILE[:REF | :@INDEX | :@DIGEST]
    docker-archive:FILE[:NAME[:TAG] | :@INDEX | :@DIGEST]

Docker names follow distribution/reference: the first component is a registry when it holds a
`.` or `:` or is `localhost`; otherwise the registry is `docker.io` and one-component names get
`library/`; `latest` is the tag when neither tag nor digest is given.  skopeo applies the same
normalisation after `docker://`, so `docker://alpine` is `docker.io/library/alpine:latest`.

File transports split PATH from the rest at the FIRST `:`, as containers/image does on
non-Windows hosts (oci/internal `splitPathAndImageNonWindows`): a path cannot hold a `:`, while the
OCI `ref.name` after it may (annotations.md allows `:` and `@` in ref names).  `:@N` selects the
N-th manifest (containers/image `@source-index`); `:@sha256:...` pins the manifest by digest
(what `ImageRef.with_digest` produces; a ref name never starts with `@`, so nothing is ambiguous).
A docker-archive NAME:TAG is validated as a Docker name but kept as given: the source matches it
after normalisation.

Invariant: parse_ref(str(r)) == r.  Sniffing an existing path lives in sources/ (it is I/O).

A reference has no `user:password@` part, but users paste URLs that do: `redact` masks it in
every message that quotes the text (and parse_ref refuses it without quoting the secret).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum

from .digest import Digest
from .errors import InvalidManifest, InvalidReference

DOCKER_HUB = "docker.io"
#: Docker Hub's canonical name differs from the host its API answers on.
DOCKER_HUB_API = "registry-1.docker.io"
#: Names users write for Docker Hub that distribution/reference folds into `docker.io`.
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DEFAULT_TAG = "latest"
#: distribution/reference NameTotalLengthMax.
_MAX_NAME = 255

# distribution/reference grammar (reference.go, regexp.go).
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?")
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
# OCI annotations.md, org.opencontainers.image.ref.name.
_REF_NAME = re.compile(
    r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*"
)
_INDEX = re.compile(r"[0-9]+")
# OCI image-spec descriptor.md digest grammar: what may follow a digest's `@`.
_DIGEST_FORM = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# Transports of containers/image that ociboot does not read: named so that `dir:x` is refused
# clearly instead of being taken for a Docker Hub image `dir` with tag `x`.
_OTHER_TRANSPORTS = frozenset({"dir", "docker-daemon", "containers-storage", "ostree", "sif", "tarball"})


class Transport(StrEnum):
    DOCKER = "docker"
    OCI = "oci"
    OCI_ARCHIVE = "oci-archive"
    DOCKER_ARCHIVE = "docker-archive"


@dataclass(frozen=True, slots=True)
class ImageRef:
    transport: Transport
    # docker://
    registry: str = ""
    repository: str = ""
    tag: str | None = None
    digest: Digest | None = None
    # oci:, oci-archive:, docker-archive:
    path: str = ""
    name: str | None = None  # oci ref.name, or docker-archive "name:tag"
    index: int | None = None  # docker-archive @N

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def is_remote(self) -> bool:
        return self.transport is Transport.DOCKER

    def with_digest(self, digest: Digest) -> ImageRef:
        """The same image pinned by manifest digest (a tag or name would only re-resolve it)."""
        if self.transport is Transport.DOCKER:
            return replace(self, tag=None, digest=digest)
        return replace(self, name=None, index=None, digest=digest)

    @property
    def display(self) -> str:
        """The short form for messages: a Docker name without `docker://`, else the full form."""
        if self.transport is Transport.DOCKER:
            return self._docker_name()
        return str(self)

    def _docker_name(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def __str__(self) -> str:
        if self.transport is Transport.DOCKER:
            return f"docker://{self._docker_name()}"
        text = f"{self.transport}:{self.path}"
        if self.digest is not None:
            return f"{text}:@{self.digest}"
        if self.index is not None:
            return f"{text}:@{self.index}"
        if self.name is not None:
            return f"{text}:{self.name}"
        return text


def valid_repository(name: str) -> bool:
    """`name` is a repository path in the distribution/reference grammar (lowercase components
    joined by `/`, at most the name length limit): what a registry's catalog may list."""
    return len(name) <= _MAX_NAME and all(_PATH_COMPONENT.fullmatch(c) for c in name.split("/"))


def valid_tag(tag: str) -> bool:
    """`tag` is a tag in the distribution/reference grammar: what a registry's tag list may hold."""
    return bool(_TAG.fullmatch(tag))


def redact(text: str) -> str:
    """`text` with a URL-style userinfo masked: `docker://u:p@host/r` -> `docker://***@host/r`.

    In a reference `@` only introduces a digest.  Any other `@` that is preceded by `user:pass`
    or followed by `host/...` ends a userinfo; the last such one is where the secret ends.
    File transports are left alone: a path may hold an `@`.
    """
    if text.startswith(tuple(f"{t.value}:" for t in Transport if t is not Transport.DOCKER)):
        return text
    scheme = _URL_SCHEME.match(text)
    start = scheme.end() if scheme else 0
    colon, slash = text.find(":", start), text.rfind("/")
    end = -1
    at = text.find("@", start)
    while at >= 0:  # linear: a digest match stops at the next `@`
        if (0 <= colon < at or slash > at) and not _DIGEST_FORM.fullmatch(text, at + 1):
            end = at
        at = text.find("@", at + 1)
    return text if end < 0 else f"{text[:start]}***{text[end:]}"


def parse_ref(text: str) -> ImageRef:
    """Parse a reference the way skopeo users write it; InvalidReference names the bad part."""
    if not isinstance(text, str):
        raise InvalidReference(f"invalid reference {text!r}: not a string")
    if not text.strip():
        raise _bad(text, "empty")
    if redact(text) != text:
        raise _bad(
            text,
            "a reference has no user:password@ part (credentials: --username with --password-stdin, "
            "--creds or an authfile)",
        )
    prefix, colon, rest = text.partition(":")
    if colon:
        for transport in Transport:
            if prefix == transport.value:
                return _parse_transport(text, transport, rest)
        if prefix in _OTHER_TRANSPORTS:
            raise _bad(text, f'unsupported transport "{prefix}" (supported: {_supported()})')
        if rest.startswith("//"):
            raise _bad(text, f'unknown transport "{prefix}" (supported: {_supported()})')
    return _parse_docker(text, text)


def _parse_transport(text: str, transport: Transport, rest: str) -> ImageRef:
    if transport is Transport.DOCKER:
        if not rest.startswith("//"):
            raise _bad(text, 'the docker transport needs "//" after "docker:" (docker://NAME)')
        return _parse_docker(text, rest[2:])
    path, colon, detail = rest.partition(":")
    if not path:
        raise _bad(text, "empty path")
    ref = ImageRef(transport, path=path)
    if not colon:
        return ref
    if not detail:
        raise _bad(text, f'empty image name after "{transport}:{path}:"')
    if detail.startswith("@"):
        return _parse_selector(text, ref, detail[1:])
    if transport is Transport.DOCKER_ARCHIVE:
        named = _parse_docker(text, detail, what="name")
        if named.digest is not None:
            raise _bad(text, f'docker-archive name "{detail}" must be NAME[:TAG], not a digest')
        return replace(ref, name=detail)
    if not _REF_NAME.fullmatch(detail):
        raise _bad(text, f'image name "{detail}" is not a valid OCI ref.name')
    return replace(ref, name=detail)


def _parse_selector(text: str, ref: ImageRef, selector: str) -> ImageRef:
    if ":" in selector:
        return replace(ref, digest=_digest(text, selector))
    if not _INDEX.fullmatch(selector):
        raise _bad(text, f'image index "@{selector}" must be a non-negative integer')
    return replace(ref, index=int(selector))


def _parse_docker(text: str, name: str, what: str = "reference") -> ImageRef:
    if not name:
        raise _bad(text, f"empty {what}")
    remainder, at, digest_text = name.partition("@")
    digest = _digest(text, digest_text) if at else None
    tag = None
    colon = remainder.rfind(":")
    if colon > remainder.rfind("/"):
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise _bad(text, f'tag "{tag}" is invalid (1-128 of [A-Za-z0-9_.-], not starting with . or -)')
    registry, repository = _split_domain(text, remainder)
    if len(f"{registry}/{repository}") > _MAX_NAME:
        raise _bad(text, f"name is longer than {_MAX_NAME} characters")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageRef(Transport.DOCKER, registry=registry, repository=repository, tag=tag, digest=digest)


def names_host(name: str) -> bool:
    """Does `name` (a reference without its transport) begin with a registry host, as the
    distribution reference grammar decides: a first component with a dot or a port, or
    localhost; otherwise it is a Docker Hub repository."""
    first, slash, _ = name.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def _split_domain(text: str, name: str) -> tuple[str, str]:
    first, _, path = name.partition("/")
    if names_host(name):
        if not _DOMAIN.fullmatch(first):
            raise _bad(text, f'registry "{first}" is not a valid host[:port]')
        registry = DOCKER_HUB if first.lower() in _HUB_ALIASES else first
    else:
        registry, path = DOCKER_HUB, name
    if not path:
        raise _bad(text, "empty repository")
    if path.lower() != path:
        raise _bad(text, f'repository "{path}" must be lowercase')
    for component in path.split("/"):
        if not _PATH_COMPONENT.fullmatch(component):
            raise _bad(text, f'repository "{path}" has an invalid component "{component}"')
    if registry == DOCKER_HUB and "/" not in path:
        # Official images live under library/ (distribution/reference normalize.go).
        path = f"library/{path}"
    return registry, path


def _digest(text: str, digest_text: str) -> Digest:
    try:
        return Digest.parse(digest_text)
    except InvalidManifest as exc:
        raise _bad(text, f'digest "{digest_text}" is invalid ({exc})') from None


def _supported() -> str:
    return ", ".join(t.value for t in Transport)


def _bad(text: str, why: str) -> InvalidReference:
    return InvalidReference(f'invalid reference "{redact(text)}": {why}')
