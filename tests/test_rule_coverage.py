"""Every rule is named by a test (the rule tests assert both a passing and a failing image), and
every rule of the reference table (boot-requirements.md §b) exists."""

from __future__ import annotations

import re
from pathlib import Path

from ociboot.boot.rules import ALL_RULES

TESTS = Path(__file__).resolve().parent
REFERENCE = TESTS.parent.parent / "shared" / "reference" / "boot-requirements.md"


def test_every_rule_is_named_by_a_rule_test() -> None:
    text = "\n".join(p.read_text() for p in TESTS.glob("test_rules_*.py"))
    missing = [r.id for r in ALL_RULES if r.id not in text]
    assert not missing, f"rules without a test: {missing}"


def test_every_rule_of_the_reference_table_is_implemented() -> None:
    table = set(
        re.findall(
            r"^\| ((?:KRN|INI|LNK|INIT|OSR|LAY|SSH|SIZ|PKG|COS|KAI|BTC)-\d{3}) ",
            REFERENCE.read_text(),
            re.MULTILINE,
        )
    )
    assert len(table) >= 60
    assert table <= {r.id for r in ALL_RULES}


def test_rules_cite_sources_and_describe_themselves() -> None:
    for r in ALL_RULES:
        assert r.sources and r.description and r.title, r.id
