"""Our own text (rule titles and descriptions) as markdown: docs/rules.md and SARIF's `help`."""

from __future__ import annotations

#: Characters markdown would read as markup outside a code span.
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\*_[]<>|#"})


def md(text: str) -> str:
    """Text as markdown: characters that are markup escaped outside `code spans`."""
    parts = text.split("`")
    return "`".join(p if i % 2 else p.translate(_MD_SPECIAL) for i, p in enumerate(parts))


__all__ = ["md"]
