"""Findings and reports, and their own renderers: text and JSON (SARIF and JUnit: `render`).

A failed check is data, not an exception: each rule that ran yields one Finding per subject
with an outcome.  "Could not run" (`Outcome.ERROR`: a cap hit, an unknown database format) is
its own outcome and never counts as a pass.  Findings hold names as the image has them
(undecodable bytes as surrogates); every renderer escapes what it writes through textsafe, so
no output holds a control character or a lone surrogate.  stdlib only (import level 0).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from . import schemas
from .textsafe import clean, escape

#: bumped (in schemas.VERSIONS, with a new schema file) when a key of the JSON output changes
#: meaning or disappears (adding keys is compatible).  2: `bootable` is false when an image could
#: not be read (listed under `unreadable`), and every image platform of an index is judged, each
#: report naming its `index`.
JSON_SCHEMA_VERSION = schemas.VERSIONS["check"]
#: Every rule's documentation (`ociboot rules --format markdown`); a rule's anchor is its id in lower case.
RULES_DOC_URL = "https://github.com/ociboot/ociboot/blob/main/docs/rules.md"


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"error": 0, "warning": 1, "info": 2}[self.value]


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"  # skipped by --skip/policy, or not applicable to this image
    ERROR = "error"  # the check could not run: never a pass


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    severity: Severity
    outcome: Outcome
    message: str
    path: str | None = None
    evidence: tuple[str, ...] = ()
    hint: str | None = None

    @property
    def blocking(self) -> bool:
        """Does this finding make the image not bootable (before --fatal-warnings)?"""
        return self.severity is Severity.ERROR and self.outcome in (Outcome.FAIL, Outcome.ERROR)

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": str(self.severity),
            "outcome": str(self.outcome),
            "message": self.message,
            "path": self.path,
            "evidence": list(self.evidence),
            "hint": self.hint,
        }


@dataclass(frozen=True, slots=True)
class RuleInfo:
    id: str
    title: str
    description: str
    severity: Severity
    sources: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Skipped:
    """An index entry that is not an image (an attestation, an artifact, an unknown type): not judged."""

    digest: str
    kind: str
    platform: str | None

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "kind": self.kind, "platform": self.platform}

    def describe(self) -> str:
        return f"{self.kind} {self.digest}" + (f" ({self.platform})" if self.platform else "")


@dataclass(frozen=True, slots=True)
class Unreadable:
    """An image, or one platform of an index, that could not be read: never a pass."""

    image: str
    error: str
    platform: str | None = None  # set for one platform of an index

    @property
    def label(self) -> str:
        return f"{self.image} [{self.platform}]" if self.platform else self.image

    def to_json(self) -> dict[str, Any]:
        return {"image": self.image, "platform": self.platform, "error": self.error}


@dataclass(frozen=True, slots=True)
class Report:
    image: str
    digest: str
    platform: str
    profile: str
    profile_reason: str
    findings: tuple[Finding, ...]
    rules: Mapping[str, RuleInfo] = field(default_factory=dict)
    facts: Mapping[str, Any] = field(default_factory=dict)
    #: the index the reference named (`digest` is then this platform's manifest), and its
    #: entries that are not images
    index_digest: str | None = None
    skipped: tuple[Skipped, ...] = ()

    def failures(self, *, fatal_warnings: bool = False) -> list[Finding]:
        out = [f for f in self.findings if f.blocking]
        if fatal_warnings:
            out += [
                f
                for f in self.findings
                if f.severity is Severity.WARNING and f.outcome in (Outcome.FAIL, Outcome.ERROR)
            ]
        return out

    def bootable(self, *, fatal_warnings: bool = False) -> bool:
        return not self.failures(fatal_warnings=fatal_warnings)

    def findings_ordered(self) -> list[Finding]:
        """Failures first, then by severity, rule and path: the order every renderer uses."""
        return _ordered(self.findings)

    def counts(self) -> dict[str, int]:
        out = {str(o): 0 for o in Outcome}
        for f in self.findings:
            out[str(f.outcome)] += 1
        return out

    def to_json(self, *, fatal_warnings: bool = False) -> dict[str, Any]:
        return {
            "image": self.image,
            "digest": self.digest,
            "platform": self.platform,
            "profile": self.profile,
            "profileReason": self.profile_reason,
            "bootable": self.bootable(fatal_warnings=fatal_warnings),
            "counts": self.counts(),
            "findings": [f.to_json() for f in _ordered(self.findings)],
            "facts": dict(self.facts),
            "index": self._index_json(),
        }

    def _index_json(self) -> dict[str, Any] | None:
        if self.index_digest is None:
            return None
        return {"digest": self.index_digest, "skipped": [s.to_json() for s in self.skipped]}


_OUTCOME_RANK = {Outcome.FAIL: 0, Outcome.ERROR: 0, Outcome.PASS: 1, Outcome.SKIP: 2}


def order_key(f: Finding) -> tuple[int, int, str, str]:
    """The order every renderer lists findings in: failures first, then severity, rule, path."""
    return (_OUTCOME_RANK[f.outcome], f.severity.rank, f.rule, f.path or "")


def _ordered(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=order_key)


def exit_code(
    reports: Sequence[Report], *, fatal_warnings: bool = False, unreadable: Sequence[Unreadable] = ()
) -> int:
    """0 bootable, 1 not bootable, 3 something could not be read (docs/architecture.md §5)."""
    if unreadable:
        return 3
    return 0 if all(r.bootable(fatal_warnings=fatal_warnings) for r in reports) else 1


# --- renderers -------------------------------------------------------------------------------


def render_text(
    reports: Sequence[Report],
    *,
    fatal_warnings: bool = False,
    verbose: bool = False,
    unreadable: Sequence[Unreadable] = (),
) -> str:
    """Plain text for people and logs; passes are listed only with `verbose`."""
    out: list[str] = []
    for r in reports:
        verdict = "BOOTABLE" if r.bootable(fatal_warnings=fatal_warnings) else "NOT BOOTABLE"
        out.append(f"{r.image}  {r.digest}  {r.platform}")
        out.extend(f"  {line}" for line in index_lines(r))
        out.append(f"  profile: {r.profile} ({r.profile_reason})")
        for f in _ordered(r.findings):
            if f.outcome is Outcome.PASS and not verbose:
                continue
            if f.outcome is Outcome.SKIP and not verbose:
                continue
            mark = {"fail": "FAIL", "error": "NOT RUN", "pass": "ok", "skip": "skip"}[f.outcome.value]
            out.append(f"  {mark:<7} {f.severity.value:<7} {f.rule:<8} {f.message}")
            for ev in f.evidence:
                out.append(f"{'':26}{ev}")
            if f.hint and f.outcome in (Outcome.FAIL, Outcome.ERROR):
                out.append(f"{'':26}fix: {f.hint}")
        c = r.counts()
        out.append(
            f"  {verdict}: {c['fail']} failed, {c['error']} not run, {c['pass']} passed, {c['skip']} skipped"
        )
        out.append("")
    for u in unreadable:
        out += [u.label, f"  UNREADABLE: {u.error}", ""]
    # Escaping is per character, so escaping each whole line escapes every field in it.
    return "\n".join(escape(line) for line in out).rstrip("\n") + "\n"


def index_lines(report: Report) -> list[str]:
    """Which index a platform's report belongs to, and what in it was not judged."""
    if report.index_digest is None:
        return []
    lines = [f"index: {report.index_digest}"]
    if report.skipped:
        lines.append("not images, not checked: " + ", ".join(s.describe() for s in report.skipped))
    return lines


class ReportFormat(StrEnum):
    """What a check's report is written as (`check --format`, `-o FORMAT=FILE`; outputs.py renders
    them).  Here, with the report, so that the CLI declares its options without importing the renderers."""

    text = "text"
    json = "json"
    sarif = "sarif"
    junit = "junit"


def render_json(
    reports: Sequence[Report], *, fatal_warnings: bool = False, unreadable: Sequence[Unreadable] = ()
) -> str:
    doc = {
        **schemas.header("check"),
        "bootable": exit_code(reports, fatal_warnings=fatal_warnings, unreadable=unreadable) == 0,
        "reports": [r.to_json(fatal_warnings=fatal_warnings) for r in reports],
        "unreadable": [u.to_json() for u in unreadable],
    }
    return json.dumps(clean(doc), indent=2) + "\n"
