"""The fast paths added for speed (issue 4) give exactly what the plain algorithms give.

- overlay: the parent-directory cache of a changeset must never hand out a directory that a
  later entry of the same layer replaced (a dir turned into a file or a symlink).
- tar walk: entries built by make_entry are ordinary frozen Entry values; a walk over the
  read-ahead thread equals a walk over the same bytes in memory, and the thread hands over
  errors in stream order and stops when asked; the adler32 header checksum (one call for an
  ASCII header, two halves otherwise, each checksum field parsed once) accepts exactly the
  headers whose stored checksum is their unsigned or signed byte sum.
"""

from __future__ import annotations

import dataclasses
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ociboot.errors import DigestMismatch, TruncatedLayer
from ociboot.fs import overlay
from ociboot.fs.node import Entry, Kind, Node, make_entry
from ociboot.fs.tree import FileTree
from ociboot.layer import CaptureSpec, ReadAhead, read_tar
from ociboot.layer.tarwalk import looks_like_tar
from tests.support.imagebuilder import LayerBuilder


@dataclass(frozen=True)
class Layer:
    name: str
    entries: tuple[Entry, ...]
    captured: dict[str, bytes] = field(default_factory=dict)


class _NoCache(dict[str, Node]):
    def __setitem__(self, key: str, value: Node) -> None:
        pass  # every parent is resolved from the root, as before the cache existed


class _Uncached(overlay._Changeset):
    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.parents = _NoCache()


def _flatten_uncached(layers: Sequence[Layer]) -> FileTree:
    root = Node(Entry(path="", kind=Kind.DIR, mode=0o755), 0, children={}, implicit=True)
    problems: list[str] = []
    for index, layer in enumerate(layers):
        _Uncached(root, index, layer.name, problems).apply(layer.entries)
    return FileTree(root, layers, problems)


def _shape(tree: FileTree) -> list[tuple[str, str, int, str, bool]]:
    return [
        (path, node.kind.value, node.layer, node.entry.linkname, node.implicit)
        for path, node in tree.walk("/")
    ]


def test_dir_replaced_by_symlink_in_the_same_layer() -> None:
    layer = Layer(
        "l0",
        (
            Entry("a/x", Kind.FILE),
            Entry("b", Kind.DIR),
            Entry("a", Kind.SYMLINK, linkname="b"),
            Entry("a/y", Kind.FILE),
        ),
    )
    tree = overlay.flatten([layer])
    assert tree.lookup("/b/y", follow=False).ok
    assert not tree.lookup("/b/x").ok
    assert tree.lookup("/a", follow=False).node is not None
    assert tree.lookup("/a", follow=False).node.kind is Kind.SYMLINK  # type: ignore[union-attr]


def test_dir_replaced_by_file_in_the_same_layer() -> None:
    layer = Layer(
        "l0", (Entry("d", Kind.DIR), Entry("d/f", Kind.FILE), Entry("d", Kind.FILE), Entry("d/g", Kind.FILE))
    )
    tree = overlay.flatten([layer])
    node = tree.lookup("/d").node
    assert node is not None and node.kind is Kind.FILE
    assert any("/d/g" in p and "entry skipped" in p for p in tree.problems)


_names = st.sampled_from(["a", "b", "c"])
_paths = st.lists(_names, min_size=1, max_size=3).map("/".join)
_entries = st.one_of(
    st.builds(lambda p: Entry(p, Kind.FILE), _paths),
    st.builds(lambda p: Entry(p, Kind.DIR), _paths),
    st.builds(
        lambda p, t: Entry(p, Kind.SYMLINK, linkname=t), _paths, st.one_of(_paths, _paths.map("/".__add__))
    ),
    st.builds(lambda p, t: Entry(p, Kind.HARDLINK, linkname=t), _paths, _paths),
    st.builds(
        lambda p: Entry(
            p.rpartition("/")[0] + ("/" if "/" in p else "") + ".wh." + p.rpartition("/")[2], Kind.FILE
        ),
        _paths,
    ),
)
_layers = st.lists(st.lists(_entries, max_size=12).map(tuple), min_size=1, max_size=3)


@settings(max_examples=400, deadline=None)
@given(_layers)
def test_cached_parents_equal_uncached(raw: list[tuple[Entry, ...]]) -> None:
    layers = [Layer(f"l{i}", entries) for i, entries in enumerate(raw)]
    fast, plain = overlay.flatten(layers), _flatten_uncached(layers)
    assert _shape(fast) == _shape(plain)
    assert fast.problems == plain.problems


# --- tar walker: the fast Entry constructor and the read-ahead thread -----------------------


def test_make_entry_is_an_ordinary_frozen_entry() -> None:
    args = ("usr/bin/x", Kind.FILE, 0o755, 1, 2, 3, 4, "", "root", "wheel", 0, 0, {"user.a": b"\0"}, 512)
    fast, plain = make_entry(*args), Entry(*args)
    assert type(fast) is Entry
    assert fast == plain and hash(fast) == hash(plain) and repr(fast) == repr(plain)
    assert dataclasses.astuple(fast) == dataclasses.astuple(plain)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.path = "elsewhere"  # type: ignore[misc]


class _Chunks:
    """A stream that returns the given chunks, then raises `error` (if any) instead of EOF."""

    def __init__(self, chunks: list[bytes], error: BaseException | None = None) -> None:
        self.chunks = list(chunks)
        self.error = error
        self.reads = 0

    def read(self, n: int = -1) -> bytes:
        self.reads += 1
        if self.chunks:
            return self.chunks.pop(0)
        if self.error is not None:
            raise self.error
        return b""


def test_read_ahead_gives_the_bytes_in_order_then_the_error() -> None:
    ahead = ReadAhead(_Chunks([b"abc", b"defg"], TruncatedLayer("layer X: cut")))
    try:
        assert ahead.read(2) == b"ab"
        assert ahead.read(10) == b"c"
        assert ahead.read(-1) == b"defg"
        with pytest.raises(TruncatedLayer, match="cut"):
            ahead.read(1)
        assert ahead.read(1) == b""  # the error is raised once, then the stream is over
    finally:
        ahead.stop()


def test_read_ahead_stop_releases_a_blocked_producer() -> None:
    source = _Chunks([bytes([i]) * 10 for i in range(50)])
    ahead = ReadAhead(source, chunk=10, depth=2)
    assert ahead.read(10) == bytes(10)
    ahead.stop()
    assert not ahead._thread.is_alive()
    assert source.reads < 50  # it stopped reading ahead, it did not drain the source


def test_read_ahead_restores_the_switch_interval_when_the_last_one_stops() -> None:
    before = sys.getswitchinterval()
    first, second = ReadAhead(_Chunks([b"a"])), ReadAhead(_Chunks([b"b"]))
    assert sys.getswitchinterval() < before
    first.stop()
    first.stop()  # stopping twice counts once
    assert sys.getswitchinterval() < before
    second.stop()
    assert sys.getswitchinterval() == before


def test_read_ahead_drain_raises_what_the_producer_raised() -> None:
    ahead = ReadAhead(_Chunks([b"x" * 100], DigestMismatch("sha256:aa", "sha256:bb", "layer")))
    with pytest.raises(DigestMismatch):
        ahead.drain()
    ahead.stop()


def test_tar_walk_over_read_ahead_equals_walk_over_bytes() -> None:
    layer = LayerBuilder()
    for i in range(300):
        layer.file(
            f"usr/share/d{i % 7}/f{i}", bytes([i % 251]) * (i * 37 % 3000), uid=i % 3, mode=0o600 + i % 2
        )
    tar = layer.tar()
    capture = CaptureSpec({"usr/share/d1/*": 100})
    plain = read_tar(io.BytesIO(tar), capture=capture)
    ahead = ReadAhead(_Chunks([tar[i : i + 1000] for i in range(0, len(tar), 1000)]), chunk=1000)
    try:
        threaded = read_tar(ahead, capture=capture)
    finally:
        ahead.stop()
    assert threaded.entries == plain.entries and len(plain.entries) == 300
    assert [e.offset for e in threaded.entries] == [e.offset for e in plain.entries]
    assert threaded.captured == plain.captured and threaded.complete == plain.complete


def _plain_checksum_ok(hdr: bytes) -> bool:
    """POSIX ustar's checksum as tarfile computes it: the field counted as 8 spaces."""
    try:
        stored = int(hdr[148:156].split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        return False
    blanked = hdr[:148] + b" " * 8 + hdr[156:]
    unsigned = sum(blanked)
    signed = sum(b - 256 if b > 127 else b for b in blanked)
    return stored in (unsigned, signed)


_header_bytes = st.one_of(
    st.binary(min_size=512, max_size=512),
    st.binary(min_size=512, max_size=512).map(lambda b: bytes(x & 0x7F for x in b)),  # ASCII
    st.binary(min_size=512, max_size=512).map(lambda b: bytes(x | 0x80 for x in b)),  # all high
)


@settings(max_examples=400, deadline=None)
@given(hdr=_header_bytes, offset=st.sampled_from([0, 1, -1, 256, -256, 65521, -65521, 65536]))
def test_header_checksum_equals_the_plain_byte_sum(hdr: bytes, offset: int) -> None:
    blanked = hdr[:148] + b" " * 8 + hdr[156:]
    for total in (sum(blanked), sum(b - 256 if b > 127 else b for b in blanked)):
        stated = total + offset
        if not 0 <= stated < 8**6:
            continue
        header = hdr[:148] + b"%06o\0 " % stated + hdr[156:]
        if header == bytes(512):
            continue
        assert looks_like_tar(header) == _plain_checksum_ok(header)
        assert looks_like_tar(header) == (offset == 0 or _plain_checksum_ok(header))
