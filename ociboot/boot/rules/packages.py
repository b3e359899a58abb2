"""Rules: what the package databases say (docs/tools.md "Package databases"), and --require-package.

PKG-001 corroborates the file checks: the kernel, bootloader, init and initramfs generator each
come from a package of the distribution family (rpm, dpkg, apk or luet database).  Having no
database is never an error (Elemental >= v1 images copied from the toolkit have none; distroless
images drop them): the rule then says what the files show.  PKG-002 enforces what the user asked
for with --require-package or `require-packages` in a policy file.
"""

from __future__ import annotations

from collections.abc import Iterable

from ...report import Severity
from ..check import Profile, Result, failed, not_run, passed, rule, skipped, unreadable
from ..context import CheckContext
from ..emulate.switch_root import find_init
from ..pkgdb import PKGDB_PATHS, Package
from ..pkgdb.roles import NAMES, Family, Role, roles_of
from ..upstream import COS_PACKAGE_STACK, KAIROS_INIT, LUET, SYFT, TRIVY_DPKG, TRIVY_RPM

#: The roles PKG-001 looks for and PKG-002 accepts as names (the toolkit role is cOS-only).
ROLES = (Role.KERNEL, Role.BOOTLOADER, Role.INIT, Role.INITRAMFS)

#: Tools whose presence on PATH stands in for a package when there is no database: dracut /
#: mkinitfs build the initrd (D5, docs/tools.md "Package databases"), grub(2)-editenv is what
#: Elemental needs (E12).
BOOTLOADER_TOOLS = ("grub2-editenv", "grub-editenv", "grub2-install", "grub-install", "bootctl")
INITRAMFS_TOOLS = ("dracut", "mkinitfs", "mkinitcpio", "update-initramfs")


def _file_evidence(ctx: CheckContext, role: Role) -> str | None:
    """What the tree shows for `role` without any package database, or None."""
    if role is Role.KERNEL:
        return f"kernel {ctx.kernels[0].chain}" if ctx.kernels else None
    if role is Role.INIT:
        info = find_init(ctx)
        if info.init_is_systemd:
            return f"systemd via {info.init_chain}"
        if info.systemd:
            return f"systemd at {info.systemd}"
        if info.openrc:
            return f"openrc at {info.openrc}"
        return None
    tools = BOOTLOADER_TOOLS if role is Role.BOOTLOADER else INITRAMFS_TOOLS
    for tool in tools:
        found = ctx.which(tool)
        if found is not None:
            return f"{tool} at {found}"
    return None


def _roles(ctx: CheckContext) -> tuple[dict[Role, list[Package]], str]:
    """Packages per role, and which name table was used.  An unknown family (os-release ID
    matches none of the tables) is matched against every family's names."""
    family = ctx.packages.family
    packages = ctx.packages.all
    if family is not None:
        return roles_of(packages, family), f"{family} package names"
    merged: dict[Role, list[Package]] = {role: [] for role in Role}
    for fam in Family:
        for role, found in roles_of(packages, fam).items():
            merged[role] += [p for p in found if p not in merged[role]]
    return merged, "package names of every family (distribution family unknown)"


def _where(package: Package) -> str:
    return "/" + package.source_db.lstrip("/")


def _show(packages: list[Package]) -> str:
    return ", ".join(f"{p.name} {p.evr}" for p in packages)


def _db_summary(ctx: CheckContext) -> list[str]:
    return [
        f"{db.path}: {len(db.packages)} packages" if not db.error else f"{db.path}: unreadable ({db.error})"
        for db in ctx.packages.dbs
    ]


@rule(
    "PKG-001",
    "packages provide kernel, bootloader, init and initramfs",
    {
        Profile.GENERIC: Severity.INFO,
        Profile.COS: Severity.WARNING,
        Profile.KAIROS: Severity.WARNING,
        Profile.BOOTC: Severity.INFO,
    },
    sources=(
        f"{COS_PACKAGE_STACK} (D8)",
        f"{KAIROS_INIT}/pkg/values/packagemaps.go",
        TRIVY_RPM,
        TRIVY_DPKG,
        f"{SYFT}/syft/pkg/cataloger/redhat/cataloger.go",
    ),
    description=(
        "For each role (kernel, bootloader, init, initramfs) a package of the image's family "
        "(rpm/dpkg/apk/luet, names in docs/tools.md) must be installed.  No database: the rule falls back "
        "to file evidence (a kernel by content, grub(2)-editenv, systemd through /sbin/init, "
        "dracut/mkinitfs on PATH) and never fails for the missing database itself.  A database "
        "that cannot be read is a finding naming it; roles it leaves undecided are not a pass.  "
        "cos and kairos warn: their builds pull grub, systemd and dracut by package."
    ),
)
def role_packages(ctx: CheckContext) -> Iterable[Result]:
    pk = ctx.packages
    for db in pk.errors:
        if db.path in ctx.over_budget:  # not a damaged database: one this run did not read
            yield unreadable(f"package database {db.path} could not be read: {db.error}", db.path)
            continue
        yield failed(
            f"package database {db.path} could not be read: {db.error}",
            db.path,
            hint="rebuild the database with the package manager (rpm --rebuilddb) or remove the stale file",
        )
    readable = [db for db in pk.dbs if not db.error]
    if not pk.dbs:
        yield from _by_files(ctx)
        return
    if not readable:
        for role in ROLES:
            seen = _file_evidence(ctx, role)
            yield not_run(
                f"{role}: cannot tell from packages (every database is unreadable)",
                pk.dbs[0].path,
                [*_db_summary(ctx), f"file evidence: {seen or 'none'}"],
            )
        return
    roles, table = _roles(ctx)
    for role in ROLES:
        found = roles[role]
        expected = NAMES[pk.family][role] if pk.family is not None else ()
        if found:
            yield passed(f"{role}: {_show(found)}", _where(found[0]), [f"matched by {table}"])
            continue
        by_files = _file_evidence(ctx, role)
        evidence = [*_db_summary(ctx), f"file evidence: {by_files or 'none'}"]
        if pk.family is not None and not expected:
            # No package name to look for (cOS luet images take systemd from the base
            # distribution, whose database is not there): only the files can tell.
            if by_files:
                yield passed(f"{role}: {pk.family} names no {role} package; file evidence: {by_files}")
            else:
                yield failed(
                    f"{role}: {pk.family} names no {role} package and no file shows one",
                    None,
                    evidence,
                    hint=f"install the {role}",
                )
            continue
        names = ", ".join(expected) if expected else "any known name"
        yield failed(
            f"no {role} package installed (looked for {names})",
            readable[0].path,
            evidence,
            hint=f"install the distribution's {role} package",
        )


def _by_files(ctx: CheckContext) -> Iterable[Result]:
    shown = []
    missing = []
    for role in ROLES:
        evidence = _file_evidence(ctx, role)
        if evidence:
            shown.append(f"{role}: {evidence}")
        else:
            missing.append(role)
    looked = f"looked for {', '.join('/' + p for p in PKGDB_PATHS)}"
    for role in missing:
        yield failed(
            f"no package database; no file evidence of a {role} either",
            None,
            [looked, *shown],
            hint=f"install the distribution's {role} package",
        )
    if not missing:
        yield passed("no package database; file evidence: " + "; ".join(shown), None, [looked])


@rule(
    "PKG-002",
    "required packages are installed",
    {
        Profile.GENERIC: Severity.ERROR,
        Profile.COS: Severity.ERROR,
        Profile.KAIROS: Severity.ERROR,
        Profile.BOOTC: Severity.ERROR,
    },
    sources=(
        TRIVY_RPM,
        TRIVY_DPKG,
        f"{LUET}/cmd/util/config.go system.database_path",
    ),
    description=(
        "Each name given with --require-package (or a policy file's require-packages) must be "
        "installed under exactly that name (libsystemd0 does not satisfy systemd), or be a role "
        "(kernel, bootloader, init, initramfs) that at least one installed package fills.  "
        "Without a readable package database the answer is unknown, never a pass."
    ),
)
def required_packages(ctx: CheckContext) -> Iterable[Result]:
    wanted = ctx.policy.require_packages
    if not wanted:
        yield skipped("no package required (--require-package not given)")
        return
    pk = ctx.packages
    readable = [db for db in pk.dbs if not db.error]
    if not readable:
        reason = "no package database found" if not pk.dbs else "every package database is unreadable"
        for name in wanted:
            yield not_run(
                f"{name}: cannot tell: {reason}",
                None,
                _db_summary(ctx) or ["looked in the rpm, dpkg, apk and luet locations"],
            )
        return
    installed: dict[str, list[Package]] = {}
    for p in pk.all:
        installed.setdefault(p.name, []).append(p)
    roles, table = _roles(ctx)
    role_names = {str(r): r for r in ROLES}
    for name in wanted:
        if name in installed:
            yield passed(f"{name} installed: {_show(installed[name])}", _where(installed[name][0]))
            continue
        role = role_names.get(name)
        if role is not None and roles[role]:
            yield passed(
                f"role {name}: {_show(roles[role])}", _where(roles[role][0]), [f"matched by {table}"]
            )
            continue
        near = sorted(n for n in installed if name in n)
        evidence = [*_db_summary(ctx)]
        if near:
            evidence.append(f"not the exact name, so not counted: {', '.join(near[:10])}")
        what = f"no package fills the {name} role" if role is not None else f"{name} is not installed"
        yield failed(what, readable[0].path, evidence, hint=f"install {name} in the image")


RULES = (role_packages, required_packages)
CAPTURE: tuple[str, ...] = ()
