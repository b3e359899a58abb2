"""The analysis budget of one image: how much work the analyzers of its files may do together.

Per-file caps bound one file (INITRD_CAP, BANNER_SCAN_LIMIT, PKGDB_CAP); an image can hold many
files, so all the analyzers of one image (kernels, initrds and package databases read while the
layers stream, and any file read again afterwards for a rule) also spend from one budget.  When
it runs out, the analysis in progress stops and every later one is not started: their files'
results say so, and the rules that need them say "not run", never "pass".

The budget counts units of work, not seconds, so that a verdict never depends on the machine's
speed or load and a test can hit the bound exactly.  A unit is about what reading one byte costs
(~1 ns on 2 cores): every byte an analyzer reads from a layer or a decoder produces (a bomb is
charged for what it inflates to), weighted by the decoder's cost (compression.DECODE_COST:
bzip2 charges 512 per compressed byte), plus fixed costs for work not proportional to bytes:
FILE_COST per file (libmagic and the header probes), MEMBER_COST per cpio member (a member of
no bytes still costs a header parse and a record in memory).

The default, measured on 2 cores: the real Debian 6.1 kernel (bzImage) charges 82 MiB (mostly
for what a PE head could inflate to), the bench image's zstd initramfs 33 MiB, an initramfs of
every module of that kernel package (380 MiB, 4,910 members; more than any real one holds)
1.3-1.5 GiB as zstd and 3.6 GiB as xz (4.5 s of CPU: xz is slow).  8 GiB leaves room for that
while bounding the worst hostile image to about 10 s of analysis CPU.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .errors import AnalysisBudgetExceeded
from .streams import ReadStream

#: Units of analysis work per image, unless --analysis-budget or the policy says otherwise.
DEFAULT_ANALYSIS_BUDGET = 8 << 30
#: Fixed cost of analyzing one file, whatever its size.
FILE_COST = 1 << 20
#: Fixed cost of one cpio member of an initrd, on top of its bytes.
MEMBER_COST = 16 << 10

_MIB = 1 << 20


class AnalysisBudget:
    """Analysis work left for one image; shared by the threads indexing its layers."""

    def __init__(self, limit: int = DEFAULT_ANALYSIS_BUDGET) -> None:
        if limit <= 0:
            raise ValueError(f"analysis budget must be positive, not {limit}")
        self.limit = limit
        self.spent = 0
        self.exhausted = False
        self._lock = threading.Lock()

    def spend(self, n: int) -> None:
        """Charge `n` units of work; AnalysisBudgetExceeded once the budget is used up (and for
        every charge after that, so that no analysis starts on what is left)."""
        with self._lock:
            if self.exhausted or self.spent + n > self.limit:
                self.exhausted = True
                raise AnalysisBudgetExceeded(
                    f"the image's analysis budget of {_size(self.limit)} is used up "
                    f"(raise it with --analysis-budget SIZE or analysis-budget in the --policy file)"
                )
            self.spent += n


class Metered(ReadStream):
    """A stream whose reads are charged as they happen: `charge(len(data))` after each read."""

    def __init__(self, raw: Any, charge: Callable[[int], None]) -> None:
        self._raw = raw
        self._charge = charge

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._raw.read(n)
        self._charge(len(data))
        return data


def no_charge(n: int) -> None:
    """Charges nothing: the charge of a caller that has no budget (a test, a single file)."""


def _size(n: int) -> str:
    if n % (1 << 30) == 0:
        return f"{n >> 30} GiB"
    return f"{n / _MIB:g} MiB" if n >= _MIB else f"{n} bytes"
