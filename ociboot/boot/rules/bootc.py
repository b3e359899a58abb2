"""Rules of the `bootc` profile (docs/tools.md "bootc and bootc-image-builder"): what `bootc container lint`,
`bootc install/switch` and bootc-image-builder (BIB) check or assume, answered statically.

BTC-002 runs the bootc lints (..emulate.bootc) under their own names and types, one Result
per lint, sorted by name as bootc runs them; a lint's type (fatal/warning) is its Result's
severity.  The other rules follow bootc's and BIB's code paths, cited in each description.
"""

from __future__ import annotations

import posixpath
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any

from ...report import Severity
from ..check import Profile, Result, failed, not_run, passed, rule, skipped
from ..context import CheckContext, analysis_failure
from ..emulate.bootc import (
    LINTS,
    MODULES,
    RUST_ARCH,
    UKI_DIR,
    CannotRun,
    boot_entries,
    kernel_dirs,
    listing,
    matching_files,
    read_text,
    run_lint,
    sample,
    ukis,
)
from ..initrd import InitrdInfo
from ..kernel import KernelFormat
from ..upstream import (
    BIB_LEGACY_ISO,
    BOOTC,
    BOOTC_IMAGES_DOC,
    BOOTC_LINTS,
    INITRAMFS_FORMAT,
    OSBUILD_IMAGES,
    OSBUILD_OSINFO,
    issue,
)

INSTALL_DIR = "/usr/lib/bootc/install"
BOOTUPD_EFI = "/usr/lib/bootupd/updates/EFI"
# osbuild/images pkg/bootc/resolver.go: the root filesystems BIB can make.
ROOT_FS_TYPES = ("ext4", "xfs", "btrfs")

CAPTURE: tuple[str, ...] = (
    "etc/os-release",
    "usr/lib/os-release",
    "etc/passwd",
    "etc/group",
    "usr/lib/sysusers.d/*",
    "usr/lib/bootc/kargs.d/*",
    "usr/lib/bootc/install/*",
    "etc/ostree/prepare-root.conf",
    "usr/lib/ostree/prepare-root.conf",
    "usr/share/doc/bootc/baseimage/base/etc/ostree/prepare-root.conf",
    "usr/share/doc/bootc/baseimage/base/usr/lib/ostree/prepare-root.conf",
)


@rule(
    "BTC-002",
    "bootc container lint",
    {Profile.BOOTC: Severity.ERROR},
    sources=(
        BOOTC_LINTS,
        f"{BOOTC}/docs/src/man/bootc-container-lint.8.md",
    ),
)
def bootc_lints(ctx: CheckContext) -> Iterable[Result]:
    """The lints of `bootc container lint` re-implemented on the image (an "alternative root",
    as `--rootfs DIR` gives), one result per lint under the lint's own name, with the lint's
    type as severity (fatal = error, warning = warning).  Deviations: a lint lists every problem
    it finds (bootc stops at the first), `var-tmpfiles` is not run (bootc runs it on a running
    root only, resolving owners through the host's name service), and sysusers.d lines need no
    GECOS field (systemd's grammar; bootc's parser wants one)."""
    for lint in LINTS:
        yield run_lint(ctx, lint)
    yield skipped(
        "var-tmpfiles: not run: bootc runs this lint on a running root only (RootType::Running); "
        "an image is checked as an alternative root",
        "/var",
    )


# --- BTC-001, BTC-003..009 --------------------------------------------------------------------


@rule(
    "BTC-001",
    "the image is labelled bootable",
    {Profile.BOOTC: Severity.ERROR},
    sources=(
        f"{BOOTC_IMAGES_DOC} containers.bootc label",
        f"{BOOTC}/crates/ostree-ext/src/container/store.rs create_prepared_import",
        f"{BOOTC}/crates/lib/src/deploy.rs check_bootc_label",
    ),
)
def bootc_label(ctx: CheckContext) -> Iterable[Result]:
    """`bootc switch/upgrade` refuse an image without the `containers.bootc` (or legacy
    `ostree.bootable`) config label ("Target image does not have ostree.bootable label"); a
    `containers.bootc` value other than "1" only draws a notice, so it is a warning here."""
    labels: Mapping[str, str] = ctx.labels
    value = labels.get("containers.bootc")
    if value == "1":
        yield passed("image config label containers.bootc=1", None, ["containers.bootc=1"])
    elif value is not None:
        yield failed(
            f'image config label containers.bootc is "{value}", not "1"',
            None,
            [f"containers.bootc={value}"],
            hint='LABEL containers.bootc=1 in the Containerfile (bootc expects exactly "1")',
            severity=Severity.WARNING,
        )
    elif "ostree.bootable" in labels:
        yield passed(
            "image config label ostree.bootable (legacy) is set",
            None,
            [
                f"ostree.bootable={labels['ostree.bootable']}",
                "containers.bootc is missing: bootc logs a notice",
            ],
        )
    else:
        yield failed(
            "image config has no containers.bootc (or ostree.bootable) label",
            None,
            [f"labels: {', '.join(sorted(labels)) or '(none)'}"],
            hint="LABEL containers.bootc=1 in the Containerfile (bootc base images set it)",
        )


@rule(
    "BTC-003",
    "exactly one kernel where bootc looks",
    {Profile.BOOTC: Severity.ERROR},
    sources=(
        f"{BOOTC}/crates/lib/src/kernel.rs find_kernel",
        BOOTC_IMAGES_DOC,
    ),
)
def bootc_kernel(ctx: CheckContext) -> Iterable[Result]:
    """bootc boots `/usr/lib/modules/<kver>/vmlinuz` of the one kernel directory, or a sealed UKI
    (the first `/boot/EFI/Linux/*.efi`).  Stricter than the `kernel` lint: zero kernels fail, and
    the file must be a kernel by content (docs/tools.md)."""
    found_ukis = ukis(ctx)
    dirs = kernel_dirs(ctx)
    if found_ukis:
        info = ctx.artifact(found_ukis[0]).kernel
        evidence = [f"{found_ukis[0]}: {info.description if info else 'not analysed'}"]
        if info is not None and info.format is KernelFormat.UKI and info.ok:
            yield passed(
                f"UKI {found_ukis[0]}" + (f" ({info.version})" if info.version else ""),
                found_ukis[0],
                evidence,
            )
        else:
            yield failed(
                f"{found_ukis[0]} is not a unified kernel image", found_ukis[0], evidence, hint=_UKI_HINT
            )
        return
    if len(dirs) != 1:
        found = sample(dirs) or [f"no {MODULES}/<kver>/vmlinuz and no {UKI_DIR}/*.efi"]
        boot = ctx.glob("/boot/vmlinuz*")
        if boot:
            found.append(f"kernels in /boot are masked at runtime: {', '.join(sample(boot))}")
        yield failed(
            f"{len(dirs)} kernels in {MODULES} (bootc needs exactly one)"
            if dirs
            else "no kernel where bootc looks",
            MODULES,
            found,
            hint="keep one kernel package: bootc boots /usr/lib/modules/<kver>/vmlinuz",
        )
        return
    path = f"{dirs[0]}/vmlinuz"
    artifact = ctx.artifact(path)
    info = artifact.kernel
    if info is not None and info.is_kernel:
        yield passed(
            f"kernel {path}" + (f" ({info.version})" if info.version else ""),
            path,
            [f"{artifact.chain}: {info.description}"],
        )
    else:
        what = info.description if info else "not a regular file, or not analysed"
        yield failed(
            f"{path} is not a kernel",
            path,
            [f"{artifact.chain}: {what}"],
            hint="install the kernel package (kernel-core) instead of a placeholder",
        )


_UKI_HINT = (
    "build the UKI with ukify or dracut --uefi (a PE image with .linux, .initrd and .cmdline sections)"
)


def _initramfs_subjects(ctx: CheckContext) -> tuple[list[tuple[str, str]], Result | None]:
    """(kver, initramfs path) per bootc kernel directory, or why there is nothing to check."""
    dirs = kernel_dirs(ctx)
    if not dirs:
        why = "a UKI carries its own initrd" if ukis(ctx) else f"no {MODULES}/<kver>/vmlinuz (BTC-003)"
        return [], skipped(f"no initramfs to check: {why}")
    return [(posixpath.basename(d), f"{d}/initramfs.img") for d in dirs], None


def _initramfs_info(ctx: CheckContext, path: str) -> InitrdInfo | Result:
    analysis = ctx.analysis(path)
    if isinstance(analysis, InitrdInfo):
        return analysis
    detail = analysis_failure(analysis) or "not analysed"
    return not_run(f"{path} could not be read: {detail}", path)


@rule(
    "BTC-004",
    "the initramfs beside the kernel is valid",
    {Profile.BOOTC: Severity.ERROR},
    sources=(
        f"{BOOTC_IMAGES_DOC} initramfs.img beside vmlinuz",
        INITRAMFS_FORMAT,
    ),
)
def bootc_initramfs(ctx: CheckContext) -> Iterable[Result]:
    """`/usr/lib/modules/<kver>/initramfs.img` exists and is a readable cpio initramfs (INI-002)
    built for that kernel (INI-003, a warning as in the bootc column).  ociboot is stricter than
    bootc's docs ("optionally"): ostree deployments of a split kernel boot with that file."""
    subjects, none = _initramfs_subjects(ctx)
    if none is not None:
        yield none
        return
    for kver, path in subjects:
        if not ctx.exists(path):
            yield failed(
                f"no initramfs beside the kernel: {path} is missing",
                path,
                [f"kernel: {posixpath.dirname(path)}/vmlinuz"],
                hint=f"dracut --no-hostonly --kver {kver} -f {path} in the Containerfile",
            )
            continue
        info = _initramfs_info(ctx, path)
        if isinstance(info, Result):
            yield info
        elif info.cap_hit:
            yield not_run(f"{path}: stopped at the decompression cap, content not fully checked", path)
        elif not info.ok:
            yield failed(
                f"{path} is not a valid initramfs",
                path,
                [info.description, *info.problems],
                hint=f"rebuild it: dracut --no-hostonly --kver {kver} -f {path}",
            )
        elif kver not in info.kernel_versions:
            built = ", ".join(info.kernel_versions) or "no kernel (no usr/lib/modules/<kver> inside)"
            yield failed(
                f"{path} was built for {built}, not {kver}",
                path,
                [f"modules inside: {built}"],
                hint=f"rebuild it after installing the kernel: dracut --no-hostonly --kver {kver} -f {path}",
                severity=Severity.WARNING,
            )
        else:
            yield passed(
                f"initramfs {path} for {kver}",
                path,
                [f"{info.description}", f"{info.member_count} members"],
            )


@rule(
    "BTC-005",
    "the initramfs has the ostree/bootc dracut module",
    {Profile.BOOTC: Severity.WARNING},
    sources=(f"{BOOTC}/baseimage/dracut/usr/lib/dracut.conf.d/10-bootc-base.conf",),
)
def bootc_dracut_modules(ctx: CheckContext) -> Iterable[Result]:
    """The initramfs must mount the deployment: dracut's `ostree` module (ostree backend) or
    bootc's own (`add_dracutmodules+=" ostree bootc "` in bootc's base dracut config); read from
    the initramfs's `usr/lib/dracut/modules.txt`."""
    subjects, none = _initramfs_subjects(ctx)
    if none is not None:
        yield none
        return
    for _, path in subjects:
        if not ctx.exists(path):
            yield skipped(f"{path} is missing (BTC-004)", path)
            continue
        info = _initramfs_info(ctx, path)
        if isinstance(info, Result):
            yield info
            continue
        modules = info.dracut_modules
        evidence = [
            f"modules.txt: {' '.join(modules)}" if modules else "no usr/lib/dracut/modules.txt inside"
        ]
        wanted = [m for m in ("ostree", "bootc") if m in modules]
        if wanted:
            yield passed(f"{path} has dracut module(s) {', '.join(wanted)}", path, evidence)
        else:
            yield failed(
                f"{path} has neither the ostree nor the bootc dracut module",
                path,
                evidence,
                hint='add_dracutmodules+=" ostree bootc " to a dracut.conf.d file, rebuild the initramfs',
            )


def merge_install_config(files: Iterable[tuple[str, str]], arch: str | None) -> tuple[str | None, str | None]:
    """(root filesystem type, the file that set it) from bootc install drop-ins in name order:
    later files override earlier ones field by field; a file whose
    `[install] match-architectures` excludes `arch` is ignored (bootc-install-config(5)).
    The legacy `[install] root-fs-type` counts when `filesystem.root.type` is absent.
    ValueError names a file that is not valid TOML."""
    fs_type: str | None = None
    source: str | None = None
    for name, text in files:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{name}: {exc}") from None
        install = data.get("install")
        if not isinstance(install, dict):
            continue
        arches = install.get("match-architectures", install.get("match_architectures"))
        if isinstance(arches, list) and arch not in arches:
            continue
        value = _dig(install, "filesystem", "root", "type")
        if value is None:
            value = install.get("root-fs-type")
        if value is not None:
            fs_type, source = str(value), name
    return fs_type, source


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


@rule(
    "BTC-006",
    "a supported default root filesystem type",
    {Profile.BOOTC: Severity.WARNING},
    sources=(
        f"{OSBUILD_IMAGES}/pkg/bootc/resolver.go InstallConfiguration",
        BIB_LEGACY_ISO,
        f"{BOOTC}/docs/src/man/bootc-install-config.5.md",
        issue("osbuild/bootc-image-builder", 419),
    ),
)
def bootc_root_fs(ctx: CheckContext) -> Iterable[Result]:
    """bootc-image-builder takes the root filesystem from `bootc install print-configuration`
    (the `/usr/lib/bootc/install/*.toml` drop-ins merged in name order) and fails without one
    ("no default root filesystem type specified in container, please use --rootfs") or with one
    it cannot make.  A warning: `--rootfs` overrides it.  A drop-in that is not valid TOML makes
    every `bootc install` fail, so that one is an error."""
    names = matching_files(ctx, INSTALL_DIR, ".toml")
    try:
        texts = [(name, read_text(ctx, f"{INSTALL_DIR}/{name}")) for name in names]
    except CannotRun as exc:
        yield not_run(str(exc), INSTALL_DIR)
        return
    try:
        fs_type, source = merge_install_config(texts, RUST_ARCH.get(ctx.config.architecture))
    except ValueError as exc:
        yield failed(
            f"bootc install configuration is not valid TOML: {exc}",
            INSTALL_DIR,
            [f"drop-ins: {', '.join(names)}"],
            hint="fix the TOML syntax of the drop-in",
            severity=Severity.ERROR,
        )
        return
    evidence = [f"drop-ins: {', '.join(names) or '(none)'}"]
    if fs_type is None:
        yield failed(
            "no default root filesystem type specified in container, please use --rootfs",
            INSTALL_DIR,
            evidence,
            hint=f'add {INSTALL_DIR}/00-rootfs.toml with [install.filesystem.root] type = "xfs"',
        )
    elif fs_type not in ROOT_FS_TYPES:
        yield failed(
            f"unsupported root filesystem type: {fs_type} (from {source})",
            f"{INSTALL_DIR}/{source}",
            [*evidence, f"supported: {', '.join(ROOT_FS_TYPES)}"],
            hint=f"set [install.filesystem.root] type to one of {', '.join(ROOT_FS_TYPES)}",
        )
    else:
        yield passed(f"root filesystem type {fs_type} (from {source})", f"{INSTALL_DIR}/{source}", evidence)


@rule(
    "BTC-007",
    "os-release names the system",
    {Profile.BOOTC: Severity.ERROR},
    sources=(f"{OSBUILD_OSINFO} validateOSRelease",),
)
def bootc_os_release(ctx: CheckContext) -> Iterable[Result]:
    """bootc-image-builder requires `ID`, `VERSION_ID` and `NAME` in os-release ("missing %s in
    os-release") and stops without them; one result per missing key."""
    release = ctx.os_release
    path = "/etc/os-release" if ctx.exists("/etc/os-release") else "/usr/lib/os-release"
    if not release:
        yield failed(
            "no os-release: neither /etc/os-release nor /usr/lib/os-release is readable",
            path,
            hint="ship the distribution's os-release file (/usr/lib/os-release, linked from /etc/os-release)",
        )
        return
    missing = [key for key in ("ID", "VERSION_ID", "NAME") if not release.get(key)]
    for key in missing:
        yield failed(
            f"missing {key} in os-release",
            path,
            [f"{k}={v}" for k, v in release.items() if k in ("ID", "VERSION_ID", "NAME")],
            hint=f"add {key}= to {path}",
        )
    if not missing:
        yield passed(
            f"os-release: {release['NAME']} {release['VERSION_ID']} ({release['ID']})",
            path,
            [f"ID={release['ID']}", f"VERSION_ID={release['VERSION_ID']}", f"NAME={release['NAME']}"],
        )


@rule(
    "BTC-008",
    "bootupd carries a UEFI vendor directory",
    {Profile.BOOTC: Severity.WARNING},
    sources=(f"{OSBUILD_OSINFO} uefiVendor",),
)
def bootc_uefi_vendor(ctx: CheckContext) -> Iterable[Result]:
    """bootc-image-builder names the UEFI vendor after the first directory other than `BOOT` in
    `/usr/lib/bootupd/updates/EFI`; without one a disk image gets no vendor boot entry."""
    vendors = [n for n in ctx.listdir(BOOTUPD_EFI) if n != "BOOT" and ctx.is_dir(f"{BOOTUPD_EFI}/{n}")]
    if vendors:
        path = f"{BOOTUPD_EFI}/{vendors[0]}"
        yield passed(f"UEFI vendor {vendors[0]}", path, sample(ctx.listdir(path)))
    else:
        found = ctx.listdir(BOOTUPD_EFI)
        yield failed(
            f"no UEFI vendor directory in {BOOTUPD_EFI}",
            BOOTUPD_EFI,
            [f"{BOOTUPD_EFI}: {', '.join(found)}" if found else f"{BOOTUPD_EFI} is missing or empty"],
            hint="install bootupd, shim and grub2-efi, then run bootupctl backend generate-update-metadata",
        )


@rule(
    "BTC-009",
    "/boot is empty",
    {Profile.BOOTC: Severity.WARNING},
    sources=(f"{BOOTC_LINTS} check_boot (nonempty-boot)",),
)
def bootc_empty_boot(ctx: CheckContext) -> Iterable[Result]:
    """bootc masks the image's `/boot` at runtime: anything there but `EFI` (the UKI location) is
    dead weight or a kernel in the wrong place (the `nonempty-boot` lint)."""
    entries = boot_entries(ctx)
    if entries is None:
        yield failed("Missing /boot directory", "/boot", hint="create an empty /boot directory")
    elif entries:
        yield failed(
            listing("Found non-empty /boot", entries),
            "/boot",
            sample(entries),
            hint="keep /boot empty: the kernel and initramfs belong in /usr/lib/modules/<kver>/",
        )
    else:
        yield passed("/boot is empty" + (" (except EFI)" if ctx.exists("/boot/EFI") else ""), "/boot")


RULES = (
    bootc_label,
    bootc_lints,
    bootc_kernel,
    bootc_initramfs,
    bootc_dracut_modules,
    bootc_root_fs,
    bootc_os_release,
    bootc_uefi_vendor,
    bootc_empty_boot,
)
