"""luet's installed-package database: a bbolt file written through storm.

bbolt on-disk format (etcd-io/bbolt internal/common/{page,meta}.go; little-endian throughout):
- every page starts with a 16-byte header: id u64, flags u16 (branch 1, leaf 2, meta 4,
  freelist 0x10), count u16, overflow u32 (a page spans 1 + overflow pages);
- pages 0 and 1 are meta pages: magic 0xED0CDAED, version 2, page size, flags, root bucket
  (root pgid u64, sequence u64), freelist pgid, high-water pgid, txid, and an FNV-1a 64
  checksum of the 56 bytes before it.  The valid meta with the higher txid is current;
- a branch page holds `count` elements (pos u32, ksize u32, pgid u64), a leaf page holds
  (flags u32, pos u32, ksize u32, vsize u32); `pos` counts from the element itself;
- a leaf element with flag 1 is a nested bucket whose value starts with (root pgid, sequence);
  root 0 means an inline bucket whose page follows those 16 bytes inside the value.

storm (asdine/storm `Save`) keeps one bucket per struct type at the root, named after the type
(`Package` for luet's types.Package), keyed by the 8-byte big-endian ID and holding the JSON
document (`name`, `category`, `version`, ...); nested `__storm_*` buckets hold its metadata and
indexes.  luet's default database is `/var/cache/luet/luet.db` (cmd/util/config.go).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator

from ociboot.boot.pkgdb import Package, PackageDbError

MAGIC = 0xED0CDAED
VERSION = 2
PAGE_HEADER = 16
ELEMENT = 16
BRANCH = 0x01
LEAF = 0x02
META = 0x04
BUCKET_LEAF = 0x01
_META = struct.Struct("<IIIIQQQQQQ")
_MAX_DEPTH = 32
#: Branch levels above a leaf within one bucket.  bbolt keeps its B+tree balanced with pages of
#: at least 1 KiB, so real trees are a handful of levels deep; a longer chain is forged, and
#: following it would recurse without bound.
MAX_TREE_DEPTH = 64
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3


def fnv1a64(data: bytes) -> int:
    value = _FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return value


class BoltFile:
    """Read-only walk over a bbolt file held in memory; every offset is checked first."""

    def __init__(self, path: str, data: bytes) -> None:
        self.path = path
        self.data = data
        self.seen: set[int] = set()
        metas = [m for m in (self._meta(0, None), *self._meta1_candidates()) if m is not None]
        if not metas:
            raise PackageDbError(
                path, "not a bbolt file: no meta page with magic 0xED0CDAED and a valid checksum"
            )
        page_size, root, high_water, _txid = max(metas, key=lambda m: m[3])
        self.page_size = page_size
        self.root = root
        self.high_water = high_water

    def _meta(self, offset: int, page_size: int | None) -> tuple[int, int, int, int] | None:
        body = self.data[offset + PAGE_HEADER : offset + PAGE_HEADER + _META.size]
        if len(body) < _META.size:
            return None
        magic, version, size, _flags, root, _seq, _free, high_water, txid, checksum = _META.unpack(body)
        if magic != MAGIC or version != VERSION or checksum != fnv1a64(body[:56]):
            return None
        if size < 1024 or size & (size - 1) or (page_size is not None and size != page_size):
            return None
        return size, root, high_water, txid

    def _meta1_candidates(self) -> Iterator[tuple[int, int, int, int] | None]:
        first = self._meta(0, None)
        sizes = [first[0]] if first else [4096, 8192, 16384, 65536]
        for size in sizes:
            yield self._meta(size, size)

    def page(self, pgid: int) -> tuple[int, int, bytes]:
        """(flags, count, bytes of the page and its overflow pages) of page `pgid`, once per walk."""
        if not 2 <= pgid < self.high_water:
            raise PackageDbError(self.path, f"page {pgid} is outside 2..{self.high_water - 1}")
        if pgid in self.seen:
            raise PackageDbError(self.path, f"page {pgid} is reachable twice: the tree loops")
        self.seen.add(pgid)
        start = pgid * self.page_size
        header = self.data[start : start + PAGE_HEADER]
        if len(header) < PAGE_HEADER:
            raise PackageDbError(
                self.path, f"page {pgid} lies past the end of the {len(self.data)}-byte file"
            )
        own_id, flags, count, overflow = struct.unpack("<QHHI", header)
        if own_id != pgid:
            raise PackageDbError(self.path, f"page {pgid} calls itself page {own_id}")
        end = start + (overflow + 1) * self.page_size
        if end > len(self.data) or pgid + overflow >= self.high_water:
            raise PackageDbError(self.path, f"page {pgid} with {overflow} overflow pages runs past the file")
        return flags, count, self.data[start:end]

    def items(self, bucket_value: bytes, depth: int = 0) -> Iterator[tuple[bytes, bytes, bool]]:
        """(key, value, is_bucket) of a bucket, given its 16-byte header (+ inline page)."""
        if depth > _MAX_DEPTH:
            raise PackageDbError(self.path, f"buckets nest deeper than {_MAX_DEPTH}")
        if len(bucket_value) < 16:
            raise PackageDbError(self.path, f"bucket header of {len(bucket_value)} bytes, expected 16")
        root = struct.unpack_from("<Q", bucket_value, 0)[0]
        if root == 0:
            inline = bucket_value[16:]
            if len(inline) < PAGE_HEADER:
                raise PackageDbError(self.path, "inline bucket is shorter than a page header")
            _id, flags, count, _overflow = struct.unpack_from("<QHHI", inline, 0)
            if flags != LEAF:
                raise PackageDbError(self.path, f"inline bucket page has flags {flags:#x}, expected a leaf")
            yield from self._leaf(inline, count, "inline bucket")
            return
        yield from self._tree(root)

    def _tree(self, pgid: int, level: int = 0) -> Iterator[tuple[bytes, bytes, bool]]:
        if level > MAX_TREE_DEPTH:
            raise PackageDbError(self.path, f"page {pgid}: branch pages nest deeper than {MAX_TREE_DEPTH}")
        flags, count, raw = self.page(pgid)
        if flags == LEAF:
            yield from self._leaf(raw, count, f"page {pgid}")
        elif flags == BRANCH:
            for index in range(count):
                eo = PAGE_HEADER + index * ELEMENT
                if eo + ELEMENT > len(raw):
                    raise PackageDbError(self.path, f"page {pgid}: branch element {index} runs past the page")
                child = struct.unpack_from("<Q", raw, eo + 8)[0]
                yield from self._tree(child, level + 1)
        else:
            raise PackageDbError(
                self.path, f"page {pgid} has flags {flags:#x} where a branch or leaf belongs"
            )

    def _leaf(self, raw: bytes, count: int, where: str) -> Iterator[tuple[bytes, bytes, bool]]:
        for index in range(count):
            eo = PAGE_HEADER + index * ELEMENT
            if eo + ELEMENT > len(raw):
                raise PackageDbError(self.path, f"{where}: leaf element {index} runs past the page")
            flags, pos, ksize, vsize = struct.unpack_from("<IIII", raw, eo)
            start = eo + pos
            if start + ksize + vsize > len(raw):
                raise PackageDbError(self.path, f"{where}: leaf element {index} points past the page")
            key = raw[start : start + ksize]
            value = raw[start + ksize : start + ksize + vsize]
            yield key, value, bool(flags & BUCKET_LEAF)

    def root_bucket(self) -> bytes:
        return struct.pack("<QQ", self.root, 0)


def _package(path: str, key: bytes, value: bytes) -> Package:
    where = f"Package record {key.hex()}"
    try:
        doc = json.loads(value)
    except (ValueError, RecursionError) as exc:
        # ValueError covers bad UTF-8, bad JSON and integers past Python's digit limit;
        # RecursionError, arrays nested deeper than the decoder's stack.
        raise PackageDbError(path, f"{where} is not JSON: {type(exc).__name__}: {exc}") from None
    if not isinstance(doc, dict):
        raise PackageDbError(path, f"{where} is JSON {type(doc).__name__}, not an object")
    name, category, version = doc.get("name"), doc.get("category", ""), doc.get("version", "")
    if not isinstance(name, str) or not name or not isinstance(category, str) or not isinstance(version, str):
        raise PackageDbError(path, f"{where} has no string name, category and version")
    full = f"{category}/{name}" if category else name
    return Package(name=full, version=version, release="", arch="", epoch=None, source_db=path)


def read(path: str, data: bytes) -> list[Package]:
    """luet packages, named `category/name` as luet prints them (`system/kernel`)."""
    db = BoltFile(path, data)
    root = db.root_bucket()
    # Root-level names are read once; reading the root again would revisit its pages.
    children = {key: value for key, value, is_bucket in db.items(root) if is_bucket}
    bucket = children.get(b"Package")
    if bucket is None:
        if b"DefaultPackage" in children:
            raise PackageDbError(
                path, "holds only the pre-2020 `DefaultPackage` bucket (YAML), which luet migrates"
            )
        return []
    return [_package(path, key, value) for key, value, is_bucket in db.items(bucket, 1) if not is_bucket]
