"""Rules of the `bootc` profile (boot-requirements.md b.4): what `bootc container lint`,
`bootc install/switch` and bootc-image-builder (BIB) check or assume, answered statically.

BTC-002 re-implements the bootc lints under their own names and types (a.6), one Result per
lint, sorted by name as bootc runs them; a lint's type (fatal/warning) is its Result's severity.
Messages reuse bootc's wording so a user can search for them; item lists are cut to bootc's
default sample of 5 plus "...and N more" (bootc PR #1324).
"""

from __future__ import annotations

import posixpath
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ...fs.node import Kind, Node
from ...report import Outcome, Severity
from ..check import Result, failed, not_run, passed, rule, skipped
from ..context import CheckContext
from ..initrd import InitrdInfo
from ..kernel import KernelFormat

MODULES = "/usr/lib/modules"
UKI_DIR = "/boot/EFI/Linux"
KARGS_DIR = "/usr/lib/bootc/kargs.d"
INSTALL_DIR = "/usr/lib/bootc/install"
SYSUSERS_DIR = "/usr/lib/sysusers.d"
BOOTUPD_EFI = "/usr/lib/bootupd/updates/EFI"
# bootc lints.rs BASEIMAGE_REF: when the image embeds bootc's reference base content, the
# baseimage lints check it too.
BASEIMAGE_REF = "/usr/share/doc/bootc/baseimage/base"
# systemd.io/API_FILE_SYSTEMS plus /var, which bootc requires (lints.rs API_DIRS).
API_DIRS = ("dev", "proc", "sys", "run", "tmp", "var")
# lints.rs CONTAINER_RUNTIME_FILES: podman bind-mounts it for DNS (bootc#2050).
RUNTIME_INJECTED = ("/run/systemd/resolve/stub-resolv.conf",)
# osbuild/images pkg/bootc/resolver.go: the root filesystems BIB can make.
ROOT_FS_TYPES = ("ext4", "xfs", "btrfs")
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
# bootc lints.rs DEFAULT_TRUNCATED_OUTPUT.
SAMPLE = 5

CAPTURE: tuple[str, ...] = (
    "etc/os-release",
    "usr/lib/os-release",
    "etc/passwd",
    "etc/group",
    "usr/lib/sysusers.d/*",
    "usr/lib/bootc/kargs.d/*",
    "usr/lib/bootc/install/*",
    "etc/ostree/prepare-root.conf",
    "usr/lib/ostree/prepare-root.conf",
    "usr/share/doc/bootc/baseimage/base/etc/ostree/prepare-root.conf",
    "usr/share/doc/bootc/baseimage/base/usr/lib/ostree/prepare-root.conf",
)


# --- small helpers -------------------------------------------------------------------------------


class _CannotRun(Exception):
    """The lint could not decide (a file it needs was not captured whole): never a pass."""


def sample(items: Iterable[str], limit: int = SAMPLE) -> list[str]:
    """The first `limit` items, then "...and N more" (bootc format_items without --no-truncate)."""
    items = list(items)
    if len(items) <= limit:
        return items
    return [*items[:limit], f"...and {len(items) - limit} more"]


def _listing(header: str, items: Iterable[str]) -> str:
    return f"{header}: {', '.join(sample(items))}"


def _shown(text: str) -> str:
    """A name as bootc prints it: undecodable bytes (kept as surrogates) escaped as \\xNN."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _lstat(ctx: CheckContext, path: str) -> Node | None:
    return ctx.node(path, follow=False)


def _read(ctx: CheckContext, path: str) -> str:
    """The whole text of a small captured file, or _CannotRun saying why not."""
    data = ctx.read(path)
    if data is None:
        kind = "not a regular file" if not ctx.is_file(path) else "not captured while the layers streamed"
        raise _CannotRun(f"cannot read {path}: {kind}")
    if not ctx.tree.is_complete(path):
        raise _CannotRun(f"cannot read {path}: only its first {len(data)} bytes were kept")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _CannotRun(f"{path} is not UTF-8 text (byte {exc.start})") from None


def _files(ctx: CheckContext, directory: str, suffix: str) -> list[str]:
    """Names in `directory` with a real extension `suffix`, sorted (bootc filenames_sorted)."""
    return [n for n in ctx.listdir(directory) if n.endswith(suffix) and len(n) > len(suffix) and n[0] != "."]


def _kernel_dirs(ctx: CheckContext) -> list[str]:
    """ostree-ext bootabletree find_kernel_dir_fs: real directories (lstat) of /usr/lib/modules
    holding a `vmlinuz`; directories without one are ignored (ublue-os/aurora#1286)."""
    out = []
    for name in ctx.listdir(MODULES):
        path = f"{MODULES}/{name}"
        node = _lstat(ctx, path)
        if node is not None and node.is_dir and ctx.exists(f"{path}/vmlinuz"):
            out.append(path)
    return out


def _ukis(ctx: CheckContext) -> list[str]:
    return [f"{UKI_DIR}/{n}" for n in _files(ctx, UKI_DIR, ".efi") if ctx.is_file(f"{UKI_DIR}/{n}")]


def _boot_entries(ctx: CheckContext) -> list[str] | None:
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
        conf = _keyfile(_read(ctx, path))
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
    for name in _files(ctx, KARGS_DIR, ".toml"):
        path = f"{KARGS_DIR}/{name}"
        try:
            kargs = parse_kargs(_read(ctx, path), arch)
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
    dirs = _kernel_dirs(ctx)
    if len(dirs) > 1:
        return Problem("Found multiple subdirectories in usr/lib/modules", MODULES, tuple(sample(dirs)))
    return dirs[0] if dirs else "no kernel directory (bootc passes this lint without a kernel)"


def _nonempty_boot(ctx: CheckContext) -> Problem | None:
    entries = _boot_entries(ctx)
    if entries is None:
        return Problem("Missing /boot directory", "/boot")
    return (
        Problem(_listing("Found non-empty /boot", entries), "/boot", tuple(sample(entries)))
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
    items = [_shown(p) for p in sorted(content)]
    return Problem(
        _listing("Found content in runtime-only directories (/run, /tmp)", items),
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
    for name in _files(ctx, SYSUSERS_DIR, ".conf"):
        path = f"{SYSUSERS_DIR}/{name}"
        try:
            u, g = parse_sysusers(_read(ctx, path))
        except ValueError as exc:
            # bootc_sysusers::analyze fails, and with it the whole `bootc container lint` run.
            return Problem(f"{exc} (in {path})", path, severity=Severity.ERROR)
        users |= u
        groups |= g
    passwd = _read(ctx, "/etc/passwd") if ctx.exists("/etc/passwd") else ""
    group = _read(ctx, "/etc/group") if ctx.exists("/etc/group") else ""
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
            parts.append(_listing(header, missing))
            evidence += [f"{header.split()[1]}: {m}" for m in sample(missing)]
    return Problem("; ".join(parts), "/etc/passwd" if missing_users else "/etc/group", tuple(evidence))


def _utf8(ctx: CheckContext) -> Problem | None:
    bad = []
    for path, node in ctx.tree.walk("/"):
        parent, _, name = path.rpartition("/")
        if not _is_utf8(name):
            bad.append(f'{_shown(parent) or "/"}: Found non-utf8 filename "{_shown(name)}"')
        elif node.is_symlink and not _is_utf8(node.entry.linkname):
            bad.append(f"{_shown(path)}: Found non-utf8 symlink target")
    return Problem(bad[0], "/", tuple(sample(bad))) if bad else None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _var_log(ctx: CheckContext) -> Problem | None:
    node = ctx.node("/var/log")
    if node is None or not node.is_dir:
        return None
    # Only regular files count: symlinks (e.g. README -> systemd docs) and empty files are fine.
    logs = [_shown(p) for p, n in ctx.tree.walk("/var/log") if n.kind is Kind.FILE and n.entry.size > 0]
    return (
        Problem(_listing("Found non-empty logfiles", logs), "/var/log", tuple(sample(logs))) if logs else None
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


def _run_lint(ctx: CheckContext, lint: Lint) -> Result:
    try:
        outcome = lint.check(ctx)
    except _CannotRun as exc:
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


@rule(
    "BTC-002",
    "bootc container lint",
    "gen=- cos=- kairos=- bootc=E",
    sources=("boot-requirements.md a.6, b.4", "bootc-dev/bootc crates/lib/src/lints.rs"),
)
def bootc_lints(ctx: CheckContext) -> Iterable[Result]:
    """The lints of `bootc container lint` re-implemented on the image (an "alternative root",
    as `--rootfs DIR` gives), one result per lint under the lint's own name, with the lint's
    type as severity (fatal = error, warning = warning).  Deviations: a lint lists every problem
    it finds (bootc stops at the first), `var-tmpfiles` is not run (bootc runs it on a running
    root only, resolving owners through the host's name service), and sysusers.d lines need no
    GECOS field (systemd's grammar; bootc's parser wants one)."""
    for lint in LINTS:
        yield _run_lint(ctx, lint)
    yield skipped(
        "var-tmpfiles: not run: bootc runs this lint on a running root only (RootType::Running); "
        "an image is checked as an alternative root",
        "/var",
    )


# --- BTC-001, BTC-003..009 --------------------------------------------------------------------


@rule(
    "BTC-001",
    "the image is labelled bootable",
    "gen=- cos=- kairos=- bootc=E",
    sources=(
        "boot-requirements.md a.6 (other bootc requirements), b.4",
        "bootc crates/ostree-ext/src/container/store.rs",
        "bootc crates/lib/src/deploy.rs check_bootc_label",
    ),
)
def bootc_label(ctx: CheckContext) -> Iterable[Result]:
    """`bootc switch/upgrade` refuse an image without the `containers.bootc` (or legacy
    `ostree.bootable`) config label ("Target image does not have ostree.bootable label"); a
    `containers.bootc` value other than "1" only draws a notice, so it is a warning here."""
    labels: Mapping[str, str] = ctx.labels
    value = labels.get("containers.bootc")
    if value == "1":
        yield passed("image config label containers.bootc=1", None, ["containers.bootc=1"])
    elif value is not None:
        yield failed(
            f'image config label containers.bootc is "{value}", not "1"',
            None,
            [f"containers.bootc={value}"],
            hint='LABEL containers.bootc=1 in the Containerfile (bootc expects exactly "1")',
            severity=Severity.WARNING,
        )
    elif "ostree.bootable" in labels:
        yield passed(
            "image config label ostree.bootable (legacy) is set",
            None,
            [
                f"ostree.bootable={labels['ostree.bootable']}",
                "containers.bootc is missing: bootc logs a notice",
            ],
        )
    else:
        yield failed(
            "image config has no containers.bootc (or ostree.bootable) label",
            None,
            [f"labels: {', '.join(sorted(labels)) or '(none)'}"],
            hint="LABEL containers.bootc=1 in the Containerfile (bootc base images set it)",
        )


@rule(
    "BTC-003",
    "exactly one kernel where bootc looks",
    "gen=- cos=- kairos=- bootc=E",
    sources=(
        "boot-requirements.md a.6, b.4",
        "bootc crates/lib/src/kernel.rs find_kernel",
        "docs bootc-images.md",
    ),
)
def bootc_kernel(ctx: CheckContext) -> Iterable[Result]:
    """bootc boots `/usr/lib/modules/<kver>/vmlinuz` of the one kernel directory, or a sealed UKI
    (the first `/boot/EFI/Linux/*.efi`).  Stricter than the `kernel` lint: zero kernels fail, and
    the file must be a kernel by content (d.1)."""
    ukis = _ukis(ctx)
    dirs = _kernel_dirs(ctx)
    if ukis:
        info = ctx.artifact(ukis[0]).kernel
        evidence = [f"{ukis[0]}: {info.description if info else 'not analysed'}"]
        if info is not None and info.format is KernelFormat.UKI and info.ok:
            yield passed(f"UKI {ukis[0]}" + (f" ({info.version})" if info.version else ""), ukis[0], evidence)
        else:
            yield failed(f"{ukis[0]} is not a unified kernel image", ukis[0], evidence, hint=_UKI_HINT)
        return
    if len(dirs) != 1:
        found = sample(dirs) or [f"no {MODULES}/<kver>/vmlinuz and no {UKI_DIR}/*.efi"]
        boot = [p for p in ctx.glob("/boot/vmlinuz*")]
        if boot:
            found.append(f"kernels in /boot are masked at runtime: {', '.join(sample(boot))}")
        yield failed(
            f"{len(dirs)} kernels in {MODULES} (bootc needs exactly one)"
            if dirs
            else "no kernel where bootc looks",
            MODULES,
            found,
            hint="keep one kernel package: bootc boots /usr/lib/modules/<kver>/vmlinuz",
        )
        return
    path = f"{dirs[0]}/vmlinuz"
    artifact = ctx.artifact(path)
    info = artifact.kernel
    if info is not None and info.is_kernel:
        yield passed(
            f"kernel {path}" + (f" ({info.version})" if info.version else ""),
            path,
            [f"{artifact.chain}: {info.description}"],
        )
    else:
        what = info.description if info else "not a regular file, or not analysed"
        yield failed(
            f"{path} is not a kernel",
            path,
            [f"{artifact.chain}: {what}"],
            hint="install the kernel package (kernel-core) instead of a placeholder",
        )


_UKI_HINT = (
    "build the UKI with ukify or dracut --uefi (a PE image with .linux, .initrd and .cmdline sections)"
)


def _initramfs_subjects(ctx: CheckContext) -> tuple[list[tuple[str, str]], Result | None]:
    """(kver, initramfs path) per bootc kernel directory, or why there is nothing to check."""
    dirs = _kernel_dirs(ctx)
    if not dirs:
        why = "a UKI carries its own initrd" if _ukis(ctx) else f"no {MODULES}/<kver>/vmlinuz (BTC-003)"
        return [], skipped(f"no initramfs to check: {why}")
    return [(posixpath.basename(d), f"{d}/initramfs.img") for d in dirs], None


def _initramfs_info(ctx: CheckContext, path: str) -> InitrdInfo | Result:
    analysis = ctx.analysis(path)
    if isinstance(analysis, InitrdInfo):
        return analysis
    detail = getattr(analysis, "error", None) or "not analysed"
    return not_run(f"{path} could not be read: {detail}", path)


@rule(
    "BTC-004",
    "the initramfs beside the kernel is valid",
    "gen=- cos=- kairos=- bootc=E",
    sources=("boot-requirements.md a.6, b.4, b.1 INI-002/INI-003, d.2", "bootc docs bootc-images.md"),
)
def bootc_initramfs(ctx: CheckContext) -> Iterable[Result]:
    """`/usr/lib/modules/<kver>/initramfs.img` exists and is a readable cpio initramfs (INI-002)
    built for that kernel (INI-003, a warning as in the bootc column).  ociboot is stricter than
    bootc's docs ("optionally"): ostree deployments of a split kernel boot with that file."""
    subjects, none = _initramfs_subjects(ctx)
    if none is not None:
        yield none
        return
    for kver, path in subjects:
        if not ctx.exists(path):
            yield failed(
                f"no initramfs beside the kernel: {path} is missing",
                path,
                [f"kernel: {posixpath.dirname(path)}/vmlinuz"],
                hint=f"dracut --no-hostonly --kver {kver} -f {path} in the Containerfile",
            )
            continue
        info = _initramfs_info(ctx, path)
        if isinstance(info, Result):
            yield info
        elif info.cap_hit:
            yield not_run(f"{path}: stopped at the decompression cap, content not fully checked", path)
        elif not info.ok:
            yield failed(
                f"{path} is not a valid initramfs",
                path,
                [info.description, *info.problems],
                hint=f"rebuild it: dracut --no-hostonly --kver {kver} -f {path}",
            )
        elif kver not in info.kernel_versions:
            built = ", ".join(info.kernel_versions) or "no kernel (no usr/lib/modules/<kver> inside)"
            yield failed(
                f"{path} was built for {built}, not {kver}",
                path,
                [f"modules inside: {built}"],
                hint=f"rebuild it after installing the kernel: dracut --no-hostonly --kver {kver} -f {path}",
                severity=Severity.WARNING,
            )
        else:
            yield passed(
                f"initramfs {path} for {kver}",
                path,
                [f"{info.description}", f"{info.member_count} members"],
            )


@rule(
    "BTC-005",
    "the initramfs has the ostree/bootc dracut module",
    "gen=- cos=- kairos=- bootc=W",
    sources=(
        "boot-requirements.md b.4, d.2",
        "bootc baseimage/dracut/usr/lib/dracut.conf.d/10-bootc-base.conf",
    ),
)
def bootc_dracut_modules(ctx: CheckContext) -> Iterable[Result]:
    """The initramfs must mount the deployment: dracut's `ostree` module (ostree backend) or
    bootc's own (`add_dracutmodules+=" ostree bootc "` in bootc's base dracut config); read from
    the initramfs's `usr/lib/dracut/modules.txt`."""
    subjects, none = _initramfs_subjects(ctx)
    if none is not None:
        yield none
        return
    for _, path in subjects:
        if not ctx.exists(path):
            yield skipped(f"{path} is missing (BTC-004)", path)
            continue
        info = _initramfs_info(ctx, path)
        if isinstance(info, Result):
            yield info
            continue
        modules = info.dracut_modules
        evidence = [
            f"modules.txt: {' '.join(modules)}" if modules else "no usr/lib/dracut/modules.txt inside"
        ]
        wanted = [m for m in ("ostree", "bootc") if m in modules]
        if wanted:
            yield passed(f"{path} has dracut module(s) {', '.join(wanted)}", path, evidence)
        else:
            yield failed(
                f"{path} has neither the ostree nor the bootc dracut module",
                path,
                evidence,
                hint='add_dracutmodules+=" ostree bootc " to a dracut.conf.d file, rebuild the initramfs',
            )


def merge_install_config(files: Iterable[tuple[str, str]], arch: str | None) -> tuple[str | None, str | None]:
    """(root filesystem type, the file that set it) from bootc install drop-ins in name order:
    later files override earlier ones field by field; a file whose
    `[install] match-architectures` excludes `arch` is ignored (bootc-install-config(5)).
    The legacy `[install] root-fs-type` counts when `filesystem.root.type` is absent.
    ValueError names a file that is not valid TOML."""
    fs_type: str | None = None
    source: str | None = None
    for name, text in files:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{name}: {exc}") from None
        install = data.get("install")
        if not isinstance(install, dict):
            continue
        arches = install.get("match-architectures", install.get("match_architectures"))
        if isinstance(arches, list) and arch not in arches:
            continue
        value = _dig(install, "filesystem", "root", "type")
        if value is None:
            value = install.get("root-fs-type")
        if value is not None:
            fs_type, source = str(value), name
    return fs_type, source


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


@rule(
    "BTC-006",
    "a supported default root filesystem type",
    "gen=- cos=- kairos=- bootc=W",
    sources=(
        "boot-requirements.md a.7, b.4, e.14",
        "osbuild/images pkg/bootc/resolver.go DefaultRootfsType",
        "bootc docs bootc-install-config.5",
    ),
)
def bootc_root_fs(ctx: CheckContext) -> Iterable[Result]:
    """bootc-image-builder takes the root filesystem from `bootc install print-configuration`
    (the `/usr/lib/bootc/install/*.toml` drop-ins merged in name order) and fails without one
    ("no default root filesystem type specified in container, please use --rootfs") or with one
    it cannot make.  A warning: `--rootfs` overrides it.  A drop-in that is not valid TOML makes
    every `bootc install` fail, so that one is an error."""
    names = _files(ctx, INSTALL_DIR, ".toml")
    try:
        texts = [(name, _read(ctx, f"{INSTALL_DIR}/{name}")) for name in names]
    except _CannotRun as exc:
        yield not_run(str(exc), INSTALL_DIR)
        return
    try:
        fs_type, source = merge_install_config(texts, RUST_ARCH.get(ctx.config.architecture))
    except ValueError as exc:
        yield failed(
            f"bootc install configuration is not valid TOML: {exc}",
            INSTALL_DIR,
            [f"drop-ins: {', '.join(names)}"],
            hint="fix the TOML syntax of the drop-in",
            severity=Severity.ERROR,
        )
        return
    evidence = [f"drop-ins: {', '.join(names) or '(none)'}"]
    if fs_type is None:
        yield failed(
            "no default root filesystem type specified in container, please use --rootfs",
            INSTALL_DIR,
            evidence,
            hint=f'add {INSTALL_DIR}/00-rootfs.toml with [install.filesystem.root] type = "xfs"',
        )
    elif fs_type not in ROOT_FS_TYPES:
        yield failed(
            f"unsupported root filesystem type: {fs_type} (from {source})",
            f"{INSTALL_DIR}/{source}",
            [*evidence, f"supported: {', '.join(ROOT_FS_TYPES)}"],
            hint=f"set [install.filesystem.root] type to one of {', '.join(ROOT_FS_TYPES)}",
        )
    else:
        yield passed(f"root filesystem type {fs_type} (from {source})", f"{INSTALL_DIR}/{source}", evidence)


@rule(
    "BTC-007",
    "os-release names the system",
    "gen=- cos=- kairos=- bootc=E",
    sources=("boot-requirements.md a.7, b.4", "osbuild/images pkg/bib/osinfo/osinfo.go validateOSRelease"),
)
def bootc_os_release(ctx: CheckContext) -> Iterable[Result]:
    """bootc-image-builder requires `ID`, `VERSION_ID` and `NAME` in os-release ("missing %s in
    os-release") and stops without them; one result per missing key."""
    release = ctx.os_release
    path = "/etc/os-release" if ctx.exists("/etc/os-release") else "/usr/lib/os-release"
    if not release:
        yield failed(
            "no os-release: neither /etc/os-release nor /usr/lib/os-release is readable",
            path,
            hint="ship the distribution's os-release file (/usr/lib/os-release, linked from /etc/os-release)",
        )
        return
    missing = [key for key in ("ID", "VERSION_ID", "NAME") if not release.get(key)]
    for key in missing:
        yield failed(
            f"missing {key} in os-release",
            path,
            [f"{k}={v}" for k, v in release.items() if k in ("ID", "VERSION_ID", "NAME")],
            hint=f"add {key}= to {path}",
        )
    if not missing:
        yield passed(
            f"os-release: {release['NAME']} {release['VERSION_ID']} ({release['ID']})",
            path,
            [f"ID={release['ID']}", f"VERSION_ID={release['VERSION_ID']}", f"NAME={release['NAME']}"],
        )


@rule(
    "BTC-008",
    "bootupd carries a UEFI vendor directory",
    "gen=- cos=- kairos=- bootc=W",
    sources=("boot-requirements.md a.7, b.4", "osbuild/images pkg/bib/osinfo/osinfo.go uefiVendor"),
)
def bootc_uefi_vendor(ctx: CheckContext) -> Iterable[Result]:
    """bootc-image-builder names the UEFI vendor after the first directory other than `BOOT` in
    `/usr/lib/bootupd/updates/EFI`; without one a disk image gets no vendor boot entry."""
    vendors = [n for n in ctx.listdir(BOOTUPD_EFI) if n != "BOOT" and ctx.is_dir(f"{BOOTUPD_EFI}/{n}")]
    if vendors:
        path = f"{BOOTUPD_EFI}/{vendors[0]}"
        yield passed(f"UEFI vendor {vendors[0]}", path, sample(ctx.listdir(path)))
    else:
        found = ctx.listdir(BOOTUPD_EFI)
        yield failed(
            f"no UEFI vendor directory in {BOOTUPD_EFI}",
            BOOTUPD_EFI,
            [f"{BOOTUPD_EFI}: {', '.join(found)}" if found else f"{BOOTUPD_EFI} is missing or empty"],
            hint="install bootupd, shim and grub2-efi, then run bootupctl backend generate-update-metadata",
        )


@rule(
    "BTC-009",
    "/boot is empty",
    "gen=- cos=- kairos=- bootc=W",
    sources=("boot-requirements.md a.6 nonempty-boot, b.4", "bootc lints.rs check_boot"),
)
def bootc_empty_boot(ctx: CheckContext) -> Iterable[Result]:
    """bootc masks the image's `/boot` at runtime: anything there but `EFI` (the UKI location) is
    dead weight or a kernel in the wrong place (the `nonempty-boot` lint)."""
    entries = _boot_entries(ctx)
    if entries is None:
        yield failed("Missing /boot directory", "/boot", hint="create an empty /boot directory")
    elif entries:
        yield failed(
            _listing("Found non-empty /boot", entries),
            "/boot",
            sample(entries),
            hint="keep /boot empty: the kernel and initramfs belong in /usr/lib/modules/<kver>/",
        )
    else:
        yield passed("/boot is empty" + (" (except EFI)" if ctx.exists("/boot/EFI") else ""), "/boot")


RULES = (
    bootc_label,
    bootc_lints,
    bootc_kernel,
    bootc_initramfs,
    bootc_dracut_modules,
    bootc_root_fs,
    bootc_os_release,
    bootc_uefi_vendor,
    bootc_empty_boot,
)
