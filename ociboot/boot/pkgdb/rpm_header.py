"""rpm header blobs, the value every rpm database backend stores per package.

Layout (rpm lib/header.c, `hdrblobInit`/`hdrblobVerifyInfo`), all integers big-endian:
    u32 il, u32 dl, il index entries of (u32 tag, u32 type, s32 offset, u32 count), dl data bytes
Offsets are relative to the start of the data store.  In a database the blob has no lead magic
(that exists only in .rpm files).  Every bound is checked before a byte is read, so a corrupt
blob ends in PackageDbError and never in struct.error or IndexError.
"""

from __future__ import annotations

import struct
from enum import IntEnum

from ociboot.boot.pkgdb import Package, PackageDbError

# rpm's own sanity limits (lib/header_internal.h hdrchkTags / hdrchkData).
_MAX_TAGS = 0xFFFF
_MAX_DATA = 256 * 1024 * 1024
_ENTRY = struct.Struct(">IIiI")


class Tag(IntEnum):
    NAME = 1000
    VERSION = 1001
    RELEASE = 1002
    EPOCH = 1003
    ARCH = 1022


class TagType(IntEnum):
    INT32 = 4
    STRING = 6
    I18NSTRING = 9


def _entries(blob: bytes, path: str, where: str) -> tuple[dict[int, tuple[int, int, int]], bytes]:
    if len(blob) < 8:
        raise PackageDbError(
            path, f"{where}: header blob of {len(blob)} bytes is shorter than its 8-byte preamble"
        )
    il, dl = struct.unpack_from(">II", blob, 0)
    if not 1 <= il <= _MAX_TAGS or dl > _MAX_DATA:
        raise PackageDbError(
            path, f"{where}: header claims {il} tags and {dl} data bytes, beyond rpm's limits"
        )
    expected = 8 + il * _ENTRY.size + dl
    if len(blob) != expected:
        raise PackageDbError(
            path, f"{where}: header blob is {len(blob)} bytes but 8 + 16*il({il}) + dl({dl}) = {expected}"
        )
    store = blob[8 + il * _ENTRY.size :]
    entries: dict[int, tuple[int, int, int]] = {}
    for i in range(il):
        tag, typ, offset, count = _ENTRY.unpack_from(blob, 8 + i * _ENTRY.size)
        if offset < 0 or offset > dl:
            raise PackageDbError(
                path, f"{where}: tag {tag} points at offset {offset} outside the {dl}-byte data"
            )
        entries.setdefault(tag, (typ, offset, count))
    return entries, store


def _string(
    entries: dict[int, tuple[int, int, int]], store: bytes, tag: Tag, path: str, where: str
) -> str | None:
    found = entries.get(tag)
    if found is None:
        return None
    typ, offset, _count = found
    if typ not in (TagType.STRING, TagType.I18NSTRING):
        raise PackageDbError(path, f"{where}: tag {tag.name} has type {typ}, expected a string")
    end = store.find(b"\0", offset)
    if end < 0:
        raise PackageDbError(path, f"{where}: tag {tag.name} string at offset {offset} is not NUL-terminated")
    try:
        return store[offset:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PackageDbError(path, f"{where}: tag {tag.name} is not UTF-8: {store[offset:end]!r}") from exc


def _int32(
    entries: dict[int, tuple[int, int, int]], store: bytes, tag: Tag, path: str, where: str
) -> int | None:
    found = entries.get(tag)
    if found is None:
        return None
    typ, offset, count = found
    if typ != TagType.INT32 or count < 1:
        raise PackageDbError(path, f"{where}: tag {tag.name} has type {typ} count {count}, expected INT32")
    if offset % 4 or offset + 4 > len(store):
        raise PackageDbError(
            path, f"{where}: tag {tag.name} INT32 at offset {offset} is misaligned or out of bounds"
        )
    value: int = struct.unpack_from(">I", store, offset)[0]
    return value


def package_from_header(blob: bytes, path: str, where: str) -> Package:
    """Decode NAME, VERSION, RELEASE, EPOCH and ARCH.  `where` names the record (e.g. `hnum 3`).

    ARCH is optional because rpm's gpg-pubkey pseudo-packages have none; the other three are
    what makes a header a package."""
    entries, store = _entries(blob, path, where)
    name = _string(entries, store, Tag.NAME, path, where)
    version = _string(entries, store, Tag.VERSION, path, where)
    release = _string(entries, store, Tag.RELEASE, path, where)
    if not name or version is None or release is None:
        raise PackageDbError(path, f"{where}: header has no NAME, VERSION or RELEASE tag")
    arch = _string(entries, store, Tag.ARCH, path, where) or ""
    epoch = _int32(entries, store, Tag.EPOCH, path, where)
    return Package(name=name, version=version, release=release, arch=arch, epoch=epoch, source_db=path)
