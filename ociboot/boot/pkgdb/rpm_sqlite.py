"""rpm's SQLite backend (`rpmdb.sqlite`, Fedora 33+, RHEL 9, openSUSE since 2022).

Table `Packages(hnum INTEGER PRIMARY KEY, blob BLOB)`, one rpm header per row (rpm
lib/backend/sqlite.c).  The bytes are opened as an in-memory database, never written to disk.
"""

from __future__ import annotations

import sqlite3

from ociboot.boot.pkgdb import Package, PackageDbError
from ociboot.boot.pkgdb.rpm_header import package_from_header

_MAGIC = b"SQLite format 3\0"


def is_sqlite(data: bytes) -> bool:
    return data[:16] == _MAGIC


def _as_rollback_journal(data: bytes) -> bytes:
    # rpm keeps its database in WAL mode (header bytes 18/19 = 2).  An in-memory database cannot
    # open a WAL-mode image ("unable to open database file"), so mark it as rollback-journal
    # (1/1): the page content is identical.  Frames still sitting in a `-wal` file are not seen;
    # rpm checkpoints on close, so a finished image build has none.
    if len(data) >= 20 and data[18:20] == b"\x02\x02":
        return data[:18] + b"\x01\x01" + data[20:]
    return data


def read(path: str, data: bytes) -> list[Package]:
    if not is_sqlite(data):
        raise PackageDbError(path, f"not an SQLite database: first bytes {data[:16]!r}")
    conn = sqlite3.connect(":memory:")
    # A damaged page can turn any column into TEXT that is not UTF-8; never decode, the header
    # parser validates the bytes.
    conn.text_factory = bytes
    try:
        try:
            conn.deserialize(_as_rollback_journal(data))
            conn.execute("PRAGMA query_only = ON")
            conn.execute("PRAGMA trusted_schema = OFF")
            rows = conn.execute("SELECT hnum, blob FROM Packages ORDER BY hnum").fetchall()
        except (sqlite3.Error, ValueError, OverflowError) as exc:
            raise PackageDbError(path, f"cannot read table Packages: {exc}") from exc
    finally:
        conn.close()
    packages = []
    for hnum, blob in rows:
        if not isinstance(blob, bytes):
            raise PackageDbError(path, f"hnum {hnum}: blob column holds {type(blob).__name__}, not bytes")
        packages.append(package_from_header(blob, path, f"hnum {hnum}"))
    return packages
