"""Processes of the tests: `ociboot check` as its own process (what a shell sees: file
descriptors, exit code, stderr), and stopping the servers the tests start."""

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


def stop(*processes: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM every one still running, then wait for each; one that outlives `timeout` is killed."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
