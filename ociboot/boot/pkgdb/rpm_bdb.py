"""rpm's Berkeley DB backend (`Packages`, RHEL/CentOS <= 8, SLE <= 15 SP2, Amazon Linux 2).

A Berkeley DB hash database (libdb src/dbinc/db_page.h), laid out in pages of one size:
- page 0, the hash meta page: magic 0x061561 at offset 12 (little- or big-endian: the byte
  order of the machine that created it, used for every integer in the file), page size at 20,
  encryption algorithm at 24, meta flags at 26, last page number at 32;
- every page starts with a 26-byte header: pgno @8, prev @12, next @16, entries u16 @20,
  hf_offset u16 @22, type u8 @25 (P_HASH 13, P_HASH_UNSORTED 2, P_OVERFLOW 7);
- a hash page holds `entries` u16 item offsets after its header, alternating key and value; an
  item's length runs to the previous item's offset (items grow down from the page end);
- an item is H_KEYDATA (type 1, bytes inline) or H_OFFPAGE (type 3: pgno @4, total length @8)
  whose bytes fill a chain of overflow pages, each carrying hf_offset bytes after its header.
rpm keys the table by header number (u32) and keeps its instance counter under key 0.

Bound: every overflow page belongs to exactly one item, so a page reached twice (a chain that
loops, or two items sharing a chain) is refused.  Items are therefore read from disjoint pages
and the bytes read in total never exceed the file's size, whatever the keys point at.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from ociboot.boot.pkgdb import MAX_RECORDS, Package, PackageDbError
from ociboot.boot.pkgdb.rpm_header import package_from_header

_HASH_MAGIC = 0x061561
_PAGE_HEADER = 26
# With DBMETA_CHKSUM every page reserves a checksum area after its header (db_page.h P_OVERHEAD).
_CHKSUM_SIZE = 20
_P_HASH_UNSORTED = 2
_P_OVERFLOW = 7
_P_HASHMETA = 8
_P_HASH = 13
_H_KEYDATA = 1
_H_OFFPAGE = 3
_VALID_PAGE_SIZES = frozenset(1 << n for n in range(9, 17))


def _order(data: bytes) -> str | None:
    if len(data) < 16:
        return None
    for order in ("<", ">"):
        if struct.unpack_from(order + "I", data, 12)[0] == _HASH_MAGIC:
            return order
    return None


def is_bdb_hash(data: bytes) -> bool:
    return _order(data) is not None


class _Db:
    def __init__(self, path: str, data: bytes) -> None:
        order = _order(data)
        if order is None or len(data) < 512:
            raise PackageDbError(path, "not a Berkeley DB hash database: no 0x061561 magic at offset 12")
        self.path = path
        self.data = data
        self.order = order
        page_size, encryption, page_type, meta_flags = struct.unpack_from(order + "IBBB", data, 20)
        last_pgno = struct.unpack_from(order + "I", data, 32)[0]
        if page_size not in _VALID_PAGE_SIZES:
            raise PackageDbError(
                path, f"Berkeley DB page size {page_size} is not a power of two in 512..65536"
            )
        if page_type != _P_HASHMETA:
            raise PackageDbError(path, f"page 0 has type {page_type}, expected the hash meta page (8)")
        if encryption:
            raise PackageDbError(path, f"Berkeley DB is encrypted (algorithm {encryption})")
        if len(data) < (last_pgno + 1) * page_size:
            raise PackageDbError(
                path, f"file of {len(data)} bytes is shorter than its {last_pgno + 1} pages of {page_size}"
            )
        self.page_size = page_size
        self.last_pgno = last_pgno
        self.overhead = _PAGE_HEADER + (_CHKSUM_SIZE if meta_flags & 1 else 0)
        self.overflow_seen: set[int] = set()

    def page(self, pgno: int) -> tuple[bytes, int, int, int]:
        """(page bytes, next pgno, entries, hf_offset) of page `pgno`; type checked by callers."""
        if not 0 < pgno <= self.last_pgno:
            raise PackageDbError(self.path, f"page number {pgno} is outside 1..{self.last_pgno}")
        start = pgno * self.page_size
        raw = self.data[start : start + self.page_size]
        next_pgno, entries, hf_offset = struct.unpack_from(self.order + "IHH", raw, 16)
        return raw, next_pgno, entries, hf_offset

    def overflow(self, pgno: int, total: int, where: str) -> bytes:
        chunks: list[bytes] = []
        have = 0
        seen = self.overflow_seen
        while pgno:
            if pgno in seen:
                raise PackageDbError(
                    self.path, f"{where}: overflow page {pgno} is reached twice (a chain loops or is shared)"
                )
            seen.add(pgno)
            raw, next_pgno, _entries, length = self.page(pgno)
            if raw[25] != _P_OVERFLOW:
                raise PackageDbError(
                    self.path, f"{where}: page {pgno} in an overflow chain has type {raw[25]}"
                )
            if self.overhead + length > self.page_size or have + length > total:
                raise PackageDbError(self.path, f"{where}: overflow page {pgno} claims {length} bytes")
            chunks.append(raw[self.overhead : self.overhead + length])
            have += length
            pgno = next_pgno
        if have != total:
            raise PackageDbError(self.path, f"{where}: overflow chain holds {have} of {total} bytes")
        return b"".join(chunks)

    def items(self, pgno: int) -> Iterator[tuple[bytes, bytes]]:
        raw, _next, entries, _hf = self.page(pgno)
        if entries % 2:
            raise PackageDbError(self.path, f"hash page {pgno} has an odd number of items ({entries})")
        if self.overhead + 2 * entries > self.page_size:
            raise PackageDbError(self.path, f"hash page {pgno} claims {entries} items, more than fit")
        offsets = struct.unpack_from(f"{self.order}{entries}H", raw, self.overhead)
        for i in range(0, entries, 2):
            key = self.item(raw, offsets, i, pgno)
            yield key, self.item(raw, offsets, i + 1, pgno)

    def item(self, raw: bytes, offsets: tuple[int, ...], index: int, pgno: int) -> bytes:
        start = offsets[index]
        end = self.page_size if index == 0 else offsets[index - 1]
        where = f"page {pgno} item {index}"
        if not self.overhead + 2 * len(offsets) <= start < end <= self.page_size:
            raise PackageDbError(self.path, f"{where}: offset {start}..{end} is outside the page")
        kind = raw[start]
        if kind == _H_KEYDATA:
            return raw[start + 1 : end]
        if kind == _H_OFFPAGE and end - start >= 12:
            first, total = struct.unpack_from(self.order + "II", raw, start + 4)
            return self.overflow(first, total, where)
        raise PackageDbError(self.path, f"{where}: item type {kind} is not data rpm writes (1 or 3)")


def read(path: str, data: bytes) -> list[Package]:
    db = _Db(path, data)
    packages: list[Package] = []
    for pgno in range(1, db.last_pgno + 1):
        page_type = data[pgno * db.page_size + 25]
        if page_type not in (_P_HASH, _P_HASH_UNSORTED):
            continue
        for key, value in db.items(pgno):
            if key == b"\0\0\0\0":
                continue
            if len(packages) >= MAX_RECORDS:
                raise PackageDbError(path, f"more than {MAX_RECORDS} headers")
            number = struct.unpack(db.order + "I", key)[0] if len(key) == 4 else key.hex()
            packages.append(package_from_header(value, path, f"header {number}"))
    return packages
