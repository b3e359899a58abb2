"""Profiles (generic, cos, kairos, bootc): which one an image is, and the user's policy file.

Detection order deviates from the issue's listing on purpose: Kairos images also carry
`/etc/cos/` (kairos-agent reads `/etc/cos/grub.cfg`, kairos#1770), so `/etc/kairos-release` is
asked first; a bootc label is explicit, so it comes before the cOS directories.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from ..cache import parse_size
from ..errors import OcibootError
from ..fs.tree import FileTree
from ..report import Severity
from ..spec import ImageConfig
from ..textsafe import escape
from .check import Profile
from .context import Policy
from .emulate.kairos import RELEASE as KAIROS_RELEASE
from .rules import rule_ids

BOOTC_LABELS = ("containers.bootc", "ostree.bootable")


class PolicyError(OcibootError):
    """A policy file or option that cannot be used: a usage error (exit code 2)."""

    exit_code = 2


def detect_profile(tree: FileTree, config: ImageConfig) -> tuple[Profile, str]:
    """(profile, why) for `--profile auto`."""
    if tree.lookup(KAIROS_RELEASE).ok:
        return Profile.KAIROS, f"{KAIROS_RELEASE} exists"
    for label in BOOTC_LABELS:
        if label in config.labels:
            return Profile.BOOTC, f"image config label {label}={config.labels[label]}"
    if _is_dir(tree, "/etc/elemental"):
        return Profile.COS, "/etc/elemental exists (Elemental toolkit v2)"
    if _is_dir(tree, "/etc/cos"):
        return Profile.COS, "/etc/cos exists (cOS toolkit)"
    return Profile.GENERIC, "no /etc/kairos-release, containers.bootc label, /etc/elemental or /etc/cos"


def _is_dir(tree: FileTree, path: str) -> bool:
    res = tree.lookup(path)
    return res.ok and res.node is not None and res.node.is_dir


_KEYS = {
    "profile",
    "kernel",
    "initrd",
    "require-packages",
    "skip",
    "severity",
    "fatal-warnings",
    "analysis-budget",
}


def load_policy(path: str | Path, base: Policy | None = None) -> Policy:
    """Read a TOML policy; CLI options given explicitly are applied on top by the caller.

    profile = "cos"
    kernel = "/boot/vmlinuz"            # custom kernel path (cOS docs allow them)
    initrd = "/boot/initrd"
    require-packages = ["grub2", "kernel"]   # names or roles: kernel, bootloader, init, initramfs
    skip = ["LAY-004"]
    fatal-warnings = false
    analysis-budget = "2G"              # analysis work per image (ociboot.budget), or bytes
    [severity]
    KRN-005 = "error"                   # error | warning | info
    """
    where = str(path)
    try:
        data: dict[str, Any] = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise PolicyError(f"cannot read policy {where}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(f"policy {where} is not valid TOML: {exc}") from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively.
        raise PolicyError(f"policy {where}: arrays or tables nested too deeply") from None
    unknown = set(data) - _KEYS
    if unknown:
        raise PolicyError(
            f"policy {where}: unknown keys {', '.join(sorted(unknown))} (known: {', '.join(sorted(_KEYS))})"
        )
    profile = _typed(data, "profile", str, where)
    if profile is not None and profile not in set(Profile):
        raise PolicyError(f"policy {where}: profile {profile!r} is not one of {', '.join(Profile)}")
    kernel = _typed(data, "kernel", str, where)
    initrd = _typed(data, "initrd", str, where)
    require_packages = _strings(data, "require-packages", where)
    skip = _strings(data, "skip", where)
    fatal_warnings = bool(_typed(data, "fatal-warnings", bool, where))
    budget = data.get("analysis-budget")
    analysis_budget = _size(budget, "analysis-budget", where) if budget is not None else None
    known = rule_ids()
    severity: dict[str, str] = {}
    for rule_id, level in (_typed(data, "severity", dict, where) or {}).items():
        if rule_id not in known:
            raise PolicyError(
                f"policy {where}: [severity] names unknown rule id {escape(rule_id)}; see `ociboot rules`"
            )
        if not isinstance(level, str) or level not in {s.value for s in Severity}:
            shown = repr(level) if isinstance(level, str) else f"a {_TOML_TYPES.get(type(level), 'value')}"
            raise PolicyError(
                f"policy {where}: severity of {rule_id} must be error, warning or info, not {shown}"
            )
        severity[rule_id] = level
    return (base or Policy()).merge(
        profile=Profile(profile) if profile is not None else None,
        kernel=kernel,
        initrd=initrd,
        require_packages=require_packages,
        skip=skip,
        severity=severity,
        fatal_warnings=fatal_warnings,
        analysis_budget=analysis_budget,
    )


def verify_policy(policy: Policy) -> None:
    """A policy built in code names only rules that exist, with known severities (a file's are
    checked as it is read)."""
    unknown = sorted((set(policy.skip) | set(policy.severity)) - rule_ids())
    if unknown:
        raise PolicyError(f"unknown rule id(s) {', '.join(unknown)}; see `ociboot rules`")
    levels = {s.value for s in Severity}
    wrong = sorted(rule_id for rule_id, level in policy.severity.items() if level not in levels)
    if wrong:
        raise PolicyError(f"severity of {', '.join(wrong)} must be error, warning or info")


#: How a value that is not a string is named in a message (its repr could be a huge nested list).
_TOML_TYPES = {list: "list", dict: "table", bool: "boolean", int: "integer", float: "float"}


def _typed(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = data.get(key)
    if value is not None and not isinstance(value, kind):
        raise PolicyError(f"policy {where}: {key} must be a {kind.__name__}")
    return value


def _size(value: Any, key: str, where: str) -> int:
    """A positive size: bytes as an integer, or a string such as "2G"."""
    try:
        size = value if isinstance(value, int) and not isinstance(value, bool) else parse_size(value)
    except (TypeError, ValueError, AttributeError):
        size = 0
    if size <= 0:
        raise PolicyError(f'policy {where}: {key} must be a positive size ("2G" or bytes), not {value!r}')
    return size


def _strings(data: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = _typed(data, key, list, where) or []
    if not all(isinstance(v, str) for v in value):
        raise PolicyError(f"policy {where}: {key} must be a list of strings")
    return tuple(value)
