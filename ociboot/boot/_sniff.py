"""libmagic descriptions of byte heads; the ONLY importer of python-magic.

libmagic is descriptive only: every verdict (is it a kernel, which version, which arch) comes
from our own header parsing in kernel.py and initrd.py.  So a missing libmagic (Debian package
`libmagic1`) degrades the description to `UNAVAILABLE` instead of failing the inspection, and
`available()` lets a report say why descriptions are missing.

python-magic's module-level `from_buffer` shares one `Magic` (one libmagic cookie) between all
threads, and a cookie is not thread-safe (libmagic keeps per-call state in it).  Layers may be
inspected in parallel, so each thread gets its own `Magic` object.
"""

from __future__ import annotations

import threading
from typing import Any

UNAVAILABLE = "(libmagic unavailable: install the libmagic1 package)"

# libmagic never needs more than this for the formats we ask about (the x86 version string sits
# about 17.6 KB in, docs/measurements.md); a larger buffer only costs time.
MAX_BYTES = 1 << 20

_local = threading.local()
_import_error: str | None = None


def _module() -> Any | None:
    """python-magic, or None (the reason kept) when libmagic cannot be loaded."""
    global _import_error
    if _import_error is not None:
        return None
    try:
        import magic  # the one import of python-magic in ociboot
    except ImportError as exc:  # libmagic1 missing: python-magic raises ImportError at import time
        _import_error = str(exc)
        return None
    return magic


def _magic() -> Any | None:
    cookie = getattr(_local, "magic", None)
    if cookie is not None:
        return cookie
    magic = _module()
    if magic is None:
        return None
    cookie = magic.Magic()
    _local.magic = cookie
    return cookie


def available() -> bool:
    """True if libmagic could be loaded."""
    return _magic() is not None


def library_version() -> str:
    """libmagic's version (e.g. `545`), what its descriptions in a report depend on; a stored
    verdict names it (docs/architecture.md, the verdict cache).  It loads no magic database
    (a `Magic`): a re-check served from the verdict cache describes nothing."""
    magic = _module()
    if magic is None:
        return "unavailable"
    try:
        return str(magic.version())
    except Exception as exc:  # a libmagic too old to say: unknown, never equal to a real one
        return f"unknown ({type(exc).__name__})"


def describe(data: bytes) -> str:
    """libmagic's one-line description of `data` (e.g. `Linux kernel x86 boot executable ...`).

    Returns `UNAVAILABLE` if libmagic is not installed, and `(libmagic error: ...)` if libmagic
    refuses the buffer; never raises, because a description is never a verdict.
    """
    cookie = _magic()
    if cookie is None:
        return UNAVAILABLE
    if not data:
        return "empty"
    try:
        text = cookie.from_buffer(bytes(data[:MAX_BYTES]))
    except Exception as exc:  # magic.MagicException and ctypes errors: describe, do not crash
        return f"(libmagic error: {exc})"
    return str(text)
