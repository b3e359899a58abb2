"""ociboot: will this container image boot?  Daemonless, nothing unpacked to disk.

Checking images, as `ociboot check` does (the references are checked concurrently)::

    batch = ociboot.check(["oci-archive:fixtures/example-cos.tar"], Policy(profile=Profile.COS))
    batch.exit_code                      # 0 bootable, 1 not bootable, 3 could not be read
    [(r.image, r.bootable()) for r in batch.reports]

The stages underneath, in the order they run::

    source = open_source(parse_ref("docker://registry.example/os/image:v1"))
    try:
        image = resolve(source, Platform.parse("linux/amd64"))
        loaded = load_tree(image, CaptureSpec({"etc/os-release": None}), Options())
        loaded.tree.lookup("/boot/vmlinuz").chain
    finally:
        source.close()

Names are imported lazily so that `import ociboot` stays cheap and pulls in no registry code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # what type checkers see; at run time __getattr__ imports on first use
    from .api import Batch as Batch
    from .api import check as check
    from .boot.check import Profile as Profile
    from .boot.context import Policy as Policy
    from .digest import Digest as Digest
    from .errors import OcibootError as OcibootError
    from .fs.overlay import flatten as flatten
    from .fs.tree import FileTree as FileTree
    from .image import ResolvedImage as ResolvedImage
    from .image import resolve as resolve
    from .image import resolve_all as resolve_all
    from .layer import CaptureSpec as CaptureSpec
    from .layer import index_layer as index_layer
    from .pipeline import Options as Options
    from .pipeline import load_tree as load_tree
    from .promote import Promotion as Promotion
    from .promote import promote as promote
    from .ref import ImageRef as ImageRef
    from .ref import parse_ref as parse_ref
    from .report import Finding as Finding
    from .report import Report as Report
    from .report import Severity as Severity
    from .report import Unreadable as Unreadable
    from .sources import SourceOptions as SourceOptions
    from .sources import open_source as open_source
    from .spec import Platform as Platform

_EXPORTS = {
    "check": "api",
    "Batch": "api",
    "promote": "promote",
    "Promotion": "promote",
    "Policy": "boot.context",
    "Profile": "boot.check",
    "Report": "report",
    "Finding": "report",
    "Severity": "report",
    "Unreadable": "report",
    "parse_ref": "ref",
    "ImageRef": "ref",
    "Platform": "spec",
    "Digest": "digest",
    "open_source": "sources",
    "SourceOptions": "sources",
    "resolve": "image",
    "resolve_all": "image",
    "ResolvedImage": "image",
    "CaptureSpec": "layer",
    "index_layer": "layer",
    "flatten": "fs.overlay",
    "FileTree": "fs.tree",
    "Options": "pipeline",
    "load_tree": "pipeline",
    "OcibootError": "errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ociboot' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ociboot.{module}"), name)
