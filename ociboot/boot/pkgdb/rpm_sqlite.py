"""rpm's SQLite backend (`rpmdb.sqlite`, Fedora 33+, RHEL 9, openSUSE since 2022).

Table `Packages(hnum INTEGER PRIMARY KEY, blob BLOB)`, one rpm header per row (rpm
lib/backend/sqlite.c).  The bytes are handed to sqlite with `Connection.deserialize` (an
in-memory database, never a file) and read through the plain table only: the schema is the
image's, so `Packages` could be a view over a recursive CTE (endless, and spilling temp files
to /var/tmp), a virtual table, or have generated columns computed on every read.  Those are
refused before any row is read; what is read is bounded in VM steps (a progress handler),
in the length of any one value, and in the bytes of all blobs together (at most the file's
size, which a real database always meets: sqlite stores every blob once, uncompressed; forged
cells sharing one overflow chain would otherwise be read once each).  Temp storage stays in
memory, and a plain-table scan in rowid order needs none.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from ociboot.boot.pkgdb import MAX_RECORDS, Package, PackageDbError
from ociboot.boot.pkgdb.rpm_header import package_from_header

_MAGIC = b"SQLite format 3\0"
#: sqlite VM steps allowed per byte of database, and at least MIN_STEPS: a plain-table scan
#: takes a handful of steps per row, so only a query doing more than reading can run out.
STEPS_PER_BYTE = 4
MIN_STEPS = 1 << 20
#: No single value (blob, text, schema entry) may be longer than the file, or than this when the
#: file is smaller (sqlite refuses longer values; zeroblob() in a view could otherwise ask for GBs).
MIN_VALUE_LIMIT = 1 << 16
#: The progress handler runs once per this many VM steps.
_STEP_GRAIN = 1000


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


class _Steps:
    """The progress handler: counts VM steps and stops sqlite once the budget is spent."""

    def __init__(self, size: int) -> None:
        self.left = max(MIN_STEPS, STEPS_PER_BYTE * size) // _STEP_GRAIN
        self.spent = False

    def __call__(self) -> int:
        self.left -= 1
        self.spent = self.left < 0
        return 1 if self.spent else 0


def _plain_table(conn: sqlite3.Connection, path: str) -> None:
    """Refuse a `Packages` that is anything but an ordinary table with ordinary columns."""
    kinds = conn.execute(
        "SELECT type FROM pragma_table_list WHERE schema = 'main' AND name = 'Packages' COLLATE NOCASE"
    ).fetchall()
    if not kinds:
        raise PackageDbError(path, "has no table Packages")
    if kinds != [(b"table",)]:
        raise PackageDbError(path, f"Packages is a {kinds[0][0].decode(errors='replace')}, not a table")
    columns = conn.execute("SELECT name, hidden FROM pragma_table_xinfo('Packages')").fetchall()
    if any(hidden for _name, hidden in columns):
        raise PackageDbError(path, "Packages has generated or hidden columns, which rpm never writes")
    if not {b"hnum", b"blob"} <= {name.lower() for name, _hidden in columns}:
        raise PackageDbError(path, "Packages has no hnum and blob columns")


def _rows(conn: sqlite3.Connection, path: str, size: int) -> Iterator[tuple[object, object]]:
    total = 0
    for count, (length,) in enumerate(conn.execute("SELECT length(blob) FROM Packages"), start=1):
        if count > MAX_RECORDS:
            raise PackageDbError(path, f"more than {MAX_RECORDS} rows in Packages")
        total += length if isinstance(length, int) else 0
    if total > size:
        raise PackageDbError(
            path, f"Packages blobs add up to {total} bytes, more than the {size}-byte file holds"
        )
    # Rowid order: rpm's hnum is the INTEGER PRIMARY KEY, so this is hnum order, and no sorter
    # (no temp storage) is ever needed.
    yield from conn.execute("SELECT hnum, blob FROM Packages")


def read(path: str, data: bytes) -> list[Package]:
    if not is_sqlite(data):
        raise PackageDbError(path, f"not an SQLite database: first bytes {data[:16]!r}")
    conn = sqlite3.connect(":memory:")
    # A damaged page can turn any column into TEXT that is not UTF-8; never decode, the header
    # parser validates the bytes.
    conn.text_factory = bytes
    steps = _Steps(len(data))
    packages = []
    try:
        conn.set_progress_handler(steps, _STEP_GRAIN)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max(len(data), MIN_VALUE_LIMIT))
        conn.deserialize(_as_rollback_journal(data))
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA trusted_schema = OFF")
        conn.execute("PRAGMA temp_store = MEMORY")
        _plain_table(conn, path)
        for hnum, blob in _rows(conn, path, len(data)):
            if not isinstance(blob, bytes):
                raise PackageDbError(path, f"hnum {hnum}: blob column holds {type(blob).__name__}, not bytes")
            packages.append(package_from_header(blob, path, f"hnum {hnum}"))
    except (sqlite3.Error, ValueError, OverflowError) as exc:
        if steps.spent:
            raise PackageDbError(path, f"reading Packages took more than its step budget ({exc})") from None
        raise PackageDbError(path, f"cannot read table Packages: {exc}") from exc
    finally:
        conn.close()
    return packages
