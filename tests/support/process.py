"""`ociboot check` as its own process: what a shell sees (file descriptors, exit code, stderr)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def ociboot_check(*args: str, stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    """`python -m ociboot check -q ARGS` from the repository root; `stdout` as for subprocess.run."""
    return subprocess.run(
        [sys.executable, "-m", "ociboot", "check", "-q", *args],
        cwd=ROOT,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
