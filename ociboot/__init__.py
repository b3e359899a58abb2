"""ociboot: will this container image boot?  Daemonless, nothing unpacked to disk."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
