"""Which installed packages play the roles a bootable image needs, per distribution family.

Names come from docs/tools.md "Package databases" (elemental-toolkit example Dockerfiles, kairos-init
packagemaps, cOS luet packages).  Matching is by exact name: `libsystemd0` is not `systemd` and
`systemd-libs` is not `systemd` either: a library says nothing about the init.  Kernel
packages whose name carries the kernel release (Debian's `linux-image-<kver>`) are matched by an
explicit pattern, never by a loose prefix.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from enum import StrEnum

from ociboot.boot.pkgdb import Package


class Family(StrEnum):
    SUSE = "suse"
    FEDORA = "fedora"
    DEBIAN = "debian"
    ALPINE = "alpine"
    LUET = "luet"


class Role(StrEnum):
    KERNEL = "kernel"
    BOOTLOADER = "bootloader"
    INIT = "init"
    INITRAMFS = "initramfs"
    TOOLKIT = "toolkit"


# Patterns are fnmatch patterns, but only the Debian kernel ones use a wildcard.
NAMES: dict[Family, dict[Role, tuple[str, ...]]] = {
    Family.SUSE: {
        Role.KERNEL: ("kernel-default", "kernel-default-base", "kernel-rt", "kernel-64kb"),
        Role.BOOTLOADER: (
            "grub2",
            "grub2-x86_64-efi",
            "grub2-i386-pc",
            "grub2-arm64-efi",
            "grub2-riscv64-efi",
            "shim",
        ),
        Role.INIT: ("systemd",),
        Role.INITRAMFS: ("dracut",),
        Role.TOOLKIT: (),
    },
    Family.FEDORA: {
        Role.KERNEL: ("kernel", "kernel-core", "kernel-modules", "kernel-uek", "kernel-uek-core"),
        Role.BOOTLOADER: (
            "grub2-common",
            "grub2-tools",
            "grub2-efi-x64",
            "grub2-efi-x64-modules",
            "grub2-pc",
            "grub2-efi-aa64",
            "grub2-efi-aa64-modules",
            "shim-x64",
            "shim-aa64",
        ),
        Role.INIT: ("systemd",),
        Role.INITRAMFS: ("dracut", "dracut-live", "dracut-network", "dracut-squash"),
        Role.TOOLKIT: (),
    },
    Family.DEBIAN: {
        Role.KERNEL: (
            "linux-image-[0-9]*",
            "linux-modules-[0-9]*",
            "linux-generic",
            "linux-image-generic",
            "linux-image-generic-hwe-*",
            "linux-image-amd64",
            "linux-image-arm64",
            "linux-image-riscv64",
        ),
        Role.BOOTLOADER: (
            "grub-common",
            "grub2-common",
            "grub-efi-amd64",
            "grub-efi-amd64-bin",
            "grub-efi-amd64-signed",
            "grub-pc-bin",
            "grub-efi-arm64",
            "grub-efi-arm64-bin",
            "grub-efi-arm64-signed",
            "shim-signed",
            "systemd-boot",
        ),
        Role.INIT: ("systemd", "systemd-sysv"),
        Role.INITRAMFS: ("dracut", "dracut-core", "dracut-live", "dracut-network", "dracut-squash"),
        Role.TOOLKIT: (),
    },
    Family.ALPINE: {
        Role.KERNEL: ("linux-lts", "linux-virt", "linux-rpi"),
        Role.BOOTLOADER: ("grub", "grub-efi", "grub-bios"),
        Role.INIT: ("openrc",),
        Role.INITRAMFS: ("mkinitfs",),
        Role.TOOLKIT: (),
    },
    Family.LUET: {
        Role.KERNEL: ("system/kernel",),
        Role.BOOTLOADER: ("system/grub2-config",),
        Role.INIT: (),
        Role.INITRAMFS: ("system/dracut-initrd", "system/base-dracut-modules"),
        # meta/cos-minimal and what it pulls (docs/tools.md "cOS-toolkit packages", v0.8.14 collection.yaml).
        Role.TOOLKIT: (
            "meta/cos-minimal",
            "meta/cos-core",
            "meta/cos-modules",
            "meta/toolchain",
            "toolchain/elemental-cli",
            "toolchain/luet",
            "toolchain/yip",
            "utils/installer",
            "system/cos-setup",
            "system/cos-config",
            "system/immutable-rootfs",
            "system/cloud-config",
        ),
    },
}


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def roles_of(packages: Iterable[Package], family: Family) -> dict[Role, list[Package]]:
    """Every role of `family`, each with the packages that fill it (possibly none)."""
    table = NAMES[family]
    found: dict[Role, list[Package]] = {role: [] for role in Role}
    for package in packages:
        for role, patterns in table.items():
            if _matches(package.name, patterns):
                found[role].append(package)
    return found
