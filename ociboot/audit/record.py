"""One audit result per tag: what `--format jsonl` writes, one JSON object a line, and what
`--resume` reads back.

A record names the tag (`repository`, `tag`) and the manifest digest it pointed to when the
audit resolved it; `bootable` is true or false for a judged image and null when it could not be
read (then `error` says why).  An index is judged platform by platform: it is bootable only if
every platform is, and `failed` lists the rules that failed on any of them.

A repository whose tags could not be listed is one unreadable record with the tag UNLISTED (no
tag is empty): the audit goes on with the other repositories, and its exit code says that part
of the namespace was never seen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ..report import Outcome, Severity
from ..textsafe import clean, shortened

if TYPE_CHECKING:
    from ..pipeline import Checked

#: A --resume file is the user's, but may be any file: a longer line is not a record of ours.
MAX_RECORD_BYTES = 64 << 10
#: A record's error, shortened past this: it quotes a registry or an image, and a record must
#: stay well under MAX_RECORD_BYTES for --resume to read it back.
MAX_ERROR_CHARS = 2000


#: What a record says of its tag, in the order a summary says them.
VERDICTS = ("bootable", "not bootable", "unreadable")
#: The tag of the record of a repository whose tags could not be listed.
UNLISTED = ""


class AuditFormat(StrEnum):
    """`ociboot audit --format`: a record a line, as text or as this module's JSON line."""

    text = "text"
    jsonl = "jsonl"


class NotARecord(ValueError):
    """A line that is not an audit record (--resume refuses the file, naming the line)."""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    registry: str
    repository: str
    tag: str
    digest: str | None  # None: the tag could not even be resolved
    bootable: bool | None  # None: unreadable
    failed: tuple[str, ...] = ()  # rule ids, sorted, over every platform judged
    warned: tuple[str, ...] = ()
    error: str | None = None
    platforms: tuple[str, ...] = field(default=())
    #: What the verdict depends on besides the image (`judging_key`): --resume reuses a verdict
    #: only when it is the same now.  None in a record of an unresolved tag.
    judged_with: str | None = None

    def __post_init__(self) -> None:
        if self.error is not None:
            object.__setattr__(self, "error", shortened(self.error, MAX_ERROR_CHARS))

    @property
    def listed(self) -> bool:
        """False for the record of a repository whose tags could not be listed (no tag)."""
        return self.tag != UNLISTED

    @property
    def name(self) -> str:
        """`registry/repository:tag` (no tag for a repository not listed), unescaped."""
        return f"{self.registry}/{self.repository}" + (f":{self.tag}" if self.listed else "")

    @property
    def verdict(self) -> str:
        """One of VERDICTS: what the summary counts."""
        bootable, not_bootable, unreadable = VERDICTS
        if self.bootable is None:
            return unreadable
        return bootable if self.bootable else not_bootable

    def to_json(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "repository": self.repository,
            "tag": self.tag,
            "digest": self.digest,
            "bootable": self.bootable,
            "failed": list(self.failed),
            "warned": list(self.warned),
            "error": self.error,
            "platforms": list(self.platforms),
            "judged_with": self.judged_with,
        }

    def line(self) -> str:
        """The --format jsonl line (no newline): keys in a fixed order, so that two audits of the
        same images write the same bytes.  Every string is escaped (textsafe): names and errors
        come from the registry, and the line is strict UTF-8 with no control character."""
        return json.dumps(
            clean(self.to_json(), raw_keys=frozenset()), ensure_ascii=False, separators=(",", ":")
        )

    @classmethod
    def parse(cls, line: str) -> AuditRecord:
        """A record back from its line; NotARecord for anything else."""
        if len(line.encode("utf-8", "surrogateescape")) > MAX_RECORD_BYTES:
            raise NotARecord(f"over {MAX_RECORD_BYTES} bytes")
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise NotARecord(f"not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise NotARecord("not a JSON object")
        try:
            record = cls(
                registry=_text(data["registry"]),
                repository=_text(data["repository"]),
                tag=_text(data["tag"]),
                digest=_optional_text(data["digest"]),
                bootable=_optional_bool(data["bootable"]),
                failed=_texts(data.get("failed", [])),
                warned=_texts(data.get("warned", [])),
                error=_optional_text(data.get("error")),
                platforms=_texts(data.get("platforms", [])),
                judged_with=_optional_text(data.get("judged_with")),
            )
        except KeyError as exc:
            raise NotARecord(f"no {exc.args[0]!r} key") from None
        if (record.bootable is None) != (record.error is not None):
            raise NotARecord("an unreadable record has an error, a judged one has none")
        if not record.listed and (record.bootable is not None or record.digest is not None):
            raise NotARecord("a record with no tag (a repository not listed) names no image")
        return record


def unlisted(registry: str, repository: str, error: str) -> AuditRecord:
    """The record of a repository whose tags could not be listed."""
    return AuditRecord(
        registry, repository, UNLISTED, None, None, error=f"its tags could not be listed: {error}"
    )


def from_checked(
    registry: str, repository: str, tag: str, digest: str, checked: Checked, *, fatal_warnings: bool = False
) -> AuditRecord:
    """The record of one tag from what `check` found for the digest it points to."""
    failed: set[str] = set()
    warned: set[str] = set()
    for report in checked.reports:
        for finding in report.failures(fatal_warnings=fatal_warnings):
            failed.add(finding.rule)
        for finding in report.findings:
            if finding.severity is Severity.WARNING and finding.outcome in (Outcome.FAIL, Outcome.ERROR):
                warned.add(finding.rule)
    platforms = tuple(sorted({r.platform for r in checked.reports}))
    bootable: bool | None = None
    error: str | None = None
    if checked.unreadable or not checked.reports:
        parts = (u.label + ": " + u.error if u.platform else u.error for u in checked.unreadable)
        error = "; ".join(parts) or "nothing was judged"
    else:
        bootable = all(r.bootable(fatal_warnings=fatal_warnings) for r in checked.reports)
    return AuditRecord(
        registry,
        repository,
        tag,
        digest,
        bootable,
        tuple(sorted(failed)),
        tuple(sorted(warned)),
        error,
        platforms,
    )


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise NotARecord(f"{value!r} is not a string")
    return value


def _optional_text(value: object) -> str | None:
    return None if value is None else _text(value)


def _optional_bool(value: object) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise NotARecord(f"bootable is {value!r}, not true, false or null")
    return value


def _texts(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise NotARecord(f"{value!r} is not a list")
    return tuple(_text(v) for v in value)
