"""Overlay rules: one table row per rule, each naming the spec line or issue it guards.

Spec lines are opencontainers/image-spec layer.md at v1.1.1 (13cff54).  Layers are written in a
small notation (see `layer()`), Entries are built directly (layer.py is not needed here).

Expected trees use one code per visible path: `d` directory, `D` implicit directory, `f` file,
`l` symlink, `h` a path made by a hardlink (its layer is the target's), `x` a dangling hardlink;
followed by the layer index that supplied the node.
"""

from __future__ import annotations

import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ociboot.errors import InvalidWhiteout, UnsafePath
from ociboot.fs.node import Entry, Kind, Node
from ociboot.fs.overlay import flatten
from ociboot.fs.tree import FileTree


@dataclass(frozen=True)
class Layer:
    """Satisfies fs.node.LayerContent."""

    name: str
    entries: tuple[Entry, ...]
    captured: Mapping[str, bytes] = field(default_factory=dict)


def entry(spec: str) -> tuple[Entry, bytes | None]:
    """`a/` dir, `a` file, `a:text` file with captured bytes, `a -> t` symlink, `a => t` hardlink,
    `a/#0700` dir with a mode; whiteouts and opaque markers are plain names (`.wh.a`)."""
    if " -> " in spec:
        path, target = spec.split(" -> ")
        return Entry(path, Kind.SYMLINK, mode=0o777, linkname=target), None
    if " => " in spec:
        path, target = spec.split(" => ")
        return Entry(path, Kind.HARDLINK, linkname=target), None
    if "/#" in spec:
        path, mode = spec.split("/#")
        return Entry(path, Kind.DIR, mode=int(mode, 8)), None
    if spec.endswith("/") or spec == "":
        return Entry(spec.rstrip("/"), Kind.DIR, mode=0o755), None
    if ":" in spec:
        path, text = spec.split(":", 1)
        return Entry(path, Kind.FILE, size=len(text)), text.encode()
    return Entry(spec, Kind.FILE), None


def layer(*specs: str, name: str = "") -> Layer:
    entries, captured = [], {}
    for spec in specs:
        e, data = entry(spec)
        entries.append(e)
        if data is not None:
            captured[e.path] = data
    return Layer(name or f"sha256:{len(specs):064x}", tuple(entries), captured)


def build(*layers: tuple[str, ...]) -> FileTree:
    return flatten([layer(*specs, name=f"sha256:{i:064x}") for i, specs in enumerate(layers)])


def code(node: Node) -> str:
    if node.hardlink is not None:
        return ("x" if node.kind is Kind.HARDLINK else "h") + str(node.layer)
    letter = {Kind.DIR: "D" if node.implicit else "d", Kind.FILE: "f", Kind.SYMLINK: "l"}[node.kind]
    return letter + str(node.layer)


def visible(tree: FileTree) -> dict[str, str]:
    return {path: code(node) for path, node in tree.walk("/")}


@dataclass(frozen=True)
class Case:
    id: str
    guards: str
    layers: tuple[tuple[str, ...], ...]
    expect: dict[str, str]
    problems: int = 0


CASES = [
    # --- whiteouts ----------------------------------------------------------------------------
    Case(
        "whiteout-hides-lower",
        "l.244-250 whiteout removes the lower file",
        (("a/", "a/x", "a/y"), ("a/.wh.x",)),
        {"/a": "d0", "/a/y": "f0"},
    ),
    Case(
        "whiteout-after-entry-same-layer",
        "l.251-252 same-layer entries only hidden by later layers",
        (("x",), ("x", ".wh.x")),
        {"/x": "f1"},
    ),
    Case(
        "whiteout-before-entry-same-layer",
        "l.251-252; order in the tar does not matter",
        (("x",), (".wh.x", "x")),
        {"/x": "f1"},
    ),
    Case(
        "whiteout-only-lower-new-dir",
        "l.251-252 + umoci#546: whiteout of a dir with new children",
        (("a/", "a/old"), (".wh.a", "a/", "a/new")),
        {"/a": "d1", "/a/new": "f1"},
    ),
    Case(
        "whiteout-of-dir-hides-subtree",
        "l.244-250 a whiteout of a directory hides its children",
        (("a/", "a/b/", "a/b/c"), (".wh.a",)),
        {},
    ),
    Case(
        "whiteout-stored-as-hardlink",
        "smolvm#401 / vic#5714: recognised by name, not by tar type",
        (("tmp/", "tmp/key", "tmp/repo"), ("tmp/.wh.key => tmp/repo",)),
        {"/tmp": "d0", "/tmp/repo": "f0"},
    ),
    Case(
        "whiteout-of-missing-is-noop",
        "decision: whiteouts only remove, never create parents",
        (("x",), ("nope/.wh.y",)),
        {"/x": "f0"},
    ),
    Case(
        "whiteout-through-symlinked-parent",
        "containerd RootPath: parents resolve inside the root",
        (("t/", "t/x", "t/y", "a -> t"), ("a/.wh.x",)),
        {"/t": "d0", "/t/y": "f0", "/a": "l0"},
    ),
    # --- opaque directories ---------------------------------------------------------------------
    Case(
        "opaque-marker-last-in-tar",
        "l.276-336 opaque applied first regardless of position",
        (("a/", "a/old"), ("a/", "a/new", "a/.wh..wh..opq")),
        {"/a": "d1", "/a/new": "f1"},
    ),
    Case(
        "opaque-marker-first-in-tar",
        "l.276-336",
        (("a/", "a/old"), ("a/.wh..wh..opq", "a/", "a/new")),
        {"/a": "d1", "/a/new": "f1"},
    ),
    Case(
        "opaque-keeps-dir-metadata-without-entry",
        "l.276-336 only the children are hidden",
        (("a/", "a/old", "b"), ("a/.wh..wh..opq",)),
        {"/a": "d0", "/b": "f0"},
    ),
    Case(
        "opaque-on-missing-dir-creates-it",
        "decision: the marker says the directory exists",
        ((), ("a/.wh..wh..opq",)),
        {"/a": "D1"},
    ),
    Case(
        "opaque-over-symlink-clears-link-not-target",
        "anchore/stereoscope#694",
        (("t/", "t/keep", "a -> t"), ("a/.wh..wh..opq", "a/new")),
        {"/t": "d0", "/t/keep": "f0", "/a": "D1", "/a/new": "f1"},
    ),
    Case(
        "opaque-at-root",
        "l.276-336 applies to the root directory too",
        (("x", "d/", "d/y"), (".wh..wh..opq", "z")),
        {"/z": "f1"},
    ),
    Case(
        "opaque-is-not-a-file-whiteout",
        "ggcr#2372: not a whiteout of a phantom `.wh..opq`",
        (("a/", "a/.wh..opq-lookalike"), ("a/.wh..wh..opq",)),
        {"/a": "d0"},
    ),
    # --- reserved names -------------------------------------------------------------------------
    Case(
        "aufs-plnk-ignored",
        "moby/go-archive#54: AUFS hardlink dir is not a whiteout",
        (("plnk", "x"), (".wh..wh.plnk/", ".wh..wh.plnk/123.456", ".wh..wh..plnk/", ".wh..wh..plnk/7")),
        {"/plnk": "f0", "/x": "f0"},
    ),
    Case(
        "unknown-meta-name-ignored-with-problem",
        "moby/moby#43279 `.wh..wh..opaque` seen in images",
        (("a/", "a/x"), ("a/.wh..wh..opaque",)),
        {"/a": "d0", "/a/x": "f0"},
        problems=1,
    ),
    Case(
        "entry-below-whiteout-name-skipped",
        "l.272 a whiteout is a regular file, never a directory",
        ((), (".wh.a/b",)),
        {},
        problems=1,
    ),
    # --- changesets over existing paths ---------------------------------------------------------
    Case(
        "dir-over-dir-keeps-children",
        "l.234-242 dir over dir: attributes only",
        (("a/#0700", "a/x"), ("a/",)),
        {"/a": "d1", "/a/x": "f0"},
    ),
    Case(
        "file-over-dir-drops-subtree",
        "l.234-242 every other case: unlink then recreate",
        (("a/", "a/x"), ("a",)),
        {"/a": "f1"},
    ),
    Case(
        "symlink-over-dir-drops-subtree",
        "l.234-242 + aquasecurity/trivy#2637 (no whiteout emitted)",
        (("a/", "a/x", "b/"), ("a -> b",)),
        {"/a": "l1", "/b": "d0"},
    ),
    Case("dir-over-file-starts-empty", "l.234-242", (("a",), ("a/",)), {"/a": "d1"}),
    Case(
        "dir-over-symlink-replaces-link",
        "l.234-242: only parents are followed, never the entry",
        (("t/", "t/x", "a -> t"), ("a/", "a/y")),
        {"/t": "d0", "/t/x": "f0", "/a": "d1", "/a/y": "f1"},
    ),
    Case(
        "duplicate-in-layer-last-wins",
        "l.22 forbids duplicates; decision: last one wins",
        (("a", "a -> z", "b/", "b/x", "b"),),
        {"/a": "l0", "/b": "f0"},
    ),
    Case(
        "ggcr-2029-recreated-dir",
        "google/go-containerregistry#2029 (fix #2191)",
        (("a/", "a/foo"), (".wh.a",), ("a/", "a/baz")),
        {"/a": "d2", "/a/baz": "f2"},
    ),
    Case(
        "ggcr-2029-implicit-parent",
        "google/go-containerregistry#2029 without a dir entry",
        (("a/", "a/foo"), (".wh.a",), ("a/baz",)),
        {"/a": "D2", "/a/baz": "f2"},
    ),
    # --- parents --------------------------------------------------------------------------------
    Case(
        "implicit-parents",
        "decision: missing parents are created (docker/containerd MkdirAll)",
        (("x/y/z",),),
        {"/x": "D0", "/x/y": "D0", "/x/y/z": "f0"},
    ),
    Case(
        "file-as-parent-skipped",
        "containerd mkparent ENOTDIR: cannot apply, recorded",
        (("a",), ("a/x",)),
        {"/a": "f0"},
        problems=1,
    ),
    Case(
        "looping-parent-skipped",
        "containerd RootPath ELOOP: cannot apply, recorded",
        (("a -> b", "b -> a"), ("a/x",)),
        {"/a": "l0", "/b": "l0"},
        problems=1,
    ),
    Case("root-entry-dir-updates-root", "umoci: the root may change metadata", (("",),), {}),
    # --- hardlinks ------------------------------------------------------------------------------
    Case(
        "hardlink-to-lower",
        "l.64-96 hardlink to a file of a lower layer",
        (("t",), ("h => t",)),
        {"/t": "f0", "/h": "h0"},
    ),
    Case(
        "hardlink-same-layer",
        "l.64-96 hardlink to an earlier member",
        (("t", "h => t"),),
        {"/t": "f0", "/h": "h0"},
    ),
    Case(
        "hardlink-survives-whiteout-of-target",
        "google/go-containerregistry#977",
        (("t", "h => t"), (".wh.t",)),
        {"/h": "h0"},
    ),
    Case(
        "hardlink-before-target-binds-at-layer-end",
        "issue 7: a link before its target in the same layer reads the target (umoci FIXME)",
        (("h => t", "t"),),
        {"/t": "f0", "/h": "h0"},
    ),
    Case(
        "hardlink-chain-before-targets-binds",
        "issue 7: a link to a link placed before its own target binds that one first",
        (("a => b", "b => t", "t"),),
        {"/t": "f0", "/a": "h0", "/b": "h0"},
    ),
    Case(
        "hardlink-cycle-dangles",
        "issue 7: links that only name each other never bind; recorded",
        (("a => b", "b => a"),),
        {"/a": "x0", "/b": "x0"},
        problems=2,
    ),
    Case(
        "hardlink-before-target-replaced-in-layer",
        "issue 7: a later entry of the link's path still wins",
        (("h => t", "t", "h -> t"),),
        {"/t": "f0", "/h": "l0"},
    ),
    Case(
        "hardlink-before-target-in-upper-layer-dangles",
        "issue 7: binding waits for the end of the link's own layer only",
        (("h => t",), ("t",)),
        {"/t": "f1", "/h": "x0"},
        problems=1,
    ),
    Case(
        "hardlink-to-missing-dangles",
        "cvmfs/cvmfs#4286 no crash on a missing target",
        ((), ("h => nope",)),
        {"/h": "x1"},
        problems=1,
    ),
    Case(
        "hardlink-to-dir-refused",
        "link(2) refuses directories (EPERM)",
        (("d/", "h => d"),),
        {"/d": "d0", "/h": "x0"},
        problems=1,
    ),
    Case(
        "hardlink-to-lower-whited-out-same-layer",
        "decision: whiteouts apply before entries",
        (("t",), (".wh.t", "h => t")),
        {"/h": "x1"},
        problems=1,
    ),
    Case(
        "hardlink-replaces-existing",
        "A3S-Lab/Box#78 an upper hardlink unlinks the old path",
        (("t", "h/", "h/x"), ("h => t",)),
        {"/t": "f0", "/h": "h0"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_overlay_rule(case: Case) -> None:
    tree = build(*case.layers)
    assert visible(tree) == case.expect, case.guards
    assert len(tree.problems) == case.problems, tree.problems


def test_root_entry_nondir_names_layer() -> None:
    """umoci: "refusing to change type of root directory" (a link at / would redirect all)."""
    tree = flatten([layer(), Layer("sha256:top", (Entry("", Kind.SYMLINK, linkname="/evil"),))])
    assert tree.root.is_dir
    assert tree.problems == ["layer 1 (sha256:top): /: symlink entry for the root ignored"]


def test_dir_over_dir_takes_new_metadata() -> None:
    tree = build(("a/#0700", "a/x"), ("a/#0750",))
    node = tree.lookup("/a").node
    assert node is not None and node.entry.mode == 0o750 and node.layer == 1 and not node.implicit


def test_implicit_parent_metadata() -> None:
    tree = flatten([Layer("l0", (Entry("x/y", Kind.FILE, uid=1000, gid=1000),))])
    node = tree.lookup("/x").node
    assert node is not None and node.implicit
    assert (node.entry.path, node.entry.mode, node.entry.uid, node.entry.gid) == ("x", 0o755, 0, 0)


def test_bare_whiteout_is_an_error_naming_layer_and_path() -> None:
    """l.248: a bare `.wh.` "SHOULD" be an error (stereoscope#647 deleted the whole parent)."""
    with pytest.raises(InvalidWhiteout) as info:
        flatten([layer("etc/"), Layer("sha256:bad", (Entry("etc/.wh.", Kind.FILE),))])
    assert "sha256:bad" in str(info.value) and "/etc/.wh." in str(info.value)


@pytest.mark.parametrize("path", ["../etc/shadow", "a/../../x", "/abs", "a//b", "./a"])
def test_unsafe_path_is_refused(path: str) -> None:
    """docs/architecture.md §4: unsafe names are refused with the layer digest and path (layer.py normalises
    first; this is the overlay's own guard)."""
    with pytest.raises(UnsafePath) as info:
        flatten([Layer("sha256:evil", (Entry(path, Kind.FILE),))])
    assert "sha256:evil" in str(info.value) and repr(path) in str(info.value)


def test_symlinked_parent_is_followed_inside_the_root() -> None:
    """Decision: an entry whose parent is a SYMLINK in the tree so far goes where the link
    points, resolved inside the image root, as containerd (fs.RootPath) and umoci (SecureJoin)
    do when they apply a layer.  So a layer adding `lib/modules/6.1/vmlinuz` on top of a base
    where `lib -> usr/lib` (merged /usr) puts the kernel in /usr/lib/modules, which is what
    the booted system sees.  An explicit directory entry `lib/` in the layer would instead
    replace the link (see the `dir-over-symlink-replaces-link` row)."""
    tree = build(("usr/", "usr/lib/", "lib -> usr/lib"), ("lib/modules/6.1/vmlinuz",))
    assert visible(tree) == {
        "/lib": "l0",
        "/usr": "d0",
        "/usr/lib": "d0",
        "/usr/lib/modules": "D1",
        "/usr/lib/modules/6.1": "D1",
        "/usr/lib/modules/6.1/vmlinuz": "f1",
    }
    assert tree.lookup("/lib/modules/6.1/vmlinuz").path == "/usr/lib/modules/6.1/vmlinuz"


@pytest.mark.parametrize(
    ("link", "expect"),
    [
        ("/usr/lib", {"/lib": "l0", "/usr": "D1", "/usr/lib": "D1", "/usr/lib/k": "f1"}),
        ("gone/deep", {"/lib": "l0", "/gone": "D1", "/gone/deep": "D1", "/gone/deep/k": "f1"}),
        ("../../../../etc", {"/lib": "l0", "/etc": "D1", "/etc/k": "f1"}),
    ],
    ids=["absolute-rerooted", "dangling-target-created", "escape-clamped-at-root"],
)
def test_symlinked_parent_variants(link: str, expect: dict[str, str]) -> None:
    """Absolute link targets are re-rooted, a dangling target is created (containerd mkparent
    after RootPath), and `../../../../etc` cannot leave the root (umoci EntrySymlinkScoping)."""
    assert visible(build((f"lib -> {link}",), ("lib/k",))) == expect


def test_hardlink_keeps_content_at_apply_time() -> None:
    """google/go-containerregistry#2002: t3 keeps t2's old content after t1 is overwritten."""
    tree = build(("t1:old", "t2 => t1"), ("t1:new", "t3 => t2"))
    assert tree.read("/t1") == b"new"
    assert tree.read("/t2") == b"old"
    assert tree.read("/t3") == b"old"
    t3 = tree.lookup("/t3").node
    assert t3 is not None and t3.hardlink is not None
    assert (t3.layer, t3.entry.path, t3.hardlink.path, t3.hardlink.linkname) == (0, "t1", "t3", "t2")


def test_hardlink_target_found_through_symlinked_dir() -> None:
    tree = build(("real/", "real/f:data", "d -> real"), ("h => d/f",))
    assert tree.read("/h") == b"data" and tree.problems == []


def test_hardlink_to_symlink_is_a_symlink() -> None:
    """link(2) without AT_SYMLINK_FOLLOW links the symlink itself, and GNU tar records that."""
    tree = build(("t:x", "l -> t", "h => l"))
    node = tree.lookup("/h", follow=False).node
    assert node is not None and node.is_symlink and node.hardlink is not None
    assert tree.lookup("/h").path == "/t"


def test_dangling_hardlink_problem_names_layer_and_paths() -> None:
    tree = flatten([Layer("sha256:aa", (Entry("bin/sh", Kind.HARDLINK, linkname="bin/busybox"),))])
    assert tree.problems == ["layer 0 (sha256:aa): /bin/sh: hardlink target /bin/busybox is missing"]
    assert tree.read("/bin/sh") is None
    node = tree.lookup("/bin/sh").node
    assert node is not None and node.kind is Kind.HARDLINK


def test_layers_are_kept_on_the_tree() -> None:
    layers = [layer("a"), layer("b")]
    assert flatten(layers).layers == layers


def tar_layer(path: Path) -> Layer:
    """A real layer tar read with the stdlib (layer.py is not needed): regular files, dirs and
    links only, every member captured (these fixtures are a few bytes)."""
    kinds = {tarfile.REGTYPE: Kind.FILE, tarfile.DIRTYPE: Kind.DIR, tarfile.SYMTYPE: Kind.SYMLINK}
    entries, captured = [], {}
    with tarfile.open(path) as tar:
        for member in tar:
            name = member.name.strip("/").removeprefix("./")
            kind = Kind.HARDLINK if member.islnk() else kinds[member.type]
            entries.append(Entry(name, kind, mode=member.mode, size=member.size, linkname=member.linkname))
            if member.isfile():
                captured[name] = tar.extractfile(member).read()  # type: ignore[union-attr]
    return Layer(path.name, tuple(entries), captured)


def test_regclient_whiteout_and_opaque_fixture(conformance: Path) -> None:
    """regclient/testdata: `.wh.layer2.txt` hides the lower file; `exdir/.wh..wh..opq` (last in
    the tar) empties the lower exdir but keeps the directory."""
    lower = tar_layer(conformance / "regclient" / "layer.tar")
    middle = layer("exdir/", "exdir/old:x", name="sha256:middle")
    top = tar_layer(conformance / "regclient" / "layer-wh.tar")
    tree = flatten([lower, middle, top])
    assert visible(tree) == {"/exdir": "d2", "/layer1.txt": "f2", "/layer3.txt": "f2"}
    assert tree.read("/layer1.txt") == top.captured["layer1.txt"] and tree.is_complete("/layer1.txt")
    assert visible(flatten([lower])) == {"/layer1.txt": "f0", "/layer2.txt": "f0", "/layer3.txt": "f0"}
