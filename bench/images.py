"""Deterministic benchmark images, written as OCI layouts with streaming writes.

No layer is ever held in memory: tar records go through a hashing writer (diff_id) into the
compressor, through a second hashing writer (blob digest) into a temporary file that is renamed
to its digest once closed (OCI image-layout "blobs").  File contents come from seeded generators
read in chunks by tarfile, so a 1 GB layer costs the same memory as a 10 MB one.

`realistic()` is the image of issue 4: a base OS layer of many small files, a layer of a few
large files with a real Debian kernel and its initramfs, and a small cOS/Elemental top layer with
the boot links and whiteouts.  `one_layer()` is the memory-target pair (same kind, two sizes).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

import zstandard

from bench import debkernel
from ociboot.boot.rules.cos import ELEMENTAL2_UNITS  # the units COS-007 wants enabled

MTIME = 1700000000
MEDIA = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}
WORDS_SEED = 7
REVISION = 2  # bump when the content of an image changes, so cached builds are not reused


class HashingWriter(io.RawIOBase):
    """Counts and sha256-hashes what passes through to `raw`."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.count

    def write(self, b: Any) -> int:
        self.hash.update(b)
        self.count += len(b)
        self.raw.write(b)
        return len(b)


class Generated(io.RawIOBase):
    """`size` bytes made on demand: seeded random bytes, or slices of a text pool."""

    def __init__(self, size: int, seed: int, pool: bytes | None = None) -> None:
        self.left = size
        self.rng = random.Random(seed)
        self.pool = pool

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        if self.pool is None:
            return self.rng.randbytes(n)
        chunks, want = [], n
        while want:
            start = self.rng.randrange(len(self.pool) - 1)
            piece = self.pool[start : start + want]
            chunks.append(piece)
            want -= len(piece)
        return b"".join(chunks)


def text_pool(size: int = 8 << 20) -> bytes:
    """Word soup: compresses about 3x with gzip, like the text and code that fill real images."""
    rng = random.Random(WORDS_SEED)
    letters = "abcdefghijklmnopqrstuvwxyz_"
    words = ["".join(rng.choices(letters, k=rng.randint(2, 12))) for _ in range(4000)]
    words += ["\n", "\n    ", "(", ")", " = ", "."]
    weights = [1 / (rank + 1) for rank in range(len(words))]  # Zipf, as in natural text and code
    rng.shuffle(words)
    out = " ".join(rng.choices(words, weights, k=size // 5)).encode()
    return (out * (size // len(out) + 1))[:size]


@dataclass
class Layer:
    """A layer being written: tar helpers over the streaming compressor."""

    tar: tarfile.TarFile
    descriptor: dict[str, Any] = field(default_factory=dict)
    diff_id: str = ""
    uncompressed: int = 0
    members: int = 0

    def _info(self, path: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(path)
        info.type, info.mode, info.mtime = kind, mode, MTIME
        info.uname = info.gname = "root"
        self.members += 1
        return info

    def dir(self, path: str, mode: int = 0o755) -> Layer:
        self.tar.addfile(self._info(path, tarfile.DIRTYPE, mode))
        return self

    def file(
        self, path: str, data: bytes | str | BinaryIO | io.RawIOBase, size: int = -1, mode: int = 0o644
    ) -> Layer:
        info = self._info(path, tarfile.REGTYPE, mode)
        if isinstance(data, str):
            data = data.encode()
        stream: BinaryIO | io.RawIOBase
        if isinstance(data, bytes):
            info.size, stream = len(data), io.BytesIO(data)
        else:
            info.size, stream = size, data
        self.tar.addfile(info, cast(BinaryIO, stream))  # tarfile only calls read(n)
        return self

    def symlink(self, path: str, target: str) -> Layer:
        info = self._info(path, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.tar.addfile(info)
        return self

    def whiteout(self, path: str) -> Layer:
        # image-spec layer.md "Whiteouts": an empty file named .wh.<name> beside the removed path.
        parent, _, name = path.rpartition("/")
        return self.file(f"{parent}/.wh.{name}" if parent else f".wh.{name}", b"")

    def opaque(self, directory: str) -> Layer:
        # image-spec layer.md "Opaque Whiteout": hides every lower child of the directory.
        return self.file(f"{directory}/.wh..wh..opq", b"")


def _compressor(out: HashingWriter, compression: str, level: int) -> Any:
    if compression == "gzip":
        if level <= 3:
            try:  # isal writes level 0-3 several times faster; only generation speed changes
                from isal.igzip import IGzipFile

                return IGzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=level)
            except ImportError:
                pass
        return gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=level, filename="")
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=level).stream_writer(cast(BinaryIO, out), closefd=False)
    return out


class LayoutWriter:
    """An OCI image layout directory (image-spec image-layout.md), blobs written by streaming."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.layers: list[Layer] = []

    @contextmanager
    def layer(self, compression: str = "gzip", level: int = 6) -> Iterator[Layer]:
        tmp = self.blobs / f".layer-{len(self.layers)}.tmp"
        with tmp.open("wb") as fh:
            compressed = HashingWriter(fh)
            stream = _compressor(compressed, compression, level)
            plain = HashingWriter(stream)
            with tarfile.open(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT) as tf:
                layer = Layer(tf)
                yield layer
            if stream is not compressed:
                stream.close()
        digest = compressed.hash.hexdigest()
        tmp.rename(self.blobs / digest)
        layer.descriptor = {
            "mediaType": MEDIA[compression],
            "digest": f"sha256:{digest}",
            "size": compressed.count,
        }
        layer.diff_id = f"sha256:{plain.hash.hexdigest()}"
        layer.uncompressed = plain.count
        self.layers.append(layer)

    def put(self, obj: dict[str, Any], media_type: str) -> dict[str, Any]:
        data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
        digest = hashlib.sha256(data).hexdigest()
        (self.blobs / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    def finish(self, tag: str, config_extra: dict[str, Any] | None = None) -> str:
        config = self.put(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Cmd": ["/sbin/init"], **(config_extra or {})},
                "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in self.layers]},
            },
            "application/vnd.oci.image.config.v1+json",
        )
        manifest = self.put(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config,
                "layers": [layer.descriptor for layer in self.layers],
            },
            "application/vnd.oci.image.manifest.v1+json",
        )
        manifest["annotations"] = {"org.opencontainers.image.ref.name": tag}
        info = [
            {
                "digest": x.descriptor["digest"],
                "size": x.descriptor["size"],
                "uncompressed": x.uncompressed,
                "members": x.members,
                "mediaType": x.descriptor["mediaType"],
            }
            for x in self.layers
        ]
        (self.root / "bench-layers.json").write_text(json.dumps(info, indent=1))
        (self.root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        (self.root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [manifest]}))
        return str(manifest["digest"])


# --- the realistic image -----------------------------------------------------------------------

OS_RELEASE = """PRETTY_NAME="ociboot bench OS (Debian 12)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian
GRUB_ENTRY_NAME="ociboot bench"
IMAGE_REPO="bench"
IMAGE_TAG="v1"
"""
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
GRUB_MODULES = ("part_gpt", "fat", "ext2", "linux", "normal", "loopback", "squash4", "xzio", "gzio", "search")


@dataclass(frozen=True, slots=True)
class Shape:
    """How big the realistic image is; `scaled` shrinks it for a smoke run."""

    small_files: int = 55_000
    small_mean: int = 4_000  # bytes, exponential
    binary_files: int = 2
    binary_size: int = 24 << 20  # incompressible (firmware, compressed data)
    text_size: int = 64 << 20  # one large compressible file (a locale archive, a database)

    def scaled(self, factor: float) -> Shape:
        return Shape(
            max(200, int(self.small_files * factor)),
            self.small_mean,
            self.binary_files,
            max(1 << 16, int(self.binary_size * factor)),
            max(1 << 16, int(self.text_size * factor)),
        )

    @property
    def key(self) -> str:
        return f"{self.small_files}-{self.small_mean}-{self.binary_files}x{self.binary_size}-{self.text_size}"


def base_layer(layer: Layer, shape: Shape, pool: bytes, kver: str) -> None:
    for d in ("dev", "proc", "sys", "run", "tmp", "var", "var/lib", "var/lib/dpkg", "boot", "etc"):
        layer.dir(d)
    for d in (
        "etc/apt",
        "etc/apt/sources.list.d",
        "usr",
        "usr/bin",
        "usr/sbin",
        "usr/lib",
        "usr/lib/systemd",
    ):
        layer.dir(d)
    status = (FIXTURES / "pkgdb" / "dpkg-status").read_bytes().replace(b"6.1.0-28-amd64", kver.encode())
    elf = b"\x7fELF\x02\x01\x01\x00"
    (
        layer.symlink("var/run", "../run")
        .symlink("bin", "usr/bin")
        .symlink("sbin", "usr/sbin")
        .symlink("lib", "usr/lib")
        .file("etc/os-release", OS_RELEASE)
        .file("etc/hostname", "localhost\n")
        .file("var/lib/dpkg/status", status)
        .file("usr/lib/systemd/systemd", Generated(1_800_000, 21), 1_800_000, mode=0o755)
        .symlink("usr/sbin/init", "../lib/systemd/systemd")
        .file("usr/bin/dracut", "#!/bin/bash\n# dracut stand-in\n", mode=0o755)
        .file("usr/bin/grub-editenv", elf + random.Random(22).randbytes(300_000), mode=0o755)
        .symlink("usr/bin/grub2-editenv", "grub-editenv")
        .file("etc/apt/sources.list.d/build.list", "# removed by the top layer\n")
        .dir("usr/lib/grub")
        .dir("usr/lib/grub/x86_64-efi")
    )
    for i, mod in enumerate(GRUB_MODULES):
        layer.file(f"usr/lib/grub/x86_64-efi/{mod}.mod", elf + random.Random(500 + i).randbytes(6_000))
    rng = random.Random(42)
    layer.dir("usr/share").dir("usr/share/bench")
    per_dir = 200
    for i in range(shape.small_files):
        if i % per_dir == 0:
            layer.dir(f"usr/share/bench/d{i // per_dir:03d}")
        size = int(rng.expovariate(1 / shape.small_mean))
        # one file in five is binary (shared objects, compiled bytecode), the rest text
        data = Generated(size, rng.getrandbits(32), None if i % 5 == 0 else pool)
        layer.file(f"usr/share/bench/d{i // per_dir:03d}/file-{i:06d}.txt", data, size)


def large_layer(layer: Layer, shape: Shape, pool: bytes, kernel: debkernel.Kernel) -> None:
    kver = kernel.kver
    initrd = debkernel.initrd(kernel)
    layer.dir("boot")
    for name in (f"vmlinuz-{kver}", f"System.map-{kver}", f"config-{kver}"):
        layer.file(f"boot/{name}", (kernel.root / "boot" / name).read_bytes())
    layer.file(f"boot/initrd-{kver}", initrd)
    mods = f"usr/lib/modules/{kver}"
    layer.dir("usr/lib/modules").dir(mods)
    for builtin in sorted(kernel.modules.glob("modules.builtin*")):
        layer.file(f"{mods}/{builtin.name}", builtin.read_bytes())
    kos = sorted(p.relative_to(kernel.modules).as_posix() for p in kernel.modules.rglob("*.ko"))
    layer.file(f"{mods}/modules.dep", "".join(f"{ko}:\n" for ko in kos))
    layer.dir("usr/lib/firmware")
    for i in range(shape.binary_files):
        layer.file(f"usr/lib/firmware/blob-{i}.bin", Generated(shape.binary_size, 100 + i), shape.binary_size)
    layer.dir("usr/lib/locale")
    layer.file("usr/lib/locale/locale-archive", Generated(shape.text_size, 200, pool), shape.text_size)


def top_layer(layer: Layer, kver: str) -> None:
    elf = b"\x7fELF\x02\x01\x01\x00"
    (
        layer.dir("boot")
        .symlink("boot/vmlinuz", f"vmlinuz-{kver}")
        .symlink("boot/initrd", f"initrd-{kver}")
        .file("usr/bin/elemental", elf + random.Random(31).randbytes(40_000), mode=0o755)
        .dir("etc/elemental")
        .file("etc/elemental/config.yaml", "cloud-init-paths:\n  - /system/oem\n")
        .file("etc/elemental/grub.cfg", "set timeout=5\nsource (${volume})/etc/elemental/bootargs.cfg\n")
        .file("etc/elemental/bootargs.cfg", "set kernel=/boot/vmlinuz\nset initramfs=/boot/initrd\n")
        .dir("system")
        .dir("system/oem")
        .file("system/oem/01_defaults.yaml", "name: defaults\nstages:\n  initramfs: []\n", mode=0o600)
        .file(
            "usr/sbin/suc-upgrade",
            "#!/bin/bash\n# upgrade through the system-upgrade-controller\n",
            mode=0o755,
        )
        .file("etc/dracut.conf.d/50-elemental-initrd.conf", 'hostonly="no"\nhostonly_cmdline="no"\n')
        .dir("usr/lib/elemental")
        .dir("usr/lib/elemental/bootloader")
    )
    for name in ("grubx64.efi", "shimx64.efi", "mmx64.efi"):
        layer.file(f"usr/lib/elemental/bootloader/{name}", b"MZ" + random.Random(name).randbytes(60_000))
    layer.dir("usr/lib/systemd/system").dir("etc/systemd").dir("etc/systemd/system")
    layer.dir("etc/systemd/system/multi-user.target.wants")
    for unit in ELEMENTAL2_UNITS:
        layer.file(
            f"usr/lib/systemd/system/{unit}",
            f"[Unit]\nDescription={unit}\n[Install]\nWantedBy=multi-user.target\n",
        )
        layer.symlink(f"etc/systemd/system/multi-user.target.wants/{unit}", f"/usr/lib/systemd/system/{unit}")
    (
        layer.whiteout("etc/apt/sources.list.d/build.list")
        .whiteout("usr/share/bench/d000/file-000001.txt")
        .whiteout("usr/share/bench/d000/file-000002.txt")
        .opaque("usr/share/bench/d001")
        .file("usr/share/bench/d001/replaced.txt", "the lower files of d001 are hidden\n")
    )


def realistic(work: Path, shape: Shape, kernel: debkernel.Kernel, compression: str = "gzip") -> Path:
    """Write (once) the three-layer image; returns the layout directory (tag v1)."""
    root = work / "images" / f"realistic-r{REVISION}-{shape.key}-{kernel.kver}-{compression}"
    if (root / "index.json").is_file():
        return root
    pool = text_pool()
    out = LayoutWriter(root)
    with out.layer("gzip", 6) as layer:
        base_layer(layer, shape, pool, kernel.kver)
    with out.layer(compression, 3 if compression == "zstd" else 6) as layer:
        large_layer(layer, shape, pool, kernel)
    with out.layer("gzip", 6) as layer:
        top_layer(layer, kernel.kver)
    out.finish("v1")
    return root


def one_layer(work: Path, size: int) -> Path:
    """One gzip (level 1) layer of a few large random files totalling `size` bytes."""
    root = work / "images" / f"one-layer-r{REVISION}-{size}"
    if (root / "index.json").is_file():
        return root
    out = LayoutWriter(root)
    files = 4
    with out.layer("gzip", 1) as layer:
        layer.dir("data")
        for i in range(files):
            part = size // files
            layer.file(f"data/part-{i}.bin", Generated(part, 300 + i), part)
    out.finish("v1")
    return root


def blob_paths(layout: Path) -> list[Path]:
    """The layer blobs of the layout's one image, then its config."""
    index = json.loads((layout / "index.json").read_text())
    manifest_desc = index["manifests"][0]
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / manifest_desc["digest"].split(":")[1]).read_bytes())
    digests = [d["digest"] for d in manifest["layers"]] + [manifest["config"]["digest"]]
    return [blobs / d.split(":")[1] for d in digests]
