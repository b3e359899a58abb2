"""Rules INI-001..004: is there an initramfs, is it a valid one, is it for this kernel, and
which one each tool would load.  The cpio walk itself is ociboot.boot.initrd's."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

from ...report import Severity
from ..check import Profile, Result, Rule, failed, not_run, passed, rule, skipped, unreadable
from ..context import INITRD_GLOBS, Artifact, CheckContext, kernel_version
from ..emulate import bootc, elemental_v1, elemental_v2
from ..emulate.grub import DEFAULT_BOOT_PATHS
from ..emulate.pick import Pick, nothing
from ..initrd import InitrdInfo
from ..kernel import KernelFormat, KernelInfo
from ..scan import INITRD_CAP
from ..upstream import (
    BOOTC_IMAGES_DOC,
    COS_BOOTABLE_IMAGES,
    COS_V0_8,
    ELEMENTAL_BOOTARGS,
    ELEMENTAL_CONSTANTS,
    ELEMENTAL_V1_COMMON,
    INITRAMFS_FORMAT,
    KAIROS_AGENT_ELEMENTAL,
    KAIROS_VALIDATE,
    LINUX_DECOMPRESS,
    issue,
)

_DRACUT_HINT = "build it with dracut -f /boot/initrd-<kver> <kver> and link /boot/initrd to it"


def _is_uki(ctx: CheckContext) -> bool:
    k = ctx.kernel
    return k is not None and k.kernel is not None and k.kernel.format is KernelFormat.UKI


def _given(ctx: CheckContext, a: Artifact) -> str:
    return " (--initrd)" if ctx.policy.initrd and a.path == ctx.policy.initrd else ""


def _subject(a: Artifact) -> str:
    return a.chain if a.resolution.chain else a.path


def _summary(info: InitrdInfo) -> str:
    segments = ", ".join(
        f"{s.compression}@{s.offset}: {s.archives} archive(s), {s.members} member(s)" for s in info.segments
    )
    return f"segments: {segments or 'none'}"


# --- INI-001 -----------------------------------------------------------------------------------


@rule(
    "INI-001",
    "an initramfs exists",
    {
        Profile.GENERIC: Severity.ERROR,
        Profile.COS: Severity.ERROR,
        Profile.KAIROS: Severity.ERROR,
        Profile.BOOTC: Severity.ERROR,
    },
    sources=(
        f"{COS_BOOTABLE_IMAGES} initrd at /boot/initrd (D3, D9)",
        f"{ELEMENTAL_CONSTANTS} GetInitrdPatterns (E4)",
        f"{KAIROS_VALIDATE} [FILES] /boot/initrd unless --trusted (K4)",
        f"{BOOTC_IMAGES_DOC} initramfs.img",
    ),
    description=(
        "The initrd this profile boots exists and is a regular file: --initrd PATH, else "
        "/boot/initrd, else a candidate (/boot/initrd*, /boot/initramfs*, "
        "/boot/elemental.initrd*, /usr/lib/modules/<kver>/initramfs.img) for the kernel's "
        "release; under bootc the initramfs.img beside the kernel. Not required when the kernel "
        "is a UKI (it carries its own .initrd; Kairos trusted boot skips K4 the same way). "
        "Under bootc this is stricter than bootc's docs, which call the initramfs optional: "
        "without one the generic kernel cannot mount its root."
    ),
)
def initrd_exists(ctx: CheckContext) -> Iterable[Result]:
    if _is_uki(ctx) and not ctx.policy.initrd:
        k = ctx.kernel
        assert k is not None
        yield passed(f"not required: {k.path} is a UKI (initrd embedded)", k.path, [_subject(k)])
        return
    a = ctx.initrd
    if a is None:
        where = list(INITRD_GLOBS)
        if ctx.profile is Profile.BOOTC and ctx.kernel is not None:
            where = [posixpath.join(posixpath.dirname(ctx.kernel.path), "initramfs.img")]
        yield failed("no initramfs found", "/boot", [f"looked in: {', '.join(where)}"], hint=_DRACUT_HINT)
        return
    given = _given(ctx, a)
    if not a.ok:
        yield failed(
            f"initrd {a.path}{given} does not resolve: {a.resolution.reason} at {a.resolution.path}",
            a.path,
            [_subject(a)],
            hint="give a path that exists in the image" if given else _DRACUT_HINT,
        )
    elif a.resolution.node is None or a.resolution.node.is_dir:
        yield failed(f"initrd {a.path}{given} is a directory", a.path, [_subject(a)], hint=_DRACUT_HINT)
    else:
        yield passed(f"initrd {a.path}{given} found", a.path, [_subject(a)])


# --- INI-002 -----------------------------------------------------------------------------------


@rule(
    "INI-002",
    "the initramfs is a valid cpio stream",
    {
        Profile.GENERIC: Severity.ERROR,
        Profile.COS: Severity.ERROR,
        Profile.KAIROS: Severity.ERROR,
        Profile.BOOTC: Severity.ERROR,
    },
    sources=(
        LINUX_DECOMPRESS,
        INITRAMFS_FORMAT,
        issue("kairos-io/kairos-init", 53),
    ),
    description=(
        "The initrd reads as the kernel reads it: newc/crc cpio archives ending in TRAILER!!!, "
        "optionally uncompressed early cpio(s) (microcode, ACPI) and zero padding before a "
        "compressed member (gzip, zstd, xz, lzma, bzip2, lz4 legacy, lzo), readable to the end. "
        "If the inspection hits its decompression cap the check could not run (never a pass)."
    ),
)
def initrd_valid(ctx: CheckContext) -> Iterable[Result]:
    a = ctx.initrd
    if a is None or not a.ok or (_is_uki(ctx) and not ctx.policy.initrd):
        yield skipped("no initrd to read (INI-001 reports it)")
        return
    given, info = _given(ctx, a), a.analysis
    if isinstance(info, InitrdInfo):
        evidence = [_subject(a), _summary(info)]
        if info.description:
            evidence.append(f"libmagic: {info.description}")
        if info.cap_hit:
            yield not_run(
                f"{a.path}{given}: inspection stopped at the {INITRD_CAP >> 20} MiB decompression cap "
                f"after {info.member_count} members",
                a.path,
                evidence,
            )
        elif info.ok:
            yield passed(
                f"{a.path}{given} is a cpio initramfs ({info.compression}) with {info.member_count} members",
                a.path,
                evidence,
            )
        else:
            why = "; ".join(info.problems) or "no complete cpio archive (TRAILER!!!)"
            yield failed(
                f"{a.path}{given} is not a valid initramfs: {why}",
                a.path,
                evidence,
                hint="rebuild the initramfs (dracut -f); the file is cut, corrupted or not a cpio archive",
            )
    elif isinstance(info, KernelInfo):
        # The analyzers choose kernel or initrd by name; a custom name was read as a kernel.
        yield not_run(
            f"{a.path}{given} was read as a kernel, not as an initramfs: name it initrd* or initramfs*",
            a.path,
            [_subject(a), f"as a kernel: {info.description or info.format}"],
        )
    elif a.failure:
        yield unreadable(f"{a.path}{given} could not be read: {a.failure}", a.path, [_subject(a)])
    else:
        yield failed(f"{a.path}{given} is not a regular file", a.path, [_subject(a)], hint=_DRACUT_HINT)


# --- INI-003 -----------------------------------------------------------------------------------


@rule(
    "INI-003",
    "the initramfs is built for the kernel",
    {
        Profile.GENERIC: Severity.WARNING,
        Profile.COS: Severity.ERROR,
        Profile.KAIROS: Severity.ERROR,
        Profile.BOOTC: Severity.WARNING,
    },
    sources=(
        issue("rancher/elemental", 1450),
        f"{COS_V0_8}/packages/initrd/build.yaml dracut for the kernel in /lib/modules",
    ),
    description=(
        "The initrd holds lib/modules/<kver>/ or usr/lib/modules/<kver>/ for the kernel's release: "
        "an initrd built for another kernel cannot load this kernel's modules (the root disk "
        "driver among them). The kernel's release comes from its header, else its file name."
    ),
)
def initrd_matches_kernel(ctx: CheckContext) -> Iterable[Result]:
    a = ctx.initrd
    info = a.initrd if a is not None else None
    if a is None or info is None or (_is_uki(ctx) and not ctx.policy.initrd):
        yield skipped("no readable initrd (INI-001/INI-002 report it)")
        return
    version = kernel_version(ctx.kernel)
    if version is None:
        yield not_run("kernel release unknown: cannot match the initrd to it", a.path, [_subject(a)])
        return
    found = ", ".join(info.kernel_versions) or "none"
    evidence = [_subject(a), f"kernel release: {version}", f"initrd has modules for: {found}"]
    if version in info.kernel_versions:
        yield passed(f"{a.path} has usr/lib/modules/{version}", a.path, evidence)
        return
    if info.cap_hit:
        yield not_run(
            f"{a.path}: stopped at the decompression cap before finding {version}", a.path, evidence
        )
        return
    others = [
        c.path
        for c in ctx.initrd_candidates
        if c.real != a.real and c.initrd is not None and version in c.initrd.kernel_versions
    ]
    if others:
        evidence.append(f"built for {version}: {', '.join(others)}")
    yield failed(
        f"{a.path} is not built for kernel {version} (modules for: {found})",
        a.path,
        evidence,
        hint=f"rebuild it: dracut -f /boot/initrd-{version} {version}, and link /boot/initrd to it",
    )


# --- INI-004 -----------------------------------------------------------------------------------

_PROFILE_TOOLS = {
    Profile.GENERIC: ("v2", "v1"),  # no fixed path: Debian links /boot/initrd.img, Fedora has none
    Profile.COS: ("v2", "v1", "fixed"),
    Profile.KAIROS: ("v1", "fixed"),
    Profile.BOOTC: ("beside",),
}


@rule(
    "INI-004",
    "every tool picks the same initramfs",
    {
        Profile.GENERIC: Severity.WARNING,
        Profile.COS: Severity.WARNING,
        Profile.KAIROS: Severity.WARNING,
        Profile.BOOTC: Severity.WARNING,
    },
    sources=(
        f"{ELEMENTAL_CONSTANTS} GetInitrdPatterns (E4)",
        f"{ELEMENTAL_V1_COMMON} FindFileWithPrefix",
        f"{KAIROS_AGENT_ELEMENTAL} FindKernelInitrd",
        f"{ELEMENTAL_BOOTARGS} (E9)",
        issue("rancher/elemental", 1450),
    ),
    description=(
        "With more than one initrd, report the one each tool would load: Elemental v2 (E4: "
        "/boot/elemental.initrd*, /boot/initrd*, /boot/initramfs*, first match), Elemental v1 / "
        "kairos-agent / AuroraBoot (first sorted /boot entry starting with initrd or initramfs, "
        "absolute links passed over), GRUB bootargs and Kairos K4 (/boot/initrd), bootc "
        "(initramfs.img beside the kernel). Fails when the tools of the profile disagree or one "
        "of them picks an initrd built for another kernel (elemental#1450)."
    ),
)
def initrd_picks(ctx: CheckContext) -> Iterable[Result]:
    # An initrd that could not be read (its analysis failed, or the image's analysis budget ran
    # out before it) may be the one a tool loads: never a pass.
    for a in ctx.initrd_candidates:
        if a.ok and a.failure:
            yield unreadable(f"{a.path} could not be read: {a.failure}", a.path, [_subject(a)])
    distinct = {a.real for a in ctx.initrd_candidates if a.ok}
    if len(distinct) <= 1:
        yield passed(f"{len(distinct)} initrd file(s): nothing to choose between", None, sorted(distinct))
        return
    version = kernel_version(ctx.kernel)
    picks = _initrd_picks(ctx)
    relevant = [picks[key] for key in _PROFILE_TOOLS[ctx.profile]]
    evidence, wrong = [], []
    for pick in picks.values():
        line = pick.describe()
        info = ctx.artifact(pick.real).initrd if pick.ok and pick.real else None
        if info is not None:
            line += f" [modules for: {', '.join(info.kernel_versions) or 'none'}]"
            if pick in relevant and version and version not in info.kernel_versions:
                wrong.append(f"{pick.tool} loads {pick.matched}, built for another kernel than {version}")
        evidence.append(line)
    reals = {p.real if p.ok else None for p in relevant}
    if len(reals) > 1 or None in reals or wrong:
        why = "; ".join(wrong) if wrong else "the tools disagree on which to load"
        yield failed(
            f"{len(distinct)} initrds: {why}",
            "/boot",
            evidence,
            hint="keep one initrd per kernel and link /boot/initrd relatively to the booted kernel's",
        )
    else:
        yield passed(f"{len(distinct)} initrds; every tool loads {relevant[0].real}", "/boot", evidence)


def _initrd_picks(ctx: CheckContext) -> dict[str, Pick]:
    fixed = DEFAULT_BOOT_PATHS["initramfs"]
    res = ctx.lookup(fixed)
    grub = "GRUB bootargs / Kairos K4"
    return {
        "v2": elemental_v2.initrd_file(ctx),
        "v1": elemental_v1.initrd(ctx),
        "fixed": Pick(grub, fixed, fixed, res.path) if res.ok else nothing(grub, f"{fixed}: {res.reason}"),
        "beside": bootc.initramfs_beside(ctx, ctx.kernel.path if ctx.kernel is not None else None),
    }


RULES: tuple[Rule, ...] = (initrd_exists, initrd_valid, initrd_matches_kernel, initrd_picks)
CAPTURE: tuple[str, ...] = ()
