"""Rules: (being written)."""

from __future__ import annotations

from ..check import Rule

RULES: tuple[Rule, ...] = ()
CAPTURE: tuple[str, ...] = ()
