"""Rules: the kairos profile (KAI-001..011).

A static superset of `kairos-init validate` (docs/tools.md "Kairos", K1-K13), plus what the
Kairos tools that consume the image assume: kairos-agent's GRUB config paths, AuroraBoot's
kernel/initrd pick for the ISO and kairos-sdk's EFI binary lists (KAI-011).  Where kairos-init
looks at the build host (PATH lookups, `lsinitrd`, `os.Stat` of absolute link targets), these
rules look inside the image, with every link resolved in the image root.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ...fs.node import Kind
from ...report import Severity
from ..check import Profile, Result, Rule, failed, not_run, passed, rule, skipped
from ..context import CheckContext, link_chain
from ..emulate import kairos
from ..emulate.grub import DEFAULT_BOOT_PATHS
from ..emulate.kairos import RELEASE, kairos_kernel_version, kairos_kver, modules_entries
from ..initrd import InitrdInfo
from ..kernel import KernelFormat
from ..upstream import (
    AURORABOOT,
    GO_VERSION,
    KAIROS_AGENT,
    KAIROS_AGENT_ELEMENTAL,
    KAIROS_INIT,
    KAIROS_SDK,
    KAIROS_VALIDATE,
    issue,
)

CAPTURE: tuple[str, ...] = ("etc/kairos-release", "etc/os-release", "usr/lib/os-release")

#: K1: the build's PATH plus the two directories kairos-init prepends for providers.
SEARCH_PATH = (
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/system/providers",
    "/system/discovery",
)
CORE_BINARIES = ("immucore", "kairos-agent", "sudo", "less", "kcrypt-discovery-challenger")
STANDARD_BINARIES = ("agent-provider-kairos", "kairos", "edgevpn")
#: K5: keys that must be non-empty in /etc/kairos-release (kairos-init pkg/validation).
RELEASE_KEYS = (
    "KAIROS_ID",
    "KAIROS_ID_LIKE",
    "KAIROS_NAME",
    "KAIROS_VERSION",
    "KAIROS_ARCH",
    "KAIROS_TARGETARCH",
    "KAIROS_FLAVOR",
    "KAIROS_FLAVOR_RELEASE",
    "KAIROS_FAMILY",
    "KAIROS_MODEL",
    "KAIROS_VARIANT",
    "KAIROS_BUG_REPORT_URL",
    "KAIROS_HOME_URL",
    "KAIROS_RELEASE",
)
#: K6: the standard (Kubernetes) variant also needs these.
STANDARD_KEYS = ("KAIROS_SOFTWARE_VERSION", "KAIROS_SOFTWARE_VERSION_PREFIX")
RHEL_IDS = frozenset({"rhel", "fedora", "centos", "almalinux", "rocky"})
#: K11 unit directories, in systemd's precedence order (systemd.unit(5) "Unit File Load Path").
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")
RENESAS = ("xhci-pci-renesas", "xhci_pci_renesas")


def _os_ids(ctx: CheckContext) -> set[str]:
    osr = ctx.os_release
    return {osr.get("ID", ""), *osr.get("ID_LIKE", "").split()} - {""}


def _variant(release: dict[str, str] | None) -> str:
    return (release or {}).get("KAIROS_VARIANT", "").strip().lower()


# --- KAI-001 -------------------------------------------------------------------------------------


def _wanted_binaries(ctx: CheckContext) -> list[tuple[str, str]]:
    """(binary, why it is wanted), following K1 and the prefix fix."""
    release = kairos.release(ctx) or {}
    wanted = [(b, "K1") for b in CORE_BINARIES]
    family = release.get("KAIROS_FAMILY", "").lower() or ctx.os_release.get("ID", "").lower()
    if family != "hadron":
        wanted.append(("mount.nfs", "K1 (not Hadron)"))
    if _variant(release) == "standard":
        wanted += [(b, "K1 standard variant") for b in STANDARD_BINARIES]
        prefix = release.get("KAIROS_SOFTWARE_VERSION_PREFIX", "").lower()
        for distro in ("k3s", "k0s"):
            if prefix.startswith(distro):
                wanted.append((distro, f"KAIROS_SOFTWARE_VERSION_PREFIX={prefix}"))
    return wanted


@dataclass(frozen=True, slots=True)
class _Found:
    path: str | None  # the first match that resolves to a regular file
    executable: bool = False
    evidence: str = ""


def _lookup_binary(ctx: CheckContext, name: str) -> _Found:
    """exec.LookPath over SEARCH_PATH: the first executable wins; a file without an x bit is
    remembered, so the failure can say "not executable" rather than "missing"."""
    first = _Found(None)
    for directory in SEARCH_PATH:
        candidate = posixpath.join(directory, name)
        res = ctx.lookup(candidate)
        if not res.ok or res.node is None or res.node.kind is not Kind.FILE:
            continue
        mode = res.node.entry.mode
        found = _Found(
            candidate, bool(mode & 0o111), f"{link_chain(candidate, res)} (mode {mode & 0o7777:o})"
        )
        if found.executable:
            return found
        first = first if first.path else found
    return first


@rule(
    "KAI-001",
    "Kairos binaries are on PATH and executable",
    {Profile.KAIROS: Severity.ERROR},
    sources=(f"{KAIROS_VALIDATE} [BINARIES] (K1, K2)",),
)
def binaries(ctx: CheckContext) -> Iterable[Result]:
    """K1/K2: immucore, kairos-agent, sudo, less, kcrypt-discovery-challenger and mount.nfs (not on
    Hadron) resolve, through symlinks inside the image, to an executable regular file on
    /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/system/providers:/system/discovery;
    the standard variant adds agent-provider-kairos, kairos and edgevpn.  Deviation: kairos-init
    wants k3s/k0s only when KAIROS_SOFTWARE_VERSION *equals* "k3s"/"k0s" (it compares the version,
    not the prefix, so it practically never asks); this rule fixes that quirk and wants the k3s or
    k0s binary whenever KAIROS_SOFTWARE_VERSION_PREFIX names it."""
    wanted = _wanted_binaries(ctx)
    found: list[str] = []
    for name, why in wanted:
        hit = _lookup_binary(ctx, name)
        if hit.path and hit.executable:
            found.append(f"{name}: {hit.evidence}")
        elif hit.path:
            yield failed(
                f"{name} is on PATH but not executable",
                hit.path,
                [hit.evidence, f"wanted by {why}"],
                hint=f"chmod 0755 the {name} binary",
            )
        else:
            yield failed(
                f"binary {name} not found",
                f"/usr/bin/{name}",
                [f"searched: {':'.join(SEARCH_PATH)}", f"wanted by {why}"],
                hint=f"install {name} (kairos-init installs the Kairos binaries) or link it into /usr/bin",
            )
    if len(found) == len(wanted):
        yield passed(f"{len(found)} Kairos binaries found and executable", None, found)


# --- KAI-002 -------------------------------------------------------------------------------------


def _is_uki(ctx: CheckContext) -> bool:
    return any(a.kernel is not None and a.kernel.format is KernelFormat.UKI for a in ctx.kernels)


def _boot_file(ctx: CheckContext, path: str, hint: str) -> Result:
    """K3/K4: `path` exists and, if a link, resolves (inside the image) to a regular file."""
    if ctx.node(path, follow=False) is None:
        return failed(f"{path} is missing", path, [f"lstat {path}: no such file"], hint=hint)
    res = ctx.lookup(path)
    chain = link_chain(path, res)
    if not res.ok:
        return failed(f"{path} does not resolve: {res.reason}", path, [chain], hint=hint)
    if not ctx.is_file(path):
        kind = res.node.kind if res.node is not None else "nothing"
        return failed(f"{path} resolves to a {kind}, not a file", path, [chain], hint=hint)
    return passed(f"{path} resolves", path, [chain])


@rule(
    "KAI-002",
    "/boot/vmlinuz and /boot/initrd resolve",
    {Profile.KAIROS: Severity.ERROR},
    sources=(f"{KAIROS_VALIDATE} [FILES] (K3, K4)",),
)
def boot_links(ctx: CheckContext) -> Iterable[Result]:
    """K3: /boot/vmlinuz exists and, if a link, resolves; K4: /boot/initrd exists unless the kernel
    is a UKI (trusted boot carries the initrd inside the UKI).  Stricter than kairos-init, which
    only lstats /boot/initrd and resolves a relative /boot/vmlinuz target from its working
    directory: here both must resolve, inside the image root, to a regular file."""
    yield _boot_file(
        ctx, "/boot/vmlinuz", "link /boot/vmlinuz to the kernel, e.g. ln -sf vmlinuz-<kver> /boot/vmlinuz"
    )
    if _is_uki(ctx):
        yield skipped("/boot/initrd not required: the kernel is a UKI (trusted boot)", "/boot/initrd")
    else:
        yield _boot_file(
            ctx, "/boot/initrd", "build it with dracut -f /boot/initrd <kver> (kairos-init does this)"
        )


# --- KAI-003 -------------------------------------------------------------------------------------


@rule(
    "KAI-003",
    "/etc/kairos-release has the required keys",
    {Profile.KAIROS: Severity.ERROR},
    sources=(f"{KAIROS_VALIDATE} [RELEASE] (K5, K6)",),
)
def release_keys(ctx: CheckContext) -> Iterable[Result]:
    """K5: KAIROS_ID, _ID_LIKE, _NAME, _VERSION, _ARCH, _TARGETARCH, _FLAVOR, _FLAVOR_RELEASE,
    _FAMILY, _MODEL, _VARIANT, _BUG_REPORT_URL, _HOME_URL and _RELEASE are non-empty in
    /etc/kairos-release; K6: with KAIROS_VARIANT=standard also KAIROS_SOFTWARE_VERSION and
    KAIROS_SOFTWARE_VERSION_PREFIX.  kairos-init takes the variant from its own flags; a static
    check can only take it from the file.  (The k3s/k0s binary check of the table's KAI-003 row
    lives in KAI-001, with the other binaries.)"""
    release = kairos.release(ctx)
    hint = "run kairos-init (it writes /etc/kairos-release) or add the key"
    if release is None:
        if ctx.exists(RELEASE):
            yield not_run(f"{RELEASE} exists but was not captured", RELEASE)
        else:
            yield failed(f"{RELEASE} is missing", RELEASE, hint=hint)
        return
    keys = list(RELEASE_KEYS)
    if _variant(release) == "standard":
        keys += STANDARD_KEYS
    missing = [k for k in keys if not release.get(k, "").strip()]
    for key in missing:
        state = "empty" if key in release else "missing"
        yield failed(f"{key} is {state} in {RELEASE}", RELEASE, [f"KAIROS_VARIANT={_variant(release)}"], hint)
    if not missing:
        shown = ("KAIROS_NAME", "KAIROS_VERSION", "KAIROS_VARIANT", "KAIROS_FAMILY", "KAIROS_MODEL")
        yield passed(
            f"{RELEASE} has all {len(keys)} required keys", RELEASE, [f"{k}={release[k]}" for k in shown]
        )


# --- KAI-004 -------------------------------------------------------------------------------------


@rule(
    "KAI-004",
    "/var/lock exists",
    {Profile.KAIROS: Severity.ERROR},
    sources=(f"{KAIROS_VALIDATE} [DIRS] (K7)",),
)
def var_lock(ctx: CheckContext) -> Iterable[Result]:
    """K7: /var/lock exists (os.Stat: a link must resolve, e.g. /var/lock -> /run/lock needs
    /run/lock in the image)."""
    res = ctx.lookup("/var/lock")
    chain = link_chain("/var/lock", res)
    if res.ok:
        yield passed("/var/lock exists", "/var/lock", [chain])
    else:
        yield failed(
            f"/var/lock does not exist: {res.reason}",
            "/var/lock",
            [chain],
            hint="mkdir -p /var/lock (or create the /run/lock it links to)",
        )


# --- KAI-005 / KAI-006 ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Listing:
    """An initrd and the names `lsinitrd` would print for it: members and dracut modules."""

    path: str
    chain: str
    info: InitrdInfo

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.info.members] + [f"dracut module {m}" for m in self.info.dracut_modules]


def _initrd_listing(ctx: CheckContext) -> _Listing | Result:
    art = ctx.initrd
    if art is None:
        return not_run("no initrd to inspect", "/boot/initrd")
    if art.initrd is None:
        return not_run(f"{art.chain}: could not be read as an initramfs", art.path)
    return _Listing(art.path, art.chain, art.initrd)


@rule(
    "KAI-005",
    "the initrd carries immucore and kairos-agent",
    {Profile.KAIROS: Severity.ERROR},
    sources=(
        f"{KAIROS_VALIDATE} [INITRD] (K8)",
        issue("kairos-io/kairos-init", 53),
    ),
)
def initrd_agents(ctx: CheckContext) -> Iterable[Result]:
    """K8: the initrd's listing mentions immucore and kairos-agent.  kairos-init greps the output
    of `lsinitrd /boot/initrd` (skipping the check when lsinitrd is absent, kairos-init#53); here
    the cpio members and dracut modules.txt are parsed natively and matched the same way, by
    substring.  Skipped for a UKI; an initrd that could not be read fully cannot pass."""
    if _is_uki(ctx):
        yield skipped("the kernel is a UKI: its initrd is inside it (trusted boot)")
        return
    listing = _initrd_listing(ctx)
    if isinstance(listing, Result):
        yield listing
        return
    info = listing.info
    found = []
    for wanted in ("immucore", "kairos-agent"):
        hits = [n for n in listing.names if wanted in n]
        if hits:
            found.append(f"{wanted}: {', '.join(hits[:3])}")
        elif not info.ok:
            problems = [*info.problems, *(["inflate cap hit"] if info.cap_hit else [])]
            yield not_run(
                f"{wanted} not seen in {listing.chain}, which was not read fully", listing.path, problems
            )
        else:
            yield failed(
                f"{wanted} not found in the initrd {listing.chain}",
                listing.path,
                [f"{info.member_count} members, dracut modules: {' '.join(info.dracut_modules)}"],
                hint="rebuild the initrd after installing immucore and kairos-agent "
                "(their dracut modules pull them in): dracut -f /boot/initrd <kver>",
            )
    if len(found) == 2:
        yield passed(f"immucore and kairos-agent are in {listing.chain}", listing.path, found)


def _renesas_in(names: Iterable[str]) -> list[str]:
    return [n for n in names if posixpath.basename(n).startswith(tuple(f"{r}.ko" for r in RENESAS))]


@rule(
    "KAI-006",
    "the initrd carries xhci-pci-renesas if the kernel ships it",
    {Profile.KAIROS: Severity.WARNING},
    sources=(f"{KAIROS_VALIDATE} [INITRD] xhci_pci_renesas (K9)",),
)
def initrd_renesas(ctx: CheckContext) -> Iterable[Result]:
    """K9: the xhci_pci_renesas (xhci-pci-renesas) USB controller module is in the initrd, so USB
    boot media behind a Renesas controller are found.  kairos-init warns whenever the initrd
    lacks it; this rule only asks when the kernel's modules directory ships the module (a kernel
    that builds it in, or lacks it, cannot put it in an initrd), and passes vacuously otherwise."""
    if _is_uki(ctx):
        yield skipped("the kernel is a UKI: its initrd is inside it (trusted boot)")
        return
    kver = ctx.kernel_version if ctx.kernel_version in ctx.modules_dirs else kairos_kver(ctx)
    if kver is None or kver not in ctx.modules_dirs:
        yield skipped("no modules directory for the kernel")
        return
    shipped = _renesas_in(p for p, node in ctx.tree.walk(ctx.modules_dirs[kver]) if not node.is_dir)
    if not shipped:
        yield passed(
            f"kernel {kver} ships no xhci-pci-renesas module: nothing to carry", ctx.modules_dirs[kver]
        )
        return
    listing = _initrd_listing(ctx)
    if isinstance(listing, Result):
        yield listing
        return
    inside = _renesas_in(listing.names)
    if inside:
        yield passed(f"xhci-pci-renesas is in {listing.chain}", listing.path, inside[:1])
    else:
        yield failed(
            f"the initrd {listing.chain} lacks xhci-pci-renesas, which kernel {kver} ships",
            listing.path,
            [f"kernel ships: {shipped[0]}"],
            hint='add it to the initrd: add_drivers+=" xhci-pci-renesas " in /etc/dracut.conf.d/',
        )


# --- KAI-007 -------------------------------------------------------------------------------------


@rule(
    "KAI-007",
    "no SSH host keys baked in",
    {Profile.KAIROS: Severity.ERROR},
    sources=(f"{KAIROS_VALIDATE} [SSH] (K10)",),
)
def ssh_host_keys(ctx: CheckContext) -> Iterable[Result]:
    """K10: no /etc/ssh/ssh_host_*_key in the image: every machine installed from it would share
    the same host identity."""
    keys = ctx.glob("/etc/ssh/ssh_host_*_key")
    for key in keys:
        yield failed(
            f"SSH host key baked into the image: {key}",
            key,
            [_describe(ctx, key)],
            hint="rm -f /etc/ssh/ssh_host_* in the image build; sshd generates them on first boot",
        )
    if not keys:
        yield passed("no SSH host keys in /etc/ssh", "/etc/ssh", ["/etc/ssh/ssh_host_*_key: no match"])


def _describe(ctx: CheckContext, path: str) -> str:
    node = ctx.node(path, follow=False)
    return f"{path}: {node.entry.filemode} {node.entry.size} bytes" if node is not None else path


# --- KAI-008 -------------------------------------------------------------------------------------


def _unit_state(ctx: CheckContext, unit: str) -> tuple[str, str, str]:
    """(state, path, evidence): state is "ok", "masked" or "missing".  The first directory in
    precedence order that holds the unit decides, as systemd loads it."""
    for directory in UNIT_DIRS:
        path = posixpath.join(directory, unit)
        node = ctx.node(path, follow=False)
        if node is None:
            continue
        res = ctx.lookup(path)
        chain = link_chain(path, res)
        # systemd.unit(5): a unit linked to /dev/null, or an empty unit file, is masked.
        if any(target == "/dev/null" for _, target in res.chain) or res.path == "/dev/null":
            return "masked", path, chain
        if res.ok and ctx.is_file(path):
            if res.node is not None and res.node.entry.size == 0:
                return "masked", path, f"{chain} (empty file)"
            return "ok", path, chain
    return "missing", unit, f"not in {', '.join(UNIT_DIRS)}"


@rule(
    "KAI-008",
    "required systemd units exist and are not masked",
    {Profile.KAIROS: Severity.ERROR},
    sources=(f"{KAIROS_VALIDATE} [SERVICES] (K11, K12)",),
)
def units(ctx: CheckContext) -> Iterable[Result]:
    """K11: on the RHEL family (os-release ID/ID_LIKE rhel, fedora, centos, almalinux, rocky)
    systemd-udevd.service and systemd-logind.service exist in /etc/systemd/system,
    /run/systemd/system, /usr/lib/systemd/system or /lib/systemd/system and are not masked;
    K12: on every flavor but Alpine (OpenRC) getty.target exists and is not masked.  Masked
    follows systemd.unit(5): a link to /dev/null or an empty file, judged in the directory that
    wins by systemd's precedence (kairos-init only looks for a /dev/null link)."""
    ids = _os_ids(ctx)
    family = (kairos.release(ctx) or {}).get("KAIROS_FAMILY", "").lower()
    wanted: list[tuple[str, str]] = []
    if ids & RHEL_IDS or family == "rhel":
        wanted += [("systemd-udevd.service", "K11"), ("systemd-logind.service", "K11")]
    if "alpine" not in ids and family != "alpine":
        wanted.append(("getty.target", "K12"))
    if not wanted:
        yield skipped("Alpine uses OpenRC: no systemd units to check")
        return
    good = []
    for unit, why in wanted:
        state, path, evidence = _unit_state(ctx, unit)
        if state == "ok":
            good.append(evidence)
        elif state == "masked":
            yield failed(
                f"{unit} is masked", path, [evidence, why], hint=f"systemctl unmask {unit} in the image build"
            )
        else:
            yield failed(
                f"{unit} does not exist",
                f"/usr/lib/systemd/system/{unit}",
                [evidence, why],
                hint="install systemd (the unit ships with it)",
            )
    if len(good) == len(wanted):
        yield passed(f"{len(good)} unit(s) present and not masked", None, good)


# --- KAI-009 -------------------------------------------------------------------------------------


@rule(
    "KAI-009",
    "Kairos finds a kernel version in /lib/modules and /boot/vmlinuz is that kernel",
    {Profile.KAIROS: Severity.ERROR},
    sources=(
        f"{KAIROS_VALIDATE} [KERNEL] (K13)",
        f"{KAIROS_INIT}/pkg/kernel/kernel.go GetLatestFromPath",
        f"{GO_VERSION}/version.go",
    ),
)
def kernel_version(ctx: CheckContext) -> Iterable[Result]:
    """K13: /lib/modules exists and is not empty (E).  Reports the kernel version Kairos would
    choose (kairos-init GetLatestFromPath: RPi3/4 prefer `-raspi`, else the highest version as
    hashicorp/go-version orders them, printed canonically, else the first entry) and warns (W)
    when that name is not a directory there (go-version prints `6.1` as `6.1.0`) or when
    /boot/vmlinuz is a different kernel (go-version orders `6.1.0-9-amd64` above
    `6.1.0-28-amd64`, so two Debian ABIs pick the older one)."""
    entries = modules_entries(ctx)
    if not entries:
        state = "missing" if entries is None else "empty"
        yield failed(
            f"/lib/modules is {state}: Kairos cannot determine the kernel version",
            "/lib/modules",
            [link_chain("/lib/modules", ctx.lookup("/lib/modules"))],
            hint="install the kernel package (it ships /lib/modules/<kver>)",
        )
        return
    kver = kairos_kernel_version(entries, (kairos.release(ctx) or {}).get("KAIROS_MODEL", ""))
    assert kver is not None
    listed = ", ".join(name for name, _ in entries)
    yield passed(f"Kairos would choose kernel {kver}", f"/lib/modules/{kver}", [f"/lib/modules: {listed}"])
    if kver not in {name for name, _ in entries}:
        yield failed(
            f"Kairos would use kernel version {kver}, but /lib/modules has no such directory",
            "/lib/modules",
            [f"/lib/modules: {listed}", "go-version prints versions canonically (1.0 -> 1.0.0)"],
            hint="name the modules directory as the kernel's `uname -r`, in canonical x.y.z form",
            severity=Severity.WARNING,
        )
    yield from _vmlinuz_matches(ctx, kver)


def _vmlinuz_matches(ctx: CheckContext, kver: str) -> Iterator[Result]:
    if not ctx.exists("/boot/vmlinuz"):
        yield skipped("/boot/vmlinuz does not resolve (KAI-002)", "/boot/vmlinuz")
        return
    art = ctx.artifact("/boot/vmlinuz")
    version = art.kernel.version if art.kernel is not None else None
    same = version == kver if version else kver in posixpath.basename(art.real)
    said = f"version {version}" if version else "no version in its header"
    if same:
        yield passed(f"/boot/vmlinuz is kernel {kver}", "/boot/vmlinuz", [art.chain, said])
    else:
        yield failed(
            f"/boot/vmlinuz is not the kernel Kairos would choose ({kver})",
            "/boot/vmlinuz",
            [art.chain, said],
            hint="keep only the modules directory of the kernel /boot/vmlinuz boots "
            "(Kairos builds the initrd for the version it chooses)",
            severity=Severity.WARNING,
        )


# --- KAI-010 -------------------------------------------------------------------------------------


@rule(
    "KAI-010",
    "kairos-agent's GRUB config and bootargs exist",
    {Profile.KAIROS: Severity.WARNING},
    sources=(
        f"{KAIROS_AGENT}/pkg/constants/constants.go GrubConf",
        issue("kairos-io/kairos", 1770),
    ),
)
def grub_config(ctx: CheckContext) -> Iterable[Result]:
    """kairos-agent installs /etc/cos/grub.cfg (pkg/constants GrubConf), which sources
    /etc/cos/bootargs.cfg for `set kernel=` / `set initramfs=`; without bootargs GRUB stops with
    "you need to load the kernel first" (kairos-io/kairos#1770)."""
    present = []
    for path in ("/etc/cos/grub.cfg", "/etc/cos/bootargs.cfg"):
        if ctx.is_file(path):
            present.append(link_chain(path, ctx.lookup(path)))
        else:
            yield failed(
                f"{path} is missing",
                path,
                [link_chain(path, ctx.lookup(path))],
                hint="kairos-init installs it with kairos-agent's boot files; copy it from a Kairos image",
            )
    if len(present) == 2:
        yield passed("/etc/cos/grub.cfg and /etc/cos/bootargs.cfg present", "/etc/cos", present)


# --- KAI-011 -------------------------------------------------------------------------------------


def _efi_lists(arch: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """kairos-sdk utils GetEfiLiveGrubFiles / GetEfiShimFiles (riscv64 has no shim list)."""
    if arch == "arm64":
        grub = (
            "/usr/lib/grub/arm64-efi-signed/gcdaa64.efi.signed",
            "/usr/share/efi/aarch64/grub.efi",
            "/usr/lib/grub/arm64-efi-signed/grubaa64.efi.signed",
            *(f"/boot/efi/EFI/{v}/grubaa64.efi" for v in ("fedora", "rocky", "redhat", "almalinux")),
            "/usr/lib/grub/arm64-efi/grubaa64.efi",
        )
        shim = (
            "/usr/share/efi/aarch64/shim.efi",
            *(f"/usr/lib/shim/shimaa64.efi.{s}" for s in ("dualsigned", "signed.latest", "signed")),
            *(f"/boot/efi/EFI/{v}/shim.efi" for v in ("fedora", "rocky", "redhat")),
            "/boot/efi/EFI/redhat/shimaa64.efi",
            "/boot/efi/EFI/almalinux/shim.efi",
        )
        return grub, shim
    if arch == "riscv64":
        grub = (
            "/usr/share/efi/riscv64/grub.efi",
            "/usr/lib/grub/riscv64-efi/grubriscv64.efi",
            "/usr/lib/grub/riscv64-efi/monolithic/grubriscv64.efi",
            *(f"/boot/efi/EFI/{v}/grubriscv64.efi" for v in ("debian", "ubuntu", "fedora")),
            "/boot/efi/EFI/BOOT/BOOTRISCV64.EFI",
        )
        return grub, ()
    grub = (
        "/usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed",
        "/usr/share/efi/x86_64/grub.efi",
        "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
        *(f"/boot/efi/EFI/{v}/grubx64.efi" for v in ("fedora", "rocky", "redhat", "almalinux")),
        "/usr/lib/grub/x86_64-efi/grubx64.efi",
    )
    shim = (
        "/usr/share/efi/x86_64/shim.efi",
        *(f"/usr/lib/shim/shimx64.efi.{s}" for s in ("dualsigned", "signed.latest", "signed")),
        *(f"/boot/efi/EFI/{v}/shim.efi" for v in ("fedora", "rocky", "redhat")),
        "/boot/efi/EFI/redhat/shimx64.efi",
        "/boot/efi/EFI/almalinux/shim.efi",
    )
    return grub, shim


def _iso_results(ctx: CheckContext) -> Iterator[Result]:
    evidence: list[str] = []
    picked = 0
    for what, pick, default in (
        ("kernel", kairos.iso_kernel(ctx), DEFAULT_BOOT_PATHS["kernel"]),
        ("initrd", kairos.iso_initrd(ctx), DEFAULT_BOOT_PATHS["initramfs"]),
    ):
        if not pick.ok or pick.path is None:
            yield failed(
                f"AuroraBoot finds no {what} in /boot",
                "/boot",
                [f"prefixes: {', '.join(pick.candidates)}", *pick.reasons],
                hint=f"make {default} a relative link "
                f"(ln -sf {posixpath.basename(default)}-<kver> {default}) or a regular file",
            )
            continue
        res = ctx.lookup(pick.path)
        picked += 1
        via = f" (via {pick.chain})" if pick.hops else ""
        evidence += [f"{what}: {link_chain(pick.path, res)}{via}", *pick.reasons]
        if what == "kernel":
            info = ctx.artifact(pick.path).kernel
            if info is not None and not info.is_kernel:
                yield failed(
                    f"AuroraBoot would put {pick.path} on the ISO as the kernel, but it is not a kernel",
                    pick.path,
                    [f"{pick.path}: {info.description or 'unrecognised content'}"],
                    hint="remove the file or rename it so it does not start with a kernel prefix",
                )
                continue
        booted = ctx.lookup(default)
        if booted.ok and res.ok and booted.path != res.path:
            yield failed(
                f"the ISO would boot {res.path}, the installed system {default} -> {booted.path}",
                pick.path,
                [f"AuroraBoot: {link_chain(pick.path, res)}", f"bootargs: {link_chain(default, booted)}"],
                hint="keep one kernel and one initrd in /boot",
                severity=Severity.WARNING,
            )
    if picked == 2:
        yield passed("AuroraBoot finds the kernel and the initrd for the ISO", "/boot", evidence)


def _efi_results(ctx: CheckContext) -> Iterator[Result]:
    arch = ctx.config.architecture
    grub_list, shim_list = _efi_lists(arch)
    found = []
    for what, candidates in (("grub", grub_list), ("shim", shim_list)):
        if not candidates:
            found.append(f"{what}: none needed on {arch}")
            continue
        hit = next((p for p in candidates if ctx.is_file(p)), None)
        if hit:
            found.append(f"{what}: {link_chain(hit, ctx.lookup(hit))}")
        else:
            yield failed(
                f"no EFI {what} binary where kairos-sdk looks for {arch}",
                candidates[0],
                [f"looked in: {', '.join(candidates)}"],
                hint=f"install the distribution's signed {what} EFI package (e.g. grub-efi-amd64-signed, "
                "shim-signed on Debian; grub2-efi-x64, shim-x64 on Fedora)",
                severity=Severity.WARNING,
            )
    if len(found) == 2:
        yield passed(f"EFI grub and shim found for {arch}", None, found)


@rule(
    "KAI-011",
    "AuroraBoot can build an ISO: kernel/initrd pick and EFI binaries",
    {Profile.KAIROS: Severity.ERROR},
    sources=(
        f"{AURORABOOT}/pkg/ops/iso.go prepareISORoot",
        f"{KAIROS_AGENT_ELEMENTAL} FindKernelInitrd",
        f"{KAIROS_AGENT}/pkg/utils/common.go FindFileWithPrefix",
        f"{KAIROS_SDK}/utils/utils.go GetEfiGrubFiles, GetEfiShimFiles",
    ),
)
def auroraboot(ctx: CheckContext) -> Iterable[Result]:
    """AuroraBoot build-iso takes the kernel and initrd with Elemental v1's prefix algorithm: the
    first /boot entry in name order starting with uImage/Image/zImage/vmlinuz/image (initrd:
    initrd/initramfs), a link's relative target joined to /boot, an absolute target stat'ed on
    the build host and so skipped here, falling through to the next entry.  No pick is an error
    (E), as is a picked "kernel" whose content is not one; a pick that differs from what
    /boot/vmlinuz or /boot/initrd resolve to is a warning (the ISO and the installed system
    would boot different files).  The EFI grub (live list first) and shim are looked up in
    kairos-sdk's per-arch lists (W when none is found; riscv64 needs no shim).  A UKI (trusted
    boot) is built by `build-uki` instead, so the pick is skipped for it."""
    if _is_uki(ctx):
        yield skipped("the kernel is a UKI: AuroraBoot builds trusted-boot media with build-uki")
    else:
        yield from _iso_results(ctx)
    yield from _efi_results(ctx)


RULES: tuple[Rule, ...] = (
    binaries,
    boot_links,
    release_keys,
    var_lock,
    initrd_agents,
    initrd_renesas,
    ssh_host_keys,
    units,
    kernel_version,
    grub_config,
    auroraboot,
)
