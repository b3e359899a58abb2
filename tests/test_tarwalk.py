"""The tar header walker (layer.read_tar) on real tar streams: formats, names, captures, hostile input."""

from __future__ import annotations

import io
import tarfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ociboot.errors import TruncatedLayer, UnsafePath
from ociboot.fs.node import Entry, Kind
from ociboot.layer import NOT_WANTED, AnalyzeSpec, CaptureSpec, TarListing, normalize_path, read_tar
from ociboot.layer.select import any_matcher
from tests.support.imagebuilder import MTIME, LayerBuilder


def walk(tar: bytes, capture: CaptureSpec | None = None) -> TarListing:
    return read_tar(io.BytesIO(tar), name="layer L", capture=capture)


def paths(tar: bytes) -> list[str]:
    return [e.path for e in walk(tar).entries]


def _tar(
    members: list[tuple[tarfile.TarInfo, bytes | None]], fmt: int = tarfile.PAX_FORMAT, **kw: object
) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, **kw) as tf:  # type: ignore[call-overload]
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname, info.mtime = kind, size, linkname, MTIME
    return info


def raw_header(
    name: bytes, typeflag: bytes, size: int, *, magic: bytes = b"ustar\x0000", extra: bytes = b""
) -> bytes:
    """A header written by hand, for forms tarfile does not write (V7, GNU sparse, odd types)."""
    hdr = bytearray(512)
    hdr[0 : len(name)] = name
    hdr[100:108] = b"0000644\0"
    hdr[108:116] = hdr[116:124] = b"0000000\0"
    hdr[124:136] = b"%011o\0" % size
    hdr[136:148] = b"%011o\0" % MTIME
    hdr[156:157] = typeflag
    hdr[257:265] = magic
    hdr[482 : 482 + len(extra)] = extra
    hdr[148:156] = b"        "
    hdr[148:156] = b"%06o\0 " % sum(hdr)
    return bytes(hdr)


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [99, 101, 256, 1000])
def test_pax_long_names_and_link_targets(length: int) -> None:
    long = "/".join(["d" * 40] * (length // 41)) + "/" + "f" * (length - 41 * (length // 41))
    target = "t" * (length + 7)
    tar = LayerBuilder().file(long, b"data").symlink("link", target).hardlink("hl", long).tar()
    entries = walk(tar).entries
    assert [e.path for e in entries] == [long, "link", "hl"]
    assert entries[1].linkname == target and entries[2].linkname == long


def test_gnu_long_names_and_long_link_names() -> None:
    long = "usr/" + "n" * 150 + "/file"
    tar = _tar(
        [(_info(long, size=3), b"abc"), (_info("s", tarfile.SYMTYPE, linkname="x" * 200), None)],
        tarfile.GNU_FORMAT,
    )
    assert b"././@LongLink" in tar  # really the GNU 'L'/'K' records
    listing = walk(tar, CaptureSpec({"usr/*": None}))
    assert [e.path for e in listing.entries] == [long, "s"]
    assert listing.entries[1].linkname == "x" * 200
    assert listing.captured == {long: b"abc"}


def test_ustar_prefix_field() -> None:
    name = "p" * 120 + "/" + "n" * 90
    tar = _tar([(_info(name, size=1), b"z")], tarfile.USTAR_FORMAT)
    assert tar[345:350] == b"ppppp"  # the name was split into prefix + name
    assert paths(tar) == [name]


def test_gnu_magic_does_not_read_atime_as_a_prefix() -> None:
    hdr = raw_header(b"file", b"0", 0, magic=b"ustar  \0", extra=b"")
    hdr = bytearray(hdr)
    hdr[345:357] = b"14715734046\0"  # GNU atime lives where POSIX has the prefix
    hdr[148:156] = b"        "
    hdr[148:156] = b"%06o\0 " % sum(hdr)
    assert paths(bytes(hdr) + bytes(1024)) == ["file"]


@pytest.mark.parametrize("prefix", ["./", "/", "//", "./././"])
def test_prefixes_and_root_entries_are_normalised(prefix: str) -> None:
    tar = (
        LayerBuilder(prefix=prefix)
        .raw(_info(prefix.rstrip("/") or "/", tarfile.DIRTYPE))
        .dir("etc")
        .file("etc/passwd", "root:x:0:0")
        .hardlink("etc/passwd-", "etc/passwd")
        .tar()
    )
    entries = walk(tar).entries
    assert [(e.path, e.kind) for e in entries] == [
        ("", Kind.DIR),
        ("etc", Kind.DIR),
        ("etc/passwd", Kind.FILE),
        ("etc/passwd-", Kind.HARDLINK),
    ]
    assert entries[3].linkname == "etc/passwd"


def test_symlink_targets_stay_raw() -> None:
    tar = LayerBuilder().symlink("a", "../../etc//passwd").symlink("b", "/abs/./x").tar()
    assert [e.linkname for e in walk(tar).entries] == ["../../etc//passwd", "/abs/./x"]


@pytest.mark.parametrize("name", ["../etc/shadow", "a/../../b", "./..", "a/.."])
def test_dotdot_names_are_unsafe(name: str) -> None:
    tar = _tar([(_info(name, size=1), b"x")])
    with pytest.raises(UnsafePath, match=r"layer L: member name .* contains '\.\.'"):
        walk(tar)


def test_dotdot_hardlink_target_is_unsafe() -> None:
    tar = _tar([(_info("h", tarfile.LNKTYPE, linkname="../../etc/shadow"), None)])
    with pytest.raises(UnsafePath, match="etc/shadow"):
        walk(tar)


@pytest.mark.parametrize("name", [".", "/", "./"])
def test_a_file_cannot_replace_the_root(name: str) -> None:
    with pytest.raises(UnsafePath, match="root directory"):
        walk(_tar([(_info(name, size=1), b"x")]))


def test_invalid_utf8_names_survive_byte_exact() -> None:
    raw = b"caf\xe9/\xff\xfe"
    tar = raw_header(raw, b"0", 0) + bytes(1024)
    (entry,) = walk(tar).entries
    assert entry.path.encode("utf-8", "surrogateescape") == raw


def test_utf8_names_through_pax() -> None:
    assert paths(LayerBuilder().file("usr/share/日本/café", b"").tar()) == ["usr/share/日本/café"]


def test_normalize_path_cases() -> None:
    assert normalize_path("a//b/./c/", "L") == "a/b/c"
    assert normalize_path("./", "L") == normalize_path(".", "L") == normalize_path("/", "L") == ""
    assert normalize_path(".bashrc", "L") == ".bashrc"
    assert normalize_path("a/..b", "L") == "a/..b"  # not a '..' part


# --- members ---------------------------------------------------------------------------------


def test_duplicates_are_kept_in_order_and_captures_follow_the_last() -> None:
    tar = (
        LayerBuilder()
        .file("etc/motd", "first")
        .file("etc/motd", "second")
        .file("etc/hosts", "h1")
        .symlink("etc/hosts", "/dev/null")
        .tar()
    )
    listing = walk(tar, CaptureSpec({"etc/*": None}))
    assert [(e.path, e.kind) for e in listing.entries] == [
        ("etc/motd", Kind.FILE),
        ("etc/motd", Kind.FILE),
        ("etc/hosts", Kind.FILE),
        ("etc/hosts", Kind.SYMLINK),
    ]
    assert listing.captured == {"etc/motd": b"second"}  # the symlink replaced the hosts bytes
    assert listing.complete == frozenset({"etc/motd"})


def test_binary_xattrs_round_trip_exactly() -> None:
    cap = b"\x01\x00\x00\x02\n\x00\x00\x00=\x00\xff\n"
    tar = (
        LayerBuilder()
        .file("usr/bin/ping", b"ELF", xattrs={"security.capability": cap, "user.x": b"a=b"})
        .tar()
    )
    (entry,) = walk(tar).entries
    assert dict(entry.xattrs) == {"security.capability": cap, "user.x": b"a=b"}


def test_devices_fifos_and_header_fields() -> None:
    tar = (
        LayerBuilder()
        .device("dev/null", char=True, major=1, minor=3)
        .device("dev/sda", char=False, major=8, minor=0)
    )
    tar = tar.fifo("run/initctl").file("etc/shadow", "x", mode=0o640, uid=42, gid=4242).tar()
    null, sda, fifo, shadow = walk(tar).entries
    assert (null.kind, null.devmajor, null.devminor, null.mode) == (Kind.CHAR, 1, 3, 0o666)
    assert (sda.kind, sda.devmajor, sda.devminor) == (Kind.BLOCK, 8, 0)
    assert fifo.kind is Kind.FIFO and fifo.size == 0
    assert (shadow.mode, shadow.uid, shadow.gid, shadow.mtime, shadow.size) == (0o640, 42, 4242, MTIME, 1)


def test_base256_numbers() -> None:
    info = _info("big", size=2)
    info.uid, info.gid = 1 << 30, 1 << 33  # beyond 7 octal digits: GNU writes base-256
    tar = _tar([(info, b"hi")], tarfile.GNU_FORMAT)
    assert tar[108] & 0x80
    (entry,) = walk(tar).entries
    assert (entry.uid, entry.gid, entry.size) == (1 << 30, 1 << 33, 2)


def test_pax_overrides_and_global_headers() -> None:
    info = _info("f", size=1)
    info.mtime = 1700000000.75  # a fractional mtime goes to pax
    info.pax_headers = {"uname": "local"}
    plain = _info("g")
    plain.uname = "ustar-field"
    tar = _tar([(info, b"x"), (plain, b"")], pax_headers={"uname": "global", "comment": "git"})
    first, second = walk(tar).entries
    assert (first.uname, first.mtime) == ("local", 1700000000)  # 'x' beats 'g'
    assert second.uname == "global"  # 'g' applies to every later member, over the ustar field
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        assert [m.uname for m in tf.getmembers()] == ["local", "global"]


def test_pax_empty_value_undefines_a_global_keyword() -> None:
    info = _info("f")
    info.pax_headers = {"uname": ""}
    tar = _tar([(info, b"")], pax_headers={"uname": "global"})
    (entry,) = walk(tar).entries
    assert entry.uname == ""  # back to the ustar field, which tarfile left empty


def test_v7_directory_and_unknown_types() -> None:
    tar = (
        raw_header(b"olddir/", b"\0", 0, magic=bytes(8))
        + raw_header(b"weird", b"Z", 5)
        + b"12345".ljust(512, b"\0")
        + raw_header(b"after", b"0", 0)
        + bytes(1024)
    )
    listing = walk(tar)
    assert [(e.path, e.kind) for e in listing.entries] == [
        ("olddir", Kind.DIR),
        ("weird", Kind.FILE),
        ("after", Kind.FILE),
    ]
    assert listing.notes == ("member 'weird' has unknown type b'Z': read as a regular file",)


def test_old_gnu_sparse_is_kept_as_metadata() -> None:
    # 'S' header: isextended=1 at 482, real size at 483; one extension block, then 512 data bytes.
    extra = b"\x01" + b"%011o\0" % 1_000_000
    tar = (
        raw_header(b"sparse.img", b"S", 512, magic=b"ustar  \0", extra=extra)
        + bytes(512)  # extension block with isextended = 0
        + b"D" * 512
        + raw_header(b"next", b"0", 0)
        + bytes(1024)
    )
    listing = walk(tar, CaptureSpec({"*": None}))
    assert [(e.path, e.kind, e.size) for e in listing.entries] == [
        ("sparse.img", Kind.FILE, 1_000_000),
        ("next", Kind.FILE, 0),
    ]
    assert "sparse.img" not in listing.captured
    assert any("GNU sparse" in n for n in listing.notes)


def test_header_only_types_carry_no_data_whatever_their_size_says() -> None:
    tar = raw_header(b"d/", b"5", 1024) + raw_header(b"f", b"0", 0) + bytes(1024)
    assert [(e.path, e.size) for e in walk(tar).entries] == [("d", 0), ("f", 0)]


def test_offsets_point_at_member_data() -> None:
    tar = LayerBuilder().file("a", b"A" * 700).file("b" * 150, b"BBB").tar()
    a, b = walk(tar).entries
    assert tar[a.offset : a.offset + 700] == b"A" * 700
    assert tar[b.offset : b.offset + 3] == b"BBB"


# --- end of archive and hostile input --------------------------------------------------------


def test_end_of_archive_forms() -> None:
    body = LayerBuilder().file("a", "x").tar(end_blocks=False)
    assert walk(body + bytes(1024)).notes == ()
    assert walk(body + bytes(1024) + b"junk after the end").notes == ()  # not read, only drained
    assert walk(body + bytes(512)).notes == (
        "only one end-of-archive block (accepted, as Go's archive/tar does)",
    )
    assert "no end-of-archive blocks" in walk(body).notes[0]
    assert walk(b"").notes == ("empty stream read as an empty tar",)
    assert walk(bytes(1024)).entries == ()


def test_zero_block_followed_by_a_header_is_not_a_tar() -> None:
    body = LayerBuilder().file("a", "x").tar(end_blocks=False)
    with pytest.raises(TruncatedLayer, match="zero block at offset 1024 is followed by data"):
        walk(body + bytes(512) + body)


def test_bad_checksum_is_not_a_tar() -> None:
    tar = bytearray(LayerBuilder().file("a", "x").file("b", "y").tar())
    tar[1024 + 10] ^= 1  # second header
    with pytest.raises(
        TruncatedLayer, match=r"layer L: not a tar: bad header checksum at offset 1024 \(after member 'a'\)"
    ):
        walk(bytes(tar))
    with pytest.raises(TruncatedLayer, match="bad header checksum at offset 0"):
        walk(b"this is not a tar".ljust(4096, b"!"))


def test_a_checksum_field_seen_before_is_still_summed() -> None:
    # "ab" and "ba" have the same byte sum, so both headers state the same checksum field: the
    # walker parses that field once, but must still sum every header it reads.
    tar = bytearray(LayerBuilder().file("ab", "x").file("ba", "x").tar())
    assert tar[148:156] == tar[1024 + 148 : 1024 + 156]
    assert paths(bytes(tar)) == ["ab", "ba"]
    tar[1024 + 1] = ord("b")  # "bb": same checksum field, a different sum
    with pytest.raises(TruncatedLayer, match="bad header checksum at offset 1024"):
        walk(bytes(tar))


def test_stream_ending_inside_a_header_or_extended_header() -> None:
    tar = LayerBuilder().file("a", "x").file("b" * 200, "y").tar()
    with pytest.raises(TruncatedLayer, match="inside a tar header at offset 1024"):
        walk(tar[:1100])
    with pytest.raises(TruncatedLayer, match="inside the extended header"):
        walk(tar[: 1536 + 10])
    with pytest.raises(TruncatedLayer, match="after an extended header"):
        walk(tar[:2048])


def test_malformed_pax_record() -> None:
    body = b"99 path=x\n"
    tar = raw_header(b"././@PaxHeader", b"x", len(body)) + body.ljust(512, b"\0") + raw_header(b"f", b"0", 0)
    with pytest.raises(TruncatedLayer, match="malformed pax record at offset 0"):
        walk(tar + bytes(1024))


@pytest.mark.parametrize("size", [-1, -512, -1024])
def test_negative_sizes_are_refused_not_walked_backwards(size: int) -> None:
    # A base-256 size of -512 once sent the walker back onto the same header, forever.
    hdr = bytearray(raw_header(b"g", b"0", 0))
    hdr[124:136] = size.to_bytes(12, "big", signed=True)
    hdr[148:156] = b"        "
    hdr[148:156] = b"%06o\0 " % sum(hdr)
    with pytest.raises(TruncatedLayer, match=f"negative size {size} in the tar header at offset 0"):
        walk(bytes(hdr) + LayerBuilder().file("a", "x").tar())
    record = b" size=%d\n" % size
    body = b"%d" % (len(record) + 2) + record  # the length counts its own two digits
    pax = raw_header(b"././@PaxHeader", b"x", len(body)) + body.ljust(512, b"\0")
    with pytest.raises(TruncatedLayer, match=f"negative pax size {size} for the member at offset 1024"):
        walk(pax + raw_header(b"f", b"0", 0) + bytes(1024), CaptureSpec({"f": None}))


# --- captures --------------------------------------------------------------------------------


def test_capture_caps_complete_and_largest_cap_wins() -> None:
    tar = (
        LayerBuilder()
        .file("boot/vmlinuz", b"K" * 5000)
        .file("boot/config", b"C" * 10)
        .file("var/lib/dpkg/status", b"S" * 3000)
        .file("usr/bin/sh", b"ELF")
        .tar()
    )
    spec = CaptureSpec({"/boot/*": 100, "boot/vm*": 1000, "var/lib/dpkg/status": None})
    listing = walk(tar, spec)
    assert listing.captured == {
        "boot/vmlinuz": b"K" * 1000,
        "boot/config": b"C" * 10,
        "var/lib/dpkg/status": b"S" * 3000,
    }
    assert listing.complete == frozenset({"boot/config", "var/lib/dpkg/status"})


def test_capture_spec_is_a_hashable_value() -> None:
    a = CaptureSpec({"boot/*": 10, "etc/os-release": None})
    b = CaptureSpec([("etc/os-release", None), ("./boot/*", 10)])
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert (a | CaptureSpec({"boot/*": 20})).cap("boot/x") == 20
    assert (a | CaptureSpec({"boot/*": None})).cap("boot/x") is None
    assert a.cap("usr/bin/sh") == NOT_WANTED and not CaptureSpec() and a
    with pytest.raises(ValueError, match="negative"):
        CaptureSpec({"x": -5})


def test_capture_exact_takes_names_literally() -> None:
    spec = CaptureSpec.exact("/srv/[weird]*?.txt")
    assert spec.cap("srv/[weird]*?.txt") is None
    assert spec.cap("srv/w.txt") == NOT_WANTED
    tar = LayerBuilder().file("srv/[weird]*?.txt", b"yes").file("srv/w.txt", b"no").tar()
    assert walk(tar, spec).captured == {"srv/[weird]*?.txt": b"yes"}


def _length(entry: Entry, reader: io.RawIOBase, budget: object) -> int:
    return len(reader.read())


def test_analyze_exact_takes_names_literally() -> None:
    spec = AnalyzeSpec.exact("/srv/[weird]*?.txt", _length)
    assert spec.analyzer("srv/[weird]*?.txt") is _length
    assert spec.analyzer("srv/w.txt") is None
    tar = LayerBuilder().file("srv/[weird]*?.txt", b"yes").file("srv/w.txt", b"no").tar()
    assert read_tar(io.BytesIO(tar), analyze=spec).analyses == {"srv/[weird]*?.txt": 3}


def test_a_later_record_of_an_analyzed_path_drops_the_analysis_and_the_bytes() -> None:
    spec = AnalyzeSpec({"boot/*": _length})
    capture = CaptureSpec({"boot/*": None})
    tar = (
        LayerBuilder()
        .file("boot/initrd", b"first")
        .file("boot/vmlinuz", b"kernel")
        .dir("boot/initrd")
        .symlink("boot/vmlinuz", "x")
        .file("boot/config", b"cfg")
        .tar()
    )
    listing = read_tar(io.BytesIO(tar), capture=capture, analyze=spec)
    assert listing.analyses == {"boot/config": 3}
    assert listing.captured == {"boot/config": b"cfg"}
    assert listing.complete == frozenset({"boot/config"})


def test_a_sparse_member_is_neither_analyzed_nor_captured() -> None:
    extra = b"\x00" + b"%011o\0" % 4096
    tar = raw_header(b"boot/sparse", b"S", 512, magic=b"ustar  \0", extra=extra) + b"D" * 512 + bytes(1024)
    spec = AnalyzeSpec({"boot/*": _length})
    listing = read_tar(io.BytesIO(tar), capture=CaptureSpec({"boot/*": None}), analyze=spec)
    assert [(e.path, e.size) for e in listing.entries] == [("boot/sparse", 4096)]
    assert listing.analyses == {}
    assert listing.captured == {}


def test_any_matcher_matches_what_some_spec_selects() -> None:
    match = any_matcher(CaptureSpec({"etc/*": 10}), None, AnalyzeSpec({"boot/vmlinuz-*": _length}))
    assert match is not None
    assert match("etc/passwd") and match("boot/vmlinuz-6.1")
    assert not match("boot/initrd") and not match("usr/etc/passwd")
    assert any_matcher(CaptureSpec(), None) is None


def test_captures_do_not_apply_to_non_files() -> None:
    tar = LayerBuilder().dir("boot").symlink("boot/vmlinuz", "x").hardlink("boot/h", "boot/vmlinuz").tar()
    assert walk(tar, CaptureSpec({"boot*": None})).captured == {}


# --- against Python's tarfile ----------------------------------------------------------------

_segment = st.text(alphabet="abcé日-_.0", min_size=1, max_size=40).filter(lambda s: s not in (".", ".."))
_name = st.lists(_segment, min_size=1, max_size=8).map("/".join)
_member = st.tuples(
    _name,
    st.sampled_from(
        [
            tarfile.REGTYPE,
            tarfile.DIRTYPE,
            tarfile.SYMTYPE,
            tarfile.LNKTYPE,
            tarfile.FIFOTYPE,
            tarfile.CHRTYPE,
        ]
    ),
    st.integers(min_value=0, max_value=2000),
    _name,
)
_KIND_OF = {
    tarfile.REGTYPE: Kind.FILE,
    tarfile.DIRTYPE: Kind.DIR,
    tarfile.SYMTYPE: Kind.SYMLINK,
    tarfile.LNKTYPE: Kind.HARDLINK,
    tarfile.FIFOTYPE: Kind.FIFO,
    tarfile.CHRTYPE: Kind.CHAR,
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    members=st.lists(_member, min_size=0, max_size=12),
    fmt=st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT]),
    end_blocks=st.booleans(),
)
def test_walker_agrees_with_tarfile(
    members: list[tuple[str, bytes, int, str]], fmt: int, end_blocks: bool
) -> None:
    built = []
    for name, kind, size, link in members:
        info = _info(
            name,
            kind,
            size if kind == tarfile.REGTYPE else 0,
            link if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else "",
        )
        built.append((info, bytes([size % 251 or 1]) * info.size if kind == tarfile.REGTYPE else None))
    tar = _tar(built, fmt)
    if not end_blocks:
        # File data is never all zeros (`or 1` above), so stripping removes only end blocks.
        tar = tar.rstrip(b"\0")
        tar += b"\0" * (-len(tar) % 512)
    ours = [(e.path, e.kind, e.size, e.linkname) for e in walk(tar).entries]
    with tarfile.open(fileobj=io.BytesIO(tar + bytes(1024))) as tf:
        theirs = [(m.name, _KIND_OF[m.type], m.size, m.linkname) for m in tf.getmembers()]
    assert ours == theirs
