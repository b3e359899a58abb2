"""The audit's per-image work on a Dask distributed cluster (the `ociboot[dask]` extra).

Skeleton: the interface the audit uses; the implementation lands with issue 11's Dask part.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..boot.context import Policy
    from ..pipeline import Checked, Options


class DaskExecutor:
    def __init__(self, address: str, policy: Policy, options: Options, jobs: int) -> None:
        raise NotImplementedError("the Dask executor is not written yet")

    def checked(self, references: Iterable[str]) -> Iterator[tuple[str, Checked]]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
