"""Fuzzing every package-database parser (issue 7): dpkg status and status.d, apk installed, rpm
headers, Berkeley DB (both byte orders), NDB, SQLite and luet's bbolt.

Seeds are real databases (fixtures/pkgdb, written by the real tools, and the repo's writers
for shapes the tools never build); hypothesis flips, inserts, deletes and overwrites bytes
(huge lengths included), cuts them short, or feeds random bytes behind a real magic.  Each
example runs under tests/support/fuzzing.py's time and memory bound and must end in packages or a
PackageDbError.  Linear time and memory are asserted for the text formats' worst shapes.
"""

from __future__ import annotations

import gzip
import sqlite3
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ociboot.boot.pkgdb import PackageDbError, read_packages
from ociboot.boot.pkgdb.rpm_header import package_from_header
from ociboot.errors import OcibootError
from tests.support.bdbwriter import bdb_hash
from tests.support.boltwriter import BoltWriter, storm_luet_db
from tests.support.fuzzing import assert_linear, assert_memory_linear, edits, mutate, outcome

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pkgdb"
SQLITE = "usr/lib/sysimage/rpm/rpmdb.sqlite"
NDB = "usr/lib/sysimage/rpm/Packages.db"
BDB = "var/lib/rpm/Packages"
STATUS = "var/lib/dpkg/status"
STATUS_D = "var/lib/dpkg/status.d/systemd"
APK = "lib/apk/db/installed"
LUET = "var/cache/luet/luet.db"


def fixture(name: str) -> bytes:
    data = (FIXTURES / name).read_bytes()
    return gzip.decompress(data) if name.endswith(".gz") else data


def _header_blobs() -> list[bytes]:
    data = fixture("rpmdb.sqlite.gz")
    conn = sqlite3.connect(":memory:")
    conn.deserialize(data[:18] + b"\x01\x01" + data[20:])
    try:
        return [bytes(blob) for (blob,) in conn.execute("SELECT blob FROM Packages")]
    finally:
        conn.close()


BLOBS = _header_blobs()
DOCS: list[dict[str, object]] = [
    {"name": f"pkg{i}", "category": "system", "version": f"1.{i}"} for i in range(12)
]

#: (path the bytes are read as, seed) per parser; several seeds where the layouts differ.
SEEDS: dict[str, list[tuple[str, bytes]]] = {
    "dpkg": [(STATUS, fixture("dpkg-status")), (STATUS_D, fixture("status.d/systemd"))],
    "apk": [(APK, fixture("apk-installed"))],
    "bdb": [
        (BDB, fixture("Packages.bdb-le")),
        (BDB, fixture("Packages.bdb-be")),
        (BDB, bdb_hash([(struct.pack(">I", n), b) for n, b in enumerate(BLOBS, 1)], order=">")),
    ],
    "ndb": [(NDB, fixture("Packages.db"))],
    "sqlite": [(SQLITE, fixture("rpmdb.sqlite.gz"))],
    "luet": [
        (LUET, fixture("luet.db")),
        (LUET, BoltWriter(max_leaf_items=3, allow_inline=False).write(storm_luet_db(DOCS))),
        (LUET, BoltWriter(page_size=1024, max_leaf_items=200).write(storm_luet_db(DOCS))),
    ],
}

#: Tokens the text databases are made of, inserted by the mutations besides fuzzing.HUGE.
TEXT = (b"\n", b"\n\n", b" ", b":", b"Package: x\n", b"P:x\n", b"\xff", b"\r\n", b"\t.\n")


def _checked(path: str, data: bytes) -> None:
    result = outcome(lambda: read_packages(path, data))
    assert isinstance(result, list | PackageDbError), result


@pytest.mark.parametrize("parser", sorted(SEEDS))
def test_seeds_are_read(parser: str) -> None:
    for path, data in SEEDS[parser]:
        assert read_packages(path, data), (parser, path)


@pytest.mark.parametrize("parser", sorted(SEEDS))
@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    choice=st.integers(min_value=0),
    changes=edits(TEXT),
    cut=st.one_of(st.none(), st.integers(min_value=0)),
)
def test_mutated_databases(
    parser: str, choice: int, changes: list[tuple[str, int, object]], cut: int | None
) -> None:
    path, seed = SEEDS[parser][choice % len(SEEDS[parser])]
    _checked(path, mutate(seed, changes, cut))


@pytest.mark.parametrize("parser", sorted(SEEDS))
@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    choice=st.integers(min_value=0),
    head=st.integers(min_value=0, max_value=64),
    tail=st.binary(max_size=3000),
)
def test_random_bytes_behind_a_real_head(parser: str, choice: int, head: int, tail: bytes) -> None:
    path, seed = SEEDS[parser][choice % len(SEEDS[parser])]
    _checked(path, seed[:head] + tail)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    choice=st.integers(min_value=0),
    changes=edits(TEXT),
    cut=st.one_of(st.none(), st.integers(min_value=0)),
)
def test_mutated_rpm_headers(choice: int, changes: list[tuple[str, int, object]], cut: int | None) -> None:
    blob = mutate(BLOBS[choice % len(BLOBS)], changes, cut)
    result = outcome(lambda: package_from_header(blob, SQLITE, "hnum 1"))
    assert not isinstance(result, OcibootError) or isinstance(result, PackageDbError)


# --- linear time and memory for the worst shapes of the text formats ------------------------

DPKG_HEAD = b"Package: a\nStatus: install ok installed\nVersion: 1\n"

SHAPES: dict[str, tuple[str, Callable[[int], bytes]]] = {
    # One field continued over n lines: 37 s from an 8 KB compressed image before (quadratic).
    "dpkg-continued-field": (STATUS, lambda n: DPKG_HEAD + b"Description: x\n" + b" more text\n" * n),
    "dpkg-continued-version": (STATUS, lambda n: DPKG_HEAD[:-2] + b"\n" + b" 1\n" * n),
    "dpkg-newlines": (STATUS, lambda n: b"\n" * (8 * n)),
    "dpkg-tiny-fields": (STATUS, lambda n: DPKG_HEAD + b"a: b\n" * n),
    "apk-newlines": (APK, lambda n: b"\n" * (8 * n)),
    "apk-file-lines": (APK, lambda n: b"P:a\nV:1\n" + b"R:x\n" * n),
    "apk-repeated-names": (APK, lambda n: b"P:a\nV:1\n" + b"P:b\n" * n),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_text_databases_parse_in_linear_time(shape: str) -> None:
    path, make = SHAPES[shape]

    def run(n: int) -> Callable[[], object]:
        data = make(n)
        return lambda: read_packages(path, data)

    assert_linear(run, 1 << 12, what=shape)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_text_databases_parse_in_memory_linear_in_their_size(shape: str) -> None:
    # 128 MiB of newlines cost 1.46 GB before (a list of every line).
    path, make = SHAPES[shape]
    data = make(1 << 19)
    assert_memory_linear(lambda: read_packages(path, data), len(data), multiple=3, what=shape)
