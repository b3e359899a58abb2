"""Elemental toolkit v2's file discovery (docs/tools.md E1-E4).

elemental-toolkit pkg/utils/common.go (FindFile, findFile, getBaseDir, resolveLink, FindKernel,
FindInitrd) and pkg/constants/constants.go (patterns, MaxLinkDepth): a pattern's base directory
is walked in lexical order without entering symlinked directories, `*` never crosses `/`, the
first match wins, and its links are resolved up to MaxLinkDepth hops with absolute targets
re-rooted.  resolveLink counts only the links it reads itself (each hop is an lstat of the
joined path): a linked parent directory along the way is followed by the kernel's own path
walk and does not count.  This models `elemental init`, which runs inside the image, so that
walk happens in the image too.  Error strings are Elemental's own, so a user can match them
with what `elemental` prints.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from ...fs.node import Node
from ...fs.tree import Resolution
from ..context import CheckContext
from .pick import Pick, nothing

TOOL = "Elemental v2"
#: constants.go MaxLinkDepth: resolveLink follows at most this many nested links (E2).
MAX_LINK_DEPTH = 4
#: E1 GetKernelPatterns and E4 GetInitrdPatterns, in the order Elemental tries them.
KERNEL_PATTERNS = ("/boot/uImage*", "/boot/Image*", "/boot/zImage*", "/boot/vmlinuz*", "/boot/image*")
INITRD_PATTERNS = ("/boot/elemental.initrd*", "/boot/initrd*", "/boot/initramfs*")
#: constants.go KernelModulesDir: E3 reads the names in this directory.
MODULES_DIR = "/lib/modules"


def _base_dir(pattern: str) -> str:
    # getBaseDir: the directory part before the first glob metacharacter.
    i = min((pattern.index(c) for c in "*?[" if c in pattern), default=-1)
    return posixpath.dirname(pattern[:i]) if i > 0 else pattern


def walk_matches(ctx: CheckContext, pattern: str) -> Iterator[str]:
    """Paths matching `pattern` in the order Elemental's WalkDirFs visits them: depth first, each
    directory's entries sorted by name, symlinked directories listed but never entered (their
    DirEntry is not a directory).  The base itself is stat'ed, so a linked /boot is walked."""
    base = _base_dir(pattern)
    rest = [p for p in pattern[len(base) :].split("/") if p]
    start = ctx.lookup(base)
    if not start.ok or start.node is None or start.node.children is None:
        return

    def visit(prefix: str, children: dict[str, Node], depth: int) -> Iterator[str]:
        for name in sorted(children):
            # Go's filepath.Match: like fnmatchcase ('*' also matches a leading dot, never a '/').
            if not fnmatch.fnmatchcase(name, rest[depth]):
                continue
            child = children[name]
            path = f"{prefix}/{name}"
            if depth == len(rest) - 1:
                yield path
            elif child.children is not None and not child.is_symlink:
                yield from visit(path, child.children, depth + 1)

    yield from visit(base.rstrip("/"), start.node.children, 0)


@dataclass(frozen=True, slots=True)
class Followed:
    """resolveLink's walk from one path: the targets it joined, where it stopped, its error."""

    hops: tuple[str, ...]
    end: str
    error: str | None = None


def resolve_link(ctx: CheckContext, path: str, depth: int = MAX_LINK_DEPTH) -> Followed:
    """resolveLink: relative targets joined to the link's directory (lexically cleaned), absolute
    ones re-rooted; each hop must lstat; more than `depth` nested links is an error."""
    hops: list[str] = []
    current = path
    while True:
        res = ctx.lookup(current, follow=False)
        if not res.ok or res.node is None:
            return Followed(tuple(hops), current, f"lstat {current}: {res.reason}")
        if not res.node.is_symlink:
            return Followed(tuple(hops), current)
        if depth <= 0:
            return Followed(
                tuple(hops), current, f"can't resolve this path '{current}', too many nested links"
            )
        target = res.node.entry.linkname
        base = "/" if target.startswith("/") else posixpath.dirname(current)
        current = _clean(posixpath.join(base, target))
        hops.append(current)
        depth -= 1


def links_read(ctx: CheckContext, path: str, res: Resolution) -> tuple[int, bool]:
    """(how many nested links resolveLink reads to resolve `path`, whether they loop), given
    the image's own resolution `res` of it: a loop is that walk's verdict (bounded by its loop
    limit), and no chain is followed further than that walk went."""
    if res.error == "loop":
        return len(res.chain), True
    return len(resolve_link(ctx, path, len(res.chain) + 1).hops), False


def _clean(path: str) -> str:
    cleaned = posixpath.normpath("/" + path.lstrip("/"))
    return "/" + cleaned.lstrip("/")


def find_file(ctx: CheckContext, patterns: Iterable[str], tool: str = TOOL) -> Pick:
    """FindFile: the first pattern with any match decides; its first match is resolved (an error
    there is fatal, it does not fall through to the next match)."""
    patterns = tuple(patterns)
    for pattern in patterns:
        first = next(walk_matches(ctx, pattern), None)
        if first is None:
            continue
        followed = resolve_link(ctx, first)
        res = ctx.lookup(followed.end)
        real = res.path if followed.error is None and res.ok else None
        return Pick(
            tool,
            first,
            followed.end,
            real,
            pattern,
            followed.hops,
            patterns,
            error=followed.error,
        )
    return nothing(tool, f"failed to find binary matching {_go_list(patterns)}", candidates=patterns)


def _go_list(items: Iterable[str]) -> str:
    return "[" + " ".join(items) + "]"


def e3_version(ctx: CheckContext, kernel_path: str) -> str | None:
    """E3: the first /lib/modules entry (ReadDir order = by name) whose name is a substring of
    the resolved kernel path.  Not a version parse: see E3a in docs/tools.md."""
    return next((name for name in ctx.listdir(MODULES_DIR) if name in kernel_path), None)


def kernel_file(ctx: CheckContext) -> Pick:
    """FindFile over the E1 kernel patterns, E2 links: the file FindKernel starts from."""
    found = find_file(ctx, KERNEL_PATTERNS)
    return _failed(found, f"No Kernel file found: {found.error}") if found.error else found


def kernel(ctx: CheckContext) -> Pick:
    """FindKernel: the kernel file, then its E3 version (the modules directory must exist)."""
    found = kernel_file(ctx)
    if found.error:
        return found
    assert found.path is not None
    if not ctx.is_dir(MODULES_DIR):
        return _failed(
            found, f"failed reading modules directory: open {MODULES_DIR}: no such file or directory"
        )
    version = e3_version(ctx, found.path)
    if version is None:
        return _failed(found, f"could not determine the version of kernel {found.path}")
    return replace(found, version=version)


def initrd_file(ctx: CheckContext) -> Pick:
    """FindInitrd: E4 patterns, E2 links; errors are Elemental's "No initrd file found"."""
    found = find_file(ctx, INITRD_PATTERNS)
    return _failed(found, f"No initrd file found: {found.error}") if found.error else found


def _failed(found: Pick, error: str) -> Pick:
    # A file found but refused (E3) keeps `real`: it is still the file FindFile returned.
    return replace(found, error=error)
