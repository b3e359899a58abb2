"""A real Debian kernel for the benchmark image, and an initramfs built around its modules.

`apt-get download` fetches the newest linux-image-6.1.0-N-amd64 that apt knows (or a given .deb
is used), and only /boot and the storage/filesystem modules are taken out of it, by streaming
`dpkg-deb --fsys-tarfile` through tarfile: nothing else of the 400 MB package touches the disk.
The initramfs is a dracut-like newc cpio (fixtures/make_boot_fixtures.py writes the format)
holding those real modules, zstd-compressed as Debian 12's dracut does by default.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import zstandard

from fixtures import make_boot_fixtures as boot

PACKAGE = re.compile(r"^linux-image-(6\.1\.0-(\d+)-amd64)$")
# What an initramfs needs to mount a root on a disk: block/NVMe/SCSI/virtio drivers, ext4.
INITRD_MODULES = (
    "kernel/fs/ext4/",
    "kernel/fs/jbd2/",
    "kernel/fs/mbcache.ko",
    "kernel/drivers/block/",
    "kernel/drivers/nvme/",
    "kernel/drivers/scsi/sd_mod.ko",
    "kernel/drivers/scsi/virtio_scsi.ko",
    "kernel/drivers/virtio/",
    "kernel/lib/crc16.ko",
    "kernel/crypto/crc32c_generic.ko",
)
DRACUT_MODULES = (
    b"systemd\nsystemd-initrd\nbase\nfs-lib\nrootfs-block\nkernel-modules\n"
    b"elemental-setup\nelemental-rootfs\nelemental-sysroot\n"
)


@dataclass(frozen=True, slots=True)
class Kernel:
    kver: str  # 6.1.0-57-amd64
    deb: Path
    root: Path  # holds boot/ and lib/modules/<kver>/

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.kver}"

    @property
    def modules(self) -> Path:
        return self.root / "lib" / "modules" / self.kver


def newest_package() -> str:
    out = subprocess.run(
        ["apt-cache", "search", "--names-only", r"^linux-image-6\.1\.0-[0-9]+-amd64$"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = [m for line in out.splitlines() if (m := PACKAGE.match(line.split(" ", 1)[0]))]
    if not names:
        raise SystemExit(
            "apt-cache knows no linux-image-6.1.0-N-amd64: run apt-get update, or pass --kernel-deb"
        )
    return max(names, key=lambda m: int(m.group(2))).group(0)


def _wanted(name: str, kver: str) -> bool:
    name = name.removeprefix("./")
    if name.startswith("boot/"):
        return True
    prefix = f"lib/modules/{kver}/"
    rest = name.removeprefix(prefix)
    return rest != name and (rest.startswith("modules.builtin") or rest.startswith(INITRD_MODULES))


def fetch(work: Path, deb: Path | None = None) -> Kernel:
    """The kernel under work/kernel/, downloaded and extracted once."""
    directory = work / "kernel"
    directory.mkdir(parents=True, exist_ok=True)
    if deb is None:
        debs = sorted(directory.glob("linux-image-*.deb"))
        if not debs:
            package = newest_package()
            print(f"downloading {package} with apt-get", file=sys.stderr)
            subprocess.run(["apt-get", "download", "-q", package], cwd=directory, check=True)
            debs = sorted(directory.glob("linux-image-*.deb"))
        deb = debs[-1]
    match = re.match(r"linux-image-(6\.\d+\.\d+-\d+-amd64)_", deb.name)
    if match is None:
        raise SystemExit(f"{deb}: not a linux-image-<kver> package file")
    kver = match.group(1)
    root = directory / kver
    kernel = Kernel(kver, deb, root)
    if kernel.vmlinuz.is_file():
        return kernel
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
            for member in tf:
                if _wanted(member.name, kver) and (member.isfile() or member.isdir()):
                    tf.extract(member, root, filter="data")
    if proc.returncode != 0 or not kernel.vmlinuz.is_file():
        raise SystemExit(f"{deb}: no boot/vmlinuz-{kver} inside")
    return kernel


def initrd(kernel: Kernel) -> bytes:
    """A zstd newc initramfs with the real modules, a modules.dep for them and a systemd init."""
    mods = f"usr/lib/modules/{kernel.kver}"
    members: list[tuple[str, int, bytes]] = [(".", boot.S_IFDIR | 0o755, b"")]
    dirs = {"."}

    def add_dirs(path: str) -> None:
        parts = path.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in dirs:
                dirs.add(d)
                members.append((d, boot.S_IFDIR | 0o755, b""))

    def add(path: str, mode: int, data: bytes) -> None:
        add_dirs(path)
        members.append((path, mode, data))

    kos = sorted(p.relative_to(kernel.modules).as_posix() for p in kernel.modules.rglob("*.ko"))
    for ko in kos:
        add(f"{mods}/{ko}", boot.S_IFREG | 0o644, (kernel.modules / ko).read_bytes())
    add(f"{mods}/modules.dep", boot.S_IFREG | 0o644, "".join(f"{ko}:\n" for ko in kos).encode())
    add("usr/lib/dracut/modules.txt", boot.S_IFREG | 0o644, DRACUT_MODULES)
    add("usr/lib/systemd/systemd", boot.S_IFREG | 0o755, b"\x7fELF\x02\x01\x01" + boot.filler(200_000, 8))
    add("usr/bin/elemental", boot.S_IFREG | 0o755, b"\x7fELF\x02\x01\x01" + boot.filler(300_000, 9))
    add("init", boot.S_IFLNK | 0o777, b"usr/lib/systemd/systemd")
    return zstandard.ZstdCompressor(level=3).compress(boot.cpio(members))
