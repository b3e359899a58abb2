"""Fuzzing the kernel header readers, the initrd parser and the decompression wrappers (issue 7).

Seeds are real files built by the repo's builders (fixtures/make_boot_fixtures.py: bzImage,
arm64/RISC-V Image, ARM zImage, EFI zboot, UKI, gzip-wrapped Image; initrds in every codec, with
an early microcode cpio, crc cpio, zero padding) and the `lz4` program's legacy frames;
hypothesis flips, inserts (huge lengths, magics, cpio headers), deletes, repeats and cuts them.
Each example runs under tests/support/fuzzing.py's time and memory bound: a kernel reader always answers
with a KernelInfo, the initrd parser with an InitrdInfo (damage is a fact, never an exception),
a decoder with bytes or an OcibootError.  Linear time is asserted for the cpio walk (members and
zero padding) and the banner search.
"""

from __future__ import annotations

import gzip
import io
import subprocess
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ociboot.boot.initrd import InitrdInfo, inspect_initrd
from ociboot.boot.kernel import KernelInfo, analyze_kernel, identify_kernel
from ociboot.budget import AnalysisBudget
from ociboot.compression import Compression, open_decompressed
from ociboot.errors import OcibootError
from tests.support.bootimages import boot
from tests.support.fuzzing import assert_linear, edits, mutate, outcome

KERNELS = boot.kernels()
INITRDS = {name: data for name, data in boot.initrds().items() if "garbage" not in name}
KERNEL_SEEDS = sorted(KERNELS)
INITRD_SEEDS = sorted(INITRDS)

# Tokens worth inserting: magics and headers the parsers branch on.
TOKENS = (
    b"HdrS",
    b"ARM\x64",
    b"RSC\x05",
    b"MZ\0\0zimg",
    b"PE\0\0",
    b".linux\0\0",
    b"Linux version 6.1.0 ",
    b"\x1f\x8b\x08\0",
    b"\x28\xb5\x2f\xfd",
    b"\x02\x21\x4c\x18",
    b"\xfd7zXZ\0",
    b"BZh9",
    b"070701",
    b"070702",
    b"TRAILER!!!\0",
    bytes(512),
)
EXAMPLES = settings(
    max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def _lz4_legacy(data: bytes) -> bytes:
    return subprocess.run(["lz4", "-l", "-c"], input=data, capture_output=True, check=True).stdout


def _read_all(reader: object) -> int:
    total = 0
    while chunk := reader.read(1 << 16):  # type: ignore[attr-defined]
        total += len(chunk)
    return total


# --- kernels ---------------------------------------------------------------------------------


def _kernel(data: bytes) -> None:
    head = outcome(lambda: identify_kernel(data[: 64 << 10], total_size=len(data)))
    assert isinstance(head, KernelInfo), head
    streamed = outcome(lambda: analyze_kernel(io.BytesIO(data), len(data), AnalysisBudget()))
    assert isinstance(streamed, KernelInfo), streamed


def test_kernel_seeds_are_read() -> None:
    for name in KERNEL_SEEDS:
        info = analyze_kernel(io.BytesIO(KERNELS[name]), len(KERNELS[name]))
        assert info.is_kernel == name.startswith(("vmlinuz-6", "Image", "zImage", "uki", "vmlinuz-zboot")), (
            name
        )


@EXAMPLES
@given(choice=st.sampled_from(KERNEL_SEEDS), changes=edits(TOKENS), cut=st.none() | st.integers(min_value=0))
def test_mutated_kernels(choice: str, changes: list[tuple[str, int, object]], cut: int | None) -> None:
    _kernel(mutate(KERNELS[choice], changes, cut))


@settings(max_examples=100, deadline=None, derandomize=True)
@given(choice=st.sampled_from(KERNEL_SEEDS), head=st.integers(0, 0x300), tail=st.binary(max_size=4096))
def test_random_bytes_behind_a_real_kernel_head(choice: str, head: int, tail: bytes) -> None:
    _kernel(KERNELS[choice][:head] + tail)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(choice=st.sampled_from(KERNEL_SEEDS), codec=st.sampled_from(["gzip", "zstd", "xz", "bzip2", "lz4"]))
def test_wrapped_mutated_kernels(choice: str, codec: str) -> None:
    # The header readers behind every wrapper an Image is shipped in (and some it is not).
    _kernel(boot.COMPRESSORS[codec](KERNELS[choice]))


# --- initrds ---------------------------------------------------------------------------------


def _initrd(data: bytes) -> None:
    info = outcome(lambda: inspect_initrd(data, cap=64 << 20, budget=AnalysisBudget()))
    assert isinstance(info, InitrdInfo), info


def test_initrd_seeds_are_read() -> None:
    for name in INITRD_SEEDS:
        info = inspect_initrd(INITRDS[name])
        broken = ("truncated", "flipped")
        assert info.ok != any(word in name for word in broken), (name, info.problems)


@EXAMPLES
@given(choice=st.sampled_from(INITRD_SEEDS), changes=edits(TOKENS), cut=st.none() | st.integers(min_value=0))
def test_mutated_initrds(choice: str, changes: list[tuple[str, int, object]], cut: int | None) -> None:
    _initrd(mutate(INITRDS[choice], changes, cut))


@EXAMPLES
@given(
    choice=st.sampled_from(INITRD_SEEDS),
    changes=edits(TOKENS),
    codec=st.sampled_from(sorted(boot.COMPRESSORS)),
)
def test_initrds_with_mutated_cpio_inside(
    choice: str, changes: list[tuple[str, int, object]], codec: str
) -> None:
    # Mutate the cpio, then compress it: the walk behind each decoder sees damage the decoder
    # cannot catch (a valid stream of a broken archive).
    plain = boot.cpio(boot.main_archive_members())
    _initrd(boot.early_microcode() + boot.COMPRESSORS[codec](mutate(plain, changes)))


@settings(max_examples=100, deadline=None, derandomize=True)
@given(choice=st.sampled_from(INITRD_SEEDS), head=st.integers(0, 200), tail=st.binary(max_size=4096))
def test_random_bytes_behind_a_real_initrd_head(choice: str, head: int, tail: bytes) -> None:
    _initrd(INITRDS[choice][:head] + tail)


# --- decompression wrappers --------------------------------------------------------------------

PAYLOAD = boot.cpio(boot.main_archive_members()) * 8
STREAMS = {
    Compression.GZIP: boot.COMPRESSORS["gzip"](PAYLOAD) + boot.COMPRESSORS["gzip"](b"second member"),
    Compression.ZSTD: boot.COMPRESSORS["zstd"](PAYLOAD),
    Compression.XZ: boot.COMPRESSORS["xz"](PAYLOAD),
    Compression.LZMA: boot.COMPRESSORS["lzma"](PAYLOAD),
    Compression.BZIP2: boot.COMPRESSORS["bzip2"](PAYLOAD),
    Compression.LZ4: _lz4_legacy(PAYLOAD) + _lz4_legacy(b"second stream"),
}


@pytest.mark.parametrize("padding", [False, True])
@pytest.mark.parametrize("codec", sorted(STREAMS))
@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(changes=edits(TOKENS), cut=st.none() | st.integers(min_value=0))
def test_mutated_compressed_streams(
    codec: Compression, padding: bool, changes: list[tuple[str, int, object]], cut: int | None
) -> None:
    data = mutate(STREAMS[codec], changes, cut)
    got = outcome(lambda: _read_all(open_decompressed(io.BytesIO(data), codec, zero_padding_ends=padding)))
    assert isinstance(got, int | OcibootError), got


# --- linear time -----------------------------------------------------------------------------


_FILE = boot.S_IFREG | 0o644


def _members(n: int) -> bytes:
    return boot.cpio([(f"d/f{i}", boot.S_IFREG | 0o644, b"x" * (i % 7)) for i in range(n)])


LINEAR: dict[str, Callable[[int], bytes]] = {
    "plain cpio members": _members,
    "gzip cpio members": lambda n: gzip.compress(_members(n), 1),
    "crc cpio members": lambda n: boot.cpio(
        [(f"f{i}", boot.S_IFREG | 0o644, b"ab") for i in range(n)], b"070702"
    ),
    "zero padding between archives": lambda n: (
        (boot.cpio([("a", boot.S_IFREG, b"1")]) + bytes(512)) * (n // 8 + 1)
    ),
    "one long member": lambda n: boot.cpio([("big", boot.S_IFREG | 0o644, bytes(64 * n))]),
}


@pytest.mark.parametrize("shape", sorted(LINEAR))
def test_the_cpio_walk_is_linear(shape: str) -> None:
    def run(n: int) -> Callable[[], object]:
        data = LINEAR[shape](n)
        return lambda: inspect_initrd(data, cap=1 << 40)

    assert_linear(run, 256, what=shape)


def _image(n: int, fill: bytes) -> bytes:
    image = bytearray(boot.arm64_image())
    image[0x900:0xA00] = bytes(0x100)  # no banner: the scan runs to the end
    return bytes(image) + fill * (n // len(fill) + 1)


BANNER_SHAPES: dict[str, Callable[[int], bytes]] = {
    "zeros": lambda n: _image(n, bytes(4096)),
    "almost banners": lambda n: _image(n, b"Linux version x" * 64),
    "code": lambda n: _image(n, boot.filler(1 << 16, 4)),
    "gzip-wrapped": lambda n: gzip.compress(_image(n, boot.filler(1 << 16, 4)), 1),
}


@pytest.mark.parametrize("shape", sorted(BANNER_SHAPES))
def test_the_banner_search_is_linear(shape: str) -> None:
    def run(n: int) -> Callable[[], object]:
        data = BANNER_SHAPES[shape](n)
        return lambda: analyze_kernel(io.BytesIO(data), len(data))

    assert_linear(run, 1 << 20, what=f"banner search over {shape}")
