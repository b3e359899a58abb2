"""Overlay laws: flatten() against a naive reference model (docs/architecture.md §6).

The model keeps the filesystem as a flat dict `path tuple -> Rec` and applies each layer with
the rules spelled out one by one (fs/overlay.py's docstring states the same rules):
1. every whiteout `P/.wh.N` deletes P/N and everything below it, P resolved through links;
2. every opaque marker `D/.wh..wh..opq` deletes everything below D, and makes D a directory if
   it was not one (the link path, never its target);
3. every other entry, in order: its parent resolved through links (missing parts created as
   implicit directories; a file or a loop on the way skips the entry); dir over dir keeps
   what is below; anything else deletes the old subtree and writes the new record; a hardlink
   copies its target's record (as it is now), or is dangling if the target is a directory;
4. a hardlink whose target was missing or itself dangling in step 3 and that still holds its
   path is bound again once the layer's entries are placed, over and over until nothing
   changes; what is still missing, a directory or dangling then stays dangling.
Stacks are drawn over a three-letter alphabet so that paths collide often.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from ociboot.fs.node import Entry, Kind
from ociboot.fs.overlay import flatten
from ociboot.fs.tree import MAXSYMLINKS, FileTree
from tests.test_overlay import Layer

Path = tuple[str, ...]


@dataclass(frozen=True)
class Rec:
    kind: str  # a Kind value; "hardlink" means a dangling hardlink
    layer: int
    link: str = ""
    implicit: bool = False


State = dict[Path, Rec]


def parts_of(text: str) -> list[str]:
    return [p for p in text.split("/") if p not in ("", ".")]


def is_dir(state: State, path: Path) -> bool:
    return path == () or (path in state and state[path].kind == "dir")


def model_resolve(state: State, parts: Path, *, follow_last: bool, create: int | None = None) -> Path | None:
    """Canonical path of `parts`, or None if it cannot be reached (missing, notdir, loop)."""
    out: list[str] = []
    todo = [p for p in parts if p not in ("", ".")]
    hops = 0
    while todo:
        name = todo.pop(0)
        if not is_dir(state, tuple(out)):
            return None
        if name == "..":
            out = out[:-1]
            continue
        here = (*out, name)
        rec = state.get(here)
        if rec is None:
            if create is None:
                return None
            state[here] = Rec("dir", create, implicit=True)
        elif rec.kind == "symlink" and (todo or follow_last):
            hops += 1
            if hops > MAXSYMLINKS:
                return None
            if rec.link.startswith("/"):
                out = []
            todo = parts_of(rec.link) + todo
            continue
        out.append(name)
    return tuple(out)


def delete_below(state: State, path: Path, *, keep_self: bool = False) -> None:
    for key in [k for k in state if k[: len(path)] == path]:
        if not (keep_self and key == path):
            del state[key]


def model_apply(state: State, index: int, entries: list[Entry]) -> None:
    whiteouts = [e for e in entries if e.name.startswith(".wh.") and e.name != ".wh..wh..opq"]
    opaque = [e for e in entries if e.name == ".wh..wh..opq"]
    regular = [e for e in entries if not e.name.startswith(".wh.")]
    for e in whiteouts:
        parent = model_resolve(state, tuple(parts_of(e.parent)), follow_last=True)
        if parent is not None and is_dir(state, parent):
            delete_below(state, (*parent, e.name[4:]))
    for e in opaque:
        directory = tuple(parts_of(e.parent))
        if not directory:
            state.clear()
            continue
        parent = model_resolve(state, directory[:-1], follow_last=True, create=index)
        if parent is None or not is_dir(state, parent):
            continue
        here = (*parent, directory[-1])
        dir_already = is_dir(state, here)
        delete_below(state, here, keep_self=dir_already)
        if not dir_already:
            state[here] = Rec("dir", index, implicit=True)
    late: list[tuple[Path, Rec, Entry]] = []
    for e in regular:
        parts = tuple(parts_of(e.path))
        parent = model_resolve(state, parts[:-1], follow_last=True, create=index)
        if parent is None or not is_dir(state, parent):
            continue
        here = (*parent, parts[-1])
        if e.kind is Kind.DIR and is_dir(state, here):
            state[here] = Rec("dir", index)
            continue
        if e.kind is Kind.HARDLINK:
            where = model_resolve(state, tuple(parts_of(e.linkname)), follow_last=False)
            target = state.get(where) if where else None
            if target is None or target.kind in ("dir", "hardlink"):
                rec = Rec("hardlink", index)
                if target is None or target.kind == "hardlink":
                    late.append((here, rec, e))
            else:
                rec = Rec(target.kind, target.layer, target.link)
        else:
            rec = Rec(e.kind.value, index, e.linkname)
        delete_below(state, here)
        state[here] = rec
    changed = True
    while changed:
        changed = False
        for here, placeholder, e in late:
            if state.get(here) is not placeholder:
                continue
            where = model_resolve(state, tuple(parts_of(e.linkname)), follow_last=False)
            target = state.get(where) if where else None
            if target is not None and target.kind not in ("dir", "hardlink"):
                state[here] = Rec(target.kind, target.layer, target.link)
                changed = True


def model(layers: list[list[Entry]]) -> dict[str, tuple[str, int, bool]]:
    state: State = {}
    for index, entries in enumerate(layers):
        model_apply(state, index, entries)
    return {"/" + "/".join(p): (r.kind, r.layer, r.implicit) for p, r in state.items()}


def observed(tree: FileTree) -> dict[str, tuple[str, int, bool]]:
    return {p: (n.kind.value, n.layer, n.implicit) for p, n in tree.walk("/")}


names = st.sampled_from(["a", "b", "c"])
paths = st.lists(names, min_size=1, max_size=3).map(tuple)
targets = st.sampled_from(["a", "b", "../a", "/b", "/a/b", "c/a", "..", ".", "nope", "a/b/c"])


def join(parts: Path) -> str:
    return "/".join(parts)


entries = st.one_of(
    st.builds(lambda p: Entry(join(p), Kind.FILE), paths),
    st.builds(lambda p: Entry(join(p), Kind.DIR), paths),
    st.builds(lambda p, t: Entry(join(p), Kind.SYMLINK, linkname=t), paths, targets),
    st.builds(lambda p, t: Entry(join(p), Kind.HARDLINK, linkname=join(t)), paths, paths),
    st.builds(lambda p: Entry(join((*p[:-1], ".wh." + p[-1])), Kind.FILE), paths),
    st.builds(lambda d: Entry(join((*d, ".wh..wh..opq")), Kind.FILE), st.lists(names, max_size=2).map(tuple)),
)
stacks = st.lists(st.lists(entries, max_size=6), min_size=1, max_size=4)


def as_layers(stack: list[list[Entry]]) -> list[Layer]:
    return [Layer(f"layer{i}", tuple(entries)) for i, entries in enumerate(stack)]


@settings(max_examples=400, deadline=None)
@given(stacks)
def test_flatten_matches_the_reference_model(stack: list[list[Entry]]) -> None:
    assert observed(flatten(as_layers(stack))) == model(stack)


@settings(max_examples=200, deadline=None)
@given(stacks)
def test_every_walked_path_looks_up_to_its_node(stack: list[list[Entry]]) -> None:
    tree = flatten(as_layers(stack))
    for path, node in tree.walk("/"):
        res = tree.lookup(path, follow=False)
        assert res.node is node and res.path == path


@settings(max_examples=200, deadline=None)
@given(stacks, st.lists(entries, max_size=6))
def test_a_layer_cannot_hide_its_own_files(stack: list[list[Entry]], top: list[Entry]) -> None:
    """l.251-252: a top-layer file at a link-free path is visible whatever else the layer holds.

    Unless a later entry of the same layer lands on the same path through a symlinked parent
    (`a -> ..` below, then `c` and `a/c` on top: both are /c, and the later one wins, as
    extraction through the link would do): such layers are left out of the property.
    """
    tree = flatten(as_layers([*stack, top]))
    if any(e.parent and tree.lookup(e.parent).chain for e in top):
        return
    last = {e.path: e for e in top if not e.name.startswith(".wh.")}
    for path, e in last.items():
        res = tree.lookup(path, follow=False)
        if res.ok and not res.chain and e.kind is Kind.FILE:
            assert res.node is not None and res.node.entry is e


@settings(max_examples=200, deadline=None)
@given(stacks)
def test_lookups_terminate_and_stay_inside(stack: list[list[Entry]]) -> None:
    tree = flatten(as_layers(stack))
    for path, _ in list(tree.walk("/")):
        for follow in (True, False):
            res = tree.lookup(path + "/../../a/b", follow=follow)
            assert res.path.startswith("/") and ".." not in res.path.split("/")
            assert len(res.chain) <= MAXSYMLINKS
