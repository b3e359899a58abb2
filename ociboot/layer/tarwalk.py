"""The tar walker: headers to Entry records, member data captured, analyzed or skipped.

It is our own (docs/measurements.md: tarfile costs ~46 µs per member, which dominates layers of
many small files).  It reads POSIX ustar (+ prefix), GNU (base-256 numbers, 'L'/'K' long names)
and pax ('x'/'g' records, POSIX.1-2008 pax "Extended Header"), and decides on purpose:

- End of archive: two zero blocks (POSIX), or one (Go's archive/tar accepts it), or none at all
  after a complete last member (umoci 0.4.7 writes such layers; Go tools read them): noted.
  A zero block followed by a header is not a tar.  EOF inside a header or member data is
  TruncatedLayer.  A 0-byte uncompressed layer is an empty tar (Docker practice).
- Types 0, NUL, 7 (contiguous) are files; 1 hardlink; 2 symlink; 3/4 devices; 5 dir; 6 fifo.
  Types 1-6 carry no data whatever their size field says (Go's isHeaderOnlyType).  A NUL-typed
  member whose name ends in '/' is a directory (pre-POSIX tars; tarfile does the same).
- GNU sparse files (type 'S', or pax GNU.sparse.*): OCI says SHOULD NOT (image-spec#733), Go reads
  them, Docker refuses them.  We keep the entry as a FILE with its real size and do not capture its
  bytes (they are stored packed), with a note.  Unknown types are regular files, as POSIX ustar
  says ("shall be treated as a regular file"), with a note.
- Names are bytes; they are decoded as UTF-8 with surrogateescape, so invalid UTF-8 survives.
  Paths are normalised (no leading '/' or './', no '.' parts or '//'); '..' anywhere is UnsafePath.
  The root ('.', '/', './') becomes "" and must be a directory.  Symlink targets stay raw;
  hardlink targets are normalised like names.
- Modes keep permission bits only (& 0o7777): the type lives in `Entry.kind`.

The walk is the hot loop of a check (one pass per member of every layer), so `_member` parses
a plain ustar/GNU header inline; what is rare (pax and GNU extended records, old GNU sparse maps,
odd types) lives in its own methods, entered behind one test.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..budget import AnalysisBudget
from ..errors import AnalysisBudgetExceeded, DigestMismatch, LayerError, TruncatedLayer, UnsafePath
from ..fs.node import NO_XATTRS, Entry, EntryBuilder, Kind
from ..streams import ReadStream
from .readahead import CHUNK
from .select import NOT_WANTED, AnalysisFailed, Analyzer, AnalyzeSpec, CaptureSpec, OverBudget, any_matcher

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
_new_entry = object.__new__
#: pax records and GNU long names are read into memory: cap them (a path is at most PATH_MAX
#: 4096 bytes on Linux, an xattr value 64 KiB).
MAX_META_BYTES = 1 << 20
#: What one layer's index may hold in memory: entries (about _ENTRY_BYTES each plus their
#: names and xattrs) and bytes captured under a cap.  Real layers need tens of MB; a hostile one compresses
#: millions of 4 KiB names or 1 MiB captures of zeros into a few MB of blob.  Past it the layer
#: is refused (LayerError), never indexed in part.
MAX_INDEX_BYTES = 512 << 20
_ENTRY_BYTES = 256
# Memos of repeated header fields (owners, mtimes) are cleared past this many values.
_MEMO_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class TarListing:
    """What a tar stream holds: entries in tar order (duplicates kept), captured bytes, notes."""

    entries: tuple[Entry, ...]
    captured: Mapping[str, bytes]
    complete: frozenset[str]
    notes: tuple[str, ...]
    analyses: Mapping[str, Any] = field(default_factory=dict)


class _Blocks:
    """Read-ahead over the uncompressed stream; `offset` is the stream position of the next byte.

    Works on the chunks `read()` returns (1 MiB from ReadAhead) without copying them: a header
    is one slice of the current chunk.
    """

    __slots__ = ("_buf", "_end", "_pos", "_src", "offset")

    def __init__(self, src: Any) -> None:
        self._src = src
        self._buf = b""
        self._pos = self._end = 0
        self.offset = 0

    def _fill(self) -> bool:
        self._buf = self._src.read(CHUNK)
        self._pos, self._end = 0, len(self._buf)
        return self._end > 0

    def take(self, n: int) -> bytes:
        """`n` bytes, or fewer at EOF."""
        pos, avail = self._pos, self._end - self._pos
        if avail >= n:
            self._pos = pos + n
            self.offset += n
            return self._buf[pos : pos + n]
        parts, got = [self._buf[pos : self._end]], avail
        self._pos = self._end
        while got < n and self._fill():
            k = min(n - got, self._end)
            parts.append(self._buf[:k])
            self._pos = k
            got += k
        self.offset += got
        return b"".join(parts)

    def skip(self, n: int) -> int:
        """Skip `n` bytes; returns how many there were."""
        avail = self._end - self._pos
        if avail >= n:
            self._pos += n
            self.offset += n
            return n
        got = avail
        self._pos = self._end
        while got < n and self._fill():
            k = min(n - got, self._end)
            self._pos = k
            got += k
        self.offset += got
        return got


# The first 329 bytes of a POSIX ustar header: name, mode+uid+gid, size, mtime, (checksum),
# typeflag, linkname, magic+version, uname+gname.  Fields that repeat together are one field, the
# key of one memo; devmajor/devminor (329) and prefix (345) are sliced only when they apply.
_HEADER = struct.Struct("100s24s12s12s8xc100s8s64s")


def looks_like_tar(head: bytes) -> bool:
    """True if `head` (a stream's first bytes) is a tar header with a valid checksum."""
    return len(head) == BLOCK and head != _ZERO_BLOCK and _checksum_ok(head)


def _checksum_ok(hdr: bytes) -> bool:
    return _sums_to(hdr, *_checksum_field(hdr[148:156]))


def _checksum_field(field: bytes) -> tuple[int | None, int]:
    """The checksum a header states (None if unreadable), and what counting its own field as
    spaces (POSIX ustar) adds to the byte sum of the whole header."""
    try:
        stored: int | None = _octal(field)
    except ValueError:
        stored = None
    return stored, 256 - ((zlib.adler32(field) & 0xFFFF) - 1)


def _sums_to(hdr: bytes, stored: int | None, spaces: int) -> bool:
    if stored is None:
        return False
    # adler32's low half is 1 + (sum of bytes mod 65521): at C speed instead of a Python sum()
    # over 512 ints, and exact while the sum stays under 65521: for a header of ASCII bytes
    # (at most 512 x 127 = 65024, nearly every header: one call), or for 256 bytes of any kind.
    if hdr.isascii():
        return (zlib.adler32(hdr) & 0xFFFF) - 1 + spaces == stored
    total = (zlib.adler32(hdr[:256]) & 0xFFFF) + (zlib.adler32(hdr[256:]) & 0xFFFF) - 2 + spaces
    if total == stored:
        return True
    # Some old tars summed signed chars; tarfile and GNU tar accept both.
    high = sum(1 for b in hdr if b > 127) - sum(1 for b in hdr[148:156] if b > 127)
    return total - 256 * high == stored


def _octal(field: bytes) -> int:
    try:
        # The common case: digits (int() skips spaces around them), then NUL; the checksum field
        # is usually "006620\0 ", which a rstrip of NULs alone would leave unparseable.
        return int(field.split(b"\0", 1)[0] or b"0", 8)
    except ValueError:
        pass
    if field and field[0] & 0x80:
        # GNU base-256: 0x80 marks a positive number, 0xff a negative one (two's complement).
        if field[0] == 0xFF:
            return int.from_bytes(field, "big", signed=True)
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _cstr(field: bytes) -> bytes:
    return field.split(b"\0", 1)[0]


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


_KINDS = {
    b"0": Kind.FILE,
    b"\0": Kind.FILE,
    b"7": Kind.FILE,
    b"1": Kind.HARDLINK,
    b"2": Kind.SYMLINK,
    b"3": Kind.CHAR,
    b"4": Kind.BLOCK,
    b"5": Kind.DIR,
    b"6": Kind.FIFO,
}
# Enum attribute lookups are slow in the per-member path: bind the members once.
_FILE, _DIR, _SYMLINK, _HARDLINK = Kind.FILE, Kind.DIR, Kind.SYMLINK, Kind.HARDLINK
_CHAR, _BLOCK = Kind.CHAR, Kind.BLOCK
_HEADER_ONLY = frozenset({Kind.HARDLINK, Kind.SYMLINK, Kind.CHAR, Kind.BLOCK, Kind.DIR, Kind.FIFO})
_POSIX_MAGIC = b"ustar\x0000"
_XATTR = b"SCHILY.xattr."


#: The pax keywords a member's entry is made of (besides its own SCHILY.xattr.* records).
_KEYWORDS = (
    b"path",
    b"linkpath",
    b"size",
    b"uid",
    b"gid",
    b"mtime",
    b"uname",
    b"gname",
    b"GNU.sparse.realsize",
    b"GNU.sparse.size",
    b"GNU.sparse.name",
)


_KEYWORD_SET = frozenset(_KEYWORDS)


def _effective(global_pax: dict[bytes, bytes], pax: dict[bytes, bytes]) -> dict[bytes, bytes]:
    # An empty value undefines a keyword, so the ustar field applies again (POSIX pax
    # "Extended Header Keywords"); xattrs are the exception: an empty xattr value is a value.
    # Only the keywords read are looked up, so a member costs its own records whatever the
    # global ones hold (merging them all made a layer quadratic: members x global records).
    merged = {}
    for key in _KEYWORDS:
        value = pax[key] if key in pax else global_pax.get(key)
        if value:
            merged[key] = value
    for key, value in pax.items():
        if key.startswith(_XATTR):
            merged[key] = value
    return merged


def normalize_path(raw: str, where: str) -> str:
    """A member name as a relative POSIX path with no '.', '..' or empty parts; root is ""."""
    if raw and raw[0] not in "./" and "//" not in raw and "/." not in raw and raw[-1] != "/":
        return raw  # the common case: already clean
    parts = []
    for part in raw.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise UnsafePath(f"{where}: member name {raw!r} contains '..', which would escape the root")
        parts.append(part)
    return "/".join(parts)


#: The header fields of a member that pax records and GNU long names can override: name, link
#: target, size, uid, gid, mtime, uname, gname, xattrs, and a GNU sparse file's real size.  A
#: plain tuple: a NamedTuple cost pax-heavy layers 10% of their walk.
_Fields = tuple[bytes, bytes, int, int, int, int, str, str, Mapping[str, bytes], int | None]


class _Walker:
    """State of one walk; `run()` fills entries, captured, complete and notes."""

    def __init__(
        self, stream: Any, name: str, capture: CaptureSpec | None, analyze: AnalyzeSpec | None = None
    ) -> None:
        self.blocks = _Blocks(stream)
        self.name = name
        self.capture = capture if capture else None
        self.analyze = analyze if analyze else None
        self.analyses: dict[str, Any] = {}
        self.entries: list[Entry] = []
        self.captured: dict[str, bytes] = {}
        self.complete: set[str] = set()
        self.notes: list[str] = []
        self.global_pax: dict[bytes, bytes] = {}  # only _KEYWORDS
        self.global_xattrs_noted = False
        self.pax: dict[bytes, bytes] = {}
        self.long_name: bytes | None = None
        self.long_link: bytes | None = None
        self.last = ""  # last member name, for messages
        self.owner_names: dict[bytes, tuple[str, str]] = {}  # uname+gname field -> names
        self.numbers: dict[bytes, Any] = {}  # raw header field(s) -> parsed value(s)
        self.checksums: dict[bytes, tuple[int | None, int]] = {}  # checksum field -> _checksum_field
        # Members no spec asks for (nearly all) are told apart by one regex call.
        self.wanted = any_matcher(self.capture, self.analyze)
        self.held = 0  # bytes the index holds so far, against budget
        self.budget = MAX_INDEX_BYTES

    def _over_budget(self) -> None:
        raise LayerError(
            f"{self.name}: its index would hold more than {self.budget} bytes (entries, names, "
            f"xattrs, captured files) at member {self.last!r}; refused as hostile"
        )

    def fail(self, message: str, *, named: bool = False) -> TruncatedLayer:
        after = f" (after member {self.last!r})" if self.last and not named else ""
        return TruncatedLayer(f"{self.name}: {message}{after}")

    def run(self) -> None:
        blocks = self.blocks
        checksums = self.checksums
        while True:
            start = blocks.offset
            # blocks.take(BLOCK), inline: a header nearly always lies inside the current chunk.
            pos = blocks._pos
            if blocks._end - pos >= BLOCK:
                hdr = blocks._buf[pos : pos + BLOCK]
                blocks._pos = pos + BLOCK
                blocks.offset = start + BLOCK
            else:
                hdr = blocks.take(BLOCK)
                if len(hdr) < BLOCK:
                    self._end_without_blocks(start, hdr)
                    return
            if hdr == _ZERO_BLOCK:
                following = blocks.take(BLOCK)
                if following and following != _ZERO_BLOCK:
                    raise self.fail(f"not a tar: a zero block at offset {start} is followed by data")
                if len(following) < BLOCK:
                    self.notes.append("only one end-of-archive block (accepted, as Go's archive/tar does)")
                return
            # The checksum field takes a few thousand values in a layer: each is parsed once.
            field = hdr[148:156]
            stated = checksums.get(field)
            if stated is None:
                if len(checksums) > _MEMO_LIMIT:
                    checksums.clear()
                stated = checksums[field] = _checksum_field(field)
            if not _sums_to(hdr, *stated):
                raise self.fail(f"not a tar: bad header checksum at offset {start}")
            self._member(hdr, start)

    def _end_without_blocks(self, start: int, partial: bytes) -> None:
        if partial:
            raise self.fail(f"stream ends inside a tar header at offset {start}")
        if self.pax or self.long_name is not None or self.long_link is not None:
            raise self.fail(f"stream ends after an extended header at offset {start}, before its member")
        if start == 0:
            self.notes.append("empty stream read as an empty tar")
        else:
            self.notes.append("no end-of-archive blocks after the last member (accepted, as Go tools do)")

    def _number(self, field: bytes, start: int) -> int:
        try:
            return _octal(field)
        except ValueError:
            raise self.fail(f"invalid number {field!r} in the tar header at offset {start}") from None

    def _meta(self, size: int, start: int) -> bytes:
        if size > MAX_META_BYTES:
            raise self.fail(f"extended header of {size} bytes at offset {start} exceeds {MAX_META_BYTES}")
        data = self.blocks.take(size)
        if len(data) < size or self.blocks.skip(-size % BLOCK) < -size % BLOCK:
            raise self.fail(f"stream ends inside the extended header at offset {start}")
        return data

    def _member(self, hdr: bytes, start: int) -> None:
        name_f, owner_f, size_f, mtime_f, typeflag, link_f, magic_f, names_f = _HEADER.unpack_from(hdr)
        # mode, uid, gid and mtime repeat across a layer's members: each distinct field is parsed once.
        numbers = self.numbers
        owner, mtime = numbers.get(owner_f), numbers.get(mtime_f)
        try:
            try:
                size = int(size_f.split(b"\0", 1)[0] or b"0", 8)  # _octal's common case, inline
            except ValueError:
                size = _octal(size_f)
            if owner is None or mtime is None:
                if len(numbers) > _MEMO_LIMIT:
                    numbers.clear()  # all distinct (real mtimes): the memo stays small anyway
                if owner is None:
                    owner = numbers[owner_f] = (
                        _octal(owner_f[:8]) & 0o7777, _octal(owner_f[8:16]), _octal(owner_f[16:])
                    )  # fmt: skip
                if mtime is None:
                    mtime = numbers[mtime_f] = _octal(mtime_f)
        except ValueError:
            raise self.fail(f"invalid number in the tar header at offset {start}") from None
        if size < 0:
            # GNU base-256 can say -512; skipping that would walk back onto this header forever.
            # Go's archive/tar refuses negative sizes too (ErrHeader).
            raise self.fail(f"negative size {size} in the tar header at offset {start}")
        mode, uid, gid = owner
        if typeflag in b"xgLK":
            self._extended(typeflag, size, start)
            return
        magic = magic_f[:5] == b"ustar"  # POSIX ("ustar\000") or GNU ("ustar  \0")
        raw_name = name_f.split(b"\0", 1)[0]
        if hdr[345] and magic_f == _POSIX_MAGIC:  # GNU keeps atime/ctime where prefix would be
            raw_name = _cstr(hdr[345:500]) + b"/" + raw_name
        if magic:
            # A layer has few owner names: decode each pair once, and share the strings.
            owner_names = self.owner_names
            names = owner_names.get(names_f)
            if names is None:
                if len(owner_names) > _MEMO_LIMIT:
                    owner_names.clear()
                names = owner_names[names_f] = (_decode(_cstr(names_f[:32])), _decode(_cstr(names_f[32:])))
            uname, gname = names
        else:
            uname = gname = ""
        raw_link = link_f.split(b"\0", 1)[0]
        kind = _KINDS.get(typeflag)
        sparse_real = self._old_gnu_sparse(hdr, start) if typeflag == b"S" else None
        xattrs: Mapping[str, bytes] = NO_XATTRS
        if self.pax or self.global_pax or self.long_name is not None or self.long_link is not None:
            ustar = (raw_name, raw_link, size, uid, gid, mtime, uname, gname, xattrs, sparse_real)
            raw_name, raw_link, size, uid, gid, mtime, uname, gname, xattrs, sparse_real = self._overridden(
                ustar, start
            )
        name = raw_name.decode("utf-8", "surrogateescape")
        self.last = name
        if kind is None or sparse_real is not None or (typeflag == b"\0" and name.endswith("/")):
            kind = self._odd_kind(kind, typeflag, name, sparse=sparse_real is not None)
        data_size = 0 if kind in _HEADER_ONLY else size

        path = normalize_path(name, self.name)
        if not path and kind is not _DIR:
            raise UnsafePath(f"{self.name}: member {name!r} would replace the root directory with a {kind}")
        linkname = ""
        if kind is _SYMLINK:
            linkname = _decode(raw_link)
        elif kind is _HARDLINK:
            linkname = self._hardlink_target(raw_link, name)
        major = minor = 0
        if magic and (kind is _CHAR or kind is _BLOCK):
            major, minor = self._device(hdr[329:337], hdr[337:345], start)
        blocks = self.blocks
        # make_entry(...), inline: slot stores on a fresh builder, then the switch to Entry.
        entry: Any = _new_entry(EntryBuilder)
        entry.path, entry.kind, entry.mode, entry.uid, entry.gid = path, kind, mode, uid, gid
        entry.size = data_size if sparse_real is None else sparse_real
        entry.mtime, entry.linkname, entry.uname, entry.gname = mtime, linkname, uname, gname
        entry.devmajor, entry.devminor, entry.xattrs, entry.offset = major, minor, xattrs, blocks.offset
        entry.__class__ = Entry
        self.entries.append(entry)
        self.held += _ENTRY_BYTES + len(path) + len(linkname)
        if xattrs:
            self.held += sum(len(k) + len(v) for k, v in xattrs.items())
        if self.held > self.budget:
            self._over_budget()
        wanted = self.wanted
        if wanted is not None and kind is _FILE and sparse_real is None and wanted(path):
            self._data(entry, data_size, sparse=False)
            return
        # What _data does for a member whose bytes nobody wants: forget what an earlier record
        # of the path left, and skip the data.
        if self.analyses:
            self.analyses.pop(path, None)
        if self.captured:
            self.captured.pop(path, None)
            self.complete.discard(path)
        total = data_size + (-data_size % BLOCK)
        if blocks._end - blocks._pos >= total:
            blocks._pos += total
            blocks.offset += total
        elif blocks.skip(total) < total:
            raise self._cut(entry, data_size)

    def _overridden(self, ustar: _Fields, start: int) -> _Fields:
        """A member's fields after the pending pax records and GNU long names, then forgotten."""
        name, link, size, uid, gid, mtime, uname, gname, _, sparse_real = ustar
        pax = _effective(self.global_pax, self.pax)
        name = pax.get(b"path") or self.long_name or name
        link = pax.get(b"linkpath") or self.long_link or link
        self.pax, self.long_name, self.long_link = {}, None, None
        if b"GNU.sparse.realsize" in pax or b"GNU.sparse.size" in pax:
            real = pax.get(b"GNU.sparse.realsize") or pax[b"GNU.sparse.size"]
            sparse_real = self._pax_int(real, b"GNU.sparse.realsize", start)
            name = pax.get(b"GNU.sparse.name") or name
        if b"size" in pax:
            size = self._pax_int(pax[b"size"], b"size", start)
            if size < 0:
                raise self.fail(f"negative pax size {size} for the member at offset {start}")
        uid = self._pax_int(pax[b"uid"], b"uid", start) if b"uid" in pax else uid
        gid = self._pax_int(pax[b"gid"], b"gid", start) if b"gid" in pax else gid
        mtime = self._mtime(pax[b"mtime"], start) if b"mtime" in pax else mtime
        uname = _decode(pax[b"uname"]) if b"uname" in pax else uname
        gname = _decode(pax[b"gname"]) if b"gname" in pax else gname
        return name, link, size, uid, gid, mtime, uname, gname, _xattrs(pax) or NO_XATTRS, sparse_real

    def _hardlink_target(self, raw_link: bytes, name: str) -> str:
        linkname = normalize_path(_decode(raw_link), self.name)
        if not linkname:
            raise UnsafePath(f"{self.name}: hardlink {name!r} points at the root or nowhere")
        return linkname

    def _device(self, major_f: bytes, minor_f: bytes, start: int) -> tuple[int, int]:
        try:
            return _octal(major_f), _octal(minor_f)
        except ValueError:
            raise self.fail(f"invalid device number in the tar header at offset {start}") from None

    def _odd_kind(self, kind: Kind | None, typeflag: bytes, name: str, *, sparse: bool) -> Kind:
        """The kind of a sparse file, an unknown type or a v7 directory (see the module docstring)."""
        if sparse:
            self.notes.append(f"member {name!r} is a GNU sparse file: metadata kept, contents not read")
            return _FILE
        if kind is None:
            self.notes.append(f"member {name!r} has unknown type {typeflag!r}: read as a regular file")
            return _FILE
        return _DIR

    def _extended(self, typeflag: bytes, size: int, start: int) -> None:
        """pax 'x' (next member) and 'g' (all later members) records; GNU 'L'/'K' long names."""
        data = self._meta(size, start)
        if typeflag == b"x":
            self.pax.update(self._pax_records(data, start))
        elif typeflag == b"g":
            records = self._pax_records(data, start)
            # Global xattrs would be copied into every later entry, and no archiver writes them
            # (containerd and moby ignore global headers altogether): dropped, with a note.
            if any(key.startswith(_XATTR) for key in records) and not self.global_xattrs_noted:
                self.global_xattrs_noted = True
                self.notes.append(f"xattrs in a global pax header at offset {start} ignored")
            self.global_pax.update((k, v) for k, v in records.items() if k in _KEYWORD_SET)
        elif typeflag == b"L":
            self.long_name = _cstr(data)
        else:
            self.long_link = _cstr(data)

    def _data(self, entry: Entry, size: int, *, sparse: bool) -> None:
        path, blocks = entry.path, self.blocks
        cap: int | None = NOT_WANTED
        if self.capture is not None and entry.kind is _FILE and not sparse:
            cap = self.capture.cap(path)
        if self.analyses:
            self.analyses.pop(path, None)  # a later record of the path replaces the result
        spec = self.analyze
        analyzer = spec.analyzer(path) if spec is not None and entry.kind is _FILE else None
        if spec is not None and analyzer is not None and not sparse:
            self._analyze(entry, size, analyzer, spec.budget, cap)
            return
        if cap == NOT_WANTED:
            if self.captured:
                self.captured.pop(path, None)  # a later record of the path replaces the bytes
                self.complete.discard(path)
            kept = 0
        else:
            keep = size if cap is None else min(cap, size)
            # A whole file (cap None) is asked for by a caller that bounds it itself (cat);
            # capped captures are what a hostile layer multiplies.  Checked before reading:
            # `size` is only what the header claims.
            if cap is not None and self.held + keep > self.budget:
                self._over_budget()
            data = blocks.take(keep)
            kept = len(data)
            if kept == keep:
                self.captured[path] = data
                self.held += kept if cap is not None else 0
                if keep == size:
                    self.complete.add(path)
                else:
                    self.complete.discard(path)
        total = size + (-size % BLOCK)
        if kept + blocks.skip(total - kept) < total:
            raise self._cut(entry, size)

    def _analyze(
        self, entry: Entry, size: int, analyzer: Analyzer, budget: AnalysisBudget, cap: int | None
    ) -> None:
        reader = MemberReader(self.blocks, size, 0 if cap == NOT_WANTED else (size if cap is None else cap))
        try:
            self.analyses[entry.path] = analyzer(entry, reader, budget)
        except DigestMismatch:
            raise
        except AnalysisBudgetExceeded as exc:
            self.analyses[entry.path] = OverBudget(str(exc))
        except Exception as exc:
            # The member's own damage (a corrupt initrd) is the analyzer's finding, not the layer's;
            # a layer cut inside this member still fails just below, when the rest is skipped.
            self.analyses[entry.path] = AnalysisFailed(f"{type(exc).__name__}: {exc}")
        kept = reader.kept()
        if kept is not None:
            self.captured[entry.path] = kept
            self.held += len(kept)
            if len(kept) == size:
                self.complete.add(entry.path)
            else:
                self.complete.discard(entry.path)
        total = size + (-size % BLOCK)
        done = reader.consumed
        if done + self.blocks.skip(total - done) < total:
            raise self._cut(entry, size)

    def _cut(self, entry: Entry, size: int) -> TruncatedLayer:
        have = min(size, self.blocks.offset - entry.offset)
        return self.fail(
            f"stream ends inside member {entry.path!r} ({have} of {size} data bytes, "
            f"data at offset {entry.offset})",
            named=True,
        )

    def _old_gnu_sparse(self, hdr: bytes, start: int) -> int:
        # GNU 'S': real size at 483, 'isextended' at 482; each extension block repeats the flag
        # at byte 504 (GNU tar manual, "Storing Sparse Files").
        real = self._number(hdr[483:495], start)
        extended = hdr[482]
        while extended:
            block = self.blocks.take(BLOCK)
            if len(block) < BLOCK:
                raise self.fail(f"stream ends inside a sparse map after offset {start}")
            extended = block[504]
        return real

    def _pax_records(self, data: bytes, start: int) -> dict[bytes, bytes]:
        """`"%d %s=%s\\n" % (length, keyword, value)` records; values are raw bytes."""
        out: dict[bytes, bytes] = {}
        pos, end = 0, len(data)
        while pos < end:
            if data[pos] == 0:
                break  # NUL padding written by some tools after the last record
            space = data.find(b" ", pos, pos + 21)
            try:
                length = int(data[pos:space]) if space > pos else 0
            except ValueError:
                length = 0
            stop = pos + length
            equals = data.find(b"=", space, stop) if length else -1
            if equals < 0 or stop > end or data[stop - 1] != 0x0A:
                raise self.fail(f"malformed pax record at offset {start} + {pos}")
            key, value = data[space + 1 : equals], data[equals + 1 : stop - 1]
            out[key] = value
            pos = stop
        return out

    def _pax_int(self, value: bytes, key: bytes, start: int) -> int:
        try:
            return int(value)
        except ValueError:
            raise self.fail(f"pax {key.decode()} {value!r} is not a number at offset {start}") from None

    def _mtime(self, value: bytes, start: int) -> int:
        text = value.split(b".", 1)[0]  # pax times may carry a fraction
        return self._pax_int(text if text not in (b"", b"-") else b"0", b"mtime", start)


def _xattrs(pax: dict[bytes, bytes]) -> dict[str, bytes]:
    # SCHILY.xattr values are binary (security.capability may hold NUL and '\n'): keep bytes.
    return {_decode(k[len(_XATTR) :]): v for k, v in pax.items() if k.startswith(_XATTR)}


class MemberReader(ReadStream):
    """A member's data as a stream, read straight from the tar stream (never past the member).

    The first `keep` bytes read are also kept (a capture of the same path); `consumed` tells the
    walker how much is left to skip when the analyzer returns early.
    """

    __slots__ = ("_blocks", "_head", "_keep", "consumed", "size")

    def __init__(self, blocks: _Blocks, size: int, keep: int) -> None:
        self._blocks = blocks
        self.size = size
        self.consumed = 0
        self._keep = keep
        self._head: list[bytes] = []

    def read(self, n: int = -1) -> bytes:
        left = self.size - self.consumed
        want = left if n is None or n < 0 else min(n, left)
        if want <= 0:
            return b""
        data = self._blocks.take(want)
        if self._keep and self.consumed < self._keep:
            self._head.append(data[: self._keep - self.consumed])
        self.consumed += len(data)
        return data

    def kept(self) -> bytes | None:
        """The kept head, completed from the stream if the analyzer read less than `keep`."""
        if not self._keep:
            return None
        if self.consumed < min(self._keep, self.size):
            self.read(min(self._keep, self.size) - self.consumed)
        return b"".join(self._head)


def read_tar(
    stream: Any,
    *,
    name: str = "tar stream",
    capture: CaptureSpec | None = None,
    analyze: AnalyzeSpec | None = None,
) -> TarListing:
    """Walk a tar stream (anything with read) to its end-of-archive; see the module docstring.

    The stream is not drained past the archive's end: callers that verify digests drain it.
    """
    walker = _Walker(stream, name, capture, analyze)
    walker.run()
    return TarListing(
        entries=tuple(walker.entries),
        captured=walker.captured,
        complete=frozenset(walker.complete),
        notes=tuple(walker.notes),
        analyses=walker.analyses,
    )
