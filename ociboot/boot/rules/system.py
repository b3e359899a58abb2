"""Rules: the system around the kernel: init, os-release, root layout, SSH host keys, size.

The tool behaviour behind them (docs/tools.md): bootc `container lint`, bootc-image-builder's
os-release check, kairos-init validate (K10), the sizing of cOS's upgrade.sh and of kairos-agent.
Paths are checked on the flattened tree with symlinks resolved inside the root.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ...fs.node import Kind, Node
from ...report import Severity
from ...textsafe import raw
from ..check import Profile, Result, failed, not_run, passed, rule
from ..context import CheckContext, link_chain, parse_env_file
from ..emulate.switch_root import SYSTEMD_PATHS, find_init
from ..pkgdb.roles import Family
from ..upstream import (
    BOOTC_IMAGES_DOC,
    BOOTC_LINTS,
    COS_PACKAGE_STACK,
    COS_V0_5,
    COS_V0_8,
    ELEMENTAL_COMMON,
    ELEMENTAL_GRUB,
    ELEMENTAL_SETUP_MODULE,
    KAIROS_AGENT,
    KAIROS_SDK,
    KAIROS_VALIDATE,
    OS_RELEASE,
    OSBUILD_OSINFO,
    issue,
)

# --- INIT-001 ------------------------------------------------------------------------------------


@rule(
    "INIT-001",
    "an init exists",
    {
        Profile.GENERIC: Severity.ERROR,
        Profile.COS: Severity.ERROR,
        Profile.KAIROS: Severity.ERROR,
        Profile.BOOTC: Severity.ERROR,
    },
    sources=(
        f"{COS_PACKAGE_STACK} systemd init (D8)",
        f"{ELEMENTAL_SETUP_MODULE} (E14)",
        f"{KAIROS_VALIDATE} [SERVICES] (K12)",
        BOOTC_IMAGES_DOC,
    ),
    description=(
        "/sbin/init must resolve (links followed inside the image) to an executable, or systemd "
        "must be at /usr/lib/systemd/systemd (systemd's switch-root execs it when no init= is "
        "given).  cos and bootc need systemd (Elemental's dracut modules and bootc require it); "
        "kairos accepts OpenRC on Alpine (kairos-init builds Alpine flavors with OpenRC); generic "
        "accepts any executable /sbin/init and names what it is.  A dangling /sbin/init is a "
        "failure even when systemd exists: initrds other than systemd's exec /sbin/init."
    ),
)
def init_exists(ctx: CheckContext) -> Iterable[Result]:
    info = find_init(ctx)
    evidence = [
        info.init_chain or info.init_problem or "",
        f"systemd: {info.systemd or 'not found at ' + ', '.join(SYSTEMD_PATHS)}",
    ]
    if info.openrc:
        evidence.append(f"openrc: {info.openrc}")
    hint_systemd = "install systemd and link /sbin/init to ../lib/systemd/systemd (Debian: systemd-sysv)"
    if info.init_problem and ctx.node("/sbin/init", follow=False) is not None:
        yield failed(
            f"/sbin/init does not start anything: {info.init_problem}",
            "/sbin/init",
            evidence,
            hint="point /sbin/init at an executable init (e.g. ../lib/systemd/systemd)",
        )
        return
    if info.init_is_systemd or info.systemd:
        where = info.init_real if info.init_is_systemd else info.systemd
        yield passed(
            f"systemd is the init: {where}", "/sbin/init" if info.init_is_systemd else where, evidence
        )
        return
    alpine = ctx.os_release.get("ID") == "alpine" or ctx.family is Family.ALPINE
    if ctx.profile is Profile.KAIROS and alpine and info.openrc and info.init_real:
        yield passed(
            f"OpenRC on Alpine: /sbin/init -> {info.init_real}, {info.openrc}", "/sbin/init", evidence
        )
        return
    if ctx.profile is Profile.GENERIC and info.init_real:
        yield passed(f"/sbin/init resolves to {info.init_real} (not systemd)", "/sbin/init", evidence)
        return
    need = {Profile.COS: "systemd", Profile.BOOTC: "systemd", Profile.KAIROS: "systemd (or OpenRC on Alpine)"}
    what = need.get(ctx.profile, "an executable init")
    found = f"/sbin/init is {info.init_real}" if info.init_real else "no /sbin/init"
    yield failed(f"no {what} found ({found})", "/sbin/init", evidence, hint=hint_systemd)


# --- OSR-001 -------------------------------------------------------------------------------------

#: os-release(5): /etc/os-release first, /usr/lib/os-release as the fallback.
OS_RELEASE_PATHS = ("/etc/os-release", "/usr/lib/os-release")
#: bootc-image-builder osinfo.go validateOSRelease ("missing %s in os-release").
OS_RELEASE_KEYS = ("ID", "VERSION_ID", "NAME")


@rule(
    "OSR-001",
    "os-release names the system",
    {
        Profile.GENERIC: Severity.WARNING,
        Profile.COS: Severity.WARNING,
        Profile.KAIROS: Severity.WARNING,
        Profile.BOOTC: Severity.ERROR,
    },
    sources=(
        f"{OSBUILD_OSINFO} validateOSRelease",
        f"{ELEMENTAL_GRUB} SetDefaultEntry (E13)",
        OS_RELEASE,
    ),
    description=(
        "/etc/os-release, else /usr/lib/os-release (os-release(5) order; a dangling /etc link falls "
        "back), must set ID, VERSION_ID and NAME non-empty: bootc-image-builder refuses the image "
        "otherwise, and the other tools read it for menu entries and upgrade gating."
    ),
)
def os_release(ctx: CheckContext) -> Iterable[Result]:
    looked: list[str] = []
    for path in OS_RELEASE_PATHS:
        res = ctx.lookup(path)
        if not res.ok:
            if res.chain:
                looked.append(f"{link_chain(path, res)}: {res.reason}")
            else:
                looked.append(f"{path}: missing")
            continue
        text = ctx.read_text(path)
        if text is None:
            yield not_run(f"{path} exists but its content was not captured", path, looked)
            return
        values = parse_env_file(text)
        missing = [k for k in OS_RELEASE_KEYS if not values.get(k)]
        shown = [f"{k}={values[k]}" for k in OS_RELEASE_KEYS if values.get(k)]
        evidence = [*looked, f"{link_chain(path, res)}: {', '.join(shown) or 'no identifying keys'}"]
        if missing:
            yield failed(
                f"{path} lacks {', '.join(missing)}",
                path,
                evidence,
                hint=f"set {', '.join(k + '=' for k in missing)} in {path}",
            )
        else:
            yield passed(
                f"{path}: {values['NAME']} {values['VERSION_ID']} (ID={values['ID']})", path, evidence
            )
        return
    yield failed(
        "no os-release file",
        "/etc/os-release",
        looked,
        hint="ship /usr/lib/os-release (the distribution's base-files package does) and link "
        "/etc/os-release to ../usr/lib/os-release",
    )


# --- LAY-001..005 (bootc container lint) -------------------------------------------------------

#: bootc lints.rs API_DIRS (systemd.io/API_FILE_SYSTEMS plus /var).
API_DIRS = ("/dev", "/proc", "/sys", "/run", "/tmp", "/var")


@rule(
    "LAY-001",
    "API directories are directories",
    {
        Profile.GENERIC: Severity.INFO,
        Profile.COS: Severity.INFO,
        Profile.KAIROS: Severity.INFO,
        Profile.BOOTC: Severity.ERROR,
    },
    sources=(
        f"{BOOTC_LINTS} api-base-directories",
        f"{ELEMENTAL_COMMON} CreateDirStructure (E6)",
    ),
    description=(
        "/dev /proc /sys /run /tmp /var must exist as real directories (lstat: a symlink fails, as "
        "in bootc's api-base-directories lint).  Informational outside bootc: Elemental's init and "
        "the container runtime create them."
    ),
)
def api_dirs(ctx: CheckContext) -> Iterable[Result]:
    bad = False
    for path in API_DIRS:
        node = ctx.node(path, follow=False)
        if node is None:
            bad = True
            yield failed(
                f"missing API filesystem base directory {path}",
                path,
                hint=f"create {path} in the image (mkdir -p {path})",
            )
        elif not node.is_dir:
            bad = True
            what = f"a symlink to {node.entry.linkname}" if node.is_symlink else f"a {node.kind}"
            yield failed(
                f"{path} is {what}, not a directory",
                path,
                [f"{path}: {node.entry.filemode}"],
                hint=f"replace {path} with a real directory",
            )
    if not bad:
        yield passed("API directories present: " + " ".join(API_DIRS), "/")


@rule(
    "LAY-002",
    "/var/run is a symlink",
    {
        Profile.GENERIC: Severity.WARNING,
        Profile.COS: Severity.WARNING,
        Profile.KAIROS: Severity.WARNING,
        Profile.BOOTC: Severity.ERROR,
    },
    sources=(f"{BOOTC_LINTS} var-run",),
    description=(
        "If /var/run exists it must be a symlink (conventionally to ../run): a real directory is "
        "hidden by nothing at boot and splits runtime state (bootc: 'this is always a bug')."
    ),
)
def var_run(ctx: CheckContext) -> Iterable[Result]:
    node = ctx.node("/var/run", follow=False)
    if node is None:
        yield passed("/var/run absent", "/var/run")
    elif node.is_symlink:
        yield passed(
            f"/var/run -> {node.entry.linkname}", "/var/run", [link_chain("/var/run", ctx.lookup("/var/run"))]
        )
    else:
        yield failed(
            f"/var/run is a {node.kind}, not a symlink",
            "/var/run",
            [node.entry.filemode],
            hint="remove /var/run and link it: ln -s ../run /var/run",
        )


@rule(
    "LAY-003",
    "not both /etc and /usr/etc",
    {
        Profile.GENERIC: Severity.INFO,
        Profile.COS: Severity.INFO,
        Profile.KAIROS: Severity.INFO,
        Profile.BOOTC: Severity.ERROR,
    },
    sources=(f"{BOOTC_LINTS} etc-usretc",),
    description=(
        "/usr/etc is where ostree keeps the default /etc; an image with both is undefined "
        "behaviour under bootc.  No /etc at all passes, as in bootc."
    ),
)
def etc_usretc(ctx: CheckContext) -> Iterable[Result]:
    etc = ctx.node("/etc", follow=False)
    usretc = ctx.node("/usr/etc", follow=False)
    if etc is not None and usretc is not None:
        yield failed(
            "both /etc and /usr/etc exist",
            "/usr/etc",
            [f"/etc: {etc.kind}", f"/usr/etc: {usretc.kind}"],
            hint="move the content of /usr/etc into /etc and remove /usr/etc",
        )
    else:
        yield passed(
            "only "
            + ("/etc" if etc is not None else "/usr/etc" if usretc is not None else "neither")
            + " exists"
        )


def _first_bad_byte(text: str) -> str:
    """Where a surrogate-escaped name stops being UTF-8 (the renderers show the byte as \\xNN)."""
    try:
        raw(text).decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"byte {exc.start} (0x{exc.object[exc.start]:02x}) is not UTF-8"
    return "not UTF-8"


#: Shown one by one; the rest are counted (bootc truncates to 5 the same way).
MAX_LISTED = 20


@rule(
    "LAY-004",
    "names and link targets are UTF-8",
    {
        Profile.GENERIC: Severity.WARNING,
        Profile.COS: Severity.WARNING,
        Profile.KAIROS: Severity.WARNING,
        Profile.BOOTC: Severity.ERROR,
    },
    sources=(
        f"{BOOTC_LINTS} utf8",
        issue("bootc-dev/bootc", 975),
        f"{issue('opencontainers/image-spec', 1301)} tianon/test:badtars-invalid-utf8",
    ),
    description=(
        "Every path and symlink target in the final tree must be valid UTF-8: ostree (bootc) "
        "refuses others, and many tools mangle them.  One finding per offending path (the first "
        f"{MAX_LISTED}, then a count)."
    ),
)
def utf8_names(ctx: CheckContext) -> Iterable[Result]:
    bad = 0
    for path, what in ctx.non_utf8:
        if what == "name":
            problem, name = "non-UTF-8 file name", path
        else:
            node = ctx.node(path, follow=False)
            name = node.entry.linkname if node else ""
            problem = f"non-UTF-8 symlink target {name}"
        bad += 1
        if bad <= MAX_LISTED:
            yield failed(
                f"{path}: {problem}",
                path,
                [_first_bad_byte(name)],
                hint="rename it to UTF-8 (convmv -f latin1 -t utf8) or remove it",
            )
    if bad > MAX_LISTED:
        yield failed(f"... and {bad - MAX_LISTED} more non-UTF-8 names", "/")
    if bad == 0:
        yield passed("every name and link target is UTF-8", "/")


#: Empty leftovers of podman's build-time mounts in /run (bootc nonempty-run-tmp prunes them):
#: the resolv.conf bind, secrets and the container marker.
RUNTIME_MOUNTS = ("/run/systemd/resolve/stub-resolv.conf", "/run/secrets", "/run/.containerenv")


def _empty(node: Node) -> bool:
    if node.children is not None:
        return not node.children
    return node.kind is Kind.FILE and node.entry.size == 0


def run_tmp_content(ctx: CheckContext) -> list[str]:
    """Paths under /run and /tmp, minus empty runtime mount leftovers and their empty parents."""
    out: list[str] = []
    for top in ("/run", "/tmp"):
        if not ctx.is_dir(top, follow=False):
            continue
        paths = list(ctx.tree.walk(top))
        pruned = {p for p, n in paths if p in RUNTIME_MOUNTS and _empty(n)}
        # Parents that hold nothing but pruned things are pruned too (deepest first).
        for p, n in sorted(paths, key=lambda item: -item[0].count("/")):
            if n.children and all(f"{p}/{name}" in pruned for name in n.children):
                pruned.add(p)
        out += [p for p, _ in paths if p not in pruned]
    return out


def var_log_files(ctx: CheckContext) -> list[str]:
    """Non-empty regular files below /var/log (links not followed, as bootc's var-log lint)."""
    if not ctx.is_dir("/var/log", follow=False):
        return []
    return [p for p, n in ctx.tree.walk("/var/log") if n.kind is Kind.FILE and n.entry.size > 0]


def _listing(paths: list[str]) -> list[str]:
    shown = paths[:MAX_LISTED]
    return shown + ([f"... and {len(paths) - MAX_LISTED} more"] if len(paths) > MAX_LISTED else [])


@rule(
    "LAY-005",
    "no build leftovers in runtime paths",
    {
        Profile.GENERIC: Severity.INFO,
        Profile.COS: Severity.INFO,
        Profile.KAIROS: Severity.INFO,
        Profile.BOOTC: Severity.WARNING,
    },
    sources=(f"{BOOTC_LINTS} nonempty-run-tmp, var-log, buildah-injected",),
    description=(
        "/run and /tmp are tmpfs at boot, so content there is dead weight (podman's empty "
        "resolv.conf/secrets mount leftovers are ignored, as bootc does); non-empty files in "
        "/var/log are build-host logs; an empty /etc/hostname or /etc/resolv.conf was injected "
        "by the build runtime and hides the real one."
    ),
)
def build_leftovers(ctx: CheckContext) -> Iterable[Result]:
    clean = True
    content = run_tmp_content(ctx)
    if content:
        clean = False
        yield failed(
            f"{len(content)} path(s) in /run or /tmp (tmpfs at boot)",
            content[0],
            _listing(content),
            hint="remove them in the same RUN that created them, or mount a tmpfs there while building",
        )
    logs = var_log_files(ctx)
    if logs:
        clean = False
        yield failed(
            f"{len(logs)} non-empty log file(s) in /var/log",
            logs[0],
            _listing(logs),
            hint="truncate or delete build logs (e.g. dnf5 clean all; rm -rf /var/log/*)",
        )
    for path in ("/etc/hostname", "/etc/resolv.conf"):
        node = ctx.node(path, follow=False)
        if node is not None and node.kind is Kind.FILE and node.entry.size == 0:
            clean = False
            yield failed(
                f"{path} is an empty file, likely injected by the container runtime",
                path,
                hint=f"remove {path} or give it real content",
            )
    if clean:
        yield passed("no content in /run, /tmp, /var/log; /etc/hostname and /etc/resolv.conf not empty")


# --- SSH-001 -------------------------------------------------------------------------------------


@rule(
    "SSH-001",
    "no baked SSH host keys",
    {
        Profile.GENERIC: Severity.WARNING,
        Profile.COS: Severity.WARNING,
        Profile.KAIROS: Severity.ERROR,
        Profile.BOOTC: Severity.WARNING,
    },
    sources=(f"{KAIROS_VALIDATE} [SSH] (K10)",),
    description=(
        "/etc/ssh/ssh_host_*_key baked into the image means every machine booted from it shares "
        "one host identity; kairos-init validate rejects it.  sshd regenerates missing keys at "
        "first boot (sshd-keygen, ssh-keygen -A)."
    ),
)
def ssh_host_keys(ctx: CheckContext) -> Iterable[Result]:
    keys = ctx.glob("/etc/ssh/ssh_host_*_key")
    for key in keys:
        yield failed(
            f"SSH host key baked into the image: {key}",
            key,
            hint="delete /etc/ssh/ssh_host_* in the image; sshd regenerates them at first boot",
        )
    if not keys:
        yield passed("no /etc/ssh/ssh_host_*_key in the image", "/etc/ssh")


# --- SIZ-001 -------------------------------------------------------------------------------------

MIB = 1 << 20
#: cOS system/cos-config DEFAULT_IMAGE_SIZE (MiB); upgrade.sh dd's a fixed ext2 image of it.
COS_IMAGE_SIZE = 3240 * MIB
#: kairos-agent GetSourceSize: the sum of the compressed layers times 2.5.
KAIROS_FACTOR = 2.5


def root_size(nodes: Iterable[tuple[str, Node]]) -> tuple[int, int]:
    """(bytes, files) of the regular files in a walked tree, each hardlinked file once."""
    seen: set[tuple[int, str]] = set()
    total = files = 0
    file = Kind.FILE  # bound once: an enum attribute lookup per node cost half this loop
    for _, node in nodes:
        entry = node.entry
        if entry.kind is not file:
            continue
        # A hardlink's node carries its target's entry and layer: one key per stored file.
        key = (node.layer, entry.path)
        if key in seen:
            continue
        seen.add(key)
        total += entry.size
        files += 1
    return total, files


@dataclass(frozen=True, slots=True)
class SizeCheck:
    what: str
    limit: int
    over: bool

    def describe(self, size: int) -> str:
        sign = ">" if self.over else "<="
        return f"{_mib(size)} {sign} {self.what} {_mib(self.limit)}"


def size_checks(size: int, compressed: int, profile: Profile) -> list[SizeCheck]:
    """The allocations each tool would make for a root of `size` bytes, and whether it fits.

    cos: the legacy upgrade's fixed 3240 MiB image; kairos: 2.5 x compressed (0 = unknown: no
    check).  Other profiles get both, for information."""
    checks = []
    if profile in (Profile.COS, Profile.GENERIC, Profile.BOOTC):
        checks.append(SizeCheck("cOS DEFAULT_IMAGE_SIZE", COS_IMAGE_SIZE, size > COS_IMAGE_SIZE))
    if profile in (Profile.KAIROS, Profile.GENERIC, Profile.BOOTC) and compressed > 0:
        limit = int(compressed * KAIROS_FACTOR)
        checks.append(
            SizeCheck(
                f"Kairos allocation ({KAIROS_FACTOR} x {_mib(compressed)} compressed)", limit, size > limit
            )
        )
    return checks


def _mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB ({n} bytes)" if n >= MIB else f"{n} bytes"


@rule(
    "SIZ-001",
    "the root fits the space the installer allocates",
    {
        Profile.GENERIC: Severity.INFO,
        Profile.COS: Severity.WARNING,
        Profile.KAIROS: Severity.WARNING,
        Profile.BOOTC: Severity.INFO,
    },
    sources=(
        f"{COS_V0_8}/packages/cos-config/cos-config DEFAULT_IMAGE_SIZE",
        f"{COS_V0_5}/packages/installer/upgrade.sh dd count=3240",
        f"{KAIROS_AGENT}/pkg/config/spec.go GetSourceSize",
        f"{KAIROS_SDK}/utils/image/image.go GetOCIImageSize",
        issue("rancher/elemental-toolkit", 1136),
    ),
    description=(
        "The exact uncompressed root size (regular files of the final tree, hardlinks once, "
        "whited-out files excluded) against cOS's fixed 3240 MiB upgrade image (cos) and Kairos's "
        "2.5 x compressed-size allocation, which under-allocates for very compressible roots "
        "(kairos).  generic and bootc report both comparisons as information."
    ),
)
def size(ctx: CheckContext) -> Iterable[Result]:
    total, files = root_size(ctx.nodes)
    head = f"root is {_mib(total)} in {files} files"
    checks = size_checks(total, ctx.compressed_size, ctx.profile)
    evidence = [c.describe(total) for c in checks]
    if ctx.compressed_size <= 0:
        evidence.append("compressed size unknown: Kairos allocation not computed")
    # Only cos and kairos allocate from these numbers; elsewhere they are information.
    over = [c for c in checks if c.over] if ctx.profile in (Profile.COS, Profile.KAIROS) else []
    if over:
        for c in over:
            yield failed(
                f"{head}: larger than the {c.what}",
                "/",
                [c.describe(total)],
                hint="shrink the image (remove caches, docs, build tools) or raise the target size",
            )
    else:
        yield passed(head, "/", evidence)


RULES = (
    init_exists,
    os_release,
    api_dirs,
    var_run,
    etc_usretc,
    utf8_names,
    build_leftovers,
    ssh_host_keys,
    size,
)
CAPTURE: tuple[str, ...] = ("etc/os-release", "usr/lib/os-release")
