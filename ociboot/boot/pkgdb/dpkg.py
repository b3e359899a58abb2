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

from ociboot.boot.pkgdb import Package, PackageDbError

_FIELD = re.compile(r"([!-9;-~][!-9;-~]*):(.*)")
_EPOCH = re.compile(r"[0-9]+")


def _paragraphs(path: str, text: str) -> list[tuple[int, dict[str, str]]]:
    """(first line number, fields) per paragraph; field names are case-insensitive (deb822)."""
    result: list[tuple[int, dict[str, str]]] = []
    fields: dict[str, str] = {}
    start = 0
    last: str | None = None
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            if fields:
                result.append((start, fields))
            fields, last = {}, None
            continue
        if line[0] in " \t":
            if last is None:
                raise PackageDbError(path, f"line {number}: continuation line outside a field")
            fields[last] += "\n" + line.strip()
            continue
        match = _FIELD.fullmatch(line)
        if match is None:
            raise PackageDbError(path, f"line {number}: not a `Field: value` line: {line[:60]!r}")
        if not fields:
            start = number
        last = match.group(1).lower()
        fields[last] = match.group(2).strip()
    if fields:
        result.append((start, fields))
    return result


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
    text = data.decode("utf-8", errors="replace")
    in_status_d = "/status.d/" in "/" + path.lstrip("/")
    packages = []
    for line, fields in _paragraphs(path, text):
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
