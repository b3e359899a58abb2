"""A small Berkeley DB hash writer for tests: the page layout libdb writes (src/dbinc/db_page.h),
so the rpm BDB reader meets hostile shapes of the true format that db_load never builds.

Every record's key is stored inline (H_KEYDATA) and its value off-page (H_OFFPAGE) in a chain
of overflow pages, as rpm's headers are in a database with small pages.  `share` makes every
value point at the first value's chain: well-formed pages, forged sharing (the amplification
of issue 7, one chain read once per key).
"""

from __future__ import annotations

import struct

HASH_MAGIC = 0x061561
PAGE_HEADER = 26
P_OVERFLOW = 7
P_HASHMETA = 8
P_HASH = 13


def bdb_hash(
    records: list[tuple[bytes, bytes]], *, page_size: int = 512, order: str = "<", share: bool = False
) -> bytes:
    pages: list[bytes] = []  # pages[0] is page 1

    def header(pgno: int, next_pgno: int, entries: int, hf_offset: int, kind: int) -> bytes:
        return struct.pack(order + "QIIIHHBB", 0, pgno, 0, next_pgno, entries, hf_offset, 0, kind)

    def chain(data: bytes) -> int:
        room = page_size - PAGE_HEADER
        chunks = [data[i : i + room] for i in range(0, len(data), room)] or [b""]
        first = len(pages) + 1
        for index, chunk in enumerate(chunks):
            pgno = first + index
            next_pgno = pgno + 1 if index + 1 < len(chunks) else 0
            raw = header(pgno, next_pgno, 1, len(chunk), P_OVERFLOW) + chunk
            pages.append(raw.ljust(page_size, b"\0"))
        return first

    items: list[tuple[bytes, tuple[int, int]]] = []
    for key, value in records:
        if share and items:
            items.append((key, items[0][1]))
        else:
            items.append((key, (chain(value), len(value))))
    # Hash pages after the overflow pages: as many items per page as fit.
    per_page = (page_size - PAGE_HEADER) // (2 * 2 + 1 + max((len(k) for k, _ in items), default=0) + 12)
    for start in range(0, len(items), max(per_page, 1)):
        group = items[start : start + per_page]
        pgno = len(pages) + 1
        offsets: list[int] = []
        body = bytearray(page_size)
        end = page_size
        for key, (first, total) in group:
            for item in (b"\x01" + key, struct.pack(order + "B3xII", 3, first, total)):
                end -= len(item)
                body[end : end + len(item)] = item
                offsets.append(end)
        head = header(pgno, 0, len(offsets), end, P_HASH) + struct.pack(f"{order}{len(offsets)}H", *offsets)
        body[: len(head)] = head
        pages.append(bytes(body))
    meta = bytearray(page_size)
    struct.pack_into(order + "I", meta, 12, HASH_MAGIC)
    struct.pack_into(order + "I", meta, 16, 9)
    struct.pack_into(order + "IBBB", meta, 20, page_size, 0, P_HASHMETA, 0)
    struct.pack_into(order + "I", meta, 32, len(pages))
    return bytes(meta) + b"".join(pages)
