"""A small bbolt writer for tests: real bbolt page layout, so luet.db readers meet the true format.

Follows etcd-io/bbolt's on-disk format (internal/common/page.go, meta.go): meta pages 0 and 1,
a freelist page, leaf and branch pages with 16-byte elements whose `pos` counts from the
element, overflow pages for large leaves, inline buckets (root 0 + page bytes in the value) for
small buckets without sub-buckets (bbolt's `inlineable`: size <= pageSize/4).  Values are
dicts (a bucket) or bytes.  `storm_luet_db()` lays packages out as storm's `Save` does for
luet's types.Package.
"""

from __future__ import annotations

import json
import struct
from typing import Union

from ociboot.boot.pkgdb.luet import BRANCH, LEAF, MAGIC, VERSION, fnv1a64

Tree = dict[bytes, Union[bytes, "Tree"]]
FREELIST = 0x10
ELEMENT_SIZE = 16


class BoltWriter:
    def __init__(self, page_size: int = 4096, max_leaf_items: int = 64, allow_inline: bool = True) -> None:
        self.page_size = page_size
        self.max_leaf_items = max_leaf_items
        self.allow_inline = allow_inline
        self.pages: dict[int, bytes] = {}
        self.next_pgid = 3  # 0 and 1 are meta pages, 2 the freelist

    def _alloc(self, body_len: int) -> tuple[int, int]:
        count = max(1, -(-body_len // self.page_size))
        pgid = self.next_pgid
        self.next_pgid += count
        return pgid, count - 1

    @staticmethod
    def _leaf_body(items: list[tuple[bytes, bytes, int]]) -> bytes:
        elements = b""
        data = b""
        base = 16 + 16 * len(items)
        for index, (key, value, flags) in enumerate(items):
            pos = base + len(data) - 16 * index - 16
            elements += struct.pack("<IIII", flags, pos, len(key), len(value))
            data += key + value
        return elements + data

    def _page(self, flags: int, count: int, body: bytes) -> int:
        pgid, overflow = self._alloc(16 + len(body))
        raw = struct.pack("<QHHI", pgid, flags, count, overflow) + body
        self.pages[pgid] = raw.ljust((overflow + 1) * self.page_size, b"\0")
        return pgid

    def _tree(self, items: list[tuple[bytes, bytes, int]]) -> int:
        chunks = [items[i : i + self.max_leaf_items] for i in range(0, len(items), self.max_leaf_items)] or [
            []
        ]
        level = [
            (chunk[0][0] if chunk else b"", self._page(LEAF, len(chunk), self._leaf_body(chunk)))
            for chunk in chunks
        ]
        while len(level) > 1:
            parents = []
            for i in range(0, len(level), self.max_leaf_items):
                group = level[i : i + self.max_leaf_items]
                elements = b""
                keys = b""
                for index, (key, child) in enumerate(group):
                    pos = 16 * len(group) + len(keys) - 16 * index
                    elements += struct.pack("<IIQ", pos, len(key), child)
                    keys += key
                parents.append((group[0][0], self._page(BRANCH, len(group), elements + keys)))
            level = parents
        return level[0][1]

    def bucket(self, tree: Tree) -> bytes:
        """The value stored for bucket `tree` in its parent: header (+ inline page)."""
        items: list[tuple[bytes, bytes, int]] = []
        for key in sorted(tree):
            value = tree[key]
            if isinstance(value, dict):
                items.append((key, self.bucket(value), 1))
            else:
                items.append((key, value, 0))
        has_sub = any(flags for _k, _v, flags in items)
        body = self._leaf_body(items)
        if self.allow_inline and not has_sub and 16 + 16 + len(body) <= self.page_size // 4:
            inline = struct.pack("<QHHI", 0, LEAF, len(items), 0) + body
            return struct.pack("<QQ", 0, 0) + inline
        return struct.pack("<QQ", self._tree(items), 0)

    def write(self, tree: Tree) -> bytes:
        # The root bucket is never inline: meta.root always names a page.
        items = []
        for key in sorted(tree):
            value = tree[key]
            items.append((key, self.bucket(value), 1) if isinstance(value, dict) else (key, value, 0))
        return self.finish(self._tree(items))

    def finish(self, root: int) -> bytes:
        """The file: meta pages naming `root` as the root bucket's page, the freelist, the pages."""
        high_water = self.next_pgid
        out = bytearray(high_water * self.page_size)
        for txid in (1, 2):
            pgid = txid % 2
            meta = struct.pack("<IIIIQQQQQ", MAGIC, VERSION, self.page_size, 0, root, 0, 2, high_water, txid)
            meta += struct.pack("<Q", fnv1a64(meta))
            page = struct.pack("<QHHI", pgid, 0x04, 0, 0) + meta
            out[pgid * self.page_size : pgid * self.page_size + len(page)] = page
        out[2 * self.page_size : 2 * self.page_size + 16] = struct.pack("<QHHI", 2, FREELIST, 0, 0)
        for pgid, raw in self.pages.items():
            out[pgid * self.page_size : pgid * self.page_size + len(raw)] = raw
        return bytes(out)


def storm_luet_db(packages: list[dict[str, object]]) -> Tree:
    """The bucket tree storm builds when luet saves each types.Package (IDs from 1)."""
    bucket: Tree = {}
    for number, doc in enumerate(packages, start=1):
        bucket[struct.pack(">q", number)] = json.dumps({"id": number, **doc}).encode()
    bucket[b"__storm_metadata"] = {b"codec": b"json", b"IDcounter": struct.pack(">q", len(packages))}
    return {b"Package": bucket, b"solver": {b"__storm_metadata": {b"codec": b"json"}}}


def branch_chain(depth: int, packages: list[dict[str, object]]) -> bytes:
    """A luet.db whose `Package` bucket is a chain of `depth` one-child branch pages above its
    leaf: every page is well formed, only the tree's shape is hostile (bbolt never builds it)."""
    writer = BoltWriter(page_size=1024, allow_inline=False)
    leaf = storm_luet_db(packages)[b"Package"]
    items = [(key, value, 0) for key, value in sorted(leaf.items()) if not isinstance(value, dict)]
    child = writer._page(LEAF, len(items), writer._leaf_body(items))
    first = items[0][0]
    for _ in range(depth):
        element = struct.pack("<IIQ", ELEMENT_SIZE, len(first), child)
        child = writer._page(BRANCH, 1, element + first)
    root_items = [(b"Package", struct.pack("<QQ", child, 0), 1)]
    root = writer._page(LEAF, 1, writer._leaf_body(root_items))
    return writer.finish(root)
