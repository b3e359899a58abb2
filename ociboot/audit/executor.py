"""Where an audit's per-image work runs.

The audit hands an executor references already pinned by digest (`docker://HOST/REPO@sha256:…`)
and reads back, as each finishes, what `check` found.  `Threads` runs them in this process,
sharing one `pipeline.Options` (so one layer cache and its per-layer build gate, one registry
client); `audit.dask.DaskExecutor` runs them on a Dask cluster.  Either way nothing raises for an
image: `check_reference` turns every failure into an Unreadable.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..boot.context import Policy
    from ..pipeline import Checked, Options


class Executor(Protocol):
    def checked(self, references: Iterable[str]) -> Iterator[tuple[str, Checked]]:
        """(reference, what check found) for each reference, in the order they finish."""
        ...

    def close(self) -> None: ...


#: Images handed to `Threads`' pool per thread: the one it judges and the next, so that a thread
#: never waits for a reference, and no more, so that results are not held.
IN_FLIGHT_PER_THREAD = 2


class Threads:
    """`jobs` images at once in this process."""

    def __init__(self, policy: Policy, options: Options, jobs: int) -> None:
        self.policy, self.options, self.jobs = policy, options, jobs

    def checked(self, references: Iterable[str]) -> Iterator[tuple[str, Checked]]:
        from ..pipeline import check_reference

        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="audit")
        # References are taken as threads free up, not all at once: a finished image's reports
        # (whole fact sheets) are held only until yielded, so memory stays flat in the number of
        # images, and a lazily made stream of references is read as it is judged.
        window = IN_FLIGHT_PER_THREAD * self.jobs
        todo = iter(references)
        pending: dict[Future[Checked], str] = {}
        try:
            while True:
                for text in itertools.islice(todo, window - len(pending)):
                    pending[pool.submit(check_reference, text, self.policy, self.options)] = text
                if not pending:
                    return
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield pending.pop(future), future.result()
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
