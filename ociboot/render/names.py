"""Names a CI system tracks a finding by from one run to the next (SARIF fingerprints, JUnit
test names): what the finding is about, never how the run went."""

from __future__ import annotations

from collections.abc import Sequence

from ..report import Finding, order_key


def numbered(findings: Sequence[Finding]) -> list[tuple[Finding, int]]:
    """The findings in report order, each with its occurrence among the findings of the same rule
    and path (1, 2, ...).  Counted in the order the rules produced them, which is the same in
    every run, so a finding keeps its number when another one's outcome changes."""
    seen: dict[tuple[str, str], int] = {}
    pairs = []
    for f in findings:
        key = (f.rule, f.path or "")
        seen[key] = seen.get(key, 0) + 1
        pairs.append((f, seen[key]))
    return sorted(pairs, key=lambda pair: order_key(pair[0]))


def case_name(finding: Finding, occurrence: int) -> str:
    """Unique within an image's findings: the rule, the path, and `#N` from the second one on."""
    name = f"{finding.rule} {finding.path or ''}".strip()
    return name if occurrence == 1 else f"{name} #{occurrence}"


__all__ = ["case_name", "numbered"]
