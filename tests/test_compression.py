"""compression.py: magic sniffing and streaming decoders on real compressed streams."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import random
import shutil
import subprocess

import lz4.block
import pytest
import zstandard

from ociboot.compression import Compression, PeekableReader, open_decompressed, sniff
from ociboot.errors import TruncatedLayer
from tests.support.bootimages import boot
from tests.support.fuzzing import cpu_seconds, outcome
from tests.support.imagebuilder import compress

# Half incompressible, half repetitive: every decoder path (literals, matches) is exercised.
DATA = random.Random(7).randbytes(300_000) + b"boot me " * 60_000


def _read_all(stream: object, chunk: int = 65536) -> bytes:
    out = bytearray()
    while data := stream.read(chunk):  # type: ignore[attr-defined]
        assert len(data) <= chunk  # bounded reads, whatever the ratio
        out += data
    return bytes(out)


ENCODERS = {
    Compression.GZIP: lambda d: compress(d, "gzip"),
    Compression.ZSTD: lambda d: compress(d, "zstd"),
    Compression.XZ: lzma.compress,
    Compression.LZMA: lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE),
    Compression.BZIP2: bz2.compress,
}


@pytest.mark.parametrize("compression", list(ENCODERS))
def test_sniff_and_round_trip(compression: Compression) -> None:
    blob = ENCODERS[compression](DATA)
    assert sniff(blob[:6]) is compression
    assert _read_all(open_decompressed(io.BytesIO(blob), compression)) == DATA


def test_sniff_plain_and_short_inputs() -> None:
    assert sniff(b"") is Compression.NONE
    assert sniff(b"\x1f") is Compression.NONE
    assert sniff(b"usr/bin/sh\0\0\0") is Compression.NONE
    assert sniff(b"\x02\x21\x4c\x18") is Compression.LZ4


def test_plain_is_passed_through() -> None:
    raw = io.BytesIO(DATA)
    assert open_decompressed(raw, Compression.NONE) is raw


def test_gzip_multi_member_with_zero_padding() -> None:
    blob = compress(DATA[:1000], "gzip") + compress(DATA[1000:], "gzip") + bytes(100)
    assert _read_all(open_decompressed(io.BytesIO(blob), Compression.GZIP)) == DATA


def test_zstd_multi_frame_is_read_across_frames() -> None:
    blob = compress(DATA, "zstd", frames=3)
    # three frames, as imagebuilder promises; a first-frame-only decoder would stop early
    assert zstandard.ZstdDecompressor().decompressobj().decompress(blob) != DATA
    assert _read_all(open_decompressed(io.BytesIO(blob), Compression.ZSTD)) == DATA


def test_zstd_skippable_frame_and_checksum_are_tracked() -> None:
    frame = zstandard.ZstdCompressor(write_checksum=True, write_content_size=True).compress(DATA)
    skippable = (0x184D2A5A).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"hello"
    blob = skippable + frame + frame
    assert _read_all(open_decompressed(io.BytesIO(blob), Compression.ZSTD)) == DATA * 2


@pytest.mark.parametrize("compression", list(ENCODERS))
@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_streams_raise_truncated_layer(compression: Compression, keep: float) -> None:
    blob = ENCODERS[compression](DATA)
    cut = blob[: int(len(blob) * keep)]
    with pytest.raises(TruncatedLayer, match=f"layer x: .*{compression}"):
        _read_all(open_decompressed(io.BytesIO(cut), compression, what="layer x"))


def test_zstd_cut_at_a_block_boundary_is_still_truncated() -> None:
    # zstandard returns EOF silently here; the frame tracker must notice the missing last block.
    frames = compress(DATA, "zstd", frames=2)
    first = zstandard.ZstdCompressor(level=3).compress(DATA[: -(-len(DATA) // 2)])
    assert frames.startswith(first)
    cut = frames[: len(first) + 20]
    with pytest.raises(TruncatedLayer, match="zstd stream ends inside frame 2"):
        _read_all(open_decompressed(io.BytesIO(cut), Compression.ZSTD, what="layer y"))


@pytest.mark.parametrize("compression", [Compression.GZIP, Compression.XZ, Compression.BZIP2])
def test_corrupt_streams_raise_ociboot_errors(compression: Compression) -> None:
    blob = bytearray(ENCODERS[compression](DATA))
    for i in range(len(blob) // 3, len(blob) // 3 + 16):
        blob[i] ^= 0xA5
    with pytest.raises(TruncatedLayer, match=f"corrupt {compression} data"):
        _read_all(open_decompressed(io.BytesIO(bytes(blob)), compression, what="initrd"))


def test_garbage_is_not_gzip() -> None:
    with pytest.raises(TruncatedLayer, match="gzip"):
        _read_all(open_decompressed(io.BytesIO(b"\x1f\x8b" + bytes(64)), Compression.GZIP))


def test_gzip_via_stdlib_and_fast_inflater_agree() -> None:
    blob = gzip.compress(DATA, mtime=0)
    assert _read_all(open_decompressed(io.BytesIO(blob), Compression.GZIP), 4096) == DATA


# --- lz4 legacy ------------------------------------------------------------------------------


def _lz4_legacy(data: bytes) -> bytes:
    lz4 = shutil.which("lz4")
    assert lz4, "install Debian's lz4 package (README: running the tests): it makes the real stream"
    return subprocess.run([lz4, "-l", "-c"], input=data, capture_output=True, check=True).stdout


def _legacy_blocks(blob: bytes) -> list[bytes]:
    """The blocks of an lz4 legacy stream: magic, then (u32 size, block) to the end."""
    blocks, at = [], 4
    while at < len(blob):
        size = int.from_bytes(blob[at : at + 4], "little")
        blocks.append(blob[at + 4 : at + 4 + size])
        at += 4 + size
    return blocks


def test_lz4_legacy_stream_from_the_lz4_program() -> None:
    big = DATA * 30  # 18 MB: several 8 MiB blocks, the last one short
    blob = _lz4_legacy(big)
    assert sniff(blob) is Compression.LZ4
    assert len(_legacy_blocks(blob)) == 3
    assert _read_all(open_decompressed(io.BytesIO(blob), Compression.LZ4), 1 << 20) == big
    # concatenated legacy streams (Linux initramfs) repeat the magic between blocks
    small = _lz4_legacy(DATA)
    assert _read_all(open_decompressed(io.BytesIO(small + small), Compression.LZ4)) == DATA * 2


def test_lz4_legacy_cut_or_corrupt_is_a_truncated_layer() -> None:
    blob = _lz4_legacy(DATA)
    with pytest.raises(TruncatedLayer, match="lz4 stream ends early"):
        _read_all(open_decompressed(io.BytesIO(blob[: len(blob) // 2]), Compression.LZ4))
    # A block whose size field is honest but whose data is cut: liblz4 refuses the block.
    (block,) = _legacy_blocks(blob)
    cut = blob[:4] + (len(block) - 100).to_bytes(4, "little") + block[:-100]
    with pytest.raises(TruncatedLayer, match="corrupt lz4 data"):
        _read_all(open_decompressed(io.BytesIO(cut), Compression.LZ4))
    # A back-reference before the start of the block.
    bad = bytes([0x10]) + b"a" + (5).to_bytes(2, "little") + bytes([0x30]) + b"end"
    forged = blob[:4] + len(bad).to_bytes(4, "little") + bad
    with pytest.raises(TruncatedLayer, match="corrupt lz4 data"):
        _read_all(open_decompressed(io.BytesIO(forged), Compression.LZ4))


def test_lz4_legacy_block_decoding_past_the_block_size_is_refused() -> None:
    # One block of 9 MiB of zeros: valid LZ4, but the legacy format's blocks hold at most 8 MiB
    # (`lz4 -l` cannot write one, so the test's own encoder does).
    oversized = lz4.block.compress(bytes(9 << 20), store_size=False)
    forged = b"\x02\x21\x4c\x18" + len(oversized).to_bytes(4, "little") + oversized
    with pytest.raises(TruncatedLayer, match="corrupt lz4 data"):
        _read_all(open_decompressed(io.BytesIO(forged), Compression.LZ4))


def test_lz4_legacy_decodes_at_the_speed_of_a_c_decoder() -> None:
    # A ratio of CPU times on one machine, not a time limit: liblz4 decodes faster than zlib
    # inflates the same bytes; the pure-Python decoder it replaced was 70x slower on code-like
    # data (short matches, as in the binaries of an initrd).
    data = boot.filler(4 << 20, 3)
    lz4_blob, gzip_blob = _lz4_legacy(data), gzip.compress(data, mtime=0)
    lz4_cpu = cpu_seconds(lambda: _read_all(open_decompressed(io.BytesIO(lz4_blob), Compression.LZ4)))
    gzip_cpu = cpu_seconds(lambda: _read_all(open_decompressed(io.BytesIO(gzip_blob), Compression.GZIP)))
    assert lz4_cpu < 3 * gzip_cpu, f"lz4 {lz4_cpu:.3f} s of CPU, gzip {gzip_cpu:.3f} s"


MEMORY = 256 << 20


def test_an_lzma_header_cannot_make_liblzma_allocate_gigabytes() -> None:
    # An lzma header names its dictionary size, up to 4 GiB, which liblzma allocates before
    # decoding and then fills: refused over LZMA_MEMLIMIT instead of taking the memory.
    blob = lzma.compress(b"boot me " * 1000, format=lzma.FORMAT_ALONE)
    forged = blob[:1] + (0xFF000000).to_bytes(4, "little") + blob[5:]
    assert sniff(forged) is Compression.LZMA
    got = outcome(
        lambda: _read_all(open_decompressed(io.BytesIO(forged), Compression.LZMA)), memory=256 << 20
    )
    assert isinstance(got, TruncatedLayer) and "Memory usage limit" in str(got)
    xz = bytearray(
        lzma.compress(b"x", format=lzma.FORMAT_XZ, filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 30}])
    )
    got = outcome(
        lambda: _read_all(open_decompressed(io.BytesIO(bytes(xz)), Compression.XZ)), memory=256 << 20
    )
    assert isinstance(got, TruncatedLayer), got


# --- peeking ---------------------------------------------------------------------------------


class _Trickle:
    """A non-seekable stream that hands out at most 3 bytes per read, like a slow socket."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, n: int = -1) -> bytes:
        n = 3 if n < 0 else min(n, 3)
        out, self._data = self._data[:n], self._data[n:]
        return out


def test_peekable_reader_loses_nothing() -> None:
    reader = PeekableReader(_Trickle(b"0123456789"))
    assert reader.peek(6) == b"012345"
    assert reader.peek(2) == b"01"
    assert reader.read(4) == b"0123"
    buf = bytearray(10)
    assert reader.readinto(buf) == 2 and buf[:2] == b"45"
    rest = b""
    while chunk := reader.read(10):
        rest += chunk
    assert rest == b"6789"
    reader = PeekableReader(_Trickle(b"abc"))
    assert reader.peek(10) == b"abc"  # EOF: fewer than asked
    assert reader.read(-1) == b"abc"
    assert reader.read(5) == b""


def test_decoders_pull_from_a_peeked_trickling_stream() -> None:
    blob = compress(DATA[:5000], "zstd", frames=2)
    reader = PeekableReader(_Trickle(blob))
    assert sniff(reader.peek(6)) is Compression.ZSTD
    assert _read_all(open_decompressed(reader, Compression.ZSTD)) == DATA[:5000]
