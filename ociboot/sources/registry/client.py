"""RegistryClient: what the registry sources of one run share, held by an explicit object.

Bearer tokens (per realm, service, identity and scope), TLS settings (per --tls-verify and
--cert-dir) and connection pools (per thread, registry and TLS settings) live here and nowhere
else: the pipeline makes one client per run (`pipeline.Options.registry`), so the images of a
batch reuse tokens and connections, and two runs in one process share nothing.

Standard library only at import: HTTP is imported on the first session, so a run that reads
only local archives never loads it.
"""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import RegistryError
from .. import SourceOptions

if TYPE_CHECKING:
    from .transport import Session


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    expires: float


class TokenCache:
    """Bearer tokens per (realm, service, identity, scope)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, ...], _Token] = {}

    def get(self, key: tuple[str, ...]) -> str | None:
        with self._lock:
            token = self._tokens.get(key)
            if token is None or token.expires <= time.monotonic():
                self._tokens.pop(key, None)
                return None
            return token.value

    def put(self, key: tuple[str, ...], value: str, lifetime: float) -> None:
        with self._lock:
            self._tokens[key] = _Token(value, time.monotonic() + lifetime)

    def drop(self, key: tuple[str, ...], value: str) -> None:
        with self._lock:
            if (token := self._tokens.get(key)) is not None and token.value == value:
                del self._tokens[key]


@dataclass(frozen=True, slots=True)
class TLS:
    """How to talk TLS to a registry: verify or not, extra CAs, a client certificate."""

    verify: bool
    context: ssl.SSLContext | None  # system roots plus the cert dir's `*.crt`; None: system roots
    cert: tuple[str, str] | None  # (certificate, key) from the cert dir's `*.cert`/`*.key`

    @classmethod
    def load(cls, options: SourceOptions) -> TLS:
        """From --tls-verify and a containers-certs.d(5) directory (--cert-dir)."""
        if not options.cert_dir:
            return cls(options.tls_verify, None, None)
        directory = Path(options.cert_dir)
        if not directory.is_dir():
            raise RegistryError(f"--cert-dir {directory} is not a directory")
        context = None
        cas = sorted(directory.glob("*.crt"))
        if cas and options.tls_verify:
            context = ssl.create_default_context()
            for ca in cas:
                try:
                    context.load_verify_locations(cafile=str(ca))
                except (ssl.SSLError, OSError) as exc:
                    raise RegistryError(f"cannot load CA certificate {ca}: {exc}") from None
        cert = None
        for client_cert in sorted(directory.glob("*.cert")):
            key = client_cert.with_suffix(".key")
            if not key.is_file():
                raise RegistryError(f"client certificate {client_cert} has no key {key.name} beside it")
            cert = (str(client_cert), str(key))
        return cls(options.tls_verify, context, cert)


class RegistryClient:
    """The shared state of one run's registry access; thread-safe.  Close it (or use it as a
    context manager) to close its connections; a client no one closes closes with the process."""

    def __init__(self) -> None:
        self.tokens = TokenCache()
        self._lock = threading.Lock()
        self._tls: dict[tuple[bool, str | None], TLS] = {}
        self._local = threading.local()  # .sessions: this thread's sessions by registry and TLS
        self._sessions: list[Session] = []

    def tls(self, options: SourceOptions) -> TLS:
        key = (options.tls_verify, options.cert_dir)
        with self._lock:
            tls = self._tls.get(key)
        if tls is None:
            tls = TLS.load(options)  # outside the lock: it reads files
            with self._lock:
                tls = self._tls.setdefault(key, tls)
        return tls

    def session(self, scheme: str, host: str, options: SourceOptions) -> Session:
        """This thread's session for the registry: the sources of a thread that talk to the same
        registry with the same TLS settings share its connections.  Per thread because
        requests does not promise that a session is thread-safe."""
        sessions: dict[tuple[object, ...], Session] = self._local.__dict__.setdefault("sessions", {})
        key = (scheme, host, options.tls_verify, options.cert_dir)
        session = sessions.get(key)
        if session is None:
            from .transport import new_session  # here: local-only runs never import HTTP

            tls = self.tls(options)
            session = sessions[key] = new_session(tls.verify, tls.context, tls.cert)
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
