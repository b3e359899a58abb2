"""What is inside an initramfs: cpio segments, members, kernel versions, dracut modules.

Bytes in, facts out (docs/tools.md "Kernels and initramfs", rules INI-002/INI-003).  An initrd is what
Linux's init/initramfs.c unpacks: a sequence of segments, each either an uncompressed cpio
archive (early microcode / ACPI tables, written first so the kernel finds them before the
decompressor runs) or a compressed stream of cpio archives, with zero bytes allowed between
them.  Only the newc (`070701`) and crc (`070702`) cpio formats are accepted by the kernel
(Documentation/driver-api/early-userspace/buffer-format.rst): 110-byte ASCII-hex header, name
and data each padded to 4 bytes, the archive ending at a member named `TRAILER!!!`.

The cpio stream is parsed here, natively (kairos-init#53 asked to stop needing `lsinitrd`);
decompression is ociboot.compression's.  Data flows through in chunks: memory holds the member
list and the few small files asked for, never the initrd.  A compressed segment is decoded to
the end of the file (gzip members and xz/bzip2 streams concatenate there); a segment after it
is not looked at separately.

Damaged input is a fact, not an exception: `InitrdInfo.problems` says what is wrong and where,
and `cap_hit` says the inspection stopped early (never to be counted as a pass).
"""

from __future__ import annotations

import io
import re
import stat
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from ..budget import MEMBER_COST, AnalysisBudget, Metered, no_charge
from ..compression import DECODE_COST, Compression, Readable, open_decompressed, sniff
from ..errors import TruncatedLayer, UnsupportedCompression
from ..streams import ReadStream
from . import _sniff

#: Files kept whole (up to `CAPTURE_LIMIT` bytes each) whatever the caller asks for.
DRACUT_MODULES_FILES = ("usr/lib/dracut/modules.txt", "lib/dracut/modules.txt")
CAPTURE_LIMIT = 1 << 20

_HEADER = 110
_HEX_FIELDS = re.compile(rb"[0-9A-Fa-f]{104}")
_NAME_MAX = 4096  # PATH_MAX; init/initramfs.c refuses longer names
_CHUNK = 1 << 16
_LZO_MAGIC = b"\x89LZO"
_MODULES = re.compile(r"(?:usr/)?lib/modules/([^/]+)(?:/|$)")
_TRAILER = "TRAILER!!!"
_CPIO_MAGICS = (b"070701", b"070702")


class CpioFormat(StrEnum):
    NEWC = "newc"  # 070701, "SVR4 with no CRC"
    CRC = "crc"  # 070702, same layout, check = sum of the data bytes


@dataclass(frozen=True, slots=True)
class CpioMember:
    name: str  # normalised: no leading `/` or `./`; the root is ""
    mode: int
    size: int
    segment: int  # index into InitrdInfo.segments

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)


@dataclass(frozen=True, slots=True)
class Segment:
    """One run of the initrd: an uncompressed cpio archive or one compressed stream."""

    offset: int  # where it starts in the initrd file
    compression: Compression
    format: CpioFormat | None  # of its first archive; None if no archive could be read
    archives: int  # archives that ended with TRAILER!!!
    members: int


@dataclass(frozen=True, slots=True)
class InitrdInfo:
    segments: tuple[Segment, ...]
    members: tuple[CpioMember, ...]
    kernel_versions: tuple[str, ...]  # directories under (usr/)lib/modules/, sorted
    dracut_modules: tuple[str, ...]  # lines of usr/lib/dracut/modules.txt, in file order
    microcode: tuple[str, ...]  # early microcode blobs (kernel/x86/microcode/*) in uncompressed segments
    files: Mapping[str, bytes] = field(compare=False)  # captured small files, by normalised name
    problems: tuple[str, ...] = ()
    cap_hit: bool = False
    description: str = ""  # libmagic's view of the first bytes

    @property
    def member_count(self) -> int:
        return len(self.members)

    @property
    def compression(self) -> Compression | None:
        """The main archive's compression: that of the last segment that held an archive."""
        for segment in reversed(self.segments):
            if segment.archives:
                return segment.compression
        return None

    @property
    def has_init(self) -> bool:
        return self.contains("init")

    @property
    def has_systemd(self) -> bool:
        return self.contains("usr/lib/systemd/systemd") or self.contains("lib/systemd/systemd")

    @property
    def ok(self) -> bool:
        """Readable to the end, within the cap, with at least one complete archive (INI-002)."""
        return not self.problems and not self.cap_hit and any(s.archives for s in self.segments)

    def contains(self, path: str) -> bool:
        wanted = _normalise(path)
        return any(m.name == wanted for m in self.members)


def inspect_initrd(
    data: bytes | bytearray | memoryview | Readable,
    *,
    cap: int = 1 << 30,
    capture: Collection[str] = (),
    budget: AnalysisBudget | None = None,
) -> InitrdInfo:
    """Walk every segment of an initrd and report what it holds.

    `data` is the whole initrd or a binary stream of it.  `cap` bounds the uncompressed bytes
    walked (a decompression bomb stops there, reported as `cap_hit`).  `capture` names extra
    members (normalised paths) whose bytes to keep in `files`, up to `CAPTURE_LIMIT` each.
    `budget` (the image's) is charged for every byte read, compressed and decompressed (zero
    padding too), weighted by what decoding costs (compression.DECODE_COST), and MEMBER_COST per
    member.
    Never raises on bad bytes; a failing stream's own errors (e.g. a digest mismatch) and
    AnalysisBudgetExceeded propagate.
    """
    raw = io.BytesIO(bytes(data)) if isinstance(data, bytes | bytearray | memoryview) else data
    charge = budget.spend if budget is not None else no_charge
    walk = _Walk(cap, {*DRACUT_MODULES_FILES, *(_normalise(p) for p in capture)}, charge)
    reader = _Reader(raw, charge)
    description = _sniff.describe(reader.peek(1 << 16))
    try:
        walk.run(reader)
    except _CapHit:
        walk.cap_hit = True
        walk.problems.append(f"cap hit: stopped after {walk.spent} uncompressed bytes (cap {cap})")
    return walk.result(description)


def _normalise(name: str) -> str:
    while name.startswith(("./", "/")):
        name = name[1:] if name.startswith("/") else name[2:]
    return "" if name == "." else name.rstrip("/")


class _CapHit(Exception):
    pass


class _Reader(ReadStream):
    """A byte stream with peek, exact reads and an offset (so that cpio's 4-byte alignment and
    problem messages can name positions).  Buffered bytes are `_buf[_pos:]`; slicing from a
    position keeps small reads from copying the whole buffer each time."""

    def __init__(self, raw: Readable, charge: Callable[[int], None]) -> None:
        self._raw = raw
        self._charge = charge  # every byte pulled from `raw` is work done
        self._buf = b""
        self._pos = 0
        self.offset = 0

    def _fill(self, n: int) -> None:
        if len(self._buf) - self._pos >= n:
            return
        parts = [self._buf[self._pos :]]
        have = len(parts[0])
        while have < n:
            chunk = self._raw.read(max(_CHUNK, n - have))
            if not chunk:
                break
            self._charge(len(chunk))
            parts.append(chunk)
            have += len(chunk)
        self._buf, self._pos = b"".join(parts), 0

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return self._buf[self._pos : self._pos + n]

    def exact(self, n: int) -> bytes:
        """`n` bytes, fewer only at EOF."""
        self._fill(n)
        data = self._buf[self._pos : self._pos + n]
        self._pos += len(data)
        self.offset += len(data)
        return data

    def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes: the Readable handed to decompressors."""
        if n is None or n < 0:
            rest = self._raw.read()
            self._charge(len(rest))
            data = self._buf[self._pos :] + rest
            self._buf, self._pos = b"", 0
            self.offset += len(data)
            return data
        return self.exact(min(n, max(1, len(self._buf) - self._pos)))

    def chunks(self, n: int) -> Iterator[bytes]:
        """The next `n` bytes in bounded pieces; stops early at EOF."""
        while n > 0:
            chunk = self.exact(min(n, _CHUNK))
            if not chunk:
                return
            n -= len(chunk)
            yield chunk

    def skip_zeros(self) -> None:
        while self.peek(1) == b"\0":
            rest = self._buf[self._pos :]
            skipped = len(rest) - len(rest.lstrip(b"\0"))
            self._pos += skipped
            self.offset += skipped


class _Walk:
    """State of one inspection: what was found so far, and the budget spent."""

    def __init__(self, cap: int, wanted: set[str], charge: Callable[[int], None]) -> None:
        self.cap = cap
        self.charge = charge
        self.spent = 0
        self.wanted = wanted
        self.segments: list[Segment] = []
        self.members: list[CpioMember] = []
        self.files: dict[str, bytes] = {}
        self.problems: list[str] = []
        self.cap_hit = False

    def spend(self, n: int) -> None:
        if self.spent + n > self.cap:
            raise _CapHit
        self.spent += n

    # -- segments -------------------------------------------------------------------------

    def run(self, reader: _Reader) -> None:
        if not reader.peek(1):
            self.problems.append("empty initrd")
            return
        while True:
            reader.skip_zeros()
            head = reader.peek(6)
            if not head:
                break
            start = reader.offset
            if head in _CPIO_MAGICS:
                if not self._plain_segment(reader, start, head):
                    return
                continue
            compression = sniff(head)
            if compression is Compression.NONE:
                self.problems.append(self._garbage(head, f"at offset {start}"))
                return
            self._compressed_segment(reader, start, compression)
            return  # the decompressor has read the file to its end

    def _plain_segment(self, reader: _Reader, start: int, head: bytes) -> bool:
        if start % 4:
            # init/initramfs.c only takes a cpio header at a 4-byte aligned offset.
            self.problems.append(f"cpio header at unaligned offset {start}")
            return False
        where = "offset {} of the initrd"
        index = len(self.segments)
        before = len(self.members)
        fmt, ended, problem = None, False, None
        try:
            fmt, ended, problem = self._archive(reader, index, where)
        finally:
            count = len(self.members) - before
            self.segments.append(Segment(start, Compression.NONE, fmt, int(ended), count))
        if problem:
            self.problems.append(problem)
        return ended

    def _compressed_segment(self, reader: _Reader, start: int, compression: Compression) -> None:
        index = len(self.segments)
        before = len(self.members)
        what = f"{compression} segment at offset {start}"
        where = f"offset {{}} of the {what}"
        per_in, per_out = DECODE_COST[compression]
        source = Metered(reader, lambda n: self.charge(n * per_in))
        decoded = open_decompressed(source, compression, what, zero_padding_ends=True)
        inner = _Reader(decoded, lambda n: self.charge(n * per_out))
        fmt: CpioFormat | None = None
        archives = 0
        problem = None
        try:
            while True:
                inner.skip_zeros()
                head = inner.peek(6)
                if not head:
                    if not archives:
                        problem = f"{what}: no cpio archive inside"
                    break
                if head not in _CPIO_MAGICS:
                    problem = self._garbage(head, f"inside the {what}, at decompressed offset {inner.offset}")
                    break
                found, ended, problem = self._archive(inner, index, where)
                fmt = fmt or found
                archives += int(ended)
                if problem:
                    break
        except (TruncatedLayer, UnsupportedCompression) as exc:  # the decoder's own verdict
            problem = str(exc)
        finally:
            self.segments.append(Segment(start, compression, fmt, archives, len(self.members) - before))
        if problem:
            self.problems.append(problem)

    @staticmethod
    def _garbage(head: bytes, where: str) -> str:
        if head.startswith(b"070707"):
            return f"odc cpio (070707) {where}: the Linux kernel reads only newc/crc cpio"
        if head.startswith(_LZO_MAGIC):
            return f"lzo-compressed data {where}: not supported for inspection"
        return f"garbage {where}: {head!r} is neither cpio nor a known compression"

    # -- one cpio archive -------------------------------------------------------------------

    def _archive(self, r: _Reader, segment: int, where: str) -> tuple[CpioFormat | None, bool, str | None]:
        """Read members up to TRAILER!!!: (format, ended at the trailer, problem)."""
        fmt: CpioFormat | None = None
        while True:
            at = r.offset
            self.charge(MEMBER_COST)
            self.spend(_HEADER)
            header = r.exact(_HEADER)
            if len(header) < _HEADER:
                return (
                    fmt,
                    False,
                    f"truncated: cpio archive ends at {where.format(r.offset)} before TRAILER!!!",
                )
            magic = header[:6]
            if magic not in _CPIO_MAGICS or not _HEX_FIELDS.fullmatch(header[6:]):
                return fmt, False, f"bad cpio header at {where.format(at)}: {header[:14]!r}"
            fmt = fmt or (CpioFormat.NEWC if magic == b"070701" else CpioFormat.CRC)
            fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
            mode, size, namesize, check = fields[1], fields[6], fields[11], fields[12]
            if not 1 <= namesize <= _NAME_MAX:
                return fmt, False, f"bad cpio header at {where.format(at)}: name size {namesize}"
            self.spend(namesize + 3)
            raw_name = r.exact(namesize)
            if len(raw_name) < namesize:
                return fmt, False, f"truncated: cpio name cut at {where.format(r.offset)}"
            if raw_name[-1:] != b"\0":
                return fmt, False, f"bad cpio header at {where.format(at)}: name is not NUL-terminated"
            name = raw_name[:-1].decode("utf-8", "backslashreplace")
            r.exact(-r.offset % 4)
            if name == _TRAILER:
                return fmt, True, None
            problem = self._data(r, name, size, mode, check if magic == b"070702" else None, where)
            self.members.append(CpioMember(_normalise(name), mode, size, segment))
            if problem:
                return fmt, False, problem

    def _data(self, r: _Reader, name: str, size: int, mode: int, check: int | None, where: str) -> str | None:
        self.spend(size + 3)
        start = r.offset
        keep = _normalise(name) in self.wanted and stat.S_ISREG(mode) and size <= CAPTURE_LIMIT
        kept: list[bytes] = []
        total = got = 0
        for chunk in r.chunks(size):
            got += len(chunk)
            if check is not None:
                total += sum(chunk)
            if keep:
                kept.append(chunk)
        if got < size:
            return f"truncated: member {name!r} cut at {where.format(r.offset)} ({got} of {size} bytes)"
        r.exact(-r.offset % 4)
        if check is not None and stat.S_ISREG(mode) and total & 0xFFFFFFFF != check:
            return f"crc cpio: checksum mismatch for member {name!r} at {where.format(start)}"
        if keep:
            self.files[_normalise(name)] = b"".join(kept)
        return None

    # -- result ---------------------------------------------------------------------------

    def result(self, description: str) -> InitrdInfo:
        versions = sorted({m.group(1) for x in self.members if (m := _MODULES.match(x.name))})
        modules: tuple[str, ...] = ()
        for path in DRACUT_MODULES_FILES:
            if path in self.files:
                text = self.files[path].decode("utf-8", "replace")
                modules = tuple(line.strip() for line in text.splitlines() if line.strip())
                break
        plain = {i for i, s in enumerate(self.segments) if s.compression is Compression.NONE}
        microcode = tuple(
            m.name
            for m in self.members
            if m.segment in plain and m.is_file and m.name.startswith("kernel/x86/microcode/")
        )
        if not self.problems and not any(s.archives for s in self.segments):
            self.problems.append("no cpio archive found")
        return InitrdInfo(
            segments=tuple(self.segments),
            members=tuple(self.members),
            kernel_versions=tuple(versions),
            dracut_modules=modules,
            microcode=microcode,
            files=dict(self.files),
            problems=tuple(self.problems),
            cap_hit=self.cap_hit,
            description=description,
        )
