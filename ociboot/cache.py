"""A digest-keyed cache of layer indexes, so a layer already indexed is never fetched again.

A LayerIndex depends only on the layer's bytes and on what was asked of them (the CaptureSpec
and AnalyzeSpec), so an entry is keyed by

    format version / layer blob digest / spec key

where the spec key hashes the capture rules (pattern, cap), the analyzers' qualified names and
a `salt` (the ociboot version: an analyzer's output may change between releases).  `ls` and
`check` ask different things of a layer and so get different entries.  One file per
(digest, spec) rather than shared entries plus per-spec extras: a single file is valid or not
as a whole, so one atomic rename is all the consistency there is to keep; the price is that
the entries of a layer indexed by two commands are stored twice.

An entry is used only for a digest the current, verified manifest names (the caller passes the
manifest's descriptor) and only if its diff_id, media type and size equal what the manifest and
config say; otherwise it is ignored and rebuilt.

File format (never pickle: a cache directory must not be a way to run code):

    b"ocibootL" | u16 FORMAT_VERSION | 32-byte sha256 of the body | body = zlib(JSON)

The JSON holds the LayerIndex fields; entries as positional rows; bytes as base64.  Analyzer
results (KernelInfo, InitrdInfo, ... from boot/, a layer this module must not import) are
encoded generically as tagged dataclasses, enums, tuples, bytes and mappings, and decoded only
into the types the caller registered (`analysis_types`, closed over their field types), so a
cache file can name no other class.  A result of any other type makes the entry uncacheable.

Trust: an entry decides what a check sees of a layer, so whoever can write one can steer a
verdict; the body checksum only catches damage.  So, as ssh (StrictModes) and gpg do with their
files, the cache is used only if it is the user's alone: the directory and every directory and
entry below it must be owned by the user and not writable by group or others, and every
directory above it must be owned by the user or root and not writable by group or others,
unless it is sticky (/tmp: others cannot rename what is ours in it).  Anything else is
UnsafeCache, one line and exit 2, before anything is read.  Directories ociboot creates are
0700.  (A keyed MAC would add nothing: its key would live in the same directory, readable by
exactly those who could write entries.)  An entry also inflates to at most MAX_INFLATION times
its stored size, so a damaged or hostile entry is refused before it is expanded.

Writes go to a temporary file in the entry's directory, are fsynced and renamed over the entry
(os.replace is atomic on POSIX): concurrent writers of one entry leave the last complete file,
readers never see a partial one.  A corrupt or truncated entry is a debug note, removed and
rebuilt.  A directory that cannot be written is one warning, then the run continues uncached.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import enum
import gc
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import struct
import tempfile
import threading
import time
import typing
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .compression import Compression
from .digest import Digest
from .errors import UnsafeCache
from .fs.node import NO_XATTRS, Entry, Kind, make_entry
from .layer import AnalysisFailed, AnalyzeSpec, CaptureSpec, LayerIndex
from .spec import Descriptor

FORMAT_VERSION = 1
_MAGIC = b"ocibootL"
_HEAD = struct.Struct(">8sH32s")
_SUFFIX = ".idx"
_TMP_PREFIX = ".tmp-"
#: A temporary file older than this belongs to a writer that died: prune removes it.
_STALE_TMP_SECONDS = 3600
_CACHEDIR_TAG = b"Signature: 8a477f597d28d172789f06886806bc55\n# ociboot layer index cache\n"
#: An entry's JSON is at most this many times its compressed body (real entries: under 10x),
#: and at least _MIN_INFLATED bytes are allowed whatever the body.  Past it, the entry is corrupt.
MAX_INFLATION = 64
_MIN_INFLATED = 1 << 20
#: Directories ociboot creates for the cache: the user's alone.
_DIR_MODE = 0o700

log = logging.getLogger("ociboot.cache")


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """$XDG_CACHE_HOME/ociboot, or ~/.cache/ociboot (XDG Base Directory Specification)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME", "")
    # The spec: a relative XDG_CACHE_HOME is invalid and must be ignored.
    root = Path(base) if os.path.isabs(base) else Path(env.get("HOME") or Path.home()) / ".cache"
    return root / "ociboot"


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from `500M`, `2G`, `1.5GiB`, `4096` (K/M/G/T are powers of 1024, as du says)."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not a size: {text!r} (expected e.g. 500M, 2G, 4096)")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** " kmgt".index(unit or " "))


# --- spec identity -------------------------------------------------------------------------------


def _qualified(fn: Any) -> str | None:
    """An analyzer's stable name, or None if it has none (lambdas, closures, partials)."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        return None
    return f"{module}.{qualname}"


def spec_key(capture: CaptureSpec | None, analyze: AnalyzeSpec | None, salt: str = "") -> str | None:
    """A stable key for what is asked of a layer; None if an analyzer has no stable name."""
    analyzers = []
    for pattern, fn in analyze.rules if analyze else ():
        name = _qualified(fn)
        if name is None:
            return None
        analyzers.append([pattern, name])
    doc = {
        "format": FORMAT_VERSION,
        "salt": salt,
        "capture": [list(rule) for rule in capture.rules] if capture else [],
        "analyze": analyzers,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


# --- values --------------------------------------------------------------------------------------


class _Unencodable(Exception):
    pass


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _tag(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _closure(roots: Iterable[type]) -> dict[str, type]:
    """The registered types and every dataclass or enum their field annotations name."""
    found: dict[str, type] = {}
    todo = list(roots)
    while todo:
        cls = todo.pop()
        if not isinstance(cls, type) or _tag(cls) in found:
            continue
        if not (dataclasses.is_dataclass(cls) or issubclass(cls, enum.Enum)):
            continue
        found[_tag(cls)] = cls
        if dataclasses.is_dataclass(cls):
            try:
                hints = typing.get_type_hints(cls)
            except (NameError, TypeError):
                hints = {}
            todo.extend(_named_types(hints.values()))
    return found


def _named_types(annotations: Iterable[Any]) -> Iterator[type]:
    for annotation in annotations:
        if isinstance(annotation, type):
            yield annotation
        yield from _named_types(typing.get_args(annotation))


class AnalysisCodec:
    """Tagged JSON for analyzer results.  Every JSON object is a tag, so none is ambiguous:
    {"b": base64}, {"t": tuple}, {"s": frozenset}, {"m": [[key, value], ...]},
    {"e": enum type, "v": value}, {"d": dataclass type, "f": {field: value}}."""

    def __init__(self, types: Iterable[type]) -> None:
        self.types = _closure([AnalysisFailed, *types])

    def _registered(self, cls: type) -> str:
        tag = _tag(cls)
        if self.types.get(tag) is not cls:
            raise _Unencodable(f"{tag} is not a registered analysis type")
        return tag

    def encode(self, value: Any) -> Any:
        if isinstance(value, enum.Enum):  # before str/int: StrEnum members are strs too
            return {"e": self._registered(type(value)), "v": value.value}
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, bytes):
            return {"b": _b64(value)}
        if isinstance(value, tuple):
            return {"t": [self.encode(v) for v in value]}
        if isinstance(value, list):
            return [self.encode(v) for v in value]
        if isinstance(value, frozenset):
            return {"s": [self.encode(v) for v in value]}
        if isinstance(value, Mapping):
            return {"m": [[self.encode(k), self.encode(v)] for k, v in value.items()]}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            tag = self._registered(type(value))
            fields = {
                f.name: self.encode(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init
            }
            return {"d": tag, "f": fields}
        raise _Unencodable(f"cannot store a {type(value).__qualname__}")

    def decode(self, data: Any) -> Any:
        """The value `data` encodes; KeyError/ValueError/TypeError if it is not a valid encoding."""
        if isinstance(data, list):
            return [self.decode(v) for v in data]
        if not isinstance(data, dict):
            return data
        if "d" in data:
            cls = self.types[data["d"]]
            if not dataclasses.is_dataclass(cls):
                raise ValueError(f"{data['d']} is not a dataclass")
            fields = data["f"]
            if set(fields) != {f.name for f in dataclasses.fields(cls) if f.init}:
                raise ValueError(f"{data['d']}: stored fields differ from the class's")
            return cls(**{name: self.decode(v) for name, v in fields.items()})
        if "e" in data:
            return self.types[data["e"]](data["v"])
        ((tag, body),) = data.items()
        if tag == "b":
            return base64.b64decode(body, validate=True)
        if tag == "t":
            return tuple(self.decode(v) for v in body)
        if tag == "s":
            return frozenset(self.decode(v) for v in body)
        if tag == "m":
            return {self.decode(k): self.decode(v) for k, v in body}
        raise ValueError(f"unknown value tag {tag!r}")


# --- the file format -----------------------------------------------------------------------------

# Entries are stored by column, not by row: one JSON string per text column and one list per
# number column parse about 3x faster than 60k small lists (a warm run is mostly this decode).
_KIND_CHARS = {
    Kind.FILE: "f",
    Kind.DIR: "d",
    Kind.SYMLINK: "l",
    Kind.HARDLINK: "h",
    Kind.CHAR: "c",
    Kind.BLOCK: "b",
    Kind.FIFO: "p",
}
_CHAR_KINDS = {char: kind for kind, char in _KIND_CHARS.items()}
_TEXT_COLUMNS = ("path", "linkname", "uname", "gname")
_NUMBER_COLUMNS = ("mode", "uid", "gid", "size", "mtime", "devmajor", "devminor", "offset")


def _text_column(values: list[str]) -> str | list[str]:
    # NUL cannot be in a tar name (ustar fields are NUL-terminated); a pax record could carry
    # one, so such a column falls back to a plain list.
    return values if any("\0" in v for v in values) else "\0".join(values)


def _split(column: str | list[str], count: int) -> list[str]:
    values = column.split("\0") if isinstance(column, str) else column
    if count == 0:
        return []
    if len(values) != count:
        raise ValueError(f"column of {len(values)} values for {count} entries")
    return values


def _entry_columns(entries: tuple[Entry, ...]) -> dict[str, Any]:
    columns: dict[str, Any] = {"count": len(entries), "kind": "".join(_KIND_CHARS[e.kind] for e in entries)}
    for name in _TEXT_COLUMNS:
        columns[name] = _text_column([getattr(e, name) for e in entries])
    for name in _NUMBER_COLUMNS:
        columns[name] = [getattr(e, name) for e in entries]
    columns["xattrs"] = [
        [i, {k: _b64(v) for k, v in e.xattrs.items()}] for i, e in enumerate(entries) if e.xattrs
    ]
    return columns


def _entries(columns: dict[str, Any]) -> tuple[Entry, ...]:
    # Tens of thousands of new acyclic objects make the cyclic GC run again and again for
    # nothing (a third of the decode time): pause it meanwhile, as bulk loaders commonly do.
    paused = gc.isenabled()
    gc.disable()
    try:
        return _build_entries(columns)
    finally:
        if paused:
            gc.enable()


def _build_entries(columns: dict[str, Any]) -> tuple[Entry, ...]:
    count = columns["count"]
    kinds = [_CHAR_KINDS[c] for c in columns["kind"]]
    paths, links, unames, gnames = (_split(columns[name], count) for name in _TEXT_COLUMNS)
    numbers = [columns[name] for name in _NUMBER_COLUMNS]
    if len(kinds) != count:
        raise ValueError(f"{len(kinds)} kinds for {count} entries")
    xattrs: dict[int, dict[str, bytes]] = {
        i: {k: base64.b64decode(v, validate=True) for k, v in values.items()}
        for i, values in columns["xattrs"]
    }
    modes, uids, gids, sizes, mtimes, majors, minors, offsets = numbers
    return tuple(
        make_entry(p, k, m, u, g, s, t, ln, un, gn, dma, dmi, xattrs.get(i) or NO_XATTRS, o)
        for i, (p, k, m, u, g, s, t, ln, un, gn, dma, dmi, o) in enumerate(
            zip(
                paths,
                kinds,
                modes,
                uids,
                gids,
                sizes,
                mtimes,
                links,
                unames,
                gnames,
                majors,
                minors,
                offsets,
                strict=True,
            )
        )
    )


def encode_index(index: LayerIndex, key: str, codec: AnalysisCodec) -> bytes:
    """One cache file's bytes (see the module docstring)."""
    doc = {
        "key": key,
        "name": index.name,
        "digest": str(index.digest),
        "diff_id": str(index.diff_id),
        "media_type": index.media_type,
        "compression": index.compression.value,
        "compressed_size": index.compressed_size,
        "size": index.size,
        "entries": _entry_columns(index.entries),
        "captured": [[path, _b64(data)] for path, data in index.captured.items()],
        "complete": sorted(index.complete),
        "notes": list(index.notes),
        "analyses": [[path, codec.encode(result)] for path, result in index.analyses.items()],
    }
    # ensure_ascii keeps surrogate-escaped (non-UTF-8) names intact through the round trip.
    body = zlib.compress(json.dumps(doc, ensure_ascii=True, separators=(",", ":")).encode("ascii"), 1)
    return _HEAD.pack(_MAGIC, FORMAT_VERSION, hashlib.sha256(body).digest()) + body


class CorruptEntry(Exception):
    """A cache file that is not a complete, valid entry of this format (never shown to users)."""


def decode_index(data: bytes, codec: AnalysisCodec) -> tuple[str, LayerIndex]:
    """(spec key, index) from a cache file's bytes; CorruptEntry if they are not valid."""
    if len(data) < _HEAD.size:
        raise CorruptEntry(f"{len(data)} bytes, shorter than the header")
    magic, version, checksum = _HEAD.unpack_from(data)
    if magic != _MAGIC or version != FORMAT_VERSION:
        raise CorruptEntry(f"not a format {FORMAT_VERSION} entry (magic {magic!r}, version {version})")
    body = memoryview(data)[_HEAD.size :]
    if hashlib.sha256(body).digest() != checksum:
        raise CorruptEntry("body checksum mismatch (truncated or damaged)")
    limit = max(_MIN_INFLATED, MAX_INFLATION * len(body))
    inflate = zlib.decompressobj()
    try:
        text = inflate.decompress(body, limit)
    except zlib.error as exc:
        raise CorruptEntry(f"zlib: {exc}") from exc
    if inflate.unconsumed_tail or not inflate.eof:
        raise CorruptEntry(f"body inflates past {limit} bytes ({MAX_INFLATION}x its size) or is cut")
    try:
        doc = json.loads(text)
        index = LayerIndex(
            name=doc["name"],
            digest=Digest.parse(doc["digest"]),
            diff_id=Digest.parse(doc["diff_id"]),
            media_type=doc["media_type"],
            compression=Compression(doc["compression"]),
            compressed_size=doc["compressed_size"],
            size=doc["size"],
            entries=_entries(doc["entries"]),
            captured={path: base64.b64decode(b64) for path, b64 in doc["captured"]},
            complete=frozenset(doc["complete"]),
            notes=tuple(doc["notes"]),
            analyses={path: codec.decode(value) for path, value in doc["analyses"]},
        )
        return doc["key"], index
    except Exception as exc:  # whatever a damaged file makes the decoders raise: it is a miss
        raise CorruptEntry(f"{type(exc).__name__}: {exc}") from exc


# --- the cache -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CacheInfo:
    root: Path
    entries: int  # entries of the current format
    size: int  # bytes of everything under root
    obsolete: int  # files of other format versions and leftovers of dead writers


@dataclass(frozen=True, slots=True)
class PruneResult:
    removed: int
    freed: int
    entries: int  # left
    size: int  # left


class LayerCache:
    """The cache directory.  Thread-safe; safe with other processes using the same directory."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        analysis_types: Iterable[type] = (),
        salt: str = "",
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.root = Path(root)
        self.salt = salt
        self._codec = AnalysisCodec(analysis_types)
        self._warn = warn or log.warning
        self._writable = True
        self._verified = False
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}

    @property
    def layers_dir(self) -> Path:
        return self.root / f"layers-v{FORMAT_VERSION}"

    def path(self, digest: Digest, key: str) -> Path:
        return self.layers_dir / digest.algorithm / digest.hex[:2] / f"{digest.hex}.{key}{_SUFFIX}"

    # -- get / put

    def layer(
        self,
        descriptor: Descriptor,
        diff_id: Digest,
        capture: CaptureSpec | None,
        analyze: AnalyzeSpec | None,
        build: Callable[[], LayerIndex],
    ) -> LayerIndex:
        """The cached index of this layer for this spec, else `build()` it and store it.

        Threads asking for the same entry wait for the first one's build (images of a batch
        share base layers), so each layer is fetched at most once per process.
        """
        key = spec_key(capture, analyze, self.salt)
        if key is None:
            return build()
        with self._lock:
            gate = self._building.setdefault(f"{descriptor.digest}/{key}", threading.Lock())
        with gate:
            hit = self.load(descriptor, diff_id, key)
            if hit is not None:
                return hit
            index = build()
            self.store(index, key)
            return index

    def load(self, descriptor: Descriptor, diff_id: Digest, key: str) -> LayerIndex | None:
        path = self.path(descriptor.digest, key)
        if not self.root.is_dir():
            return None
        self.verify()
        try:
            with path.open("rb") as fh:
                st = os.fstat(fh.fileno())
                inode = st.st_ino
                _require_private(path, st, what="cache entry")
                for directory in _between(self.root, path):
                    _require_private(directory, os.stat(directory), what="cache directory")
                data = fh.read()
        except OSError:
            return None
        try:
            stored_key, index = decode_index(data, self._codec)
        except CorruptEntry as exc:
            log.debug("cache entry %s ignored and removed: %s", path, exc)
            self._remove_if_same(path, inode)
            return None
        wanted = (key, descriptor.digest, diff_id, descriptor.media_type, descriptor.size)
        found = (stored_key, index.digest, index.diff_id, index.media_type, index.compressed_size)
        if found != wanted:
            # Keys collide only if the manifest and config disagree with what was cached for this
            # digest (another diff_id or media type): the current manifest wins, rebuild.
            log.debug("cache entry %s ignored: it was stored for %s, not %s", path, found, wanted)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # the mtime is the last use, which prune's LRU order follows
        return index

    def _remove_if_same(self, path: Path, inode: int) -> None:
        # A writer may have renamed a good entry over the bad one since we read it: keep that.
        try:
            if os.stat(path).st_ino == inode:
                path.unlink()
        except OSError:
            pass

    def store(self, index: LayerIndex, key: str) -> bool:
        """Write one entry atomically; False (and a warning, once) if it could not be written."""
        if not self._writable:
            return False
        try:
            data = encode_index(index, key, self._codec)
        except _Unencodable as exc:
            log.debug("layer %s not cached: %s", index.digest, exc)
            return False
        path = self.path(index.digest, key)
        try:
            self._ensure_root()
            for directory in _between(self.root, path):
                with contextlib.suppress(FileExistsError):
                    directory.mkdir(mode=_DIR_MODE)
                _require_private(directory, os.stat(directory), what="cache directory")
            _atomic_write(path, data)
        except OSError as exc:
            with self._lock:
                first, self._writable = self._writable, False
            if first:
                reason = exc.strerror or str(exc)
                self._warn(f"cache directory {self.root} cannot be written ({reason}); continuing without it")
            return False
        return True

    def verify(self) -> None:
        """UnsafeCache unless the cache directory (if it exists) is the user's alone (see the
        module docstring); checked once per LayerCache, before its first read or write."""
        with self._lock:
            if self._verified or not self.root.exists():
                return
            uid = os.geteuid()
            for link in (self.root, *self.root.absolute().parents):
                st = os.lstat(link)
                if stat.S_ISLNK(st.st_mode) and st.st_uid not in (uid, 0):
                    raise UnsafeCache(
                        f"cache directory {self.root}: the symlink {link} belongs to uid {st.st_uid}, "
                        "who could point it elsewhere; use a --cache-dir of your own"
                    )
            real = Path(os.path.realpath(self.root))
            _require_private(self.root, os.stat(real), what="cache directory")
            for parent in real.parents:
                st = os.stat(parent)
                if st.st_uid not in (uid, 0):
                    raise UnsafeCache(
                        f"cache directory {self.root}: {parent} above it belongs to uid {st.st_uid}, "
                        "who could replace it; use a --cache-dir whose parents are yours or root's"
                    )
                if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
                    raise UnsafeCache(
                        f"cache directory {self.root}: {parent} above it is writable by "
                        f"{_writers(st.st_mode)} (mode {st.st_mode & 0o7777:04o}, not sticky); "
                        "use a --cache-dir whose parents only you or root can write"
                    )
            self._verified = True

    def _ensure_root(self) -> None:
        missing = [p for p in (self.root, *self.root.parents) if not p.exists()]
        for directory in reversed(missing):
            with contextlib.suppress(FileExistsError):
                directory.mkdir(mode=_DIR_MODE)
        self.verify()
        tag = self.root / "CACHEDIR.TAG"
        if not tag.exists():
            # Backup tools skip a directory holding this (https://bford.info/cachedir/).
            _atomic_write(tag, _CACHEDIR_TAG)

    # -- maintenance

    def _our_dirs(self) -> list[Path]:
        # Only what this cache writes: a --cache-dir pointed at the wrong directory must never
        # let prune touch the files that were there.
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("layers-v*") if p.is_dir() and not p.is_symlink())

    def _files(self) -> Iterator[tuple[Path, os.stat_result]]:
        tag = self.root / "CACHEDIR.TAG"
        with contextlib.suppress(OSError):
            yield tag, tag.lstat()
        for top in self._our_dirs():
            yield from self._walk(top)

    @staticmethod
    def _walk(top: Path) -> Iterator[tuple[Path, os.stat_result]]:
        for dirpath, _, names in os.walk(top):
            for name in names:
                path = Path(dirpath) / name
                try:
                    yield path, path.lstat()
                except OSError:
                    continue

    def _is_entry(self, path: Path) -> bool:
        return (
            path.suffix == _SUFFIX
            and not path.name.startswith(_TMP_PREFIX)
            and path.is_relative_to(self.layers_dir)
        )

    def info(self) -> CacheInfo:
        entries = size = obsolete = 0
        for path, st in self._files():
            size += st.st_size
            if self._is_entry(path):
                entries += 1
            elif path.name != "CACHEDIR.TAG":
                obsolete += 1
        return CacheInfo(self.root, entries, size, obsolete)

    def prune(
        self,
        *,
        max_size: int | None = None,
        older_than: float | None = None,
        everything: bool = False,
        now: float | None = None,
    ) -> PruneResult:
        """Remove entries unused for `older_than` seconds, then the least recently used until the
        cache holds at most `max_size` bytes; always files of other format versions and
        leftovers of dead writers; `everything` empties the cache.  Only the cache's own files
        (layers-v*/ and CACHEDIR.TAG) are ever touched, whatever else the directory holds."""
        now = time.time() if now is None else now
        removed = freed = 0
        kept: list[tuple[float, Path, int]] = []
        for path, st in self._files():
            if path.name == "CACHEDIR.TAG" and not everything:
                continue
            if self._is_entry(path):
                drop = everything or (older_than is not None and now - st.st_mtime > older_than)
            elif path.name.startswith(_TMP_PREFIX):
                drop = everything or now - st.st_mtime > _STALE_TMP_SECONDS
            else:
                drop = True
            if drop:
                if _unlink(path):
                    removed, freed = removed + 1, freed + st.st_size
            elif self._is_entry(path):
                kept.append((st.st_mtime, path, st.st_size))
        total = sum(size for _, _, size in kept)
        if max_size is not None:
            kept.sort()  # oldest use first
            while kept and total > max_size:
                _, path, size = kept.pop(0)
                if _unlink(path):
                    removed, freed, total = removed + 1, freed + size, total - size
        for top in self._our_dirs():
            if everything:
                shutil.rmtree(top, ignore_errors=True)
            else:
                _remove_empty_dirs(top)
        if everything:
            with contextlib.suppress(OSError):
                self.root.rmdir()  # only if nothing else lives there
        return PruneResult(removed, freed, len(kept), total)


def _writers(mode: int) -> str:
    return " and ".join(who for who, bit in (("group", 0o020), ("others", 0o002)) if mode & bit)


def _require_private(path: Path, st: os.stat_result, *, what: str) -> None:
    """UnsafeCache unless `path` (whose stat is `st`) is owned by the user and not writable by
    group or others."""
    uid = os.geteuid()
    if st.st_uid != uid:
        raise UnsafeCache(
            f"{what} {path} belongs to uid {st.st_uid}, not to you (uid {uid}): its entries could "
            "steer a verdict; use a --cache-dir of your own"
        )
    if st.st_mode & 0o022:
        raise UnsafeCache(
            f"{what} {path} is writable by {_writers(st.st_mode)} (mode {st.st_mode & 0o7777:04o}): "
            f"its entries could steer a verdict; chmod go-w it or use a --cache-dir of your own"
        )


def _between(root: Path, path: Path) -> list[Path]:
    """The directories from just below `root` down to `path`'s parent."""
    return [p for p in reversed(path.parents) if p != root and p.is_relative_to(root)]


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except OSError:
        return False
    return True


def _remove_empty_dirs(root: Path) -> None:
    if not root.is_dir():
        return
    for dirpath, _, _ in sorted(os.walk(root), key=lambda item: -len(item[0])):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)  # fails, as wanted, unless empty


__all__ = [
    "FORMAT_VERSION",
    "MAX_INFLATION",
    "AnalysisCodec",
    "CacheInfo",
    "CorruptEntry",
    "LayerCache",
    "PruneResult",
    "decode_index",
    "default_cache_dir",
    "encode_index",
    "parse_size",
    "spec_key",
]
