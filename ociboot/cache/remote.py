"""The shared tier of the cache: entries on a Redis server, so that processes and machines (the
workers of an audit, any number of `check` runs) index each layer once between them.

A Redis server is shared, so the ownership that makes a cache directory trusted (store.py) does
not apply: whoever can reach the server can write any value.  Every value is therefore sealed
with HMAC-SHA256 under a key the run holds (`key_from_env`: OCIBOOT_CACHE_KEY, or a random key
per run, shared only with the run's own workers).  A value whose MAC fails is ignored (a debug
note) and never decoded; one that passes is then decoded and checked exactly as a file of the
cache directory (entry.py, verdict.py and the store's digest, diff_id, media type and size
checks).  The MAC covers the value's name too, so a sealed entry cannot be replayed under
another digest or spec.

Value names: `ociboot:<key id>:<kind>:<digest>:<spec or verdict key>`, the key id a hash of the
key, so that runs under different keys do not read each other's values at all.  Values expire
after ENTRY_TTL_SECONDS, so the random-key entries of past runs do not pile up.

Single flight across processes: before building a missing layer a process takes a lock (SET NX
PX with a random token sealed like a value, released only by its holder, by a compare-and-delete
script); others poll for the entry, at most BUILD_LOCK_SECONDS, after which the lock has expired
and they take it (a holder that died blocks no one for longer), and only while the lock is
sealed with the key (one written by someone without it, with no expiry, delays nobody).  A
build that takes longer than that is duplicated, never waited for without end.

Redis is an optimisation, never an authority: a server that is down, refuses the password,
times out (every call is bounded by CALL_TIMEOUT_SECONDS) or answers something that is not Redis
is one warning, then the run continues with the local cache only.  A value longer than its cap
(STRLEN) is refused unread; otherwise it is read in GETRANGE pieces up to that length, so at
most the cap (plus the MAC) ever crosses the wire even if the value grew meanwhile.  And since
the server itself may be an impostor, every reply is read through a meter (MAX_REPLY_BYTES,
CALL_TIMEOUT_SECONDS for the whole reply), not as long or as slowly as it announces.  The
URL may hold a password: it is shown only as `shown` (password masked) in every message.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import hmac
import logging
import os
import re
import secrets
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping

import redis
from redis._parsers import _RESP2Parser
from redis._parsers.socket import SocketBuffer
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..errors import CacheUrlError

#: The environment variable holding the key of a shared cache reused across runs.
KEY_VARIABLE = "OCIBOOT_CACHE_KEY"
#: The least key length, in bytes (256 bits: the strength of HMAC-SHA256 itself).
MIN_KEY_BYTES = 32
#: URL schemes redis-py connects with: plain TCP, TLS, a Unix socket.
SCHEMES = ("redis", "rediss", "unix")
#: Every Redis call (connect, each write, and each reply however slowly it trickles in) gives up
#: after this long.
CALL_TIMEOUT_SECONDS = 5.0
#: A build lock expires after this long; a process waiting for another's build waits at most this.
BUILD_LOCK_SECONDS = 60
#: Shared values are dropped by Redis after this long (a random key's values are unreadable once
#: its run ends).
ENTRY_TTL_SECONDS = 7 * 24 * 3600
#: The first and the longest pause between two looks at an entry another process is building.
_POLL_FIRST, _POLL_MAX = 0.02, 0.5
_MAC_BYTES = hashlib.sha256().digest_size
#: A value is read in GETRANGE pieces of at most this many bytes.
_PIECE_BYTES = 4 << 20
#: The longest reply read from the server: a GETRANGE piece and its framing.  A server announcing
#: a longer one (whatever command it answers) is cut off there, not read as announced.
MAX_REPLY_BYTES = _PIECE_BYTES + (64 << 10)
# Deletes the lock only if it still holds our token: an expired lock taken by another is theirs.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"

log = logging.getLogger("ociboot.cache")


def key_from_env(env: Mapping[str, str] | None = None) -> bytes:
    """OCIBOOT_CACHE_KEY (hex or base64, at least MIN_KEY_BYTES), or a random key for this run."""
    text = (os.environ if env is None else env).get(KEY_VARIABLE, "").strip()
    if not text:
        return secrets.token_bytes(MIN_KEY_BYTES)
    try:
        key = bytes.fromhex(text)
    except ValueError:
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise CacheUrlError(f"{KEY_VARIABLE} is neither hex nor base64") from None
    if len(key) < MIN_KEY_BYTES:
        raise CacheUrlError(f"{KEY_VARIABLE} holds {len(key)} bytes; it needs at least {MIN_KEY_BYTES}")
    return key


def redact(url: str) -> str:
    """The URL with its userinfo and any `password=` value masked.

    The userinfo is all between `://` and the last `@` (_userinfo), not what a URL parser takes
    it for: a password with an unescaped `/`, `?` or `#` ends a parser's host part early and
    would otherwise be shown whole (a `@` in a query only masks more than needed)."""
    scheme, sep, rest = url.partition("://")
    userinfo = _userinfo(url)
    if userinfo:
        rest = "***" + rest[len(userinfo) :]
    return scheme + sep + _QUERY_PASSWORD.sub("***", rest)


_QUERY_PASSWORD = re.compile(r"(?<=[?&]password=)[^&#]*")


class RemoteCache:
    """Sealed values on one Redis server; thread-safe (redis-py's pool).  `url` (which may hold
    a password) and `key` are what another process needs to open the same shared cache."""

    def __init__(self, url: str, key: bytes, *, warn: Callable[[str], None] | None = None) -> None:
        scheme = url.partition("://")[0].lower()
        if scheme not in SCHEMES:
            raise CacheUrlError(
                f"cache URL {redact(url)}: the scheme must be one of {', '.join(s + '://' for s in SCHEMES)}"
            )
        if any(c in _userinfo(url) for c in "/?#"):  # redis-py would take a piece of it for the host
            raise CacheUrlError(
                f"cache URL {redact(url)}: its password holds a '/', '?' or '#', which a URL"
                " cannot hold unescaped: percent-encode them (%2F, %3F, %23)"
            )
        if len(key) < MIN_KEY_BYTES:
            raise CacheUrlError(f"a shared cache key needs at least {MIN_KEY_BYTES} bytes, not {len(key)}")
        self.url = url
        self.key = key
        self.shown = redact(url)
        self._secrets = [s for s in _url_secrets(url) if s]
        self._warn = warn or log.warning
        self._prefix = f"ociboot:{hmac.new(key, b'key id', 'sha256').hexdigest()[:16]}:"
        self._down = False
        self._lock = threading.Lock()
        try:
            self._redis = redis.Redis.from_url(
                url,
                socket_timeout=CALL_TIMEOUT_SECONDS,
                socket_connect_timeout=CALL_TIMEOUT_SECONDS,
                # A server that is down stays down for the run: no retry multiplies the wait.
                retry=Retry(NoBackoff(), 0),
                retry_on_timeout=False,
                # RESP2 and our parser: every reply bounded in bytes and time (_Metered).
                protocol=2,
                parser_class=_BoundedParser,
            )
        except (ValueError, redis.RedisError) as exc:
            raise CacheUrlError(f"cache URL {self.shown}: {self._clean(exc)}") from None

    def __repr__(self) -> str:
        return f"RemoteCache({self.shown!r})"

    @property
    def available(self) -> bool:
        return not self._down

    def name(self, kind: str, digest: object, key: str) -> str:
        return f"{self._prefix}{kind}:{digest}:{key}"

    # -- values

    def get(self, name: str, limit: int) -> bytes | None:
        """The value stored under `name` if it is at most `limit` bytes and sealed under our key;
        None otherwise (absent, too long, forged, or the server unavailable)."""
        size = self._call(lambda r: r.strlen(name), name)
        if not isinstance(size, int) or not size:
            return None
        if size > limit + _MAC_BYTES:
            log.debug("shared cache value %s ignored: %d bytes, over the %d byte cap", name, size, limit)
            return None
        # In pieces, and only the `size` bytes STRLEN gave: a value replaced meanwhile cannot make
        # the read longer, and mixes of two values fail the MAC.  The pieces keep redis-py's own
        # buffers small (one whole reply costs about three copies of itself).
        got = bytearray()
        while len(got) < size:
            start, end = len(got), min(len(got) + _PIECE_BYTES, size)
            piece = self._call(functools.partial(_getrange, name=name, start=start, end=end - 1), name)
            if not isinstance(piece, bytes) or len(piece) != end - start:
                # A value that shrank meanwhile, or a server dribbling it: either way a miss,
                # after at most size / _PIECE_BYTES calls, never one call per byte.
                return None
            got += piece
        view = memoryview(got)
        if len(got) < _MAC_BYTES or not hmac.compare_digest(
            view[:_MAC_BYTES], self._mac(name, view[_MAC_BYTES:])
        ):
            log.debug("shared cache value %s ignored: not sealed with our key (forged or damaged)", name)
            return None
        return bytes(view[_MAC_BYTES:])

    def put(self, name: str, data: bytes, limit: int) -> bool:
        if len(data) > limit:
            log.debug("shared cache value %s not stored: %d bytes, over the %d cap", name, len(data), limit)
            return False
        sealed = self._mac(name, data) + data
        return bool(self._call(lambda r: r.set(name, sealed, ex=ENTRY_TTL_SECONDS), name))

    @contextlib.contextmanager
    def building(self, name: str, limit: int) -> Iterator[bytes | None]:
        """The entry `name`, once it is there (None: build it).  Without it, this process takes
        the build lock, or waits for the holder's entry (at most BUILD_LOCK_SECONDS); the lock
        is released when the block ends.  A lock is sealed like a value: one not sealed with
        our key (anyone can write one, with no expiry) is not waited for."""
        lock = f"{name}:lock"
        # When it was taken, so that a sealed lock seen in Redis and set again later (after its
        # entry was deleted) is not waited for past its own lifetime.
        token = f"{int(time.time()):012d}{secrets.token_hex(10)}"
        sealed = token + self._mac(lock, token.encode()).hex()
        deadline = time.monotonic() + BUILD_LOCK_SECONDS
        pause = _POLL_FIRST
        held = False
        while not self._down:
            found = self.get(name, limit)
            if found is not None:
                yield found
                return
            ours = functools.partial(_take, lock=lock, value=sealed)
            held = bool(self._call(ours, lock))
            if held or time.monotonic() >= deadline:
                break
            holder = self._call(lambda r: r.get(lock), lock)
            if holder is not None and not self._ours(lock, holder):  # None: released meanwhile
                log.debug("build lock %s ignored: not sealed with our key", lock)
                break
            time.sleep(pause)
            pause = min(pause * 2, _POLL_MAX)
        try:
            yield None
        finally:
            if held:
                self._call(lambda r: r.eval(_RELEASE, 1, lock, sealed), lock)

    def _ours(self, lock: str, value: object) -> bool:
        """Whether a lock's value is a token sealed with our key, taken less than
        BUILD_LOCK_SECONDS ago (building)."""
        if not isinstance(value, bytes) or len(value) != 32 + 2 * _MAC_BYTES:
            return False
        token, mac = value[:32], value[32:]
        if not hmac.compare_digest(mac, self._mac(lock, token).hex().encode()):
            return False
        return abs(time.time() - int(token[:12])) < BUILD_LOCK_SECONDS

    # -- helpers

    def _mac(self, name: str, data: bytes | memoryview) -> bytes:
        h = hmac.new(self.key, name.encode() + b"\0", "sha256")
        h.update(data)
        return h.digest()

    def _call(self, call: Callable[[redis.Redis], object], name: str) -> object:
        """`call`'s answer, or None once the server failed (one warning for the run)."""
        if self._down:
            return None
        try:
            return call(self._redis)
        except redis.ResponseError as exc:
            # The server works but refuses this value (another type under our name): a miss.
            if "NOAUTH" not in str(exc) and "WRONGPASS" not in str(exc):
                log.debug("shared cache value %s ignored: %s", name, self._clean(exc))
                return None
            reason: object = exc
        except Exception as exc:  # whatever a broken or hostile server makes the client raise
            reason = exc
        with self._lock:
            first, self._down = not self._down, True
        if first:
            why = self._clean(reason)
            self._warn(f"shared cache {self.shown} unavailable ({why}); continuing with the local cache only")
        return None

    def _clean(self, exc: object) -> str:
        text = (str(exc) or type(exc).__name__).replace(self.url, self.shown)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


class _ReplyTooLong(redis.ConnectionError):
    pass


class _Metered:
    """The connection's socket as the reply parser reads it: at most MAX_REPLY_BYTES and
    CALL_TIMEOUT_SECONDS per reply, however much a server announces or however slowly it sends
    (a socket timeout alone restarts with every byte)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._timeout = sock.gettimeout()
        self.start()

    def start(self) -> None:
        self._left = MAX_REPLY_BYTES
        self._deadline = time.monotonic() + CALL_TIMEOUT_SECONDS

    def settimeout(self, value: float | None) -> None:
        self._timeout = value
        self._sock.settimeout(value)

    def recv(self, size: int) -> bytes:
        if self._timeout == 0:  # a poll for pending bytes (one read of at most `size`) cannot stall
            return self._sock.recv(size)
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("a Redis reply took longer than the call timeout")
        if self._left <= 0:
            raise _ReplyTooLong(f"a reply longer than {MAX_REPLY_BYTES} bytes")
        self._sock.settimeout(remaining if self._timeout is None else min(self._timeout, remaining))
        data = self._sock.recv(min(size, self._left))
        self._left -= len(data)
        return data

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


class _BoundedParser(_RESP2Parser):
    """redis-py's own RESP2 parser, reading through _Metered; each reply starts a new meter."""

    _meter: _Metered | None = None

    def on_connect(self, connection: redis.Connection) -> None:
        super().on_connect(connection)
        if connection._sock is not None:
            self._meter = _Metered(connection._sock)
            self._buffer = SocketBuffer(self._meter, self.socket_read_size, connection.socket_timeout)

    def read_response(self, *args: object, **kwargs: object) -> object:
        if self._meter is not None:
            self._meter.start()
        return super().read_response(*args, **kwargs)


def _take(client: redis.Redis, *, lock: str, value: str) -> object:
    return client.set(lock, value, nx=True, px=BUILD_LOCK_SECONDS * 1000)


def _getrange(client: redis.Redis, *, name: str, start: int, end: int) -> object:
    return client.getrange(name, start, end)


def _userinfo(url: str) -> str:
    """All between `://` and the last `@` (redact's userinfo); empty without one."""
    _, sep, rest = url.partition("://")
    at = rest.rfind("@")
    # unix:///run/redis@main/sock: a path, not a userinfo
    return rest[:at] if sep and at > 0 and not rest.startswith("/") else ""


def _url_secrets(url: str) -> list[str]:
    """What a message quoting parts of the URL must not show: the userinfo and its password,
    as written and percent-decoded, and `password=` values; longest first."""
    userinfo = _userinfo(url)
    found = [userinfo, userinfo.partition(":")[2]]
    found += _QUERY_PASSWORD.findall(url.partition("://")[2])
    found += [urllib.parse.unquote(text) for text in found]
    return sorted({text for text in found if text}, key=len, reverse=True)
