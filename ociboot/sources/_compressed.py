"""A tar archive compressed as a whole (`docker save | gzip`, `| zstd`), read in place.

Nothing is decompressed to disk and nothing is held whole.  One pass decompresses the archive
to build its member table (tar headers only), keeping the small members (manifests, configs),
and, every RESUME_SPACING bytes or more, a resume point: where decoding can restart
(compression.ResumePoint: a copy of the gzip decoder's state, or a zstd frame's start).  Opening
a member resumes at the last point before it and decodes forward to it, with a decoder and a
file handle of its own, so the layers can be read by several threads at once.  At most
MAX_RESUME_POINTS are kept: past that the spacing doubles and every other point is dropped, so
memory is bounded whatever the archive's size (a gzip point is about 64 KiB).  A closed member
stream hands its decoder back to the store (MAX_PARKED are kept), so members read in archive
order are decoded once overall; this is what makes a single-frame zstd archive, resumable only
at its start, affordable (docs/measurements.md).

The outer compression is not content-addressed: the members' bytes are verified (the blobs by
their digests) exactly as in a plain archive, and a corrupt or cut compressed stream is an error.
"""

from __future__ import annotations

import bisect
import io
import os
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from ..compression import START, Compression, ResumableReader, ResumePoint
from ..errors import SourceError
from ..streams import ReadStream
from ._store import BoundedInfo, Member, TarMembers, member_table

#: Resume points kept per archive, and the least uncompressed distance between two at first.
MAX_RESUME_POINTS = 256
RESUME_SPACING = 1 << 20
#: Decoders left where a member ended, kept for the next member to start from.
MAX_PARKED = 4
#: Small members (manifests, configs, index.json) are kept from the scan, so that reading them
#: decodes nothing again: those of at most KEEP_MEMBER_BYTES, KEEP_TOTAL_BYTES in all.
KEEP_MEMBER_BYTES = 1 << 20
KEEP_TOTAL_BYTES = 8 << 20
#: Scanned tables kept for reuse (sniffing a bare path, then opening it, reads the table once).
_KEEP_TABLES = 2


@dataclass(frozen=True, slots=True)
class _Table:
    members: dict[str, Member]
    points: tuple[ResumePoint, ...]  # by increasing `pos`; never used, only copied from
    kept: dict[int, bytes]  # small members' bytes by data offset


class _Points:
    """Resume points at least `spacing` apart, thinned to MAX_RESUME_POINTS."""

    def __init__(self) -> None:
        self.kept = [START]
        self.spacing = RESUME_SPACING

    def due(self, pos: int) -> bool:
        return pos - self.kept[-1].pos >= self.spacing

    def offer(self, point: ResumePoint) -> None:
        if not self.due(point.pos):
            return
        self.kept.append(point)
        if len(self.kept) > MAX_RESUME_POINTS:
            self.spacing *= 2
            thinned = [self.kept[0]]
            for p in self.kept[1:]:
                if p.pos - thinned[-1].pos >= self.spacing:
                    thinned.append(p)
            self.kept = thinned


class _Timed(ReadStream):
    """The scan's view of the archive: the image's deadline checked at every read, and resume
    points offered as it goes."""

    def __init__(self, reader: ResumableReader, points: _Points | None, deadline: float, where: str) -> None:
        self._reader = reader
        self._points = points
        self._deadline = deadline
        self._where = where

    def read(self, n: int = -1) -> bytes:
        if time.monotonic() > self._deadline:
            raise SourceError(f"gave up on {self._where}: the archive was not read within its --timeout")
        data = self._reader.read(n)
        if self._points is not None and self._points.due(self._reader.pos):
            self._points.offer(self._reader.resume_point())  # a gzip point copies zlib's state
        return data


def _scan(path: str, compression: Compression, deadline: float) -> _Table:
    points = _Points()
    kept: dict[int, bytes] = {}
    reader = ResumableReader(path, compression, START, path)
    try:
        stream = _Timed(reader, points, deadline, path)
        try:
            with tarfile.open(fileobj=stream, mode="r|", tarinfo=BoundedInfo) as tf:  # type: ignore[call-overload]
                members = member_table(_keeping(tf, kept), path, None)
        except (tarfile.TarError, EOFError) as exc:
            raise SourceError(f"{path} is not a readable tar archive: {exc}") from None
        # The rest (the tar's end blocks, the last checksum) is decoded too: a cut or corrupt
        # tail is an error here, not silence.
        while stream.read(1 << 20):
            pass
        for name, member in members.items():
            if member.offset + member.size > reader.pos:
                raise SourceError(
                    f"{path} is truncated: member {name} ends at byte {member.offset + member.size}, "
                    f"the archive has {reader.pos}"
                )
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}") from None
    finally:
        reader.close()
    return _Table(members, tuple(points.kept), kept)


def _keeping(tf: tarfile.TarFile, kept: dict[int, bytes]) -> Iterator[tarfile.TarInfo]:
    """The archive's members, the small ones' bytes kept as they pass."""
    total = 0
    for info in tf:
        if info.isreg() and info.size <= KEEP_MEMBER_BYTES and total + info.size <= KEEP_TOTAL_BYTES:
            member = tf.extractfile(info)
            if member is not None:
                kept[info.offset_data] = member.read()
                total += info.size
        yield info


_tables: dict[tuple[object, ...], _Table] = {}
_tables_lock = threading.Lock()


def _table(path: str, compression: Compression, deadline: float) -> _Table:
    """The archive's table, scanned once while the file is unchanged."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}") from None
    key = (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with _tables_lock:
        table = _tables.get(key)
    if table is None:
        table = _scan(path, compression, deadline)
        with _tables_lock:
            while len(_tables) >= _KEEP_TABLES:
                del _tables[next(iter(_tables))]
            _tables[key] = table
    return table


class CompressedTarStore(TarMembers):
    def __init__(self, path: str, compression: Compression, deadline: float) -> None:
        table = _table(path, compression, deadline)
        super().__init__(path, table.members)
        self.compression = compression
        self.deadline = deadline
        self._points = table.points
        self._kept = table.kept
        self._positions = [p.pos for p in table.points]
        self._parked: list[ResumableReader] = []
        self._lock = threading.Lock()

    def _reader_at(self, offset: int) -> ResumableReader:
        """A decoder at or before `offset`: the closest of a parked one and a resume point."""
        point = self._points[bisect.bisect_right(self._positions, offset) - 1]
        with self._lock:
            usable = [r for r in self._parked if point.pos <= r.pos <= offset]
            if usable:
                best = max(usable, key=lambda r: r.pos)
                self._parked.remove(best)
                return best
        return ResumableReader(self.path, self.compression, point, self.path)

    def park(self, reader: ResumableReader) -> None:
        with self._lock:
            self._parked.append(reader)
            evicted = self._parked.pop(0) if len(self._parked) > MAX_PARKED else None
        if evicted is not None:
            evicted.close()

    def open(self, name: str) -> IO[bytes]:
        _, member = self._resolve(name)
        kept = self._kept.get(member.offset)
        if kept is not None and len(kept) == member.size:
            return io.BytesIO(kept)
        try:
            raw = _MemberStream(self, self._reader_at(member.offset), member)
        except OSError as exc:
            raise SourceError(f"cannot read {self.where}: {exc.strerror}") from None
        return io.BufferedReader(raw, 1 << 16)

    def close(self) -> None:
        with self._lock:
            parked, self._parked = self._parked, []
        for reader in parked:
            reader.close()


class _MemberStream(io.RawIOBase):
    """One member's bytes, decoded from its own reader, which goes back to the store on close
    (wherever it stopped) unless a read failed."""

    def __init__(self, store: CompressedTarStore, reader: ResumableReader, member: Member) -> None:
        self._store = store
        self._reader: ResumableReader | None = reader
        self._start = member.offset
        self._left = member.size
        self._failed = False

    def readable(self) -> bool:
        return True

    def _timed_read(self, n: int) -> bytes:
        assert self._reader is not None
        if time.monotonic() > self._store.deadline:
            raise SourceError(f"gave up on {self._store.where}: not read within its --timeout")
        data = self._reader.read(n)
        if not data:
            raise SourceError(f"{self._store.where} ends inside a member (the archive is cut short)")
        return data

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if self._reader is None:
            raise ValueError("read of a closed member")
        self._failed = True  # until this read is done
        while self._reader.pos < self._start:  # decode forward from the resume point
            self._timed_read(min(1 << 20, self._start - self._reader.pos))
        want = min(len(buffer), self._left)
        data = self._timed_read(want) if want > 0 else b""
        memoryview(buffer)[: len(data)] = data
        self._left -= len(data)
        self._failed = False
        return len(data)

    def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            if not self._failed:
                self._store.park(reader)
            else:
                reader.close()
        super().close()
