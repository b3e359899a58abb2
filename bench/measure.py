"""Run one command and measure its whole process tree.

- wall: monotonic clock around spawn and reap;
- CPU: user + sys as GNU time reports them from wait4(), covering every descendant reaped;
- peak RSS: GNU time's "maximum resident set size", the largest resident set of any single
  process in the tree (getrusage(2): a maximum, not a sum).  /usr/bin/time is the parent
  because a child forked from this Python process starts with its RSS as the high-water mark
  (exec records the old mm's peak), which would hide anything smaller;
- disk written: the delta of this process's /proc/self/io `write_bytes`, because Linux adds a
  reaped child's I/O accounting (and its reaped children's) to the parent's (kernel/exit.c,
  wait_task_zombie).  `write_bytes` counts pages dirtied for storage, even if the file is
  deleted before writeback; nothing else writes from this process while a command runs.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TIME = "/usr/bin/time"  # GNU time (Debian package `time`)
MARK = "@bench-time@"


def _write_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "write_bytes":
            return int(value)
    return 0


@dataclass(frozen=True, slots=True)
class Sample:
    wall: float  # seconds
    cpu: float  # seconds, user + sys
    rss: int  # bytes
    written: int  # bytes
    fetched: int | None  # blob bytes the registry sent, if counted
    returncode: int
    stdout: str
    stderr: str


def run(cmd: Sequence[str], env: dict[str, str] | None = None) -> Sample:
    """Run `cmd` to completion and measure it (`fetched` is left for the caller to fill).

    Output goes through pipes, not files, so that it is not counted as disk written.
    """
    timed = [TIME, "--format", f"{MARK} %U %S %M", *cmd]
    written = _write_bytes()
    start = time.monotonic()
    proc = subprocess.run(timed, capture_output=True, env=env, check=False)
    wall = time.monotonic() - start
    written = _write_bytes() - written
    stderr = proc.stderr.decode(errors="replace")
    head, _, tail = stderr.rpartition(MARK)
    user, system, rss_kib = tail.split()[:3]
    return Sample(
        wall=wall,
        cpu=float(user) + float(system),
        rss=int(rss_kib) * 1024,
        written=written,
        fetched=None,
        returncode=proc.returncode,
        stdout=proc.stdout.decode(errors="replace"),
        stderr=head,
    )


@dataclass(frozen=True, slots=True)
class Summary:
    """Medians over the samples of one variant."""

    runs: int
    wall: float
    cpu: float
    rss: int
    written: int
    fetched: int | None
    walls: tuple[float, ...]

    @classmethod
    def of(cls, samples: Sequence[Sample]) -> Summary:
        fetched = [s.fetched for s in samples if s.fetched is not None]
        return cls(
            runs=len(samples),
            wall=statistics.median(s.wall for s in samples),
            cpu=statistics.median(s.cpu for s in samples),
            rss=int(statistics.median(s.rss for s in samples)),
            written=int(statistics.median(s.written for s in samples)),
            fetched=int(statistics.median(fetched)) if fetched else None,
            walls=tuple(s.wall for s in samples),
        )
