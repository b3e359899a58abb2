"""`ociboot verdicts`: the verdicts attached to one digest, each verified, and the gate's answer.

A referrers list only names digests.  Each is fetched and checked, and only what the checked
bytes say is believed: the referrer manifest's digest, that it hangs from this digest, its one
layer's digest and size, and that the statement inside is about this digest.  One that fails a
check is listed as invalid and never counts.  Its time is the referrer manifest's own
`org.opencontainers.image.created` (covered by its digest), never the list's annotation, which
anyone rewriting the list could set; a time in the future is invalid (it cannot have been made
yet).  The gate is the newest valid verdict (for `--policy`, the newest with that policy's
digest); verdicts sharing the newest time, or all undated, pass only if every one of them does.

Anyone who may push to the repository may push a verdict: these are unsigned statements, as
trustworthy as the registry's push permissions (docs/security.md).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from .. import schemas
from ..boot.context import Policy
from ..digest import Digest
from ..errors import ContentError, ImageNotFound, InvalidManifest
from ..image import describe_index, resolve
from ..mediatypes import MediaType
from ..pipeline import Options, opened
from ..sources.registry.referrers import Referrers
from ..sources.registry.source import RegistrySource
from ..spec import MAX_MANIFEST_BYTES, Descriptor, Manifest, parse_time
from . import referrer, statement
from .statement import Result, Statement

#: Seconds a verdict's time may be in the future and still count (clocks differ).
MAX_CLOCK_SKEW = 300


@dataclass(frozen=True, slots=True)
class Verdict:
    referrer: Digest
    created: dt.datetime | None  # None: undated (no time, or one that is not RFC 3339)
    statement: Statement | None  # None when invalid
    problem: str | None = None  # why it does not count

    @property
    def valid(self) -> bool:
        return self.problem is None and self.statement is not None

    def passes(self, fatal_warnings: bool) -> bool:
        if self.statement is None or not self.valid:
            return False
        result = self.statement.tests.result
        return result is Result.PASSED or (result is Result.WARNED and not fatal_warnings)

    def to_json(self) -> dict[str, Any]:
        s = self.statement
        return {
            "referrer": str(self.referrer),
            "created": _rfc3339(self.created),
            "valid": self.valid,
            "problem": self.problem,
            "result": str(s.tests.result) if s else None,
            "policy": str(s.policy) if s and s.policy else None,
            "ociboot": s.version if s else None,
            "passedTests": list(s.tests.passed) if s else [],
            "warnedTests": list(s.tests.warned) if s else [],
            "failedTests": list(s.tests.failed) if s else [],
        }


@dataclass(frozen=True, slots=True)
class Verdicts:
    image: str
    subject: Digest
    via: str  # where the list was read: the referrers API, or the tag schema's tag
    verdicts: tuple[Verdict, ...]  # newest first, undated last
    others: int  # referrers that are not verdicts (SBOMs, signatures, ...)
    policy: Digest | None = None
    fatal_warnings: bool = False
    #: The policy asked about with fatal warnings: what passed under it passed under the policy
    #: (a warning there is a failure), so its verdicts count too: a check run with `--policy F
    #: --fatal-warnings` is read back by `verdicts --policy F [--fatal-warnings]`.
    stricter: Digest | None = None

    def deciding(self) -> tuple[Verdict, ...]:
        """The newest valid verdicts for the policy asked about (several when they share a time)."""
        wanted = [
            v for v in self.verdicts if v.statement is not None and v.valid and self._counts(v.statement)
        ]
        if not wanted:
            return ()
        newest = wanted[0].created
        return tuple(v for v in wanted if v.created == newest)

    def _counts(self, said: Statement) -> bool:
        if self.policy is None:
            return True
        return said.policy is not None and said.policy in (self.policy, self.stricter)

    @property
    def passed(self) -> bool:
        deciding = self.deciding()
        return bool(deciding) and all(v.passes(self.fatal_warnings) for v in deciding)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def to_json(self) -> dict[str, Any]:
        return {
            **schemas.header("verdicts"),
            "image": self.image,
            "digest": str(self.subject),
            "via": self.via,
            "policy": str(self.policy) if self.policy else None,
            "passed": self.passed,
            "deciding": [str(v.referrer) for v in self.deciding()],
            "verdicts": [v.to_json() for v in self.verdicts],
            "otherReferrers": self.others,
        }

    def to_text(self) -> str:
        lines = [f"{self.image}  {self.subject}", f"  read from the {self.via}"]
        if self.policy is not None:
            lines.append(f"  policy {self.policy}")
        deciding = set(self.deciding())
        for v in self.verdicts:
            when = _rfc3339(v.created) or "undated"
            mark = "*" if v in deciding else " "
            if v.statement is None or not v.valid:
                lines.append(f"{mark} {when}  INVALID  {v.referrer}: {v.problem}")
                continue
            s = v.statement
            failed = f"  failed: {', '.join(s.tests.failed)}" if s.tests.failed else ""
            lines.append(f"{mark} {when}  {s.tests.result}  {v.referrer}  policy {s.policy}{failed}")
        if not self.verdicts:
            lines.append("  no verdicts")
        if self.others:
            lines.append(f"  ({self.others} other referrers)")
        if not deciding:
            answer = "no valid verdict" + (" for this policy" if self.policy else "")
        else:
            answer = "newest verdict " + ("passed" if self.passed else "did not pass")
        lines.append(answer)
        return "\n".join(lines) + "\n"


def _rfc3339(when: dt.datetime | None) -> str | None:
    return referrer.rfc3339(when) if when is not None else None


def verdicts_of(
    text: str, options: Options, policy: Policy | None = None, fatal_warnings: bool = False
) -> Verdicts:
    """Resolve `text` to its digest (verified; one platform's manifest with options.platform)
    and read, verify and order the verdicts attached to it; with `policy`, only the verdicts
    made with it (or with it and fatal warnings) count."""
    with opened(text, options) as source:
        if not isinstance(source, RegistrySource):
            raise ImageNotFound(f"{text}: verdicts are attached to registry images (docker://) only")
        if options.platform is not None:
            subject = resolve(source, options.platform).manifest_digest
        else:
            subject = describe_index(source).digest
        lister = Referrers.of(source)
        raw = lister.api(subject, MediaType.IN_TOTO)
        via = "referrers API"
        if raw is None:
            tag = referrer.tag_for(subject)
            raw, via = lister.tagged(tag), f"referrers tag {tag}"
        digests = referrer.listed(raw, f"the {via} of {text}") if raw is not None else ()
        found: list[Verdict] = []
        others = 0
        now = dt.datetime.now(dt.UTC)
        for digest in digests:
            verdict = _read(source, digest, subject, now)
            if verdict is None:
                others += 1
            else:
                found.append(verdict)
    found.sort(key=_newest_first)
    if policy is None:
        return Verdicts(text, subject, via, tuple(found), others, None, fatal_warnings)
    stricter = policy.merge(fatal_warnings=True).digest
    return Verdicts(text, subject, via, tuple(found), others, policy.digest, fatal_warnings, stricter)


def _newest_first(v: Verdict) -> tuple[int, float, str]:
    if v.created is None:
        return (1, 0.0, str(v.referrer))
    return (0, -v.created.timestamp(), str(v.referrer))


def _read(source: RegistrySource, digest: Digest, subject: Digest, now: dt.datetime) -> Verdict | None:
    """One listed referrer: a Verdict (valid or not), or None when it is not a verdict at all.
    What cannot be fetched for a network reason raises: an unread verdict could be the newest."""
    what = f"referrer {digest}"
    try:
        raw = source.get_manifest(digest).data
    except ImageNotFound:
        return Verdict(digest, None, None, "listed, but the registry does not have it")
    if len(raw) > MAX_MANIFEST_BYTES or Digest.of(raw, digest.algorithm) != digest:
        return Verdict(digest, None, None, "the registry served other bytes for this digest")
    try:
        manifest = Manifest.from_json(raw, what)
    except ContentError:
        return None  # an index or an unknown kind of manifest: not ours to judge
    if (manifest.artifact_type or manifest.config.media_type) != MediaType.IN_TOTO:
        return None
    created = parse_time(manifest.annotations.get(referrer.CREATED))
    if manifest.subject is None or manifest.subject.digest != subject:
        hangs = manifest.subject.digest if manifest.subject else "nothing"
        return Verdict(digest, created, None, f"the referrer hangs from {hangs}, not from {subject}")
    layers = [d for d in manifest.layers if d.media_type == MediaType.IN_TOTO]
    if len(manifest.layers) != 1 or len(layers) != 1:
        return Verdict(digest, created, None, "a verdict has exactly one layer, the statement")
    try:
        parsed = statement.parse(_blob(source, layers[0]), f"statement {layers[0].digest}")
    except ImageNotFound:
        return Verdict(digest, created, None, "its statement blob is missing")
    except ContentError as exc:
        return Verdict(digest, created, None, str(exc))
    if parsed is None:
        return None  # an in-toto statement of another kind: an SBOM, a provenance
    if parsed.subjects != (subject,):
        about = ", ".join(str(d) for d in parsed.subjects) or "nothing"
        return Verdict(digest, created, parsed, f"the statement is about {about}, not {subject}")
    if created is not None and created > now + dt.timedelta(seconds=MAX_CLOCK_SKEW):
        return Verdict(digest, created, parsed, "it is dated in the future")
    return Verdict(digest, created, parsed)


def _blob(source: RegistrySource, layer: Descriptor) -> bytes:
    """The statement's bytes, verified (size and digest) before anything parses them."""
    if layer.size > statement.MAX_STATEMENT_BYTES:
        raise InvalidManifest(
            f"statement {layer.digest} is {layer.size} bytes, "
            f"over the {statement.MAX_STATEMENT_BYTES} byte cap"
        )
    with source.open_blob(layer) as stream:
        data = stream.read(layer.size + 1)
    if len(data) != layer.size or Digest.of(data, layer.digest.algorithm) != layer.digest:
        raise InvalidManifest(f"statement {layer.digest}: the registry served other bytes")
    return data
