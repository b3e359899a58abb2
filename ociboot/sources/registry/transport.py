"""HTTP for the registry modules: metered sockets, sessions, reads, and requests' and urllib3's
failures translated into ociboot's errors.  The only importer of requests and urllib3.

Every socket read is metered (SourceOptions: stall floor, per-image deadline): a socket timeout
alone never fires on a registry that trickles one byte a second.
"""

from __future__ import annotations

import contextvars
import http.client
import http.cookiejar
import io
import re
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

import requests
import urllib3
import urllib3.connection
from requests.adapters import HTTPAdapter

from ...errors import RegistryError
from .. import SourceOptions

#: docs/measurements.md: 8 KiB reads of a registry blob cost 1.7x the time of 1 MiB reads.
CHUNK = 1 << 20
MAX_ERROR_BODY = 1 << 20  # containers/image caps error bodies at 1 MiB
#: A stall is retried once per image: a dead connection deserves one new one, a registry that
#: stalls twice is given up on (so a stalled registry costs two stall windows, not `retries`).
STALL_RETRIES = 1
TEMPORARY = frozenset({429, 502, 503, 504})

Response = requests.Response
Session = requests.Session

_QUERY = re.compile(r"(?<=\S)\?[^\s'\")]+")


# --- bounds: stalls and the per-image deadline ------------------------------------------------


class _Stalled(TimeoutError):
    """Raised inside a socket read once its transfer has failed; the transfer holds the reason."""


class Budget:
    """One image's network bounds (SourceOptions), shared by the threads that read its blobs."""

    def __init__(self, options: SourceOptions, image: str) -> None:
        self.options = options
        self.image = image
        self.deadline = time.monotonic() + options.timeout
        self._stalls = 0
        self._lock = threading.Lock()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def expired(self, what: str) -> RegistryError:
        return RegistryError(
            f"{self.image}: gave up on {what}: the image's registry transfers did not finish "
            f"within --timeout {self.options.timeout:g} s"
        )

    def stalled(self, what: str) -> RegistryError:
        with self._lock:
            self._stalls += 1
            again = self._stalls <= STALL_RETRIES
        return RegistryError(f"{self.image}: {what}", temporary=again)

    def sleep(self, seconds: float, what: str) -> None:
        if seconds >= self.left():
            raise self.expired(what)
        time.sleep(seconds)

    def timeouts(self) -> tuple[float, float]:
        """requests' (connect, read) timeouts; reads are metered finer by _MeteredIO."""
        window = self.options.stall_seconds
        return max(min(window, self.left()), 0.001), window


class Transfer:
    """Progress of one HTTP exchange, judged at each socket read of the thread doing it.

    Only time spent waiting on the socket counts: a consumer that takes a minute to parse what
    it got has not stalled the registry.
    """

    def __init__(self, budget: Budget, what: str) -> None:
        if budget.left() <= 0:
            raise budget.expired(what)  # before anything is sent
        self.budget = budget
        self.what = what
        self.failure: RegistryError | None = None
        self._waited = 0.0
        self._moved = 0

    def allowance(self) -> float:
        """How long the next socket read may wait: the rest of this stall window or of the deadline."""
        left = self.budget.left()
        if self.failure is None and left <= 0:
            self.failure = self.budget.expired(self.what)
        if self.failure is not None:
            raise _Stalled()
        return max(min(self.budget.options.stall_seconds - self._waited, left), 0.001)

    def account(self, waited: float, moved: int) -> None:
        # Each stall_bytes must arrive within stall_seconds of waiting after the previous ones: a
        # registry that stops mid-stream is caught one window after its last bytes, not two.
        self._waited += waited
        self._moved += moved
        options = self.budget.options
        if self._moved >= options.stall_bytes:
            self._waited, self._moved = 0.0, 0
        elif self._waited >= options.stall_seconds:
            self.failure = self.budget.stalled(
                f"{self.what} stalled: {self._moved} bytes in {self._waited:.0f} s (less than "
                f"{options.stall_bytes} bytes per {options.stall_seconds:g} s; see --stall-timeout)"
            )
            raise _Stalled()


#: The exchange the current thread's socket reads belong to: set around each request and read by
#: _MeteredIO deep inside http.client, where nothing of ours can be passed down.
_ACTIVE: contextvars.ContextVar[Transfer | None] = contextvars.ContextVar("transfer", default=None)


@contextmanager
def metered(transfer: Transfer) -> Iterator[Transfer]:
    """Socket reads in the body belong to `transfer`; once it failed, any error becomes its failure
    (urllib3 and requests wrap our _Stalled in exceptions of their own)."""
    outer = _ACTIVE.set(transfer)
    try:
        yield transfer
    except Exception:
        if transfer.failure is not None:
            raise transfer.failure from None
        raise
    finally:
        _ACTIVE.reset(outer)


class _MeteredIO(io.RawIOBase):
    """A response's socket reads, each bounded by its transfer's stall window and deadline."""

    def __init__(self, sock: Any, plain: IO[bytes]) -> None:
        super().__init__()
        self._sock = sock
        self._plain = plain  # makefile()'s reader: it holds the socket open until the response closes
        self._fallback = sock.gettimeout()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        transfer = _ACTIVE.get()
        if transfer is None:
            self._sock.settimeout(self._fallback)
            return int(self._sock.recv_into(buffer))
        while True:
            self._sock.settimeout(transfer.allowance())
            started = time.monotonic()
            try:
                count = int(self._sock.recv_into(buffer))
            except TimeoutError:
                transfer.account(time.monotonic() - started, 0)
                continue
            transfer.account(time.monotonic() - started, count)
            return count

    def close(self) -> None:
        if not self.closed:
            self._plain.close()
        super().close()


class _MeteredResponse(http.client.HTTPResponse):
    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        self.fp = io.BufferedReader(_MeteredIO(sock, self.fp))


class _HTTPConnection(urllib3.connection.HTTPConnection):
    response_class = _MeteredResponse


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    # The TLS handshake reads below the metered reads, but CPython bounds a whole handshake by
    # the socket timeout (the connect timeout: the stall window or what is left of the deadline).
    response_class = _MeteredResponse


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_METERED_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _Adapter(HTTPAdapter):
    """Metered connections; verified against system roots plus a cert dir's CAs
    (containers-certs.d(5): `*.crt`) when there is a context."""

    def __init__(self, context: ssl.SSLContext | None) -> None:
        self._context = context
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._context is not None:
            kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _METERED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools carry their own connection class
            manager.pool_classes_by_scheme = _METERED_POOLS
        return manager


def new_session(verify: bool, context: ssl.SSLContext | None, cert: tuple[str, str] | None) -> Session:
    """A session whose connections are metered, with the given TLS settings and no cookies
    (some registries take a cookie as a sign of a browser and start CSRF checks)."""
    session = requests.Session()
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    adapter = _Adapter(context)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.verify = verify
    session.cert = cert
    return session


# --- exchanges -------------------------------------------------------------------------------


@contextmanager
def _unverified_quietly(verify: bool) -> Iterator[None]:
    """--no-tls-verify was the user's choice: urllib3's warning about each such request is not
    shown, for this request only (the process's warning filters are left as they were).
    catch_warnings is process-wide while it lasts; two unverified requests overlapping in two
    threads can at worst leave this one filter in place, which is what urllib3.disable_warnings
    did for good."""
    if verify:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        yield


def send(
    session: Session,
    transfer: Transfer,
    method: str,
    url: str,
    *,
    host: str,
    scrub: Callable[[str], str],
    **kwargs: Any,
) -> Response:
    """One request, streamed, its connect and reads bounded by `transfer`; a failure to get an
    answer is a RegistryError (`temporary` when another attempt may cure it)."""
    kwargs.setdefault("timeout", transfer.budget.timeouts())
    # Per request: requests lets $REQUESTS_CA_BUNDLE override a session's verify=False.
    verify = bool(session.verify)
    try:
        with metered(transfer), _unverified_quietly(verify):
            return session.request(method, url, stream=True, verify=verify, **kwargs)
    except requests.RequestException as exc:
        raise _transport_error(exc, host, transfer.budget, scrub) from None


def read(response: Response, size: int, what: str, *, decode: bool = False) -> bytes:
    """Up to `size` bytes of the body (b"" at its end); a failed read is a temporary RegistryError.
    `decode`: undo a Content-Encoding (error bodies and manifests, never blobs: their digest is
    over the stored bytes)."""
    try:
        return bytes(response.raw.read(size, decode_content=decode))
    except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
        raise RegistryError(f"reading {what} failed: {exc}", temporary=True) from None


def read_capped(response: Response, cap: int, what: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < cap and (chunk := read(response, min(CHUNK, cap - size), what, decode=True)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _transport_error(
    exc: requests.RequestException, host: str, budget: Budget, scrub: Callable[[str], str]
) -> RegistryError:
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        reason = getattr(seen, "reason", None)  # urllib3 wraps the cause in MaxRetryError.reason
        seen = reason if isinstance(reason, BaseException) else seen.__cause__ or seen.__context__
    text = " ".join(str(e) for e in chain)
    cause = _QUERY.sub("?***", scrub(str(chain[-1])))  # a redirect's URL may be pre-signed
    if isinstance(exc, requests.exceptions.SSLError):
        hint = "give the CA with --cert-dir or use --no-tls-verify"
        return RegistryError(f"TLS error talking to {host}: {cause}; {hint}")
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "Connection refused" in text:
        return RegistryError(f"cannot connect to {host}: connection refused")
    if any(isinstance(e, urllib3.exceptions.NameResolutionError) for e in chain):
        return RegistryError(f"cannot connect to {host}: name does not resolve")
    if isinstance(exc, requests.Timeout):
        # What the metered reads did not catch: a connection that did not open in time.
        if budget.left() <= 0:
            return budget.expired(f"connecting to {host}")
        window = budget.options.stall_seconds
        return budget.stalled(f"{host} did not answer in {window:g} s (see --stall-timeout)")
    return RegistryError(f"connection to {host} failed: {cause}", temporary=True)
