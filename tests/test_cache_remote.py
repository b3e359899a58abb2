"""The shared cache on Redis (ociboot/cache/remote.py), against a real `redis-server` and the
real registry: separate processes share layer work, a forged, damaged, foreign or oversized value
is ignored, a Redis that is down or is not Redis is one warning, a password in the URL is never
shown, and two processes building the same layer fetch it once between them."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ociboot.boot.initrd import InitrdInfo
from ociboot.boot.kernel import KernelInfo
from ociboot.boot.scan import PackageDbResult
from ociboot.cache import AnalysisCodec, decode_index, encode_index, store
from ociboot.cache import remote as remote_module
from ociboot.cache.remote import BUILD_LOCK_SECONDS, KEY_VARIABLE, RemoteCache
from ociboot.cli import app
from ociboot.digest import Digest
from tests.support.bootimages import generic
from tests.support.process import ROOT
from tests.support.redis_server import RedisServer, start_redis
from tests.support.registry_push import Pusher
from tests.support.registry_server import RegistryServer, blob_gets, free_port

CODEC = AnalysisCodec((KernelInfo, InitrdInfo, PackageDbResult))
runner = CliRunner()


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """A key of this test's own (OCIBOOT_CACHE_KEY): its values are apart from other tests'."""
    value = os.urandom(32)
    monkeypatch.setenv(KEY_VARIABLE, value.hex())
    return value


@dataclasses.dataclass
class Pushed:
    ref: str
    repo: str
    layers: list[str]
    config: str
    built: object


def push(registry: RegistryServer, repo: str, image: object) -> Pushed:
    Pusher(registry.url).push(repo, image, tag="v1")  # type: ignore[arg-type]
    layers = [b.digest for b in image.layers]  # type: ignore[attr-defined]
    return Pushed(f"docker://{registry.host}/{repo}:v1", repo, layers, image.config.digest, image)  # type: ignore[attr-defined]


def cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["check", "-q", *args])
    return result.exit_code, result.stdout, result.stderr


def ociboot(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ociboot", "check", "-q", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def names(server: RedisServer, kind: str, digest: str) -> list[str]:
    return sorted(n.decode() for n in server.client().scan_iter(match=f"ociboot:*:{kind}:{digest}:*"))


def sealed(key: bytes, name: str, data: bytes) -> bytes:
    """A value as remote.py seals it: HMAC-SHA256 over the name, a NUL and the data, then the data."""
    return hmac.new(key, name.encode() + b"\0" + data, hashlib.sha256).digest() + data


def sealed_lock(key: bytes, lock: str, taken: float) -> str:
    """A build lock as remote.py seals it: a token of 32 characters (when it was taken, then
    random), then its MAC (hex)."""
    token = f"{int(taken):012d}" + os.urandom(10).hex()
    return token + hmac.new(key, lock.encode() + b"\0" + token.encode(), hashlib.sha256).hexdigest()


# --- separate processes share layer work ---------------------------------------------------------


def test_a_second_process_fetches_no_layer_blob(
    registry: RegistryServer, redis_server: RedisServer, key: bytes, tmp_path: Path
) -> None:
    image = push(registry, "remote/warm", generic().file("/etc/motd", "hi\n").remove("/etc/motd").build())
    xdg = tmp_path / "xdg"
    env = {KEY_VARIABLE: key.hex(), "XDG_CACHE_HOME": str(xdg)}
    args = [image.ref, "--format", "json", "--cache-url", redis_server.url]

    cold = ociboot(*args, env=env)
    cold_out, cold_err = cold.communicate(timeout=300)
    after_cold = blob_gets(registry, image.repo, image.layers)
    # Another policy: no stored verdict applies, the shared layer entries are what serve it.
    warm = ociboot(*args, "--fatal-warnings", env=env)
    warm_out, warm_err = warm.communicate(timeout=300)
    after_warm = blob_gets(registry, image.repo, image.layers)
    configs = blob_gets(registry, image.repo, [image.config])
    # The first policy again: its verdict is shared too, so not even the config is read.
    again = ociboot(*args, env=env)
    again_out, _ = again.communicate(timeout=300)

    assert cold.returncode == warm.returncode == again.returncode == 0, cold_err + warm_err
    assert cold_err == warm_err == ""
    assert after_cold == 2 and after_warm == after_cold
    assert blob_gets(registry, image.repo, [image.config]) == configs
    assert json.loads(cold_out) == json.loads(warm_out) == json.loads(again_out)
    assert len(names(redis_server, "layer", image.layers[0])) == 1
    # --cache-url alone is the shared cache only: nothing was written to disk.
    assert not xdg.exists() or not any(xdg.rglob("*"))


def test_a_local_cache_dir_keeps_what_the_shared_cache_served(
    registry: RegistryServer, redis_server: RedisServer, key: bytes, tmp_path: Path
) -> None:
    image = push(registry, "remote/tiers", generic().build())
    assert cli(image.ref, "--cache-url", redis_server.url)[0] == 0
    before = blob_gets(registry, image.repo, image.layers)
    code, _, err = cli(image.ref, "--cache-url", redis_server.url, "--cache-dir", str(tmp_path / "c"))
    assert code == 0 and err == ""
    assert blob_gets(registry, image.repo, image.layers) == before
    assert len(list((tmp_path / "c").rglob("*.idx"))) == 0  # the verdict was shared: no layer read
    code, _, _ = cli(
        image.ref, "--cache-url", redis_server.url, "--cache-dir", str(tmp_path / "c"), "--fatal-warnings"
    )
    assert code == 0 and len(list((tmp_path / "c").rglob("*.idx"))) == 1
    assert blob_gets(registry, image.repo, image.layers) == before
    # Now the local directory alone serves it.
    redis_server.client().delete(*names(redis_server, "layer", image.layers[0]))
    assert (
        cli(image.ref, "--cache-dir", str(tmp_path / "c"), "--fatal-warnings", "--profile", "generic")[0] == 0
    )
    assert blob_gets(registry, image.repo, image.layers) == before


# --- a shared value is trusted only when sealed with the run's key -------------------------------


@pytest.fixture
def victim(
    registry: RegistryServer, redis_server: RedisServer, key: bytes
) -> Iterator[tuple[Pushed, str, bytes]]:
    """A NOT BOOTABLE image, and the value that would pass it: a bootable image's genuine layer
    entry rewritten for the victim's layer (its digest, diff_id, media type and size), sealed
    with the run's key under the victim's name.  Yields (victim, that name, the forged entry)."""
    tag = os.urandom(4).hex()
    good = push(registry, f"remote/good-{tag}", generic().file("/etc/tag", tag).build())
    bad = push(registry, f"remote/bad-{tag}", generic().file("/etc/tag", tag).drop("/boot").build())
    assert cli(good.ref, "--cache-url", redis_server.url)[0] == 0
    (good_name,) = names(redis_server, "layer", good.layers[0])
    remote = RemoteCache(redis_server.url, key)
    genuine = remote.get(good_name, store.MAX_SHARED_ENTRY_BYTES)
    assert genuine is not None
    spec, index = decode_index(genuine, CODEC)
    layer = bad.built.layers[0]  # type: ignore[attr-defined]
    forged = dataclasses.replace(
        index,
        name=layer.digest,
        digest=Digest.parse(layer.digest),
        diff_id=Digest.parse(bad.built.diff_ids[0]),  # type: ignore[attr-defined]
        media_type=layer.media_type,
        compressed_size=len(layer.data),
    )
    bad_name = good_name.replace(good.layers[0], bad.layers[0])
    entry = encode_index(forged, spec, CODEC)
    # The forgery is real: sealed with the run's key it passes the victim (the key is the trust).
    redis_server.client().set(bad_name, sealed(key, bad_name, entry))
    assert cli(bad.ref, "--cache-url", redis_server.url, "--profile", "generic")[0] == 0
    client = redis_server.client()
    client.delete(*client.keys("ociboot:*:verdict:*"))
    assert cli(bad.ref)[0] == 1
    yield bad, bad_name, entry


@pytest.mark.parametrize(
    "tamper", ["another key", "a flipped byte", "another name", "another type", "oversized"]
)
def test_a_shared_value_not_sealed_with_the_key_is_ignored(
    registry: RegistryServer,
    victim: tuple[Pushed, str, bytes],
    redis_server: RedisServer,
    key: bytes,
    tamper: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bad, name, entry = victim
    client = redis_server.client()
    if tamper == "another key":
        client.set(name, sealed(os.urandom(32), name, entry))
    elif tamper == "a flipped byte":
        value = bytearray(sealed(key, name, entry))
        value[len(value) // 2] ^= 0x01
        client.set(name, bytes(value))
    elif tamper == "another name":
        client.set(name, sealed(key, name.replace(":layer:", ":verdict:"), entry))
    elif tamper == "another type":
        client.delete(name)
        client.hset(name, "entry", sealed(key, name, entry))
    else:
        client.set(name, sealed(key, name, entry))
        monkeypatch.setattr(store, "MAX_SHARED_ENTRY_BYTES", len(entry) - 1)
    before = blob_gets(registry, bad.repo, bad.layers)
    code, out, err = cli(bad.ref, "--cache-url", redis_server.url, "--profile", "generic")
    assert code == 1 and "NOT BOOTABLE" in out
    assert err == ""  # a bad value is a debug note, not a failing cache
    assert (
        blob_gets(registry, bad.repo, bad.layers) == before + 1
    )  # the layer was fetched, not taken from Redis


# --- Redis is an optimisation, never an authority -------------------------------------------------


@pytest.fixture
def silent() -> Iterator[str]:
    """A hostile server: it accepts connections (the kernel's backlog does) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


@pytest.mark.parametrize("what", ["nobody listening", "not redis", "silent"])
def test_a_redis_down_or_not_redis_is_one_warning(
    registry: RegistryServer, key: bytes, what: str, request: pytest.FixtureRequest
) -> None:
    tag = os.urandom(4).hex()
    good = push(registry, f"remote/up-{tag}", generic().file("/etc/tag", tag).build())
    bad = push(registry, f"remote/down-{tag}", generic().file("/etc/tag", tag).drop("/boot").build())
    url = {
        "nobody listening": lambda: f"redis://127.0.0.1:{free_port()}/0",
        "not redis": lambda: f"redis://{registry.host}/0",  # an HTTP server
        "silent": lambda: request.getfixturevalue("silent"),
    }[what]()
    for image, expected in ((good, 0), (bad, 1)):
        code, out, err = cli(image.ref, "--format", "json", "--cache-url", url)
        assert code == expected
        assert err.count("\n") == 1 and err.startswith(f"ociboot: warning: shared cache {url} unavailable")
        assert "continuing with the local cache only" in err
        assert json.loads(out) == json.loads(cli(image.ref, "--format", "json")[1])


def test_a_password_in_the_url_is_never_shown(registry: RegistryServer, key: bytes, tmp_path: Path) -> None:
    secret = "s3cret-" + os.urandom(6).hex()
    server = start_redis(tmp_path / "redis", password=secret)
    try:
        image = push(registry, "remote/password", generic().file("/etc/x", secret).drop("/etc/x").build())
        right = f"redis://:{secret}@127.0.0.1:{server.port}/0"
        wrong = f"redis://:{secret}-wrong@127.0.0.1:{server.port}/0"
        report = tmp_path / "report.json"
        code, out, err = cli(image.ref, "--cache-url", right, "-o", f"json={report}")
        assert code == 0 and err == ""
        assert names(server, "layer", image.layers[0])  # the password worked
        before = blob_gets(registry, image.repo, image.layers)
        code, out, err = cli(image.ref, "--cache-url", wrong, "-o", f"json={report}")
        assert code == 0 and err.count("\n") == 1
        assert f"shared cache redis://***@127.0.0.1:{server.port}/0 unavailable" in err
        assert blob_gets(registry, image.repo, image.layers) == before + 1
        code, _, none = cli(image.ref, "--cache-url", f"redis://127.0.0.1:{server.port}/0")
        assert code == 0 and "unavailable" in none and none.count("\n") == 1
        code, _, usage = cli(image.ref, "--cache-url", f"http://:{secret}@127.0.0.1:1/")
        assert code == 2 and usage.count("\n") == 1 and "scheme" in usage
        for text in (out, err, usage, report.read_text()):
            assert secret not in text
    finally:
        server.stop()


def test_a_bad_scheme_or_key_is_a_usage_error(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = cli("oci:nowhere", "--cache-url", "http://127.0.0.1:1/")
    assert code == 2 and err.startswith("ociboot: error: cache URL http://127.0.0.1:1/: the scheme must be")
    for value, why in (("ab" * 16, "holds 16 bytes"), ("not a key!", "neither hex nor base64")):
        monkeypatch.setenv(KEY_VARIABLE, value)
        code, _, err = cli("oci:nowhere", "--cache-url", redis_server.url)
        assert code == 2 and err.count("\n") == 1 and why in err


# --- single flight across processes ---------------------------------------------------------------


def test_concurrent_processes_fetch_each_blob_once(
    registry: RegistryServer, redis_server: RedisServer, key: bytes, tmp_path: Path
) -> None:
    # A layer of 8 MiB of noise: its fetch and index take long enough for the two to meet.
    image = push(registry, "remote/together", generic().file("/opt/noise", os.urandom(8 << 20)).build())
    env = {KEY_VARIABLE: key.hex(), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    both = [ociboot(image.ref, "--cache-url", redis_server.url, env=env) for _ in range(2)]
    for process in both:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0 and err == ""
    assert [blob_gets(registry, image.repo, [layer]) for layer in image.layers] == [1]


def test_a_waiter_takes_the_holders_entry(redis_server: RedisServer, key: bytes) -> None:
    # Two RemoteCaches are two processes' connections: the second waits for the first's build.
    first, second = RemoteCache(redis_server.url, key), RemoteCache(redis_server.url, key)
    name = first.name("layer", "sha256:" + os.urandom(32).hex(), "k")
    got: list[bytes | None] = []
    with first.building(name, 1 << 20) as found:
        assert found is None  # ours to build
        waiter = threading.Thread(target=lambda: got.append(_wait(second, name)))
        waiter.start()
        time.sleep(0.3)
        assert got == []  # still waiting: the lock is held
        first.put(name, b"the index", 1 << 20)
    waiter.join(timeout=30)
    assert got == [b"the index"]
    assert redis_server.client().exists(f"{name}:lock") == 0  # released by its holder


def _wait(remote: RemoteCache, name: str) -> bytes | None:
    with remote.building(name, 1 << 20) as found:
        return found


def test_a_dead_holders_lock_expires_and_is_not_released_by_another(
    redis_server: RedisServer, key: bytes
) -> None:
    remote = RemoteCache(redis_server.url, key)
    name = remote.name("layer", "sha256:" + os.urandom(32).hex(), "k")
    client = redis_server.client()
    dead = sealed_lock(key, f"{name}:lock", time.time())
    client.set(f"{name}:lock", dead, px=300)  # a holder of the run that died before releasing
    with remote.building(name, 1 << 20) as found:
        assert found is None  # the lock expired: this process builds
        assert client.get(f"{name}:lock") not in (None, dead.encode())
        assert 0 < client.pttl(f"{name}:lock") <= BUILD_LOCK_SECONDS * 1000
        client.set(f"{name}:lock", "the next holder")  # ours expired meanwhile, another took it
    assert client.get(f"{name}:lock") == b"the next holder"  # ours is not theirs to release


def test_the_url_and_key_are_not_in_the_repr(key: bytes) -> None:
    remote = RemoteCache("redis://:hunter2@127.0.0.1:1/0", key)
    assert "hunter2" not in repr(remote) and key.hex() not in repr(remote)
    assert remote.url == "redis://:hunter2@127.0.0.1:1/0" and remote.key == key


def test_a_value_over_the_cap_is_refused_unread(redis_server: RedisServer, key: bytes) -> None:
    remote = RemoteCache(redis_server.url, key)
    name = remote.name("layer", "sha256:" + os.urandom(32).hex(), "k")
    client = redis_server.client()
    client.set(name, sealed(key, name, os.urandom(4 << 20)))

    def sent() -> int:
        return int(client.info("stats")["total_net_output_bytes"])

    before = sent()
    assert remote.get(name, 1 << 20) is None
    assert sent() - before < 64 << 10  # a few replies, not the value nor the cap's worth of it
    assert remote.get(name, 4 << 20) is not None  # the same value, under a cap it fits


def _serving(
    serve: Callable[[socket.socket], None],
) -> tuple[socket.socket, str, threading.Thread]:
    """A listener on a free loopback port, its redis:// URL, and `serve(listener)` on a thread."""
    listener = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=serve, args=(listener,), daemon=True)
    thread.start()
    return listener, f"redis://127.0.0.1:{listener.getsockname()[1]}/0", thread


class Impostor:
    """A hostile server at a redis:// URL: to whatever the client sends first it answers one bulk
    reply announcing `announced` bytes, then sends `body` bytes of it in `chunk`s, `pause` apart,
    until the client hangs up; `sent` is how many bytes of it the client let through."""

    def __init__(self, announced: int, body: int, chunk: int, pause: float) -> None:
        self.announced, self.body, self.chunk, self.pause = announced, body, chunk, pause
        self.sent = 0
        self.listener, self.url, self.thread = _serving(self._serve)

    def _serve(self, listener: socket.socket) -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(1 << 16)
            try:
                conn.sendall(f"${self.announced}\r\n".encode())
                block = b"x" * self.chunk
                while self.sent < self.body:
                    conn.sendall(block)
                    self.sent += len(block)
                    time.sleep(self.pause)
            except OSError:  # the client hung up: what it let through is counted
                pass

    def close(self) -> int:
        self.thread.join(timeout=120)
        self.listener.close()
        return self.sent


def test_an_impostor_announcing_a_huge_reply_is_cut_off(key: bytes) -> None:
    # 256 MiB announced, 64 MiB of it sent as fast as the client reads: redis-py alone reads all.
    impostor = Impostor(256 << 20, 64 << 20, 1 << 20, 0)
    warnings: list[str] = []
    remote = RemoteCache(impostor.url, key, warn=warnings.append)
    assert remote.get(remote.name("layer", "sha256:" + "0" * 64, "k"), 1 << 20) is None
    sent = impostor.close()
    # The reply cap, plus what the two kernels' socket buffers held when the client hung up.
    assert sent < 32 << 20
    assert len(warnings) == 1 and "longer than" in warnings[0] and not remote.available


def test_an_impostor_trickling_a_reply_is_given_up_on(key: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote_module, "CALL_TIMEOUT_SECONDS", 0.5)
    # A byte every 50 ms: each within the socket timeout, so only a deadline per reply ends it.
    impostor = Impostor(1000, 400, 1, 0.05)
    warnings: list[str] = []
    remote = RemoteCache(impostor.url, key, warn=warnings.append)
    assert remote.get(remote.name("layer", "sha256:" + "0" * 64, "k"), 1 << 20) is None
    assert impostor.close() < 200
    assert len(warnings) == 1 and "unavailable" in warnings[0] and not remote.available


@pytest.mark.parametrize("mark", ["/", "?", "#"])
def test_a_password_with_a_url_delimiter_is_never_shown(key: bytes, mark: str) -> None:
    # Generated passwords hold such characters; unescaped, a URL parser ends the host part there.
    secret = f"s3cret{mark}" + os.urandom(6).hex()
    code, out, err = cli("oci:nowhere", "--cache-url", f"redis://:{secret}@127.0.0.1:6379/0")
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("ociboot: error: cache URL redis://***@127.0.0.1:6379/0: ")
    assert "percent-encode" in err
    for piece in secret.split(mark):
        assert piece not in out + err


class Dribbler:
    """A hostile server speaking RESP: a value of `size` bytes by STRLEN, yet one byte of it per
    GETRANGE, however many were asked for; `getranges` counts what it was asked."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.getranges = 0
        self.listener, self.url, self.thread = _serving(self._serve)

    def _serve(self, listener: socket.socket) -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as commands:
            while header := commands.readline():
                words = []
                for _ in range(int(header[1:])):
                    length = int(commands.readline()[1:])
                    words.append(commands.read(length + 2)[:-2].upper())
                if words[0] == b"STRLEN":
                    conn.sendall(b":%d\r\n" % self.size)
                elif words[0] == b"GETRANGE":
                    self.getranges += 1
                    conn.sendall(b"$1\r\nx\r\n")
                elif words[0] == b"HELLO":
                    conn.sendall(b"-ERR unknown command\r\n")
                else:
                    conn.sendall(b"+OK\r\n")

    def close(self) -> int:
        self.listener.close()
        return self.getranges


def test_a_server_dribbling_a_value_costs_one_read_not_one_per_byte(key: bytes) -> None:
    dribbler = Dribbler(4000)
    remote = RemoteCache(dribbler.url, key, warn=pytest.fail)
    assert remote.get(remote.name("layer", "sha256:" + "0" * 64, "k"), 1 << 20) is None
    assert dribbler.close() == 1  # a short piece is a value that changed: a miss


@pytest.mark.parametrize("sealing", ["not sealed", "sealed long ago"])
def test_a_lock_not_sealed_with_the_key_delays_nobody(
    redis_server: RedisServer, key: bytes, sealing: str
) -> None:
    # Anyone who can write in Redis can set a lock, with no expiry, on every layer it sees named,
    # or set again a sealed one it saw there (having deleted the entry built under it).
    remote = RemoteCache(redis_server.url, key)
    name = remote.name("layer", "sha256:" + os.urandom(32).hex(), "k")
    lock = f"{name}:lock"
    planted = {
        "not sealed": f"{int(time.time()):012d}" + "e" * 20 + "0" * 64,
        "sealed long ago": sealed_lock(key, lock, time.time() - 2 * BUILD_LOCK_SECONDS),
    }[sealing]
    client = redis_server.client()
    client.set(lock, planted)

    def looks() -> int:  # STRLENs the server has answered: one per look for the entry
        return int(client.info("commandstats").get("cmdstat_strlen", {}).get("calls", 0))

    before = looks()
    with remote.building(name, 1 << 20) as found:
        assert found is None  # built at once: not one poll for the entry
    assert looks() - before == 1
    assert client.get(lock) == planted.encode()  # not ours to release


def test_the_url_may_come_from_the_environment_out_of_the_process_list(
    registry: RegistryServer, key: bytes, tmp_path: Path
) -> None:
    secret = "s3cret-" + os.urandom(6).hex()
    server = start_redis(tmp_path / "redis", password=secret)
    try:
        image = push(registry, "remote/env-url", generic().file("/etc/env", secret[-6:]).build())
        url = f"redis://:{secret}@127.0.0.1:{server.port}/0"
        proc = ociboot(image.ref, env={"OCIBOOT_CACHE_URL": url, "OCIBOOT_CACHE_KEY": key.hex()})
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert secret not in " ".join(proc.args) + out + err
        assert names(server, "layer", image.layers[0])  # the environment's server was used
    finally:
        server.stop()
