"""Promotion lists: the images a check passed, by digest, as the copiers people already run read them.

    skopeo-sync  `skopeo sync --all --src yaml --dest docker FILE DEST`   (skopeo-sync(1), YAML source)
    regsync      `regsync once -c FILE`            (regclient docs/regsync.md, configuration file)
    kpromo       a thin manifest's images.yaml     (promo-tools docs/image-promotion.md)

Every entry names the digest that was judged (`Checked.subject`), never the tag that was checked:
the tag may have moved since, and a copier that re-resolves it would copy what nobody checked.
Tags travel beside the digest where the format can say "this digest, as this tag" (regsync's
target, kpromo's dmap); skopeo sync (1.9, Debian 12) copies a digest to the same digest and
cannot tag it, so its file names the tags in comments only.

Names: regsync targets and kpromo names are a repository's path relative to the list's source
prefix, the directory every registry image of the list shares (`staging/os` and
`staging/tools/x` are `os` and `tools/x`), computed from all the images given, passed or not, so
a name does not depend on which images passed.  skopeo sync names its destinations itself (the
repository's last component, or the whole path with --scoped).

The files are YAML written as JSON scalars (YAML 1.2 is a superset of JSON), and every name,
tag and digest reaches them through `_entry`, which accepts only what parses back to itself in
the distribution/reference grammar: no quote, newline, `#` or regsync template `{{` can get in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from .digest import Digest
from .errors import InvalidReference, OcibootError
from .pipeline import Checked, registry_ref
from .ref import ImageRef, Transport, parse_ref
from .report import exit_code
from .sources import SourceOptions
from .sources.registry.endpoint import uses_plain_http


class ListFormat(StrEnum):
    SKOPEO_SYNC = "skopeo-sync"
    REGSYNC = "regsync"
    KPROMO = "kpromo"


_NO_TARGET = "a regsync list needs --promotion-target REGISTRY[/PREFIX]: where regsync copies to"


class ListError(ValueError):
    """What the user asked for cannot be a promotion list (a usage error: exit code 2)."""


def parse_request(text: str) -> tuple[ListFormat, str]:
    """`FORMAT=FILE` of --promotion-list."""
    name, equals, path = text.partition("=")
    if not equals or not path:
        raise ListError(f"{text!r} is not FORMAT=FILE")
    try:
        return ListFormat(name), path
    except ValueError:
        known = ", ".join(f.value for f in ListFormat)
        raise ListError(f"unknown promotion list format {name!r} (one of {known})") from None


@dataclass(frozen=True, slots=True)
class Target:
    """Where a regsync list copies to: REGISTRY[/PREFIX]."""

    registry: str
    prefix: str

    @classmethod
    def parse(cls, text: str) -> Target:
        probe = f"{text.rstrip('/')}/name"
        try:
            ref = parse_ref(f"docker://{probe}")
        except InvalidReference:
            raise ListError(f"{text!r} is not REGISTRY[/PREFIX]") from None
        if f"{ref.registry}/{ref.repository}" != probe:
            # Docker Hub rules would have put a bare `prod` under docker.io: the host must be said.
            raise ListError(f"{text!r} is not REGISTRY[/PREFIX] (name the registry host: HOST[:PORT]/PREFIX)")
        return cls(ref.registry, ref.repository.rpartition("/")[0])

    def repository(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name


@dataclass(frozen=True, slots=True)
class Plan:
    """What a list will hold, known before any image is read: the registry images among the
    references (by input position) and the source prefix their names are relative to."""

    images: dict[int, ImageRef]
    left_out: tuple[str, ...]  # references that are not registry images
    prefix: str

    @classmethod
    def of(cls, texts: Sequence[str]) -> Plan:
        images: dict[int, ImageRef] = {}
        left_out: list[str] = []
        for i, text in enumerate(texts):
            try:
                ref = registry_ref(text)
            except OcibootError:
                continue  # reported as that image's error when it is checked: it cannot pass
            if ref is not None:
                images[i] = ref
            else:
                left_out.append(text)
        return cls(images, tuple(left_out), _common_parent(r.repository for r in images.values()))

    @property
    def registries(self) -> tuple[str, ...]:
        return tuple(sorted({r.registry for r in self.images.values()}))

    def name(self, repository: str) -> str:
        return repository[len(self.prefix) + 1 :] if self.prefix else repository


def _common_parent(repositories: Iterable[str]) -> str:
    """The longest directory every repository is under (`a/b/c`, `a/b/d/e` -> `a/b`)."""
    common: list[str] | None = None
    for repository in repositories:
        parent = repository.split("/")[:-1]
        if common is None:
            common = parent
            continue
        n = 0
        while n < min(len(common), len(parent)) and common[n] == parent[n]:
            n += 1
        common = common[:n]
    return "/".join(common or ())


def passed(checked: Checked, fatal_warnings: bool) -> bool:
    """The verdict a promotion may act on: read whole, something judged, every platform bootable."""
    return (
        checked.subject is not None
        and bool(checked.reports)
        and exit_code(checked.reports, fatal_warnings=fatal_warnings, unreadable=checked.unreadable) == 0
    )


@dataclass(slots=True)
class Entry:
    """One digest of one repository that passed, with the tags it was checked as."""

    registry: str
    repository: str
    name: str
    digest: Digest
    tags: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        return f"{self.registry}/{self.repository}@{self.digest}"


def _entry(ref: ImageRef, name: str, digest: Digest) -> Entry:
    """The one gate between a reference or a registry's digest and a list file: the image, its
    digest and its name must each parse back to themselves (distribution/reference grammar)."""
    clean = ImageRef(Transport.DOCKER, registry=ref.registry, repository=ref.repository, digest=digest)
    # Under `localhost` a one-component name is not moved to Docker Hub's library/.
    if parse_ref(str(clean)) != clean or not name or parse_ref(f"localhost/{name}").repository != name:
        raise InvalidReference(f"{ref.display}: its name or digest does not parse back to itself")
    return Entry(ref.registry, ref.repository, name, digest)


def _valid_tag(ref: ImageRef, tag: str) -> bool:
    """The tag half of the gate."""
    return parse_ref(f"docker://{ref.registry}/{ref.repository}:{tag}").tag == tag


@dataclass(frozen=True, slots=True)
class Promoted:
    entries: tuple[Entry, ...]  # sorted by registry, repository, digest
    #: A tag checked twice that named two digests (it moved during the check): given to neither.
    ambiguous: tuple[str, ...]
    #: Passed images whose name or digest failed `_entry`: left out, each with why.
    refused: tuple[str, ...] = ()


def promoted(plan: Plan, checked: Sequence[Checked], fatal_warnings: bool) -> Promoted:
    """The registry images of `plan` that passed (`checked` in input order), by digest."""
    found: dict[tuple[str, str, Digest], Entry] = {}
    claims: dict[tuple[str, str], set[Digest]] = {}
    refused: list[str] = []
    for i, ref in plan.images.items():
        result = checked[i]
        if not passed(result, fatal_warnings) or result.subject is None:
            continue
        digest = result.subject.digest
        try:
            entry = _entry(ref, plan.name(ref.repository), digest)
            tagged = ref.tag is not None and _valid_tag(ref, ref.tag)
        except InvalidReference as exc:
            refused.append(str(exc))
            continue
        entry = found.setdefault((entry.registry, entry.repository, digest), entry)
        if tagged and ref.tag is not None and ref.tag not in entry.tags:
            entry.tags.append(ref.tag)
            # Destinations are named by `name`: two source registries may meet in one target.
            claims.setdefault((entry.name, ref.tag), set()).add(digest)
    ambiguous = sorted(f"{name}:{tag}" for (name, tag), digests in claims.items() if len(digests) > 1)
    for entry in found.values():
        entry.tags = sorted(t for t in entry.tags if f"{entry.name}:{t}" not in ambiguous)
    ordered = sorted(found.values(), key=lambda e: (e.registry, e.repository, str(e.digest)))
    return Promoted(tuple(ordered), tuple(ambiguous), tuple(refused))


def _q(text: str) -> str:
    """A YAML scalar: a JSON string (YAML 1.2 reads JSON's escapes, and so do YAML 1.1 parsers)."""
    return json.dumps(text, ensure_ascii=True)


_WRITTEN_BY = "# Written by `ociboot check`: only the images that passed, by the digest that was checked."


def render(
    fmt: ListFormat,
    promoted: Promoted,
    plan: Plan,
    options: SourceOptions,
    target: Target | None = None,
) -> str:
    if fmt is ListFormat.SKOPEO_SYNC:
        return _skopeo_sync(promoted.entries, options)
    if fmt is ListFormat.REGSYNC:
        if target is None:
            raise ListError(_NO_TARGET)
        return _regsync(promoted.entries, options, target)
    return _kpromo(promoted.entries, plan)


def _skopeo_sync(entries: Sequence[Entry], options: SourceOptions) -> str:
    """skopeo-sync(1) "YAML file content": registry -> images: {repository: [tag or digest]}.

    skopeo 1.9 copies a digest to the same digest in DEST/<last component>, untagged, and needs
    --all for an index (without it, it fails: the platform image it would make has another digest)."""
    lines = [
        _WRITTEN_BY,
        "# Run: skopeo sync --all --src yaml --dest docker THIS_FILE DEST (copies are untagged: tag",
        "# each with `skopeo copy docker://DEST/NAME@DIGEST docker://DEST/NAME:TAG`, tags below).",
    ]
    if not entries:
        return "\n".join([*lines, "{}", ""])
    registry = repository = None
    for e in entries:
        if e.registry != registry:
            registry, repository = e.registry, None
            lines.append(f"{_q(e.registry)}:")
            if uses_plain_http(e.registry, options) or not options.tls_verify:
                lines.append("  tls-verify: false")
            if options.cert_dir:
                lines.append(f"  cert-dir: {_q(options.cert_dir)}")
            lines.append("  images:")
        if e.repository != repository:
            repository = e.repository
            lines.append(f"    {_q(e.repository)}:")
        comment = f"  # tags: {', '.join(e.tags)}" if e.tags else ""
        lines.append(f"      - {_q(str(e.digest))}{comment}")
    return "\n".join([*lines, ""])


def _regsync_tls(host: str, options: SourceOptions) -> str:
    if uses_plain_http(host, options):
        return "disabled"
    return "enabled" if options.tls_verify else "insecure"


def _regsync(entries: Sequence[Entry], options: SourceOptions, target: Target) -> str:
    """regsync's configuration file: version 1, creds (registry, tls), sync steps of type image.

    A step copies the source digest to the target as each tag it was checked as (untagged, by
    digest, when it was checked by digest).  No credential is written: regsync reads
    ~/.docker/config.json, or the user adds `user`/`pass` templates."""
    tls = {e.registry: _regsync_tls(e.registry, options) for e in entries}
    # The target's TLS: the user's flags describe the registries read; only loopback is HTTP.
    tls.setdefault(target.registry, _regsync_tls(target.registry, SourceOptions()))
    lines = [_WRITTEN_BY, "version: 1", "creds:"]
    lines += [f"  - registry: {_q(host)}\n    tls: {tls[host]}" for host in sorted(tls)]
    steps = []
    for e in entries:
        destination = _entry(
            ImageRef(Transport.DOCKER, registry=target.registry, repository=target.repository(e.name)),
            e.name,
            e.digest,
        )
        for suffix in [f":{t}" for t in e.tags] or [f"@{e.digest}"]:
            steps.append(
                f"  - source: {_q(e.source)}\n"
                f"    target: {_q(f'{destination.registry}/{destination.repository}{suffix}')}\n"
                "    type: image"
            )
    lines += ["sync:", *steps] if steps else ["sync: []"]
    return "\n".join([*lines, ""])


def _kpromo(entries: Sequence[Entry], plan: Plan) -> str:
    """A thin manifest's images.yaml: a list of {name, dmap: {digest: [tags]}}, one per image
    name, names relative to the source registry of its promoter-manifest.yaml (`src: true`)."""
    source = "/".join(p for p in (*plan.registries[:1], plan.prefix) if p)
    lines = [
        _WRITTEN_BY,
        f"# Names are relative to {source or 'the source registry'} (promoter-manifest.yaml, src: true).",
    ]
    if not entries:
        return "\n".join([*lines, "[]", ""])
    by_name: dict[str, list[Entry]] = {}
    for e in entries:
        by_name.setdefault(e.name, []).append(e)
    for name in sorted(by_name):
        lines += [f"- name: {_q(name)}", "  dmap:"]
        for e in sorted(by_name[name], key=lambda e: str(e.digest)):
            lines.append(f"    {_q(str(e.digest))}: [{', '.join(_q(t) for t in e.tags)}]")
    return "\n".join([*lines, ""])


@dataclass(frozen=True, slots=True)
class Lists:
    """The --promotion-list requests of one run, known usable before any image is read."""

    wanted: tuple[tuple[ListFormat, str], ...]  # (format, file)
    plan: Plan
    target: Target | None

    @classmethod
    def of(cls, requests: Sequence[str], target_text: str | None, texts: Sequence[str]) -> Lists:
        """Raise ListError for what makes a list impossible (a usage error)."""
        wanted = tuple(parse_request(r) for r in requests)
        target = Target.parse(target_text) if target_text is not None else None
        if target is not None and all(f is not ListFormat.REGSYNC for f, _ in wanted):
            raise ListError(
                "only a regsync list has a --promotion-target (skopeo sync takes DEST on its command "
                "line, kpromo from promoter-manifest.yaml)"
            )
        plan = Plan.of(texts) if wanted else Plan({}, (), "")
        for list_format, _ in wanted:
            check_request(list_format, plan, target)
        return cls(wanted, plan, target)

    def promoted(self, checked: Sequence[Checked], fatal_warnings: bool) -> tuple[Promoted, list[str]]:
        """What passed, and a warning line for each image or tag left out of every list."""
        found = promoted(self.plan, checked, fatal_warnings)
        warnings = [f"{why}: left out of the promotion lists" for why in found.refused]
        warnings += [
            f"{t} named two digests while it was checked: the tag is left out" for t in found.ambiguous
        ]
        return found, warnings

    def render(self, fmt: ListFormat, found: Promoted, options: SourceOptions) -> str:
        return render(fmt, found, self.plan, options, self.target)


def check_request(fmt: ListFormat, plan: Plan, target: Target | None) -> None:
    """What makes a list impossible before any image is read (usage errors)."""
    if fmt is ListFormat.REGSYNC:
        if target is None:
            raise ListError(_NO_TARGET)
        for ref in plan.images.values():
            try:
                parse_ref(f"docker://{target.registry}/{target.repository(plan.name(ref.repository))}")
            except InvalidReference as exc:
                raise ListError(f"{ref.display} cannot be copied under {target.registry}: {exc}") from None
    if fmt is ListFormat.KPROMO and len(plan.registries) > 1:
        raise ListError(
            "a kpromo manifest has one source registry; these images come from " + ", ".join(plan.registries)
        )


__all__ = [
    "ListError",
    "ListFormat",
    "Lists",
    "Plan",
    "Promoted",
    "Target",
    "check_request",
    "parse_request",
    "passed",
    "promoted",
    "render",
]
