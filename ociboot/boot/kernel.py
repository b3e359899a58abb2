"""Is this file a bootable Linux kernel?  Identification by content: bytes in, facts out.

A kernel is a kernel because its header says so (docs/tools.md "Kernels and initramfs"), never because of
its name: x86 bzImage (`HdrS` at 0x202), arm64 Image (`ARM\\x64` at 0x38), RISC-V Image
(`RSC\\x05` at 0x38), ARM zImage (0x016f2818 at 0x24), EFI zboot (`zimg` at 4) and UKIs
(PE/COFF with a `.linux` section); arm64 Images are also shipped gzip/zstd-wrapped (`Image.gz`).
ELF `vmlinux`, `System.map`, `config-*` and `.hmac` files are not boot images (elemental-cli
PR #168 picked a vmlinux).

Callers capture `KERNEL_HEAD_BYTES` of the file (the x86 version string lives about 17.6 KB in)
and pass the file's real size as `total_size`, which lets us tell "the file is truncated" from
"the caller gave us only a head".
"""

from __future__ import annotations

import dataclasses
import io
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from ..budget import AnalysisBudget, Metered, no_charge
from ..compression import DECODE_COST, Compression, PeekableReader, Readable, open_decompressed, sniff
from ..errors import TruncatedLayer, UnsupportedCompression
from . import _sniff

KERNEL_HEAD_BYTES = 64 * 1024

# Bound for the output inflated while looking for a wrapped Image's header and banner: more
# than any real head we are given can inflate to, and small enough to be a non-issue.
_INFLATE_LIMIT = 8 << 20
# Budget units (ociboot.budget) per inflated byte of a head, on top of inflating it.
_PROBE_COST = 3

_BANNER = re.compile(rb"Linux version (\d[\x21-\x7e]{0,127})")
_RELEASE = re.compile(r"\d[\w.+~-]*")


class KernelFormat(StrEnum):
    BZIMAGE = "bzImage"
    ARM64_IMAGE = "arm64-image"
    RISCV_IMAGE = "riscv-image"
    ARM_ZIMAGE = "arm-zimage"
    EFI_ZBOOT = "efi-zboot"
    UKI = "uki"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class KernelInfo:
    """What the head of a file says about it as a kernel.

    `version` is the `uname -r` release (the first word of the x86 header string, of a
    `Linux version` banner, or of a UKI's `.uname`), None when the bytes do not carry it.
    `arch` uses OCI/Go names (amd64, 386, arm64, arm, riscv64, loong64) to compare with the
    image config.  `compression` names the wrapper of a wrapped Image or a zboot payload.
    `problems` lists what is wrong or could not be read; a format with problems is still that
    format (a truncated bzImage is a broken kernel, not "no kernel").
    """

    format: KernelFormat
    version: str | None = None
    arch: str | None = None
    description: str = ""
    problems: tuple[str, ...] = ()
    compression: str | None = None

    @property
    def is_kernel(self) -> bool:
        return self.format is not KernelFormat.NONE

    @property
    def ok(self) -> bool:
        return self.is_kernel and not self.problems


@dataclass(frozen=True, slots=True)
class _Found:
    format: KernelFormat
    version: str | None = None
    arch: str | None = None
    problems: tuple[str, ...] = ()
    compression: str | None = None


# PE/COFF IMAGE_FILE_MACHINE_* values (PE format spec, "Machine Types").
_PE_MACHINES = {
    0x8664: "amd64",
    0x014C: "386",
    0xAA64: "arm64",
    0x01C0: "arm",
    0x01C2: "arm",
    0x01C4: "arm",
    0x5064: "riscv64",
    0x5032: "riscv32",
    0x6264: "loong64",
}


def identify_kernel(head: bytes, *, total_size: int | None = None) -> KernelInfo:
    """Identify the kernel whose first bytes are `head` (ideally `KERNEL_HEAD_BYTES` of them).

    Never raises on bad input: unknown, damaged or truncated data gives `format=none` or a
    format with `problems`.
    """
    head = bytes(head)
    found = _identify(head, total_size)
    return KernelInfo(
        format=found.format,
        version=found.version,
        arch=found.arch,
        description=_sniff.describe(head),
        problems=found.problems,
        compression=found.compression,
    )


def kernel_version_of_name(name: str) -> str | None:
    """The release a kernel's path claims: `boot/vmlinuz-6.1.0-28-amd64` -> `6.1.0-28-amd64`,
    `usr/lib/modules/6.8.5-301.fc40.x86_64/vmlinuz` -> `6.8.5-301.fc40.x86_64`; None for
    `vmlinuz`, `vmlinuz-lts` and other names without a version.  Names only: whether the file
    is a kernel at all is `identify_kernel`'s question (`System.map-6.1.0` has a version too)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    if not parts:
        return None
    base = parts[-1]
    if len(parts) >= 3 and parts[-3] == "modules" and base in ("vmlinuz", "Image", "image", "vmlinux"):
        return parts[-2] if _RELEASE.fullmatch(parts[-2]) else None
    base = base.removeprefix(".").removesuffix(".hmac")
    for suffix in (".efi", ".gz", ".zst", ".img"):
        base = base.removesuffix(suffix)
    _, dash, rest = base.partition("-")
    if not dash or not rest:
        return None
    match = _RELEASE.match(rest)
    return match.group(0) if match and match.end() == len(rest) else None


def _identify(head: bytes, total_size: int | None, depth: int = 0) -> _Found:
    if not head:
        return _Found(KernelFormat.NONE, problems=("empty file",))
    if depth > 2:  # a UKI inside a UKI inside ...: bytes crafted to loop, not a kernel
        return _Found(KernelFormat.NONE, problems=("kernel images nested too deep",))
    for probe in (_zboot, _uki, _bzimage, _arm64, _riscv, _arm_zimage, _wrapped):
        found = probe(head, total_size, depth)
        if found is not None:
            return found
    return _Found(KernelFormat.NONE, problems=(_not_a_kernel(head, total_size),))


def _not_a_kernel(head: bytes, total_size: int | None) -> str:
    if head.startswith(b"\x7fELF"):
        return "ELF executable (an uncompressed vmlinux?), not a boot image"
    if _looks_like_text(head):
        return "text file, not a kernel image"
    if len(head) < 0x206 and (total_size is None or total_size <= len(head)):
        return f"truncated or not a kernel: only {len(head)} bytes, an x86 boot header needs 518"
    return "no kernel header found (bzImage, arm64/RISC-V Image, ARM zImage, EFI zboot, UKI)"


def _looks_like_text(head: bytes) -> bool:
    sample = head[:4096]
    return b"\0" not in sample and all(b >= 0x20 or b in b"\t\n\r" for b in sample[:512])


def _u16(data: bytes, at: int) -> int | None:
    return struct.unpack_from("<H", data, at)[0] if at + 2 <= len(data) else None


def _u32(data: bytes, at: int) -> int | None:
    return struct.unpack_from("<I", data, at)[0] if at + 4 <= len(data) else None


def _cstring(data: bytes, at: int, limit: int = 256) -> str | None:
    """NUL-terminated ASCII string at `at`, None if it runs off the data."""
    end = data.find(b"\0", at, at + limit)
    if end < 0:
        return None
    return data[at:end].decode("ascii", "replace")


def _first_word(text: str) -> str | None:
    words = text.split()
    return words[0] if words else None


def _banner_version(data: bytes) -> str | None:
    match = _BANNER.search(data)
    return match.group(1).decode("ascii") if match else None


def _truncation(needed: int, total_size: int | None, what: str) -> str | None:
    """A problem text if the file is shorter than `needed`; None if it is long enough or if we
    were only given a head and cannot tell."""
    if total_size is not None and total_size < needed:
        return f"truncated: {what} needs {needed} bytes, the file has {total_size}"
    return None


# --- x86 ----------------------------------------------------------------------------------


def _bzimage(head: bytes, total_size: int | None, depth: int) -> _Found | None:
    # Documentation/arch/x86/boot.rst: the real-mode header starts at 0x1F1; "HdrS" at 0x202.
    if head[0x202:0x206] != b"HdrS":
        if len(head) < 0x206 and _u16(head, 0x1FE) == 0xAA55:
            return _Found(
                KernelFormat.NONE,
                problems=(f"truncated: x86 boot sector cut at {len(head)} bytes, before the HdrS header",),
            )
        return None
    problems: list[str] = []
    if _u16(head, 0x1FE) != 0xAA55:
        problems.append("bad header: boot_flag at 0x1FE is not 0xAA55")
    setup_sects = head[0x1F1] or 4  # boot.rst: "If this field is 0, the real value is 4"
    protocol = _u16(head, 0x206) or 0
    loadflags = head[0x211] if len(head) > 0x211 else 0
    if protocol >= 0x200 and not loadflags & 0x01:
        problems.append("zImage (loaded low): not bootable by modern loaders")
    xloadflags = _u16(head, 0x236) if protocol >= 0x20C else None
    arch = None if xloadflags is None else ("amd64" if xloadflags & 0x01 else "386")
    version = None
    pointer = _u16(head, 0x20E) or 0
    if pointer and protocol >= 0x200:
        at = pointer + 0x200
        text = _cstring(head, at)
        if text is not None:
            version = _first_word(text)
        elif (cut := _truncation(at + 1, total_size, "the version string")) is not None:
            problems.append(cut)
        elif at >= len(head):
            problems.append(f"version string at offset {at} is beyond the {len(head)} bytes read")
        else:
            problems.append(f"bad header: version string at offset {at} is not NUL-terminated")
    if version is None:
        version = _banner_version(head)
    setup_size = (setup_sects + 1) * 512
    needed = setup_size
    if protocol >= 0x208 and (payload := _u32(head, 0x248)) is not None:
        needed = setup_size + payload + (_u32(head, 0x24C) or 0)
    if (cut := _truncation(needed, total_size, "the setup header")) is not None:
        problems.append(cut)
    return _Found(KernelFormat.BZIMAGE, version, arch, tuple(problems))


# --- arm64, RISC-V, ARM ----------------------------------------------------------------------


def _arm64(head: bytes, total_size: int | None, depth: int) -> _Found | None:
    # Documentation/arch/arm64/booting.rst: 64-byte header, magic "ARM\x64" at 0x38.
    if head[0x38:0x3C] != b"ARM\x64":
        return None
    problems = []
    flags = struct.unpack_from("<Q", head, 0x18)[0]
    if flags & 0x01:
        problems.append("big-endian arm64 kernel")
    image_size = struct.unpack_from("<Q", head, 0x10)[0]
    if (cut := _truncation(image_size, total_size, "the Image")) is not None:
        problems.append(cut)
    return _Found(KernelFormat.ARM64_IMAGE, _banner_version(head), "arm64", tuple(problems))


def _riscv(head: bytes, total_size: int | None, depth: int) -> _Found | None:
    # Documentation/arch/riscv/boot-image-header.rst: magic2 "RSC\x05" at 0x38 (since v0.2),
    # the older "RISCV\0\0\0" at 0x30 is deprecated but still written.
    if head[0x38:0x3C] != b"RSC\x05" and head[0x30:0x38] != b"RISCV\0\0\0":
        return None
    image_size = struct.unpack_from("<Q", head, 0x10)[0] if len(head) >= 0x18 else 0
    cut = _truncation(image_size, total_size, "the Image")
    return _Found(KernelFormat.RISCV_IMAGE, _banner_version(head), "riscv64", (cut,) if cut else ())


def _arm_zimage(head: bytes, total_size: int | None, depth: int) -> _Found | None:
    # arch/arm/boot/compressed/head.S: magic word at 0x24 in the kernel's byte order; the
    # banner is inside the compressed payload, so no version from the header.
    magic = _u32(head, 0x24)
    if magic not in (0x016F2818, 0x18286F01):
        return None
    end = _u32(head, 0x2C) or 0
    start = _u32(head, 0x28) or 0
    cut = _truncation(end - start, total_size, "the zImage") if end > start else None
    return _Found(KernelFormat.ARM_ZIMAGE, None, "arm", (cut,) if cut else ())


# --- PE/COFF: EFI zboot and UKIs -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Section:
    name: str
    offset: int
    size: int


def _pe(head: bytes) -> tuple[int, list[_Section]] | None:
    """(machine, sections) of a PE/COFF file, None if `head` is not one (PE format spec:
    e_lfanew at 0x3C, "PE\\0\\0", COFF header, then the section table)."""
    if head[:2] != b"MZ" or len(head) < 0x40:
        return None
    pe_at = _u32(head, 0x3C) or 0
    if head[pe_at : pe_at + 4] != b"PE\0\0" or pe_at + 24 > len(head):
        return None
    machine, count = struct.unpack_from("<HH", head, pe_at + 4)
    optional_size = struct.unpack_from("<H", head, pe_at + 20)[0]
    table = pe_at + 24 + optional_size
    sections = []
    for i in range(min(count, 96)):  # the PE loader limit is 96 sections
        at = table + 40 * i
        if at + 40 > len(head):
            break
        name, _vsize, _vaddr, raw_size, raw_at = struct.unpack_from("<8sIIII", head, at)
        sections.append(_Section(name.rstrip(b"\0").decode("ascii", "replace"), raw_at, raw_size))
    return machine, sections


def _zboot(head: bytes, total_size: int | None, depth: int) -> _Found | None:
    # drivers/firmware/efi/libstub/zboot-header.S: "MZ\0\0" + "zimg", payload offset and size
    # at 0x08/0x0C, NUL-terminated compression name at 0x18.
    if head[:2] != b"MZ" or head[4:8] != b"zimg":
        return None
    problems = []
    pe = _pe(head)
    arch = _PE_MACHINES.get(pe[0]) if pe else None
    if pe is None:
        problems.append("bad header: EFI zboot image without a PE header")
    compression = _cstring(head, 0x18, 32) or None
    payload_at, payload_size = _u32(head, 0x08) or 0, _u32(head, 0x0C) or 0
    if (cut := _truncation(payload_at + payload_size, total_size, "the payload")) is not None:
        problems.append(cut)
    version = None
    payload = head[payload_at : payload_at + payload_size]
    if sniff(payload) is not Compression.NONE:
        version = _banner_version(_inflate(payload, sniff(payload))[0])
    return _Found(KernelFormat.EFI_ZBOOT, version, arch, tuple(problems), compression)


def _uki(head: bytes, total_size: int | None, depth: int) -> _Found | None:
    # UAPI.5 Unified Kernel Image: a PE/COFF EFI application carrying the kernel in `.linux`
    # and usually `.initrd`, `.cmdline`, `.osrel`, `.uname` (the `uname -r` string).
    pe = _pe(head)
    if pe is None:
        return None
    machine, sections = pe
    by_name = {s.name: s for s in sections}
    linux = by_name.get(".linux")
    if linux is None:
        return None
    problems = []
    end = max(s.offset + s.size for s in sections)
    if (cut := _truncation(end, total_size, "the section table")) is not None:
        problems.append(cut)
    version = None
    uname = by_name.get(".uname")
    if uname is not None and uname.offset + uname.size <= len(head):
        text = head[uname.offset : uname.offset + uname.size].split(b"\0")[0]
        version = _first_word(text.decode("ascii", "replace"))
    if version is None and linux.offset < len(head):
        version = _identify(head[linux.offset : linux.offset + linux.size], None, depth + 1).version
    return _Found(KernelFormat.UKI, version, _PE_MACHINES.get(machine), tuple(problems))


# --- wrapped Images ----------------------------------------------------------------------------


def _inflate(data: bytes, compression: Compression) -> tuple[bytes, bool]:
    """As much of the compressed stream as `data` holds (bounded), and whether it ended well."""
    if compression is Compression.GZIP:
        # zlib directly: the buffered gzip readers drop the output of a read that hits the
        # cut, which for a small head is all of it, and a head is what we are usually given.
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        try:
            return inflater.decompress(data, _INFLATE_LIMIT), inflater.eof
        except zlib.error:
            return b"", False
    reader = open_decompressed(io.BytesIO(data), compression, "kernel image")
    parts: list[bytes] = []
    total = 0
    try:
        while total < _INFLATE_LIMIT:
            chunk = reader.read(min(4096, _INFLATE_LIMIT - total))  # small: a cut loses one read
            if not chunk:
                return b"".join(parts), True
            parts.append(chunk)
            total += len(chunk)
    except (TruncatedLayer, UnsupportedCompression):  # a head of a longer stream ends like this
        pass
    return b"".join(parts), False


def _wrapped(head: bytes, total_size: int | None, depth: int) -> _Found | None:
    # arm64 has no self-decompressor, so distros ship `Image.gz` as vmlinuz and the loader
    # inflates it (systemd/systemd#23788); we look at what the head inflates to.
    compression = sniff(head)
    if compression is Compression.NONE:
        return None
    inner, ended = _inflate(head, compression)
    if len(inner) < 0x40:
        return None
    found = _identify(inner, None, depth + 1)
    if found.format is KernelFormat.NONE:
        return None
    problems = list(found.problems)
    whole = total_size is not None and len(head) >= total_size
    if whole and not ended and len(inner) < _INFLATE_LIMIT:
        problems.append(f"truncated: the {compression} stream ends early")
    return _Found(found.format, found.version, found.arch, tuple(problems), str(compression))


# --- streaming: the whole file, read once from its layer ---------------------------------------

#: An arm64/RISC-V Image carries its version only in the `Linux version` banner, megabytes in;
#: bound how much we inflate and scan for it (real kernels are well under this).
BANNER_SCAN_LIMIT = 256 << 20
_CHUNK = 1 << 20


def analyze_kernel(reader: Readable, size: int, budget: AnalysisBudget | None = None) -> KernelInfo:
    """Identify a kernel from a stream of its bytes (a layer member as it passes).

    The head decides the format; when the header holds no version (arm64, RISC-V, ARM Images,
    plain or wrapped), the whole stream is scanned for the `Linux version` banner.  `budget`
    (the image's) is charged for the head, what identifying it may inflate, and every byte
    scanned; AnalysisBudgetExceeded propagates.
    """
    charge = budget.spend if budget is not None else no_charge
    stream = PeekableReader(reader)
    head = stream.peek(KERNEL_HEAD_BYTES)
    charge(_identify_cost(head))
    info = identify_kernel(head, total_size=size)
    if not info.is_kernel or info.version is not None or len(head) >= size:
        return info
    if info.compression and info.format is not KernelFormat.EFI_ZBOOT:
        codec = sniff(head)
        per_in, per_out = DECODE_COST[codec]
        decoded = open_decompressed(Metered(stream, lambda n: charge(n * per_in)), codec, "kernel image")
        version = _scan(_chunks(decoded, lambda n: charge(n * per_out)))
    elif info.format in (KernelFormat.ARM64_IMAGE, KernelFormat.RISCV_IMAGE, KernelFormat.ARM_ZIMAGE):
        version = _scan(_chunks(stream, charge))
    else:
        version = None
    return dataclasses.replace(info, version=version) if version else info


def _identify_cost(head: bytes) -> int:
    """The most work `identify_kernel` may do on `head`: read it, and inflate up to
    _INFLATE_LIMIT from it (a wrapped Image's head; a zboot payload or a UKI's .linux in a PE,
    in whichever codec), which is then probed and searched for a banner: measured at 3.3 (gzip,
    through zlib) to 4.5 (bzip2) ns per inflated byte, _PROBE_COST + the codec's output cost."""
    codec = sniff(head)
    if codec is Compression.NONE and head[:2] != b"MZ":
        return len(head)
    per_in, per_out = DECODE_COST[codec] if codec is not Compression.NONE else max(DECODE_COST.values())
    return len(head) * (1 + per_in) + _INFLATE_LIMIT * (per_out + _PROBE_COST)


def _chunks(stream: Readable, charge: Callable[[int], None]) -> Iterator[bytes]:
    """The stream in pieces until its end, or until it turns out damaged (the version is then
    whatever was found before)."""
    try:
        while chunk := stream.read(_CHUNK):
            charge(len(chunk))
            yield chunk
    except (TruncatedLayer, UnsupportedCompression):
        return


def _scan(chunks: Iterator[bytes]) -> str | None:
    tail, seen = b"", 0
    for chunk in chunks:
        window = tail + chunk
        found = _banner_version(window)
        if found:
            return found
        tail = window[-200:]  # a banner split across two chunks is found in the next window
        seen += len(chunk)
        if seen > BANNER_SCAN_LIMIT:
            return None
    return None
