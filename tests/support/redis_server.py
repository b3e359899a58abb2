"""Real Redis servers for the tests: Debian's `redis-server` on 127.0.0.1, a free port, a temp
dir, nothing saved to disk (`--save '' --appendonly no`), stopped at the end of the session.

`start_redis(directory, password=...)` starts one (requirepass when a password is given); the
`redis_server` fixture is one shared by a session.  Nothing here imitates Redis.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.support.process import stop as stop_processes
from tests.support.registry_server import free_port

BINARY = "/usr/bin/redis-server"


class RedisStartError(RuntimeError):
    """redis-server is not installed, or did not answer on its port."""


@dataclass
class RedisServer:
    port: int
    directory: Path
    process: subprocess.Popen[bytes]
    password: str | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=10)

    def stop(self) -> None:
        stop_processes(self.process)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def start_redis(directory: Path, *, password: str | None = None) -> RedisServer:
    if not os.access(BINARY, os.X_OK):
        raise RedisStartError(f"{BINARY} not found: apt-get install -y redis-server")
    directory.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # a port chosen free can be taken by a parallel run before we bind it
        port = free_port()
        args = [BINARY, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(directory), "--logfile", str(directory / "redis.log")]
        if password:
            args += ["--requirepass", password]
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = RedisServer(port, directory, process, password)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and process.poll() is None:
            if _answers(port):
                return server
            time.sleep(0.05)
        server.stop()
    raise RedisStartError(f"redis-server did not start; its log: {directory / 'redis.log'}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()
