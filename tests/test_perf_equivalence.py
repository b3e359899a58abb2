"""The fast paths added for speed (issue 4) give exactly what the plain algorithms give.

- overlay: the parent-directory cache of a changeset must never hand out a directory that a
  later entry of the same layer replaced (a dir turned into a file or a symlink).
- tar walk: entries built by make_entry are ordinary frozen Entry values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ociboot.fs import overlay
from ociboot.fs.node import Entry, Kind, Node, make_entry
from ociboot.fs.tree import FileTree


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


# --- tar walker: the fast Entry constructor -----------------------


def test_make_entry_is_an_ordinary_frozen_entry() -> None:
    args = ("usr/bin/x", Kind.FILE, 0o755, 1, 2, 3, 4, "", "root", "wheel", 0, 0, {"user.a": b"\0"}, 512)
    fast, plain = make_entry(*args), Entry(*args)
    assert type(fast) is Entry
    assert fast == plain and hash(fast) == hash(plain) and repr(fast) == repr(plain)
    assert dataclasses.astuple(fast) == dataclasses.astuple(plain)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.path = "elsewhere"  # type: ignore[misc]
