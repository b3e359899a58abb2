"""Package databases: bytes in, packages out.

Each reader takes the path a database was found at (for messages) and its whole content, and
returns the packages the database says are installed.  Nothing here touches a file system or
runs a tool: the bytes were captured from the image's layers by the caller.

    read_packages(path, data)   dispatch on where the file lives, then on its magic
    PKGDB_PATHS                 globs of every location a reader exists for (the capture set)
    roles.roles_of(...)         which packages play the kernel / bootloader / init / ... roles

A database that cannot be read raises `PackageDbError` (a `ContentError`) naming the path and
what was wrong.  A missing database is never an error: the caller simply has nothing to pass.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from ociboot.errors import ContentError

#: Records (packages, paragraphs, headers, rows, slots) one database may hold.  Real systems
#: have a few thousand (Debian's whole archive is ~65,000 binary packages per architecture);
#: the bound keeps a forged database of tiny records from costing more than its size in objects.
MAX_RECORDS = 1 << 17


class PackageDbError(ContentError):
    """A package database exists but its bytes are not what its format says."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"package database {path}: {reason}")
        self.path = path
        self.reason = reason


class DbKind(StrEnum):
    RPM_SQLITE = "rpm-sqlite"
    RPM_NDB = "rpm-ndb"
    RPM_BDB = "rpm-bdb"
    DPKG = "dpkg"
    APK = "apk"
    LUET = "luet"


@dataclass(frozen=True, slots=True)
class Package:
    """One installed package.  `release` is rpm's release, dpkg's Debian revision or apk's `-rN`
    (empty when the format has none); `epoch` is None when the database records none."""

    name: str
    version: str
    release: str
    arch: str
    epoch: int | None
    source_db: str

    @property
    def evr(self) -> str:
        """`[epoch:]version[-release]`, the form rpm and dpkg print."""
        text = self.version if not self.release else f"{self.version}-{self.release}"
        return text if self.epoch is None else f"{self.epoch}:{text}"


# Locations relative to the image root, without a leading slash (docs/tools.md "Package databases": trivy's
# rpm requiredFiles, syft's rpm/debian globs, luet's default system.database_path).
RPM_PATHS: tuple[str, ...] = tuple(
    f"{base}/rpm/{name}"
    for base in ("usr/lib/sysimage", "var/lib", "usr/share")
    for name in ("rpmdb.sqlite", "Packages.db", "Packages")
)
DPKG_PATHS: tuple[str, ...] = ("var/lib/dpkg/status", "var/lib/dpkg/status.d/*")
APK_PATHS: tuple[str, ...] = ("lib/apk/db/installed", "usr/lib/apk/db/installed")
LUET_PATHS: tuple[str, ...] = ("var/cache/luet/luet.db", "var/db/luet/luet.db")
PKGDB_PATHS: tuple[str, ...] = RPM_PATHS + DPKG_PATHS + APK_PATHS + LUET_PATHS


def is_pkgdb_path(path: str) -> bool:
    """Whether `path` (image path or layer member) is a location a reader exists for."""
    rel = path.lstrip("/")
    return any(fnmatch.fnmatchcase(rel, pattern) for pattern in PKGDB_PATHS)


def kind_of(path: str, data: bytes) -> DbKind | None:
    """Which reader applies: the location says rpm/dpkg/apk/luet, and for rpm the magic says which
    backend (go-rpmdb tries the same three in turn; a `Packages` file is BDB on old systems but
    nothing stops an image from holding another backend's file under that name)."""
    rel = path.lstrip("/")
    if any(fnmatch.fnmatchcase(rel, pattern) for pattern in RPM_PATHS):
        return _rpm_kind(data)
    if rel == "var/lib/dpkg/status" or fnmatch.fnmatchcase(rel, "var/lib/dpkg/status.d/*"):
        return DbKind.DPKG
    if rel in APK_PATHS:
        return DbKind.APK
    if rel in LUET_PATHS:
        return DbKind.LUET
    return None


def _rpm_kind(data: bytes) -> DbKind | None:
    from ociboot.boot.pkgdb import rpm_bdb, rpm_ndb, rpm_sqlite

    if rpm_sqlite.is_sqlite(data):
        return DbKind.RPM_SQLITE
    if rpm_ndb.is_ndb(data):
        return DbKind.RPM_NDB
    if rpm_bdb.is_bdb_hash(data):
        return DbKind.RPM_BDB
    return None


def read_packages(path: str, data: bytes) -> list[Package]:
    """The installed packages recorded in the database `data`, found at `path` in the image.

    Raises PackageDbError when the path is a known database location but the bytes cannot be
    read as any format that lives there."""
    from ociboot.boot.pkgdb import apk, dpkg, luet, rpm_bdb, rpm_ndb, rpm_sqlite

    readers: dict[DbKind, Callable[[str, bytes], list[Package]]] = {
        DbKind.RPM_SQLITE: rpm_sqlite.read,
        DbKind.RPM_NDB: rpm_ndb.read,
        DbKind.RPM_BDB: rpm_bdb.read,
        DbKind.DPKG: dpkg.read,
        DbKind.APK: apk.read,
        DbKind.LUET: luet.read,
    }
    kind = kind_of(path, data)
    if kind is None:
        rel = path.lstrip("/")
        if any(fnmatch.fnmatchcase(rel, pattern) for pattern in RPM_PATHS):
            raise PackageDbError(
                path, f"not an rpm database (no SQLite, NDB or Berkeley DB magic): {data[:16]!r}"
            )
        raise PackageDbError(path, "not a known package database location")
    return readers[kind](path, data)


__all__ = [
    "APK_PATHS",
    "DPKG_PATHS",
    "LUET_PATHS",
    "MAX_RECORDS",
    "PKGDB_PATHS",
    "RPM_PATHS",
    "DbKind",
    "Package",
    "PackageDbError",
    "is_pkgdb_path",
    "kind_of",
    "read_packages",
]
