"""A file of image references, one a line, as `check --from` and `audit --from` read it.

Blank lines and lines starting with `#` are skipped; each reference is stripped of surrounding
whitespace.  The line numbers are kept so that a bad line can be named.
"""

from __future__ import annotations


def reference_lines(path: str) -> list[tuple[int, str]]:
    """(line number from 1, reference) for each reference in the file.  OSError when it cannot
    be read, UnicodeDecodeError when it is not UTF-8."""
    with open(path, encoding="utf-8") as fh:
        lines = [(number, line.strip()) for number, line in enumerate(fh, 1)]
    return [(number, text) for number, text in lines if text and not text.startswith("#")]
