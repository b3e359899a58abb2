"""Where an audit's per-image work runs.

The audit hands an executor references already pinned by digest (`docker://HOST/REPO@sha256:…`)
and reads back, as each finishes, what `check` found.  `Threads` runs them in this process,
sharing one `pipeline.Options` (so one layer cache and its per-layer build gate, one registry
client); `audit.dask.DaskExecutor` runs them on a Dask cluster.  Either way nothing raises for an
image: `check_reference` turns every failure into an Unreadable.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..boot.context import Policy
    from ..pipeline import Checked, Options


class Executor(Protocol):
    def checked(self, references: Iterable[str]) -> Iterator[tuple[str, Checked]]:
        """(reference, what check found) for each reference, in the order they finish."""
        ...

    def close(self) -> None: ...


class Threads:
    """`jobs` images at once in this process."""

    def __init__(self, policy: Policy, options: Options, jobs: int) -> None:
        self.policy, self.options, self.jobs = policy, options, jobs

    def checked(self, references: Iterable[str]) -> Iterator[tuple[str, Checked]]:
        from ..pipeline import check_reference

        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="audit")
        try:
            futures = {
                pool.submit(check_reference, text, self.policy, self.options): text for text in references
            }
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            # Not `with`: its exit would judge every queued image before Ctrl-C could end the run.
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        pass


#: --executor's default: the images are judged by threads of this process.
LOCAL = "threads"


def open_executor(spec: str, policy: Policy, options: Options, jobs: int) -> Executor:
    """The executor `--executor` names: `threads` (the default), or `dask://HOST:PORT` (a Dask
    distributed scheduler; needs the `ociboot[dask]` extra, imported only here and only then).
    ValueError for anything else, or without the extra (a usage error); ExecutorUnavailable when
    no scheduler answers there."""
    if spec == LOCAL:
        return Threads(policy, options, jobs)
    if spec.startswith(("dask://", "tcp://", "tls://")):
        try:
            from .dask import DaskExecutor
        except ImportError as exc:
            raise ValueError(f"{spec}: a Dask executor needs the ociboot[dask] extra ({exc})") from None
        return DaskExecutor(spec, policy, options, jobs)
    raise ValueError(f"{spec!r}: not an executor (give {LOCAL} or dask://HOST:PORT)")
