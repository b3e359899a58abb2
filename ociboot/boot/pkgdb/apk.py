"""apk's installed database: `lib/apk/db/installed` (`usr/lib/apk/db/installed` on newer Alpine).

One block per package, blocks separated by blank lines, each line `X:value` with a one-letter
key (apk-tools doc/apk-v2 "installed database"; `P` name, `V` version, `A` arch; `F`/`R`/`Z`...
list files).  apk versions end in `-rN`, the package release (apk-package(5)).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator

from ociboot.boot.pkgdb import MAX_RECORDS, Package, PackageDbError

# As dpkg.py: whole-line patterns over the bytes with possessive quantifiers, so that time and
# memory stay linear in the file whatever its shape; only P, V and A are extracted.
_WHITESPACE = re.compile(rb"[ \t\r\n]*+")
_BLANK_LINE = re.compile(rb"[ \t\r]*+\n")
_BLOCK = re.compile(rb"(?:[A-Za-z]:[^\n]*+\n)++")
# Only the first P/V/A of a block counts; F:/R: repeat freely.
_FIRST = {key: re.compile(b"^" + key.encode() + rb":([^\n]*+)", re.M) for key in "PVA"}
#: UTF-8 is checked this many bytes at a time, so that no decoded copy of the file is held.
_UTF8_CHUNK = 1 << 20


def _check_utf8(path: str, data: bytes) -> None:
    pos = 0
    while pos < len(data):
        chunk = data[pos : pos + _UTF8_CHUNK]
        try:
            _text, used = codecs.utf_8_decode(chunk, "strict", pos + len(chunk) == len(data))
        except UnicodeDecodeError as exc:
            raise PackageDbError(path, f"not UTF-8 text at byte {pos + exc.start}") from None
        pos += used


def _package(path: str, line: int, fields: dict[str, str]) -> Package:
    name, full = fields.get("P"), fields.get("V")
    if not name or not full:
        raise PackageDbError(path, f"block at line {line} has no P: (name) or V: (version) line")
    version, sep, release = full.rpartition("-r")
    if not sep or not release.isdigit() or not version:
        version, release = full, ""
    else:
        release = "r" + release
    return Package(
        name=name, version=version, release=release, arch=fields.get("A", ""), epoch=None, source_db=path
    )


def _blocks(path: str, data: bytes) -> Iterator[tuple[int, dict[str, str]]]:
    if not data.endswith(b"\n"):
        data += b"\n"
    pos, line, counted = 0, 1, 0
    for count in range(MAX_RECORDS + 1):
        end = _WHITESPACE.match(data, pos).end()  # type: ignore[union-attr]
        if end == len(data):
            return
        pos = data.rfind(b"\n", pos, end) + 1 or pos
        line += data.count(b"\n", counted, pos)
        counted = pos
        if count == MAX_RECORDS:
            raise PackageDbError(path, f"more than {MAX_RECORDS} blocks")
        found = _BLOCK.match(data, pos)
        end = found.end() if found else pos
        if found is None or (end < len(data) and not _BLANK_LINE.match(data, end)):
            bad = line + data.count(b"\n", pos, end)
            shown = data[end : data.find(b"\n", end)][:60].decode(errors="replace")
            raise PackageDbError(path, f"line {bad}: not an `X:value` line: {shown!r}")
        fields = {}
        for key, pattern in _FIRST.items():
            match = pattern.search(data, pos, end)
            if match is not None:
                fields[key] = match.group(1).decode()
        yield line, fields
        pos = end


def read(path: str, data: bytes) -> list[Package]:
    _check_utf8(path, data)
    return [_package(path, line, fields) for line, fields in _blocks(path, data)]
