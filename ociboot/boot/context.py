"""What the rules look at: the flattened tree, the image config, and facts derived once.

A CheckContext is built per image and profile.  Facts (kernel and initrd candidates with what
their content says, modules directories, packages, os-release) are computed lazily and cached,
so rules stay short and nothing is parsed twice.  Paths given to and returned by the context are
absolute image paths ("/boot/vmlinuz").
"""

from __future__ import annotations

import json
import posixpath
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from ..budget import DEFAULT_ANALYSIS_BUDGET
from ..digest import Digest
from ..fs.node import Kind, Node
from ..fs.tree import FileTree, Resolution
from ..layer import AnalysisFailed, OverBudget
from ..spec import ImageConfig
from .check import Profile
from .initrd import InitrdInfo
from .kernel import KernelInfo, kernel_version_of_name
from .pkgdb import PKGDB_PATHS, Package, is_pkgdb_path
from .pkgdb.roles import Family, Role, roles_of
from .scan import INITRD_NAMES, KERNEL_NAMES, PackageDbResult, is_initrd_name

#: What an analyzer found in one file (boot/scan.py); OverBudget and other failures are
#: AnalysisFailed; None: nothing analyzed it.
Analysis = KernelInfo | InitrdInfo | PackageDbResult | AnalysisFailed | None
_ANALYSIS_TYPES = (KernelInfo, InitrdInfo, PackageDbResult, AnalysisFailed)


def analysis_failure(analysis: Analysis) -> str | None:
    """Why a file could not be read (its analyzer failed, the image's analysis budget ran out, a
    package database was unreadable), or None: it was read, or nothing analyzed it."""
    return analysis.error if isinstance(analysis, AnalysisFailed | PackageDbResult) else None


def _typed(found: object) -> Analysis:
    # The tree and the layers hold analyses of every kind the layer walker was given (they sit
    # below boot/ and cannot name these types): the rules see only what boot/scan.py produces.
    return found if isinstance(found, _ANALYSIS_TYPES) else None


#: fetch(layer index, member path, as_initrd) -> analysis: the pipeline re-reads one layer for a
#: file that was not analyzed on the first pass (a link pointing somewhere unexpected, a --kernel
#: path) or was analyzed as the wrong kind (an --initrd path not named like an initrd).
Fetch = Callable[[int, str, bool], "Analysis"]

#: Where KRN-001 / INI-001 look for candidates (docs/rules.md), in report order.
KERNEL_GLOBS = (
    *(f"/boot/{n}" for n in KERNEL_NAMES),
    "/usr/lib/modules/*/vmlinuz",
    "/lib/modules/*/vmlinuz",
    "/boot/EFI/Linux/*.efi",
    "/efi/EFI/Linux/*.efi",
)
INITRD_GLOBS = (
    *(f"/boot/{n}" for n in INITRD_NAMES),
    "/usr/lib/modules/*/initramfs.img",
    "/lib/modules/*/initramfs.img",
)
MODULES_DIRS = ("/usr/lib/modules", "/lib/modules")


@dataclass(frozen=True, slots=True)
class Artifact:
    """A candidate kernel or initrd: where it was found, where that resolves, what it is."""

    path: str
    resolution: Resolution
    analysis: Analysis  # None: not a regular file, or nothing analyzed it

    @property
    def real(self) -> str:
        return self.resolution.path

    @property
    def ok(self) -> bool:
        return self.resolution.ok

    @property
    def kernel(self) -> KernelInfo | None:
        return self.analysis if isinstance(self.analysis, KernelInfo) else None

    @property
    def initrd(self) -> InitrdInfo | None:
        return self.analysis if isinstance(self.analysis, InitrdInfo) else None

    @property
    def failure(self) -> str | None:
        """Why the file could not be read, or None (analysis_failure)."""
        return analysis_failure(self.analysis)

    @property
    def chain(self) -> str:
        """`/boot/vmlinuz -> vmlinuz-6.1.0-28-amd64` (every hop), for evidence lines."""
        return link_chain(self.path, self.resolution)


def kernel_version(a: Artifact | None) -> str | None:
    """The release of a kernel: from its content (header, banner, .uname), else from its name
    (`vmlinuz-6.1.0-28-amd64`, `/usr/lib/modules/<kver>/vmlinuz`), resolved path first."""
    if a is None:
        return None
    if a.kernel is not None and a.kernel.version:
        return a.kernel.version
    return kernel_version_of_name(a.real) or kernel_version_of_name(a.path)


def link_chain(path: str, res: Resolution) -> str:
    if not res.chain:
        return path
    text = " -> ".join([res.chain[0][0], *(target for _, target in res.chain)])
    if res.ok and res.path not in (res.chain[-1][1], path):
        text += f" (= {res.path})"
    return text


@dataclass(frozen=True, slots=True)
class Packages:
    dbs: tuple[PackageDbResult, ...]
    family: Family | None

    @property
    def found(self) -> bool:
        return bool(self.dbs)

    @property
    def all(self) -> tuple[Package, ...]:
        return tuple(p for db in self.dbs for p in db.packages)

    @property
    def errors(self) -> tuple[PackageDbResult, ...]:
        return tuple(db for db in self.dbs if db.error)

    def names(self) -> set[str]:
        return {p.name for p in self.all}

    def roles(self) -> dict[Role, list[Package]]:
        return roles_of(self.all, self.family) if self.family else {}


@dataclass(frozen=True, slots=True)
class Policy:
    """What a user asked for beyond the profile (CLI options and --policy FILE).

    Frozen: one policy is shared by every image of a batch, checked concurrently.  Layers
    (defaults, a policy file, the command line) are combined with `merge`."""

    profile: Profile = Profile.AUTO
    kernel: str | None = None
    initrd: str | None = None
    require_packages: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    #: rule id -> "error" | "warning" | "info"
    severity: Mapping[str, str] = field(default_factory=dict)
    fatal_warnings: bool = False
    analysis_budget: int = DEFAULT_ANALYSIS_BUDGET  # bytes of analysis work per image

    def merge(
        self,
        *,
        profile: Profile | None = None,
        kernel: str | None = None,
        initrd: str | None = None,
        require_packages: Iterable[str] = (),
        skip: Iterable[str] = (),
        severity: Mapping[str, str] | None = None,
        fatal_warnings: bool = False,
        analysis_budget: int | None = None,
    ) -> Policy:
        """This policy with a layer given on top: what the layer sets wins (a profile other than
        auto, a path, a budget, a rule's severity), its lists add to ours, and fatal warnings,
        once asked for, stay on.  What the layer leaves out (None, empty, auto) is kept."""
        return Policy(
            profile=Profile(profile) if profile not in (None, Profile.AUTO) else self.profile,
            kernel=kernel or self.kernel,
            initrd=initrd or self.initrd,
            require_packages=(*self.require_packages, *require_packages),
            skip=(*self.skip, *skip),
            severity={**self.severity, **(severity or {})},
            fatal_warnings=fatal_warnings or self.fatal_warnings,
            analysis_budget=analysis_budget or self.analysis_budget,
        )

    def canonical(self, *, as_given: bool = False) -> bytes:
        """The policy as canonical JSON (keys as a policy file spells them, sorted; lists sorted
        and without repeats): what it decides, not how a file happened to list it.  `as_given`
        keeps the lists' order and repeats: a report follows them (PKG-002 answers each required
        package in the order asked), so a stored report is keyed by that (cache/verdict.py)."""

        def listed(values: tuple[str, ...]) -> list[str]:
            return list(values) if as_given else sorted(set(values))

        fields = {
            "profile": str(self.profile),
            "kernel": self.kernel,
            "initrd": self.initrd,
            "require-packages": listed(self.require_packages),
            "skip": listed(self.skip),
            "severity": dict(sorted(self.severity.items())),
            "fatal-warnings": self.fatal_warnings,
            "analysis-budget": self.analysis_budget,
        }
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    @property
    def digest(self) -> Digest:
        """What a verdict names the policy by: one policy, one digest (`canonical`)."""
        return Digest.of(self.canonical())


class CheckContext:
    def __init__(
        self,
        tree: FileTree,
        config: ImageConfig,
        *,
        profile: Profile,
        profile_reason: str = "",
        policy: Policy | None = None,
        compressed_size: int = 0,
        fetch: Fetch | None = None,
    ) -> None:
        self.tree = tree
        self.config = config
        self.profile = Profile(profile)
        self.profile_reason = profile_reason
        self.policy = policy or Policy()
        self.compressed_size = compressed_size
        self._fetch = fetch
        self._fetched: dict[tuple[int, str, bool], Analysis] = {}

    # --- files -------------------------------------------------------------------------------

    def lookup(self, path: str, *, follow: bool = True) -> Resolution:
        return self.tree.lookup(path, follow=follow)

    def node(self, path: str, *, follow: bool = True) -> Node | None:
        res = self.tree.lookup(path, follow=follow)
        return res.node if res.ok else None

    def exists(self, path: str, *, follow: bool = True) -> bool:
        return self.node(path, follow=follow) is not None

    def is_file(self, path: str) -> bool:
        node = self.node(path)
        return node is not None and node.kind is Kind.FILE

    def is_dir(self, path: str, *, follow: bool = True) -> bool:
        node = self.node(path, follow=follow)
        return node is not None and node.is_dir

    def is_symlink(self, path: str) -> bool:
        node = self.node(path, follow=False)
        return node is not None and node.is_symlink

    def is_executable(self, path: str) -> bool:
        node = self.node(path)
        return node is not None and node.kind is Kind.FILE and bool(node.entry.mode & 0o111)

    def listdir(self, path: str) -> list[str]:
        """Names in a directory (links followed for the directory itself); [] if not a directory."""
        if not self.is_dir(path):
            return []
        return [name for name, _ in self.tree.listdir(path)]

    @cached_property
    def nodes(self) -> tuple[tuple[str, Node], ...]:
        """Every path of the final tree with its node, walked once for all whole-tree rules."""
        return tuple(self.tree.walk("/"))

    @cached_property
    def non_utf8(self) -> tuple[tuple[str, str], ...]:
        """(path, "name" | "target") for each name or symlink target that is not valid UTF-8."""
        out = []
        for path, node in self.nodes:
            if not is_utf8(path.rpartition("/")[2]):
                out.append((path, "name"))
            elif node.is_symlink and not is_utf8(node.entry.linkname):
                out.append((path, "target"))
        return tuple(out)

    def glob(self, pattern: str) -> list[str]:
        return self.tree.glob(pattern)

    def read(self, path: str) -> bytes | None:
        """The bytes captured for a file (None: missing, not a file, or not captured)."""
        return self.tree.read(path)

    def read_text(self, path: str) -> str | None:
        data = self.tree.read(path)
        return None if data is None else data.decode("utf-8", "replace")

    def which(
        self,
        name: str,
        path: Iterable[str] = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"),
    ) -> str | None:
        """The first `name` on PATH that resolves (through links) to a regular file."""
        for directory in path:
            candidate = posixpath.join(directory, name)
            if self.is_file(candidate):
                return candidate
        return None

    def analysis(self, path: str, *, as_initrd: bool | None = None) -> Analysis:
        """What the streaming analyzers found in a file, re-reading its layer if needed.

        `as_initrd` asks for a specific reading (True: initrd, False: kernel) when the name alone
        would pick the other one (a custom --initrd path named `boot.cpio.xz`).
        """
        res = self.tree.lookup(path)
        if not res.ok or res.node is None or res.node.kind is not Kind.FILE:
            return None
        found = _typed(self.tree.analysis(path))
        wrong_kind = (
            as_initrd is not None and found is not None and isinstance(found, InitrdInfo) != as_initrd
        )
        if (found is None or wrong_kind) and self._fetch is not None:
            initrd = is_initrd_name(path) if as_initrd is None else as_initrd
            key = (res.node.layer, res.node.entry.path, initrd)
            if key not in self._fetched:
                self._fetched[key] = self._fetch(*key)
            found = self._fetched[key]
        return found

    # --- boot artifacts ----------------------------------------------------------------------

    def artifact(self, path: str, *, as_initrd: bool | None = None) -> Artifact:
        return Artifact(path, self.tree.lookup(path), self.analysis(path, as_initrd=as_initrd))

    def _candidates(self, globs: Iterable[str], want_initrd: bool) -> list[Artifact]:
        seen: set[str] = set()
        out = []
        for pattern in globs:
            for path in self.tree.glob(pattern):
                if path in seen or path.endswith(".hmac"):
                    continue
                seen.add(path)
                res = self.tree.lookup(path)
                if res.ok and res.node is not None and res.node.is_dir:
                    continue
                if is_initrd_name(path) != want_initrd:
                    continue
                out.append(Artifact(path, res, self.analysis(path)))
        return out

    @cached_property
    def kernel_candidates(self) -> list[Artifact]:
        """Every file in a kernel location (KRN-001), kernels or not (KRN-002 tells)."""
        return self._candidates(KERNEL_GLOBS, want_initrd=False)

    @cached_property
    def kernels(self) -> list[Artifact]:
        """Candidates whose content is a kernel."""
        return [a for a in self.kernel_candidates if a.kernel is not None and a.kernel.is_kernel]

    @cached_property
    def initrd_candidates(self) -> list[Artifact]:
        return self._candidates(INITRD_GLOBS, want_initrd=True)

    @cached_property
    def kernel(self) -> Artifact | None:
        """The kernel this profile boots: --kernel, else the profile's default path, else the
        first real kernel found."""
        if self.policy.kernel:
            return self.artifact(self.policy.kernel, as_initrd=False)
        default = None if self.profile is Profile.BOOTC else "/boot/vmlinuz"
        if default and self.exists(default):
            return self.artifact(default)
        if self.profile is Profile.BOOTC:
            modules = [a for a in self.kernels if a.path.startswith("/usr/lib/modules/")]
            if modules:
                return modules[0]
        return self.kernels[0] if self.kernels else None

    @cached_property
    def initrd(self) -> Artifact | None:
        if self.policy.initrd:
            return self.artifact(self.policy.initrd, as_initrd=True)
        kernel = self.kernel
        if self.profile is Profile.BOOTC and kernel is not None:
            beside = posixpath.join(posixpath.dirname(kernel.path), "initramfs.img")
            return self.artifact(beside) if self.exists(beside) else None
        if self.exists("/boot/initrd"):
            return self.artifact("/boot/initrd")
        version = self.kernel_version
        if version:
            for a in self.initrd_candidates:
                if version in a.path or version in a.real:
                    return a
        return self.initrd_candidates[0] if self.initrd_candidates else None

    @property
    def kernel_version(self) -> str | None:
        k = self.kernel
        return k.kernel.version if k is not None and k.kernel is not None else None

    @cached_property
    def modules_dirs(self) -> dict[str, str]:
        """Kernel release -> its modules directory (real path), from /usr/lib/modules and /lib/modules."""
        out: dict[str, str] = {}
        for base in MODULES_DIRS:
            for name in self.listdir(base):
                path = posixpath.join(base, name)
                res = self.tree.lookup(path)
                if res.ok and res.node is not None and res.node.is_dir:
                    out.setdefault(name, res.path)
        return out

    # --- system facts ------------------------------------------------------------------------

    @cached_property
    def os_release(self) -> dict[str, str]:
        for path in ("/etc/os-release", "/usr/lib/os-release"):
            text = self.read_text(path)
            if text is not None:
                return parse_env_file(text)
        return {}

    @property
    def family(self) -> Family | None:
        """The distribution family (os-release ID/ID_LIKE), or luet for a luet-only image."""
        return self.packages.family

    @cached_property
    def packages(self) -> Packages:
        # One per path: only the layer whose member is visible in the final tree counts.  A
        # reader that crashed (AnalysisFailed) leaves a database that could not be read: it is
        # reported as such, never dropped (dropping it made the image look database-free); so is
        # one the image's analysis budget did not cover (OverBudget is an AnalysisFailed).
        dbs = []
        for path, found in self._files_with_analysis((PackageDbResult, AnalysisFailed)):
            if isinstance(found, PackageDbResult):
                dbs.append(found)
            elif isinstance(found, AnalysisFailed) and is_pkgdb_path(path):
                why = found.error if isinstance(found, OverBudget) else f"reader failed: {found.error}"
                dbs.append(PackageDbResult(path, error=why))
        dbs += self._unread_databases({db.path for db in dbs})
        dbs.sort(key=lambda db: db.path)
        ids = {self.os_release.get("ID", ""), *self.os_release.get("ID_LIKE", "").split()}
        family = next((f for f, names in _FAMILIES if ids & names), None)
        if family is None and any(db.path.endswith("luet.db") for db in dbs):
            family = Family.LUET
        return Packages(tuple(dbs), family)

    @cached_property
    def over_budget(self) -> frozenset[str]:
        """Files of the final tree whose analysis the image's analysis budget did not cover."""
        return frozenset(path for path, _ in self._files_with_analysis(OverBudget))

    def _unread_databases(self, read: set[str]) -> list[PackageDbResult]:
        """Files at a database location in the final tree that no reader saw while the layers
        streamed (a hard link or symlink to a file elsewhere, a sparse member): unreadable, never
        absent.  A location that resolves to a database read under another name (Fedora's
        /var/lib/rpm -> /usr/lib/sysimage/rpm) is that database, not another one."""
        real = {self.tree.lookup(path).path for path in read}
        out = []
        for pattern in PKGDB_PATHS:
            for path in self.tree.glob("/" + pattern):
                res = self.tree.lookup(path)
                if path in read or res.path in real or res.node is None or res.node.kind is not Kind.FILE:
                    continue
                real.add(res.path)
                member = "/" + res.node.entry.path
                if res.path != path:
                    why = f"a symlink to {res.path}, which is not a database location"
                elif member != path:
                    why = f"a hard link to {member}, which is not a database location"
                else:
                    why = "its layer member was not analyzed (a sparse file)"
                out.append(PackageDbResult(path, error=f"not read: {why}"))
        return out

    def _files_with_analysis(self, kind: type | tuple[type, ...]) -> list[tuple[str, Analysis]]:
        out = []
        for layer_index, layer in enumerate(self.tree.layers):
            for member, found in getattr(layer, "analyses", {}).items():
                result = _typed(found)
                if not isinstance(result, kind):
                    continue
                # Only what is still visible in the final tree counts.
                res = self.tree.lookup("/" + member)
                if (
                    res.ok
                    and res.node is not None
                    and res.node.layer == layer_index
                    and (res.node.entry.path == member)
                ):
                    out.append(("/" + member, result))
        return sorted(out, key=lambda item: item[0])

    @property
    def labels(self) -> Mapping[str, str]:
        return self.config.labels


_SUSE = {"opensuse", "opensuse-leap", "opensuse-tumbleweed", "opensuse-microos", "sles", "sle-micro", "suse"}
_FAMILIES: tuple[tuple[Family, set[str]], ...] = (
    (Family.SUSE, _SUSE | {"sl-micro"}),
    (Family.FEDORA, {"fedora", "rhel", "centos", "almalinux", "rocky", "ol", "amzn"}),
    (Family.DEBIAN, {"debian", "ubuntu", "raspbian", "pop", "linuxmint"}),
    (Family.ALPINE, {"alpine", "postmarketos"}),
)


def is_utf8(text: str) -> bool:
    # Tar names were decoded with surrogateescape (layer.py): undecodable bytes became lone
    # surrogates, which do not encode.  The ASCII test answers almost every name at C speed.
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_env_file(text: str) -> dict[str, str]:
    """os-release(5) / kairos-release syntax: KEY=value with shell quoting; junk lines skipped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            parts = shlex.split(value, posix=True)
        except ValueError:
            parts = [value.strip("\"'")]
        out[key.strip()] = " ".join(parts)
    return out
