"""Pure data of the virtual filesystem: one tar record (`Entry`) and one tree node (`Node`).

Paths are normalised by layer.py before they get here: relative POSIX, no `.`/`..` parts, no
leading or trailing `/`, and the root itself is the empty string "".
"""

from __future__ import annotations

import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Protocol, cast

#: The xattrs of the (many) entries without any: one shared read-only mapping, not a dict each.
NO_XATTRS: Mapping[str, bytes] = MappingProxyType({})


class Kind(StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"

    @property
    def ls_char(self) -> str:
        return {
            "file": "-",
            "dir": "d",
            "symlink": "l",
            "hardlink": "-",
            "char": "c",
            "block": "b",
            "fifo": "p",
        }[self.value]


@dataclass(frozen=True, slots=True)
class Entry:
    """One record of a layer's tar stream, after path normalisation.

    `linkname` is the raw symlink target for SYMLINK, and the normalised target path for
    HARDLINK.  `offset` is where the member's data starts in the *uncompressed* tar stream
    (-1 if unknown), so one member can be found again on a re-read.
    """

    path: str
    kind: Kind
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime: int = 0
    linkname: str = ""
    uname: str = ""
    gname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: Mapping[str, bytes] = field(default_factory=dict, compare=False)
    offset: int = -1

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]

    @property
    def parent(self) -> str:
        return self.path.rpartition("/")[0]

    @property
    def filemode(self) -> str:
        """`ls -l` style, e.g. `-rwxr-xr-x`."""
        return self.kind.ls_char + stat.filemode(self.mode & 0o7777 | stat.S_IFREG)[1:]


class EntryBuilder:
    """Entry's slots without the frozen __setattr__: built here, then turned into an Entry.

    A frozen dataclass's __init__ stores each field with object.__setattr__ (about 2.6 µs for
    Entry's 14 fields, a quarter of the tar walk per member); plain slot stores then a class
    switch cost a third of that, and the result is an ordinary frozen Entry.  The tar walker
    goes further (no call at all): `object.__new__(EntryBuilder)`, every slot stored, then
    `__class__ = Entry`; a slot left unset would make that Entry raise AttributeError.
    """

    __slots__ = Entry.__slots__

    def __init__(
        self,
        path: str,
        kind: Kind,
        mode: int,
        uid: int,
        gid: int,
        size: int,
        mtime: int,
        linkname: str,
        uname: str,
        gname: str,
        devmajor: int,
        devminor: int,
        xattrs: Mapping[str, bytes],
        offset: int,
    ) -> None:
        self.path = path
        self.kind = kind
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.mtime = mtime
        self.linkname = linkname
        self.uname = uname
        self.gname = gname
        self.devmajor = devmajor
        self.devminor = devminor
        self.xattrs = xattrs
        self.offset = offset


def make_entry(
    path: str,
    kind: Kind,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    linkname: str,
    uname: str,
    gname: str,
    devmajor: int,
    devminor: int,
    xattrs: Mapping[str, bytes],
    offset: int,
) -> Entry:
    """`Entry(...)` with every field given positionally, faster (for the tar walker and the cache)."""
    entry: Any = EntryBuilder(
        path, kind, mode, uid, gid, size, mtime, linkname, uname, gname, devmajor, devminor, xattrs, offset
    )
    entry.__class__ = Entry  # same slots, same layout: CPython allows the switch
    return cast(Entry, entry)


class LayerContent(Protocol):
    """What the overlay needs of one indexed layer (layer.LayerIndex satisfies it).

    `captured` maps an entry path to the bytes kept while streaming (possibly only a head of
    the file, see `complete`): everything else is metadata only.
    """

    @property
    def name(self) -> str: ...  # the layer's identity in messages, usually its digest

    @property
    def entries(self) -> Sequence[Entry]: ...

    @property
    def captured(self) -> Mapping[str, bytes]: ...


@dataclass(slots=True, eq=False)
class Node:
    """A path in the flattened tree.

    `entry` is the record that defines its metadata; `layer` is the index (base = 0) of the
    layer that supplied that record.  For a hardlink, `entry` and `layer` are the *target's*
    (that is where the bytes are) and `hardlink` is the link's own record.  `implicit` marks a
    directory no entry described: created because an entry below it needed a parent (its
    `entry` is synthesised, mode 0o755, owner 0, in layer `layer`).
    """

    entry: Entry
    layer: int
    # Not in repr: printing one node would print its whole subtree.
    children: dict[str, Node] | None = field(default=None, repr=False)
    hardlink: Entry | None = None
    implicit: bool = False

    @property
    def kind(self) -> Kind:
        return self.entry.kind

    @property
    def is_dir(self) -> bool:
        return self.entry.kind is Kind.DIR

    @property
    def is_symlink(self) -> bool:
        return self.entry.kind is Kind.SYMLINK
