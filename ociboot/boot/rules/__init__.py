"""Every rule, by module: each module exports RULES (Rule records) and CAPTURE (small files its
rules read, as layer-member globs).  An explicit list, no registration magic."""

from __future__ import annotations

from typing import Any

from ..check import Profile, Rule
from . import bootc, cos, initrd, kairos, kernel, links, packages, system

_MODULES = (kernel, initrd, links, system, packages, cos, kairos, bootc)

ALL_RULES: tuple[Rule, ...] = tuple(sorted((r for m in _MODULES for r in m.RULES), key=lambda r: r.id))
CAPTURE: tuple[str, ...] = tuple(sorted({p for m in _MODULES for p in m.CAPTURE}))


def rules_for(profile: Profile) -> tuple[Rule, ...]:
    return tuple(r for r in ALL_RULES if profile in r.severity)


def rule_ids() -> set[str]:
    return {r.id for r in ALL_RULES}


def documented(profile: Profile | None = None) -> list[dict[str, Any]]:
    """The rules (of one profile, or all) as documentation: what `ociboot rules --format json`
    lists, docs/rules.md is made of and the audit's HTML report explains its failures with."""
    return [
        {
            "id": r.id,
            "title": r.title,
            # A docstring's line breaks and indentation are layout, not text.
            "description": " ".join(r.description.split()),
            "severity": {p: str(s) for p, s in r.severity.items()},
            "sources": list(r.sources),
        }
        for r in ALL_RULES
        if profile in (None, Profile.AUTO) or profile in r.severity
    ]
