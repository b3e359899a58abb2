"""Compression of layers and initrds: sniffed from magic, decompressed as a bounded stream.

This is the only module that imports zstandard, lz4 and the faster inflaters (isal, zlib-ng); every
decompressor error is translated here into ociboot.errors, naming what was being read.

Decisions:
- Compression is sniffed from the first bytes, not taken from a media type (containerd and
  go-containerregistry's PeekCompression do the same); the caller decides what a mismatch means.
- gzip: multi-member streams and zero padding after the last member are read through (RFC 1952
  §2.2 allows members back to back); isal inflates 2-2.5x faster than zlib (docs/measurements.md).
- zstd: `stream_reader(read_across_frames=True)`, because layers may hold several frames and
  `decompressobj()` stops after the first.  zstandard ends *silently* on a truncated frame, so
  the compressed bytes are tracked frame by frame (RFC 8878 §3.1) to tell a clean end from a cut.
- lz4 legacy (Linux initramfs `lz4 -l`): the framing (a u32 size before each block) is read
  here and each block is decoded by liblz4 (python-lz4's `lz4.block`), at C speed and into a
  buffer of the format's 8 MiB block size.
"""

from __future__ import annotations

import _compression
import bz2
import gzip
import io
import lzma
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import IO, Any, Protocol, cast

import lz4.block
import zstandard

from .errors import OcibootError, SourceError, TruncatedLayer, UnsupportedCompression
from .streams import ReadStream

# What the decoders raise on bad input.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # gzip.BadGzipFile, bz2's "Invalid data stream"
    ValueError,
    zlib.error,
    lzma.LZMAError,
    zstandard.ZstdError,
    lz4.block.LZ4BlockError,  # a corrupt block, or one decoding past the 8 MiB block size
)
_GzipFile: Any
try:
    from isal import igzip as _igzip
    from isal import isal_zlib as _isal_zlib

    _GzipFile = _igzip.IGzipFile
    _DECODE_ERRORS = (*_DECODE_ERRORS, cast(type[BaseException], _isal_zlib.error))
except ImportError:  # pragma: no cover - depends on the optional `fast` extra
    try:
        from zlib_ng import gzip_ng as _gzip_ng
        from zlib_ng import zlib_ng as _zlib_ng

        _GzipFile = _gzip_ng.GzipNGFile
        _DECODE_ERRORS = (*_DECODE_ERRORS, cast(type[BaseException], _zlib_ng.error))
    except ImportError:
        _GzipFile = gzip.GzipFile


class Compression(StrEnum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"
    XZ = "xz"
    BZIP2 = "bzip2"
    LZMA = "lzma"
    LZ4 = "lz4"


#: Enough bytes for `sniff` to decide.
SNIFF_BYTES = 6

#: What decoding costs in ociboot.budget's unit (about the CPU time of reading one byte in the
#: analyzers' walks, ~1 ns): per compressed byte read, per decompressed byte produced.  The worst
#: of code-like and random data, measured on 2 cores (ns per compressed byte: bzip2 420, lzma 65,
#: xz 38, zstd 12, gzip 4, lz4 2; per output byte of a bomb: bzip2 2.9, xz 2.3, the rest < 1).
DECODE_COST: dict[Compression, tuple[int, int]] = {
    Compression.NONE: (0, 0),
    Compression.GZIP: (4, 1),
    Compression.ZSTD: (12, 1),
    Compression.LZ4: (2, 1),
    Compression.XZ: (40, 3),
    Compression.LZMA: (64, 3),
    Compression.BZIP2: (512, 3),
}

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_LZ4_LEGACY_MAGIC = b"\x02\x21\x4c\x18"


def sniff(head: bytes) -> Compression:
    """The compression whose magic `head` starts with; NONE for anything else."""
    if head.startswith(b"\x1f\x8b"):
        return Compression.GZIP
    if head.startswith(_ZSTD_MAGIC):
        return Compression.ZSTD
    if len(head) >= 4 and int.from_bytes(head[:4], "little") & 0xFFFFFFF0 == _SKIPPABLE_MAGIC_LOW:
        return Compression.ZSTD  # RFC 8878 §3.1.2: a skippable frame first, as pzstd writes
    if head.startswith(b"\xfd7zXZ\x00"):
        return Compression.XZ
    if head.startswith(b"BZh"):
        return Compression.BZIP2
    if head.startswith(_LZ4_LEGACY_MAGIC):
        return Compression.LZ4
    # lzma "alone" has no magic: properties byte 0x5d (lc=3 lp=0 pb=2, what every encoder
    # writes) and a little-endian dictionary size whose top bytes are 0 (libmagic does the same).
    if head.startswith(b"\x5d\x00\x00"):
        return Compression.LZMA
    return Compression.NONE


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class PeekableReader(ReadStream):
    """Lets the first bytes of a non-seekable stream be looked at without losing them."""

    def __init__(self, raw: Readable) -> None:
        self._raw = raw
        self._head = b""

    def peek(self, n: int) -> bytes:
        """Up to `n` bytes from the current position (fewer only at EOF); they stay unread."""
        while len(self._head) < n:
            chunk = self._raw.read(n - len(self._head))
            if not chunk:
                break
            self._head += chunk
        return self._head[:n]

    def read(self, n: int = -1) -> bytes:
        if not self._head:
            return self._raw.read(n)
        if n is None or n < 0:
            data, self._head = self._head + self._raw.read(), b""
            return data
        data, self._head = self._head[:n], self._head[n:]
        return data

    def close(self) -> None:
        close = getattr(self._raw, "close", None)
        if close is not None:
            close()


class DecompressedReader(ReadStream):
    """A decompressing binary stream (read/readinto) whose failures are ociboot errors."""

    def __init__(self, inner: Any, compression: Compression, what: str, check: Callable[[], None]) -> None:
        self._inner = inner
        self.compression = compression
        self.what = what
        self._check = check  # raises when the compressed stream ended somewhere it may not
        self._done = False

    def read(self, n: int = -1) -> bytes:
        if self._done:
            return b""
        try:
            data: bytes = self._inner.read(n)
            if not data:
                self._done = True
                self._check()
            return data
        except OcibootError:
            raise  # e.g. DigestMismatch from the verifying reader underneath
        except EOFError as exc:
            raise TruncatedLayer(f"{self.what}: {self.compression} stream ends early ({exc})") from exc
        except _DECODE_ERRORS as exc:
            raise TruncatedLayer(f"{self.what}: corrupt {self.compression} data ({exc})") from exc

    def close(self) -> None:
        self._inner.close()


def open_decompressed(
    raw: Readable, compression: Compression, what: str = "stream", *, zero_padding_ends: bool = False
) -> Readable:
    """A stream of the decompressed bytes of `raw` (which the caller keeps and closes).

    Reads return at most the requested size, so memory stays bounded whatever the ratio.
    `zero_padding_ends`: zero bytes after a complete zstd frame end the stream instead of being
    read as a bad frame (Linux's initramfs unpacker skips such padding; layers never have it).
    """
    compression = Compression(compression)
    if compression is Compression.NONE:
        return raw
    source = cast(IO[bytes], raw)  # the decoders only call read()

    inner: Any
    clean_end: Callable[[], None] = _nothing
    if compression is Compression.GZIP:
        inner = _GzipFile(fileobj=source, mode="rb")
    elif compression is Compression.ZSTD:
        frames = _ZstdFrames(raw, what, zero_padding_ends=zero_padding_ends)
        clean_end = frames.check_end
        inner = zstandard.ZstdDecompressor().stream_reader(
            cast(IO[bytes], frames), read_across_frames=True, closefd=False
        )
    elif compression is Compression.XZ:
        if zero_padding_ends:
            # An xz stream ends with its footer magic "YZ", never with a zero byte, so zeros
            # at the very end are padding; liblzma reads 4 of them as a truncated next stream.
            source = cast(IO[bytes], _TrailingZerosDropped(raw))
        inner = _lzma_reader(source, lzma.FORMAT_XZ)
    elif compression is Compression.LZMA:
        inner = _lzma_reader(source, lzma.FORMAT_ALONE)
    elif compression is Compression.BZIP2:
        inner = bz2.BZ2File(source)
    elif compression is Compression.LZ4:
        inner = _Lz4Legacy(raw)
    else:  # pragma: no cover - the enum is closed
        raise UnsupportedCompression(f"{what}: unsupported compression {compression}")
    return DecompressedReader(inner, compression, what, clean_end)


def _nothing() -> None:
    pass


#: What liblzma may allocate for one xz or lzma stream.  The header names the dictionary size (up
#: to 4 GiB in an lzma header) and liblzma allocates it before decoding a byte, then fills it with
#: what it decodes; `xz -9` needs 65 MiB, the kernel's own xz/lzma decoders accept far less.
LZMA_MEMLIMIT = 128 << 20


def _lzma_reader(source: IO[bytes], fmt: int) -> io.BufferedReader:
    """lzma.LZMAFile's reader (concatenated streams, trailing garbage ignored), with a memory
    limit, which LZMAFile does not pass on: over it, liblzma raises LZMAError."""
    raw = _compression.DecompressReader(
        source, lzma.LZMADecompressor, trailing_error=lzma.LZMAError, format=fmt, memlimit=LZMA_MEMLIMIT
    )
    return io.BufferedReader(raw)


class _TrailingZerosDropped:
    """`raw` without the zero bytes at its very end: a run of zeros is held back until a
    non-zero byte follows it (then passed on whole) or the stream ends (then dropped)."""

    def __init__(self, raw: Readable) -> None:
        self._raw = raw
        self._zeros = 0  # held back
        self._out = b""

    def read(self, n: int = -1) -> bytes:
        while not self._out:
            data = self._raw.read(n if n and n > 0 else 1 << 16)
            if not data:
                return b""  # the held-back zeros were trailing: dropped
            body = data.rstrip(b"\0")
            if body:
                self._out = b"\0" * self._zeros + body
                self._zeros = len(data) - len(body)
            else:
                self._zeros += len(data)
        want = len(self._out) if n is None or n < 0 else n
        out, self._out = self._out[:want], self._out[want:]
        return out


# --- zstd frame tracking ---------------------------------------------------------------------

_SKIPPABLE_MAGIC_LOW = 0x184D2A50  # RFC 8878 §3.1.2: 0x184D2A50..0x184D2A5F
_ST_MAGIC, _ST_SKIP_SIZE, _ST_FHD, _ST_HEADER, _ST_BLOCK = range(5)


class _ZstdFrames:
    """Follows frame and block headers of the compressed bytes zstandard reads (RFC 8878 §3.1.1).

    Only headers are looked at (one per block of up to 128 KiB), so the cost is negligible.
    """

    def __init__(self, raw: Readable, what: str, *, zero_padding_ends: bool = False) -> None:
        self._raw = raw
        self._what = what
        self._padding_ends = zero_padding_ends
        self._padded = False  # zero padding seen after a complete frame: nothing more is read
        self._lost = False  # an unknown magic: zstandard itself reports the bad frame
        self._state = _ST_MAGIC
        self._need = 4
        self._buf = bytearray()
        self._skip = 0
        self._checksum = False
        self.frames = 0

    def read(self, n: int = -1) -> bytes:
        if self._padded:
            return b""
        data = self._raw.read(n)
        if not self._lost:
            stop = self._feed(data)
            if stop is not None:
                self._padded = True
                return data[:stop]
        return data

    def _feed(self, data: bytes) -> int | None:
        """Track headers; returns where zero padding starts when that ends the stream."""
        i, end = 0, len(data)
        while i < end and not self._lost:
            if (
                self._padding_ends
                and self.frames
                and self._state == _ST_MAGIC
                and not self._buf
                and not self._skip
                and data[i] == 0
            ):
                return i
            if self._skip:
                k = min(self._skip, end - i)
                self._skip -= k
                i += k
                continue
            k = min(self._need - len(self._buf), end - i)
            self._buf += data[i : i + k]
            i += k
            if len(self._buf) == self._need:
                self._advance(bytes(self._buf))
                self._buf.clear()
        return None

    def _advance(self, field: bytes) -> None:
        if self._state == _ST_MAGIC:
            magic = int.from_bytes(field, "little")
            if field == _ZSTD_MAGIC:
                self._state, self._need = _ST_FHD, 1
            elif magic & 0xFFFFFFF0 == _SKIPPABLE_MAGIC_LOW:
                self._state, self._need = _ST_SKIP_SIZE, 4
            else:
                self._lost = True
        elif self._state == _ST_SKIP_SIZE:
            self._skip = int.from_bytes(field, "little")
            self._state, self._need = _ST_MAGIC, 4
        elif self._state == _ST_FHD:
            fhd = field[0]
            fcs_flag, single, dict_flag = fhd >> 6, fhd >> 5 & 1, fhd & 3
            self._checksum = bool(fhd >> 2 & 1)
            fcs = (1 if single else 0, 2, 4, 8)[fcs_flag]
            rest = (0 if single else 1) + (0, 1, 2, 4)[dict_flag] + fcs
            self._state, self._need = (_ST_HEADER, rest) if rest else (_ST_BLOCK, 3)
        elif self._state == _ST_HEADER:
            self._state, self._need = _ST_BLOCK, 3
        else:
            header = int.from_bytes(field, "little")
            last, block_type, size = header & 1, header >> 1 & 3, header >> 3
            self._skip = 1 if block_type == 1 else size  # an RLE block stores one byte
            if last:
                self._skip += 4 if self._checksum else 0
                self._state, self._need = _ST_MAGIC, 4
                self.frames += 1

    def check_end(self) -> None:
        if not self._lost and (self._state != _ST_MAGIC or self._buf or self._skip):
            raise TruncatedLayer(f"{self._what}: zstd stream ends inside frame {self.frames + 1}")

    def close(self) -> None:
        pass


# --- lz4 legacy ------------------------------------------------------------------------------

_LZ4_MAX_BLOCK = 8 << 20  # the legacy format's fixed block size (lz4 programs/lz4io.c)
_LZ4_BOUND = _LZ4_MAX_BLOCK + _LZ4_MAX_BLOCK // 255 + 16


class _Lz4Legacy:
    """lz4 legacy frames: magic, then blocks of `u32 size` + LZ4 block data, to EOF.

    Concatenated legacy streams repeat the magic where a block size would be (Linux's
    lib/decompress_unlz4.c accepts that, and so do we).  Each block is decoded by liblz4 into a
    buffer of the format's block size, which bounds its output whatever the block says.
    """

    def __init__(self, raw: Readable) -> None:
        self._raw = raw
        self._out = b""
        self._pos = 0
        self._started = False

    def _exact(self, n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            chunk = self._raw.read(n - got)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def _next_block(self) -> bool:
        if not self._started:
            if self._exact(4) != _LZ4_LEGACY_MAGIC:
                raise ValueError("not an lz4 legacy stream")
            self._started = True
        while True:
            size_field = self._exact(4)
            if not size_field:
                return False
            if len(size_field) < 4:
                raise EOFError("lz4 block size cut short")
            if size_field != _LZ4_LEGACY_MAGIC:
                break
        size = int.from_bytes(size_field, "little")
        if size > _LZ4_BOUND:
            raise ValueError(f"lz4 block of {size} bytes exceeds the legacy bound")
        block = self._exact(size)
        if len(block) < size:
            raise EOFError(f"lz4 block cut short ({len(block)} of {size} bytes)")
        self._out, self._pos = lz4.block.decompress(block, uncompressed_size=_LZ4_MAX_BLOCK), 0
        return True

    def read(self, n: int = -1) -> bytes:
        while self._pos >= len(self._out):  # an empty block decodes to nothing: read on
            if not self._next_block():
                return b""
        if n is None or n < 0:
            n = len(self._out)
        data = self._out[self._pos : self._pos + n]
        self._pos += len(data)
        return data

    def close(self) -> None:
        pass


# --- a compressed archive file, resumable --------------------------------------------------------
#
# `docker save | gzip` is a tar read in place (sources/_compressed.py): its members are opened
# at will, several at once, so decoding must restart somewhere other than the file's start.  A
# gzip decoder can be restarted anywhere from a copy of its state (zlib's `copy()`: the 32 KiB
# window and the inflate state); a zstd decoder cannot be copied (python-zstandard has no such
# call), so zstd restarts only where a frame starts.  The stdlib zlib is used for gzip because
# isal's decoder has no `copy()`.

#: Compressed bytes read from the file at a time; a resume point holds at most this much input.
ARCHIVE_READ_BYTES = 1 << 14
#: The largest zstd window an outer archive may ask for (the zstd tool's own default limit,
#: 2^27): a decoder's memory is about its window.
ARCHIVE_ZSTD_WINDOW = 1 << 27
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where decoding can restart: `raw` is the file offset of the next compressed byte to read,
    `pos` the uncompressed offset reached; `state` a gzip decoder's copy (None at the start of a
    gzip member or zstd frame) with `pending`, input it was given but has not consumed yet."""

    raw: int
    pos: int
    state: Any = None
    pending: bytes = b""


START = ResumePoint(0, 0)


class ResumableReader(ReadStream):
    """The decompressed bytes of a gzip (one or more members) or zstd (one or more frames) file,
    from a resume point, through a file handle of its own.  `pos` is the uncompressed offset.

    Every failure is a SourceError naming `what`: a corrupt byte, a cut, anything but zero
    padding after the last gzip member, anything after the last zstd frame.
    """

    def __init__(self, path: str, compression: Compression, point: ResumePoint, what: str) -> None:
        if compression not in (Compression.GZIP, Compression.ZSTD):
            raise UnsupportedCompression(f"{what}: a {compression} archive cannot be read in place")
        self.compression = compression
        self.what = what
        self.pos = point.pos
        self._file = open(path, "rb")  # noqa: SIM115 - owned by this object, closed in close()
        self._file.seek(point.raw)
        self._pending = point.pending
        self._gzip: Any = point.state.copy() if point.state is not None else None
        self._zstd: Any = None  # the current frame's stream reader
        self._frame: _OneFrame | None = None
        self._frame_start = point
        self._ended = False

    def resume_point(self) -> ResumePoint:
        """The latest point a new reader could take over from: here for gzip, the start of the
        current frame for zstd."""
        if self.compression is Compression.GZIP:
            state = self._gzip.copy() if self._gzip is not None else None
            return ResumePoint(self._file.tell(), self.pos, state, self._pending)
        return self._frame_start

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 20
        try:
            while not self._ended:
                data = self._read_gzip(n) if self.compression is Compression.GZIP else self._read_zstd(n)
                if data:
                    self.pos += len(data)
                    return data
        except OcibootError:
            raise
        except _DECODE_ERRORS as exc:
            raise SourceError(f"{self.what}: corrupt {self.compression} data ({exc})") from None
        return b""

    def _raw(self) -> bytes:
        return self._file.read(ARCHIVE_READ_BYTES)

    def _read_gzip(self, n: int) -> bytes:
        """Some bytes, or b"" to be called again (a member ended, more input was read)."""
        if self._gzip is None:  # between members
            if len(self._pending) < 2:
                self._pending += self._raw()
            if not self._pending:
                if self.pos == 0:
                    raise SourceError(f"{self.what}: empty gzip file")
                self._ended = True
                return b""
            if not self._pending.startswith(_GZIP_MAGIC):
                self._trailing_zeros()
                return b""
            self._gzip = zlib.decompressobj(wbits=31)
        if self._gzip.eof:
            # All of `_pending` was given to the member; what followed its end is `unused_data`
            # (CPython leaves a copy of it in `unconsumed_tail` when max_length was hit).
            self._pending, self._gzip = self._gzip.unused_data, None
            return b""
        if not self._pending:
            self._pending = self._raw()
            if not self._pending:
                raise SourceError(f"{self.what}: gzip stream ends early (the file is cut short)")
        out: bytes = self._gzip.decompress(self._pending, n)
        self._pending = self._gzip.unconsumed_tail
        return out

    def _trailing_zeros(self) -> None:
        """RFC 1952 readers (gzip(1), Python's gzip) accept zero padding after the last member."""
        while self._pending:
            if self._pending.strip(b"\0"):
                raise SourceError(f"{self.what}: data after the end of the gzip stream is not gzip")
            self._pending = self._raw()
        self._ended = True

    def _read_zstd(self, n: int) -> bytes:
        if self._zstd is None:  # between frames
            self._frame_start = ResumePoint(self._file.tell(), self.pos)
            frame = _OneFrame.next(self._file, self.what)
            if frame is None:
                if self.pos == 0:
                    raise SourceError(f"{self.what}: no zstd frame in the file")
                self._ended = True
                return b""
            self._frame = frame
            decoder = zstandard.ZstdDecompressor(max_window_size=ARCHIVE_ZSTD_WINDOW)
            self._zstd = decoder.stream_reader(
                cast(IO[bytes], frame), read_across_frames=False, closefd=False
            )
        out: bytes = self._zstd.read(n)
        if not out:
            assert self._frame is not None
            if not self._frame.done:
                raise SourceError(f"{self.what}: corrupt zstd frame (it decodes to its end early)")
            self._zstd = self._frame = None
        return out

    def close(self) -> None:
        self._file.close()


class _OneFrame:
    """Exactly the bytes of one zstd frame (RFC 8878 §3.1.1) from a file, so that the decoder
    never reads past it and the file's offset after it is the next frame's start."""

    def __init__(self, file: IO[bytes], what: str, header: bytes) -> None:
        self._file = file
        self._what = what
        self._out = header
        self._left = 0  # of the current block's body
        self._last = False
        self._checksum = bool(header[4] >> 2 & 1)
        self.done = False

    @classmethod
    def next(cls, file: IO[bytes], what: str) -> _OneFrame | None:
        """The next frame, skippable frames passed over; None at the end of the file."""
        while True:
            magic = file.read(4)
            if not magic:
                return None
            if len(magic) < 4:
                raise SourceError(f"{what}: zstd stream ends early (the file is cut short)")
            number = int.from_bytes(magic, "little")
            if number & 0xFFFFFFF0 == _SKIPPABLE_MAGIC_LOW:
                size = int.from_bytes(_exact(file, 4, what), "little")
                file.seek(size, io.SEEK_CUR)
                continue
            if magic != _ZSTD_MAGIC:
                raise SourceError(f"{what}: data after the end of the zstd stream is not zstd")
            fhd = _exact(file, 1, what)
            fcs_flag, single, dict_flag = fhd[0] >> 6, fhd[0] >> 5 & 1, fhd[0] & 3
            rest = (0 if single else 1) + (0, 1, 2, 4)[dict_flag] + (1 if single else 0, 2, 4, 8)[fcs_flag]
            return cls(file, what, magic + fhd + _exact(file, rest, what))

    def read(self, n: int = -1) -> bytes:
        if self._out:
            out, self._out = self._out, b""
            return out
        if self._left:
            data = self._file.read(min(n if n > 0 else self._left, self._left))
            if not data:
                raise SourceError(f"{self._what}: zstd stream ends early (the file is cut short)")
            self._left -= len(data)
            self._settle()
            return data
        if self.done:
            return b""
        if self._last:  # only the checksum is left
            self.done = True
            return _exact(self._file, 4, self._what)
        header = _exact(self._file, 3, self._what)
        value = int.from_bytes(header, "little")
        self._last, block_type = bool(value & 1), value >> 1 & 3
        self._left = 1 if block_type == 1 else value >> 3  # an RLE block stores one byte
        self._settle()
        return header

    def _settle(self) -> None:
        # The decoder may stop asking once the last block is in: the frame is whole then.
        if self._last and not self._left and not self._checksum:
            self.done = True

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _exact(file: IO[bytes], n: int, what: str) -> bytes:
    data = file.read(n)
    if len(data) < n:
        raise SourceError(f"{what}: zstd stream ends early (the file is cut short)")
    return data
