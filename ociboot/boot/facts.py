"""The facts section of a report: what ociboot found, whatever the rules concluded.

Stable keys (README, "JSON output"): kernel, initrd, modules, packages, osRelease, layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..layer import LayerIndex
from .context import Artifact, CheckContext


def _where(a: Artifact) -> dict[str, Any]:
    return {"path": a.path, "resolved": a.real if a.ok else None, "chain": a.chain}


def _kernel(a: Artifact | None) -> dict[str, Any] | None:
    if a is None:
        return None
    info = a.kernel
    return {
        **_where(a),
        "format": str(info.format) if info else None,
        "version": info.version if info else None,
        "arch": info.arch if info else None,
        "description": info.description if info else None,
        "problems": list(info.problems) if info else [],
    }


def _initrd(a: Artifact | None) -> dict[str, Any] | None:
    if a is None:
        return None
    info = a.initrd
    return {
        **_where(a),
        "compression": str(info.compression) if info and info.compression else None,
        "members": info.member_count if info else None,
        "kernelVersions": list(info.kernel_versions) if info else [],
        "dracutModules": list(info.dracut_modules) if info else [],
        "microcode": list(info.microcode) if info else [],
        "description": info.description if info else None,
        "problems": list(info.problems) if info else [],
    }


def collect(ctx: CheckContext, layers: Sequence[LayerIndex]) -> dict[str, Any]:
    packages = ctx.packages
    return {
        "kernel": _kernel(ctx.kernel),
        "initrd": _initrd(ctx.initrd),
        "kernels": [a.path for a in ctx.kernels],
        "initrds": [a.path for a in ctx.initrd_candidates],
        "modules": dict(sorted(ctx.modules_dirs.items())),
        "packages": {
            "family": str(packages.family) if packages.family else None,
            "databases": [
                {"path": db.path, "packages": len(db.packages), "error": db.error} for db in packages.dbs
            ],
            "roles": {
                str(role): sorted(f"{p.name}-{p.evr}" for p in pkgs)
                for role, pkgs in packages.roles().items()
            },
        },
        "osRelease": {
            k: v for k, v in ctx.os_release.items() if k in ("ID", "ID_LIKE", "VERSION_ID", "NAME")
        },
        "layers": len(layers),
        "compressedSize": ctx.compressed_size,
        "uncompressedSize": sum(layer.size for layer in layers),
    }
