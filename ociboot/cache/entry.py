"""One cache entry: its key, and the bytes of its file.

An entry is keyed by

    format version / layer blob digest / spec key

where the spec key hashes the capture rules (pattern, cap), the analyzers' qualified names and
a `salt` (the ociboot version and code fingerprint, verdict.py: an analyzer's output may change
between releases, or in a checkout edited in place).  `ls` and `check` ask different things of
a layer and so get different entries.

File format (never pickle: a cache directory must not be a way to run code):

    b"ocibootL" | u16 FORMAT_VERSION | 32-byte sha256 of the body | body = zlib(JSON)

The JSON holds the LayerIndex fields; entries by column; bytes as base64; analyzer results in
the codec's tagged form (codec.py).  The body checksum only catches damage (trust is the
store's: store.py).  An entry inflates to at most MAX_INFLATION times its stored size, so a
damaged or hostile entry is refused before it is expanded.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import json
import struct
import zlib
from typing import Any

from ..compression import Compression
from ..digest import Digest
from ..fs.node import NO_XATTRS, Entry, Kind, make_entry
from ..layer import AnalyzeSpec, CaptureSpec, LayerIndex
from .codec import AnalysisCodec, Unencodable, b64

FORMAT_VERSION = 1
_MAGIC = b"ocibootL"
_HEAD = struct.Struct(">8sH32s")
#: An entry's JSON is at most this many times its compressed body (real entries: under 10x),
#: and at least _MIN_INFLATED bytes are allowed whatever the body.  Past it, the entry is corrupt.
MAX_INFLATION = 64
_MIN_INFLATED = 1 << 20


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
        [i, {k: b64(v) for k, v in e.xattrs.items()}] for i, e in enumerate(entries) if e.xattrs
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
        "captured": [[path, b64(data)] for path, data in index.captured.items()],
        "complete": sorted(index.complete),
        "notes": list(index.notes),
        "analyses": [[path, codec.encode(result)] for path, result in index.analyses.items()],
    }
    return seal(_MAGIC, FORMAT_VERSION, doc)


def seal(magic: bytes, version: int, doc: Any, max_inflated: int | None = None) -> bytes:
    """A cache file's bytes holding the JSON document `doc` (see the module docstring);
    Unencodable if its JSON is longer than `max_inflated`, as `unseal` would refuse it."""
    # ensure_ascii keeps surrogate-escaped (non-UTF-8) names intact through the round trip.
    text = json.dumps(doc, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    if max_inflated is not None and len(text) > max_inflated:
        raise Unencodable(f"{len(text)} bytes of JSON, over the {max_inflated} byte cap")
    body = zlib.compress(text, 1)
    return _HEAD.pack(magic, version, hashlib.sha256(body).digest()) + body


class CorruptEntry(Exception):
    """A cache file that is not a complete, valid entry of this format (never shown to users)."""


def unseal(data: bytes, magic: bytes, version: int, max_inflated: int | None = None) -> Any:
    """The JSON document of a cache file's bytes; CorruptEntry unless they are a complete
    `magic` file of `version` whose body inflates to at most MAX_INFLATION times its size (and
    to at most `max_inflated` bytes)."""
    if len(data) < _HEAD.size:
        raise CorruptEntry(f"{len(data)} bytes, shorter than the header")
    found, found_version, checksum = _HEAD.unpack_from(data)
    if found != magic or found_version != version:
        raise CorruptEntry(f"not a format {version} entry (magic {found!r}, version {found_version})")
    body = memoryview(data)[_HEAD.size :]
    if hashlib.sha256(body).digest() != checksum:
        raise CorruptEntry("body checksum mismatch (truncated or damaged)")
    limit = max(_MIN_INFLATED, MAX_INFLATION * len(body))
    if max_inflated is not None:
        limit = min(limit, max_inflated)
    inflate = zlib.decompressobj()
    try:
        text = inflate.decompress(body, limit)
    except zlib.error as exc:
        raise CorruptEntry(f"zlib: {exc}") from exc
    if inflate.unconsumed_tail or not inflate.eof:
        raise CorruptEntry(f"body inflates past {limit} bytes (at most {MAX_INFLATION}x its size) or is cut")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # a few KiB of `[` nest past the parser's depth
        raise CorruptEntry(f"JSON: {exc}") from exc


def decode_index(data: bytes, codec: AnalysisCodec) -> tuple[str, LayerIndex]:
    """(spec key, index) from a cache file's bytes; CorruptEntry if they are not valid."""
    doc = unseal(data, _MAGIC, FORMAT_VERSION)
    try:
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
