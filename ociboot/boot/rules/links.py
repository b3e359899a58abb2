"""Rules LNK-001..003: the boot links (/boot/vmlinuz, /boot/initrd) and how each tool follows them.

ociboot's own resolution re-roots absolute links at the image root; the tools' resolutions
(`..emulate`) differ from that, and those differences are the bugs users hit.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

from ...fs.node import Kind
from ...fs.tree import Resolution, split
from ...report import Severity
from ..check import Profile, Result, Rule, failed, passed, rule, skipped
from ..context import CheckContext, link_chain
from ..emulate import elemental_v1, elemental_v2
from ..emulate.grub import BOOT_LINKS
from ..upstream import (
    AURORABOOT,
    COS_BOOTABLE_IMAGES,
    ELEMENTAL_BOOTARGS,
    ELEMENTAL_COMMON,
    ELEMENTAL_CONSTANTS,
    ELEMENTAL_V1_COMMON,
    KAIROS_AGENT_ELEMENTAL,
    KAIROS_VALIDATE,
    PATH_RESOLUTION,
)


def climbs_above_root(res: Resolution) -> list[str]:
    """Hops whose relative target has more `..` than the link has parents: the image root
    clamps them (path_resolution(7) at `/`), a host resolving from the unpacked root would not."""
    out = []
    for link, target in res.chain:
        if target.startswith("/"):
            continue
        depth = len(split(posixpath.dirname(link)))
        for part in split(target):
            depth += -1 if part == ".." else 1
            if depth < 0:
                out.append(
                    f"{link} -> {target} climbs above / (clamped at the image root; on a host it escapes)"
                )
                break
    return out


def _relative(target: str, link: str) -> str:
    return posixpath.relpath(target, posixpath.dirname(link))


def _link_subjects(ctx: CheckContext) -> list[str]:
    paths = [*BOOT_LINKS, *(p for p in (ctx.policy.kernel, ctx.policy.initrd) if p)]
    return [p for p in dict.fromkeys(paths) if ctx.exists(p, follow=False)]


# --- LNK-001 -----------------------------------------------------------------------------------


@rule(
    "LNK-001",
    "boot links resolve inside the image",
    {Profile.GENERIC: Severity.ERROR, Profile.COS: Severity.ERROR, Profile.KAIROS: Severity.ERROR},
    sources=(
        f"{COS_BOOTABLE_IMAGES} default boot paths (D9)",
        f"{ELEMENTAL_BOOTARGS} (E9)",
        f"{KAIROS_VALIDATE} [FILES] (K3, K4)",
        PATH_RESOLUTION,
    ),
    description=(
        "/boot/vmlinuz and /boot/initrd (and --kernel/--initrd paths), when present, resolve to "
        "a regular file: not dangling, no loop, not a directory. GRUB's default bootargs load "
        "exactly these paths (D9, E9) and kairos-init validate requires them (K3, K4). A "
        "relative target with more '..' than the link has parents is clamped at the image root "
        "(so it resolves here) and named as a warning in the evidence: resolved from an "
        "unpacked root on a host it would escape."
    ),
)
def boot_links_resolve(ctx: CheckContext) -> Iterable[Result]:
    subjects = _link_subjects(ctx)
    if not subjects:
        yield skipped("no /boot/vmlinuz or /boot/initrd in the image")
    for path in subjects:
        res = ctx.lookup(path)
        chain = link_chain(path, res)
        warnings = [f"warning: {w}" for w in climbs_above_root(res)]
        if not res.ok:
            what = "a link loop" if res.error == "loop" else "dangling" if res.chain else res.reason
            yield failed(
                f"{path} is {what}: {res.reason} at {res.path}",
                path,
                [chain, *warnings],
                hint=f"point {path} at an existing file with a relative link, e.g. "
                f"ln -sf {'vmlinuz' if 'vmlinuz' in path else 'initrd'}-<kver> {path}",
            )
        elif res.node is None or res.node.kind is not Kind.FILE:
            kind = res.node.kind if res.node is not None else "nothing"
            yield failed(
                f"{path} resolves to a {kind}, not a regular file: {res.path}",
                path,
                [chain, *warnings],
                hint=f"make {path} a regular file or a link to one",
            )
        else:
            what = "a regular file" if not res.chain else f"a link to the regular file {res.path}"
            yield passed(f"{path} is {what}", path, [chain, *warnings])


# --- LNK-002 -----------------------------------------------------------------------------------


@rule(
    "LNK-002",
    "boot link chains are at most 4 deep",
    {
        Profile.GENERIC: Severity.WARNING,
        Profile.COS: Severity.ERROR,
        Profile.KAIROS: Severity.WARNING,
        Profile.BOOTC: Severity.WARNING,
    },
    sources=(
        f"{ELEMENTAL_COMMON} resolveLink (E2)",
        f"{ELEMENTAL_CONSTANTS} MaxLinkDepth",
    ),
    description=(
        "Elemental v2 follows at most MaxLinkDepth = 4 nested links when it resolves a kernel "
        "or initrd and fails with 'too many nested links' on the fifth (E2). Checked for "
        "/boot/vmlinuz, /boot/initrd, --kernel/--initrd and every kernel and initrd candidate; "
        "the links counted are those Elemental reads itself, one per hop (a linked parent "
        "directory on the way is followed by the kernel's path walk and does not count)."
    ),
)
def link_depth(ctx: CheckContext) -> Iterable[Result]:
    subjects = dict.fromkeys(
        [*_link_subjects(ctx), *(a.path for a in (*ctx.kernel_candidates, *ctx.initrd_candidates))]
    )
    deepest = 0
    for path in subjects:
        res = ctx.lookup(path)
        depth, loops = elemental_v2.links_read(ctx, path, res)
        deepest = max(deepest, depth)
        if depth > elemental_v2.MAX_LINK_DEPTH:
            loop = " (a loop)" if loops else ""
            yield failed(
                f"{path} needs {depth} links to resolve{loop}, "
                f"more than Elemental's {elemental_v2.MAX_LINK_DEPTH}",
                path,
                [link_chain(path, res)],
                hint=f"link {path} directly to the file it means (one relative link)",
            )
    if subjects and deepest <= elemental_v2.MAX_LINK_DEPTH:
        yield passed(f"{len(subjects)} boot path(s), longest link chain {deepest}", None, list(subjects))
    elif not subjects:
        yield skipped("no kernel or initrd paths to resolve")


# --- LNK-003 -----------------------------------------------------------------------------------


@rule(
    "LNK-003",
    "absolute boot links survive host-side resolution",
    {Profile.GENERIC: Severity.INFO, Profile.COS: Severity.WARNING, Profile.KAIROS: Severity.WARNING},
    sources=(
        f"{ELEMENTAL_V1_COMMON} FindFileWithPrefix",
        f"{KAIROS_AGENT_ELEMENTAL} FindKernelInitrd",
        f"{AURORABOOT}/pkg/ops/iso.go prepareISORoot",
    ),
    description=(
        "Elemental v1, kairos-agent and AuroraBoot take the first /boot entry by name with a "
        "kernel (uImage, Image, zImage, vmlinuz, image) or initrd (initrd, initramfs) prefix and "
        "look up an absolute link target on the build host, not in the image: such a link, or a "
        "relative one whose way to the file goes through an absolute link (a linked parent "
        "directory too), is passed over (or, worse, finds the host's file). It is fine only if a "
        "regular file or a "
        "relative link follows in sorted order; kairos-init itself writes /boot/vmlinuz as an "
        "absolute link, which is why this is a warning and not an error."
    ),
)
def absolute_boot_links(ctx: CheckContext) -> Iterable[Result]:
    if not ctx.is_dir("/boot"):
        yield skipped("no /boot directory")
        return
    found = False
    for what, prefixes in (
        ("kernel", elemental_v1.KERNEL_PREFIXES),
        ("initrd", elemental_v1.INITRD_PREFIXES),
    ):
        absolute = elemental_v1.host_lookups(ctx, prefixes)
        if not absolute:
            continue
        found = True
        pick = elemental_v1.find_file_with_prefix(ctx, prefixes)
        links = [
            f"{link} -> {t}" + (f" (on the way from {e})" if link != e else "") for e, link, t in absolute
        ]
        entry, link, target = absolute[0]
        if not pick.ok:
            yield failed(
                f"no {what} for Elemental v1 / kairos-agent / AuroraBoot: "
                f"{', '.join(links)} is absolute and resolved on the build host",
                entry,
                [pick.describe()],
                hint=f"use a relative link (ln -sf {_relative(target, link)} {link})",
            )
        else:
            yield passed(
                f"absolute {what} link(s) {', '.join(links)} passed over; "
                f"{pick.path} follows in sorted order",
                entry,
                [pick.describe()],
            )
    if not found:
        yield passed("no absolute kernel or initrd links in /boot", "/boot")


RULES: tuple[Rule, ...] = (boot_links_resolve, link_depth, absolute_boot_links)
CAPTURE: tuple[str, ...] = ()
