"""rpm's NDB backend (`Packages.db`, SUSE since SLE 15 SP3 / openSUSE 2021).

Layout (rpm lib/backend/ndb/rpmpkg.c), all integers little-endian:
- a 32-byte header at offset 0: magic `RpmP`, version 0, generation, slot page count, next index;
- slot pages of 4096 bytes each, an array of 16-byte slots (`Slot`, pkgidx, blkoff, blkcnt) that
  starts right after the header; a slot with blkoff 0 is free;
- blobs addressed in 16-byte blocks: head (`BlbS`, pkgidx, timestamp, bloblen), the rpm header,
  zero padding, tail (adler32 of everything before it, bloblen, `BlbE`).
rpm itself refuses a slot whose blob lies inside the slot pages or past the end of the file and
a blob whose block count or tail disagrees with its head; so do we.  rpm also refuses slots
whose blobs overlap (rpmpkgReadSlots); so do we, which keeps the bytes read (and checksummed)
within the file's size however many slots name the same blob.
"""

from __future__ import annotations

import struct
import zlib
from itertools import pairwise

from ociboot.boot.pkgdb import MAX_RECORDS, Package, PackageDbError
from ociboot.boot.pkgdb.rpm_header import package_from_header

_DB_MAGIC = b"RpmP"
_SLOT_MAGIC = b"Slot"
_HEAD_MAGIC = b"BlbS"
_TAIL_MAGIC = b"BlbE"
_HEADER_SIZE = 32
_PAGE = 4096
_SLOT = 16
_BLK = 16
_BLOB_HEAD = 16
_BLOB_TAIL = 12
# go-rpmdb's guard against absurd slot page counts (2048 pages = 524288 packages).
_MAX_SLOT_PAGES = 2048


def is_ndb(data: bytes) -> bool:
    return data[:4] == _DB_MAGIC


def read(path: str, data: bytes) -> list[Package]:
    if len(data) < _HEADER_SIZE or not is_ndb(data):
        raise PackageDbError(path, f"not an NDB database: first bytes {data[:8]!r}")
    version, _generation, slot_pages = struct.unpack_from("<III", data, 4)
    if version != 0:
        raise PackageDbError(path, f"NDB version {version}, only version 0 exists")
    if not 1 <= slot_pages <= _MAX_SLOT_PAGES:
        raise PackageDbError(path, f"NDB header claims {slot_pages} slot pages")
    if len(data) < slot_pages * _PAGE:
        raise PackageDbError(path, f"file of {len(data)} bytes is shorter than its {slot_pages} slot pages")
    if len(data) % _BLK:
        raise PackageDbError(path, f"file size {len(data)} is not a multiple of the {_BLK}-byte block")
    first_blob_blk = slot_pages * _PAGE // _BLK
    slots: list[tuple[int, int, int, int]] = []
    for offset in range(_HEADER_SIZE, slot_pages * _PAGE, _SLOT):
        magic = data[offset : offset + 4]
        if magic != _SLOT_MAGIC:
            raise PackageDbError(path, f"slot at byte {offset} has magic {magic!r}, expected {_SLOT_MAGIC!r}")
        pkgidx, blkoff, blkcnt = struct.unpack_from("<III", data, offset + 4)
        if blkoff == 0:
            continue
        if pkgidx == 0 or blkcnt == 0 or blkoff < first_blob_blk or (blkoff + blkcnt) * _BLK > len(data):
            raise PackageDbError(
                path, f"slot at byte {offset} (pkgidx {pkgidx}, blocks {blkoff}+{blkcnt}) is out of bounds"
            )
        if len(slots) >= MAX_RECORDS:
            raise PackageDbError(path, f"more than {MAX_RECORDS} used slots")
        slots.append((blkoff, blkcnt, pkgidx, offset))
    by_place = sorted(slots)
    for (blkoff, blkcnt, _idx, offset), (next_off, *_rest, next_offset) in pairwise(by_place):
        if blkoff + blkcnt > next_off:
            raise PackageDbError(
                path, f"slots at bytes {offset} and {next_offset} claim overlapping blobs (blocks {next_off})"
            )
    packages = []
    for blkoff, blkcnt, pkgidx, _offset in sorted(slots, key=lambda slot: slot[3]):
        blob = _blob(data, path, pkgidx, blkoff, blkcnt)
        packages.append(package_from_header(blob, path, f"pkgidx {pkgidx}"))
    return packages


def _blob(data: bytes, path: str, pkgidx: int, blkoff: int, blkcnt: int) -> bytes:
    where = f"pkgidx {pkgidx}"
    start = blkoff * _BLK
    end = start + blkcnt * _BLK
    if data[start : start + 4] != _HEAD_MAGIC:
        raise PackageDbError(path, f"{where}: blob at byte {start} has magic {data[start : start + 4]!r}")
    head_idx, _stamp, bloblen = struct.unpack_from("<III", data, start + 4)
    if head_idx != pkgidx:
        raise PackageDbError(path, f"{where}: blob at byte {start} belongs to pkgidx {head_idx}")
    if blkcnt != (_BLOB_HEAD + bloblen + _BLOB_TAIL + _BLK - 1) // _BLK:
        raise PackageDbError(path, f"{where}: blob length {bloblen} does not fit its {blkcnt} blocks")
    checksum, tail_len = struct.unpack_from("<II", data, end - _BLOB_TAIL)
    if data[end - 4 : end] != _TAIL_MAGIC or tail_len != bloblen:
        raise PackageDbError(path, f"{where}: blob tail at byte {end - _BLOB_TAIL} is damaged")
    if zlib.adler32(data[start : end - _BLOB_TAIL]) != checksum:
        raise PackageDbError(path, f"{where}: blob adler32 does not match its tail")
    return data[start + _BLOB_HEAD : start + _BLOB_HEAD + bloblen]
