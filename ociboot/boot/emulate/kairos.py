"""What the Kairos tools pick from an image (docs/tools.md "Kairos").

kairos-init's kernel release (K13, pkg/kernel/kernel.go GetLatestFromPath, ordered as
hashicorp/go-version orders versions) and AuroraBoot build-iso's kernel/initrd pick
(pkg/ops/iso.go prepareISORoot through kairos-agent FindKernelInitrd: Elemental v1's
algorithm, emulated once in `elemental_v1`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..context import CheckContext, parse_env_file
from . import elemental_v1
from .pick import Pick, nothing

RELEASE = "/etc/kairos-release"
ISO_TOOL = "AuroraBoot"
K13_TOOL = "Kairos (K13, highest semver /lib/modules dir)"
#: K13 reads the kernel releases from this directory.
MODULES_DIR = "/lib/modules"


def release(ctx: CheckContext) -> dict[str, str] | None:
    """/etc/kairos-release as a dotenv file, None without one."""
    text = ctx.read_text(RELEASE)
    return None if text is None else parse_env_file(text)


# hashicorp/go-version's VersionRegexpRaw, which kairos-init's K13 sort uses (pkg/kernel/kernel.go).
_GO_VERSION = re.compile(
    r"v?([0-9]+(\.[0-9]+)*?)"
    r"(-([0-9]+[0-9A-Za-z\-~]*(\.[0-9A-Za-z\-~]+)*)|(-?([A-Za-z\-~]+[0-9A-Za-z\-~]*(\.[0-9A-Za-z\-~]+)*)))?"
    r"(\+([0-9A-Za-z\-~]+(\.[0-9A-Za-z\-~]+)*))??"
)


@dataclass(frozen=True, slots=True)
class GoVersion:
    """A version as hashicorp/go-version parses, orders and prints it."""

    segments: tuple[int, ...]
    pre: str
    metadata: str

    @classmethod
    def parse(cls, text: str) -> GoVersion | None:
        m = _GO_VERSION.fullmatch(text)
        if m is None:
            return None
        segments = [int(s) for s in m.group(1).split(".")]
        if any(s >= 1 << 63 for s in segments):
            return None  # strconv.ParseInt(.., 64) fails
        segments += [0] * (3 - len(segments))
        return cls(tuple(segments), m.group(7) or m.group(4) or "", m.group(10) or "")

    def __str__(self) -> str:
        text = ".".join(map(str, self.segments))
        text += f"-{self.pre}" if self.pre else ""
        return text + (f"+{self.metadata}" if self.metadata else "")

    def compare(self, other: GoVersion) -> int:
        if str(self) == str(other):
            return 0
        if self.segments == other.segments:
            if not self.pre or not other.pre:
                return (not self.pre) - (not other.pre)
            return _compare_pre(self.pre, other.pre)
        width = max(len(self.segments), len(other.segments))
        mine = self.segments + (0,) * (width - len(self.segments))
        theirs = other.segments + (0,) * (width - len(other.segments))
        return (mine > theirs) - (mine < theirs)


def _compare_pre(a: str, b: str) -> int:
    """go-version comparePrereleases: dot parts, numbers below words, words by byte order.  So
    "28-amd64" < "9-amd64": Debian ABI numbers compare as text."""
    pa, pb = a.split("."), b.split(".")
    for i in range(max(len(pa), len(pb))):
        x = pa[i] if i < len(pa) else ""
        y = pb[i] if i < len(pb) else ""
        if x == y:
            continue
        xn, yn = _int64(x), _int64(y)
        if x == "":
            return -1 if yn is not None else 1
        if y == "":
            return 1 if xn is not None else -1
        if xn is not None and yn is None:
            return -1
        if xn is None and yn is not None:
            return 1
        if xn is None and yn is None:
            return 1 if x > y else -1
        assert xn is not None and yn is not None
        return 1 if xn > yn else -1
    return 0


def _int64(text: str) -> int | None:
    try:
        value = int(text, 10)
    except ValueError:
        return None
    return value if text.lstrip("+-").isdigit() and -(1 << 63) <= value < 1 << 63 else None


def kairos_kernel_version(entries: Iterable[tuple[str, bool]], model: str = "") -> str | None:
    """K13, kairos-init GetLatestFromPath: `entries` are (name, is a real directory) of
    /lib/modules in name order.  RPi3/RPi4 prefer `*-raspi`; otherwise the highest go-version
    among the directories, printed canonically; none parses: the first entry of any kind."""
    entries = list(entries)
    if model in ("rpi3", "rpi4"):
        raspi = [name for name, is_dir in entries if is_dir and name.endswith("-raspi")]
        parsed = [v for v in map(GoVersion.parse, raspi) if v is not None]
        if parsed:
            return str(_highest(parsed))
        if raspi:
            return sorted(raspi)[-1]
    versions = [v for v in (GoVersion.parse(n) for n, is_dir in entries if is_dir) if v is not None]
    if versions:
        return str(_highest(versions))
    return entries[0][0] if entries else None


def _highest(versions: list[GoVersion]) -> GoVersion:
    best = versions[0]
    for v in versions[1:]:
        if v.compare(best) > 0:
            best = v
    return best


def modules_entries(ctx: CheckContext) -> list[tuple[str, bool]] | None:
    """(name, is a real directory) of /lib/modules in name order, None without the directory."""
    if not ctx.is_dir(MODULES_DIR):
        return None
    return [(name, node.is_dir) for name, node in ctx.tree.listdir(MODULES_DIR)]


def kairos_kver(ctx: CheckContext) -> str | None:
    """The kernel release Kairos picks from /lib/modules (K13), None without one."""
    entries = modules_entries(ctx)
    model = (release(ctx) or {}).get("KAIROS_MODEL", "")
    return kairos_kernel_version(entries, model) if entries else None


def kernel_release(ctx: CheckContext) -> Pick:
    """K13 as a pick: the /lib/modules directory of the release Kairos settles on."""
    kver = kairos_kver(ctx)
    if kver is None:
        return nothing(K13_TOOL, "empty")
    # A release name, not a file: K13 does not resolve it (go-version may print a name that is
    # not there, KAI-009 says so).
    path = f"{MODULES_DIR}/{kver}"
    return Pick(K13_TOOL, path, path, path, version=kver)


def iso_kernel(ctx: CheckContext) -> Pick:
    """The kernel AuroraBoot copies to the ISO's /boot/kernel."""
    return elemental_v1.kernel(ctx, ISO_TOOL)


def iso_initrd(ctx: CheckContext) -> Pick:
    """The initrd AuroraBoot copies to the ISO's /boot/initrd."""
    return elemental_v1.initrd(ctx, ISO_TOOL)
