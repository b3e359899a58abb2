"""Checks as data: a Rule is a record (id, per-profile severity, sources, run), a run yields
Results, and `run_checks` turns them into report Findings for one profile.

Rules never raise for "the image is not bootable": that is a Result with Outcome.FAIL.  A rule
that cannot decide (a cap was hit, a database format is unknown) yields Outcome.ERROR, which
never counts as a pass.  An exception escaping a rule is a bug; it is caught and reported as
that rule's ERROR so one broken rule cannot hide the others.  An OcibootError is not a broken
rule but an image that could not be read (a layer re-read for a rule failed): it propagates, as
docs/architecture.md §4 says ("could not read the image" raises).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from ..errors import OcibootError
from ..report import Finding, Outcome, RuleInfo, Severity

if TYPE_CHECKING:
    from .context import CheckContext


class Profile(StrEnum):
    """A rule set, named as the CLI, policy files and reports spell it.  AUTO is a choice, not a
    rule set: it asks `profiles.detect_profile` for one of the others."""

    AUTO = "auto"
    GENERIC = "generic"
    COS = "cos"
    KAIROS = "kairos"
    BOOTC = "bootc"

    @classmethod
    def rule_sets(cls) -> tuple[Profile, ...]:
        return tuple(p for p in cls if p is not cls.AUTO)


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    message: str
    path: str | None = None
    evidence: tuple[str, ...] = ()
    hint: str | None = None
    severity: Severity | None = None  # overrides the profile's severity (rules with E/W splits)


def passed(message: str, path: str | None = None, evidence: Iterable[str] = ()) -> Result:
    return Result(Outcome.PASS, message, path, tuple(evidence))


def failed(
    message: str,
    path: str | None = None,
    evidence: Iterable[str] = (),
    hint: str | None = None,
    severity: Severity | None = None,
) -> Result:
    return Result(Outcome.FAIL, message, path, tuple(evidence), hint, severity)


def not_run(message: str, path: str | None = None, evidence: Iterable[str] = ()) -> Result:
    return Result(Outcome.ERROR, message, path, tuple(evidence))


def unreadable(message: str, path: str | None = None, evidence: Iterable[str] = ()) -> Result:
    """A file the rule needs could not be read (its analyzer failed, or the image's analysis
    budget ran out before it): not run, and blocking whatever the rule's own severity, because
    what was not read may be what fails."""
    return Result(Outcome.ERROR, message, path, tuple(evidence), severity=Severity.ERROR)


def skipped(message: str, path: str | None = None) -> Result:
    return Result(Outcome.SKIP, message, path)


RuleFn = Callable[["CheckContext"], Iterable[Result]]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    title: str
    description: str
    severity: Mapping[Profile, Severity]  # a profile not listed skips the rule
    run: RuleFn = field(repr=False, compare=False)
    sources: tuple[str, ...] = ()

    def info(self, profile: Profile) -> RuleInfo:
        return RuleInfo(
            self.id, self.title, self.description, self.severity.get(profile, Severity.INFO), self.sources
        )


def rule(
    id: str,
    title: str,
    severities: Mapping[Profile, Severity],
    *,
    sources: Sequence[str] = (),
    description: str = "",
) -> Callable[[RuleFn], Rule]:
    """Build a Rule from a function.  `severities` is the reference table's row: the severity in
    each profile the rule belongs to (a profile not listed does not run it)."""
    if Profile.AUTO in severities:
        raise ValueError(f"{id}: {Profile.AUTO} is not a rule set")
    table = dict(severities)

    def wrap(fn: RuleFn) -> Rule:
        doc = description or (fn.__doc__ or "").strip()
        return Rule(id, title, doc or title, table, fn, tuple(sources))

    return wrap


def run_checks(
    ctx: CheckContext,
    rules: Sequence[Rule],
    *,
    skip: Iterable[str] = (),
    overrides: Mapping[str, Severity] | None = None,
) -> list[Finding]:
    skip_set = set(skip)
    overrides = overrides or {}
    findings: list[Finding] = []
    for r in sorted(rules, key=lambda r: r.id):
        base = r.severity.get(ctx.profile)
        if base is None:
            continue
        severity = overrides.get(r.id, base)
        if r.id in skip_set:
            findings.append(Finding(r.id, severity, Outcome.SKIP, f"{r.title}: skipped by request"))
            continue
        try:
            results = list(r.run(ctx))
        except OcibootError:
            raise
        except Exception as exc:
            results = [not_run(f"{r.title}: internal error while checking: {type(exc).__name__}: {exc}")]
        if not results:
            results = [skipped(f"{r.title}: not applicable")]
        for res in results:
            sev = res.severity if res.severity is not None and r.id not in overrides else severity
            findings.append(Finding(r.id, sev, res.outcome, res.message, res.path, res.evidence, res.hint))
    return findings
