"""Initramfs inspection against the committed fixtures (fixtures/boot/, checked with GNU cpio and
the real lz4/zstd/xz tools when they were written) and against streams built here."""

from __future__ import annotations

import gzip
import io
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ociboot.boot.initrd import CpioFormat, InitrdInfo, inspect_initrd
from ociboot.compression import Compression

BOOT = Path(__file__).resolve().parent.parent / "fixtures" / "boot"
KVER = "6.1.0-28-amd64"
DRACUT = ("systemd", "systemd-initrd", "base", "fs-lib", "rootfs-block")
MAIN_MEMBERS = 15  # make_boot_fixtures.main_archive_members()


def inspect(name: str) -> InitrdInfo:
    return inspect_initrd((BOOT / name).read_bytes())


@pytest.mark.parametrize(
    ("name", "compression", "magic_text"),
    [
        ("initrd-none.img", Compression.NONE, "ASCII cpio archive (SVR4 with no CRC)"),
        ("initrd-gzip.img", Compression.GZIP, "gzip compressed data"),
        ("initrd-zstd.img", Compression.ZSTD, "Zstandard compressed data"),
        ("initrd-xz.img", Compression.XZ, "XZ compressed data"),
        ("initrd-lzma.img", Compression.LZMA, "LZMA compressed data"),
        ("initrd-bzip2.img", Compression.BZIP2, "bzip2 compressed data"),
        ("initrd-lz4.img", Compression.LZ4, "LZ4 compressed data (v0.1-v0.9)"),
    ],
)
def test_every_compression(name: str, compression: Compression, magic_text: str) -> None:
    info = inspect(name)
    assert info.ok, info.problems
    assert info.compression is compression
    assert [(s.compression, s.format, s.archives, s.members) for s in info.segments] == [
        (compression, CpioFormat.NEWC, 1, MAIN_MEMBERS)
    ]
    assert info.member_count == MAIN_MEMBERS
    assert info.kernel_versions == (KVER,)
    assert info.dracut_modules == DRACUT
    assert info.has_init and info.has_systemd
    assert info.contains(f"/usr/lib/modules/{KVER}/modules.dep")
    assert not info.contains("usr/bin/elemental")
    assert info.microcode == ()
    assert magic_text in info.description


def test_members_carry_mode_and_size() -> None:
    members = {m.name: m for m in inspect("initrd-xz.img").members}
    init = members["init"]
    assert init.is_symlink and init.size == len("usr/lib/systemd/systemd")
    assert members["usr/lib/systemd/systemd"].is_file
    assert stat.S_IMODE(members["usr/lib/systemd/systemd"].mode) == 0o755
    assert members[f"usr/lib/modules/{KVER}"].is_dir
    assert members[f"usr/lib/modules/{KVER}/kernel/fs/ext4/ext4.ko"].size == 700
    assert "" in members  # the "." root entry, normalised


@pytest.mark.parametrize("name", ["initrd-microcode-zstd.img", "initrd-microcode-xz.img"])
def test_early_microcode_prefix(name: str) -> None:
    info = inspect(name)
    assert info.ok, info.problems
    plain, main = info.segments
    assert (plain.offset, plain.compression, plain.archives, plain.members) == (0, Compression.NONE, 1, 5)
    assert main.offset == 2560 and main.offset % 512 == 0  # after the early archive's padding
    assert main.compression is info.compression is not Compression.NONE
    assert info.microcode == ("kernel/x86/microcode/GenuineIntel.bin",)
    assert info.member_count == 5 + MAIN_MEMBERS
    assert info.kernel_versions == (KVER,)
    assert info.dracut_modules == DRACUT
    assert info.description == "ASCII cpio archive (SVR4 with no CRC)"  # libmagic sees only the prefix


def test_crc_cpio() -> None:
    info = inspect("initrd-crc.img")
    assert info.ok, info.problems
    assert info.segments[0].format is CpioFormat.CRC
    assert info.kernel_versions == (KVER,)


def test_crc_mismatch_is_reported() -> None:
    raw = bytearray(gzip.decompress((BOOT / "initrd-crc.img").read_bytes()))
    at = raw.index(b"kernel/fs/ext4/ext4.ko: ")  # modules.dep's data
    raw[at] ^= 0x01
    info = inspect_initrd(bytes(raw))
    assert not info.ok
    assert info.problems == (
        f"crc cpio: checksum mismatch for member 'usr/lib/modules/{KVER}/modules.dep' at offset {at} "
        "of the initrd",
    )


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("initrd-truncated.img", "gzip segment at offset 0: gzip stream ends early"),
        ("initrd-flipped.img", "gzip segment at offset 0: corrupt gzip data"),
        ("initrd-garbage.img", "garbage at offset 0: "),
        ("initrd-cpio-truncated.img", "truncated: cpio archive ends at offset 700 of the initrd"),
    ],
)
def test_damaged_initrds_give_problems(name: str, problem: str) -> None:
    info = inspect(name)
    assert not info.ok
    assert not info.cap_hit
    assert len(info.problems) == 1 and info.problems[0].startswith(problem), info.problems


def test_truncated_plain_cpio_keeps_what_it_read() -> None:
    info = inspect("initrd-cpio-truncated.img")
    assert info.member_count == 5
    assert info.segments[0].archives == 0  # no trailer: not a complete archive
    assert info.compression is None


def test_cut_inside_member_data() -> None:
    data = (BOOT / "initrd-none.img").read_bytes()
    at = data.index(b"kernel/fs/ext4/ext4.ko: ")
    info = inspect_initrd(data[: at + 10])
    assert info.problems == (
        f"truncated: member 'usr/lib/modules/{KVER}/modules.dep' cut at offset {at + 10} of the initrd "
        "(10 of 47 bytes)",
    )


def test_empty_and_zero_only() -> None:
    assert inspect_initrd(b"").problems == ("empty initrd",)
    assert inspect_initrd(bytes(4096)).problems == ("no cpio archive found",)


def test_gzip_of_something_else() -> None:
    info = inspect_initrd(gzip.compress(b"#!/bin/sh\necho not a cpio\n", mtime=0))
    assert info.problems == ("garbage inside the gzip segment at offset 0, at decompressed offset 0: "
                             "b'#!/bin' is neither cpio nor a known compression",)  # fmt: skip


def test_odc_cpio_is_refused() -> None:
    info = inspect_initrd(b"070707" + bytes(200))
    assert info.problems[0].startswith("odc cpio (070707) at offset 0")


def test_unaligned_second_archive() -> None:
    data = (BOOT / "initrd-none.img").read_bytes()
    info = inspect_initrd(data + b"\0" + data)  # the kernel needs cpio headers 4-byte aligned
    assert info.problems == (f"cpio header at unaligned offset {len(data) + 1}",)


def test_cap_hit_is_reported_not_passed() -> None:
    info = inspect_initrd((BOOT / "initrd-zstd.img").read_bytes(), cap=1000)
    assert info.cap_hit and not info.ok
    assert info.problems[-1].startswith("cap hit: stopped after")
    assert 0 < info.member_count < MAIN_MEMBERS


def test_decompression_bomb_stops_at_the_cap() -> None:
    # 64 MiB of one member's zeros, 64 KiB compressed: the cap stops it before it is read.
    header = b"070701" + b"".join(b"%08X" % f for f in [1, 0o100644, 0, 0, 1, 0, 64 << 20, 0, 0, 0, 0, 5, 0])
    bomb = gzip.compress(header + b"bomb\0" + bytes(1) + bytes(64 << 20), mtime=0)
    info = inspect_initrd(io.BytesIO(bomb), cap=1 << 20)
    assert info.cap_hit
    assert info.member_count == 0


def test_capture_extra_files_from_a_stream() -> None:
    with (BOOT / "initrd-microcode-xz.img").open("rb") as f:
        info = inspect_initrd(f, capture=["/early_cpio", "usr/lib/systemd/systemd"])
    assert info.files["early_cpio"] == b"1\n"
    assert info.files["usr/lib/systemd/systemd"].startswith(b"\x7fELF")
    assert set(info.files) == {"early_cpio", "usr/lib/systemd/systemd", "usr/lib/dracut/modules.txt"}


def test_lz4_from_the_real_tool(tmp_path: Path) -> None:
    lz4 = shutil.which("lz4")
    assert lz4, "install Debian's lz4 package"
    source = tmp_path / "initrd.cpio"
    big = (BOOT / "initrd-none.img").read_bytes() * 3  # three archives: long back-references
    source.write_bytes(big)
    out = subprocess.run([lz4, "-l", "-9", "-c", str(source)], check=True, capture_output=True).stdout
    info = inspect_initrd(out)
    assert info.ok, info.problems
    assert info.segments[0].archives == 3
    assert info.member_count == 3 * MAIN_MEMBERS


def test_lz4_fixture_decodes_with_the_real_tool() -> None:
    lz4 = shutil.which("lz4")
    assert lz4, "install Debian's lz4 package"
    out = subprocess.run(
        [lz4, "-d", "-c", str(BOOT / "initrd-lz4.img")], check=True, capture_output=True
    ).stdout
    assert out == (BOOT / "initrd-none.img").read_bytes()


def test_newc_fixture_reads_with_gnu_cpio() -> None:
    cpio = shutil.which("cpio")
    assert cpio, "install Debian's cpio package (README: running the tests)"
    listing = subprocess.run(
        [cpio, "-it", "--quiet"],
        input=(BOOT / "initrd-none.img").read_bytes(),
        check=True,
        capture_output=True,
    ).stdout.decode()
    names = [m.name or "." for m in inspect("initrd-none.img").members]
    assert listing.split() == names


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes_never_crash(data: bytes) -> None:
    info = inspect_initrd(data)
    assert info.problems or info.ok


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(p.name for p in BOOT.glob("initrd-*.img"))),
    st.integers(min_value=0, max_value=4000),
    st.integers(min_value=0, max_value=255),
    st.integers(min_value=1, max_value=5000),
)
def test_mutated_initrds_never_crash(name: str, at: int, value: int, cut: int) -> None:
    data = bytearray((BOOT / name).read_bytes())
    if at < len(data):
        data[at] = value
    info = inspect_initrd(bytes(data[:cut]))
    assert info.problems or info.ok


@pytest.mark.parametrize("compression", ["zstd", "xz", "gzip"])
@pytest.mark.parametrize("padding", [4, 512, 513])
def test_zero_padding_after_the_compressed_archive_is_accepted(compression: str, padding: int) -> None:
    # Linux's init/initramfs.c skips zero bytes after a compressed segment, so such an initrd
    # boots; liblzma read 4 zeros as a cut stream and zstandard as a bad frame.
    from tests.support.bootimages import KVER, initrd

    info = inspect_initrd(initrd(KVER, compression=compression) + b"\0" * padding)
    assert info.ok and not info.problems and KVER in info.kernel_versions


def test_garbage_right_after_a_zstd_archive_is_still_reported() -> None:
    from tests.support.bootimages import KVER, initrd

    info = inspect_initrd(initrd(KVER, compression="zstd") + b"garbage!")
    assert not info.ok and info.problems
