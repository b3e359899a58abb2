"""ociboot: will this container image boot?  Daemonless, nothing unpacked to disk.

The library API, in the order the stages run::

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
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
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
