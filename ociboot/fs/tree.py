"""The flattened filesystem of an image: path resolution confined to the image root.

`FileTree` is built by `overlay.flatten()`; this module only reads it.  Resolution follows the
kernel's path walk (path_resolution(7)), with the image root as `/`:
- every component may be a symlink; relative targets resolve against the link's directory,
  absolute targets are re-rooted at the image root, and `..` at the root stays at the root, so
  no link can escape the image (the host is never consulted, unlike anchore/syft#1359);
- at most `MAXSYMLINKS` (40, Linux's limit) links are followed in one resolution; one more is a
  `loop` result, never an exception and never unbounded work (stackrox/scanner#632,
  anchore/stereoscope#206);
- `follow=False` leaves the last component alone (lstat semantics).

Paths are presented absolute (`/boot/vmlinuz`); relative input is taken relative to the root.
"""

from __future__ import annotations

import errno
import fnmatch
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .node import Kind, LayerContent, Node

# Linux include/linux/namei.h: a path walk fails with ELOOP after this many links.
MAXSYMLINKS = 40


class ResolveError(StrEnum):
    """Why a lookup stopped (compares equal to its value, e.g. `res.error == "loop"`)."""

    MISSING = "missing"  # a component does not exist (ENOENT)
    NOTDIR = "notdir"  # a non-directory was used as a directory (ENOTDIR)
    LOOP = "loop"  # more than MAXSYMLINKS links followed (ELOOP)


@dataclass(frozen=True, slots=True)
class Resolution:
    """The outcome of one lookup.

    `path` is the canonical absolute path reached: the node's real location on success, and on
    failure the canonical part resolved so far joined with the unresolved rest (up to any `..`
    in it).  `chain` lists
    every link followed, in order, as `(link_path, target_text)`.
    """

    requested: str
    path: str
    node: Node | None
    chain: tuple[tuple[str, str], ...] = ()
    error: ResolveError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.node is not None

    @property
    def reason(self) -> str:
        """Why the lookup failed, in the words of the matching errno."""
        if self.ok:
            return ""
        return _REASONS[self.error] if self.error is not None else "no such file or directory"


_REASONS = {
    ResolveError.MISSING: "no such file or directory",
    ResolveError.NOTDIR: "not a directory",
    ResolveError.LOOP: f"too many levels of symbolic links (more than {MAXSYMLINKS})",
}


def split(path: str) -> list[str]:
    """Components of a path, with empty and `.` parts dropped (`..` is kept for the walk)."""
    return [part for part in path.split("/") if part not in ("", ".")]


def absolute(parts: Sequence[str]) -> str:
    return "/" + "/".join(parts)


# Called with (parent directory node, name, canonical path of the new directory) when a walk
# in "make parents" mode meets a missing component; returns the new directory node.
MakeDir = Callable[[Node, str, str], Node]


def resolve(root: Node, path: str, *, follow: bool = True, mkdir: MakeDir | None = None) -> Resolution:
    """Walk `path` from `root`; see the module docstring for the rules.

    With `mkdir`, missing components are created through it instead of failing (overlay.py uses
    this to place an entry's implicit parents, through symlinked parents as containerd does).
    """
    pending = split(path)[::-1]  # a stack: the next component is pending[-1]
    stack: list[tuple[str, Node]] = []  # canonical components reached so far, with their nodes
    chain: list[tuple[str, str]] = []
    hops = 0

    def names() -> list[str]:
        return [name for name, _ in stack]

    while pending:
        name = pending.pop()
        current = stack[-1][1] if stack else root
        if current.children is None:
            # Checked before `..` too: `file/..` is ENOTDIR on Linux, not the file's directory.
            rest = _unresolved(name, pending)
            return Resolution(path, absolute(names() + rest), None, tuple(chain), ResolveError.NOTDIR)
        if name == "..":
            if stack:
                stack.pop()
            continue
        child = current.children.get(name)
        if child is None:
            if mkdir is None:
                rest = _unresolved(name, pending)
                return Resolution(path, absolute(names() + rest), None, tuple(chain), ResolveError.MISSING)
            child = mkdir(current, name, absolute([*names(), name]))
        if child.is_symlink and (pending or follow):
            hops += 1
            link = absolute([*names(), name])
            if hops > MAXSYMLINKS:
                return Resolution(path, link, None, tuple(chain), ResolveError.LOOP)
            target = child.entry.linkname
            chain.append((link, target))
            if not target:
                # An empty target is ENOENT on Linux, not "the directory itself".
                return Resolution(path, link, None, tuple(chain), ResolveError.MISSING)
            if target.startswith("/"):
                stack.clear()  # re-rooted at the image root, never the host's
            pending.extend(split(target)[::-1])
            continue
        stack.append((name, child))
    node = stack[-1][1] if stack else root
    return Resolution(path, absolute(names()), node, tuple(chain))


def _unresolved(name: str, pending: list[str]) -> list[str]:
    # What a failed walk could not reach, for the message; cut at a `..`, which means nothing
    # below a component that is missing or not a directory.
    rest = [name, *pending[::-1]]
    return rest[: rest.index("..")] if ".." in rest else rest


def _has_magic(part: str) -> bool:
    return any(c in part for c in "*?[")


class FileTree:
    """The flattened tree of an image, read-only once built.

    `problems` lists what flattening could not apply faithfully (a hardlink to a missing path,
    an entry under a non-directory, ...), each naming the layer and the path: data for a
    finding, not a reason to stop reading the image.
    """

    def __init__(self, root: Node, layers: Sequence[LayerContent], problems: list[str] | None = None) -> None:
        self.root = root
        self.layers = layers
        self.problems: list[str] = problems if problems is not None else []

    def lookup(self, path: str, *, follow: bool = True) -> Resolution:
        return resolve(self.root, path, follow=follow)

    def _directory(self, path: str) -> tuple[str, Node]:
        res = self.lookup(path)
        if res.node is None and res.error is not ResolveError.NOTDIR:
            raise FileNotFoundError(errno.ENOENT, f"{res.error}: {res.path}", path)
        if res.node is None or res.node.children is None:
            raise NotADirectoryError(errno.ENOTDIR, f"not a directory: {res.path}", path)
        return res.path, res.node

    def listdir(self, path: str = "/") -> list[tuple[str, Node]]:
        """The entries of a directory, sorted by name; links to the directory are followed.

        Raises FileNotFoundError / NotADirectoryError: the caller named a directory that is not
        there (use lookup() first to turn that into a finding).
        """
        _, node = self._directory(path)
        assert node.children is not None
        return sorted(node.children.items())

    def walk(self, path: str = "/") -> Iterator[tuple[str, Node]]:
        """Every path below the directory `path` (links to it followed), depth first, sorted.

        The start itself is not yielded and paths are canonical.  Symlinked directories below
        the start are yielded as links and not entered, so each path appears once and a link
        loop cannot recurse.  Raises like listdir().
        """
        start, node = self._directory(path)
        assert node.children is not None
        # An explicit stack: image trees can be deeper than Python's recursion limit.
        stack = [(start.rstrip("/"), iter(sorted(node.children.items())))]
        while stack:
            base, children = stack[-1]
            item = next(children, None)
            if item is None:
                stack.pop()
                continue
            name, child = item
            here = f"{base}/{name}"
            yield here, child
            if child.children is not None:
                stack.append((here, iter(sorted(child.children.items()))))

    def glob(self, pattern: str) -> list[str]:
        """Existing paths matching `pattern`, sorted, absolute, spelled as the pattern spells them.

        Each component is an fnmatch pattern (`*` never crosses `/`, and does match dot files);
        every directory on the way is resolved through symlinks, so `lib/modules/*` finds
        `/lib/modules/6.1` when `lib -> usr/lib`.
        """
        found: list[list[str]] = [[]]
        parts = split(pattern)
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            step: list[list[str]] = []
            for prefix in found:
                if not _has_magic(part):
                    candidate = [*prefix, part]
                    if self.lookup(absolute(candidate), follow=not last).node is not None:
                        step.append(candidate)
                    continue
                directory = self.lookup(absolute(prefix)).node
                if directory is None or directory.children is None:
                    continue
                step.extend(
                    [*prefix, name] for name in sorted(directory.children) if fnmatch.fnmatchcase(name, part)
                )
            found = step
        # Every survivor exists (lstat); the directories on its way resolved through links.
        return sorted({absolute(p) for p in found})

    def read(self, path: str, *, follow: bool = True) -> bytes | None:
        """The captured bytes of the file at `path`, from the layer its content comes from.

        None when there is nothing captured to give: a missing path, a non-file, or a member
        nobody asked to capture (pipeline re-reads that one layer).  The bytes may be a head
        only; see is_complete().
        """
        node = self.lookup(path, follow=follow).node
        if node is None or node.kind is not Kind.FILE:
            return None
        return self.layers[node.layer].captured.get(node.entry.path)

    def analysis(self, path: str, *, follow: bool = True) -> Any:
        """What a streaming analyzer found in the file at `path` while its layer passed, or None
        (not analyzed: the pipeline can re-read that one layer)."""
        node = self.lookup(path, follow=follow).node
        if node is None or node.kind is not Kind.FILE:
            return None
        return getattr(self.layers[node.layer], "analyses", {}).get(node.entry.path)

    def is_complete(self, path: str, *, follow: bool = True) -> bool:
        """Whether read() gives the whole file rather than the head kept while streaming."""
        node = self.lookup(path, follow=follow).node
        data = self.read(path, follow=follow)
        return node is not None and data is not None and len(data) >= node.entry.size

    def stats(self) -> dict[str, int]:
        """How many paths of each kind (root excluded); a hardlinked path counts as `hardlink`."""
        counts = {kind.value: 0 for kind in Kind}
        for _, node in self.walk("/"):
            counts[Kind.HARDLINK.value if node.hardlink is not None else node.kind.value] += 1
        return counts
