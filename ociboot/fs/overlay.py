"""Apply layer changesets base to top: `flatten(layers) -> FileTree`.

The rules are the OCI image-spec's (layer.md, "Applying Changesets" and "Whiteouts", cited by
line at v1.1.1 13cff54), with the cases peers got wrong decided on purpose:

Each layer is applied in three phases, so that the result does not depend on where markers sit
in the tar:
1. whiteouts `.wh.NAME` remove NAME from the tree built by the LOWER layers (l.251-252: files in
   the same layer are only hidden by later layers), so an entry and its whiteout in one layer
   leave the entry, whatever their order;
2. opaque markers `.wh..wh..opq` empty their directory of lower children (l.276-336: applied
   first, wherever the marker sits); the directory itself stays, or is made a directory if the
   lower path was missing, a file or a symlink: the marker says "this is a directory in this
   layer", and the link path is cleared, never its target (anchore/stereoscope#694);
3. the other entries, in tar order: dir over dir updates metadata and keeps children; every
   other case unlinks then recreates (l.234-242), so a file or symlink over a directory drops
   the lower subtree without any whiteout (aquasecurity/trivy#2637) and a directory over a
   file or symlink starts empty; a duplicate path in one layer: the last one wins.

Names, decided by name only, never by tar type (whiteouts stored as hardlinks exist in real
images, smol-machines/smolvm#401):
- a bare `.wh.` whites out nothing: InvalidWhiteout (l.248, "implementations SHOULD error");
- `.wh..wh.*` is the AUFS metadata namespace.  `.wh..wh.plnk` (and the `..plnk` spelling),
  `.wh..wh.aufs`, `.wh..wh.orph` and everything below them are skipped silently
  (moby/go-archive#54); any other `.wh..wh.*` name (`.wh..wh..opaque`, moby/moby#43279) is
  neither a whiteout nor a file: skipped, with a problem recorded, since a tool meant something
  the spec does not define.  (moby and containerd would "remove `.wh.opaque`", which cannot
  exist because such names are always whiteouts: the same visible result.)
- an entry below a `.wh.NAME` component is skipped with a problem: whiteouts are regular files
  (l.272), never directories.

Parents: an entry's parent path is resolved in the tree so far through symlinks, confined to the
root, as containerd (`fs.RootPath`) and umoci (`SecureJoin`) do when applying a layer; missing
components are created as implicit directories (mode 0o755, owner 0).  So `lib -> usr/lib`
below and `lib/modules/x` above put `x` in `usr/lib/modules`.  Only the last component is never
followed: an explicit directory entry over a symlink replaces the link.  A parent that is a
file, or a link loop, cannot be applied (containerd fails with ENOTDIR/ELOOP): the entry is
skipped and a problem recorded.  Whiteouts never create parents: they only remove.

Hardlinks take the target's record and layer at the time they are applied (target lower, or
earlier in the same layer); later whiteouts or overwrites of the target do not change the link
(google/go-containerregistry#2002).  A link whose target is not there yet (or is itself such a
link) is bound once more at the end of its layer, so a link written before its target in the
same tar reads the target (a link to such a link binds that one first; each is bound once).
A target still missing then, or a directory, is a problem, and the link stays as a node of
kind HARDLINK with nothing to read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from ..errors import InvalidWhiteout, UnsafePath
from .node import Entry, Kind, LayerContent, Node
from .tree import FileTree, resolve

# Enum attribute lookups are slow in the per-entry path: bind the members once.
_DIR, _HARDLINK = Kind.DIR, Kind.HARDLINK

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
META_PREFIX = ".wh..wh."
# AUFS's own metadata directories (aufs: AUFS_WH_PLINKDIR, AUFS_WH_BASE, AUFS_WH_ORPHDIR); the
# `..plnk` spelling is what peers' fixtures and moby/go-archive#54 show.
AUFS_META = frozenset({".wh..wh.plnk", ".wh..wh..plnk", ".wh..wh.aufs", ".wh..wh.orph"})


# A path none of whose components is empty, '.', '..' or starts with '.wh.': an ordinary entry.
_plain_name = re.compile(
    r"(?!\.wh\.)(?!\.{1,2}(?:/|$))[^/]+(?:/(?!\.wh\.)(?!\.{1,2}(?:/|$))[^/]+)*"
).fullmatch


def flatten(layers: Sequence[LayerContent]) -> FileTree:
    """The filesystem the layers make, base (index 0) first."""
    tree = empty_tree(layers)
    for _ in flatten_steps(tree):
        pass
    return tree


def flatten_steps(tree: FileTree) -> Iterator[int]:
    """Apply `tree.layers` to `tree` one at a time, yielding each layer's index once applied, so
    that callers can look at every intermediate filesystem (`ociboot layers`) in one pass."""
    for index in range(len(tree.layers)):
        apply_layer(tree, index)
        yield index


def apply_layer(tree: FileTree, index: int) -> None:
    """Apply `tree.layers[index]` on top of the tree (layers below it must already be applied)."""
    layer = tree.layers[index]
    _Changeset(tree.root, index, layer.name, tree.problems).apply(layer.entries)


def empty_tree(layers: Sequence[LayerContent]) -> FileTree:
    """A tree with only the root, ready for flatten_steps()."""
    return FileTree(
        Node(Entry(path="", kind=Kind.DIR, mode=0o755), 0, children={}, implicit=True), layers, []
    )


class _Changeset:
    """One layer being applied to the tree in place."""

    def __init__(self, root: Node, index: int, name: str, problems: list[str]) -> None:
        self.root = root
        self.index = index
        self.name = name
        self.problems = problems
        # Parent path as spelled in the layer -> the directory node it resolved to.  Tar order
        # puts siblings together, so nearly every entry's parent is found here instead of by a
        # walk from the root.  Entries only add children, except when one replaces an existing
        # node: that could change what a cached path resolves to, so it clears the cache.
        self.parents: dict[str, Node] = {}
        # Hardlinks whose target was not there when placed, by their placeholder node's id:
        # (placeholder, the directory holding it, its name), bound at the end of the layer.
        self.unbound: dict[int, tuple[Node, Node, str]] = {}

    def where(self, path: str) -> str:
        return f"layer {self.index} ({self.name}): /{path}"

    def apply(self, entries: Sequence[Entry]) -> None:
        whiteouts: list[Entry] = []
        opaque: list[str] = []
        regular: list[Entry] = []
        plain = _plain_name
        for entry in entries:
            # Most entries are ordinary names: one regex call instead of the full classification.
            role = "entry" if plain(entry.path) else self.classify(entry)
            if role == "whiteout":
                whiteouts.append(entry)
            elif role == "opaque":
                opaque.append(entry.parent)
            elif role == "entry":
                regular.append(entry)
        for entry in whiteouts:
            self.whiteout(entry)
        for directory in opaque:
            self.make_opaque(directory)
        for entry in regular:
            self.place(entry)
        self.bind_late_links()

    def classify(self, entry: Entry) -> str:
        parts = entry.path.split("/") if entry.path else []
        if entry.path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise UnsafePath(f"{self.where(entry.path)}: unsafe path {entry.path!r} in layer")
        for i, part in enumerate(parts):
            if part.startswith(META_PREFIX) and part != OPAQUE:
                if part not in AUFS_META and i == len(parts) - 1:
                    self.problems.append(f"{self.where(entry.path)}: unknown whiteout-reserved name ignored")
                return "skip"
            if part.startswith(WHITEOUT_PREFIX) and i < len(parts) - 1:
                self.problems.append(f"{self.where(entry.path)}: entry below a whiteout name ignored")
                return "skip"
        name = parts[-1] if parts else ""
        if name == OPAQUE:
            return "opaque"
        if name == WHITEOUT_PREFIX:
            raise InvalidWhiteout(f"{self.where(entry.path)}: bare whiteout name '.wh.' names no file")
        if name.startswith(WHITEOUT_PREFIX):
            return "whiteout"
        return "entry"

    def whiteout(self, entry: Entry) -> None:
        parent = resolve(self.root, entry.parent).node
        if parent is not None and parent.children is not None:
            parent.children.pop(entry.name[len(WHITEOUT_PREFIX) :], None)

    def make_opaque(self, directory: str) -> None:
        if not directory:
            self.root.children = {}
            return
        parent = self.parent_of(directory)
        if parent is None:
            return
        assert parent.children is not None
        name = directory.rpartition("/")[2]
        existing = parent.children.get(name)
        if existing is not None and existing.children is not None:
            existing.children = {}
        else:
            self.mkdir(parent, name, "/" + directory)

    def mkdir(self, parent: Node, name: str, path: str) -> Node:
        node = Node(Entry(path=path.lstrip("/"), kind=Kind.DIR, mode=0o755), self.index, {}, implicit=True)
        assert parent.children is not None
        parent.children[name] = node
        return node

    def parent_of(self, path: str) -> Node | None:
        """The directory `path` goes into, created as needed; None (and a problem) if impossible."""
        res = resolve(self.root, path.rpartition("/")[0], mkdir=self.mkdir)
        if res.node is None or res.node.children is None:
            error = res.error or "notdir"
            self.problems.append(f"{self.where(path)}: parent {res.path} is {error}; entry skipped")
            return None
        return res.node

    def place(self, entry: Entry) -> None:
        path = entry.path
        if not path:
            self.replace_root(entry)
            return
        directory, _, name = path.rpartition("/")
        parents = self.parents
        parent = parents.get(directory)
        if parent is None:
            parent = self.parent_of(path)
            if parent is None:
                return
            parents[directory] = parent
        children = parent.children
        assert children is not None
        existing = children.get(name)
        kind = entry.kind
        if kind is _DIR:
            if existing is not None and existing.children is not None:
                existing.entry, existing.layer, existing.hardlink, existing.implicit = (
                    entry,
                    self.index,
                    None,
                    False,
                )
                return
            node = Node(entry, self.index, {})
            parents[path] = node
        elif kind is _HARDLINK:
            bound = self.hardlink(entry, final=False)
            if bound is None:  # the target is not there yet: a placeholder till the layer's end
                node = Node(entry, self.index, hardlink=entry)
                self.unbound[id(node)] = (node, parent, name)
            else:
                node = bound
        else:
            node = Node(entry, self.index)
        if existing is not None:
            # A replaced node may be a cached parent (of this path or below it): forget them all.
            parents.clear()
            if node.children is not None:
                parents[path] = node
        children[name] = node

    def replace_root(self, entry: Entry) -> None:
        # umoci: "refusing to change type of root directory"; a link at / would redirect everything.
        if entry.kind is not Kind.DIR:
            self.problems.append(f"{self.where('')}: {entry.kind} entry for the root ignored")
            return
        self.root.entry, self.root.layer, self.root.implicit = entry, self.index, False

    def bind_late_links(self) -> None:
        """Bind, in tar order, the links placed before their targets; a link whose target is
        another such link binds that one first (an explicit stack: chains can be long)."""
        unbound = self.unbound
        for key in list(unbound):
            stack = [key]
            while stack:
                pending = unbound.get(stack[-1])
                if pending is None:
                    stack.pop()
                    continue
                placeholder, parent, name = pending
                assert placeholder.hardlink is not None
                target = resolve(self.root, placeholder.hardlink.linkname, follow=False).node
                if target is not None and id(target) in unbound and id(target) not in stack:
                    stack.append(id(target))  # bind the target first, then come back
                    continue
                del unbound[stack.pop()]
                assert parent.children is not None
                if parent.children.get(name) is placeholder:  # not replaced later in the layer
                    parent.children[name] = self.hardlink(placeholder.hardlink, final=True) or placeholder

    def hardlink(self, entry: Entry, *, final: bool = True) -> Node | None:
        """The node for a hardlink.  Unless `final`, None if the target is not there yet (no
        problem recorded: the end of the layer tries again)."""
        res = resolve(self.root, entry.linkname, follow=False)
        target = res.node
        if target is None or target.kind is Kind.HARDLINK:
            if not final:
                return None
            why = res.error or "a dangling hardlink"
            self.problems.append(f"{self.where(entry.path)}: hardlink target /{entry.linkname} is {why}")
        elif target.children is not None:
            self.problems.append(f"{self.where(entry.path)}: hardlink to directory /{entry.linkname} refused")
        else:
            return Node(target.entry, target.layer, hardlink=entry)
        return Node(entry, self.index, hardlink=entry)
