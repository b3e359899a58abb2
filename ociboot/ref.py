"""Image references in the containers-transports grammar (containers-transports(5)); no I/O.

    docker://HOST/REPO[:TAG][@DIGEST]      a bare name means docker:// with Docker Hub rules
    oci:DIR[:REF]
    oci-archive:FILE[:REF]
    docker-archive:FILE[:NAME:TAG | :@INDEX]

Invariant: parse_ref(str(r)) == r.  Sniffing an existing path lives in sources/ (it is I/O).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .digest import Digest
from .errors import InvalidReference

DOCKER_HUB = "docker.io"
#: Docker Hub's canonical name differs from the host its API answers on.
DOCKER_HUB_API = "registry-1.docker.io"


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

    def __str__(self) -> str:
        raise NotImplementedError  # filled in with parse_ref


def parse_ref(text: str) -> ImageRef:
    raise InvalidReference(f"not implemented: {text!r}")
