"""Index one layer in one pass: verify, decompress, walk the tar, keep only the bytes asked for.

    [read-ahead thread]  compressed blob ──VerifyingReader(blob digest, size)──> sniff +
        decompress ──VerifyingReader(diff_id)──> queue of 1 MiB chunks
    [caller's thread]    ──> tar header walker ──> LayerIndex

Both readers are drained to EOF (trailing zero blocks, padding, bytes after the archive), so a
wrong blob digest or diff_id always surfaces (go-containerregistry's mutate.Extract does the same,
ggcr#2303).  Memory holds a few queued chunks plus the captured bytes, never a whole layer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..budget import Metered
from ..compression import Compression, PeekableReader, Readable, open_decompressed, sniff
from ..digest import Digest, VerifyingReader
from ..errors import DigestMismatch, LayerError, SourceError, UnsupportedMediaType
from ..fs.node import Entry
from ..mediatypes import layer_compression, unreadable_layer
from ..sources import ImageSource
from ..spec import Descriptor
from .readahead import ReadAhead
from .select import AnalyzeSpec, CaptureSpec
from .tarwalk import BLOCK, looks_like_tar, read_tar


@dataclass(frozen=True, slots=True)
class LayerIndex:
    """One verified layer: satisfies fs.node.LayerContent.

    `captured` holds the bytes kept per path (cut at the capture cap unless the path is in
    `complete`); `entries` are in tar order with duplicates kept, for the overlay's last-wins.
    """

    name: str
    digest: Digest
    diff_id: Digest
    media_type: str
    compression: Compression
    compressed_size: int
    size: int
    entries: tuple[Entry, ...]
    captured: Mapping[str, bytes] = field(default_factory=dict)
    complete: frozenset[str] = frozenset()
    notes: tuple[str, ...] = ()
    analyses: Mapping[str, Any] = field(default_factory=dict)


def index_layer(
    source: ImageSource,
    descriptor: Descriptor,
    diff_id: Digest,
    capture: CaptureSpec | None = None,
    *,
    analyze: AnalyzeSpec | None = None,
    progress: Callable[[int], None] | None = None,
) -> LayerIndex:
    """Stream one layer blob, verifying its digest, size and diff_id, and index its tar."""
    digest, media_type = descriptor.digest, descriptor.media_type
    problem = unreadable_layer(media_type)
    declared = layer_compression(media_type)
    if problem is not None or declared is None:
        raise UnsupportedMediaType(f"layer {digest} has media type {media_type!r}: {problem}")
    raw = source.open_blob(descriptor)
    try:
        blob = VerifyingReader(raw, digest, what=f"layer {digest}", size=descriptor.size)
        head = PeekableReader(Metered(blob, progress) if progress else blob)
        compression = _content_compression(head.peek(BLOCK))
        notes = []
        if compression != declared:
            # containerd and Docker decompress what the magic says; so do we, and say so.
            notes.append(f"media type {media_type} says {declared}, content is {compression}")
        stream = _Until(open_decompressed(head, compression, what=f"layer {digest}"), source.deadline, digest)
        tar = VerifyingReader(stream, diff_id, what=f"layer {digest} uncompressed (diff_id)")
        ahead = ReadAhead(tar)
        try:
            listing = read_tar(ahead, name=f"layer {digest}", capture=capture, analyze=analyze)
            ahead.drain()
        except (LayerError, DigestMismatch) as exc:
            ahead.stop()
            _blame_blob(blob, exc)
            raise
        finally:
            ahead.stop()  # joins the thread before anyone else reads or closes the blob
        blob.drain()
    finally:
        raw.close()
    return LayerIndex(
        name=str(digest),
        digest=digest,
        diff_id=diff_id,
        media_type=media_type,
        compression=compression,
        compressed_size=blob.count,
        size=tar.count,
        entries=listing.entries,
        captured=listing.captured,
        complete=listing.complete,
        notes=(*notes, *listing.notes),
        analyses=listing.analyses,
    )


class _Until:
    """A layer's uncompressed stream, given up on once the image's deadline has passed.

    The bound is time, checked at every chunk: a blob of a few kilobytes can inflate for hours
    (a zstd bomb), and an image may list thousands of layers."""

    def __init__(self, raw: Readable, deadline: float, digest: Digest) -> None:
        self._raw = raw
        self._deadline = deadline
        self._digest = digest

    def read(self, n: int = -1) -> bytes:
        if time.monotonic() > self._deadline:
            raise SourceError(f"gave up on layer {self._digest}: the image was not read within its --timeout")
        return self._raw.read(n)

    def close(self) -> None:
        close = getattr(self._raw, "close", None)
        if close is not None:
            close()


def _content_compression(head: bytes) -> Compression:
    # A plain tar whose first name happens to start like a magic (a file named "]" looks like
    # lzma) is still a tar: a valid header checksum settles it.
    if looks_like_tar(head):
        return Compression.NONE
    return sniff(head)


def _blame_blob(blob: VerifyingReader, exc: BaseException) -> None:
    """If the compressed bytes are not the blob the descriptor names, that is the real error."""
    if blob.verified:
        return
    try:
        blob.drain()
    except DigestMismatch as mismatch:
        if mismatch is not exc:
            raise mismatch from exc
    except LayerError:
        pass
