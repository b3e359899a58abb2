"""Every rule is named by a test (the rule tests assert both a passing and a failing image), and
every rule of the reference table (docs/reference-rules.txt) exists in the profiles it names."""

from __future__ import annotations

from pathlib import Path

from ociboot.boot.rules import ALL_RULES

TESTS = Path(__file__).resolve().parent
REFERENCE = TESTS.parent / "docs" / "reference-rules.txt"
_PROFILES = ("generic", "cos", "kairos", "bootc")
_SEVERITY = {"E": "error", "W": "warning", "I": "info"}


def reference_table() -> dict[str, dict[str, set[str]]]:
    """rule id -> profile -> the severities the table allows (a profile absent: not part of it)."""
    table = {}
    for line in REFERENCE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            rule_id, *cells = line.split()
            cells_of = zip(_PROFILES, cells, strict=True)
            table[rule_id] = {
                p: {_SEVERITY[c] for c in cell.split("/")} for p, cell in cells_of if cell != "-"
            }
    return table


def test_every_rule_is_named_by_a_rule_test() -> None:
    text = "\n".join(p.read_text() for p in TESTS.glob("test_rules_*.py"))
    missing = [r.id for r in ALL_RULES if r.id not in text]
    assert not missing, f"rules without a test: {missing}"


def test_every_rule_of_the_reference_table_is_implemented() -> None:
    table = reference_table()
    assert len(table) >= 60
    assert set(table) <= {r.id for r in ALL_RULES}


def test_rules_of_the_reference_table_keep_its_profiles_and_severities() -> None:
    table = reference_table()
    for r in ALL_RULES:
        if r.id in table:
            implemented = {str(p): str(s) for p, s in r.severity.items()}
            assert set(implemented) == set(table[r.id]), r.id
            assert all(s in table[r.id][p] for p, s in implemented.items()), r.id


def test_rules_cite_sources_and_describe_themselves() -> None:
    for r in ALL_RULES:
        assert r.sources and r.description and r.title, r.id
