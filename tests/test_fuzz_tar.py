"""Fuzzing the tar header walker (layer.read_tar) and the overlay fed by it.

Seeds are real tars from the repo's LayerBuilder (pax, GNU long names and base-256 numbers,
ustar prefixes, xattrs, whiteouts, hardlinks) and hand-written headers for what tarfile does not
write (old GNU sparse maps, global pax headers).  Hypothesis mutates them (flip, overwrite,
insert, delete, truncate; header number fields set to huge octal, base-256 or garbage; type
flags swapped) and, most of the time, re-seals the header checksums so that the mutation reaches
past the checksum test.  Every outcome must be a listing or an OcibootError, within the bounds
of tests/support/fuzzing.py; walking is linear in members, in pax records and in global pax headers.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ociboot.errors import LayerError
from ociboot.fs.node import Entry
from ociboot.fs.overlay import flatten
from ociboot.layer import BLOCK, AnalyzeSpec, CaptureSpec, MemberReader, read_tar, tarwalk
from tests.support.fuzzing import assert_linear, assert_memory_linear, outcome, peak_memory
from tests.support.imagebuilder import MTIME, LayerBuilder
from tests.test_tarwalk import raw_header as header

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def seal(block: bytes) -> bytes:
    """The block with its header checksum recomputed (POSIX: the field counted as spaces)."""
    hdr = bytearray(block)
    hdr[148:156] = b"        "
    hdr[148:156] = b"%06o\0 " % sum(hdr)
    return bytes(hdr)


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def pax_record(key: bytes, value: bytes) -> bytes:
    """`"%d %s=%s\\n"` with the length counting its own digits."""
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def extended(typeflag: bytes, data: bytes) -> bytes:
    return header(b"././@PaxHeader", typeflag, len(data)) + padded(data)


def member(name: bytes, data: bytes = b"", typeflag: bytes = b"0") -> bytes:
    return header(name, typeflag, len(data)) + padded(data)


END = bytes(2 * BLOCK)


def _seeds() -> list[bytes]:
    big = 8**8 + 5  # past 7 octal digits: tarfile's GNU format writes base-256
    pax = (
        LayerBuilder()
        .dir("boot")
        .file("boot/vmlinuz-6.1", b"kernel" * 100, xattrs={"security.capability": b"\x01\x00\x00\x02"})
        .symlink("boot/vmlinuz", "vmlinuz-6.1")
        .hardlink("boot/again", "boot/vmlinuz-6.1")
        .file("usr/" + "n" * 150 + "/long", b"x")
        .whiteout("etc/gone")
        .opaque("var")
        .device("dev/null")
        .fifo("run/fifo")
        .tar()
    )
    gnu = io.BytesIO()
    with tarfile.open(fileobj=gnu, mode="w", format=tarfile.GNU_FORMAT) as tf:
        info = tarfile.TarInfo("usr/" + "g" * 150 + "/file")
        info.size, info.uid, info.gid, info.mtime = 3, big, big, MTIME
        tf.addfile(info, io.BytesIO(b"abc"))
        link = tarfile.TarInfo("s")
        link.type, link.linkname = tarfile.SYMTYPE, "t" * 200
        tf.addfile(link)
    ustar = io.BytesIO()
    with tarfile.open(fileobj=ustar, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        info = tarfile.TarInfo("p" * 120 + "/" + "n" * 90)
        info.size = 1
        tf.addfile(info, io.BytesIO(b"z"))
    # Old GNU sparse: real size at 483, 'isextended' at 482, one extension block.
    sparse = header(b"sparse.img", b"S", 512, magic=b"ustar  \0", extra=b"\x01" + b"%011o\0" % 1_000_000)
    sparse += bytes(BLOCK) + bytes(BLOCK)  # the extension block (no further), then the data
    pax_sparse = extended(
        b"x", pax_record(b"GNU.sparse.size", b"4096") + pax_record(b"GNU.sparse.name", b"s")
    )
    global_pax = extended(b"g", pax_record(b"uname", b"global") + pax_record(b"SCHILY.xattr.user.g", b"v"))
    return [
        pax,
        gnu.getvalue(),
        ustar.getvalue(),
        sparse + member(b"after") + END,
        pax_sparse + member(b"sparse-pax", bytes(BLOCK)) + END,
        global_pax + member(b"a", b"1") + extended(b"x", pax_record(b"uname", b"")) + member(b"b") + END,
    ]


SEEDS = _seeds()

# Header fields holding numbers: mode, uid, gid, size, mtime, checksum, devmajor, devminor.
NUMBER_FIELDS = [(100, 8), (108, 8), (116, 8), (124, 12), (136, 12), (148, 8), (329, 8), (337, 8)]
NUMBERS = st.one_of(
    st.integers(0, 8**11 - 1).map(lambda n: b"%011o\0" % n),
    st.integers(0, 2**88 - 1).map(lambda n: bytes([0x80]) + n.to_bytes(11, "big")),  # base-256
    st.integers(-(2**80), -1).map(lambda n: n.to_bytes(12, "big", signed=True)),  # base-256 < 0
    st.binary(min_size=1, max_size=12),
    st.just(b" 777 \0"),
)


@dataclass
class Mutated:
    data: bytes

    def __repr__(self) -> str:  # hypothesis prints the failing input: keep it short
        return f"Mutated({len(self.data)} bytes, head={self.data[:64]!r})"


@st.composite
def mutated_tars(draw: Any) -> Mutated:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "number", "type"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        block = pos - pos % BLOCK
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[pos : pos + len(chunk)] = chunk
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=BLOCK + 1))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 2 * BLOCK))]
        elif op == "truncate":
            del data[pos:]
        elif op == "number" and len(data) >= block + BLOCK:
            offset, width = draw(st.sampled_from(NUMBER_FIELDS))
            value = draw(NUMBERS)[:width].ljust(width, b"\0")
            data[block + offset : block + offset + width] = value
        elif op == "type" and len(data) >= block + BLOCK:
            data[block + 156] = draw(st.sampled_from(b"0123456 7xgLKSVMDN\0"))
    if draw(st.booleans()):
        for start in range(0, len(data) - BLOCK + 1, BLOCK):
            if data[start + 257 : start + 262] == b"ustar":
                data[start : start + BLOCK] = seal(bytes(data[start : start + BLOCK]))
    return Mutated(bytes(data))


def _read_all(entry: Entry, reader: MemberReader) -> int:
    total = 0
    while chunk := reader.read(7000):
        total += len(chunk)
    return total


@dataclass(frozen=True)
class _Layer:
    name: str
    entries: tuple[Entry, ...]
    captured: dict[str, bytes]


def walk_and_flatten(data: bytes) -> object:
    listing = read_tar(
        io.BytesIO(data),
        name="fuzz",
        capture=CaptureSpec({"*": 1024}),
        analyze=AnalyzeSpec({"boot/*": _read_all}),
    )
    tree = flatten([_Layer("fuzz", listing.entries, dict(listing.captured))])
    return len(list(tree.walk("/")))


@FUZZ
@given(mutated_tars())
def test_mutated_tars_are_read_or_refused(tar: Mutated) -> None:
    outcome(lambda: walk_and_flatten(tar.data))


@FUZZ
@given(st.binary(max_size=3 * BLOCK))
def test_random_bytes_are_read_or_refused(data: bytes) -> None:
    outcome(lambda: walk_and_flatten(data))


PAX_KEYS = st.sampled_from(
    [b"path", b"linkpath", b"size", b"uid", b"gid", b"mtime", b"uname", b"gname", b"GNU.sparse.size",
     b"GNU.sparse.realsize", b"GNU.sparse.name", b"SCHILY.xattr.user.x", b"comment", b""]
)  # fmt: skip
PAX_VALUES = st.one_of(
    st.binary(max_size=40),
    st.integers(-(10**30), 10**30).map(lambda n: str(n).encode()),
    st.sampled_from([b"../../etc/passwd", b"/", b".", b"1.5", b"-", b"\xff\xfe", b"9" * 400]),
)


@st.composite
def pax_headers(draw: Any) -> bytes:
    records = []
    for _ in range(draw(st.integers(0, 8))):
        record = pax_record(draw(PAX_KEYS), draw(PAX_VALUES))
        if draw(st.integers(0, 4)) == 0:  # a length that lies, or a record cut short
            record = draw(st.sampled_from([b"%d" % draw(st.integers(-5, 10**9)), b""])) + record.lstrip(
                b"0123456789"
            )
        records.append(record)
    data = b"".join(records) + draw(st.sampled_from([b"", b"\0" * 10, b"junk"]))
    kind = draw(st.sampled_from([b"x", b"g"]))
    typeflag = draw(st.sampled_from([b"0", b"1", b"2", b"5", b"S"]))
    return extended(kind, data) + member(b"m", b"data", typeflag) + END


@FUZZ
@given(pax_headers())
def test_pax_records_are_read_or_refused(tar: bytes) -> None:
    outcome(lambda: walk_and_flatten(tar))


# --- linear time ---------------------------------------------------------------------------------


def _run(data: bytes) -> Any:
    return lambda: read_tar(io.BytesIO(data), name="fuzz")


def test_walk_is_linear_in_members() -> None:
    def make(n: int) -> Any:
        return _run(b"".join(member(b"d/f%d" % i, b"x" * (i % 600)) for i in range(n)) + END)

    assert_linear(make, 500, what="tar walk over members")


def test_walk_is_linear_in_gnu_long_names() -> None:
    def make(n: int) -> Any:
        long = b"l" * 300
        body = b"".join(
            header(b"././@LongLink", b"L", len(long) + i % 7)
            + padded(long + b"x" * (i % 7))
            + member(b"short")
            for i in range(n)
        )
        return _run(body + END)

    assert_linear(make, 300, what="tar walk over GNU long names")


def test_walk_is_linear_in_pax_records() -> None:
    # Records spread over consecutive 'x' headers (each under the per-header cap) all apply to
    # one member.
    def make(n: int) -> Any:
        per = 1000
        chunks = [
            extended(
                b"x",
                b"".join(pax_record(b"SCHILY.xattr.user.%d" % i, b"v") for i in range(j, min(n, j + per))),
            )
            for j in range(0, n, per)
        ]
        return _run(b"".join(chunks) + member(b"m") + END)

    assert_linear(make, 2000, what="pax records of one member")


def test_walk_is_linear_in_one_pax_record_size() -> None:
    def make(n: int) -> Any:
        return _run(extended(b"x", pax_record(b"comment", b"c" * n)) + member(b"m") + END)

    assert_linear(make, 1 << 12, what="one pax record's size")


def global_then_members(n: int) -> bytes:
    """A global pax header of n records (xattrs and a keyword), then n plain members."""
    records = b"".join(pax_record(b"SCHILY.xattr.user.%d" % i, b"v") for i in range(n))
    return (
        extended(b"g", records + pax_record(b"uname", b"g"))
        + b"".join(member(b"f%d" % i) for i in range(n))
        + END
    )


def test_walk_is_linear_in_global_pax_records_times_members() -> None:
    # Global records were merged into every later member: a 4 MB layer took 33 s.
    assert_linear(lambda n: _run(global_then_members(n)), 200, what="global pax records x members")


def test_global_pax_records_are_not_copied_into_every_entry() -> None:
    data = global_then_members(2000)
    assert_memory_linear(_run(data), len(data), multiple=4, what="global pax records x members")


def test_walk_is_linear_in_a_sparse_map() -> None:
    def make(n: int) -> Any:
        extension = bytearray(BLOCK)
        extension[504] = 1
        blocks = bytes(extension) * (n - 1) + bytes(BLOCK)
        first = header(b"sparse.img", b"S", 0, magic=b"ustar  \0", extra=b"\x01" + b"%011o\0" % 10**9)
        return _run(first + blocks + member(b"after") + END)

    assert_linear(make, 1000, what="an old GNU sparse map")


# --- bounded memory ------------------------------------------------------------------------------


def test_captures_past_the_index_budget_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # 1 MiB of zeros per member compresses to about 1 KB: a few MB of blob were GBs of captures.
    monkeypatch.setattr(tarwalk, "MAX_INDEX_BYTES", 8 << 20)
    data = b"".join(member(b"oem/f%d" % i, bytes(1 << 20)) for i in range(16)) + END
    capture = CaptureSpec({"oem/*": 1 << 20})

    def run() -> None:
        read_tar(io.BytesIO(data), name="layer L", capture=capture)

    with pytest.raises(LayerError, match=f"layer L: its index would hold more than {8 << 20} bytes"):
        run()
    assert peak_memory(run) < 10 << 20


def test_names_past_the_index_budget_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tarwalk, "MAX_INDEX_BYTES", 8 << 20)
    data = b"".join(
        extended(b"x", pax_record(b"path", b"%04d" % i + b"n" * 4000)) + member(b"m") for i in range(4000)
    )
    with pytest.raises(LayerError, match="would hold more than"):
        read_tar(io.BytesIO(data + END), name="layer L")
