"""A real Dask cluster for the tests: a `dask scheduler` and two `dask worker` processes on
127.0.0.1, each its own process with its log in a file.

The scheduler binds a free port itself (`--port 0`) and writes its address to a scheduler file
the workers read, so parallel runs never race for a port.  No dashboard.  The workers import
this checkout's `ociboot` (cwd and PYTHONPATH), as a deployed worker imports the installed one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.process import stop as stop_processes

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 2
THREADS = 2


class ClusterStartError(RuntimeError):
    """The scheduler or a worker did not come up."""


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA and one certificate it signed for 127.0.0.1, used by every process (Dask
    TLS is mutual: the client and the workers show a certificate too)."""

    ca_file: Path
    cert: Path
    key: Path

    def args(self) -> list[str]:
        return ["--tls-ca-file", str(self.ca_file), "--tls-cert", str(self.cert), "--tls-key", str(self.key)]

    def client_config(self) -> dict[str, str]:
        """Dask's configuration for a client of the cluster (dask.config.set)."""
        return {
            "distributed.comm.tls.ca-file": str(self.ca_file),
            "distributed.comm.tls.client.cert": str(self.cert),
            "distributed.comm.tls.client.key": str(self.key),
        }


def tls_files(directory: Path) -> TlsFiles:
    from tests.support.registry_server import _tls_config

    directory.mkdir(parents=True, exist_ok=True)
    _tls_config(directory)
    return TlsFiles(directory / "certs.d" / "ca.crt", directory / "server.pem", directory / "server.key")


@dataclass
class DaskCluster:
    directory: Path
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    address: str = ""  # tcp://127.0.0.1:PORT, tls://127.0.0.1:PORT
    tls: TlsFiles | None = None

    @property
    def spec(self) -> str:
        """The address as `--executor` takes it: dask://127.0.0.1:PORT, or tls://127.0.0.1:PORT."""
        return self.address if self.tls is not None else "dask://" + self.address.removeprefix("tcp://")

    @property
    def logs(self) -> list[Path]:
        return sorted(self.directory.glob("*.log"))

    def log_text(self) -> str:
        """Every process's stdout and stderr so far."""
        return "".join(path.read_text(errors="replace") for path in self.logs)

    def kill(self, name: str) -> None:
        """SIGKILL the worker named `name` (worker-N): a machine lost mid-task."""
        process = self.workers[int(name.removeprefix("worker-"))]
        process.kill()
        process.wait()

    def stop(self) -> None:
        stop_processes(*self.workers, self.scheduler)


def _spawn(
    directory: Path, name: str, *args: str, env: dict[str, str] | None = None, root: Path = ROOT
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(root), **(env or {})}
    with (directory / f"{name}.log").open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *args], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def start_cluster(
    directory: Path,
    workers: int = WORKERS,
    threads: int = THREADS,
    scheduler_env: dict[str, str] | None = None,
    tls: TlsFiles | None = None,
    worker_root: Path = ROOT,
) -> DaskCluster:
    """`scheduler_env`: Dask settings for the scheduler (DASK_DISTRIBUTED__…); with `tls`, every
    connection is TLS (tls://); `worker_root`: where the workers import `ociboot` from."""
    secure = ["--protocol", "tls", *tls.args()] if tls is not None else []
    directory.mkdir(parents=True, exist_ok=True)
    address_file = directory / "scheduler.json"
    scheduler = _spawn(
        directory,
        "scheduler",
        "distributed.cli.dask_scheduler",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--no-dashboard",
        "--scheduler-file",
        str(address_file),
        *secure,
        env=scheduler_env,
    )
    cluster = DaskCluster(directory, scheduler, tls=tls)
    try:
        cluster.address = _address(address_file, scheduler, directory)
        for n in range(workers):
            cluster.workers.append(
                _spawn(
                    directory,
                    f"worker-{n}",
                    "distributed.cli.dask_worker",
                    "--scheduler-file",
                    str(address_file),
                    "--host",
                    "127.0.0.1",
                    "--nthreads",
                    str(threads),
                    "--no-nanny",
                    "--no-dashboard",
                    "--name",
                    f"worker-{n}",
                    "--local-directory",
                    str(directory / f"worker-{n}"),
                    *secure,
                    root=worker_root,
                )
            )
        _wait_for_workers(cluster, workers)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _address(address_file: Path, scheduler: subprocess.Popen[bytes], directory: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and scheduler.poll() is None:
        try:
            return str(json.loads(address_file.read_text())["address"])
        except (OSError, ValueError, KeyError):
            time.sleep(0.1)
    raise ClusterStartError(f"the scheduler did not start:\n{(directory / 'scheduler.log').read_text()}")


def _wait_for_workers(cluster: DaskCluster, count: int) -> None:
    import dask
    from distributed import Client

    config = cluster.tls.client_config() if cluster.tls is not None else {}
    with dask.config.set(config), Client(cluster.address, timeout=30, set_as_default=False) as client:
        try:
            client.wait_for_workers(count, timeout=120)
        except TimeoutError:
            raise ClusterStartError(f"{count} workers did not join:\n{cluster.log_text()}") from None


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """A scheduler and two workers of two threads each, for the session: each executor
    registers its own run's plugin and removes it at close, so no test leaves state on them
    (a test that kills a worker starts a cluster of its own)."""
    cluster = start_cluster(tmp_path_factory.mktemp("dask"))
    yield cluster
    cluster.stop()
