"""A file of image references, one a line, as `check --from` and `audit --from` read it.

Blank lines and lines starting with `#` are skipped; each reference is stripped of surrounding
whitespace.  The line numbers are kept so that a bad line can be named.  The file is read a line
at a time under MAX_LINE_BYTES and MAX_LIST_BYTES: a file of no end (`/dev/zero`, a log given by
mistake) is refused when that much has been read, never held whole.
"""

from __future__ import annotations

#: One line: a reference is a few hundred bytes (host, a 255-byte name, a tag, a digest).
MAX_LINE_BYTES = 16 << 10
#: A whole list, held as references (an audit names at most 200,000 tags: some 20 MiB).
MAX_LIST_BYTES = 64 << 20


class ListTooLong(ValueError):
    """A list, or one of its lines, over its bound."""


def reference_lines(path: str) -> list[tuple[int, str]]:
    """(line number from 1, reference) for each reference in the file.  OSError when it cannot
    be read, UnicodeDecodeError when it is not UTF-8, ListTooLong past a bound."""
    found: list[tuple[int, str]] = []
    read = 0
    with open(path, "rb") as fh:
        for number, raw in enumerate(iter(lambda: fh.readline(MAX_LINE_BYTES + 2), b""), 1):
            read += len(raw)
            if len(raw.rstrip(b"\r\n")) > MAX_LINE_BYTES:
                raise ListTooLong(f"line {number}: over {MAX_LINE_BYTES} bytes")
            if read > MAX_LIST_BYTES:
                raise ListTooLong(f"line {number}: the list is over {MAX_LIST_BYTES} bytes")
            text = raw.decode("utf-8").strip()
            if text and not text.startswith("#"):
                found.append((number, text))
    return found
