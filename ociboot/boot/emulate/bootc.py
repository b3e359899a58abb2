"""bootc: where it looks for the kernel and initramfs (docs/tools.md) and the lints of
`bootc container lint` (bootc-dev/bootc crates/lib/src/lints.rs), re-implemented on a flattened
image tree for BTC-002, plus the small file helpers the bootc rules share.

bootc checks an image as an "alternative root" (`--rootfs DIR`), so the lints that apply are
all but `var-tmpfiles` (running root only).  Each lint keeps bootc's name, type (fatal or
warning) and wording, so a user can search for a message; item lists are cut to bootc's default
sample of 5 plus "...and N more" (bootc PR #1324).
"""

from __future__ import annotations

import posixpath
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ...fs.node import Kind, Node
from ...report import Outcome, Severity
from ..check import Result
from ..context import CheckContext
from .pick import Pick, nothing

MODULES = "/usr/lib/modules"
UKI_DIR = "/boot/EFI/Linux"
KARGS_DIR = "/usr/lib/bootc/kargs.d"
SYSUSERS_DIR = "/usr/lib/sysusers.d"
# lints.rs BASEIMAGE_REF: when the image embeds bootc's reference base content, the
# baseimage lints check it too.
BASEIMAGE_REF = "/usr/share/doc/bootc/baseimage/base"
# systemd.io/API_FILE_SYSTEMS plus /var, which bootc requires (lints.rs API_DIRS).
API_DIRS = ("dev", "proc", "sys", "run", "tmp", "var")
# lints.rs CONTAINER_RUNTIME_FILES: podman bind-mounts it for DNS (bootc#2050).
RUNTIME_INJECTED = ("/run/systemd/resolve/stub-resolv.conf",)
# bootc matches `match-architectures` against Rust's std::env::consts::ARCH.
RUST_ARCH = {
    "amd64": "x86_64",
    "arm64": "aarch64",
    "386": "x86",
    "arm": "arm",
    "ppc64le": "powerpc64",
    "ppc64": "powerpc64",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "loong64": "loongarch64",
}
# lints.rs DEFAULT_TRUNCATED_OUTPUT.
SAMPLE = 5


# --- small helpers -------------------------------------------------------------------------------


class CannotRun(Exception):
    """The lint could not decide (a file it needs was not captured whole): never a pass."""


def sample(items: Iterable[str], limit: int = SAMPLE) -> list[str]:
    """The first `limit` items, then "...and N more" (bootc format_items without --no-truncate)."""
    items = list(items)
    if len(items) <= limit:
        return items
    return [*items[:limit], f"...and {len(items) - limit} more"]


def listing(header: str, items: Iterable[str]) -> str:
    return f"{header}: {', '.join(sample(items))}"


def _lstat(ctx: CheckContext, path: str) -> Node | None:
    return ctx.node(path, follow=False)


def read_text(ctx: CheckContext, path: str) -> str:
    """The whole text of a small captured file, or CannotRun saying why not."""
    data = ctx.read(path)
    if data is None:
        kind = "not a regular file" if not ctx.is_file(path) else "not captured while the layers streamed"
        raise CannotRun(f"cannot read {path}: {kind}")
    if not ctx.tree.is_complete(path):
        raise CannotRun(f"cannot read {path}: only its first {len(data)} bytes were kept")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CannotRun(f"{path} is not UTF-8 text (byte {exc.start})") from None


def matching_files(ctx: CheckContext, directory: str, suffix: str) -> list[str]:
    """Names in `directory` whose extension is `suffix`, sorted (bootc filenames_sorted).  As
    with Rust's Path::extension, a bare ".toml" has none; ".x.toml" does."""
    return [n for n in ctx.listdir(directory) if n.endswith(suffix) and len(n) > len(suffix)]


def kernel_dirs(ctx: CheckContext) -> list[str]:
    """ostree-ext bootabletree find_kernel_dir_fs: real directories (lstat) of /usr/lib/modules
    holding a `vmlinuz`; directories without one are ignored (ublue-os/aurora#1286)."""
    out = []
    for name in ctx.listdir(MODULES):
        path = f"{MODULES}/{name}"
        node = _lstat(ctx, path)
        if node is not None and node.is_dir and ctx.exists(f"{path}/vmlinuz"):
            out.append(path)
    return out


def ukis(ctx: CheckContext) -> list[str]:
    return [f"{UKI_DIR}/{n}" for n in matching_files(ctx, UKI_DIR, ".efi") if ctx.is_file(f"{UKI_DIR}/{n}")]


def initramfs_beside(ctx: CheckContext, kernel: str | None) -> Pick:
    """The initramfs.img in the directory of the kernel bootc boots (docs bootc-images.md)."""
    if kernel is None:
        return nothing("bootc", "no kernel")
    path = posixpath.join(posixpath.dirname(kernel), "initramfs.img")
    res = ctx.lookup(path)
    if not res.ok:
        return nothing("bootc", f"{path}: {res.reason}")
    return Pick("bootc", path, path, res.path)


def boot_entries(ctx: CheckContext) -> list[str] | None:
    """What /boot holds besides EFI (lints.rs check_boot), or None without a /boot directory."""
    if not ctx.is_dir("/boot"):
        return None
    return [n for n in ctx.listdir("/boot") if n != "EFI"]


def _keyfile(text: str) -> dict[str, dict[str, str]]:
    """GKeyFile syntax as prepare-root.conf uses it: [group], key = value, # comments."""
    groups: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = groups.setdefault(line[1:-1].strip(), {})
        elif "=" in line and current is not None:
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip()
    return groups


# --- the bootc lints (BTC-002) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    message: str
    path: str | None = None
    evidence: tuple[str, ...] = ()
    severity: Severity | None = None  # a problem that stops bootc itself, whatever the lint type


LintCheck = Callable[[CheckContext], Problem | str | None]


@dataclass(frozen=True, slots=True)
class Lint:
    name: str
    fatal: bool
    path: str
    hint: str
    check: LintCheck

    @property
    def severity(self) -> Severity:
        return Severity.ERROR if self.fatal else Severity.WARNING


def _api_base_directories(ctx: CheckContext) -> Problem | None:
    problems = []
    for d in API_DIRS:
        node = _lstat(ctx, f"/{d}")
        if node is None:
            problems.append(f"Missing API filesystem base directory: /{d}")
        elif not node.is_dir:
            problems.append(
                f"Expected directory for API filesystem base directory: /{d} (it is a {node.kind})"
            )
    return Problem(problems[0], "/", tuple(problems)) if problems else None


def _composefs_in(ctx: CheckContext, base: str) -> Problem | None:
    # ostree-ext ostree_prepareroot::load_config_from_root: etc first, then usr/lib; the first
    # file found is the configuration, even if it disables composefs.
    for where in ("etc", "usr/lib"):
        path = f"{base}/{where}/ostree/prepare-root.conf"
        if not ctx.exists(path):
            continue
        conf = _keyfile(read_text(ctx, path))
        enabled = conf.get("composefs", {}).get("enabled")
        transient = conf.get("root", {}).get("transient")
        # overlayfs_enabled_in_config: [root] transient=true, or composefs yes/true/1/maybe (or
        # signed/verity, which imply it).
        if transient in ("true", "1") or enabled in ("yes", "true", "1", "maybe", "signed", "verity"):
            return None
        evidence = [
            f"[composefs] enabled = {enabled}" if enabled is not None else "[composefs] enabled unset"
        ]
        return Problem(f"{path} does not have composefs enabled", path, tuple(evidence))
    looked = f"{base}/{{etc,usr/lib}}/ostree/prepare-root.conf"
    return Problem(
        f"ostree/prepare-root.conf is not present to enable composefs (looked in {looked})", base or "/"
    )


def _baseimage_composefs(ctx: CheckContext) -> Problem | None:
    problem = _composefs_in(ctx, "")
    if problem is None and ctx.is_dir(BASEIMAGE_REF):
        problem = _composefs_in(ctx, BASEIMAGE_REF)
    return problem


def _root_in(ctx: CheckContext, base: str) -> Problem | None:
    sysroot = _lstat(ctx, f"{base}/sysroot")
    if sysroot is None:
        return Problem(f"Missing {base}/sysroot", f"{base}/sysroot")
    if not sysroot.is_dir:
        return Problem(
            f"Expected a directory for {base}/sysroot", f"{base}/sysroot", (f"found a {sysroot.kind}",)
        )
    ostree = _lstat(ctx, f"{base}/ostree")
    if ostree is None:
        return Problem(f"Missing {base}/ostree -> sysroot/ostree link", f"{base}/ostree")
    if not ostree.is_symlink:
        return Problem(f"{base}/ostree should be a symlink", f"{base}/ostree", (f"found a {ostree.kind}",))
    # The exact text is compared (bootc#2256 calls the requirement itself a bug).
    if ostree.entry.linkname != "sysroot/ostree":
        return Problem(
            f'Expected {base}/ostree -> sysroot/ostree, not "{ostree.entry.linkname}"', f"{base}/ostree"
        )
    return None


def _baseimage_root(ctx: CheckContext) -> Problem | None:
    problem = _root_in(ctx, "")
    if problem is None and ctx.is_dir(BASEIMAGE_REF):
        problem = _root_in(ctx, BASEIMAGE_REF)
    return problem


def parse_kargs(text: str, arch: str | None) -> list[str]:
    """One kargs.d file (bootc_kargs.rs Config, serde deny_unknown_fields): the arguments that
    apply to `arch` (Rust naming); ValueError with serde's wording when the file is invalid."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"TOML parse error: {exc}") from None
    unknown = sorted(set(data) - {"kargs", "match-architectures"})
    if unknown:
        raise ValueError(f"unknown field `{unknown[0]}`, expected `kargs` or `match-architectures`")
    if "kargs" not in data:
        raise ValueError("missing field `kargs`")
    for key in ("kargs", "match-architectures"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"invalid type for `{key}`: expected a sequence of strings, found {value!r}")
    arches = data.get("match-architectures")
    if arches is not None and arch not in arches:
        return []
    return list(data["kargs"])


def _bootc_kargs(ctx: CheckContext) -> Problem | str | None:
    node = ctx.node(KARGS_DIR)
    if node is None:
        return None
    if not node.is_dir:
        return Problem(f"{KARGS_DIR} is not a directory", KARGS_DIR, (f"found a {node.kind}",))
    arch = RUST_ARCH.get(ctx.config.architecture)
    errors, applied = [], []
    for name in matching_files(ctx, KARGS_DIR, ".toml"):
        path = f"{KARGS_DIR}/{name}"
        try:
            kargs = parse_kargs(read_text(ctx, path), arch)
        except ValueError as exc:
            errors.append(f"Parsing {name}: {exc}")
            continue
        applied.append(f"{name}: {' '.join(kargs) if kargs else f'(none for {arch})'}")
    if errors:
        return Problem(errors[0], KARGS_DIR, tuple(sample(errors)))
    return "; ".join(applied) or None


def _buildah_injected(ctx: CheckContext) -> Problem | None:
    # An alternative-root lint: a running root has these injected on purpose.
    for path in ("/etc/hostname", "/etc/resolv.conf"):
        node = _lstat(ctx, path)
        if node is not None and node.kind is Kind.FILE and node.entry.size == 0:
            return Problem(
                f"{path} is an empty file; this may have been synthesized by a container runtime.", path
            )
    return None


def _etc_usretc(ctx: CheckContext) -> Problem | None:
    # No /etc passes: bootc stays conservative for roots without one.
    if _lstat(ctx, "/etc") is not None and _lstat(ctx, "/usr/etc") is not None:
        return Problem(
            "Found /usr/etc - this is a bootc implementation detail and not supported to use in containers",
            "/usr/etc",
        )
    return None


def _kernel(ctx: CheckContext) -> Problem | str | None:
    dirs = kernel_dirs(ctx)
    if len(dirs) > 1:
        return Problem("Found multiple subdirectories in usr/lib/modules", MODULES, tuple(sample(dirs)))
    return dirs[0] if dirs else "no kernel directory (bootc passes this lint without a kernel)"


def _nonempty_boot(ctx: CheckContext) -> Problem | None:
    entries = boot_entries(ctx)
    if entries is None:
        return Problem("Missing /boot directory", "/boot")
    return (
        Problem(listing("Found non-empty /boot", entries), "/boot", tuple(sample(entries)))
        if entries
        else None
    )


def _nonempty_run_tmp(ctx: CheckContext) -> Problem | None:
    found: list[str] = []
    for d in ("/run", "/tmp"):
        node = _lstat(ctx, d)
        if node is not None and node.is_dir:
            found += [path for path, _ in ctx.tree.walk(d)]
    # lints.rs prune_known_run_paths: drop the runtime-injected file, then each parent under
    # /run left with nothing else below it.
    content = set(found)
    for known in RUNTIME_INJECTED:
        content.discard(known)
        parent = posixpath.dirname(known)
        while parent.startswith("/run/"):
            if any(p != parent and p.startswith(parent + "/") for p in content):
                break
            content.discard(parent)
            parent = posixpath.dirname(parent)
    if not content:
        return None
    items = sorted(content)
    return Problem(
        listing("Found content in runtime-only directories (/run, /tmp)", items),
        "/run",
        tuple(sample(items)),
    )


# sysusers.d fields: whitespace separated, a "quoted string" is one field (bootc next_token).
_FIELD = re.compile(r'"([^"]*)"|(\S+)')


def parse_sysusers(text: str) -> tuple[set[str], set[str]]:
    """(users, groups) a sysusers.d(5) file declares; a `u` line also declares its group (bootc
    read_sysusers).  ValueError names a u/g line without a name."""
    users: set[str] = set()
    groups: set[str] = set()
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [quoted or bare for quoted, bare in _FIELD.findall(line)]
        if not fields or fields[0] not in ("u", "g", "u!"):
            continue  # r, m and unknown types declare no name (bootc skips unknown types too)
        if len(fields) < 2:
            raise ValueError(f"Failed to parse sysusers entry: {line.strip()}")
        if fields[0].startswith("u"):
            users.add(fields[1])
        groups.add(fields[1])
    return users, groups


def _names(text: str) -> list[str]:
    """Account names of /etc/passwd or /etc/group lines (name:...)."""
    return [
        line.split(":", 1)[0]
        for line in text.splitlines()
        if ":" in line and not line.startswith(("#", "+", "-"))
    ]


def _sysusers(ctx: CheckContext) -> Problem | None:
    users: set[str] = set()
    groups: set[str] = set()
    for name in matching_files(ctx, SYSUSERS_DIR, ".conf"):
        path = f"{SYSUSERS_DIR}/{name}"
        try:
            u, g = parse_sysusers(read_text(ctx, path))
        except ValueError as exc:
            # bootc_sysusers::analyze fails, and with it the whole `bootc container lint` run.
            return Problem(f"{exc} (in {path})", path, severity=Severity.ERROR)
        users |= u
        groups |= g
    passwd = read_text(ctx, "/etc/passwd") if ctx.exists("/etc/passwd") else ""
    group = read_text(ctx, "/etc/group") if ctx.exists("/etc/group") else ""
    missing_users = sorted(set(_names(passwd)) - users)
    missing_groups = sorted(set(_names(group)) - groups)
    if not missing_users and not missing_groups:
        return None
    parts, evidence = [], []
    for header, missing in (
        ("Found /etc/passwd entry without corresponding systemd sysusers.d", missing_users),
        ("Found /etc/group entry without corresponding systemd sysusers.d", missing_groups),
    ):
        if missing:
            parts.append(listing(header, missing))
            evidence += [f"{header.split()[1]}: {m}" for m in sample(missing)]
    return Problem("; ".join(parts), "/etc/passwd" if missing_users else "/etc/group", tuple(evidence))


def _utf8(ctx: CheckContext) -> Problem | None:
    bad = []
    for path, what in ctx.non_utf8:
        parent, _, name = path.rpartition("/")
        if what == "name":
            bad.append(f'{parent or "/"}: Found non-utf8 filename "{name}"')
        else:
            bad.append(f"{path}: Found non-utf8 symlink target")
    return Problem(bad[0], "/", tuple(sample(bad))) if bad else None


def _var_log(ctx: CheckContext) -> Problem | None:
    node = ctx.node("/var/log")
    if node is None or not node.is_dir:
        return None
    # Only regular files count: symlinks (e.g. README -> systemd docs) and empty files are fine.
    logs = [p for p, n in ctx.tree.walk("/var/log") if n.kind is Kind.FILE and n.entry.size > 0]
    return (
        Problem(listing("Found non-empty logfiles", logs), "/var/log", tuple(sample(logs))) if logs else None
    )


def _var_run(ctx: CheckContext) -> Problem | None:
    node = _lstat(ctx, "/var/run")
    if node is not None and not node.is_symlink:
        return Problem("Not a symlink: var/run", "/var/run", (f"found a {node.kind}",))
    return None


LINTS: tuple[Lint, ...] = (
    Lint(
        "api-base-directories",
        True,
        "/",
        "create /dev /proc /sys /run /tmp /var as real directories (not links) in the image",
        _api_base_directories,
    ),
    Lint(
        "baseimage-composefs",
        False,
        "/usr/lib/ostree/prepare-root.conf",
        'ship /usr/lib/ostree/prepare-root.conf with "[composefs]\\nenabled = yes" (bootc baseimage/base)',
        _baseimage_composefs,
    ),
    Lint(
        "baseimage-root",
        True,
        "/sysroot",
        "create the /sysroot directory and the /ostree -> sysroot/ostree symlink (bootc baseimage/base)",
        _baseimage_root,
    ),
    Lint(
        "bootc-kargs",
        True,
        KARGS_DIR,
        'each kargs.d/*.toml holds kargs = ["..."] and optionally match-architectures = ["x86_64"]',
        _bootc_kargs,
    ),
    Lint(
        "buildah-injected",
        False,
        "/etc",
        "remove the empty /etc/hostname and /etc/resolv.conf the build runtime left behind",
        _buildah_injected,
    ),
    Lint(
        "etc-usretc",
        True,
        "/usr/etc",
        "keep configuration in /etc only and remove /usr/etc from the image",
        _etc_usretc,
    ),
    Lint(
        "kernel",
        True,
        MODULES,
        "keep one kernel: remove the other /usr/lib/modules/<kver> directories (dnf remove the old kernel)",
        _kernel,
    ),
    Lint(
        "nonempty-boot",
        False,
        "/boot",
        "keep /boot empty: the kernel and initramfs belong in /usr/lib/modules/<kver>/",
        _nonempty_boot,
    ),
    Lint(
        "nonempty-run-tmp",
        False,
        "/run",
        "clean /run and /tmp at the end of the build (or mount tmpfs there during RUN steps)",
        _nonempty_run_tmp,
    ),
    Lint(
        "sysusers",
        False,
        "/etc/passwd",
        "declare these users and groups in /usr/lib/sysusers.d/*.conf (u NAME ... / g NAME ...)",
        _sysusers,
    ),
    Lint(
        "utf8",
        True,
        "/",
        "rename the files (and link targets) to valid UTF-8: the ostree backend cannot store others",
        _utf8,
    ),
    Lint(
        "var-log",
        False,
        "/var/log",
        "delete log files at the end of the build (find /var/log -type f -delete)",
        _var_log,
    ),
    Lint(
        "var-run",
        True,
        "/var/run",
        "replace the /var/run directory with a symlink: ln -sfn ../run /var/run",
        _var_run,
    ),
)
LINT_NAMES = (*(lint.name for lint in LINTS), "var-tmpfiles")


def run_lint(ctx: CheckContext, lint: Lint) -> Result:
    try:
        outcome = lint.check(ctx)
    except CannotRun as exc:
        return Result(Outcome.ERROR, f"{lint.name}: could not run: {exc}", lint.path, (), None, lint.severity)
    if outcome is None or isinstance(outcome, str):
        evidence = (outcome,) if outcome else ()
        return Result(Outcome.PASS, f"{lint.name}: passed", lint.path, evidence, None, lint.severity)
    return Result(
        Outcome.FAIL,
        f"{lint.name}: {outcome.message}",
        outcome.path or lint.path,
        outcome.evidence,
        lint.hint,
        outcome.severity or lint.severity,
    )
