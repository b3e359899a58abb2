"""GRUB's boot paths as cOS/Elemental and Kairos configure them (docs/tools.md D9, E9, K3/K4).

The default bootargs load fixed paths; /etc/cos/bootargs.cfg and /etc/elemental/bootargs.cfg
(sourced in that order by grub.cfg, so a later `set` wins) may move them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..context import CheckContext

#: The order grub.cfg sources them (E9): a later `set` overrides an earlier one.
BOOTARGS = ("/etc/cos/bootargs.cfg", "/etc/elemental/bootargs.cfg")
#: The paths the default bootargs load (D9, E9); kairos-init requires both too (K3, K4).
DEFAULT_BOOT_PATHS = {"kernel": "/boot/vmlinuz", "initramfs": "/boot/initrd"}
BOOT_LINKS = tuple(DEFAULT_BOOT_PATHS.values())
_SET = re.compile(r"^\s*set\s+(kernel|initramfs)=(.*)$")
_GRUB_VAR = re.compile(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class GrubSet:
    file: str
    line: int
    name: str
    raw: str
    path: str | None  # None: nothing left once grub variables are stripped

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def grub_sets(ctx: CheckContext, file: str) -> list[GrubSet]:
    text = ctx.read_text(file)
    out: list[GrubSet] = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        m = _SET.match(line)
        if m:
            raw = m.group(2).strip()
            out.append(GrubSet(file, number, m.group(1), raw, grub_path(raw)))
    return out


def grub_path(raw: str) -> str | None:
    """`/${root_subpath}boot/vmlinuz` -> `/boot/vmlinuz`: variables are stripped (root_subpath is
    empty on a plain install), as is a `(device)` prefix; quotes and a trailing comment go."""
    value = raw.split(" #", 1)[0].strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    value = value.split()[0] if value.split() else ""
    value = re.sub(r"^\([^)]*\)", "", _GRUB_VAR.sub("", value))
    if not value.strip("/"):
        return None
    return "/" + re.sub("/+", "/", value).lstrip("/")


def boot_paths(ctx: CheckContext) -> dict[str, tuple[str, str]]:
    """kernel/initramfs -> (path GRUB loads, why that path): --kernel/--initrd, else the last
    `set` in the bootargs files, else the default bootargs' /boot/vmlinuz and /boot/initrd."""
    sets = [s for f in BOOTARGS for s in grub_sets(ctx, f)]
    chosen = {"kernel": ctx.policy.kernel, "initramfs": ctx.policy.initrd}
    out: dict[str, tuple[str, str]] = {}
    for name, default in DEFAULT_BOOT_PATHS.items():
        asked = chosen[name]
        usable = [s for s in sets if s.name == name and s.path]
        if asked:
            out[name] = (asked, "given with --kernel/--initrd")
        elif usable:
            last = usable[-1]
            out[name] = (last.path or default, f"set {name}={last.raw} at {last.where}")
        else:
            out[name] = (default, "default bootargs (D9, E9)")
    return out
