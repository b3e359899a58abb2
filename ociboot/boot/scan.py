"""What the checks need from the layers while they stream, declared up front (docs/architecture.md §4):

- CAPTURE: small files whose bytes are kept (os-release, configs), as glob -> byte cap;
- ANALYZE: files read whole as they pass and reduced to facts (kernels, initrds, package
  databases), so that no layer and no large file is ever held in memory.

Globs are layer-member paths (no leading '/'; '*' also matches '/').  Rule modules add their
own small files to CAPTURE through `wants()`.
"""

from __future__ import annotations

import glob
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Protocol

from ..budget import FILE_COST, AnalysisBudget
from ..compression import Readable
from .initrd import InitrdInfo, inspect_initrd
from .kernel import KernelInfo, analyze_kernel
from .pkgdb import PKGDB_PATHS, Package, PackageDbError, read_packages

#: Reading an initrd needs all its bytes; bound how much is inflated (issue: "say 1 GiB").
INITRD_CAP = 1 << 30
#: Package databases are read whole into memory for parsing (sqlite needs random access).
PKGDB_CAP = 512 << 20
#: Small text files wanted by the rules.
SMALL_FILE_CAP = 1 << 20

KERNEL_NAMES = ("vmlinuz*", "vmlinux*", "Image*", "zImage*", "uImage*", "image*", "kernel*")
INITRD_NAMES = ("initrd*", "initramfs*", "elemental.initrd*")

BASE_CAPTURE: tuple[str, ...] = (
    "etc/os-release",
    "usr/lib/os-release",
    "etc/kairos-release",
    "etc/hostname",
    "etc/resolv.conf",
    "etc/passwd",
    "etc/group",
    "etc/elemental/*",
    "etc/cos/*",
    "etc/cos-upgrade-image",
    "etc/dracut.conf.d/*",
    "usr/lib/dracut/dracut.conf.d/*",
    "system/oem/*",
    "oem/*",
    "usr/local/cloud-config/*",
    "usr/lib/bootc/install/*",
    "usr/lib/bootc/kargs.d/*",
    "etc/ostree/prepare-root.conf",
    "usr/lib/ostree/prepare-root.conf",
    "usr/lib/sysusers.d/*",
    "etc/selinux/config",
    "boot/grub/grub.cfg",
    "boot/grub2/grub.cfg",
)


class _Entry(Protocol):
    @property
    def path(self) -> str: ...

    @property
    def size(self) -> int: ...


@dataclass(frozen=True, slots=True)
class PackageDbResult:
    path: str
    packages: tuple[Package, ...] = ()
    error: str | None = None


def is_initrd_name(path: str) -> bool:
    base = posixpath.basename(path)
    return base == "initramfs.img" or any(fnmatchcase(base, p) for p in INITRD_NAMES)


# Every analyzer charges the image's budget (ociboot.budget) for the work it does, starting with
# FILE_COST: once the budget is used up, no analysis starts.


def analyze_boot_file(entry: _Entry, reader: Readable, budget: AnalysisBudget) -> KernelInfo | InitrdInfo:
    """A candidate kernel or initrd, judged by content (the name only decides which question)."""
    if is_initrd_name(entry.path):
        return analyze_initrd(entry, reader, budget)
    return analyze_kernel_file(entry, reader, budget)


def analyze_initrd(entry: _Entry, reader: Readable, budget: AnalysisBudget) -> InitrdInfo:
    budget.spend(FILE_COST)
    return inspect_initrd(reader, cap=INITRD_CAP, budget=budget)


def analyze_kernel_file(entry: _Entry, reader: Readable, budget: AnalysisBudget) -> KernelInfo:
    budget.spend(FILE_COST)
    return analyze_kernel(reader, entry.size, budget)


def analyze_pkgdb(entry: _Entry, reader: Readable, budget: AnalysisBudget) -> PackageDbResult:
    path = "/" + entry.path
    if entry.size > PKGDB_CAP:
        return PackageDbResult(path, error=f"{entry.size} bytes, over the {PKGDB_CAP} byte cap: not read")
    budget.spend(FILE_COST + entry.size)
    data = reader.read(entry.size)
    try:
        return PackageDbResult(path, tuple(read_packages(entry.path, data)))
    except PackageDbError as exc:
        return PackageDbResult(path, error=exc.reason)


def boot_file_globs() -> list[str]:
    """Where kernels and initrds are looked for (rules KRN-001, INI-001), as members."""
    names = (*KERNEL_NAMES, *INITRD_NAMES)
    globs = [f"boot/{n}" for n in names]
    globs += ["boot/EFI/Linux/*.efi", "efi/EFI/Linux/*.efi", "boot/efi/EFI/Linux/*.efi"]
    for base in ("usr/lib/modules/*/", "lib/modules/*/"):
        globs += [base + "vmlinuz", base + "Image", base + "image", base + "initramfs.img"]
    return globs


def capture_globs(extra: Iterable[str] = ()) -> dict[str, int | None]:
    out: dict[str, int | None] = {p: SMALL_FILE_CAP for p in BASE_CAPTURE}
    for p in extra:
        out[p.lstrip("/")] = SMALL_FILE_CAP
    return out


def analyze_globs(kernels: Iterable[str] = (), initrds: Iterable[str] = ()) -> dict[str, Any]:
    """Analyzers by member glob; custom --kernel/--initrd paths get the reading they ask for."""
    out: dict[str, Any] = {p: analyze_boot_file for p in boot_file_globs()}
    out.update({p: analyze_pkgdb for p in PKGDB_PATHS})
    # A custom path is matched as itself, whatever characters it holds.
    out.update({glob.escape(p.lstrip("/")): analyze_kernel_file for p in kernels})
    out.update({glob.escape(p.lstrip("/")): analyze_initrd for p in initrds})
    return out
