"""Kernel identification by content, against the committed fixtures in fixtures/boot/ (written by
fixtures/make_boot_fixtures.py) and against real libmagic."""

from __future__ import annotations

import gzip
import random
import struct
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ociboot.boot import _sniff
from ociboot.boot.kernel import (
    KERNEL_HEAD_BYTES,
    KernelFormat,
    KernelInfo,
    identify_kernel,
    kernel_version_of_name,
)

BOOT = Path(__file__).resolve().parent.parent / "fixtures" / "boot"
KVER = "6.1.0-28-amd64"


def identify(name: str) -> KernelInfo:
    data = (BOOT / name).read_bytes()
    return identify_kernel(data[:KERNEL_HEAD_BYTES], total_size=len(data))


@pytest.mark.parametrize(
    ("name", "fmt", "version", "arch", "magic_text"),
    [
        (f"vmlinuz-{KVER}", KernelFormat.BZIMAGE, KVER, "amd64",
         f"Linux kernel x86 boot executable bzImage, version {KVER} (debian-kernel@lists.debian.org) #1 SMP"),
        ("Image-6.6.0-arm64", KernelFormat.ARM64_IMAGE, "6.6.0-arm64", "arm64",
         "Linux kernel ARM64 boot executable Image, little-endian, 4K pages"),
        ("Image-6.6.0-arm64.gz", KernelFormat.ARM64_IMAGE, "6.6.0-arm64", "arm64", "gzip compressed data"),
        ("Image-6.6.0-riscv64", KernelFormat.RISCV_IMAGE, "6.6.0-riscv64", "riscv64", None),
        ("zImage-arm", KernelFormat.ARM_ZIMAGE, None, "arm",
         "Linux kernel ARM boot executable zImage (little-endian)"),
        ("vmlinuz-zboot-arm64.efi", KernelFormat.EFI_ZBOOT, "6.6.0-arm64", "arm64",
         "PE32+ executable (EFI application) Aarch64"),
        (f"uki-{KVER}.efi", KernelFormat.UKI, KVER, "amd64", "PE32+ executable (EFI application) x86-64"),
    ],
)  # fmt: skip
def test_kernels_are_identified(
    name: str, fmt: KernelFormat, version: str | None, arch: str, magic_text: str | None
) -> None:
    info = identify(name)
    assert info.format is fmt
    assert info.is_kernel and info.ok, info.problems
    assert info.version == version
    assert info.arch == arch
    if magic_text is not None:  # Debian's libmagic 5.44 has no RISC-V Image entry yet
        assert magic_text in info.description


def test_wrappers_are_named() -> None:
    assert identify("Image-6.6.0-arm64.gz").compression == "gzip"
    assert identify("vmlinuz-zboot-arm64.efi").compression == "gzip"
    assert identify(f"vmlinuz-{KVER}").compression is None


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        (f"vmlinux-{KVER}", "ELF executable"),
        (f"System.map-{KVER}", "text file"),
        (f"config-{KVER}", "text file"),
        (f".vmlinuz-{KVER}.hmac", "text file"),
        (f"vmlinuz-truncated-{KVER}", "truncated"),
    ],
)
def test_not_kernels(name: str, problem: str) -> None:
    info = identify(name)
    assert info.format is KernelFormat.NONE
    assert not info.is_kernel and not info.ok
    assert info.version is None
    assert any(problem in p for p in info.problems), info.problems


def test_empty_file() -> None:
    info = identify_kernel(b"", total_size=0)
    assert info.format is KernelFormat.NONE
    assert info.problems == ("empty file",)
    assert info.description == "empty"


def test_vmlinux_banner_does_not_make_it_a_kernel() -> None:
    data = (BOOT / f"vmlinux-{KVER}").read_bytes()
    assert b"Linux version " + KVER.encode() in data
    assert identify_kernel(data).format is KernelFormat.NONE


def test_bzimage_cut_inside_the_file_is_truncated() -> None:
    data = (BOOT / f"vmlinuz-{KVER}").read_bytes()
    info = identify_kernel(data[:1500], total_size=1500)
    assert info.format is KernelFormat.BZIMAGE
    assert info.version == KVER  # the version string (at 0x400) survived the cut
    assert any(p.startswith("truncated: the setup header needs") for p in info.problems), info.problems


def test_bzimage_head_shorter_than_the_version_offset() -> None:
    data = (BOOT / f"vmlinuz-{KVER}").read_bytes()
    # A caller that captured too little: not a damaged file, but the version is unknown.
    info = identify_kernel(data[:0x300], total_size=len(data))
    assert info.format is KernelFormat.BZIMAGE
    assert info.version is None
    assert info.problems == ("version string at offset 1024 is beyond the 768 bytes read",)
    cut = identify_kernel(data[:0x300], total_size=0x300)
    assert any("truncated: the version string" in p for p in cut.problems)


def test_bzimage_bad_boot_flag() -> None:
    data = bytearray((BOOT / f"vmlinuz-{KVER}").read_bytes())
    struct.pack_into("<H", data, 0x1FE, 0x1234)
    info = identify_kernel(bytes(data), total_size=len(data))
    assert info.format is KernelFormat.BZIMAGE
    assert "bad header: boot_flag at 0x1FE is not 0xAA55" in info.problems


def test_bzimage_32bit_arch_from_xloadflags() -> None:
    data = bytearray((BOOT / f"vmlinuz-{KVER}").read_bytes())
    struct.pack_into("<H", data, 0x236, 0)
    assert identify_kernel(bytes(data)).arch == "386"


def test_truncated_image_gz() -> None:
    data = (BOOT / "Image-6.6.0-arm64.gz").read_bytes()
    head = data[: len(data) - 100]
    info = identify_kernel(head, total_size=len(head))
    assert info.format is KernelFormat.ARM64_IMAGE
    assert "truncated: the gzip stream ends early" in info.problems
    # Only a head of a longer file: expected, not a problem.
    assert identify_kernel(head, total_size=len(data)).ok


def test_truncated_uki_sections() -> None:
    data = (BOOT / f"uki-{KVER}.efi").read_bytes()
    info = identify_kernel(data[:4096], total_size=4096)
    assert info.format is KernelFormat.UKI
    assert any(p.startswith("truncated: the section table") for p in info.problems)


def test_gzip_of_text_is_not_a_kernel() -> None:
    info = identify_kernel(gzip.compress(b"hello world\n" * 100, mtime=0))
    assert info.format is KernelFormat.NONE


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("vmlinuz-6.1.0-28-amd64", "6.1.0-28-amd64"),
        ("boot/Image-6.6.0-arm64", "6.6.0-arm64"),
        ("/boot/vmlinuz-5.14.21-150500.55-default", "5.14.21-150500.55-default"),
        ("usr/lib/modules/6.8.5-301.fc40.x86_64/vmlinuz", "6.8.5-301.fc40.x86_64"),
        ("boot/EFI/Linux/uki-6.1.0-28-amd64.efi", "6.1.0-28-amd64"),
        ("Image-6.6.0-arm64.gz", "6.6.0-arm64"),
        ("vmlinuz", None),
        ("boot/vmlinuz-lts", None),
        ("boot/vmlinuz-", None),
        ("usr/lib/modules/not-a-version/vmlinuz", None),
        ("", None),
    ],
)
def test_kernel_version_of_name(name: str, version: str | None) -> None:
    assert kernel_version_of_name(name) == version


def test_describe_from_many_threads() -> None:
    data = (BOOT / "zImage-arm").read_bytes()
    results: list[str] = []

    def work() -> None:
        results.extend(_sniff.describe(data) for _ in range(50))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["Linux kernel ARM boot executable zImage (little-endian)"] * 200


def test_libmagic_is_installed() -> None:
    # Descriptions are optional at run time, but this machine kind has libmagic1 and the tests
    # above need it: fail loudly instead of silently comparing against UNAVAILABLE.
    assert _sniff.available(), "install Debian's libmagic1"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096), st.none() | st.integers(min_value=0, max_value=1 << 40))
def test_random_bytes_never_crash(data: bytes, total_size: int | None) -> None:
    info = identify_kernel(data, total_size=total_size)
    assert isinstance(info.format, KernelFormat)
    assert info.is_kernel or info.problems


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(p.name for p in BOOT.iterdir() if not p.name.startswith("initrd"))),
       st.integers(min_value=0, max_value=6000), st.integers(min_value=0, max_value=255),
       st.integers(min_value=0, max_value=6000))  # fmt: skip
def test_mutated_fixtures_never_crash(name: str, at: int, value: int, cut: int) -> None:
    data = bytearray((BOOT / name).read_bytes())
    if at < len(data):
        data[at] = value
    info = identify_kernel(bytes(data[: max(cut, 1)]), total_size=max(cut, 1))
    assert info.is_kernel or info.problems


def test_zstd_wrapped_image() -> None:
    import zstandard

    data = zstandard.ZstdCompressor(level=3).compress((BOOT / "Image-6.6.0-arm64").read_bytes())
    info = identify_kernel(data, total_size=len(data))
    assert (info.format, info.version, info.compression) == (KernelFormat.ARM64_IMAGE, "6.6.0-arm64", "zstd")
    assert info.ok


def test_missing_libmagic_degrades_to_a_note() -> None:
    # A fresh interpreter where `import magic` fails as it does without libmagic1.
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['magic'] = None\n"
        "from ociboot.boot import _sniff\n"
        "from ociboot.boot.kernel import identify_kernel\n"
        "info = identify_kernel(open(sys.argv[1], 'rb').read())\n"
        "print(_sniff.available(), info.format, info.version, info.description, sep='|')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(BOOT / f"vmlinuz-{KVER}")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert out == f"False|bzImage|{KVER}|{_sniff.UNAVAILABLE}"


# --- streaming analysis: the banner megabytes into an Image ------------------------------------


@pytest.mark.parametrize("wrap", ["none", "gzip", "zstd"])
def test_analyze_kernel_finds_a_banner_far_into_an_arm64_image(wrap: str) -> None:
    import io

    from ociboot.boot.kernel import analyze_kernel
    from tests.support.imagebuilder import compress

    header = (BOOT / "Image-6.6.0-arm64").read_bytes()[:64]
    filler = random.Random(7).randbytes(3 << 20)  # incompressible: the banner is far past any head
    image = header + filler + b"Linux version 6.9.1-arm64 (builder@host) #1 SMP\n" + b"\0" * 100
    data = compress(image, wrap)
    info = analyze_kernel(io.BytesIO(data), len(data))
    assert (info.format, info.version) == (KernelFormat.ARM64_IMAGE, "6.9.1-arm64")
    assert info.compression == (None if wrap == "none" else wrap)
    assert identify_kernel(data[:KERNEL_HEAD_BYTES], total_size=len(data)).version is None
