"""Package database readers on databases written by the real tools (fixtures/pkgdb, see
fixtures/make_pkgdb_fixtures.py), their corrupted copies, and random bytes."""

from __future__ import annotations

import contextlib
import gzip
import json
import sqlite3
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ociboot.boot.pkgdb import PKGDB_PATHS, DbKind, Package, PackageDbError, kind_of, read_packages
from ociboot.boot.pkgdb.roles import Family, Role, roles_of
from ociboot.boot.pkgdb.rpm_header import package_from_header
from ociboot.errors import ContentError
from tests.support.bdbwriter import bdb_hash
from tests.support.boltwriter import BoltWriter, branch_chain, storm_luet_db

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pkgdb"
SQLITE = "usr/lib/sysimage/rpm/rpmdb.sqlite"
NDB = "usr/lib/sysimage/rpm/Packages.db"
BDB = "var/lib/rpm/Packages"
STATUS = "var/lib/dpkg/status"
APK = "lib/apk/db/installed"
LUET = "var/cache/luet/luet.db"

SUSE = {
    ("kernel-default", "6.4.0-150600.23.7.1", "x86_64"),
    ("grub2", "2.12-150600.8.3.1", "x86_64"),
    ("systemd", "254.10-150600.4.5.1", "x86_64"),
    ("libsystemd0", "254.10-150600.4.5.1", "x86_64"),
    ("dracut", "059+suse.500.g1fe8c1e4-150600.3.6.1", "x86_64"),
}


def fixture(name: str) -> bytes:
    data = (FIXTURES / name).read_bytes()
    return gzip.decompress(data) if name.endswith(".gz") else data


def triples(packages: list[Package]) -> set[tuple[str, str, str]]:
    return {(p.name, p.evr, p.arch) for p in packages}


def flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1 :]


# --- rpm -----------------------------------------------------------------------------------


def test_rpm_sqlite_fedora_set_with_epoch() -> None:
    data = fixture("rpmdb.sqlite.gz")
    assert data[18:20] == b"\x02\x02", "rpm writes WAL mode; the reader must cope with it"
    packages = read_packages(SQLITE, data)
    assert triples(packages) == {
        ("kernel-core", "6.8.5-301.fc40", "x86_64"),
        ("grub2-efi-x64", "1:2.06-123.fc40", "x86_64"),
        ("systemd", "255.4-1.fc40", "x86_64"),
        ("systemd-libs", "255.4-1.fc40", "x86_64"),
        ("dracut", "102-1.fc40", "x86_64"),
        ("tzdata", "2024a-5.fc40", "noarch"),
    }
    grub = next(p for p in packages if p.name == "grub2-efi-x64")
    assert (grub.epoch, grub.version, grub.release, grub.source_db) == (1, "2.06", "123.fc40", SQLITE)
    assert next(p for p in packages if p.name == "dracut").epoch is None


@pytest.mark.parametrize("name", ["Packages.bdb-le", "Packages.bdb-be"])
def test_rpm_bdb_both_byte_orders(name: str) -> None:
    data = fixture(name)
    assert kind_of(BDB, data) is DbKind.RPM_BDB
    assert triples(read_packages(BDB, data)) == SUSE


def test_rpm_bdb_agrees_with_rpm_itself() -> None:
    listed = set((FIXTURES / "Packages.bdb-le.rpm-qa.txt").read_text().split())
    ours = {
        f"{p.name}-{p.version}-{p.release}.{p.arch}" for p in read_packages(BDB, fixture("Packages.bdb-le"))
    }
    assert ours == listed


def test_rpm_ndb() -> None:
    data = fixture("Packages.db")
    assert kind_of(NDB, data) is DbKind.RPM_NDB
    assert triples(read_packages(NDB, data)) == SUSE


def test_rpm_format_is_sniffed_not_named() -> None:
    # An sqlite file under the old BDB name is still read as sqlite.
    assert kind_of("var/lib/rpm/Packages", fixture("rpmdb.sqlite.gz")) is DbKind.RPM_SQLITE
    with pytest.raises(PackageDbError, match=r"var/lib/rpm/Packages: not an rpm database"):
        read_packages("/var/lib/rpm/Packages", b"\0" * 64)


@pytest.mark.parametrize(
    ("name", "path", "cut", "message"),
    [
        ("rpmdb.sqlite.gz", SQLITE, 5000, "cannot read table Packages"),
        ("Packages.db", NDB, 6000, "out of bounds|not a multiple"),
        ("Packages.bdb-le", BDB, 4096, "shorter than its"),
        ("Packages.bdb-be", BDB, 4096, "shorter than its"),
    ],
)
def test_truncated_rpm_databases(name: str, path: str, cut: int, message: str) -> None:
    with pytest.raises(PackageDbError, match=message) as info:
        read_packages(path, fixture(name)[:cut])
    assert info.value.path == path
    assert isinstance(info.value, ContentError)


def test_sqlite_damaged_text_is_not_decoded() -> None:
    # Found by hypothesis: a flipped bit inside a row made sqlite3 raise UnicodeDecodeError.
    # Turn every row's blob into TEXT that is not UTF-8: still only PackageDbError.
    data = fixture("rpmdb.sqlite.gz")
    conn = sqlite3.connect(":memory:")
    conn.deserialize(data[:18] + b"\x01\x01" + data[20:])
    conn.execute("UPDATE Packages SET blob = CAST(x'c5c5c5' AS TEXT)")
    conn.commit()
    damaged = conn.serialize()
    conn.close()
    with pytest.raises(PackageDbError, match="hnum 1: header blob of 3 bytes"):
        read_packages(SQLITE, damaged)


def test_ndb_flipped_blob_byte_fails_adler32() -> None:
    data = fixture("Packages.db")
    with pytest.raises(PackageDbError, match=r"Packages.db: pkgidx \d+: blob adler32 does not match"):
        read_packages(NDB, flip(data, 4096 + 100))


def test_ndb_bad_slot_magic() -> None:
    with pytest.raises(PackageDbError, match=r"slot at byte 48 has magic"):
        read_packages(NDB, flip(fixture("Packages.db"), 48))


def test_bdb_broken_overflow_chain() -> None:
    data = bytearray(fixture("Packages.bdb-le"))
    page_size = struct.unpack_from("<I", data, 20)[0]
    # Point the first overflow page of the file at itself: the chain loops.
    for pgno in range(1, len(data) // page_size):
        if data[pgno * page_size + 25] == 7:
            struct.pack_into("<I", data, pgno * page_size + 16, pgno)
            break
    with pytest.raises(PackageDbError, match=r"reached twice|holds"):
        read_packages(BDB, bytes(data))


def _header(tags: list[tuple[int, int, bytes, int]]) -> bytes:
    index, store = b"", b""
    for tag, typ, value, count in tags:
        while typ == 4 and len(store) % 4:
            store += b"\0"
        index += struct.pack(">IIiI", tag, typ, len(store), count)
        store += value
    return struct.pack(">II", len(tags), len(store)) + index + store


def test_rpm_header_fields_and_missing_arch() -> None:
    blob = _header([(1000, 6, b"gpg-pubkey\0", 1), (1001, 6, b"fd431d51\0", 1), (1002, 6, b"4ae0493b\0", 1)])
    assert package_from_header(blob, "db", "hnum 1") == Package(
        "gpg-pubkey", "fd431d51", "4ae0493b", "", None, "db"
    )
    with_epoch = _header(
        [(1000, 6, b"a\0", 1), (1001, 6, b"1\0", 1), (1002, 6, b"2\0", 1), (1003, 4, b"\0\0\0\x07", 1)]
    )
    assert package_from_header(with_epoch, "db", "x").epoch == 7


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"\0\0\0", "shorter than its 8-byte preamble"),
        (struct.pack(">II", 0, 0), "beyond rpm's limits"),
        (_header([(1000, 6, b"a\0", 1)]) + b"x", "8 \\+ 16\\*il"),
        (_header([(1000, 6, b"abc", 1)]), "not NUL-terminated"),
        (_header([(1000, 4, b"abcd", 1)]), "expected a string"),
        (_header([(1000, 6, b"a\0", 1)]), "no NAME, VERSION or RELEASE"),
        (_header([(1000, 6, b"\xff\0", 1), (1001, 6, b"1\0", 1), (1002, 6, b"1\0", 1)]), "not UTF-8"),
    ],
)
def test_rpm_header_corruption(blob: bytes, message: str) -> None:
    with pytest.raises(PackageDbError, match=message):
        package_from_header(blob, "var/lib/rpm/Packages", "header 3")


# --- dpkg and apk ----------------------------------------------------------------------------


def test_dpkg_status_only_installed() -> None:
    packages = read_packages(STATUS, fixture("dpkg-status"))
    names = {p.name for p in packages}
    assert "initramfs-tools" not in names  # `deinstall ok config-files`
    assert triples(packages) >= {
        ("linux-image-6.1.0-28-amd64", "6.1.119-1", "amd64"),
        ("grub-efi-amd64-bin", "2.06-13+deb12u1", "amd64"),
        ("systemd", "252.33-1~deb12u1", "amd64"),
        ("dracut-core", "059-4", "amd64"),
        ("tzdata", "2024a-0+deb12u1", "all"),
        ("base-passwd", "3.6.1", "amd64"),
    }
    assert len(packages) == 8
    pam = next(p for p in packages if p.name == "libpam0g")
    assert (pam.epoch, pam.version, pam.release) == (1, "1.5.2", "6+deb12u1")
    native = next(p for p in packages if p.name == "base-passwd")
    assert (native.version, native.release) == ("3.6.1", "")


def test_dpkg_status_d_distroless() -> None:
    got = read_packages("var/lib/dpkg/status.d/systemd", fixture("status.d/systemd"))
    assert triples(got) == {("systemd", "252.33-1~deb12u1", "amd64")}
    md5 = fixture("status.d/systemd.md5sums")
    assert read_packages("/var/lib/dpkg/status.d/systemd.md5sums", md5) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"Package: a\nVersion: 1\n", "line 1\\) has no Status field"),
        (b"Package: a\nStatus: install ok installed\nVersion: x:1\n", "epoch 'x' is not a number"),
        (
            b"Package: a\nStatus: install ok installed\nVersion: 1\nthis is not a field\n",
            "line 4: not a `Field",
        ),
        (b" continued\n", "line 1: continuation line outside a field"),
        (b"Version: 1\nStatus: install ok installed\n", "has no Package field"),
        (b"Package: a\nStatus: installed\nVersion: 1\n", "is not three words"),
    ],
)
def test_dpkg_corruption(text: bytes, message: str) -> None:
    with pytest.raises(PackageDbError, match=message):
        read_packages(STATUS, text)


def test_apk_installed() -> None:
    packages = read_packages(APK, fixture("apk-installed"))
    assert [(p.name, p.version, p.release, p.arch) for p in packages] == [
        ("linux-lts", "6.6.31", "r0", "x86_64"),
        ("grub-efi", "2.12", "r5", "x86_64"),
        ("openrc", "0.54", "r1", "x86_64"),
        ("mkinitfs", "3.10.1", "r0", "x86_64"),
        ("musl", "1.2.5", "r0", "x86_64"),
    ]
    assert read_packages("usr/lib/apk/db/installed", fixture("apk-installed")) == [
        Package(p.name, p.version, p.release, p.arch, None, "usr/lib/apk/db/installed") for p in packages
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"P:a\nnot a line\n", "line 2: not an `X:value`"),
        (b"P:a\nA:x86_64\n", "no P: \\(name\\) or V:"),
        (b"P:\xff\n", "not UTF-8"),
    ],
)
def test_apk_corruption(text: bytes, message: str) -> None:
    with pytest.raises(PackageDbError, match=message):
        read_packages(APK, text)


# --- luet ------------------------------------------------------------------------------------

LUET_FIXTURE = [
    ("system/kernel", "5.14.21-150400.24.46.1"),
    ("meta/cos-minimal", "0.8.14-1"),
    ("system/grub2-config", "0.0.14-2"),
    ("system/dracut-initrd", "0.1.0-3"),
    ("toolchain/luet", "0.32.5"),
]


def test_luet_real_bbolt_file() -> None:
    packages = read_packages(LUET, fixture("luet.db"))
    assert [(p.name, p.version) for p in packages] == LUET_FIXTURE


def _docs(count: int) -> list[dict[str, object]]:
    return [
        {
            "name": f"pkg{i:03d}",
            "category": "system",
            "version": f"1.{i}",
            "description": "x" * (i * 37 % 900),
        }
        for i in range(count)
    ]


@pytest.mark.parametrize(
    "writer",
    [
        BoltWriter(),
        BoltWriter(max_leaf_items=3, allow_inline=False),  # branch pages, two levels
        BoltWriter(page_size=1024, max_leaf_items=200),  # leaves spanning overflow pages
    ],
)
def test_luet_bbolt_layouts(writer: BoltWriter) -> None:
    docs = _docs(40)
    packages = read_packages(LUET, writer.write(storm_luet_db(docs)))
    assert [(p.name, p.version) for p in packages] == [(f"system/{d['name']}", d["version"]) for d in docs]


def test_luet_inline_bucket_and_empty_db() -> None:
    small = BoltWriter().write(storm_luet_db(_docs(1)[:1]))
    assert [p.name for p in read_packages(LUET, small)] == ["system/pkg000"]
    assert read_packages(LUET, BoltWriter().write({b"solver": {b"k": b"v"}})) == []


def test_luet_old_default_package_bucket() -> None:
    data = BoltWriter().write({b"DefaultPackage": {b"1": b"name: kernel\n"}})
    with pytest.raises(PackageDbError, match="DefaultPackage"):
        read_packages(LUET, data)


def _break_newest_meta(data: bytes) -> bytes:
    raw = bytearray(data)
    page_size = struct.unpack_from("<I", raw, 16 + 8)[0]
    txids = [struct.unpack_from("<Q", raw, off + 16 + 48)[0] for off in (0, page_size)]
    newest = 0 if txids[0] > txids[1] else page_size
    raw[newest + 16 + 56] ^= 0xFF  # the checksum no longer matches
    return bytes(raw)


def test_luet_falls_back_to_older_meta() -> None:
    # Real bbolt: the older meta is the state before the transaction that saved the packages.
    assert read_packages(LUET, _break_newest_meta(fixture("luet.db"))) == []
    # Our writer's two metas name the same tree, so the packages survive.
    data = BoltWriter().write(storm_luet_db(_docs(3)))
    assert len(read_packages(LUET, _break_newest_meta(data))) == 3


def test_luet_corruption() -> None:
    data = fixture("luet.db")
    both_metas_broken = flip(flip(data, 16), 4096 + 16)
    with pytest.raises(PackageDbError, match="not a bbolt file"):
        read_packages(LUET, both_metas_broken)
    with pytest.raises(PackageDbError, match=r"past the end|outside"):
        read_packages(LUET, data[: 3 * 4096])
    bad_json = BoltWriter().write({b"Package": {struct.pack(">q", 1): b"{not json"}})
    with pytest.raises(PackageDbError, match="Package record 0000000000000001 is not JSON"):
        read_packages(LUET, bad_json)
    not_object = BoltWriter().write({b"Package": {struct.pack(">q", 1): json.dumps([1]).encode()}})
    with pytest.raises(PackageDbError, match="not an object"):
        read_packages(LUET, not_object)


# --- dispatch, roles, properties -----------------------------------------------------------


def test_pkgdb_paths_cover_every_reader() -> None:
    for path in (
        SQLITE,
        NDB,
        BDB,
        "var/lib/rpm/rpmdb.sqlite",
        "usr/share/rpm/Packages",
        STATUS,
        "var/lib/dpkg/status.d/*",
        APK,
        "usr/lib/apk/db/installed",
        LUET,
    ):
        assert path in PKGDB_PATHS
    assert kind_of("etc/os-release", b"") is None
    with pytest.raises(PackageDbError, match="not a known package database location"):
        read_packages("etc/os-release", b"ID=x\n")


def test_roles_suse_exact_names() -> None:
    roles = roles_of(read_packages(NDB, fixture("Packages.db")), Family.SUSE)
    assert {role: [p.name for p in found] for role, found in roles.items()} == {
        Role.KERNEL: ["kernel-default"],
        Role.BOOTLOADER: ["grub2"],
        Role.INIT: ["systemd"],
        Role.INITRAMFS: ["dracut"],
        Role.TOOLKIT: [],
    }


def test_roles_library_does_not_stand_in_for_init() -> None:
    only_lib = [p for p in read_packages(NDB, fixture("Packages.db")) if p.name != "systemd"]
    assert roles_of(only_lib, Family.SUSE)[Role.INIT] == []
    fedora = [p for p in read_packages(SQLITE, fixture("rpmdb.sqlite.gz")) if p.name != "systemd"]
    assert roles_of(fedora, Family.FEDORA)[Role.INIT] == []


def test_roles_other_families() -> None:
    debian = roles_of(read_packages(STATUS, fixture("dpkg-status")), Family.DEBIAN)
    assert [p.name for p in debian[Role.KERNEL]] == ["linux-image-6.1.0-28-amd64"]
    assert [p.name for p in debian[Role.INITRAMFS]] == ["dracut-core"]
    alpine = roles_of(read_packages(APK, fixture("apk-installed")), Family.ALPINE)
    assert [p.name for p in alpine[Role.INIT]] == ["openrc"]
    luet = roles_of(read_packages(LUET, fixture("luet.db")), Family.LUET)
    assert [p.name for p in luet[Role.TOOLKIT]] == ["meta/cos-minimal", "toolchain/luet"]
    assert [p.name for p in luet[Role.KERNEL]] == ["system/kernel"]


READERS = [SQLITE, NDB, BDB, STATUS, "var/lib/dpkg/status.d/x", APK, LUET]
MAGICS = [b"", b"SQLite format 3\0", b"RpmP\0\0\0\0\0\0\0\0\x01\0\0\0", b"\0" * 12 + b"\x61\x15\x06\0"]


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(READERS), magic=st.sampled_from(MAGICS), tail=st.binary(max_size=5000))
def test_random_bytes_raise_only_package_db_error(path: str, magic: bytes, tail: bytes) -> None:
    with contextlib.suppress(PackageDbError):
        read_packages(path, magic + tail)


CORPUS = [
    (SQLITE, "rpmdb.sqlite.gz"),
    (NDB, "Packages.db"),
    (BDB, "Packages.bdb-le"),
    (BDB, "Packages.bdb-be"),
    (STATUS, "dpkg-status"),
    (APK, "apk-installed"),
    (LUET, "luet.db"),
]


@settings(max_examples=300, deadline=None)
@given(
    case=st.sampled_from(CORPUS),
    edits=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255)), max_size=4),
    cut=st.one_of(st.none(), st.integers(min_value=0)),
)
def test_mutated_fixtures_raise_only_package_db_error(
    case: tuple[str, str], edits: list[tuple[int, int]], cut: int | None
) -> None:
    path, name = case
    data = bytearray(fixture(name))
    for offset, mask in edits:
        data[offset % len(data)] ^= mask
    if cut is not None:
        del data[cut % len(data) :]
    with contextlib.suppress(PackageDbError):
        read_packages(path, bytes(data))


def test_luet_branch_chain_depth_is_bounded() -> None:
    # A forged chain of one-child branch pages: refused by depth, not by Python's recursion limit.
    data = branch_chain(3000, [{"name": "kernel", "category": "system", "version": "1"}])
    with pytest.raises(PackageDbError, match="deeper than"):
        read_packages(LUET, data)
    shallow = branch_chain(10, [{"name": "kernel", "category": "system", "version": "1"}])
    assert [p.name for p in read_packages(LUET, shallow)] == ["system/kernel"]


@pytest.mark.parametrize(
    "value", [b"[" * 100_000, b'{"name": ' + b"1" * 10_000 + b"}"], ids=["deep-array", "huge-int"]
)
def test_luet_hostile_json_is_refused(value: bytes) -> None:
    data = BoltWriter().write({b"Package": {b"\0" * 7 + b"\1": value}})
    with pytest.raises(PackageDbError, match="is not JSON"):
        read_packages(LUET, data)


def _fedora_blobs() -> list[tuple[int, bytes]]:
    data = fixture("rpmdb.sqlite.gz")
    conn = sqlite3.connect(":memory:")
    conn.deserialize(data[:18] + b"\x01\x01" + data[20:])
    try:
        return [(hnum, bytes(blob)) for hnum, blob in conn.execute("SELECT hnum, blob FROM Packages")]
    finally:
        conn.close()


@pytest.mark.parametrize("order", ["<", ">"])
def test_bdb_writer_round_trip(order: str) -> None:
    records = [(struct.pack(order + "I", hnum), blob) for hnum, blob in _fedora_blobs()]
    names = {p.name for p in read_packages(BDB, bdb_hash(records, order=order))}
    assert names == {"kernel-core", "grub2-efi-x64", "systemd", "systemd-libs", "dracut", "tzdata"}


def test_bdb_keys_sharing_one_overflow_chain_are_refused() -> None:
    # 100 keys, one chain: read once per key before, 100x the file in bytes and memory.
    blob = _fedora_blobs()[0][1]
    data = bdb_hash([(struct.pack("<I", n), blob) for n in range(1, 101)], share=True)
    with pytest.raises(PackageDbError, match="reached twice"):
        read_packages(BDB, data)


def test_ndb_slots_sharing_one_blob_are_refused() -> None:
    # Every used slot names the first slot's blob: each would be read and checksummed again.
    data = bytearray(fixture("Packages.db"))
    first = data[32 + 4 : 32 + 16]
    for offset in range(48, 4096, 16):
        data[offset : offset + 4] = b"Slot"
        data[offset + 4 : offset + 16] = first
    with pytest.raises(PackageDbError, match="overlapping blobs"):
        read_packages(NDB, bytes(data))


def _sqlite_db(*statements: str) -> bytes:
    """A database made by sqlite itself from `statements` (the hostile schema an image could ship)."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
        return conn.serialize()
    finally:
        conn.close()


ENDLESS_VIEW = (
    "CREATE VIEW Packages AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
    "SELECT i AS hnum, randomblob(64) AS blob FROM n ORDER BY blob"
)


@pytest.mark.parametrize(
    ("statements", "message"),
    [
        ((ENDLESS_VIEW,), "Packages is a view, not a table"),
        (("CREATE VIRTUAL TABLE Packages USING rtree(hnum, a, b)",), "is a virtual, not a table"),
        (
            ("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, x, blob AS (zeroblob(x)))",),
            "generated or hidden columns",
        ),
        (("CREATE TABLE Other (hnum INTEGER PRIMARY KEY, blob BLOB)",), "has no table Packages"),
        (("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, data BLOB)",), "no hnum and blob columns"),
    ],
    ids=["recursive-view", "virtual-table", "generated-column", "no-table", "no-blob-column"],
)
def test_sqlite_reads_only_a_plain_packages_table(statements: tuple[str, ...], message: str) -> None:
    # The view never finished before (and spilled its sort to /var/tmp at ~100 MB/s).
    with pytest.raises(PackageDbError, match=message):
        read_packages(SQLITE, _sqlite_db(*statements))


def _varint(data: bytes, offset: int) -> tuple[int, int]:
    value = 0
    for index in range(9):
        byte = data[offset + index]
        if index == 8:
            return (value << 8) | byte, offset + 9
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, offset + index + 1
    raise AssertionError("unreachable")


def shared_overflow_sqlite(rows: int, size: int) -> bytes:
    """An rpmdb.sqlite whose `rows` cells all point at row 1's overflow chain (sqlite file format
    §1.6: leaf table cell = payload varint, rowid varint, local bytes, first overflow page),
    with the other chains cut off the file: about one blob of file, `rows` blobs of payload."""
    page = 1024
    data = bytearray(
        _sqlite_db(
            f"PRAGMA page_size = {page}",
            "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, blob BLOB)",
            *(f"INSERT INTO Packages VALUES ({n}, zeroblob({size}))" for n in range(1, rows + 1)),
            "VACUUM",  # rewrites the rows in order: one leaf (page 2), then each row's chain
        )
    )
    leaf = 1 * page
    assert data[leaf] == 0x0D, "the table must fit one leaf page"
    usable = page - data[20]
    chains = []
    for index in range(struct.unpack_from(">H", data, leaf + 3)[0]):
        cell = leaf + struct.unpack_from(">H", data, leaf + 8 + 2 * index)[0]
        payload, at = _varint(data, cell)
        _rowid, at = _varint(data, at)
        least = (usable - 12) * 32 // 255 - 23
        local = least + (payload - least) % (usable - 4)
        local = local if local <= usable - 35 else least
        chains.append((at + local, -(-(payload - local) // (usable - 4))))
    first = struct.unpack_from(">I", data, chains[0][0])[0]
    pages = first - 1 + chains[0][1]
    for at, _length in chains:
        struct.pack_into(">I", data, at, first)
    struct.pack_into(">I", data, 28, pages)
    return bytes(data[: pages * page])


def test_sqlite_blobs_cannot_add_up_past_the_file() -> None:
    # Six cells, one 100 KB overflow chain: each cell's blob was read in full before, so the
    # bytes read grew with the number of cells, not with the file.
    data = shared_overflow_sqlite(6, 100_000)
    assert len(data) < 2 * 100_000
    with pytest.raises(PackageDbError, match="add up to 600000 bytes"):
        read_packages(SQLITE, data)
