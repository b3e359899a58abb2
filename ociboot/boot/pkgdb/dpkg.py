"""dpkg's status database: `var/lib/dpkg/status` and distroless's `var/lib/dpkg/status.d/*`.

Both are deb822 (RFC 822-like) paragraphs separated by blank lines; a line starting with a space
or tab continues the previous field (deb-control(5)).  In `status` a package is installed when
the third word of `Status:` is `installed` (dpkg(1) "package states"; `deinstall ok
config-files` and `half-installed` are not).  distroless writes one control paragraph per
package into `status.d/<name>` without a Status field: being there means installed.  Its
`*.md5sums` siblings are file lists, not paragraphs, and hold no packages.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ociboot.boot.pkgdb import MAX_RECORDS, Package, PackageDbError

# Work on the bytes with whole-line patterns, so that every byte is looked at a bounded number
# of times at C speed and nothing per line is kept: a field continued over a million lines, or a
# file of nothing but newlines, costs time and memory linear in its size.  Only the fields read
# below are extracted; the rest are checked for shape and skipped.
# Possessive quantifiers throughout: sre keeps a backtracking record per iteration of a plain
# repeated group (2 GB for 16 MiB of newlines), none for a possessive one.
_WHITESPACE = re.compile(rb"[ \t\r\n]*+")
_BLANK_LINE = re.compile(rb"[ \t\r]*+\n")
_CONTINUATION = rb"[ \t][ \t\r]*+[^ \t\r\n][^\n]*+\n"
_PARAGRAPH = re.compile(rb"(?:[!-9;-~]++:[^\n]*+\n(?:" + _CONTINUATION + rb")*+)++")
# The fields read here are single-line (deb822 "simple" fields): a continuation is refused
# rather than folded, so no value is ever assembled from lines.
_WANTED = re.compile(rb"^(package|status|version|architecture):([^\n]*+)\n([ \t])?", re.M | re.I)
_EPOCH = re.compile(r"[0-9]+")


def _skip_blank_lines(data: bytes, pos: int) -> int:
    """The start of the first line at or after `pos` that is not blank (or the end)."""
    end = _WHITESPACE.match(data, pos).end()  # type: ignore[union-attr]
    if end == len(data):
        return end
    # Back to the start of the line that holds the first non-blank byte: a continuation line's
    # leading blank belongs to it.
    return data.rfind(b"\n", pos, end) + 1 or pos


def _paragraphs(path: str, data: bytes) -> Iterator[tuple[int, dict[str, str]]]:
    """(first line number, wanted fields) per paragraph; names are case-insensitive (deb822).
    A field given twice is an error, as dpkg makes it."""
    if not data.endswith(b"\n"):
        data += b"\n"
    pos, line, counted = 0, 1, 0
    for count in range(MAX_RECORDS + 1):
        pos = _skip_blank_lines(data, pos)
        if pos == len(data):
            return
        line += data.count(b"\n", counted, pos)
        counted = pos
        if count == MAX_RECORDS:
            raise PackageDbError(path, f"more than {MAX_RECORDS} paragraphs")
        found = _PARAGRAPH.match(data, pos)
        end = found.end() if found else pos
        if found is None or (end < len(data) and not _BLANK_LINE.match(data, end)):
            bad = line + data.count(b"\n", pos, end)
            text = data[end : data.find(b"\n", end)]
            if found is None and text[:1] in (b" ", b"\t"):
                raise PackageDbError(path, f"line {bad}: continuation line outside a field")
            shown = text[:60].decode("utf-8", errors="replace")
            raise PackageDbError(path, f"line {bad}: not a `Field: value` line: {shown!r}")
        fields: dict[str, str] = {}
        for match in _WANTED.finditer(data, pos, end):
            name = match.group(1).lower().decode()
            if name in fields:
                raise PackageDbError(path, f"paragraph at line {line}: field {name!r} appears twice")
            if match.group(3):
                raise PackageDbError(
                    path, f"paragraph at line {line}: field {name!r} is continued on more lines"
                )
            fields[name] = match.group(2).strip().decode("utf-8", errors="replace")
        yield line, fields
        pos = end


def parse_version(text: str) -> tuple[int | None, str, str]:
    """`[epoch:]upstream[-revision]` into (epoch, upstream, revision) per deb-version(7): the
    epoch ends at the first colon, the revision starts after the last hyphen."""
    epoch: int | None = None
    rest = text
    if ":" in text:
        head, rest = text.split(":", 1)
        if not _EPOCH.fullmatch(head):
            raise ValueError(f"epoch {head!r} is not a number")
        epoch = int(head)
    upstream, _, revision = rest.rpartition("-")
    if not upstream:
        upstream, revision = rest, ""
    if not upstream or not upstream[0].isdigit():
        raise ValueError(f"upstream version {upstream!r} does not start with a digit")
    return epoch, upstream, revision


def read(path: str, data: bytes) -> list[Package]:
    if path.endswith(".md5sums"):
        return []
    in_status_d = "/status.d/" in "/" + path.lstrip("/")
    packages = []
    for line, fields in _paragraphs(path, data):
        name = fields.get("package")
        if not name:
            raise PackageDbError(path, f"paragraph at line {line} has no Package field")
        status = fields.get("status")
        if status is None and not in_status_d:
            raise PackageDbError(path, f"package {name} (line {line}) has no Status field")
        if status is not None:
            words = status.split()
            if len(words) != 3:
                raise PackageDbError(
                    path, f"package {name} (line {line}): Status {status!r} is not three words"
                )
            if words[2] != "installed":
                continue
        version = fields.get("version", "")
        try:
            epoch, upstream, revision = parse_version(version)
        except ValueError as exc:
            raise PackageDbError(path, f"package {name} (line {line}): version {version!r}: {exc}") from None
        arch = fields.get("architecture", "")
        if "\ufffd" in name + version + arch:
            raise PackageDbError(path, f"package at line {line}: name, version or architecture is not UTF-8")
        packages.append(
            Package(name=name, version=upstream, release=revision, arch=arch, epoch=epoch, source_db=path)
        )
    return packages
