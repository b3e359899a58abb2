"""The cache directory: entries stored, found, trusted, listed and pruned.

One file per (digest, spec) rather than shared entries plus per-spec extras: a single file is
valid or not as a whole, so one atomic rename is all the consistency there is to keep; the
price is that the entries of a layer indexed by two commands are stored twice.

An entry is used only for a digest the current, verified manifest names (the caller passes the
manifest's descriptor) and only if its diff_id, media type and size equal what the manifest and
config say; otherwise it is ignored and rebuilt.

Trust: an entry decides what a check sees of a layer, so whoever can write one can steer a
verdict; the body checksum only catches damage.  So, as ssh (StrictModes) and gpg do with their
files, the cache is used only if it is the user's alone: the directory and every directory and
entry below it must be owned by the user and not writable by group or others, and every
directory above it must be owned by the user or root and not writable by group or others,
unless it is sticky (/tmp: others cannot rename what is ours in it).  Anything else is
UnsafeCache, one line and exit 2, before anything is read.  Directories ociboot creates are
0700.  (A keyed MAC would add nothing: its key would live in the same directory, readable by
exactly those who could write entries.)

Writes go to a temporary file in the entry's directory, are fsynced and renamed over the entry
(os.replace is atomic on POSIX): concurrent writers of one entry leave the last complete file,
readers never see a partial one.  A corrupt or truncated entry is a debug note, removed and
rebuilt.  A directory that cannot be written is one warning, then the run continues uncached.

Behind the directory may sit a shared cache on Redis (remote.py): on a local miss it is asked,
its value (once its MAC is found to be the run's key's) passes the same gate as a file
(`_decoded`) and is then kept in the directory too; what is built is stored in both.  Without a
directory only the shared cache is used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..digest import Digest
from ..errors import UnsafeCache
from ..layer import AnalyzeSpec, CaptureSpec, LayerIndex
from ..spec import Descriptor
from .codec import AnalysisCodec, Unencodable
from .entry import FORMAT_VERSION, CorruptEntry, decode_index, encode_index, spec_key
from .verdict import MAX_VERDICT_BYTES, VERDICT_FORMAT, Verdict, VerdictCodec

if TYPE_CHECKING:
    from .remote import RemoteCache

_SUFFIX = ".idx"
_VERDICT_SUFFIX = ".vdt"
_TMP_PREFIX = ".tmp-"
#: A temporary file older than this belongs to a writer that died: prune removes it.
_STALE_TMP_SECONDS = 3600
_CACHEDIR_TAG = b"Signature: 8a477f597d28d172789f06886806bc55\n# ociboot layer index cache\n"
#: Directories ociboot creates for the cache: the user's alone.
_DIR_MODE = 0o700
#: The longest layer entry read from or written to a shared cache (remote.py); real entries are a
#: few MiB (about 50 bytes per file, compressed), a longer one is refused before it is read.
MAX_SHARED_ENTRY_BYTES = 64 << 20

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


@dataclass(frozen=True, slots=True)
class CacheInfo:
    root: Path
    entries: int  # entries of the current format: layer indexes and verdicts
    size: int  # bytes of everything under root
    obsolete: int  # files of other format versions and leftovers of dead writers
    verdicts: int = 0  # of the entries, stored verdicts (verdict.py)


@dataclass(frozen=True, slots=True)
class PruneResult:
    removed: int
    freed: int
    entries: int  # left
    size: int  # left


class LayerCache:
    """The cache directory, and a shared cache (remote.py) behind it if `remote` is given.
    Thread-safe; safe with other processes using the same directory or shared cache.

    Without a directory (`root` None) only the shared cache is used: nothing is written to disk.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None,
        *,
        analysis_types: Iterable[type] = (),
        report_types: Iterable[type] = (),
        salt: str = "",
        warn: Callable[[str], None] | None = None,
        remote: RemoteCache | None = None,
        verdicts: bool = True,
    ) -> None:
        self.root = Path(root) if root is not None else None
        #: False for a cache that outlives no run (an audit's private one): a verdict, stored to
        #: be found by a later run, would be written for nobody.
        self.keeps_verdicts = verdicts
        # Where entry paths are computed; every read and write first asks whether `root` is None.
        self._base = self.root or Path()
        self.remote = remote
        self.salt = salt
        self._codec = AnalysisCodec(analysis_types)
        self._verdicts = VerdictCodec(report_types)
        self._warn = warn or log.warning
        self._writable = True
        self._verified = False
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}

    @property
    def layers_dir(self) -> Path:
        return self._base / f"layers-v{FORMAT_VERSION}"

    @property
    def verdicts_dir(self) -> Path:
        return self._base / f"verdicts-v{VERDICT_FORMAT}"

    def path(self, digest: Digest, key: str) -> Path:
        return self.layers_dir / digest.algorithm / digest.hex[:2] / f"{digest.hex}.{key}{_SUFFIX}"

    def verdict_path(self, digest: Digest, key: str) -> Path:
        return self.verdicts_dir / digest.algorithm / digest.hex[:2] / f"{digest.hex}.{key}{_VERDICT_SUFFIX}"

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
            remote = self.remote
            if remote is None or not remote.available:
                index = build()
                self.store(index, key)
                return index
            name = remote.name("layer", descriptor.digest, key)
            # Another process may be building it: wait for its entry rather than fetch it too.
            with remote.building(name, MAX_SHARED_ENTRY_BYTES) as shared:
                found = None if shared is None else self._accept(shared, descriptor, diff_id, key, name)
                if shared is not None and found is not None:
                    self._write(self.path(descriptor.digest, key), shared)
                    return found
                index = build()
                data = self._encode(index, key)
                if data is not None:
                    self._write(self.path(index.digest, key), data)
                    remote.put(name, data, MAX_SHARED_ENTRY_BYTES)
                return index

    def load(self, descriptor: Descriptor, diff_id: Digest, key: str) -> LayerIndex | None:
        path = self.path(descriptor.digest, key)
        read = self._read(path)
        if read is None:
            return None
        data, inode = read
        try:
            index = _decoded(self._codec, data, descriptor, diff_id, key, f"cache entry {path}")
        except CorruptEntry as exc:
            log.debug("cache entry %s ignored and removed: %s", path, exc)
            self._remove_if_same(path, inode)
            return None
        if index is None:
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # the mtime is the last use, which prune's LRU order follows
        return index

    def _accept(
        self, data: bytes, descriptor: Descriptor, diff_id: Digest, key: str, what: str
    ) -> LayerIndex | None:
        try:
            return _decoded(self._codec, data, descriptor, diff_id, key, what)
        except CorruptEntry as exc:
            log.debug("%s ignored: %s", what, exc)
            return None

    def _read(self, path: Path, limit: int = -1) -> tuple[bytes, int] | None:
        """An entry's bytes (at most `limit` + 1 of them) and inode, once the directory, the
        entry and every directory between are found to be the user's alone; None if absent."""
        if self.root is None or not self.root.is_dir():
            return None
        self.verify()
        try:
            with path.open("rb") as fh:
                st = os.fstat(fh.fileno())
                _require_private(path, st, what="cache entry")
                for directory in _between(self.root, path):
                    _require_private(directory, os.stat(directory), what="cache directory")
                return fh.read(limit + 1 if limit >= 0 else -1), st.st_ino
        except OSError:
            return None

    def verdict(self, digest: Digest, key: str) -> Verdict | None:
        """The stored verdict for the top `digest` under `key` (verdict.py), or None; from the
        directory, else from the shared cache (then kept in the directory too)."""
        path = self.verdict_path(digest, key)
        read = self._read(path, MAX_VERDICT_BYTES)
        if read is not None:
            data, inode = read
            try:
                found = self._verdict(data, digest, key, f"verdict {path}")
            except CorruptEntry as exc:
                log.debug("verdict %s ignored and removed: %s", path, exc)
                self._remove_if_same(path, inode)
                return None
            if found is not None:
                with contextlib.suppress(OSError):
                    os.utime(path)
            return found
        if self.remote is None:
            return None
        name = self.remote.name("verdict", digest, key)
        shared = self.remote.get(name, MAX_VERDICT_BYTES)
        if shared is None:
            return None
        try:
            found = self._verdict(shared, digest, key, name)
        except CorruptEntry as exc:
            log.debug("%s ignored: %s", name, exc)
            return None
        if found is not None:
            self._write(path, shared)
        return found

    def _verdict(self, data: bytes, digest: Digest, key: str, what: str) -> Verdict | None:
        found = self._verdicts.decode(data)
        if (found.digest, found.key) != (digest, key):
            log.debug("%s ignored: it was stored for %s %s", what, found.digest, found.key)
            return None
        return found

    def store_verdict(self, verdict: Verdict) -> bool:
        """Write one verdict atomically, to the directory and the shared cache; False if it
        could be written to neither (as `store`)."""
        try:
            data = self._verdicts.seal(verdict)
        except Unencodable as exc:
            log.debug("verdict for %s not cached: %s", verdict.digest, exc)
            return False
        written = self._write(self.verdict_path(verdict.digest, verdict.key), data)
        if self.remote is not None:
            name = self.remote.name("verdict", verdict.digest, verdict.key)
            written = self.remote.put(name, data, MAX_VERDICT_BYTES) or written
        return written

    def _remove_if_same(self, path: Path, inode: int) -> None:
        # A writer may have renamed a good entry over the bad one since we read it: keep that.
        try:
            if os.stat(path).st_ino == inode:
                path.unlink()
        except OSError:
            pass

    def store(self, index: LayerIndex, key: str) -> bool:
        """Write one entry atomically; False (and a warning, once) if it could not be written."""
        if self.root is None or not self._writable:
            return False  # before encoding: a shared cache alone, when down, has nowhere to put it
        data = self._encode(index, key)
        return data is not None and self._write(self.path(index.digest, key), data)

    def _encode(self, index: LayerIndex, key: str) -> bytes | None:
        try:
            return encode_index(index, key, self._codec)
        except Unencodable as exc:
            log.debug("layer %s not cached: %s", index.digest, exc)
            return None

    def _write(self, path: Path, data: bytes) -> bool:
        if self.root is None or not self._writable:
            return False
        try:
            self._ensure_root(self.root)
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
            if self._verified or self.root is None or not self.root.exists():
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

    def _ensure_root(self, root: Path) -> None:
        missing = [p for p in (root, *root.parents) if not p.exists()]
        for directory in reversed(missing):
            with contextlib.suppress(FileExistsError):
                directory.mkdir(mode=_DIR_MODE)
        self.verify()
        tag = root / "CACHEDIR.TAG"
        if not tag.exists():
            # Backup tools skip a directory holding this (https://bford.info/cachedir/).
            _atomic_write(tag, _CACHEDIR_TAG)

    # -- maintenance

    def _our_dirs(self) -> list[Path]:
        # Only what this cache writes: a --cache-dir pointed at the wrong directory must never
        # let prune touch the files that were there.
        if self.root is None or not self.root.is_dir():
            return []
        return sorted(
            p
            for pattern in ("layers-v*", "verdicts-v*")
            for p in self.root.glob(pattern)
            if p.is_dir() and not p.is_symlink()
        )

    def _files(self) -> Iterator[tuple[Path, os.stat_result]]:
        if self.root is None:
            return
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
        return self._is_layer(path) or self._is_verdict(path)

    def _is_layer(self, path: Path) -> bool:
        return (
            path.suffix == _SUFFIX
            and not path.name.startswith(_TMP_PREFIX)
            and path.is_relative_to(self.layers_dir)
        )

    def _is_verdict(self, path: Path) -> bool:
        return (
            path.suffix == _VERDICT_SUFFIX
            and not path.name.startswith(_TMP_PREFIX)
            and path.is_relative_to(self.verdicts_dir)
        )

    def info(self) -> CacheInfo:
        entries = size = obsolete = verdicts = 0
        for path, st in self._files():
            size += st.st_size
            if self._is_entry(path):
                entries += 1
                verdicts += self._is_verdict(path)
            elif path.name != "CACHEDIR.TAG":
                obsolete += 1
        return CacheInfo(self._base, entries, size, obsolete, verdicts)

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
        (layers-v*/, verdicts-v*/ and CACHEDIR.TAG) are ever touched, whatever else the directory holds."""
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
        if everything and self.root is not None:
            with contextlib.suppress(OSError):
                self.root.rmdir()  # only if nothing else lives there
        return PruneResult(removed, freed, len(kept), total)


def _decoded(
    codec: AnalysisCodec, data: bytes, descriptor: Descriptor, diff_id: Digest, key: str, what: str
) -> LayerIndex | None:
    """The index an entry's bytes hold if it was stored for exactly this layer and spec, else
    None (a debug note); CorruptEntry if they are no valid entry.  Local and shared entries
    pass this one gate."""
    stored_key, index = decode_index(data, codec)
    wanted = (key, descriptor.digest, diff_id, descriptor.media_type, descriptor.size)
    found = (stored_key, index.digest, index.diff_id, index.media_type, index.compressed_size)
    if found != wanted:
        # Keys collide only if the manifest and config disagree with what was cached for this
        # digest (another diff_id or media type): the current manifest wins, rebuild.
        log.debug("%s ignored: it was stored for %s, not %s", what, found, wanted)
        return None
    return index


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
