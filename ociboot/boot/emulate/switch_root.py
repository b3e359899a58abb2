"""What runs after the initrd: systemd's switch-root execs the root's /sbin/init, as the kernel
resolves it, or systemd itself (INIT-001, PKG-001 ask this)."""

from __future__ import annotations

from dataclasses import dataclass

from ..context import CheckContext

#: Where systemd lives; systemd's switch-root execs it directly when the initrd names no init
#: (systemd src/core/main.c do_reexecute: SYSTEMD_BINARY_PATH first, then /sbin/init).
SYSTEMD_PATHS = ("/usr/lib/systemd/systemd", "/lib/systemd/systemd")
OPENRC_PATHS = ("/sbin/openrc", "/usr/sbin/openrc", "/sbin/openrc-init", "/usr/sbin/openrc-init")


@dataclass(frozen=True, slots=True)
class InitInfo:
    """What boots after the initrd: /sbin/init as the kernel would resolve it, and systemd."""

    init_chain: str | None  # "/sbin/init -> ../lib/systemd/systemd" when /sbin/init resolves
    init_real: str | None  # the file /sbin/init resolves to (None: missing or dangling)
    init_problem: str | None  # why /sbin/init does not resolve to an executable file
    systemd: str | None  # an executable systemd binary, if any
    openrc: str | None  # an executable OpenRC binary, if any

    @property
    def init_is_systemd(self) -> bool:
        return self.init_real is not None and self.init_real.rsplit("/", 1)[-1] == "systemd"


def _resolution_text(path: str, ctx: CheckContext) -> str:
    """`/sbin/init: /sbin -> usr/sbin, /usr/sbin/init -> ../lib/systemd/systemd => /usr/lib/...`:
    every link the walk followed, including links of parent directories."""
    res = ctx.lookup(path)
    hops = ", ".join(f"{link} -> {target}" for link, target in res.chain)
    if not res.ok:
        return f"{path}: {hops + ', ' if hops else ''}{res.reason} at {res.path}"
    return f"{path}: {hops} => {res.path}" if hops else path


def find_init(ctx: CheckContext) -> InitInfo:
    res = ctx.lookup("/sbin/init")
    text = _resolution_text("/sbin/init", ctx)
    real: str | None = None
    problem: str | None = None
    if res.ok and ctx.is_executable("/sbin/init"):
        real = res.path
    elif res.ok:
        problem = f"{text}: not an executable regular file"
    elif res.chain:
        problem = f"dangling: {text}"
    else:
        problem = "/sbin/init: no such file"
    systemd = next((p for p in SYSTEMD_PATHS if ctx.is_executable(p)), None)
    openrc = next((p for p in OPENRC_PATHS if ctx.is_executable(p)), None)
    return InitInfo(text if real else None, real, problem, systemd, openrc)
