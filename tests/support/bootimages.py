"""Bootable test images, one template per profile, for the rule tests.

A BootImage is a dict of paths; a test starts from a bootable template, breaks exactly one
thing, and checks the verdict through the real pipeline (OCI layout on disk -> resolve ->
stream -> flatten -> rules):

    img = bootable("cos")
    img.remove("/etc/elemental/bootargs.cfg")
    report = img.check(tmp_path)
    assert failed(report, "COS-004")

Removed paths are written as whiteouts in an upper layer (so the overlay is exercised too).
Kernels and initrds are real-format files from fixtures/make_boot_fixtures.py.
"""

from __future__ import annotations

import lzma
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fixtures import make_boot_fixtures as boot
from ociboot import pipeline
from ociboot.boot.context import Policy
from ociboot.ref import ImageRef, Transport
from ociboot.report import Finding, Outcome, Report
from ociboot.spec import Platform
from tests.support.imagebuilder import ImageBuilder, LayerBuilder, compress, write_oci_layout

KVER = boot.KVER  # 6.1.0-28-amd64
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
S_IFDIR, S_IFREG, S_IFLNK = boot.S_IFDIR, boot.S_IFREG, boot.S_IFLNK
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\0" * 56


def kernel(kver: str = KVER) -> bytes:
    """An x86 bzImage whose header says `kver`."""
    return boot.bzimage(f"{kver} (builder@example) #1 SMP PREEMPT_DYNAMIC")


def initrd(
    kver: str | None = KVER,
    modules: list[str] | None = None,
    files: dict[str, bytes] | None = None,
    compression: str = "xz",
) -> bytes:
    """A dracut-like initramfs: usr/lib/modules/<kver>, modules.txt, init, extra `files`."""
    members: list[tuple[str, int, bytes]] = [
        (".", S_IFDIR | 0o755, b""),
        ("usr", S_IFDIR | 0o755, b""),
        ("usr/lib", S_IFDIR | 0o755, b""),
        ("usr/lib/systemd", S_IFDIR | 0o755, b""),
        ("usr/lib/systemd/systemd", S_IFREG | 0o755, ELF),
        ("init", S_IFLNK | 0o777, b"usr/lib/systemd/systemd"),
        ("usr/lib/dracut", S_IFDIR | 0o755, b""),
        (
            "usr/lib/dracut/modules.txt",
            S_IFREG | 0o644,
            "".join(f"{m}\n" for m in (modules or ["systemd", "base", "rootfs-block"])).encode(),
        ),
    ]
    if kver:
        mods = f"usr/lib/modules/{kver}"
        members += [
            ("usr/lib/modules", S_IFDIR | 0o755, b""),
            (mods, S_IFDIR | 0o755, b""),
            (f"{mods}/modules.dep", S_IFREG | 0o644, b""),
        ]
    dirs = {m[0] for m in members}
    for name, data in sorted((files or {}).items()):
        parts = name.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in dirs:
                dirs.add(d)
                members.append((d, S_IFDIR | 0o755, b""))
        members.append((name, S_IFREG | 0o755, data))
    raw = boot.cpio(members)
    if compression == "xz":
        return lzma.compress(raw, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
    return compress(raw, compression)


@dataclass
class BootImage:
    """Paths of a bootable image.  Values: ("file", bytes, mode) | ("dir", mode) | ("link", target)."""

    arch: str = "amd64"
    labels: dict[str, str] = field(default_factory=dict)
    paths: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)

    def file(self, path: str, data: bytes | str = b"", mode: int = 0o644) -> BootImage:
        self.paths[path] = ("file", data.encode() if isinstance(data, str) else data, mode)
        return self

    def exe(self, path: str, data: bytes = ELF) -> BootImage:
        return self.file(path, data, 0o755)

    def dir(self, path: str, mode: int = 0o755) -> BootImage:
        self.paths[path] = ("dir", mode)
        return self

    def link(self, path: str, target: str) -> BootImage:
        self.paths[path] = ("link", target)
        return self

    def remove(self, path: str) -> BootImage:
        """Delete `path` (and everything under it) through a whiteout in an upper layer."""
        self.removed.append(path)
        return self

    def drop(self, path: str) -> BootImage:
        """Leave `path` (and everything under it) out of the image entirely."""
        for p in [p for p in self.paths if p == path or p.startswith(path.rstrip("/") + "/")]:
            del self.paths[p]
        return self

    def base_layer(self) -> LayerBuilder:
        base = LayerBuilder()
        for path in sorted(self.paths):
            kind, *rest = self.paths[path]
            rel = path.lstrip("/")
            if kind == "file":
                base.file(rel, rest[0], mode=rest[1])
            elif kind == "dir":
                base.dir(rel, mode=rest[0])
            else:
                base.symlink(rel, rest[0])
        return base

    def upper_layers(self) -> list[tuple[LayerBuilder, str]]:
        """(layer, compression) above the base: the whiteouts of removed paths."""
        if not self.removed:
            return []
        top = LayerBuilder()
        for path in self.removed:
            top.whiteout(path.lstrip("/"))
        return [(top, "none")]

    def build(self) -> Any:
        builder = ImageBuilder(arch=self.arch, labels=self.labels).add_layer(self.base_layer(), "gzip")
        for layer, compression in self.upper_layers():
            builder.add_layer(layer, compression)
        return builder.build()

    def check(self, tmp_path: Path, **policy: Any) -> Report:
        """Run `ociboot check` on this image (keyword arguments set Policy fields)."""
        layout = tmp_path / f"layout-{len(list(tmp_path.glob('layout-*')))}"
        write_oci_layout(layout, {"latest": self.build()})
        options = pipeline.Options(platform=Platform("linux", self.arch))
        with pipeline.opened(
            str(ImageRef(Transport.OCI, path=str(layout), name="latest")), options
        ) as source:
            image = pipeline.open_image(source, options)
            return pipeline.check_image(image, Policy(**policy), options)


def findings(report: Report, rule: str) -> list[Finding]:
    return [f for f in report.findings if f.rule == rule]


def failed(report: Report, rule: str) -> list[Finding]:
    """The FAIL findings of `rule` (a rule that could not run counts here too: never a pass)."""
    return [f for f in findings(report, rule) if f.outcome in (Outcome.FAIL, Outcome.ERROR)]


def passed(report: Report, rule: str) -> bool:
    """The rule ran and nothing of it failed."""
    found = findings(report, rule)
    return (
        bool(found)
        and all(f.outcome in (Outcome.PASS, Outcome.SKIP) for f in found)
        and any(f.outcome is Outcome.PASS for f in found)
    )


# --- templates -----------------------------------------------------------------------------------


DEBIAN_STATUS = (FIXTURES / "pkgdb" / "dpkg-status").read_bytes()
OS_RELEASE = 'NAME="Debian GNU/Linux"\nID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12"\n'


def generic(kver: str = KVER) -> BootImage:
    """A Debian-like systemd image with a kernel, an initrd and the boot links."""
    img = BootImage()
    for d in (
        "/dev",
        "/proc",
        "/sys",
        "/run",
        "/tmp",
        "/var",
        "/var/lock",
        "/var/log",
        "/boot",
        "/etc",
        "/usr/bin",
        "/usr/sbin",
        "/usr/lib",
        "/root",
        "/home",
    ):
        img.dir(d)
    img.link("/var/run", "../run")
    img.link("/bin", "usr/bin").link("/sbin", "usr/sbin").link("/lib", "usr/lib")
    img.file("/etc/os-release", OS_RELEASE)
    img.file("/etc/hostname", "localhost\n")
    img.file("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n")
    img.file("/etc/group", "root:x:0:\n")
    img.file("/var/lib/dpkg/status", DEBIAN_STATUS)
    img.exe("/usr/lib/systemd/systemd")
    img.link("/usr/sbin/init", "../lib/systemd/systemd")
    img.exe("/usr/bin/dracut", b"#!/bin/bash\n")
    img.exe("/usr/bin/grub-editenv")
    img.link("/usr/bin/grub2-editenv", "grub-editenv")
    img.exe("/usr/bin/sudo").exe("/usr/bin/less")
    img.file(f"/boot/vmlinuz-{kver}", kernel(kver))
    img.file(f"/boot/initrd-{kver}", initrd(kver))
    img.link("/boot/vmlinuz", f"vmlinuz-{kver}")
    img.link("/boot/initrd", f"initrd-{kver}")
    img.dir(f"/usr/lib/modules/{kver}")
    img.file(f"/usr/lib/modules/{kver}/modules.dep", "")
    img.file("/usr/lib/systemd/system/getty.target", "[Unit]\nDescription=Login Prompts\n")
    return img


ELEMENTAL_MODULES = [
    "systemd",
    "base",
    "rootfs-block",
    "dmsquash-live",
    "elemental-setup",
    "elemental-rootfs",
    "elemental-sysroot",
]
ELEMENTAL_UNITS = [
    "elemental-setup-boot.service",
    "elemental-setup-network.service",
    "elemental-setup-fs.service",
    "elemental-setup-initramfs.service",
    "elemental-setup-rootfs.service",
    "elemental-setup-reconcile.service",
    "elemental-setup-reconcile.timer",
    "elemental-rootfs.service",
]


def cos(kver: str = KVER) -> BootImage:
    """An Elemental v2 derivative (elemental-toolkit examples, `elemental init` output)."""
    img = generic(kver)
    img.file(
        "/etc/os-release",
        OS_RELEASE + 'GRUB_ENTRY_NAME="Example OS"\nIMAGE_REPO="registry.example/os"\nIMAGE_TAG="v1.0.0"\n',
    )
    img.exe("/usr/bin/elemental")
    img.file(f"/boot/elemental.initrd-{kver}", initrd(kver, ELEMENTAL_MODULES, {"usr/bin/elemental": ELF}))
    img.drop(f"/boot/initrd-{kver}")
    img.link("/boot/initrd", f"elemental.initrd-{kver}")
    img.file("/etc/elemental/config.yaml", "cloud-init-paths:\n  - /system/oem\n")
    img.file("/etc/elemental/grub.cfg", "set timeout=5\nsource (${volume})/etc/elemental/bootargs.cfg\n")
    img.file("/etc/elemental/bootargs.cfg", "set kernel=/boot/vmlinuz\nset initramfs=/boot/initrd\n")
    img.file("/etc/dracut.conf.d/50-elemental-initrd.conf", 'hostonly="no"\nhostonly_cmdline="no"\n')
    for unit in ELEMENTAL_UNITS:
        img.file(f"/usr/lib/systemd/system/{unit}", "[Unit]\n")
        wants = "timers.target.wants" if unit.endswith(".timer") else "multi-user.target.wants"
        img.link(f"/etc/systemd/system/{wants}/{unit}", f"/usr/lib/systemd/system/{unit}")
    img.file("/usr/share/efi/x86_64/shim.efi", b"MZ" + b"\0" * 62)
    img.file("/usr/share/efi/x86_64/MokManager.efi", b"MZ" + b"\0" * 62)
    img.file("/usr/share/grub2/x86_64-efi/grub.efi", b"MZ" + b"\0" * 62)
    for mod in ("loopback", "squash4", "xzio"):
        img.file(f"/usr/share/grub2/x86_64-efi/{mod}.mod", ELF)
    img.file("/system/oem/01_defaults.yaml", "name: defaults\nstages:\n  initramfs: []\n", 0o600)
    img.exe("/usr/sbin/suc-upgrade", b"#!/bin/sh\n")
    # The toolkit's rootfs layout (cOS system/cloud-config 00_rootfs.yaml); every path exists (COS-012).
    img.file("/system/oem/00_rootfs.yaml", COS_LAYOUT, 0o600)
    for d in ("/srv", "/opt", "/etc/ssh", "/etc/systemd", "/var/lib/rancher"):
        img.dir(d)
    return img


COS_LAYOUT = """name: "Rootfs Layout Settings"
stages:
  rootfs:
    - if: '[ ! -f "/run/cos/recovery_mode" ]'
      name: "Layout configuration"
      environment_file: /run/cos/cos-layout.env
      environment:
        VOLUMES: "LABEL=COS_OEM:/oem LABEL=COS_PERSISTENT:/usr/local"
        OVERLAY: "tmpfs:25%"
        RW_PATHS: "/var /etc /srv"
        PERSISTENT_STATE_PATHS: >-
          /etc/systemd
          /etc/ssh
          /home
          /opt
          /root
          /var/log
          /var/lib/rancher
        PERSISTENT_STATE_BIND: "true"
"""


KAIROS_RELEASE = {
    "KAIROS_ID": "kairos",
    "KAIROS_ID_LIKE": "kairos-core-debian",
    "KAIROS_NAME": "kairos-core-debian",
    "KAIROS_VERSION": "v3.2.0",
    "KAIROS_ARCH": "amd64",
    "KAIROS_TARGETARCH": "amd64",
    "KAIROS_FLAVOR": "debian",
    "KAIROS_FLAVOR_RELEASE": "12",
    "KAIROS_FAMILY": "debian",
    "KAIROS_MODEL": "generic",
    "KAIROS_VARIANT": "core",
    "KAIROS_BUG_REPORT_URL": "https://github.com/kairos-io/kairos/issues",
    "KAIROS_HOME_URL": "https://github.com/kairos-io/kairos",
    "KAIROS_RELEASE": "v3.2.0",
}
KAIROS_BINARIES = ["immucore", "kairos-agent", "sudo", "less", "kcrypt-discovery-challenger", "mount.nfs"]


def kairos_release(values: dict[str, str]) -> str:
    return "".join(f'{k}="{v}"\n' for k, v in values.items())


def kairos(kver: str = KVER) -> BootImage:
    """A Kairos core image as kairos-init builds it (what `kairos-init validate` accepts)."""
    img = generic(kver)
    img.file("/etc/kairos-release", kairos_release(KAIROS_RELEASE))
    for name in KAIROS_BINARIES:
        img.exe(f"/usr/bin/{name}")
    img.file(
        f"/boot/initrd-{kver}",
        initrd(
            kver,
            ["systemd", "base", "immucore", "kairos-agent"],
            {"usr/bin/immucore": ELF, "usr/bin/kairos-agent": ELF},
        ),
    )
    img.link("/boot/vmlinuz", f"/boot/vmlinuz-{kver}")  # kairos-init writes an absolute link
    img.file("/etc/cos/grub.cfg", "set timeout=5\n")
    img.file("/etc/cos/bootargs.cfg", "set kernel=/boot/vmlinuz\nset initramfs=/boot/initrd\n")
    img.file("/usr/lib/systemd/system/systemd-udevd.service", "[Unit]\n")
    img.file("/usr/lib/systemd/system/systemd-logind.service", "[Unit]\n")
    # Debian's signed EFI binaries, where kairos-sdk looks for them (KAI-011).
    img.file("/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", b"MZ" + b"\0" * 62)
    img.file("/usr/lib/shim/shimx64.efi.signed", b"MZ" + b"\0" * 62)
    return img


def bootc(kver: str = "6.8.5-301.fc40.x86_64") -> BootImage:
    """A bootc image (fedora-bootc layout): kernel and initramfs in /usr/lib/modules, /boot empty."""
    img = generic(kver)
    for path in (
        f"/boot/vmlinuz-{kver}",
        f"/boot/initrd-{kver}",
        "/boot/vmlinuz",
        "/boot/initrd",
        "/var/lib/dpkg/status",
        "/usr/bin/grub-editenv",
        "/usr/bin/grub2-editenv",
    ):
        img.drop(path)
    img.labels["containers.bootc"] = "1"
    img.file("/etc/os-release", 'NAME="Fedora Linux"\nID=fedora\nVERSION_ID=40\n')
    img.file(f"/usr/lib/modules/{kver}/vmlinuz", kernel(kver))
    img.file(
        f"/usr/lib/modules/{kver}/initramfs.img",
        initrd(kver, ["systemd", "base", "ostree", "bootc"], compression="zstd"),
    )
    img.dir("/sysroot")
    img.link("/ostree", "sysroot/ostree")
    img.file("/usr/lib/ostree/prepare-root.conf", "[composefs]\nenabled = yes\n")
    img.file("/usr/lib/bootc/install/00-root.toml", '[install.filesystem.root]\ntype = "xfs"\n')
    img.dir("/usr/lib/bootupd/updates/EFI/fedora")
    img.file("/usr/lib/bootupd/updates/EFI/fedora/shimx64.efi", b"MZ" + b"\0" * 62)
    import gzip

    img.file(
        "/usr/lib/sysimage/rpm/rpmdb.sqlite",
        gzip.decompress((FIXTURES / "pkgdb" / "rpmdb.sqlite.gz").read_bytes()),
    )
    img.file("/usr/lib/sysusers.d/basic.conf", 'u root 0 "Super User" /root\ng root 0\n')
    return img


TEMPLATES = {"generic": generic, "cos": cos, "kairos": kairos, "bootc": bootc}


def bootable(profile: str) -> BootImage:
    return TEMPLATES[profile]()
