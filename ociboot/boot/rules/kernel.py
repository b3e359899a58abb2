"""Rules KRN-001..007: is there a kernel, is it one, does it fit the image and its modules.

The kernel is identified by content (docs/tools.md "Kernels and initramfs", ociboot.boot.kernel); the file
each tool would pick is emulated in ..emulate.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

from ...report import Severity
from ..check import Profile, Result, Rule, failed, not_run, passed, rule, skipped, unreadable
from ..context import KERNEL_GLOBS, Artifact, CheckContext, kernel_version
from ..emulate import bootc, elemental_v1, elemental_v2, kairos
from ..emulate.pick import Pick
from ..initrd import InitrdInfo
from ..kernel import KernelFormat, KernelInfo
from ..upstream import (
    ARM64_BOOTING,
    BIB_LEGACY_ISO,
    BOOTC,
    BOOTC_IMAGES_DOC,
    BOOTC_LINTS,
    COS_BOOTABLE_IMAGES,
    COS_V0_8,
    ELEMENTAL_COMMON,
    ELEMENTAL_CONSTANTS,
    ELEMENTAL_V1_COMMON,
    KAIROS_INIT,
    KAIROS_VALIDATE,
    LINUX_ZBOOT,
    UKI_SPEC,
    X86_BOOT_PROTOCOL,
    issue,
)

_INSTALL_HINT = "install the distribution's kernel package and link /boot/vmlinuz to it"


def _subject(a: Artifact) -> str:
    return a.chain if a.resolution.chain else a.path


def _evidence(a: Artifact) -> list[str]:
    out = [_subject(a)]
    info = a.kernel
    if info is not None:
        if info.description:
            out.append(f"libmagic: {info.description}")
        out += [f"problem: {p}" for p in info.problems]
    return out


# --- KRN-001 -----------------------------------------------------------------------------------


@rule(
    "KRN-001",
    "a kernel exists",
    {
        Profile.GENERIC: Severity.ERROR,
        Profile.COS: Severity.ERROR,
        Profile.KAIROS: Severity.ERROR,
        Profile.BOOTC: Severity.ERROR,
    },
    sources=(
        f"{ELEMENTAL_CONSTANTS} GetKernelPatterns (E1)",
        f"{COS_BOOTABLE_IMAGES} kernel (D2)",
        f"{BOOTC_LINTS} kernel lint",
    ),
    description=(
        "At least one file in a kernel location (/boot/{vmlinuz,Image,zImage,uImage,image}*, "
        "/usr/lib/modules/*/vmlinuz, /lib/modules/*/vmlinuz, /boot/EFI/Linux/*.efi) whose content "
        "is a kernel, or the --kernel path if it is one. Stricter than bootc lint, which passes "
        "with zero kernels (its `kernel` lint)."
    ),
)
def kernel_exists(ctx: CheckContext) -> Iterable[Result]:
    # A candidate that could not be read (its analysis failed, or the image's analysis budget ran
    # out before it) may be the kernel a tool boots: never a pass.
    unread = [a for a in ctx.kernel_candidates if a.ok and a.failure]
    for a in unread:
        yield unreadable(f"{a.path} could not be read: {a.failure}", a.path, [_subject(a)])
    unique: dict[str, Artifact] = {}
    for a in ctx.kernels:
        unique.setdefault(a.real, a)  # /boot/vmlinuz and its target are one kernel
    kernels = list(unique.values())
    chosen = ctx.kernel
    is_kernel = chosen is not None and chosen.kernel is not None and chosen.kernel.is_kernel
    if chosen is not None and is_kernel and all(a.real != chosen.real for a in kernels):
        kernels.insert(0, chosen)
    if kernels:
        yield passed(
            f"{len(kernels)} kernel(s) found",
            kernels[0].path,
            [f"{_subject(a)}: {a.kernel.description or a.kernel.format}" for a in kernels if a.kernel],
        )
        return
    if unread:
        return  # whether one of them is a kernel is not known: "not run" above, not "no kernel"
    rejected = [f"{_subject(a)}: not a kernel ({_why_not(a)})" for a in ctx.kernel_candidates]
    yield failed(
        "no kernel found",
        "/boot",
        [f"looked in: {', '.join(KERNEL_GLOBS)}", *rejected],
        hint=_INSTALL_HINT,
    )


def _why_not(a: Artifact) -> str:
    if not a.ok:
        return a.resolution.reason
    if a.kernel is not None:
        return "; ".join(a.kernel.problems) or a.kernel.description or str(a.kernel.format)
    if isinstance(a.analysis, InitrdInfo):
        return "an initramfs"
    return f"could not be read: {a.failure}" if a.failure else "not a regular file"


# --- KRN-002 -----------------------------------------------------------------------------------


@rule(
    "KRN-002",
    "the chosen kernel is a boot image",
    {
        Profile.GENERIC: Severity.ERROR,
        Profile.COS: Severity.ERROR,
        Profile.KAIROS: Severity.ERROR,
        Profile.BOOTC: Severity.ERROR,
    },
    sources=(
        X86_BOOT_PROTOCOL,
        ARM64_BOOTING,
        LINUX_ZBOOT,
        UKI_SPEC,
        issue("rancher/elemental-cli", 168),
    ),
    description=(
        "The kernel this profile boots (--kernel PATH, else /boot/vmlinuz, else the bootc "
        "/usr/lib/modules/<kver>/vmlinuz, else the first kernel found) is a boot image by its "
        "header: x86 bzImage, arm64/RISC-V Image (also gzip/zstd-wrapped), ARM zImage, EFI zboot "
        "or a UKI with .linux. ELF vmlinux, System.map, config-* and .hmac files are rejected "
        "by content, whatever their names; a truncated or damaged kernel fails too."
    ),
)
def kernel_is_boot_image(ctx: CheckContext) -> Iterable[Result]:
    a = ctx.kernel
    if a is None:
        if ctx.kernel_candidates:
            # No real kernel anywhere: judge what the tools would take, the first candidate.
            a = ctx.kernel_candidates[0]
        else:
            yield skipped("no kernel candidate (KRN-001 reports it)")
            return
    given = " (--kernel)" if ctx.policy.kernel and a.path == ctx.policy.kernel else ""
    if not a.ok:
        yield failed(
            f"kernel {a.path}{given} does not resolve: {a.resolution.reason} at {a.resolution.path}",
            a.path,
            [_subject(a)],
            hint="give a path that exists in the image" if given else _INSTALL_HINT,
        )
        return
    info = a.analysis
    if isinstance(info, KernelInfo) and info.ok:
        version = f", version {info.version}" if info.version else ""
        yield passed(f"{a.path}{given} is a {info.format} kernel{version}", a.path, _evidence(a))
    elif isinstance(info, KernelInfo) and info.is_kernel:
        yield failed(
            f"kernel {a.path}{given} is a damaged {info.format}: {'; '.join(info.problems)}",
            a.path,
            _evidence(a),
            hint="reinstall the kernel package; the file is cut or corrupted",
        )
    elif isinstance(info, KernelInfo):
        yield failed(
            f"{a.path}{given} is not a boot image: {'; '.join(info.problems) or info.description}",
            a.path,
            _evidence(a),
            hint="point the kernel path at the compressed boot image (vmlinuz/Image), "
            "not vmlinux, System.map, config or .hmac",
        )
    elif a.failure:
        yield unreadable(f"{a.path}{given} could not be read: {a.failure}", a.path, [_subject(a)])
    else:
        yield failed(
            f"{a.path}{given} is not a kernel: {_why_not(a)}", a.path, [_subject(a)], hint=_INSTALL_HINT
        )


# --- KRN-003 -----------------------------------------------------------------------------------

_X86 = {"amd64", "386"}


@rule(
    "KRN-003",
    "the kernel's architecture is the image's",
    {
        Profile.GENERIC: Severity.ERROR,
        Profile.COS: Severity.ERROR,
        Profile.KAIROS: Severity.ERROR,
        Profile.BOOTC: Severity.ERROR,
    },
    sources=(
        X86_BOOT_PROTOCOL,
        f"{BOOTC}/crates/ostree-ext/src/container/store.rs create_prepared_import",
        f"{BIB_LEGACY_ISO} --target-arch",
    ),
    description=(
        "The architecture the kernel's header states (bzImage xloadflags XLF_KERNEL_64, arm64 / "
        "RISC-V Image magic, ARM zImage magic, PE machine of zboot and UKIs) equals the image "
        "config's `architecture`. A bzImage older than boot protocol 2.12 does not say 32 or "
        "64 bit: any x86 image architecture is accepted for it."
    ),
)
def kernel_arch(ctx: CheckContext) -> Iterable[Result]:
    a = ctx.kernel
    info = a.kernel if a is not None else None
    if a is None or info is None or not info.is_kernel:
        yield skipped("no kernel to compare (KRN-001/KRN-002 report it)")
        return
    image_arch = ctx.config.architecture
    evidence = [_subject(a), f"image config architecture: {image_arch or '(empty)'}"]
    if info.description:
        evidence.append(f"libmagic: {info.description}")
    if info.arch is None and info.format is KernelFormat.BZIMAGE:
        if image_arch in _X86:
            yield passed(f"{a.path} is an x86 kernel, the image is {image_arch}", a.path, evidence)
        else:
            yield failed(
                f"{a.path} is an x86 kernel but the image is {image_arch}",
                a.path,
                evidence,
                hint=f"install the {image_arch} kernel package",
            )
        return
    if info.arch is None:
        yield not_run(f"{a.path}: the {info.format} header does not state an architecture", a.path, evidence)
        return
    evidence.insert(1, f"kernel architecture: {info.arch} ({info.format})")
    if info.arch == image_arch:
        yield passed(f"{a.path} is built for {info.arch}, as the image", a.path, evidence)
    else:
        yield failed(
            f"{a.path} is a {info.arch} kernel but the image is {image_arch or 'of no stated architecture'}",
            a.path,
            evidence,
            hint=f"install the kernel built for {image_arch}, or build the image for {info.arch}",
        )


# --- KRN-004 / KRN-005 -------------------------------------------------------------------------


@rule(
    "KRN-004",
    "the kernel has its modules directory",
    {
        Profile.GENERIC: Severity.WARNING,
        Profile.COS: Severity.ERROR,
        Profile.KAIROS: Severity.ERROR,
        Profile.BOOTC: Severity.ERROR,
    },
    sources=(
        f"{ELEMENTAL_COMMON} FindKernel (E3)",
        f"{KAIROS_VALIDATE} [KERNEL] (K13)",
        f"{BOOTC_IMAGES_DOC} /usr/lib/modules/<kver>/vmlinuz",
    ),
    description=(
        "The kernel's release (x86 header string, 'Linux version' banner, UKI .uname, else its "
        "file name) has a directory /usr/lib/modules/<kver> or /lib/modules/<kver>. Under cos "
        "Elemental v2's own way is checked too (E3): the first /lib/modules entry whose name is "
        "a substring of the kernel's resolved path; no match, or a match other than the real "
        "release (E3a: '5.14.21' sorted before '5.14.21-150500.55-default'), fails because "
        "`elemental init` would build the initrd for the wrong release."
    ),
)
def kernel_modules_dir(ctx: CheckContext) -> Iterable[Result]:
    a = ctx.kernel
    if a is None or not a.ok:
        yield skipped("no kernel (KRN-001/KRN-002 report it)")
        return
    version = kernel_version(a)
    dirs = ctx.modules_dirs
    present = f"modules dirs: {', '.join(sorted(dirs)) or 'none'}"
    if version is None:
        yield not_run(f"{a.path}: kernel release not readable from header, banner or name", a.path, [present])
        return
    evidence = [_subject(a), f"kernel release: {version}", present]
    if version not in dirs:
        yield failed(
            f"no modules directory for kernel {version}: /usr/lib/modules/{version} is missing",
            f"/usr/lib/modules/{version}",
            evidence,
            hint=f"install the modules package matching {version} (or the kernel matching the modules)",
        )
        return
    if ctx.profile is Profile.COS:
        e3 = elemental_v2.e3_version(ctx, a.real)
        if e3 != version:
            picked = f"picks {e3}" if e3 else "finds none"
            yield failed(
                f"Elemental v2 (E3) {picked} for {a.real}, the kernel is {version}",
                a.path,
                [*evidence, f"E3 matches /lib/modules names against {a.real}"],
                hint=f"name the kernel file after its release (vmlinuz-{version}) "
                "and remove stale modules dirs",
            )
            return
    yield passed(f"kernel {version} has {dirs[version]}", dirs[version], evidence)


@rule(
    "KRN-005",
    "depmod ran for the kernel",
    {
        Profile.GENERIC: Severity.WARNING,
        Profile.COS: Severity.WARNING,
        Profile.KAIROS: Severity.WARNING,
        Profile.BOOTC: Severity.WARNING,
    },
    sources=(f"{COS_V0_8}/packages/kernel/build.yaml depmod -a",),
    description=(
        "modules.dep exists in the kernel's modules directory: without it modprobe finds no "
        "module at boot (the cOS kernel package runs `depmod -a` for this)."
    ),
)
def modules_dep(ctx: CheckContext) -> Iterable[Result]:
    version = kernel_version(ctx.kernel)
    directory = ctx.modules_dirs.get(version) if version else None
    if directory is None:
        yield skipped("no modules directory for the kernel (KRN-004 reports it)")
        return
    dep = posixpath.join(directory, "modules.dep")
    if ctx.is_file(dep):
        yield passed(f"{dep} present", dep)
    else:
        yield failed(
            f"{dep} is missing", dep, [f"kernel release: {version}"], hint=f"run depmod -a {version}"
        )


# --- KRN-006 -----------------------------------------------------------------------------------

_PROFILE_TOOLS = {
    Profile.GENERIC: ("v2", "v1", "k13"),
    Profile.COS: ("v2", "v1"),
    Profile.KAIROS: ("v1", "k13"),
}


@rule(
    "KRN-006",
    "every tool picks the same kernel",
    {
        Profile.GENERIC: Severity.WARNING,
        Profile.COS: Severity.WARNING,
        Profile.KAIROS: Severity.WARNING,
        Profile.BOOTC: Severity.ERROR,
    },
    sources=(
        f"{ELEMENTAL_CONSTANTS} GetKernelPatterns (E1)",
        f"{ELEMENTAL_COMMON} resolveLink (E2)",
        f"{ELEMENTAL_V1_COMMON} FindFileWithPrefix",
        f"{KAIROS_INIT}/pkg/kernel/kernel.go GetLatestFromPath (K13)",
        f"{BOOTC_LINTS} kernel lint",
    ),
    description=(
        "With more than one kernel, report the file each tool would pick: Elemental v2 (E1 "
        "patterns in order, first lexical match, links up to 4 deep), Elemental v1 / "
        "kairos-agent / AuroraBoot (first sorted /boot entry with a kernel prefix, absolute links "
        "passed over), Kairos (K13: highest semver /lib/modules dir). Fails when the tools of the "
        "profile disagree. Under bootc, fails like bootc's `kernel` lint when more than one "
        "/usr/lib/modules/<kver>/vmlinuz exists."
    ),
)
def kernel_picks(ctx: CheckContext) -> Iterable[Result]:
    modules_kernels = [f"{d}/vmlinuz" for d in bootc.kernel_dirs(ctx)]
    bootc_line = f"bootc: {len(modules_kernels)} kernel(s) in /usr/lib/modules: {', '.join(modules_kernels)}"
    if ctx.profile is Profile.BOOTC:
        if len(modules_kernels) > 1:
            yield failed(
                f"Found multiple subdirectories in usr/lib/modules with vmlinuz ({len(modules_kernels)})",
                "/usr/lib/modules",
                modules_kernels,
                hint="keep one kernel: remove the other kernel packages and their modules dirs",
            )
        else:
            yield passed("at most one kernel in /usr/lib/modules", "/usr/lib/modules", [bootc_line])
        return
    distinct = {a.real for a in ctx.kernels}
    if len(distinct) <= 1:
        yield passed(f"{len(distinct)} kernel file(s): nothing to choose between", None, sorted(distinct))
        return
    picks = _kernel_picks(ctx)
    chosen = ctx.kernel
    evidence = [p.describe() for p in picks.values()]
    evidence += [f"ociboot checks: {chosen.chain if chosen else 'nothing'}", bootc_line]
    verdicts = [_pick_release(ctx, key, p) for key, p in picks.items() if key in _PROFILE_TOOLS[ctx.profile]]
    if len(set(verdicts)) > 1 or None in verdicts:
        yield failed(
            f"{len(distinct)} kernels and the tools disagree on which to boot",
            "/boot",
            evidence,
            hint="remove the kernels you do not boot (and their modules dirs), or link /boot/vmlinuz "
            "relatively to the one you do",
        )
    else:
        yield passed(f"{len(distinct)} kernels; every tool picks {verdicts[0]}", "/boot", evidence)


def _kernel_picks(ctx: CheckContext) -> dict[str, Pick]:
    return {
        "v2": elemental_v2.kernel_file(ctx),
        "v1": elemental_v1.kernel(ctx),
        "k13": kairos.kernel_release(ctx),
    }


def _pick_release(ctx: CheckContext, key: str, pick: Pick) -> str | None:
    """What a pick amounts to, comparable across tools: the kernel release it boots."""
    if not pick.ok or pick.matched is None:
        return None
    if key == "k13":
        return pick.version
    return kernel_version(ctx.artifact(pick.matched)) or pick.real


# --- KRN-007 -----------------------------------------------------------------------------------


@rule(
    "KRN-007",
    "no modules directories without a kernel",
    {
        Profile.GENERIC: Severity.INFO,
        Profile.COS: Severity.INFO,
        Profile.KAIROS: Severity.INFO,
        Profile.BOOTC: Severity.WARNING,
    },
    sources=(
        issue("ublue-os/aurora", 1286),
        f"{KAIROS_INIT}/pkg/kernel/kernel.go GetLatestFromPath (K13)",
    ),
    description=(
        "Each /usr/lib/modules/<kver> (or /lib/modules/<kver>) belongs to a kernel: it holds a "
        "vmlinuz or some kernel in the image has that release. Leftover directories (a kernel "
        "package removed, its modules kept) make Kairos' K13 and Elemental's E3 choose wrong "
        "and are invisible to bootc's `kernel` lint (aurora#1286)."
    ),
)
def leftover_modules(ctx: CheckContext) -> Iterable[Result]:
    releases = {v for a in ctx.kernels if (v := kernel_version(a))}
    if (v := kernel_version(ctx.kernel)) is not None:
        releases.add(v)
    dirs = ctx.modules_dirs
    if not dirs:
        yield skipped("no modules directories")
        return
    leftovers = []
    for kver, real in sorted(dirs.items()):
        if kver in releases or ctx.exists(posixpath.join(real, "vmlinuz")):
            continue
        leftovers.append(kver)
        yield failed(
            f"{real} belongs to no kernel in the image",
            real,
            [f"kernel releases: {', '.join(sorted(releases)) or 'none'}"],
            hint=f"remove {real} (a leftover of a removed kernel package)",
        )
    if not leftovers:
        yield passed(f"{len(dirs)} modules dir(s), each with its kernel", None, sorted(dirs.values()))


RULES: tuple[Rule, ...] = (
    kernel_exists,
    kernel_is_boot_image,
    kernel_arch,
    kernel_modules_dir,
    modules_dep,
    kernel_picks,
    leftover_modules,
)
CAPTURE: tuple[str, ...] = ()
