"""Elemental's own discovery of boot files and GRUB's bootargs, emulated for the cos rules.

File discovery follows elemental-toolkit pkg/utils/common.go (FindFile, findFile, getBaseDir,
resolveLink, FindKernel, FindInitrd) and pkg/constants/constants.go (patterns, MaxLinkDepth):
a pattern's base directory is walked in lexical order without entering symlinked directories,
`*` never crosses `/`, the first match wins, and its links are resolved up to MaxLinkDepth hops
with absolute targets re-rooted.  Elemental v1's prefix search (FindFileWithPrefix) is here too,
so COS-002 can say when the two pick different files.  Error strings are Elemental's own, so a
user can match them with what `elemental build-iso` prints.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ...fs.node import Node
from ..context import CheckContext

# --- Elemental's file discovery (pkg/utils/common.go, pkg/constants/constants.go) -----------

#: constants.go MaxLinkDepth: resolveLink follows at most this many nested links.
MAX_LINK_DEPTH = 4
KERNEL_PATTERNS = ("/boot/uImage*", "/boot/Image*", "/boot/zImage*", "/boot/vmlinuz*", "/boot/image*")
INITRD_PATTERNS = ("/boot/elemental.initrd*", "/boot/initrd*", "/boot/initramfs*")
#: constants.go KernelModulesDir: E3 reads the names in this directory.
MODULES_DIR = "/lib/modules"
#: Elemental v1 FindKernelInitrd prefixes (a.3), tried against /boot entries in name order.
V1_KERNEL_PREFIXES = ("uImage", "Image", "zImage", "vmlinuz", "image")
V1_INITRD_PREFIXES = ("initrd", "initramfs")


@dataclass(frozen=True, slots=True)
class Found:
    """What Elemental's FindFile returns for a list of patterns: the first walk match, resolved."""

    pattern: str
    match: str  # the path the walk matched (possibly a link)
    resolved: str  # after resolveLink: what Elemental copies or inspects
    hops: tuple[str, ...] = ()
    error: str | None = None  # resolveLink's error: fatal for Elemental

    @property
    def chain(self) -> str:
        return " -> ".join((self.match, *self.hops))


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
            if not _fnmatch(name, rest[depth]):
                continue
            child = children[name]
            path = f"{prefix}/{name}"
            if depth == len(rest) - 1:
                yield path
            elif child.children is not None and not child.is_symlink:
                yield from visit(path, child.children, depth + 1)

    yield from visit(base.rstrip("/"), start.node.children, 0)


def _fnmatch(name: str, pattern: str) -> bool:
    # Go's filepath.Match: like fnmatchcase ('*' also matches a leading dot, never a '/').
    return fnmatch.fnmatchcase(name, pattern)


def resolve_link(ctx: CheckContext, path: str, depth: int = MAX_LINK_DEPTH) -> Found:
    """resolveLink: relative targets joined to the link's directory (lexically cleaned), absolute
    ones re-rooted; each hop must lstat; more than `depth` nested links is an error."""
    hops: list[str] = []
    current = path
    while True:
        res = ctx.lookup(current, follow=False)
        if not res.ok or res.node is None:
            return Found("", path, current, tuple(hops), f"lstat {current}: {res.reason}")
        if not res.node.is_symlink:
            return Found("", path, current, tuple(hops))
        if depth <= 0:
            error = f"can't resolve this path '{current}', too many nested links"
            return Found("", path, current, tuple(hops), error)
        target = res.node.entry.linkname
        base = "/" if target.startswith("/") else posixpath.dirname(current)
        current = _clean(posixpath.join(base, target))
        hops.append(current)
        depth -= 1


def _clean(path: str) -> str:
    cleaned = posixpath.normpath("/" + path.lstrip("/"))
    return "/" + cleaned.lstrip("/")


def find_file(ctx: CheckContext, patterns: Iterable[str]) -> Found | None:
    """FindFile: the first pattern with any match decides; its first match is resolved (an error
    there is fatal, it does not fall through to the next match)."""
    for pattern in patterns:
        first = next(walk_matches(ctx, pattern), None)
        if first is not None:
            found = resolve_link(ctx, first)
            return Found(pattern, found.match, found.resolved, found.hops, found.error)
    return None


def _go_list(items: Iterable[str]) -> str:
    return "[" + " ".join(items) + "]"


@dataclass(frozen=True, slots=True)
class V2Pick:
    """Elemental v2 FindKernel/FindInitrd outcome: a path (and kernel version) or its error."""

    found: Found | None
    version: str | None = None
    error: str | None = None


def v2_kernel(ctx: CheckContext) -> V2Pick:
    found = find_file(ctx, KERNEL_PATTERNS)
    if found is None:
        return V2Pick(
            None, error=f"No Kernel file found: failed to find binary matching {_go_list(KERNEL_PATTERNS)}"
        )
    if found.error:
        return V2Pick(found, error=f"No Kernel file found: {found.error}")
    if not ctx.is_dir(MODULES_DIR):
        return V2Pick(
            found, error=f"failed reading modules directory: open {MODULES_DIR}: no such file or directory"
        )
    # E3: the first /lib/modules entry (ReadDir order = by name) whose name is a substring of
    # the resolved kernel path.  Not a version parse: see E3a in boot-requirements a.4.
    version = next((name for name in ctx.listdir(MODULES_DIR) if name in found.resolved), None)
    if version is None:
        return V2Pick(found, error=f"could not determine the version of kernel {found.resolved}")
    return V2Pick(found, version)


def v2_initrd(ctx: CheckContext) -> V2Pick:
    found = find_file(ctx, INITRD_PATTERNS)
    if found is None:
        return V2Pick(
            None, error=f"No initrd file found: failed to find binary matching {_go_list(INITRD_PATTERNS)}"
        )
    if found.error:
        return V2Pick(found, error=f"No initrd file found: {found.error}")
    return V2Pick(found)


def v1_pick(ctx: CheckContext, prefixes: tuple[str, ...]) -> tuple[str | None, list[str]]:
    """Elemental v1 FindFileWithPrefix over /boot: (what it returns, notes on skipped entries).

    Entries in name order, directories skipped; a link is followed one level only, a relative
    target joined to /boot; an absolute target is looked up on the build host, not in the
    image, so it is taken as missing there and the entry is skipped (a.3)."""
    notes: list[str] = []
    for name in ctx.listdir("/boot"):
        if not name.startswith(prefixes):
            continue
        path = f"/boot/{name}"
        node = ctx.node(path, follow=False)
        if node is None or node.is_dir:
            continue
        if not node.is_symlink:
            return path, notes
        target = node.entry.linkname
        if target.startswith("/"):
            notes.append(f"{path} -> {target}: absolute target, looked up on the build host (skipped)")
            continue
        joined = _clean(posixpath.join("/boot", target))
        if ctx.exists(joined):
            return joined, notes
        notes.append(f"{path} -> {target}: target missing (skipped)")
    return None, notes


# --- GRUB bootargs (E9) ------------------------------------------------------------------------

#: The order grub.cfg sources them (E9): a later `set` overrides an earlier one.
BOOTARGS = ("/etc/cos/bootargs.cfg", "/etc/elemental/bootargs.cfg")
DEFAULT_BOOT_PATHS = {"kernel": "/boot/vmlinuz", "initramfs": "/boot/initrd"}
_SET = re.compile(r"^\s*set\s+(kernel|initramfs)=(.*)$")
_GRUB_VAR = re.compile(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class GrubSet:
    file: str
    line: int
    name: str
    raw: str
    path: str | None  # None: nothing left once grub variables are stripped

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def grub_sets(ctx: CheckContext, file: str) -> list[GrubSet]:
    text = ctx.read_text(file)
    out: list[GrubSet] = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        m = _SET.match(line)
        if m:
            raw = m.group(2).strip()
            out.append(GrubSet(file, number, m.group(1), raw, grub_path(raw)))
    return out


def grub_path(raw: str) -> str | None:
    """`/${root_subpath}boot/vmlinuz` -> `/boot/vmlinuz`: variables are stripped (root_subpath is
    empty on a plain install), as is a `(device)` prefix; quotes and a trailing comment go."""
    value = raw.split(" #", 1)[0].strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    value = value.split()[0] if value.split() else ""
    value = re.sub(r"^\([^)]*\)", "", _GRUB_VAR.sub("", value))
    if not value.strip("/"):
        return None
    return "/" + re.sub("/+", "/", value).lstrip("/")


def boot_paths(ctx: CheckContext) -> dict[str, tuple[str, str]]:
    """kernel/initramfs -> (path GRUB loads, why that path): --kernel/--initrd, else the last
    `set` in the bootargs files, else the default bootargs' /boot/vmlinuz and /boot/initrd."""
    sets = [s for f in BOOTARGS for s in grub_sets(ctx, f)]
    chosen = {"kernel": ctx.policy.kernel, "initramfs": ctx.policy.initrd}
    out: dict[str, tuple[str, str]] = {}
    for name, default in DEFAULT_BOOT_PATHS.items():
        asked = chosen[name]
        usable = [s for s in sets if s.name == name and s.path]
        if asked:
            out[name] = (asked, "given with --kernel/--initrd")
        elif usable:
            last = usable[-1]
            out[name] = (last.path or default, f"set {name}={last.raw} at {last.where}")
        else:
            out[name] = (default, "default bootargs (D9, E9)")
    return out
