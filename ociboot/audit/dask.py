"""The audit's per-image work on a Dask distributed cluster (the `ociboot[dask]` extra).

`dask://HOST:PORT` is the scheduler at `tcp://HOST:PORT`; `tcp://` and `tls://` addresses pass
through as given.  Each task judges one reference with `pipeline.check_reference` on a worker and
returns its `Checked`, so results are what the threads executor gives.

What a worker needs besides the reference (the registry credentials, the policy, the platform,
the cache) travels once, in a WorkerPlugin the client registers for the run and unregisters at
close: a task's arguments are the reference and the run id only, so credentials are in no task
graph, task key, task stream or log (the plugin's repr names only the run).  The plugin itself
is pickled to the scheduler and every worker: across machines, use `tls://` comms, since the
credentials are in it (the client's certificates come from Dask's configuration,
`distributed.comm.tls.*`, e.g. DASK_DISTRIBUTED__COMM__TLS__CA_FILE).  `--authfile` and the default auth files
and credential helpers are read on the worker, at the same paths.

A worker judges only if it runs the client's very ociboot (cache.build_id: version and code): one
with an older or edited ociboot would judge by other rules, so every image it is given is
Unreadable, saying so, rather than passed by rules the client does not have.

Cache: the client's local cache directory when it has one, at the same path on the worker (a
worker on another machine has its own there), else a temporary directory per worker made when
the plugin is set up (in the worker's scratch space, `--local-directory`) and removed at
teardown; plus the shared remote cache (`--cache-url`) when the client has one, which is what
makes workers share layer work.

At most `jobs` tasks are on the cluster at once (the next is submitted as one finishes).  A
worker lost mid-task has its task run again on another by Dask (up to the scheduler's
`allowed-failures`); a task that errs anyway makes its image Unreadable, never a pass, and the
audit goes on.

Dask and distributed are imported here only, and this module only by `open_executor` for a
`dask://` executor: an audit without `--executor dask://…` loads neither.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from distributed import Client, Future, WorkerPlugin, as_completed, get_worker

from ..cache import build_id
from ..errors import ExecutorUnavailable
from ..pipeline import Checked, Options, RegistryState, check_reference, exception_detail, failure_line
from ..ref import redact
from ..report import Unreadable

if TYPE_CHECKING:
    from distributed import Worker

    from ..boot.context import Policy
    from ..cache import LayerCache
    from ..sources import SourceOptions
    from ..spec import Platform

#: How long the client waits for the scheduler to answer before the audit gives up on it.
CONNECT_TIMEOUT = 10.0


def scheduler_address(spec: str) -> str:
    """The address Dask connects to: `dask://HOST:PORT` is `tcp://HOST:PORT`."""
    return "tcp://" + spec.removeprefix("dask://") if spec.startswith("dask://") else spec


@dataclass(frozen=True, slots=True)
class _Remote:
    """What a worker needs to open the client's shared remote cache (LayerCache.remote); both
    are secrets, so neither is in its repr (a log line or an error quoting it)."""

    url: str = field(repr=False)
    key: bytes = field(repr=False)


class _Plugin(WorkerPlugin):
    """Everything a worker needs to judge the run's images, credentials included; it never says
    what it holds (repr), and Dask logs plugins by name only."""

    def __init__(
        self,
        run: str,
        policy: Policy,
        source: SourceOptions,
        platform: Platform | None,
        layer_jobs: int,
        directory: str | None,
        remote: _Remote | None,
        build: str,
    ) -> None:
        self.run, self.policy, self.source, self.platform = run, policy, source, platform
        self.layer_jobs, self.directory, self.remote = layer_jobs, directory, remote
        self.build = build  # the client's ociboot (cache.build_id)
        self.options: Options | None = None
        self.broken: str | None = None  # why setup failed: every image here is then Unreadable
        self._made: str | None = None

    def __repr__(self) -> str:
        return f"<ociboot audit worker plugin {self.run}>"

    __str__ = __repr__

    def __getstate__(self) -> dict[str, Any]:
        # Only what the client set: a worker's options, cache and temp dir stay on it.
        return {
            "run": self.run,
            "policy": self.policy,
            "source": self.source,
            "platform": self.platform,
            "layer_jobs": self.layer_jobs,
            "directory": self.directory,
            "remote": self.remote,
            "build": self.build,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def setup(self, worker: Worker) -> None:
        if self.build != build_id():
            self.broken = (
                f"Dask worker {worker.address} runs ociboot {_shown_build(build_id())}, "
                f"not the client's {_shown_build(self.build)}; it judges nothing"
            )
            return
        try:
            self.options = Options(
                source=self.source,
                platform=self.platform,
                jobs=self.layer_jobs,
                cache=self._cache(worker.local_directory),
                registry_state=RegistryState(),
            )
        except Exception as exc:  # reported per image: a worker that cannot judge passes nothing
            self.broken = f"Dask worker {worker.address} could not set up: {failure_line(exc)}"

    def _cache(self, scratch: str) -> LayerCache:
        from ..api import open_cache

        directory = self.directory
        if directory is None:
            # In the worker's own scratch space, which Dask removes with the worker even when a
            # worker killed mid-run never gets to tear the plugin down.
            directory = self._made = tempfile.mkdtemp(prefix=f"ociboot-{self.run}-", dir=scratch)
        if self.remote is None:
            # A directory of this run alone keeps no verdict: no later run will look for one.
            return open_cache(directory, verdicts=self.directory is not None)
        return open_cache(directory, remote_url=self.remote.url, remote_key=self.remote.key)

    def teardown(self, worker: Worker) -> None:
        if self.options is not None:
            self.options.registry.close()
        if self._made is not None:
            shutil.rmtree(self._made, ignore_errors=True)

    def judge(self, reference: str) -> Checked:
        if self.options is None:
            return _unreadable(reference, self.broken or "the Dask worker was not set up")
        return check_reference(reference, self.policy, self.options)


def _shown_build(build: str) -> str:
    version, _, code = build.partition(" ")
    return f"{version} (code {code[:12]})"


def _unreadable(reference: str, error: str) -> Checked:
    shown = redact(reference)
    return Checked(shown, (), (Unreadable(shown, error),))


def _plugin_name(run: str) -> str:
    return f"ociboot-{run}"


def _judge(reference: str, run: str) -> Checked:
    """One task: the reference judged by this worker with the run's plugin."""
    plugin = get_worker().plugins.get(_plugin_name(run))
    if not isinstance(plugin, _Plugin):
        raise LookupError(f"this worker has no ociboot plugin for run {run}")
    return plugin.judge(reference)


def _connect(given: str, address: str, name: str) -> Client:
    """A client of the scheduler at `address`, or ExecutorUnavailable after CONNECT_TIMEOUT.

    distributed bounds the TCP connection by its `timeout` but not the handshake read after it:
    a peer that accepts and never speaks holds `Client()` for ever.  So the client is made on a
    thread this waits for; one that answers too late is closed by that thread, unused."""
    made: list[Client] = []
    failed: list[Exception] = []
    lock = threading.Lock()
    gave_up = False

    def connect() -> None:
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False, name=name)
        except Exception as exc:  # OSError, TimeoutError, ValueError for an address it cannot parse
            failed.append(exc)
            return
        with lock:
            if not gave_up:
                made.append(client)
                return
        client.close()

    thread = threading.Thread(target=connect, name="ociboot-dask-connect", daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT)
    with lock:
        gave_up = not made
    if made:
        return made[0]
    detail = f" ({exception_detail(failed[0])})" if failed else ""
    raise ExecutorUnavailable(f"{given}: no Dask scheduler answered within {CONNECT_TIMEOUT:g} s{detail}")


class DaskExecutor:
    """`jobs` images in flight at once on the cluster at `address`, each judged by a worker."""

    def __init__(self, address: str, policy: Policy, options: Options, jobs: int) -> None:
        self.address = scheduler_address(address)
        self.jobs = max(1, jobs)
        self.run = uuid.uuid4().hex[:12]
        self.client = _connect(address, self.address, f"ociboot-{self.run}")
        cache = options.cache
        remote = getattr(cache, "remote", None) if cache is not None else None
        plugin = _Plugin(
            self.run,
            policy,
            options.source,
            options.platform,
            options.jobs,
            # A shared cache alone has no directory (root None): then each worker has a temporary one.
            str(cache.root) if cache is not None and cache.root is not None else None,
            _Remote(remote.url, remote.key) if remote is not None else None,
            build_id(),
        )
        try:
            self.client.register_plugin(plugin, name=_plugin_name(self.run))
        except Exception as exc:  # the scheduler went away; setup itself never raises
            self.client.close()
            raise ExecutorUnavailable(
                f"{address}: the run's settings could not reach the workers ({exception_detail(exc)})"
            ) from None

    def checked(self, references: Iterable[str]) -> Iterator[tuple[str, Checked]]:
        pending = iter(references)
        named: dict[str, str] = {}
        numbers = itertools.count()

        def submit(text: str) -> Future:
            key = f"ociboot-check-{self.run}-{next(numbers)}"
            named[key] = text
            return self.client.submit(_judge, text, self.run, key=key, pure=False)

        first = [submit(text) for text in itertools.islice(pending, self.jobs)]
        window = as_completed(first, loop=self.client.loop)
        try:
            for future in window:
                text = named.pop(future.key)
                yield text, _outcome(text, future)
                future.release()
                following = next(pending, None)
                if following is not None:
                    window.add(submit(following))
        finally:  # the audit stopped reading: what is still queued is not wanted
            for future in list(window.futures):
                future.cancel()
            window.clear()

    def close(self) -> None:
        try:
            self.client.unregister_worker_plugin(_plugin_name(self.run))
        except Exception:  # a worker gone already: the plugin went with it
            pass
        finally:
            self.client.close()


def _outcome(reference: str, future: Future) -> Checked:
    """What the task returned.  A task that erred anyway (check_reference never raises: a
    pickling bug, a worker killed past Dask's allowed failures, a lost scheduler) makes the image
    Unreadable, never a pass, and the audit goes on."""
    try:
        result = future.result()
    except Exception as exc:  # a cancelled future's error is one too
        return _unreadable(
            reference, f"its Dask task failed ({exception_detail(exc)}); the image was not judged"
        )
    if not isinstance(result, Checked):
        return _unreadable(reference, f"its Dask task returned a {type(result).__name__}, not a verdict")
    return result
