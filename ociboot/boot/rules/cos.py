"""Rules of the `cos` profile (cOS toolkit / Elemental): COS-001 .. COS-016.

Every rule cites the tool behaviour behind it (docs/tools.md: D for the cOS docs, E for Elemental v2).
Two sub-variants are told apart by what the image carries (the reference's detection rule):
`/etc/elemental/` means Elemental toolkit v2 (`elemental init` output), `/etc/cos/` alone means a
legacy luet-era cOS derivative (v0.5-v0.9).  A `cos` profile forced on an image with neither is
judged as Elemental v2, the toolkit's current form.

Elemental's own discovery of kernels, initrds and bootloader files is emulated, not
approximated (COS-002, COS-008, COS-009): see `..emulate.elemental_v2`.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from ...fs.node import Kind
from ...report import Outcome, Severity
from ..check import Profile, Result, Rule, failed, not_run, passed, rule, skipped
from ..context import CheckContext, link_chain, parse_env_file
from ..emulate import elemental_v1, elemental_v2
from ..emulate.elemental_v2 import INITRD_PATTERNS, KERNEL_PATTERNS, MODULES_DIR, find_file, walk_matches
from ..emulate.grub import BOOTARGS, DEFAULT_BOOT_PATHS, boot_paths, grub_sets
from ..emulate.pick import Pick
from ..initrd import InitrdInfo
from ..pkgdb.roles import NAMES, Family, Role
from ..upstream import (
    COS_BOOTABLE_IMAGES,
    COS_DOCS_2021,
    COS_IMMUTABLE_ROOTFS,
    COS_V0_5,
    COS_V0_8,
    DRACUT_CONF,
    ELEMENTAL,
    ELEMENTAL_BOOTARGS,
    ELEMENTAL_COMMON,
    ELEMENTAL_CONSTANTS,
    ELEMENTAL_GRUB,
    ELEMENTAL_ROOTFS_MODULE,
    ELEMENTAL_SETUP_MODULE,
    ELEMENTAL_V1,
    ELEMENTAL_V1_COMMON,
    LUET,
    RANCHER_ELEMENTAL,
    issue,
)

#: Small files these rules read, as layer-member globs ('*' crosses '/').  Most are in the
#: pipeline's base set already; listed again so this module does not depend on that.
CAPTURE: tuple[str, ...] = (
    "etc/os-release",
    "usr/lib/os-release",
    "etc/elemental/*",
    "etc/cos/*",
    "etc/cos-upgrade-image",
    "etc/dracut.conf",
    "etc/dracut.conf.d/*",
    "usr/lib/dracut/dracut.conf.d/*",
    "system/oem/*",
    "oem/*",
    "usr/local/cloud-config/*",
)

# --- sub-variant -----------------------------------------------------------------------------


class Variant(StrEnum):
    ELEMENTAL2 = "Elemental v2"
    LEGACY = "legacy cOS"


def variant(ctx: CheckContext) -> Variant:
    """/etc/elemental/ => Elemental v2; /etc/cos/ only => legacy cOS (v2 keeps its config in
    /etc/elemental, docs/tools.md E8)."""
    if ctx.is_dir("/etc/elemental"):
        return Variant.ELEMENTAL2
    if ctx.is_dir("/etc/cos"):
        return Variant.LEGACY
    return Variant.ELEMENTAL2


# --- COS-001 .. COS-004 -----------------------------------------------------------------------


@rule(
    "COS-001",
    "GRUB's kernel and initrd paths exist",
    {Profile.COS: Severity.ERROR},
    sources=(
        f"{COS_BOOTABLE_IMAGES} default boot paths (D9)",
        f"{ELEMENTAL_BOOTARGS} (E9)",
        f"{COS_V0_5}/packages/grub-config/config/bootargs.cfg",
    ),
    description=(
        "The default bootargs hard-code `set kernel=/boot/vmlinuz` and `set initramfs=/boot/initrd` "
        "(D9; E9 grub-default-bootargs, where `${root_subpath}` is empty on a plain install), so "
        "both must resolve inside the image to regular files.  A custom bootargs.cfg "
        "(/etc/cos/bootargs.cfg then /etc/elemental/bootargs.cfg, the order grub.cfg sources them; "
        "the last `set` wins) or --kernel/--initrd moves the check to those paths.  GRUB "
        "variables in the value are stripped."
    ),
)
def boot_paths_exist(ctx: CheckContext) -> Iterator[Result]:
    bad = []
    evidence = []
    for name, (path, why) in boot_paths(ctx).items():
        res = ctx.lookup(path)
        if res.ok and res.node is not None and res.node.kind is Kind.FILE:
            evidence.append(f"{name}: {link_chain(path, res)} ({why})")
            continue
        what = "a directory" if res.ok else res.reason
        bad.append(
            failed(
                f"GRUB {name} path {path} does not resolve to a file: {what}",
                path,
                [f"{name}: {link_chain(path, res)} ({why})"],
                hint=f"link {path} to the real {name} file (relative link), or set {name}= in "
                "/etc/elemental/bootargs.cfg to where it is",
            )
        )
    yield from bad or [passed("GRUB's kernel and initramfs paths resolve to files", "/boot", evidence)]


@rule(
    "COS-002",
    "Elemental finds the kernel, its version and the initrd",
    {Profile.COS: Severity.ERROR},
    sources=(
        f"{ELEMENTAL_COMMON} FindKernel, FindFile, resolveLink (E1-E4)",
        f"{ELEMENTAL_CONSTANTS} GetKernelPatterns, GetInitrdPatterns, MaxLinkDepth",
        f"{ELEMENTAL_V1}/pkg/elemental/elemental.go FindKernelInitrd",
        f"{ELEMENTAL_V1_COMMON} FindFileWithPrefix",
        issue("rancher/elemental", 1450),
    ),
    description=(
        "Emulates Elemental v2 (used by `elemental init`, install, upgrade-recovery, build-iso): "
        "kernel patterns /boot/{uImage,Image,zImage,vmlinuz,image}* in that order, first lexical "
        "match, links followed up to 4 deep (absolute targets re-rooted, a dangling hop is fatal); "
        "E3 version = the first /lib/modules entry whose name is contained in the resolved kernel "
        "path (so a regular file named /boot/vmlinuz fails); initrd patterns "
        "/boot/{elemental.initrd,initrd,initramfs}*.  Errors quote Elemental's messages.  Also "
        "an error (ociboot-stricter, rancher/elemental#1450): the initrd v2 picks must carry "
        "modules for the kernel version v2 picks.  Warns when Elemental v1's prefix search "
        "(/boot entries by name, one link level, absolute links looked up on the build host) "
        "picks other files than v2."
    ),
)
def elemental_selection(ctx: CheckContext) -> Iterator[Result]:
    kernel, initrd = elemental_v2.kernel(ctx), elemental_v2.initrd_file(ctx)
    yield _kernel_result(kernel)
    yield _initrd_result(ctx, initrd, kernel)
    yield from _v1_results((kernel, elemental_v1.kernel(ctx)), (initrd, elemental_v1.initrd(ctx)))


def _matched(pick: Pick, patterns: tuple[str, ...]) -> list[str]:
    evidence = [f"patterns, in order: {', '.join(patterns)}"]
    if pick.matched is not None:
        evidence.insert(0, f"{pick.pattern} matched first: {pick.chain}")
    return evidence


def _kernel_result(pick: Pick) -> Result:
    evidence = _matched(pick, KERNEL_PATTERNS)
    if pick.error:
        hint = "link /boot/vmlinuz (relative) to a kernel file whose name contains its /lib/modules version"
        if pick.error.startswith("could not determine the version"):
            hint = f"rename {pick.path} to vmlinuz-<version> and link /boot/vmlinuz to it (E3)"
        return failed(f"Elemental v2: {pick.error}", pick.path or "/boot", evidence, hint)
    return passed(
        f"Elemental v2 picks kernel {pick.path}, version {pick.version}",
        pick.path,
        [*evidence, f"{MODULES_DIR}/{pick.version} is the first modules directory named in the path"],
    )


def _initrd_result(ctx: CheckContext, pick: Pick, kernel: Pick) -> Result:
    evidence = _matched(pick, INITRD_PATTERNS)
    if pick.error or pick.path is None:
        hint = "build the initrd with dracut (`elemental init` writes /boot/elemental.initrd-<version>)"
        return failed(f"Elemental v2: {pick.error}", pick.path or "/boot", evidence, hint)
    version = kernel.version
    if version is None:
        return passed(f"Elemental v2 picks initrd {pick.path}", pick.path, evidence)
    info = ctx.analysis(pick.path)
    built_for = info.kernel_versions if isinstance(info, InitrdInfo) else ()
    if version in built_for or (not built_for and version in pick.path):
        why = "carries modules for" if built_for else "is named for"
        return passed(
            f"Elemental v2 picks initrd {pick.path}, which {why} kernel {version}",
            pick.path,
            evidence,
        )
    if not built_for:
        return not_run(
            f"cannot tell which kernel {pick.path} was built for: no (usr/)lib/modules/<version> "
            "inside and no version in its name",
            pick.path,
            evidence,
        )
    others = [m for p in INITRD_PATTERNS for m in walk_matches(ctx, p) if m != pick.matched and version in m]
    return failed(
        f"Elemental v2 picks initrd {pick.path}, built for kernel {', '.join(built_for)}, "
        f"but its kernel is version {version} (rancher/elemental#1450)",
        pick.path,
        [*evidence, *(f"an initrd for {version} exists but sorts later: {m}" for m in others)],
        hint=f"remove initrds of other kernels from /boot, or rebuild with `elemental init` for {version}",
    )


def _v1_results(kernels: tuple[Pick, Pick], initrds: tuple[Pick, Pick]) -> Iterator[Result]:
    """v1 against v2 on the file each finds (v2's E3 version does not matter here)."""
    agree = []
    for what, (v2, v1) in (("kernel", kernels), ("initrd", initrds)):
        v1_real = v1.real if v1.ok else None
        v2_real = v2.real
        if v1_real == v2_real:
            agree.append(f"{what}: both pick {v1_real or 'nothing'}")
            continue
        v1_text = v1_real or f'nothing ("No {"Kernel" if what == "kernel" else "initrd"} file found")'
        yield failed(
            f"Elemental v1 and v2 pick different {what} files: v1 {v1_text}, v2 {v2_real or 'nothing'}",
            v1_real or v2_real or "/boot",
            [f"v1 prefixes, by /boot entry name: {', '.join(v1.candidates)}", *v1.reasons],
            hint=f"keep one {what} in /boot, or make the names sort the same way for both "
            "(build-iso from Elemental v1 / elemental-cli uses the v1 search)",
            severity=Severity.WARNING,
        )
    if len(agree) == 2:
        yield passed("Elemental v1 and v2 pick the same kernel and initrd", "/boot", agree)


@rule(
    "COS-003",
    "GRUB config for Elemental",
    {Profile.COS: Severity.ERROR},
    sources=(f"{ELEMENTAL_GRUB} InstallConfig (E8)",),
    description=(
        'Elemental v2 installs /etc/elemental/grub.cfg; without it, it warns "Grub config not found, '
        'using legacy config" and copies /etc/cos/grub.cfg (E8).  Neither: error.  Only the legacy '
        "file on an Elemental v2 image: warning.  On a legacy cOS image /etc/cos/grub.cfg is the "
        "expected place (the system/grub2-config package)."
    ),
)
def grub_config(ctx: CheckContext) -> Iterator[Result]:
    current, legacy = "/etc/elemental/grub.cfg", "/etc/cos/grub.cfg"
    kind = variant(ctx)
    if ctx.is_file(current):
        yield passed(f"GRUB config {current} present", current)
    elif ctx.is_file(legacy) and kind is Variant.LEGACY:
        yield passed(f"GRUB config {legacy} present ({kind})", legacy)
    elif ctx.is_file(legacy):
        yield failed(
            f'{current} is missing: Elemental warns "Grub config not found, using legacy config" '
            f"and uses {legacy}",
            current,
            [f"{kind} image (/etc/elemental exists)", f"{legacy} exists"],
            hint="run `elemental init` (feature grub-config) or move the config to /etc/elemental/grub.cfg",
            severity=Severity.WARNING,
        )
    else:
        yield failed(
            f"no GRUB config: neither {current} nor {legacy} exists",
            current,
            [f"{kind} image"],
            hint="run `elemental init` (feature grub-config), or install system/grub2-config on cOS",
        )


@rule(
    "COS-004",
    "GRUB bootargs set kernel and initramfs to existing paths",
    {Profile.COS: Severity.ERROR},
    sources=(
        f"{ELEMENTAL}/pkg/features/embedded/grub-config/etc/elemental/grub.cfg (E9)",
        ELEMENTAL_BOOTARGS,
        f"{COS_DOCS_2021}/docs/creating_bootable_images.md (D12)",
        issue("kairos-io/kairos", 1770),
    ),
    description=(
        "grub.cfg sources /etc/cos/bootargs.cfg and /etc/elemental/bootargs.cfg (E9); without "
        'either, GRUB has no kernel to load ("you need to load the kernel first", kairos#1770).  '
        "Every `set kernel=` / `set initramfs=` line in them must name a path that exists in the "
        "image (GRUB variables stripped), and together they must set both."
    ),
)
def bootargs(ctx: CheckContext) -> Iterator[Result]:
    files = [f for f in BOOTARGS if ctx.is_file(f)]
    if not files:
        yield failed(
            "no GRUB bootargs: neither /etc/elemental/bootargs.cfg nor /etc/cos/bootargs.cfg exists",
            BOOTARGS[-1],
            hint="run `elemental init` (feature grub-default-bootargs) or write "
            "/etc/elemental/bootargs.cfg with `set kernel=/boot/vmlinuz` and `set initramfs=/boot/initrd`",
        )
        return
    sets = [s for f in files for s in grub_sets(ctx, f)]
    results = []
    for name in DEFAULT_BOOT_PATHS:
        if not any(s.name == name for s in sets):
            results.append(
                failed(
                    f"no `set {name}=` in {' or '.join(files)}: GRUB's `linux`/`initrd` get an empty path",
                    files[-1],
                    hint=f"add `set {name}={DEFAULT_BOOT_PATHS[name]}` to {files[-1]}",
                )
            )
    for s in sets:
        if s.path is None:
            results.append(
                not_run(f"{s.where}: `set {s.name}={s.raw}` names no path once variables go", s.file)
            )
            continue
        res = ctx.lookup(s.path)
        if not res.ok:
            results.append(
                failed(
                    f"{s.where} sets {s.name}={s.raw}, but {s.path} does not exist: {res.reason}",
                    s.path,
                    [link_chain(s.path, res)],
                    hint=f"point {s.name}= at the real file, or create {s.path}",
                )
            )
    evidence = [f"{s.where}: set {s.name}={s.raw}" for s in sets]
    yield from results or [passed(f"bootargs in {', '.join(files)} name existing paths", files[-1], evidence)]


# --- COS-005 .. COS-007: Elemental in the image and in the initrd ------------------------------


@rule(
    "COS-005",
    "the elemental binary is in the image",
    {Profile.COS: Severity.ERROR},
    sources=(
        f"{ELEMENTAL_SETUP_MODULE} (E14)",
        ELEMENTAL_ROOTFS_MODULE,
        f"{COS_V0_8}/packages/cos-setup/cos-setup-boot.service elemental run-stage",
    ),
    description=(
        "/usr/bin/elemental must be an executable file (through links): the dracut modules copy it "
        "into the initrd and the setup units run `elemental run-stage` (E14).  On a legacy cOS image "
        "an executable /usr/bin/cos-setup is accepted instead: packages/cos-setup/build.yaml before "
        "v0.8 installed that script and its units called it."
    ),
)
def elemental_binary(ctx: CheckContext) -> Iterator[Result]:
    kind = variant(ctx)
    accepted = ["/usr/bin/elemental"] + (["/usr/bin/cos-setup"] if kind is Variant.LEGACY else [])
    for path in accepted:
        if ctx.is_executable(path):
            yield passed(f"{path} is executable", path, [link_chain(path, ctx.lookup(path))])
            return
    res = ctx.lookup(accepted[0])
    state = "not executable" if res.ok and res.node is not None and res.node.kind is Kind.FILE else res.reason
    yield failed(
        f"{' or '.join(accepted)} missing or not executable ({state})",
        accepted[0],
        [f"{kind} image"],
        hint="copy the elemental binary from the toolkit image (`COPY --from=TOOLKIT /install-root /`)",
    )


ELEMENTAL2_MODULES: tuple[tuple[str, ...], ...] = (
    ("elemental-setup",),
    ("elemental-rootfs", "cos-immutable-rootfs"),
    ("elemental-sysroot",),
)
LEGACY_MODULES: tuple[tuple[str, ...], ...] = (("cos-immutable-rootfs", "elemental-rootfs"),)


@rule(
    "COS-006",
    "the initrd carries the Elemental/cOS dracut modules",
    {Profile.COS: Severity.ERROR},
    sources=(
        f"{ELEMENTAL}/pkg/features/features.go (E7)",
        f"{ELEMENTAL_SETUP_MODULE} (E14)",
        f"{COS_IMMUTABLE_ROOTFS}/module-setup.sh",
        f"{COS_V0_8}/packages/initrd/build.yaml",
    ),
    description=(
        "Reads the initrd GRUB loads (COS-001's path) natively.  Its usr/lib/dracut/modules.txt must "
        "list, on Elemental v2: elemental-setup, elemental-rootfs (or the legacy "
        "cos-immutable-rootfs) and elemental-sysroot (E7); on legacy cOS: cos-immutable-rootfs (or "
        "elemental-rootfs).  The initrd must contain usr/bin/elemental (E14; on legacy cOS "
        "usr/bin/cos-setup is accepted, as in COS-005)."
    ),
)
def initrd_modules(ctx: CheckContext) -> Iterator[Result]:
    path = boot_paths(ctx)["initramfs"][0]
    info = ctx.analysis(path)
    if not isinstance(info, InitrdInfo):
        why = (
            "it does not resolve to a file"
            if not ctx.is_file(path)
            else "it could not be read as an initramfs"
        )
        yield not_run(f"cannot read the initrd {path}: {why}", path, [str(info)] if info is not None else [])
        return
    if info.cap_hit:
        yield not_run(f"{path}: stopped at the decompression cap before the end", path)
        return
    kind = variant(ctx)
    wanted = ELEMENTAL2_MODULES if kind is Variant.ELEMENTAL2 else LEGACY_MODULES
    binaries = ("usr/bin/elemental",) + (("usr/bin/cos-setup",) if kind is Variant.LEGACY else ())
    listed = set(info.dracut_modules)
    results = []
    for options in wanted:
        if listed.isdisjoint(options):
            results.append(
                failed(
                    f"initrd {path} lacks dracut module {' or '.join(options)}",
                    path,
                    [f"{kind} image", f"modules.txt: {' '.join(info.dracut_modules) or '(missing)'}"],
                    hint="rebuild the initrd after installing the toolkit's dracut modules "
                    "(`elemental init` runs dracut with them)",
                )
            )
    if not any(info.contains(b) for b in binaries):
        results.append(
            failed(
                f"initrd {path} does not contain {' or '.join(binaries)}",
                path,
                [f"{info.member_count} members"],
                hint="install /usr/bin/elemental before running dracut: the dracut modules copy it in",
            )
        )
    present = [m for options in wanted for m in options if m in listed]
    yield from results or [
        passed(
            f"initrd {path} carries {', '.join(present)} and the elemental binary", path, [f"{kind} image"]
        )
    ]


ELEMENTAL2_UNITS = (
    "elemental-setup-boot.service",
    "elemental-setup-network.service",
    "elemental-setup-fs.service",
    "elemental-setup-initramfs.service",
    "elemental-setup-rootfs.service",
    "elemental-setup-reconcile.service",
    "elemental-setup-reconcile.timer",
    "elemental-rootfs.service",
)
#: packages/cos-setup/build.yaml `systemctl enable` list (the reconcile service runs from its timer).
LEGACY_UNITS = (
    "cos-setup-rootfs.service",
    "cos-setup-initramfs.service",
    "cos-setup-reconcile.timer",
    "cos-setup-fs.service",
    "cos-setup-boot.service",
    "cos-setup-network.service",
)
#: systemd.unit(5): .wants/ and .requires/ directories in any unit search path enable a unit.
UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")


@rule(
    "COS-007",
    "Elemental/cOS setup units are enabled",
    {Profile.COS: Severity.WARNING},
    sources=(
        f"{ELEMENTAL}/pkg/features/features.go elemental-setup, elemental-rootfs",
        f"{COS_V0_8}/packages/cos-setup/build.yaml systemctl enable",
    ),
    description=(
        "The boot stages run from systemd units that `elemental init` (v2) or the cos-setup package "
        "(legacy) enable.  Each must have an enablement link in a `*.wants/` or `*.requires/` "
        "directory of /etc/systemd/system (also accepted: /usr/lib/systemd/system, where systemd "
        "honours vendor enablement the same way), and the link must not dangle or point to "
        "/dev/null (masked).  v2: elemental-setup-{boot,network,fs,initramfs,rootfs,reconcile}"
        ".service, elemental-setup-reconcile.timer, elemental-rootfs.service; legacy: cos-setup-"
        "{rootfs,initramfs,fs,boot,network}.service and cos-setup-reconcile.timer."
    ),
)
def units_enabled(ctx: CheckContext) -> Iterator[Result]:
    kind = variant(ctx)
    units = ELEMENTAL2_UNITS if kind is Variant.ELEMENTAL2 else LEGACY_UNITS
    results, evidence = [], []
    for unit in units:
        links = [
            p for d in UNIT_DIRS for sub in ("*.wants", "*.requires") for p in ctx.glob(f"{d}/{sub}/{unit}")
        ]
        good = []
        for link in links:
            res = ctx.lookup(link)
            target = ctx.node(link, follow=False)
            masked = target is not None and target.is_symlink and target.entry.linkname == "/dev/null"
            if res.ok and not masked:
                good.append(link_chain(link, res))
            else:
                results.append(
                    failed(
                        f"{unit} is {'masked' if masked else 'enabled through a dangling link'}: {link}",
                        link,
                        [link_chain(link, res)],
                        hint=f"`systemctl enable {unit}` against an existing unit file",
                    )
                )
        if good:
            evidence.extend(good)
        elif not links:
            results.append(
                failed(
                    f"{unit} is not enabled: no link in /etc/systemd/system/*.wants/",
                    f"/etc/systemd/system/multi-user.target.wants/{unit}",
                    [f"{kind} image"],
                    hint="run `elemental init` (it enables the setup units) or `systemctl enable "
                    f"{unit}` in the Dockerfile",
                )
            )
    yield from results or [passed(f"all {len(units)} {kind} setup units are enabled", None, evidence)]


# --- COS-008 .. COS-010: bootloader files ----------------------------------------------------

#: constants.go ElementalBootloaderBin.
BOOTLOADER_BIN = "/usr/lib/elemental/bootloader"
EFI_PATTERNS = {
    "shim": (f"{BOOTLOADER_BIN}/shim*", "/usr/share/efi/*/shim.efi", "/boot/efi/EFI/*/shim*.efi"),
    "grub": (f"{BOOTLOADER_BIN}/grub*", "/usr/share/grub2/*-efi/grub.efi", "/boot/efi/EFI/*/grub*.efi"),
    "mok manager": (f"{BOOTLOADER_BIN}/mm*", "/boot/efi/EFI/*/mm*.efi", "/usr/share/efi/*/MokManager.efi"),
}
GRUB_MODULES = ("loopback.mod", "squash4.mod", "xzio.mod")
GRUB_MODULE_DIRS = ("/boot/grub2/*-efi", "/usr/share/grub*/*-efi", "/usr/lib/grub*/*-efi")
#: How each architecture is spelled in EFI paths (x86_64-efi, shimx64.efi, grubaa64.efi, ...).
ARCH_TOKENS = {
    "amd64": ("x86_64", "x64", "amd64"),
    "arm64": ("aarch64", "aa64", "arm64"),
    "riscv64": ("riscv64",),
}


def foreign_arch(path: str, arch: str) -> str | None:
    """The other architecture a path is spelled for, if it names one and not `arch`."""
    own = ARCH_TOKENS.get(arch)
    if own is None:
        return None
    lowered = path.lower()
    if any(t in lowered for t in own):
        return None
    return next(
        (a for a, tokens in ARCH_TOKENS.items() if a != arch and any(t in lowered for t in tokens)), None
    )


def _bootloader_result(ctx: CheckContext, what: str, patterns: tuple[str, ...], message: str) -> Result | str:
    """A failure Result for one Elemental bootloader search, or the evidence line of its success."""
    arch = ctx.config.architecture
    found = find_file(ctx, patterns)
    if found.path is None or found.error:
        return failed(
            f"Elemental: {message}" + (f" ({found.error})" if found.path and found.error else ""),
            found.matched or patterns[0],
            [f"patterns, in order: {', '.join(patterns)}"],
            hint=f"install the distribution's {what} EFI package for {arch}",
        )
    other = foreign_arch(found.path, arch)
    if other:
        return failed(
            f"Elemental picks {found.chain} for {what}, built for {other}, on this {arch} image",
            found.path,
            [f"{found.pattern} matched first"],
            hint=f"remove the {other} files or install the {arch} {what} package",
        )
    return f"{what}: {found.chain}"


@rule(
    "COS-008",
    "EFI shim, GRUB and MokManager binaries for Elemental",
    {Profile.COS: Severity.ERROR},
    sources=(
        f"{ELEMENTAL_CONSTANTS} GetShimFilePatterns, GetGrubEFIFilePatterns, GetMokMngrFilePatterns (E10)",
        f"{ELEMENTAL_GRUB} findEFIImages",
    ),
    description=(
        "install, build-disk and build-iso copy the EFI binaries from the image and fail with "
        '"failed to find shim image" / "grub image" / "mok manager" (E10).  The search is '
        "Elemental's (patterns in order, first lexical match, links resolved); shim and MokManager "
        "are skipped on riscv64, where secure boot is off by default.  Stricter than Elemental: a "
        "first match spelled for another architecture (aarch64 files on an amd64 image) is an error."
    ),
)
def efi_binaries(ctx: CheckContext) -> Iterator[Result]:
    arch = ctx.config.architecture
    evidence: list[str] = []
    results: list[Result] = []
    messages = {"shim": "failed to find shim image", "grub": "failed to find grub image"}
    for what, patterns in EFI_PATTERNS.items():
        if what != "grub" and arch == "riscv64":
            results.append(skipped(f"{what}: secure boot is off by default on riscv64"))
            continue
        outcome = _bootloader_result(ctx, what, patterns, messages.get(what, "failed to find mok manager"))
        if isinstance(outcome, str):
            evidence.append(outcome)
        else:
            results.append(outcome)
    if not any(r.outcome is Outcome.FAIL for r in results):
        results.append(passed(f"EFI binaries for {arch} found", None, evidence))
    yield from results


@rule(
    "COS-009",
    "GRUB modules Elemental installs",
    {Profile.COS: Severity.ERROR},
    sources=(
        f"{ELEMENTAL_CONSTANTS} GetDefaultGrubModules (E11)",
        f"{ELEMENTAL_GRUB} installModules",
    ),
    description=(
        "Elemental copies loopback.mod, squash4.mod and xzio.mod from /boot/grub2/*-efi, "
        "/usr/share/grub*/*-efi or /usr/lib/grub*/*-efi (first match) and fails without them (E11); "
        "a first match for another architecture is an error here too."
    ),
)
def grub_modules(ctx: CheckContext) -> Iterator[Result]:
    evidence, results = [], []
    for module in GRUB_MODULES:
        patterns = tuple(f"{d}/{module}" for d in GRUB_MODULE_DIRS)
        outcome = _bootloader_result(
            ctx, "grub2 modules", patterns, f"failed to find binary matching {module}"
        )
        if isinstance(outcome, str):
            evidence.append(outcome.replace("grub2 modules", module, 1))
        else:
            results.append(outcome)
    yield from results or [passed("GRUB modules found: " + ", ".join(GRUB_MODULES), None, evidence)]


@rule(
    "COS-010",
    "grub2-editenv or grub-editenv on PATH",
    {Profile.COS: Severity.ERROR},
    sources=(
        f"{ELEMENTAL_GRUB} grub2-editenv, grub-editenv (E12)",
        f"{ELEMENTAL}/examples/orange/Dockerfile",
    ),
    description=(
        "Elemental sets GRUB environment variables with grub2-editenv, falling back to grub-editenv "
        "(Ubuntu); without either, install and upgrade fail when they set variables (E12).  Looked "
        "up on the standard PATH, through links, as an executable file."
    ),
)
def grub_editenv(ctx: CheckContext) -> Iterator[Result]:
    for name in ("grub2-editenv", "grub-editenv"):
        path = ctx.which(name)
        if path is not None and ctx.is_executable(path):
            yield passed(f"{name} found at {path}", path, [link_chain(path, ctx.lookup(path))])
            return
    yield failed(
        "neither grub2-editenv nor grub-editenv is an executable on PATH",
        "/usr/bin/grub2-editenv",
        ["PATH: /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        hint="install grub2 (openSUSE/Fedora) or grub-common (Ubuntu; link grub2-editenv to grub-editenv)",
    )


# --- COS-011 .. COS-012: cloud-config and layout -------------------------------------------

CLOUD_INIT_PATHS = ("/system/oem", "/oem", "/usr/local/cloud-config")


def cloud_init_dirs(ctx: CheckContext) -> list[str]:
    """The defaults (constants.go GetCloudInitPaths), plus a legacy /etc/cos/config override."""
    dirs = list(CLOUD_INIT_PATHS)
    custom = parse_env_file(ctx.read_text("/etc/cos/config") or "").get("CLOUD_INIT_PATHS", "")
    dirs += [d.rstrip("/") or "/" for d in custom.split() if d.rstrip("/") not in dirs]
    return dirs


def cloud_configs(ctx: CheckContext) -> list[str]:
    return [
        p
        for d in cloud_init_dirs(ctx)
        for ext in ("yaml", "yml")
        for p in ctx.glob(f"{d}/*.{ext}")
        if ctx.is_file(p)
    ]


@rule(
    "COS-011",
    "cloud-config for the boot stages",
    {Profile.COS: Severity.WARNING},
    sources=(
        f"{COS_BOOTABLE_IMAGES} system/cloud-config (D11)",
        f"{COS_DOCS_2021}/docs/creating_bootable_images.md /system/oem (D12)",
        f"{COS_V0_8}/packages/cos-config/cos-config CLOUD_INIT_PATHS",
        f"{ELEMENTAL_CONSTANTS} GetCloudInitPaths",
    ),
    description=(
        "The boot stages apply the *.yaml/*.yml files of /system/oem, /oem and "
        "/usr/local/cloud-config (plus a legacy CLOUD_INIT_PATHS from /etc/cos/config); without any, "
        'nothing sets up users, layout or passwords (D11: "an equivalent cloud-config must be '
        'provided to boot").'
    ),
)
def cloud_config(ctx: CheckContext) -> Iterator[Result]:
    found = cloud_configs(ctx)
    if found:
        yield passed(f"{len(found)} cloud-config file(s)", found[0], found)
    else:
        dirs = cloud_init_dirs(ctx)
        yield failed(
            f"no cloud-config (*.yaml) in {', '.join(dirs)}",
            dirs[0],
            hint="copy the toolkit's /system/oem (features cloud-config-defaults, cloud-config-essentials) "
            "or write your own stages there",
        )


LAYOUT_KEYS = ("PERSISTENT_STATE_PATHS", "RW_PATHS")
_LAYOUT = re.compile(rf"^(\s*)(?:-\s+)?({'|'.join(LAYOUT_KEYS)})\s*[:=]\s*(.*)$")
_BLOCK = re.compile(r"^[>|][+-]?\d*$")


@dataclass(frozen=True, slots=True)
class LayoutPaths:
    file: str
    line: int
    key: str
    paths: tuple[str, ...]


def parse_layout(text: str, file: str) -> list[LayoutPaths]:
    """PERSISTENT_STATE_PATHS / RW_PATHS values in a yip stage file or an env file.

    Recognised, without a YAML parser: `KEY: value`, `KEY: "value"`, `KEY="value"` (env files,
    cos-layout.env), a quoted value continued on following lines, and block scalars (`KEY: >-`
    or `KEY: |` with more-indented lines below).  Values are split on white space; words not
    starting with '/' are ignored."""
    lines = text.splitlines()
    out: list[LayoutPaths] = []
    for index, line in enumerate(lines):
        m = _LAYOUT.match(line)
        if not m:
            continue
        indent, value = len(m.group(1)), m.group(3).strip()
        following = lines[index + 1 :]
        if not value or _BLOCK.match(value):
            block = []
            for more in following:
                if more.strip() and len(more) - len(more.lstrip()) <= indent:
                    break
                block.append(more.strip())
            value = " ".join(block)
        elif value[0] in "\"'":
            quote, parts = value[0], [value[1:]]
            for more in following:
                if quote in parts[-1]:
                    break
                parts.append(more.strip())
            value = " ".join(parts).split(quote, 1)[0]
        else:
            value = value.split(" #", 1)[0]
        paths = tuple(p for p in value.split() if p.startswith("/"))
        out.append(LayoutPaths(file, index + 1, m.group(2), paths))
    return out


@rule(
    "COS-012",
    "persistent and RW layout paths exist",
    {Profile.COS: Severity.WARNING},
    sources=(
        issue("rancher/elemental-toolkit", 1311),
        f"{COS_V0_8}/packages/cloud-config/oem/00_rootfs.yaml.tmpl rootfs stage layout",
        f"{COS_IMMUTABLE_ROOTFS}/cos-mount-layout.sh PERSISTENT_STATE_PATHS, RW_PATHS",
    ),
    description=(
        "The rootfs stage mounts every PERSISTENT_STATE_PATHS entry from the persistent partition "
        "and overlays every RW_PATHS entry; a path missing from the read-only image stalls the "
        "boot silently (elemental-toolkit#1311).  The layout is read from the cloud-config "
        "directories (see COS-011), any file; the parser is line-based, not YAML: see "
        "`parse_layout` for the forms recognised.  Skipped when no layout is declared."
    ),
)
def layout_paths(ctx: CheckContext) -> Iterator[Result]:
    declared = [
        entry
        for d in cloud_init_dirs(ctx)
        for f in ctx.glob(f"{d}/*")
        if ctx.is_file(f)
        for entry in parse_layout(ctx.read_text(f) or "", f)
    ]
    if not declared:
        yield skipped("no PERSISTENT_STATE_PATHS or RW_PATHS declared in the cloud-config directories")
        return
    seen: set[str] = set()
    results = []
    for entry in declared:
        for path in entry.paths:
            if path in seen:
                continue
            seen.add(path)
            if not ctx.exists(path):
                results.append(
                    failed(
                        f"{entry.key} path {path} (declared at {entry.file}:{entry.line}) does not exist "
                        "in the image: the boot stalls mounting it",
                        path,
                        [f"{entry.file}:{entry.line}: {entry.key}={' '.join(entry.paths)}"],
                        hint=f"create {path} in the image (RUN mkdir -p {path}) or drop it from {entry.key}",
                    )
                )
    evidence = [f"{e.file}:{e.line}: {e.key}={' '.join(e.paths)}" for e in declared]
    yield from results or [passed(f"all {len(seen)} layout paths exist", declared[0].file, evidence)]


# --- COS-013 .. COS-016: metadata and legacy markers --------------------------------------------


@rule(
    "COS-013",
    "os-release keys Elemental and Rancher upgrades use",
    {Profile.COS: Severity.WARNING},
    sources=(
        f"{ELEMENTAL_GRUB} SetDefaultEntry (E13)",
        f"{ELEMENTAL}/examples/green/Dockerfile os-release keys (E17)",
        f"{RANCHER_ELEMENTAL}/framework/files/usr/sbin/suc-upgrade",
        issue("rancher/elemental-toolkit", 2024),
    ),
    description=(
        "GRUB_ENTRY_NAME names the boot menu entry (E13, info); IMAGE_REPO and IMAGE_TAG are "
        "compared by Rancher Elemental's suc-upgrade to refuse non-newer upgrades (warning); "
        "/usr/sbin/suc-upgrade must exist for operator-managed upgrades (elemental-toolkit#2024, "
        "info)."
    ),
)
def os_release_keys(ctx: CheckContext) -> Iterator[Result]:
    osr = ctx.os_release
    where = "/etc/os-release"
    results = []
    for key, severity, why in (
        ("GRUB_ENTRY_NAME", Severity.INFO, "the GRUB menu entry falls back to the default name"),
        ("IMAGE_REPO", Severity.WARNING, "suc-upgrade cannot tell whether an upgrade is newer"),
        ("IMAGE_TAG", Severity.WARNING, "suc-upgrade cannot tell whether an upgrade is newer"),
    ):
        if not osr.get(key):
            results.append(
                failed(
                    f"{where} has no {key}: {why}",
                    where,
                    hint=f"append {key}=... to /etc/os-release (the elemental-toolkit examples do)",
                    severity=severity,
                )
            )
    if not ctx.is_executable("/usr/sbin/suc-upgrade"):
        results.append(
            failed(
                "/usr/sbin/suc-upgrade is missing: the Elemental operator cannot upgrade this OS",
                "/usr/sbin/suc-upgrade",
                hint="copy suc-upgrade from rancher/elemental's framework files (operator upgrades only)",
                severity=Severity.INFO,
            )
        )
    keys = [f"{k}={osr[k]}" for k in ("GRUB_ENTRY_NAME", "IMAGE_REPO", "IMAGE_TAG") if osr.get(k)]
    yield from results or [passed("os-release upgrade keys and suc-upgrade present", where, keys)]


_HOSTONLY = re.compile(r"""^\s*hostonly\s*=\s*["']?([A-Za-z]*)["']?\s*(?:#.*)?$""")


def dracut_conf_files(ctx: CheckContext) -> list[str]:
    """dracut's order: /etc/dracut.conf, then the *.conf drop-ins of /usr/lib/dracut/dracut.conf.d
    and /etc/dracut.conf.d sorted by name, an /etc file replacing a same-named /usr/lib one
    (dracut.conf(5))."""
    drop_ins: dict[str, str] = {}
    for directory in ("/usr/lib/dracut/dracut.conf.d", "/etc/dracut.conf.d"):
        for path in ctx.glob(f"{directory}/*.conf"):
            drop_ins[posixpath.basename(path)] = path
    head = ["/etc/dracut.conf"] if ctx.is_file("/etc/dracut.conf") else []
    return head + [drop_ins[name] for name in sorted(drop_ins)]


@rule(
    "COS-014",
    "dracut builds a generic (not host-only) initrd",
    {Profile.COS: Severity.WARNING},
    sources=(
        f"{COS_V0_8}/packages/base-dracut-modules/50-cos-initrd.conf",
        f"{ELEMENTAL}/pkg/features/embedded/dracut-config/etc/dracut.conf.d/50-elemental-initrd.conf",
        DRACUT_CONF,
    ),
    description=(
        'The toolkit ships hostonly="no" so the initrd built in a container boots on other hardware; '
        "a host-only initrd only has drivers for the build machine.  The last `hostonly=` assignment "
        'across /etc/dracut.conf and the conf.d drop-ins (dracut\'s order) must be "no"; unset '
        "means the distribution default, host-only on openSUSE and Fedora."
    ),
)
def dracut_hostonly(ctx: CheckContext) -> Iterator[Result]:
    last: tuple[str, int, str] | None = None
    files = dracut_conf_files(ctx)
    for path in files:
        for number, line in enumerate((ctx.read_text(path) or "").splitlines(), start=1):
            m = _HOSTONLY.match(line)
            if m:
                last = (path, number, m.group(1))
    if last is not None and last[2] == "no":
        yield passed(f'hostonly="no" set at {last[0]}:{last[1]}', last[0], files)
    elif last is not None:
        yield failed(
            f'{last[0]}:{last[1]} sets hostonly="{last[2]}": the initrd is built for the build host only',
            last[0],
            files,
            hint='set hostonly="no" in /etc/dracut.conf.d/50-elemental-initrd.conf (sorted last)',
        )
    else:
        yield failed(
            "no hostonly= in the dracut configuration: the distribution default applies "
            "(host-only on openSUSE and Fedora)",
            "/etc/dracut.conf.d",
            files or ["no dracut configuration files"],
            hint='add hostonly="no" to /etc/dracut.conf.d/50-elemental-initrd.conf',
        )


@rule(
    "COS-015",
    "luet records the cOS toolkit packages (legacy)",
    {Profile.COS: Severity.INFO},
    sources=(
        f"{COS_V0_8}/packages/meta/collection.yaml meta/cos-minimal",
        f"{LUET}/cmd/util/config.go system.database_path",
    ),
    description=(
        "Luet-era cOS images record their packages in /var/cache/luet/luet.db: it should list "
        "meta/cos-minimal or its members.  No database is fine: images built with "
        "`COPY --from=toolkit /install-root /` have none, so that passes."
    ),
)
def luet_markers(ctx: CheckContext) -> Iterator[Result]:
    dbs = [db for db in ctx.packages.dbs if db.path.endswith("luet.db")]
    if not dbs:
        yield passed("no luet database: nothing to check (toolkit copied without luet)", "/var/cache/luet")
        return
    toolkit = NAMES[Family.LUET][Role.TOOLKIT]
    for db in dbs:
        if db.error:
            yield not_run(f"{db.path}: {db.error}", db.path)
            continue
        names = sorted(p.name for p in db.packages if p.name in toolkit)
        if names:
            yield passed(f"{db.path} lists {len(names)} cOS toolkit package(s)", db.path, names)
        else:
            yield failed(
                f"{db.path} lists {len(db.packages)} package(s) but none of meta/cos-minimal's",
                db.path,
                [f"looked for: {', '.join(toolkit)}"],
                hint="`luet install -y meta/cos-minimal` (cOS ≤ v0.9) or copy the toolkit's install-root",
            )


LEGACY_FILES = {
    "/etc/cos/config": "labels, DEFAULT_IMAGE_SIZE and CLOUD_INIT_PATHS of the installer (system/cos-config)",
    "/etc/cos-upgrade-image": "the default upgrade image for cos-upgrade (D12)",
}


@rule(
    "COS-016",
    "legacy cOS configuration files",
    {Profile.COS: Severity.INFO},
    sources=(
        f"{COS_DOCS_2021}/docs/creating_bootable_images.md /etc/cos-upgrade-image (D12)",
        f"{COS_V0_8}/packages/cos-config/cos-config",
    ),
    description=(
        "Legacy cOS installers and upgrades read /etc/cos/config and /etc/cos-upgrade-image; on a "
        "legacy image each missing one is reported (info).  Elemental v2 does not read them: there "
        "they are only listed when present."
    ),
)
def legacy_files(ctx: CheckContext) -> Iterator[Result]:
    kind = variant(ctx)
    present = [p for p in LEGACY_FILES if ctx.is_file(p)]
    evidence = [f"{p}: {', '.join(sorted(parse_env_file(ctx.read_text(p) or '')))}" for p in present]
    if kind is Variant.ELEMENTAL2:
        yield passed(f"{kind} image: legacy files not needed ({len(present)} present)", None, evidence)
        return
    missing = [p for p in LEGACY_FILES if p not in present]
    for path in missing:
        yield failed(
            f"legacy cOS image without {path}: {LEGACY_FILES[path]}",
            path,
            hint="install system/cos-config (luet) or write the file",
        )
    if not missing:
        yield passed("legacy cOS configuration present", present[0], evidence)


RULES: tuple[Rule, ...] = (
    boot_paths_exist,
    elemental_selection,
    grub_config,
    bootargs,
    elemental_binary,
    initrd_modules,
    units_enabled,
    efi_binaries,
    grub_modules,
    grub_editenv,
    cloud_config,
    layout_paths,
    os_release_keys,
    dracut_hostonly,
    luet_markers,
    legacy_files,
)
