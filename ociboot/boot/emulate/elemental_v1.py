"""Elemental v1's kernel/initrd pick, FindKernelInitrd over FindFileWithPrefix (docs/tools.md).

elemental-cli pkg/elemental/elemental.go FindKernelInitrd and pkg/utils/common.go
FindFileWithPrefix, also used by kairos-agent and AuroraBoot build-iso: the first entry of
/boot in name order (directories skipped) whose name starts with one of the prefixes.  A link
is read once: a relative target is joined to /boot and must exist, an absolute one is stat'ed
as it is on the build host.  Both stats run on the host, where an absolute link anywhere on the
way leads out of the unpacked image: such an entry is passed over here, as it is there unless
the host happens to have that file.
"""

from __future__ import annotations

import posixpath

from ..context import CheckContext, link_chain
from .pick import Pick, nothing

TOOL = "Elemental v1 / kairos-agent / AuroraBoot"
#: FindKernelInitrd's prefixes, tried against /boot entries in name order (not in this order).
KERNEL_PREFIXES = ("uImage", "Image", "zImage", "vmlinuz", "image")
INITRD_PREFIXES = ("initrd", "initramfs")


def find_file_with_prefix(ctx: CheckContext, prefixes: tuple[str, ...], tool: str = TOOL) -> Pick:
    """FindFileWithPrefix over /boot: `matched` is the /boot entry, `path` what the tool returns
    (the entry, or its link target joined to /boot)."""
    if not ctx.is_dir("/boot"):
        return nothing(tool, "/boot is not a directory", candidates=prefixes)
    over: list[str] = []
    for name, node in ctx.tree.listdir("/boot"):
        if node.is_dir or not name.startswith(prefixes):
            continue
        entry = f"/boot/{name}"
        prefix = next(p for p in prefixes if name.startswith(p))
        if not node.is_symlink:
            return Pick(tool, entry, entry, entry, prefix, candidates=prefixes, reasons=tuple(over))
        target = node.entry.linkname
        if target.startswith("/"):
            over.append(f"{entry} -> {target}: absolute target is looked up on the build host")
            continue
        joined = posixpath.normpath(posixpath.join("/boot", target)) if target else entry
        res = ctx.lookup(joined)
        if any(t.startswith("/") for _, t in res.chain):
            over.append(f"{entry} -> {link_chain(joined, res)}: an absolute hop is looked up on the host")
        elif not target or not res.ok:
            over.append(f"{entry} -> {target}: {res.reason if target else 'empty target'}")
        else:
            return Pick(tool, entry, joined, res.path, prefix, (target,), prefixes, tuple(over))
    return nothing(tool, f"no /boot entry starting with {', '.join(prefixes)}", tuple(over), prefixes)


def kernel(ctx: CheckContext, tool: str = TOOL) -> Pick:
    return find_file_with_prefix(ctx, KERNEL_PREFIXES, tool)


def initrd(ctx: CheckContext, tool: str = TOOL) -> Pick:
    return find_file_with_prefix(ctx, INITRD_PREFIXES, tool)


def host_lookups(ctx: CheckContext, prefixes: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(entry, link, absolute target) for each /boot entry with a prefix whose way to a file
    goes through an absolute link: the tool resolves that one on the build host, not in the image."""
    out = []
    for name, node in ctx.tree.listdir("/boot") if ctx.is_dir("/boot") else ():
        if not node.is_symlink or not name.startswith(prefixes):
            continue
        entry = f"/boot/{name}"
        hop = next(((link, t) for link, t in ctx.lookup(entry).chain if t.startswith("/")), None)
        if hop is not None:
            out.append((entry, *hop))
    return out
