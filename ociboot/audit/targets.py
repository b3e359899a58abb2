"""STAND-IN for issue 11's targets part, on the run engineer's branch only: the least of its
interface (i11common.md) the audit's end-to-end tests need.  The catalog and tag lists are read
without Link pagination and --newest keeps the last N tags in the registry's order.  The targets
engineer's version replaces this whole file at the merge.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import RegistryError
from ..ref import ImageRef, Transport, parse_ref

if TYPE_CHECKING:
    from ..pipeline import Options

_LIST_CAP = 4 << 20


@dataclass(frozen=True, slots=True)
class Namespace:
    registry: str
    prefix: str  # "" or "team/" style, no trailing slash


@dataclass(frozen=True, slots=True, order=True)
class Target:
    registry: str
    repository: str
    tag: str

    @property
    def reference(self) -> str:
        return f"docker://{self.registry}/{self.repository}:{self.tag}"


@dataclass(frozen=True, slots=True)
class Filters:
    repo: re.Pattern[str] | None = None
    tag: re.Pattern[str] | None = None
    newest: int | None = None

    def keep(self, targets: list[Target]) -> list[Target]:
        kept = [
            t
            for t in targets
            if (self.repo is None or self.repo.search(t.repository))
            and (self.tag is None or self.tag.search(t.tag))
        ]
        if self.newest is None:
            return kept
        by_repo: dict[str, list[Target]] = {}
        for t in kept:
            by_repo.setdefault(t.repository, []).append(t)
        return [t for ts in by_repo.values() for t in ts[-self.newest :]]


def parse_namespace(text: str) -> Namespace:
    host, _, prefix = text.removeprefix("docker://").strip("/").partition("/")
    if not host:
        raise ValueError(f"{text!r}: not docker://HOST[/PREFIX]")
    return Namespace(host, prefix)


def enumerate_targets(
    namespace: Namespace, options: Options, filters: Filters, page_size: int | None = None
) -> list[Target]:
    repositories = _listed(namespace.registry, "", "_catalog", options)["repositories"]
    targets = []
    for repo in repositories:
        if namespace.prefix and not repo.startswith(namespace.prefix + "/"):
            continue
        tags = _listed(namespace.registry, repo, "tags/list", options).get("tags") or []
        targets += [Target(namespace.registry, repo, tag) for tag in tags]
    return filters.keep(targets)


def targets_from_file(path: str, filters: Filters, options: Options) -> list[Target]:
    targets = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            text = line.strip()
            if text and not text.startswith("#"):
                ref = parse_ref(text)
                targets.append(Target(ref.registry, ref.repository, ref.tag or "latest"))
    return filters.keep(targets)


def _listed(registry: str, repo: str, what: str, options: Options) -> dict[str, list[str]]:
    from ..sources.registry.endpoint import Endpoint
    from ..sources.registry.transport import metered, read_capped

    ref = ImageRef(Transport.DOCKER, registry=registry, repository=repo or "catalog")
    scope = f"repository:{repo}:pull" if repo else "registry:catalog:*"
    endpoint = Endpoint(options.registry, ref, options.source, (scope,))
    url = f"{endpoint.scheme}://{endpoint.host}/v2/{repo + '/' if repo else ''}{what}"
    response, transfer = endpoint.request("GET", url, {}, what)
    try:
        with metered(transfer):
            data = json.loads(read_capped(response, _LIST_CAP, what))
    except ValueError as exc:
        raise RegistryError(f"{registry}: {what} is not JSON ({exc})") from None
    finally:
        response.close()
    return data if isinstance(data, dict) else {}
