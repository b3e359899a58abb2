"""apk's installed database: `lib/apk/db/installed` (`usr/lib/apk/db/installed` on newer Alpine).

One block per package, blocks separated by blank lines, each line `X:value` with a one-letter
key (apk-tools doc/apk-v2 "installed database"; `P` name, `V` version, `A` arch; `F`/`R`/`Z`...
list files).  apk versions end in `-rN`, the package release (apk-package(5)).
"""

from __future__ import annotations

from ociboot.boot.pkgdb import Package, PackageDbError


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


def read(path: str, data: bytes) -> list[Package]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PackageDbError(path, f"not UTF-8 text at byte {exc.start}") from None
    packages = []
    fields: dict[str, str] = {}
    start = 0
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            if fields:
                packages.append(_package(path, start, fields))
            fields = {}
            continue
        if len(line) < 2 or line[1] != ":" or not line[0].isascii() or not line[0].isalpha():
            raise PackageDbError(path, f"line {number}: not an `X:value` line: {line[:60]!r}")
        if not fields:
            start = number
        # Only the first P/V/A of a block counts; F:/R: repeat freely.
        fields.setdefault(line[0], line[2:])
    if fields:
        packages.append(_package(path, start, fields))
    return packages
