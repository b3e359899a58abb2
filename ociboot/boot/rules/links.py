"""Rules LNK-001..003: the boot links (/boot/vmlinuz, /boot/initrd) and how each tool follows them.

Also home of the selection emulations shared by KRN-006, INI-004 and LNK-003: which file
Elemental v2 (boot-requirements a.4 E1/E2/E4), Elemental v1 / kairos-agent / AuroraBoot
(a.3 FindFileWithPrefix) and Kairos (a.5 K13) would pick from the same tree.  ociboot's own
resolution re-roots absolute links at the image root; these emulations reproduce where the
tools differ from that, because those differences are the bugs users hit.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ...fs.node import Kind
from ...fs.tree import Resolution, split
from ..check import Result, Rule, failed, passed, rule, skipped
from ..context import CheckContext, link_chain

#: Elemental v2 `constants.MaxLinkDepth`: resolveLink fails on the fifth nested link (E2).
MAX_LINK_DEPTH = 4
#: E1 GetKernelPatterns and E4 GetInitrdPatterns, in the order Elemental v2 tries them.
V2_KERNEL_PATTERNS = ("/boot/uImage*", "/boot/Image*", "/boot/zImage*", "/boot/vmlinuz*", "/boot/image*")
V2_INITRD_PATTERNS = ("/boot/elemental.initrd*", "/boot/initrd*", "/boot/initramfs*")
#: a.3 FindKernelInitrd prefixes (Elemental v1, kairos-agent, AuroraBoot build-iso).
V1_KERNEL_PREFIXES = ("uImage", "Image", "zImage", "vmlinuz", "image")
V1_INITRD_PREFIXES = ("initrd", "initramfs")
#: The fixed paths GRUB's bootargs load (D9, E9, K3/K4).
BOOT_LINKS = ("/boot/vmlinuz", "/boot/initrd")


@dataclass(frozen=True, slots=True)
class Pick:
    """What one tool would load: `path` as the tool names it, `real` where that is in the image
    (None: the tool finds nothing, `error` says why); `notes` are candidates it passed over."""

    tool: str
    path: str | None
    real: str | None
    error: str | None = None
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.path is None:
            text = f"{self.tool}: nothing ({self.error})"
        elif self.real and self.real != self.path:
            text = f"{self.tool}: {self.path} (= {self.real})"
        else:
            text = f"{self.tool}: {self.path}"
        return text + "".join(f"; {n}" for n in self.notes)


def elemental_v2_pick(ctx: CheckContext, patterns: Sequence[str], tool: str = "Elemental v2") -> Pick:
    """E1/E4: per pattern in order, the first lexical match under /boot, its links resolved
    (absolute targets re-rooted) at most MAX_LINK_DEPTH deep (E2), else an error."""
    for pattern in patterns:
        matches = ctx.glob(pattern)
        if not matches:
            continue
        first = matches[0]
        res = ctx.lookup(first)
        if len(res.chain) > MAX_LINK_DEPTH:
            deep = f"{first}: too many nested links ({len(res.chain)} > {MAX_LINK_DEPTH})"
            return Pick(tool, None, None, deep)
        if not res.ok:
            return Pick(tool, None, None, f"{link_chain(first, res)}: {res.reason}")
        return Pick(tool, first, res.path)
    return Pick(tool, None, None, f"no match for {', '.join(patterns)}")


def elemental_v1_pick(
    ctx: CheckContext, prefixes: Sequence[str], tool: str = "Elemental v1 / kairos-agent / AuroraBoot"
) -> Pick:
    """a.3 FindFileWithPrefix: the first entry of /boot sorted by name (directories skipped)
    with one of `prefixes`.  A link is followed one level: a relative target is joined to
    /boot and must exist; an absolute target is looked up on the build host, not in the
    image, so it is passed over here (it exists only if the host happens to have that file)."""
    if not ctx.is_dir("/boot"):
        return Pick(tool, None, None, "/boot is not a directory")
    notes: list[str] = []
    for name, node in ctx.tree.listdir("/boot"):
        if node.is_dir or not name.startswith(tuple(prefixes)):
            continue
        path = f"/boot/{name}"
        if not node.is_symlink:
            return Pick(tool, path, path, notes=tuple(notes))
        target = node.entry.linkname
        if target.startswith("/"):
            notes.append(f"passed over {path} -> {target} (absolute: looked up on the host)")
            continue
        joined = posixpath.normpath(posixpath.join("/boot", target)) if target else path
        res = ctx.lookup(joined)
        if not target or not res.ok:
            notes.append(f"passed over {path} -> {target} (target missing)")
            continue
        if any(t.startswith("/") for _, t in res.chain):
            notes.append(f"passed over {path} -> {target} (resolves through an absolute link, on the host)")
            continue
        return Pick(tool, joined, res.path, notes=tuple(notes))
    return Pick(tool, None, None, f"no /boot entry starting with {', '.join(prefixes)}", tuple(notes))


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


def _relative(target: str) -> str:
    return posixpath.relpath(target, "/boot")


def _link_subjects(ctx: CheckContext) -> list[str]:
    paths = [*BOOT_LINKS, *(p for p in (ctx.policy.kernel, ctx.policy.initrd) if p)]
    return [p for p in dict.fromkeys(paths) if ctx.exists(p, follow=False)]


# --- LNK-001 -----------------------------------------------------------------------------------


@rule(
    "LNK-001",
    "boot links resolve inside the image",
    "gen=E cos=E kairos=E bootc=-",
    sources=("boot-requirements.md b.1 LNK-001", "D9", "E9", "K3", "K4", "path_resolution(7)"),
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
    "gen=W cos=E kairos=W bootc=W",
    sources=("boot-requirements.md b.1 LNK-002", "E2 (elemental-toolkit pkg/utils/common.go resolveLink)"),
    description=(
        "Elemental v2 follows at most MaxLinkDepth = 4 nested links when it resolves a kernel "
        "or initrd and fails with 'too many nested links' on the fifth (E2). Checked for "
        "/boot/vmlinuz, /boot/initrd, --kernel/--initrd and every kernel and initrd candidate; "
        "every link followed counts, including those of parent directories."
    ),
)
def link_depth(ctx: CheckContext) -> Iterable[Result]:
    subjects = dict.fromkeys(
        [*_link_subjects(ctx), *(a.path for a in (*ctx.kernel_candidates, *ctx.initrd_candidates))]
    )
    deepest = 0
    for path in subjects:
        res = ctx.lookup(path)
        deepest = max(deepest, len(res.chain))
        if len(res.chain) > MAX_LINK_DEPTH:
            loop = " (a loop)" if res.error == "loop" else ""
            yield failed(
                f"{path} needs {len(res.chain)} links to resolve{loop}, "
                f"more than Elemental's {MAX_LINK_DEPTH}",
                path,
                [link_chain(path, res)],
                hint=f"link {path} directly to the file it means (one relative link)",
            )
    if subjects and deepest <= MAX_LINK_DEPTH:
        yield passed(f"{len(subjects)} boot path(s), longest link chain {deepest}", None, list(subjects))
    elif not subjects:
        yield skipped("no kernel or initrd paths to resolve")


# --- LNK-003 -----------------------------------------------------------------------------------


@rule(
    "LNK-003",
    "absolute boot links survive host-side resolution",
    "gen=I cos=W kairos=W bootc=-",
    sources=(
        "boot-requirements.md b.1 LNK-003",
        "a.3 (elemental-cli pkg/utils/common.go FindFileWithPrefix)",
        "a.5 (kairos-agent FindKernelInitrd, AuroraBoot prepareISORoot)",
    ),
    description=(
        "Elemental v1, kairos-agent and AuroraBoot take the first /boot entry by name with a "
        "kernel (uImage, Image, zImage, vmlinuz, image) or initrd (initrd, initramfs) prefix and "
        "look up an absolute link target on the build host, not in the image: such a link is "
        "passed over (or, worse, finds the host's file). It is fine only if a regular file or a "
        "relative link follows in sorted order; kairos-init itself writes /boot/vmlinuz as an "
        "absolute link, which is why this is a warning and not an error."
    ),
)
def absolute_boot_links(ctx: CheckContext) -> Iterable[Result]:
    if not ctx.is_dir("/boot"):
        yield skipped("no /boot directory")
        return
    found = False
    for what, prefixes in (("kernel", V1_KERNEL_PREFIXES), ("initrd", V1_INITRD_PREFIXES)):
        absolute = [
            (f"/boot/{name}", node.entry.linkname)
            for name, node in ctx.tree.listdir("/boot")
            if node.is_symlink and name.startswith(prefixes) and node.entry.linkname.startswith("/")
        ]
        if not absolute:
            continue
        found = True
        pick = elemental_v1_pick(ctx, prefixes)
        links = [f"{p} -> {t}" for p, t in absolute]
        if pick.path is None:
            yield failed(
                f"no {what} for Elemental v1 / kairos-agent / AuroraBoot: "
                f"{', '.join(links)} is absolute and resolved on the build host",
                absolute[0][0],
                [pick.describe()],
                hint=f"use a relative link (ln -sf {_relative(absolute[0][1])} {absolute[0][0]})",
            )
        else:
            yield passed(
                f"absolute {what} link(s) {', '.join(links)} passed over; "
                f"{pick.path} follows in sorted order",
                absolute[0][0],
                [pick.describe()],
            )
    if not found:
        yield passed("no absolute kernel or initrd links in /boot", "/boot")


RULES: tuple[Rule, ...] = (boot_links_resolve, link_depth, absolute_boot_links)
CAPTURE: tuple[str, ...] = ()
