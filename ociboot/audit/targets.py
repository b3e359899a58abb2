"""What an audit audits: the tags of a registry namespace, or the images a file lists.

    parse_namespace("docker://HOST[/PREFIX]")   the repositories equal to PREFIX or under PREFIX/
                                                (every repository without a PREFIX)
    enumerate_targets(namespace, ...)           the catalog and each repository's tags, filtered,
                                                and the repositories whose tags were refused
    targets_from_file(path, ...)                one registry image a line (`check --from`'s format)

Filters: `repo` and `tag` are regular expressions searched for (`re.search`, not a full match)
in the repository name and in the tag; `newest` keeps each repository's N newest tags by the
image's `created` (its config's; for an index, the newest of its images'), read from each
candidate tag's verified manifest and config.  A tag whose time is unknown (none, not RFC 3339,
or the image could not be read) sorts oldest; equal times fall back to the tag, the greater
name counting as newer.  So `newest` never drops a tag for being unreadable unless N others are
dated: the audit then reads it no more.

A line of a --from FILE may pin an image by digest (`host/repo@sha256:...`, or
`host/repo:tag@sha256:...`): its Target's `tag` is then what follows the repository without
the leading `:` (`sha256:...`, `tag@sha256:...`), which no real tag can be (a tag holds no `:` or
`@`), and its `reference` is pinned to that digest.

A repository whose tag list the registry refuses (401 or 403 for its scope, an HTTP error, a
not-found code on a repository the catalog just listed) or sends unreadable (over a cap, a name
outside the grammar, a link elsewhere) is `Unlisted`, and the listing goes on: one such
repository must not hide the others.  A registry out of reach (no answer, TLS, the deadline, a
"try later" status past the retries) still ends the listing: every repository would fail alike,
each after its own retries.  Only a plain 404 on a tag list is a repository with no tags.

Targets come sorted by (registry, repository, tag), each once.  Bounds: MAX_TARGETS in all, the
listing bounds of sources.registry.catalog, READ_JOBS tags read at once for `newest`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ..errors import (
    AuthenticationError,
    ImageNotFound,
    InvalidListing,
    InvalidReference,
    InvalidTargetList,
    RegistryError,
    SourceError,
)
from ..ref import Transport, names_host, parse_ref, redact

if TYPE_CHECKING:
    from ..pipeline import Options

A = TypeVar("A")
B = TypeVar("B")

#: Tags one audit may name, listed or from a file: each is a record kept until the audit ends.
MAX_TARGETS = 200_000
#: Tag lists, and the manifests and configs `newest` reads, asked for at once (small
#: documents; one connection each).
READ_JOBS = 8


@dataclass(frozen=True, slots=True)
class Namespace:
    registry: str
    prefix: str  # "" for the whole registry

    def holds(self, repository: str) -> bool:
        return not self.prefix or repository == self.prefix or repository.startswith(f"{self.prefix}/")

    def __str__(self) -> str:
        return f"docker://{self.registry}" + (f"/{self.prefix}" if self.prefix else "")


@dataclass(frozen=True, slots=True, order=True)
class Target:
    """One tag to audit.  `tag` is a tag, or for an image a file pins by digest, the digest
    (`sha256:...`) or `tag@digest` (see the module's docstring)."""

    registry: str
    repository: str
    tag: str

    @property
    def reference(self) -> str:
        """`docker://REGISTRY/REPOSITORY:TAG`, or pinned: `...@DIGEST`, `...:TAG@DIGEST`."""
        pinned = ":" in self.tag and "@" not in self.tag  # a bare digest: no tag to name
        return f"docker://{self.registry}/{self.repository}{'@' if pinned else ':'}{self.tag}"


@dataclass(frozen=True, slots=True, order=True)
class Unlisted:
    """A repository of the namespace whose tags could not be listed, and why."""

    registry: str
    repository: str
    error: str


@dataclass(frozen=True, slots=True)
class Enumerated:
    targets: list[Target]
    unlisted: list[Unlisted]


@dataclass(frozen=True, slots=True)
class Filters:
    repo: re.Pattern[str] | None = None
    tag: re.Pattern[str] | None = None
    newest: int | None = None

    def __post_init__(self) -> None:
        if self.newest is not None and self.newest < 1:
            raise ValueError(f"newest {self.newest}: keep at least one tag")

    def wants_repository(self, repository: str) -> bool:
        return self.repo is None or self.repo.search(repository) is not None

    def wants_tag(self, tag: str) -> bool:
        return self.tag is None or self.tag.search(tag) is not None


def parse_namespace(text: str) -> Namespace:
    """`docker://HOST[/PREFIX]` (the host must be written: Docker Hub lists no catalog);
    InvalidReference naming the text otherwise."""
    bare = text.removeprefix("docker://").rstrip("/")
    probe = f"{bare}/name"
    try:
        ref = parse_ref(f"docker://{probe}")
    except InvalidReference:
        ref = None
    if not text.startswith("docker://") or ref is None or f"{ref.registry}/{ref.repository}" != probe:
        raise InvalidReference(
            f'invalid namespace "{redact(text)}": expected docker://HOST[/PREFIX] (a registry host '
            "and an optional repository prefix, no tag or digest)"
        )
    return Namespace(ref.registry, ref.repository.removesuffix("name").rstrip("/"))


def enumerate_targets(
    namespace: Namespace, options: Options, filters: Filters, page_size: int | None = None
) -> Enumerated:
    """Every tag of every repository of `namespace` the filters keep, sorted, and the
    repositories whose tag lists were refused.  `page_size`: the `n` asked of each listing
    (None: the registry's own page size).  CatalogClosed when the registry lists no
    repositories to us; a SourceError for a catalog that cannot be read or a registry out of
    reach."""
    from ..sources.registry import catalog

    client, source = options.registry, options.source
    repositories = [
        r
        for r in catalog.repositories(client, namespace.registry, source, page_size)
        if namespace.holds(r) and filters.wants_repository(r)
    ]

    def listed(repository: str) -> list[Target] | Unlisted:
        try:
            tags = catalog.tags(client, namespace.registry, repository, source, page_size)
        except SourceError as exc:
            if not _refused(exc):
                raise
            return Unlisted(namespace.registry, repository, str(exc))
        return [Target(namespace.registry, repository, t) for t in tags if filters.wants_tag(t)]

    targets: list[Target] = []
    unlisted: list[Unlisted] = []
    for found in _in_order(listed, repositories):
        if isinstance(found, Unlisted):
            unlisted.append(found)
            continue
        _count(len(targets) + len(found), str(namespace))
        targets += found
    return Enumerated(_newest(targets, filters.newest, options), unlisted)


def _refused(exc: SourceError) -> bool:
    """The registry answered for this repository's tag list, and the answer was no (or could
    not be read): the repository's own failure, not the registry's.  A status that says "try
    later" (429, 502, 503, 504) after the retries is the registry's: every repository would
    wait out the same retries."""
    if isinstance(exc, AuthenticationError | InvalidListing | ImageNotFound):
        return True
    return isinstance(exc, RegistryError) and exc.status is not None and not exc.temporary


def targets_from_file(path: str, filters: Filters, options: Options) -> list[Target]:
    """The registry images a file lists, one a line (`docker://HOST/REPO:TAG` or
    `HOST/REPO:TAG`, by digest too), that the filters keep, sorted, each once.
    InvalidTargetList (a usage error) names the line that is not a registry image."""
    from ..reflist import reference_lines

    try:
        lines = reference_lines(path)
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8, or over a bound of the list
        raise InvalidTargetList(f"--from {path}: {exc}") from None
    targets: set[Target] = set()
    for number, text in lines:
        target = _target(text, f"--from {path} line {number}")
        if filters.wants_repository(target.repository) and filters.wants_tag(target.tag):
            targets.add(target)
            _count(len(targets), f"--from {path}")
    return _newest(sorted(targets), filters.newest, options)


def _target(text: str, where: str) -> Target:
    try:
        ref = parse_ref(text)
    except InvalidReference as exc:
        raise InvalidTargetList(f"{where}: {exc}") from None
    if ref.transport is not Transport.DOCKER:
        raise InvalidTargetList(f'{where}: "{redact(text)}" is not a registry image (docker://HOST/REPO:TAG)')
    if not names_host(text.removeprefix("docker://")):
        # A bare `alpine` would be Docker Hub's: an audit names the registry it audits.
        raise InvalidTargetList(f'{where}: "{redact(text)}" names no registry host (HOST/REPO:TAG)')
    if ref.digest is None:
        return Target(ref.registry, ref.repository, ref.tag or "")
    tag = f"{ref.tag}@{ref.digest}" if ref.tag else str(ref.digest)
    return Target(ref.registry, ref.repository, tag)


def _in_order(work: Callable[[A], B], items: list[A]) -> Iterator[B]:
    """`work` of each item, READ_JOBS at once, yielded in order.  At most READ_JOBS results wait
    to be taken (Executor.map would run ahead through every item and keep all they hold), and
    once one fails nothing more is started."""
    pool = ThreadPoolExecutor(max_workers=READ_JOBS, thread_name_prefix="listing")
    pending: deque[Future[B]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) >= READ_JOBS:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _count(count: int, where: str) -> None:
    if count > MAX_TARGETS:
        raise InvalidTargetList(f"{where}: over {MAX_TARGETS} tags to audit; narrow it with --repo or --tag")


# --- newest ------------------------------------------------------------------------------------


def _newest(targets: list[Target], newest: int | None, options: Options) -> list[Target]:
    """The `newest` newest targets of each repository (all of them when there are no more)."""
    if newest is None:
        return targets
    by_repository: dict[tuple[str, str], list[Target]] = {}
    for target in targets:
        by_repository.setdefault((target.registry, target.repository), []).append(target)
    crowded = [t for group in by_repository.values() if len(group) > newest for t in group]
    times = _created_times(crowded, options)
    kept: list[Target] = []
    for group in by_repository.values():
        if len(group) > newest:
            group = sorted(group, key=lambda t: _age_key(times[t], t), reverse=True)[:newest]
        kept += group
    return sorted(kept)


_OLDEST = dt.datetime.min.replace(tzinfo=dt.UTC)


def _age_key(created: dt.datetime | None, target: Target) -> tuple[bool, dt.datetime, str]:
    return created is not None, created or _OLDEST, target.tag


def _created_times(targets: list[Target], options: Options) -> dict[Target, dt.datetime | None]:
    return dict(zip(targets, _in_order(lambda t: _created(t, options), targets), strict=True))


def _created(target: Target, options: Options) -> dt.datetime | None:
    """When the image the tag names was created: its config's `created`, for an index the
    newest of its images'; None when unknown (or unreadable: it sorts oldest)."""
    from ..image import pin, resolve_index
    from ..pipeline import MAX_INDEX_IMAGES, opened
    from ..spec import parse_time

    try:
        with opened(target.reference, options) as source:
            top = pin(source)
            _, images = resolve_index(source, MAX_INDEX_IMAGES, top)
    except Exception:  # a bug or MemoryError on a hostile image too: unknown, as check_reference would
        return None
    times = [t for image in images if (t := parse_time(image.config.created)) is not None]
    return max(times, default=None)
