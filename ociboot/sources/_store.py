"""Read the files of a layout in place, whether it is a directory or a tar archive.

An OCI layout (`oci:`), an oci-archive and a `docker save` archive are all "a set of named files";
`DirStore` and `TarStore` give the same four operations over both, so the readers above never
care which one they have.  Nothing is ever extracted to disk: a tar member is read as a slice of
the archive file, each `open()` with its own file handle, because layer.py reads several layers
from several threads at once.

`sniff_path()` tells which transport an existing path without a prefix is (containers-transports(5)
has no such shorthand; crane and dive accept a bare path, and so do we).
"""

from __future__ import annotations

import io
import math
import os
import posixpath
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from ..compression import SNIFF_BYTES, Compression, sniff
from ..errors import ImageNotFound, InvalidManifest, SourceError
from ..ref import Transport
from ..spec import MAX_MANIFEST_BYTES

#: Linux's limit on symlink hops (path_resolution(7)); a longer chain is a loop.
_MAX_HOPS = 40


class Store(Protocol):
    """Named files of a layout; names are relative, `/`-separated, without `./`."""

    where: str

    def exists(self, name: str) -> bool: ...
    def size(self, name: str) -> int: ...
    def read(self, name: str, limit: int = MAX_MANIFEST_BYTES) -> bytes: ...
    def open(self, name: str) -> IO[bytes]: ...
    def names(self) -> Iterator[str]: ...
    def close(self) -> None: ...


def clean_name(name: str, where: str) -> str:
    """`./a//b` -> `a/b`; a name that leaves the root (`../x`, `/x` after `..`) is refused."""
    cleaned = posixpath.normpath("/" + name.lstrip("/"))
    # normpath("/..") is "/", so compare against the lexical walk to catch escapes.
    depth = 0
    for part in name.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                raise InvalidManifest(f"{where}: name {name!r} escapes the archive")
        elif part not in ("", "."):
            depth += 1
    return cleaned.lstrip("/")


def _too_big(name: str, size: int, limit: int, where: str) -> InvalidManifest:
    return InvalidManifest(f"{name} in {where} is {size} bytes, over the {limit} byte cap for metadata")


# --- directories -----------------------------------------------------------------------------


class DirStore:
    """A layout directory.  Symlinks inside it are the user's business and are followed."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.where = str(root)
        if not self.root.exists():
            raise ImageNotFound(f"{self.where}: no such directory")
        if not self.root.is_dir():
            raise ImageNotFound(f"{self.where} is not a directory")

    def _path(self, name: str) -> Path:
        return self.root / clean_name(name, self.where)

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def size(self, name: str) -> int:
        return self._stat(name).st_size

    def _stat(self, name: str) -> os.stat_result:
        try:
            st = self._path(name).stat()
        except OSError:
            raise ImageNotFound(f"{name} not found in {self.where}") from None
        if not stat.S_ISREG(st.st_mode):
            raise ImageNotFound(f"{name} in {self.where} is not a regular file")
        return st

    def read(self, name: str, limit: int = MAX_MANIFEST_BYTES) -> bytes:
        size = self._stat(name).st_size
        if size > limit:
            raise _too_big(name, size, limit, self.where)
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:  # grew since stat
            raise _too_big(name, len(data), limit, self.where)
        return data

    def open(self, name: str) -> IO[bytes]:
        self._stat(name)
        try:
            return self._path(name).open("rb")
        except OSError as exc:
            raise SourceError(f"cannot read {name} in {self.where}: {exc.strerror}") from None

    def names(self) -> Iterator[str]:
        for path in sorted(self.root.rglob("*")):
            if path.is_file():
                yield path.relative_to(self.root).as_posix()

    def close(self) -> None:
        pass


# --- tar archives ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    kind: bytes  # tarfile type flag
    offset: int  # of the data
    size: int
    linkname: str = ""
    sparse: bool = False


class _Slice(io.RawIOBase):
    """Bytes [offset, offset+size) of a file, through a file handle of its own."""

    def __init__(self, path: str, offset: int, size: int) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - owned by this object, closed in close()
        self._start = offset
        self._size = size
        self._pos = 0
        self._file.seek(offset)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        n = self._file.readinto(memoryview(buffer)[:want])
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, min(self._size, base + offset))
        self._file.seek(self._start + self._pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


class TarMembers:
    """What every tar store does with its member table; subclasses open members."""

    def __init__(self, path: str, members: dict[str, Member]) -> None:
        self.path = path
        self.where = path
        self._members = members

    def _resolve(self, name: str) -> tuple[str, Member]:
        """Follow member symlinks and hardlinks to a regular member, inside the archive."""
        current = clean_name(name, self.where)
        for _ in range(_MAX_HOPS):
            member = self._members.get(current)
            if member is None:
                raise ImageNotFound(f"{name} not found in {self.where}")
            if member.kind == tarfile.SYMTYPE:
                # A relative target is relative to the link's directory; an absolute one is
                # taken relative to the archive root (docker save writes `../<id>/layer.tar`).
                base = "" if member.linkname.startswith("/") else posixpath.dirname(current)
                current = clean_name(posixpath.join(base, member.linkname.lstrip("/")), self.where)
            elif member.kind == tarfile.LNKTYPE:
                # A hardlink's linkname is an archive path, not relative to the link.
                current = clean_name(member.linkname, self.where)
            elif member.kind in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE):
                if member.sparse:
                    raise SourceError(f"{name} in {self.where} is a sparse member, which is not supported")
                return current, member
            else:
                raise ImageNotFound(f"{name} in {self.where} is not a regular file")
        raise InvalidManifest(f"{name} in {self.where}: more than {_MAX_HOPS} links (a loop)")

    def exists(self, name: str) -> bool:
        try:
            self._resolve(name)
        except (ImageNotFound, InvalidManifest, SourceError):
            return False
        return True

    def size(self, name: str) -> int:
        return self._resolve(name)[1].size

    def read(self, name: str, limit: int = MAX_MANIFEST_BYTES) -> bytes:
        size = self.size(name)
        if size > limit:
            raise _too_big(name, size, limit, self.where)
        with self.open(name) as f:
            return f.read()

    def names(self) -> Iterator[str]:
        return iter(sorted(self._members))

    def open(self, name: str) -> IO[bytes]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class TarStore(TarMembers):
    """An uncompressed tar archive read in place (oci-archive, docker save).

    The outer tar's headers are scanned once with tarfile (an archive has few members, so its
    per-member cost does not matter here); member data is never read during the scan.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(os.fspath(path), _scan(os.fspath(path)))

    def open(self, name: str) -> IO[bytes]:
        _, member = self._resolve(name)
        try:
            return io.BufferedReader(_Slice(self.path, member.offset, member.size), 1 << 16)
        except OSError as exc:
            raise SourceError(f"cannot read {self.where}: {exc.strerror}") from None


#: Members of one archive's table (a directory counts too).  `docker save` writes about four per
#: layer, and a manifest lists at most MAX_DESCRIPTORS layers; a compressed archive can pack
#: millions of empty members into a few kilobytes, and the table is kept in memory.
MAX_ARCHIVE_MEMBERS = 100_000


#: One pax header or GNU long name of an archive's own tar: tarfile reads it whole into memory,
#: and a compressed archive can inflate a few kilobytes into gigabytes of it.
MAX_ARCHIVE_META_BYTES = 1 << 20
_META_TYPES = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)


class BoundedInfo(tarfile.TarInfo):
    """tarfile's header, refusing an extended header over MAX_ARCHIVE_META_BYTES before reading it."""

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _META_TYPES and self.size > MAX_ARCHIVE_META_BYTES:
            raise SourceError(
                f"the archive has an extended tar header of {self.size} bytes, "
                f"over the {MAX_ARCHIVE_META_BYTES} byte cap"
            )
        return super()._proc_member(archive)  # type: ignore[misc]


def member_table(infos: Iterable[tarfile.TarInfo], path: str, data_size: int | None) -> dict[str, Member]:
    """The addressable members of an archive; `data_size` (when known) is where its data ends."""
    members: dict[str, Member] = {}
    for count, info in enumerate(infos, 1):
        if count > MAX_ARCHIVE_MEMBERS:
            raise SourceError(f"{path} has more than {MAX_ARCHIVE_MEMBERS} members; refused as hostile")
        if info.isdir():
            continue
        try:
            name = clean_name(info.name, path)
        except InvalidManifest:
            continue  # a `../` name cannot be addressed from inside; never read it
        if not name:
            continue
        if data_size is not None and info.offset_data + info.size > data_size and info.isreg():
            raise SourceError(
                f"{path} is truncated: member {info.name} ends at byte "
                f"{info.offset_data + info.size}, the {'file' if data_size else 'archive'} has {data_size}"
            )
        # Later members win, as when tar extracts an archive with duplicates.
        members[name] = Member(info.type, info.offset_data, info.size, info.linkname, info.issparse())
    if not members:
        raise SourceError(f"{path} is not a tar archive (no members found)")
    return members


def _scan(path: str) -> dict[str, Member]:
    try:
        file_size = os.stat(path).st_size
        if os.path.isdir(path):
            raise SourceError(f"{path} is a directory, not a tar archive")
        with open(path, "rb") as f:
            if sniff(f.read(SNIFF_BYTES)) is not Compression.NONE:
                raise SourceError(f"{path} is a compressed archive; open it with open_store")
            f.seek(0)
            with tarfile.open(fileobj=f, mode="r:", tarinfo=BoundedInfo) as tf:
                return member_table(tf, path, file_size)
    except FileNotFoundError:
        raise ImageNotFound(f"{path}: no such file") from None
    except (tarfile.TarError, EOFError) as exc:
        raise SourceError(f"{path} is not a readable tar archive: {exc}") from None
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}") from None


def open_store(path: str, *, archive: bool, deadline: float = math.inf) -> Store:
    """The store at `path`: a tar file when `archive` (compressed as a whole or not), else a
    directory.  `deadline` bounds decompressing a compressed archive's table."""
    if not os.path.exists(path):
        raise ImageNotFound(f"{path}: no such {'file' if archive else 'directory'}")
    if not archive:
        return DirStore(path)
    compression = _compression_of(path)
    if compression is Compression.NONE:
        return TarStore(path)
    from ._compressed import CompressedTarStore  # it builds on this module

    return CompressedTarStore(path, compression, deadline)


def _compression_of(path: str) -> Compression:
    if not os.path.isfile(path):
        return Compression.NONE  # a FIFO is read once, by TarStore, which says what it is
    try:
        with open(path, "rb") as f:
            compression = sniff(f.read(SNIFF_BYTES))
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}") from None
    if compression not in (Compression.NONE, Compression.GZIP, Compression.ZSTD):
        raise SourceError(
            f"{path} is a {compression}-compressed archive; decompress it first "
            "(archives compressed with gzip or zstd are read in place)"
        )
    return compression


def sniff_path(path: str, deadline: float = math.inf) -> Transport | None:
    """The transport an existing path looks like, or None (not a path we recognise).

    A directory with `oci-layout` is `oci:`.  A tar with `manifest.json` is `docker-archive:`,
    also when it has `oci-layout` too (Docker 25+ `docker save` writes both; what wrote it was
    docker save, and its `manifest.json` is what selects by tag).  A tar with `oci-layout` and
    `index.json` is `oci-archive:`; so is it compressed with gzip or zstd, whose table is then
    read once for the sniff and the source both (sources/_compressed.py).  A missing path is
    None: the text is then a registry name.
    """
    if os.path.isdir(path):
        return Transport.OCI if os.path.isfile(os.path.join(path, "oci-layout")) else None
    if not os.path.isfile(path):
        return None
    try:
        compressed = _compression_of(path) is not Compression.NONE
        store = open_store(path, archive=True, deadline=deadline)
    except SourceError:
        if compressed:
            raise  # a damaged `docker save | gzip` is worth its own error, not "not an image"
        return None
    if store.exists("manifest.json"):
        return Transport.DOCKER_ARCHIVE
    if store.exists("oci-layout") and store.exists("index.json"):
        return Transport.OCI_ARCHIVE
    return None
