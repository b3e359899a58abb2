"""Every rule, by module: each module exports RULES (Rule records) and CAPTURE (small files its
rules read, as layer-member globs).  An explicit list, no registration magic."""

from __future__ import annotations

from ..check import Profile, Rule
from . import bootc, cos, initrd, kairos, kernel, links, packages, system

_MODULES = (kernel, initrd, links, system, packages, cos, kairos, bootc)

ALL_RULES: tuple[Rule, ...] = tuple(sorted((r for m in _MODULES for r in m.RULES), key=lambda r: r.id))
CAPTURE: tuple[str, ...] = tuple(sorted({p for m in _MODULES for p in m.CAPTURE}))


def rules_for(profile: Profile) -> tuple[Rule, ...]:
    return tuple(r for r in ALL_RULES if profile in r.severity)


def rule_ids() -> set[str]:
    return {r.id for r in ALL_RULES}
