"""FileTree lookups: link chains, root confinement, hop limit, listdir/walk/glob/read.

Scenarios follow anchore/stereoscope's image-symlinks fixture and syft's fileresolver cases
(links before/after targets, chains, dead links, loops), plus the hop limit of Linux's
path_resolution(7) (MAXSYMLINKS = 40).
"""

from __future__ import annotations

import pytest

from ociboot.fs.node import Entry, Kind
from ociboot.fs.overlay import flatten
from ociboot.fs.tree import MAXSYMLINKS, FileTree, ResolveError
from tests.test_overlay import Layer, build, layer

BASE = (
    "boot/",
    "boot/vmlinuz-6.1.0:KERNEL",
    "boot/vmlinuz -> vmlinuz-6.1.0",
    "boot/latest -> /boot/vmlinuz",
    "usr/",
    "usr/lib/",
    "usr/lib/modules/",
    "usr/lib/modules/6.1.0/",
    "usr/lib/modules/6.1.0/vmlinuz:KERNEL2",
    "lib -> usr/lib",
    "etc/",
    "etc/shadow:root:x",
    "etc/localtime -> /usr/share/zoneinfo/UTC",
    "a/",
    "a/b/",
    "a/b/escape -> ../../../../etc/shadow",
    "a/b/abs-escape -> /../../etc/shadow",
    "a/up -> ..",
    "loop1 -> loop2",
    "loop2 -> loop1",
    "self -> self",
    "empty -> ",
    "file:data",
)


@pytest.fixture(scope="module")
def tree() -> FileTree:
    return build(BASE)


# (requested, follow, canonical path, error, chain)
LOOKUPS = [
    ("/boot/vmlinuz", True, "/boot/vmlinuz-6.1.0", None, [("/boot/vmlinuz", "vmlinuz-6.1.0")]),
    ("boot/vmlinuz", True, "/boot/vmlinuz-6.1.0", None, [("/boot/vmlinuz", "vmlinuz-6.1.0")]),
    ("/boot/vmlinuz", False, "/boot/vmlinuz", None, []),
    (
        "/boot/latest",
        True,
        "/boot/vmlinuz-6.1.0",
        None,
        [("/boot/latest", "/boot/vmlinuz"), ("/boot/vmlinuz", "vmlinuz-6.1.0")],
    ),
    ("/lib/modules/6.1.0/vmlinuz", True, "/usr/lib/modules/6.1.0/vmlinuz", None, [("/lib", "usr/lib")]),
    ("/lib/modules/6.1.0/vmlinuz", False, "/usr/lib/modules/6.1.0/vmlinuz", None, [("/lib", "usr/lib")]),
    # `..` after a link is physical (kernel semantics): /lib/.. is /usr, not /.
    ("/lib/..", True, "/usr", None, [("/lib", "usr/lib")]),
    ("/a/b/escape", True, "/etc/shadow", None, [("/a/b/escape", "../../../../etc/shadow")]),
    ("/a/b/abs-escape", True, "/etc/shadow", None, [("/a/b/abs-escape", "/../../etc/shadow")]),
    ("/../../../etc/shadow", True, "/etc/shadow", None, []),
    ("/a/up/file", True, "/file", None, [("/a/up", "..")]),
    ("/a/up/up", True, "/up", ResolveError.MISSING, [("/a/up", "..")]),
    ("/etc/localtime", True, "/usr/share/zoneinfo/UTC", ResolveError.MISSING, None),
    ("/etc/localtime", False, "/etc/localtime", None, []),
    ("/nope/x", True, "/nope/x", ResolveError.MISSING, []),
    # nothing below a missing component can be resolved, `..` included: the path stops there
    ("/nope/../boot", True, "/nope", ResolveError.MISSING, []),
    ("/file/../boot", True, "/file", ResolveError.NOTDIR, []),
    ("/file/x", True, "/file/x", ResolveError.NOTDIR, []),
    ("/self", False, "/self", None, []),
    ("/empty", True, "/empty", ResolveError.MISSING, [("/empty", "")]),
    ("/", True, "/", None, []),
    ("", True, "/", None, []),
    ("/./boot//./vmlinuz-6.1.0", True, "/boot/vmlinuz-6.1.0", None, []),
]


@pytest.mark.parametrize(("requested", "follow", "path", "error", "chain"), LOOKUPS)
def test_lookup(
    tree: FileTree,
    requested: str,
    follow: bool,
    path: str,
    error: ResolveError | None,
    chain: list[tuple[str, str]] | None,
) -> None:
    res = tree.lookup(requested, follow=follow)
    assert (res.requested, res.path, res.error) == (requested, path, error)
    assert (res.node is None) == (error is not None)
    assert res.ok == (error is None)
    if chain is not None:
        assert list(res.chain) == chain


def test_up_link_chain_climbs_one_level_per_hop(tree: FileTree) -> None:
    """`a/up -> ..` followed from /a lands at /, where no `up` exists any more."""
    res = tree.lookup("/a/up/a/up/file")
    assert res.path == "/file" and res.ok
    assert res.chain == (("/a/up", ".."), ("/a/up", ".."))


def test_dangling_link_keeps_the_chain(tree: FileTree) -> None:
    res = tree.lookup("/etc/localtime")
    assert res.chain == (("/etc/localtime", "/usr/share/zoneinfo/UTC"),)
    assert res.error == "missing"  # a StrEnum: plain strings compare equal


@pytest.mark.parametrize("path", ["/loop1", "/self", "/loop1/x"])
def test_loops_are_a_result_after_maxsymlinks_hops(tree: FileTree, path: str) -> None:
    res = tree.lookup(path)
    assert res.error == "loop" and res.node is None
    assert len(res.chain) == MAXSYMLINKS


def chain_of(links: int) -> FileTree:
    """`l0 -> l1 -> ... -> l{links-1} -> target`: resolving l0 takes exactly `links` hops."""
    specs = [f"l{i} -> l{i + 1}" for i in range(links - 1)] + [f"l{links - 1} -> target", "target:T"]
    return build(tuple(specs))


def test_forty_hops_resolve() -> None:
    res = chain_of(MAXSYMLINKS).lookup("/l0")
    assert res.ok and res.path == "/target" and len(res.chain) == 40


def test_forty_one_hops_are_a_loop() -> None:
    res = chain_of(MAXSYMLINKS + 1).lookup("/l0")
    assert res.error is ResolveError.LOOP and res.node is None


def two_chains(first: int, second: int) -> FileTree:
    """`d0 -> ... -> d{first}` (a directory) holding `x -> /e0`, then `e0 -> ... -> e{second}`."""
    specs = [f"d{i} -> d{i + 1}" for i in range(first)] + [f"d{first}/", f"d{first}/x -> /e0"]
    specs += [f"e{i} -> e{i + 1}" for i in range(second)] + [f"e{second}:ok"]
    return build(tuple(specs))


def test_hops_count_across_components() -> None:
    """The limit is per resolution, not per component (Linux's total_link_count)."""
    assert two_chains(20, 19).lookup("/d0/x").ok  # 20 + 1 + 19 = 40 hops
    assert two_chains(20, 20).lookup("/d0/x").error == "loop"  # 41 hops
    assert two_chains(20, 20).lookup("/d20/x").ok  # the same path without the first chain


def test_listdir_sorted_and_follows_link(tree: FileTree) -> None:
    assert [name for name, _ in tree.listdir("/lib/modules/6.1.0")] == ["vmlinuz"]
    assert [name for name, _ in tree.listdir("/boot")] == ["latest", "vmlinuz", "vmlinuz-6.1.0"]
    names = [name for name, _ in tree.listdir("/")]
    assert names == sorted(names) and "lib" in names


def test_listdir_errors(tree: FileTree) -> None:
    with pytest.raises(FileNotFoundError):
        tree.listdir("/nope")
    with pytest.raises(NotADirectoryError):
        tree.listdir("/file")
    with pytest.raises(NotADirectoryError):
        tree.listdir("/file/x")
    with pytest.raises(FileNotFoundError):
        tree.listdir("/loop1")


def test_walk_depth_first_sorted_without_entering_links(tree: FileTree) -> None:
    paths = [p for p, _ in tree.walk("/")]
    assert paths[:6] == ["/a", "/a/b", "/a/b/abs-escape", "/a/b/escape", "/a/up", "/boot"]
    assert "/lib" in paths and not any(p.startswith("/lib/") for p in paths)
    assert "/a/up" in paths and not any(p.startswith("/a/up/") for p in paths)
    assert len(paths) == len(set(paths))


def test_walk_from_a_link_yields_canonical_paths(tree: FileTree) -> None:
    assert [p for p, _ in tree.walk("/lib/modules")] == [
        "/usr/lib/modules/6.1.0",
        "/usr/lib/modules/6.1.0/vmlinuz",
    ]


def test_walked_paths_look_up_to_the_same_node(tree: FileTree) -> None:
    for path, node in tree.walk("/"):
        assert tree.lookup(path, follow=False).node is node, path


def test_walk_survives_deep_trees() -> None:
    deep = "/".join(["d"] * 3000)
    tree = build((deep + "/f",))
    assert sum(1 for _ in tree.walk("/")) == 3001


GLOBS = [
    ("boot/vmlinuz-*", ["/boot/vmlinuz-6.1.0"]),
    ("/boot/*", ["/boot/latest", "/boot/vmlinuz", "/boot/vmlinuz-6.1.0"]),
    ("*", ["/a", "/boot", "/empty", "/etc", "/file", "/lib", "/loop1", "/loop2", "/self", "/usr"]),
    # `*` never crosses `/`
    ("usr/*/vmlinuz", []),
    ("usr/lib/modules/*/vmlinuz", ["/usr/lib/modules/6.1.0/vmlinuz"]),
    # through a symlinked directory, spelled as the pattern spells it (anchore/syft#1221, #3783)
    ("lib/modules/*/vmlinuz", ["/lib/modules/6.1.0/vmlinuz"]),
    ("lib/modules/6.[0-9].?/vmlinuz", ["/lib/modules/6.1.0/vmlinuz"]),
    # a dangling link matches (it exists, lstat), a literal missing path does not
    ("etc/local*", ["/etc/localtime"]),
    ("etc/localtime", ["/etc/localtime"]),
    ("etc/nope", []),
    ("nope/*", []),
    ("file/*", []),
    ("loop1/*", []),
    ("/", ["/"]),
]


@pytest.mark.parametrize(("pattern", "expect"), GLOBS)
def test_glob(tree: FileTree, pattern: str, expect: list[str]) -> None:
    assert tree.glob(pattern) == expect


def test_glob_matches_dotfiles() -> None:
    assert build(("etc/", "etc/.pwd.lock", "etc/passwd")).glob("etc/*") == ["/etc/.pwd.lock", "/etc/passwd"]


def test_read_follows_links_to_the_supplying_layer(tree: FileTree) -> None:
    assert tree.read("/boot/latest") == b"KERNEL"
    assert tree.read("/lib/modules/6.1.0/vmlinuz") == b"KERNEL2"
    assert tree.read("/boot/latest", follow=False) is None  # a symlink has no bytes
    assert tree.read("/boot") is None
    assert tree.read("/nope") is None
    assert tree.read("/loop1") is None


def test_read_uses_the_layer_of_the_content() -> None:
    tree = flatten(
        [
            Layer(
                "l0",
                (Entry("etc", Kind.DIR), Entry("etc/os-release", Kind.FILE, size=3)),
                {"etc/os-release": b"v=1"},
            ),
            Layer(
                "l1", (Entry("etc/motd", Kind.FILE, size=2),), {"etc/motd": b"hi", "etc/os-release": b"stale"}
            ),
        ]
    )
    assert tree.read("/etc/os-release") == b"v=1"
    assert tree.read("/etc/motd") == b"hi"


def test_read_uncaptured_is_none() -> None:
    tree = build(("big",))
    assert tree.read("/big") is None and not tree.is_complete("/big")


def test_is_complete_tells_a_head_from_the_whole_file() -> None:
    tree = flatten(
        [
            Layer(
                "l0",
                (Entry("vmlinuz", Kind.FILE, size=10), Entry("os-release", Kind.FILE, size=4)),
                {"vmlinuz": b"MZhead", "os-release": b"ID=x"},
            )
        ]
    )
    assert tree.read("/vmlinuz") == b"MZhead" and not tree.is_complete("/vmlinuz")
    assert tree.is_complete("/os-release")
    assert not tree.is_complete("/nope")


def test_stats_counts_each_path_once() -> None:
    tree = build(("d/", "d/f", "d/l -> f", "h => d/f"), ("x/y",))
    stats = tree.stats()
    assert stats == {"file": 2, "dir": 2, "symlink": 1, "hardlink": 1, "char": 0, "block": 0, "fifo": 0}


def test_special_files_are_nodes_without_bytes() -> None:
    tree = flatten(
        [Layer("l0", (Entry("dev/null", Kind.CHAR, devmajor=1, devminor=3), Entry("p", Kind.FIFO)))]
    )
    assert tree.stats()["char"] == 1 and tree.stats()["fifo"] == 1
    assert tree.read("/dev/null") is None
    assert tree.lookup("/dev/null/x").error == "notdir"


def test_layer_helper_captures() -> None:
    assert layer("a:xyz").captured == {"a": b"xyz"}
