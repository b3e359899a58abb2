"""The audit's per-image work on a real Dask cluster (a `dask scheduler` and two `dask worker`
processes, tests/support/dask_cluster.py) against a real password-protected registry: the same
results as the threads executor, work spread over both workers, credentials in no task graph
or log, and every failure an Unreadable, never a pass."""

from __future__ import annotations

import base64
import os
import pickle
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dask
import pytest

from ociboot import __version__, pipeline
from ociboot.audit import record
from ociboot.audit.dask import CONNECT_TIMEOUT, DaskExecutor, _plugin_name, _Remote, scheduler_address
from ociboot.audit.executor import Threads, open_executor
from ociboot.boot.context import Policy
from ociboot.errors import ExecutorUnavailable
from ociboot.pipeline import Checked
from ociboot.sources import SourceOptions
from tests.support.bootimages import generic
from tests.support.dask_cluster import ROOT, DaskCluster, start_cluster, tls_files
from tests.support.faultproxy import FaultProxy
from tests.support.imagebuilder import build_index
from tests.support.redis_server import RedisServer
from tests.support.registry_push import Pusher
from tests.support.registry_server import RegistryServer, start_basic_registry

pytestmark = pytest.mark.registry

USER = "auditor"
#: Unique to this run, so that finding it anywhere can only mean it leaked from here.
PASSWORD = f"dask-secret-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A registry that answers only with the password."""
    server = start_basic_registry("private", tmp_path_factory.mktemp("private-registry"), {USER: PASSWORD})
    yield server
    server.stop()


@dataclass(frozen=True)
class Target:
    repository: str
    tag: str
    digest: str
    reference: str


@pytest.fixture(scope="module")
def targets(private: RegistryServer) -> list[Target]:
    """Bootable and not-bootable images, an index of two platforms (its arm64 image has an amd64
    kernel: not bootable), and a digest that is not there (unreadable), each pinned by digest as
    the audit hands them over."""
    pusher = Pusher(private.url, USER, PASSWORD)
    images = {
        "os/good": generic().build(),
        "os/motd": generic().file("/etc/motd", "hello\n").build(),
        "os/no-init": generic().remove("/usr/lib/systemd").build(),
        "os/no-kernel": generic().remove("/boot").build(),
        "os/multi": build_index([generic().build(), _arm64().build()]),
    }
    found = []
    for repository, image in images.items():
        digest = pusher.push(repository, image, "v1")
        found.append(Target(repository, "v1", digest, f"docker://{private.host}/{repository}@{digest}"))
    missing = "sha256:" + "0" * 64
    found.append(Target("os/good", "gone", missing, f"docker://{private.host}/os/good@{missing}"))
    return found


def _arm64() -> object:
    image = generic()
    image.arch = "arm64"
    return image


def _options(tmp_path: Path | None = None) -> pipeline.Options:
    cache = None
    if tmp_path is not None:
        from ociboot.api import open_cache

        cache = open_cache(tmp_path / "cache")
    return pipeline.Options(source=SourceOptions(username=USER, password=PASSWORD), cache=cache)


def _lines(targets: list[Target], found: dict[str, Checked], registry: str) -> list[str]:
    return [
        record.from_checked(registry, t.repository, t.tag, t.digest, found[t.reference]).line()
        for t in targets
    ]


@pytest.fixture(scope="module")
def threads(targets: list[Target]) -> dict[str, Checked]:
    executor = Threads(Policy(), _options(), 2)
    return dict(executor.checked(t.reference for t in targets))


def test_dask_gives_what_threads_give(
    dask_cluster: DaskCluster, private: RegistryServer, targets: list[Target], threads: dict[str, Checked]
) -> None:
    executor = open_executor(dask_cluster.spec, Policy(), _options(), 4)
    assert isinstance(executor, DaskExecutor)
    try:
        executor.client.get_task_stream()  # the scheduler records tasks from now on
        found = dict(executor.checked(t.reference for t in targets))
        stream = executor.client.get_task_stream()
        caches = executor.client.run(_cache_root, _plugin_name(executor.run))
    finally:
        executor.close()
    # Without a cache at the client, each worker had a temporary one of its own, removed at close.
    assert len(set(caches.values())) == 2
    assert all(Path(root).name.startswith(f"ociboot-{executor.run}-") for root in caches.values())
    assert not any(Path(root).exists() for root in caches.values())
    assert _lines(targets, found, private.host) == _lines(targets, threads, private.host)
    verdicts = [record.from_checked("", "", "", "", found[t.reference]).verdict for t in targets]
    # The password reached the workers: the images were read, and judged both ways.
    assert verdicts == ["bootable", "bootable", "not bootable", "not bootable", "not bootable", "unreadable"]
    assert [found[t.reference].image for t in targets] == [t.reference for t in targets]
    ran = [task for task in stream if str(task["key"]).startswith(f"ociboot-check-{executor.run}-")]
    assert len(ran) == len(targets)
    assert len({task["worker"] for task in ran}) == 2, "the tasks ran on one worker only"


def test_checked_survives_a_pickle_round_trip(threads: dict[str, Checked]) -> None:
    """What a worker returns is what the client gets: a Checked pickles back equal."""
    for checked in threads.values():
        assert pickle.loads(pickle.dumps(checked)) == checked


def test_the_clients_cache_directory_is_the_workers(
    dask_cluster: DaskCluster,
    targets: list[Target],
    threads: dict[str, Checked],
    tmp_path: Path,
    private: RegistryServer,
) -> None:
    options = _options(tmp_path)
    assert options.cache is not None and not list(options.cache.root.rglob("*.idx"))
    executor = DaskExecutor(dask_cluster.spec, Policy(), options, 2)
    try:
        found = dict(executor.checked(t.reference for t in targets))
    finally:
        executor.close()
    assert _lines(targets, found, private.host) == _lines(targets, threads, private.host)
    assert list(options.cache.root.rglob("*.idx")), "the workers wrote no layer index to the cache"


def test_a_shared_cache_alone_is_no_directory_on_the_workers(
    dask_cluster: DaskCluster, targets: list[Target], redis_server: RedisServer, tmp_path: Path
) -> None:
    """--cache-url without --cache: the client's cache has no directory, and the workers keep
    their layer indexes in a temporary one of their own, not in a `None` in their cwd."""
    from ociboot.api import open_cache

    shared = open_cache(None, remote_url=redis_server.url, remote_key=os.urandom(32))
    options = replace(_options(), cache=shared)
    assert options.cache is not None and options.cache.root is None
    executor = DaskExecutor(dask_cluster.spec, Policy(), options, 2)
    try:
        found = dict(executor.checked(t.reference for t in targets[:2]))
        caches = executor.client.run(_cache_root, _plugin_name(executor.run))
    finally:
        executor.close()
    assert all(Path(root).name.startswith(f"ociboot-{executor.run}-") for root in caches.values()), caches
    assert not (ROOT / "None").exists()
    assert all(checked.reports for checked in found.values())


def test_at_most_jobs_tasks_are_in_flight(dask_cluster: DaskCluster, targets: list[Target]) -> None:
    executor = DaskExecutor(dask_cluster.spec, Policy(), _options(), 2)
    prefix = f"ociboot-check-{executor.run}-"

    def ours(dask_scheduler: object) -> int:
        return sum(1 for key in dask_scheduler.tasks if str(key).startswith(prefix))  # type: ignore[attr-defined]

    in_flight = []
    try:
        assert list(executor.checked([])) == []
        for _ in executor.checked(t.reference for t in targets):
            in_flight.append(executor.client.run_on_scheduler(ours))
    finally:
        executor.close()
    assert len(in_flight) == len(targets)
    assert max(in_flight) <= 2, in_flight


def test_credentials_stay_out_of_task_graphs_and_logs(
    dask_cluster: DaskCluster, targets: list[Target], private: RegistryServer
) -> None:
    secrets = [PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()]
    executor = DaskExecutor(dask_cluster.spec, Policy(), _options(), 3)

    def tasks(dask_scheduler: object) -> bytes:
        """Every task the scheduler holds: key, run spec, and its pickled bytes."""
        out = []
        for key, state in dask_scheduler.tasks.items():  # type: ignore[attr-defined]
            out.append(f"{key!r} {state.run_spec!r}".encode())
            out.append(pickle.dumps(state.run_spec))
        return b"\n".join(out)

    dumps = []
    found = {}
    try:
        executor.client.get_task_stream()  # the scheduler records tasks from now on
        for reference, checked in executor.checked(t.reference for t in targets):
            found[reference] = checked
            dumps.append(executor.client.run_on_scheduler(tasks))
        stream = executor.client.get_task_stream()
        plugin = executor.client.run(_shown, _plugin_name(executor.run))
    finally:
        executor.close()
    assert found[targets[0].reference].reports, "the password did not reach the workers"
    assert any(f"ociboot-check-{executor.run}".encode() in dump for dump in dumps), "no task was seen"
    seen = {
        "the scheduler's tasks": b"\n".join(dumps).decode("latin-1"),
        "the task stream": repr(stream),
        "the plugin's repr": repr(plugin),
        "the scheduler's and workers' logs": dask_cluster.log_text(),
    }
    for where, text in seen.items():
        for secret in secrets:
            assert secret not in text, f"the password is in {where}"


def _cache_root(name: str, dask_worker: Any) -> str:
    return str(dask_worker.plugins[name].options.cache.root)


def _shown(name: str, dask_worker: Any) -> str:
    """How a worker's plugin shows itself, as a log line or a traceback would show it."""
    plugin = dask_worker.plugins[name]
    return f"{plugin!r} {plugin!s}"


def test_the_shared_caches_url_and_key_are_not_in_a_repr() -> None:
    key = uuid.uuid4().bytes * 2
    shown = repr(_Remote(f"redis://:{PASSWORD}@127.0.0.1:1/0", key))
    assert PASSWORD not in shown and key.hex() not in shown and repr(key) not in shown


def test_a_task_that_errs_is_unreadable_never_a_pass(
    dask_cluster: DaskCluster, targets: list[Target]
) -> None:
    """Workers without the run's plugin raise in every task: each image becomes Unreadable
    (naming the failure) and the run goes on to the last one."""
    executor = DaskExecutor(dask_cluster.spec, Policy(), _options(), 2)
    try:
        executor.client.unregister_worker_plugin(_plugin_name(executor.run))
        found = dict(executor.checked(t.reference for t in targets))
    finally:
        executor.close()
    assert sorted(found) == sorted(t.reference for t in targets)
    for reference, checked in found.items():
        assert checked.image == reference and not checked.reports
        (unreadable,) = checked.unreadable
        assert unreadable.error.startswith("its Dask task failed (LookupError: "), unreadable.error


def test_a_worker_of_another_ociboot_judges_nothing(tmp_path: Path, targets: list[Target]) -> None:
    """A worker importing an older ociboot (another version, other code) would judge by rules
    the client does not have: each image it is given is Unreadable, saying why."""
    older = tmp_path / "older"
    shutil.copytree(ROOT / "ociboot", older / "ociboot", ignore=shutil.ignore_patterns("__pycache__"))
    init = older / "ociboot" / "__init__.py"
    init.write_text(init.read_text().replace(f'__version__ = "{__version__}"', '__version__ = "0.0.1"'))
    cluster = start_cluster(tmp_path / "dask", workers=1, threads=1, worker_root=older)
    try:
        executor = DaskExecutor(cluster.spec, Policy(), _options(), 2)
        try:
            found = dict(executor.checked(t.reference for t in targets[:2]))
        finally:
            executor.close()
    finally:
        cluster.stop()
    assert sorted(found) == sorted(t.reference for t in targets[:2])
    for checked in found.values():
        assert not checked.reports
        (unreadable,) = checked.unreadable
        assert "runs ociboot 0.0.1 (code " in unreadable.error, unreadable.error
        assert f"not the client's {__version__} (code " in unreadable.error


@pytest.fixture(scope="module")
def mortal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """Three one-thread workers to kill, on a scheduler that gives a task up when a second
    worker dies running it (Dask's allowed-failures, 3 by default, set to 1)."""
    found = start_cluster(
        tmp_path_factory.mktemp("dask-mortal"),
        workers=3,
        threads=1,
        scheduler_env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"},
    )
    yield found
    found.stop()


def _kill_the_worker_running(
    cluster: DaskCluster, executor: DaskExecutor, proxy: FaultProxy, seen: int
) -> int:
    """Once a worker is stuck in a trickled blob (the proxy saw a blob request after the first
    `seen`), kill the worker the scheduler says runs the task; the proxy's blob requests now."""
    key = f"ociboot-check-{executor.run}-0"
    for _ in range(600):  # a bound on waiting, not an assertion on time
        blobs = sum(1 for _, path, _ in proxy.requests if "/blobs/" in path)
        running = [worker for worker, keys in executor.client.processing().items() if key in keys]
        if blobs > seen and running:
            cluster.kill(executor.client.scheduler_info()["workers"][running[0]]["name"])
            return blobs
        time.sleep(0.1)
    raise AssertionError(f"no worker took {key}:\n{cluster.log_text()}")


def test_a_worker_lost_mid_task_is_retried_elsewhere_then_given_up(
    mortal: DaskCluster, private: RegistryServer, targets: list[Target], threads: dict[str, Checked]
) -> None:
    """A worker killed while judging an image: Dask runs the task on another worker and the
    verdict is the threads executor's.  Killed again (past allowed-failures): the image is
    Unreadable, naming Dask's KilledWorker, never a pass."""
    good = targets[0]
    proxy = FaultProxy(private.host)
    reference = f"docker://{proxy.host}/{good.repository}@{good.digest}"
    try:
        with ThreadPoolExecutor(1) as pool:
            executor = DaskExecutor(mortal.spec, Policy(), _options(), 1)
            try:
                proxy.trickle_next("/blobs/", interval=0.2)  # the first worker stalls in a blob
                running = pool.submit(lambda: list(executor.checked([reference])))
                _kill_the_worker_running(mortal, executor, proxy, 0)
                ((_, retried),) = running.result()
            finally:
                executor.close()
            expected = threads[good.reference]
            assert [r.digest for r in retried.reports] == [r.digest for r in expected.reports]
            line = record.from_checked("", "", "", "", retried).line()
            assert line == record.from_checked("", "", "", "", expected).line()

            executor = DaskExecutor(mortal.spec, Policy(), _options(), 1)
            try:
                proxy.trickle_next("/blobs/", interval=0.2)
                proxy.trickle_next("/blobs/", interval=0.2)
                seen = sum(1 for _, path, _ in proxy.requests if "/blobs/" in path)
                running = pool.submit(lambda: list(executor.checked([reference])))
                seen = _kill_the_worker_running(mortal, executor, proxy, seen)
                _kill_the_worker_running(mortal, executor, proxy, seen)
                ((_, lost),) = running.result()
            finally:
                executor.close()
    finally:
        proxy.close()
    assert lost.image == reference and not lost.reports
    (unreadable,) = lost.unreadable
    assert unreadable.error.startswith("its Dask task failed (KilledWorker: "), unreadable.error


def test_a_tls_cluster_gives_what_threads_give(
    tmp_path_factory: pytest.TempPathFactory,
    private: RegistryServer,
    targets: list[Target],
    threads: dict[str, Checked],
) -> None:
    """`tls://HOST:PORT` as given, the client's certificates from Dask's configuration."""
    directory = tmp_path_factory.mktemp("dask-tls")
    tls = tls_files(directory / "tls")
    cluster = start_cluster(directory, workers=1, tls=tls)
    try:
        assert cluster.spec.startswith("tls://127.0.0.1:")
        with dask.config.set(tls.client_config()):
            executor = open_executor(cluster.spec, Policy(), _options(), 2)
        try:
            found = dict(executor.checked(t.reference for t in targets))
        finally:
            executor.close()
    finally:
        cluster.stop()
    assert _lines(targets, found, private.host) == _lines(targets, threads, private.host)


def test_dask_addresses_are_tcp_and_tls_passes_through() -> None:
    assert scheduler_address("dask://127.0.0.1:8786") == "tcp://127.0.0.1:8786"
    assert scheduler_address("tls://localhost:8786") == "tls://localhost:8786"
    assert scheduler_address("tcp://localhost:8787") == "tcp://localhost:8787"


@pytest.mark.parametrize("peer", ["closed", "silent"])
def test_an_unreachable_scheduler_is_one_clear_error(peer: str) -> None:
    """Nothing listening, or a peer that accepts and never speaks (distributed's own handshake
    read has no timeout): one line naming the address, after CONNECT_TIMEOUT, exit 3."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        if peer == "closed":
            listener.close()
        address = f"dask://127.0.0.1:{port}"
        with pytest.raises(ExecutorUnavailable) as raised:
            open_executor(address, Policy(), _options(), 2)
    message = str(raised.value)
    assert message.startswith(f"{address}: no Dask scheduler answered within {CONNECT_TIMEOUT:g} s")
    assert "\n" not in message and raised.value.exit_code == 3


def test_the_threads_executor_imports_no_dask() -> None:
    code = (
        "import sys; from ociboot.audit.executor import open_executor; "
        "from ociboot.boot.context import Policy; "
        "from ociboot import pipeline; open_executor('threads', Policy(), pipeline.Options(), 2); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    assert done.stdout.strip() == "[]"
