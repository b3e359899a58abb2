"""docker:// — manifests and blobs from a registry (OCI distribution-spec v1.1).

oras-py supplies the HTTP session and request plumbing; ociboot owns the rest, because oras's
defaults are wrong for an inspector (field-notes "oras-py 0.2.43"):
- we call the undecorated `do_request` (its retry decorator retries anything for ~131 s) and run
  our own bounded retries: 429 (honouring Retry-After), 502/503/504, resets and timeouts only;
- we own auth: tokens are cached per scope (oras keeps one for every repository and refreshes
  only on 403, while distribution answers 401 for a new scope and for an expired token);
- we keep raw manifest bytes and never verify here (image.py and layer.py do, once);
- a blob stream resumes with `Range` when the connection drops (spec.md: registries SHOULD
  support Range on blob GETs; we check 206 and Content-Range and fall back to skipping);
- every socket read is metered (SourceOptions: stall floor, per-image deadline): a socket
  timeout alone never fires on a registry that trickles one byte a second;
- token requests follow no redirect to another origin and never go to a plain-HTTP realm
  unless the registry itself is plain HTTP by the user's choice.
This module and auth.py are the only importers of oras, requests and urllib3.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import ipaddress
import json
import re
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

import oras.provider  # first: `import oras.decorator` alone fails on a circular import
import requests
import urllib3
import urllib3.connection
from requests.adapters import HTTPAdapter

from ..digest import Digest
from ..errors import AuthenticationError, ImageNotFound, InvalidManifest, RegistryError
from ..mediatypes import MANIFEST_ACCEPT
from ..ref import ImageRef
from ..spec import MAX_MANIFEST_BYTES, Descriptor
from . import RawManifest, SourceOptions
from .auth import Challenge, Credentials, find_credentials, parse_challenge

CHUNK = 1 << 20  # field-notes: 8 KiB reads cost 1.7x against 1 MiB
MAX_ERROR_BODY = 1 << 20  # containers/image caps error bodies at 1 MiB
MAX_RETRY_AFTER = 10.0
#: Redirects a token request follows, all within the realm's own origin.
MAX_TOKEN_REDIRECTS = 3
#: A stall is retried once per image: a dead connection deserves one new one, a registry that
#: stalls twice is given up on (so a stalled registry costs two stall windows, not `retries`).
STALL_RETRIES = 1
REDIRECTS = frozenset({301, 302, 303, 307, 308})
TEMPORARY = frozenset({429, 502, 503, 504})
NOT_FOUND_CODES = frozenset({"MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "NAME_UNKNOWN"})
_ACCEPT = ", ".join(MANIFEST_ACCEPT)
_DO_REQUEST = oras.provider.Registry.do_request.__wrapped__


class _Challenged(Exception):
    """Raised by our auth backend inside oras's do_request so the 401/403 comes back to us."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class _OwnAuth:
    """Stands where oras expects an auth backend; it hands every challenge back to RegistrySource."""

    token = None

    def authenticate_request(self, response: requests.Response, headers: Any, refresh: bool = False) -> Any:
        raise _Challenged(response)


# --- bounds: stalls and the per-image deadline ------------------------------------------------


class _Stalled(TimeoutError):
    """Raised inside a socket read once its transfer has failed; the transfer holds the reason."""


class _Budget:
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


class _Transfer:
    """Progress of one HTTP exchange, judged at each socket read of the thread doing it.

    Only time spent waiting on the socket counts: a consumer that takes a minute to parse what
    it got has not stalled the registry.
    """

    def __init__(self, budget: _Budget, what: str) -> None:
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


_ACTIVE = threading.local()  # .transfer: the exchange this thread's socket reads belong to


@contextmanager
def _metered(transfer: _Transfer) -> Iterator[_Transfer]:
    """Socket reads in the body belong to `transfer`; once it failed, any error becomes its failure
    (urllib3 and requests wrap our _Stalled in exceptions of their own)."""
    outer = getattr(_ACTIVE, "transfer", None)
    _ACTIVE.transfer = transfer
    try:
        yield transfer
    except Exception:
        if transfer.failure is not None:
            raise transfer.failure from None
        raise
    finally:
        _ACTIVE.transfer = outer


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
        transfer: _Transfer | None = getattr(_ACTIVE, "transfer", None)
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


class _MeteredSession(requests.Session):
    """oras's do_request passes no timeout: connect and read timeouts come from the transfer."""

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        transfer: _Transfer | None = getattr(_ACTIVE, "transfer", None)
        window = SourceOptions().stall_seconds
        kwargs.setdefault("timeout", transfer.budget.timeouts() if transfer else (window, window))
        return super().request(method, url, *args, **kwargs)


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


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _display(ref: ImageRef) -> str:
    text = f"{ref.registry}/{ref.repository}"
    if ref.tag:
        text += f":{ref.tag}"
    if ref.digest:
        text += f"@{ref.digest}"
    return text


# --- tokens ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    expires: float


class _TokenCache:
    """Bearer tokens per (realm, service, identity, scope), shared by every source in the process."""

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


TOKENS = _TokenCache()


def _identity(creds: Credentials | None) -> str:
    if creds is None:
        return ""
    secret = f"{creds.username}\0{creds.password}\0{creds.identity_token or ''}"
    return hashlib.sha256(secret.encode()).hexdigest()


# --- the source ------------------------------------------------------------------------------


#: Per thread: (scheme, host, TLS settings, timeout) -> an oras Registry with its session.
_SHARED = threading.local()


class RegistrySource:
    def __init__(self, ref: ImageRef, options: SourceOptions) -> None:
        self._ref = ref
        self._options = options
        self.host = ref.api_host
        plain = options.plain_http if options.plain_http is not None else is_loopback(self.host)
        self.scheme = "http" if plain else "https"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._creds: Credentials | None = None
        self._creds_loaded = False
        self._basic = False  # the registry asked for Basic: send it pre-emptively from now on
        self._bearer: tuple[str, ...] | None = None  # token cache key once a Bearer challenge came
        self._verify, self._adapter, self._cert = self._tls_settings()
        self._budget = _Budget(options, _display(ref))

    @property
    def ref(self) -> ImageRef:
        return self._ref

    def _url(self, kind: str, reference: str) -> str:
        return f"{self.scheme}://{self.host}/v2/{self._ref.repository}/{kind}/{reference}"

    # --- ImageSource -------------------------------------------------------------------------

    def get_manifest(self, digest: Digest | None = None) -> RawManifest:
        ref = self._ref
        reference = str(digest or ref.digest or "") or ref.tag or "latest"
        what = f"manifest {reference} of {self.host}/{ref.repository}"
        attempt = 0
        while True:
            response, transfer = self._get(self._url("manifests", reference), {"Accept": _ACCEPT}, what)
            try:
                length = response.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > MAX_MANIFEST_BYTES:
                    raise InvalidManifest(f"{what} is {length} bytes, over the {MAX_MANIFEST_BYTES} byte cap")
                with _metered(transfer):
                    data = self._read_capped(response, MAX_MANIFEST_BYTES + 1, what)
                break
            except RegistryError as error:
                # The connection dropped mid-body: the GET is idempotent, so ask again (bounded).
                if not error.temporary or attempt >= self._options.retries:
                    raise
                attempt += 1
            finally:
                response.close()
        if len(data) > MAX_MANIFEST_BYTES:
            raise InvalidManifest(f"{what} is over the {MAX_MANIFEST_BYTES} byte cap")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip() or None
        claimed = digest or ref.digest
        if claimed is None and (header := response.headers.get("Docker-Content-Digest")):
            try:
                claimed = Digest.parse(header.strip())
            except InvalidManifest:
                raise InvalidManifest(f"{what}: invalid Docker-Content-Digest {header!r}") from None
        return RawManifest(data, media_type, claimed, where=f"{_display(ref)} ({what})")

    def open_blob(self, descriptor: Descriptor) -> io.BufferedReader:
        return io.BufferedReader(_BlobStream(self, descriptor), buffer_size=CHUNK)

    def close(self) -> None:
        # Clients are shared by every source of this thread that talks to the same registry
        # with the same transport settings (a batch of checks reuses its connections): they
        # stay open for the next source, and close with the process.
        self._local = threading.local()

    # --- transport ---------------------------------------------------------------------------

    def _tls_settings(self) -> tuple[bool, _Adapter, tuple[str, str] | None]:
        options = self._options
        if not options.tls_verify:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        if not options.cert_dir:
            return options.tls_verify, _Adapter(None), None
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
        return options.tls_verify, _Adapter(context), cert

    def _client(self) -> oras.provider.Registry:
        """One oras Registry (and requests session) per thread and registry: oras's are not
        thread-safe, and sources of the same thread share connections to the same registry."""
        client = getattr(self._local, "client", None)
        if client is None:
            shared: dict[tuple[object, ...], oras.provider.Registry] = _SHARED.__dict__.setdefault(
                "clients", {}
            )
            key = (self.scheme, self.host, self._options.tls_verify, self._options.cert_dir)
            client = shared.get(key)
        if client is None:
            client = oras.provider.Registry(
                hostname=self.host, insecure=self.scheme == "http", tls_verify=self._verify
            )
            session = _MeteredSession()
            session.cookies = client.session.cookies  # oras's no-cookies policy
            session.mount("http://", self._adapter)
            session.mount("https://", self._adapter)
            session.cert = self._cert
            client.session = session
            client.auth = _OwnAuth()
            shared[key] = client
        self._local.client = client
        return client

    def _get(
        self, url: str, headers: Mapping[str, str], what: str, *, allow: frozenset[int] = frozenset({200})
    ) -> tuple[requests.Response, _Transfer]:
        """GET with our auth and bounded retries: a response with a status in `allow` and the
        transfer its body's reads belong to, else an error."""
        attempt = auth_rounds = 0
        while True:
            sent = {**headers, **self._auth_header()}  # a fresh dict: oras mutates what it is given
            transfer = _Transfer(self._budget, f"{what} from {self.host}")
            try:
                with _metered(transfer):
                    response: requests.Response = _DO_REQUEST(
                        self._client(), url, "GET", headers=sent, stream=True
                    )
            except _Challenged as challenged:
                challenged.response.close()
                if auth_rounds >= 2:
                    raise self._auth_error(challenged.response) from None
                auth_rounds += 1
                self._answer(challenged.response, sent.get("Authorization"))
                continue
            except requests.RequestException as exc:
                error = self._transport_error(exc)
            except RegistryError as exc:  # stalled, or out of time
                error = exc
            else:
                if response.status_code in allow:
                    return response, transfer
                if response.status_code not in TEMPORARY or attempt >= self._options.retries:
                    raise self._status_error(response, what, transfer)
                attempt += 1
                wait = self._retry_after(response, attempt)
                response.close()
                self._budget.sleep(wait, what)
                continue
            if not error.temporary or attempt >= self._options.retries:
                raise error from None
            attempt += 1
            self._budget.sleep(min(0.25 * 2**attempt, 2.0), what)

    def _retry_after(self, response: requests.Response, attempt: int) -> float:
        value = response.headers.get("Retry-After", "").strip()
        if value.isdigit():  # RFC 9110 section 10.2.3; the HTTP-date form falls back to backoff
            return min(float(value), MAX_RETRY_AFTER)
        return min(0.25 * 2**attempt, 2.0)

    def _transport_error(self, exc: requests.RequestException) -> RegistryError:
        chain: list[BaseException] = []
        seen: BaseException | None = exc
        while seen is not None and len(chain) < 10:
            chain.append(seen)
            reason = getattr(seen, "reason", None)  # urllib3 wraps the cause in MaxRetryError.reason
            seen = reason if isinstance(reason, BaseException) else seen.__cause__ or seen.__context__
        text = " ".join(str(e) for e in chain)
        cause = _QUERY.sub("?***", self._scrub(str(chain[-1])))  # a redirect's URL may be pre-signed
        if isinstance(exc, requests.exceptions.SSLError):
            hint = "give the CA with --cert-dir or use --no-tls-verify"
            return RegistryError(f"TLS error talking to {self.host}: {cause}; {hint}")
        if any(isinstance(e, ConnectionRefusedError) for e in chain) or "Connection refused" in text:
            return RegistryError(f"cannot connect to {self.host}: connection refused")
        if any(isinstance(e, urllib3.exceptions.NameResolutionError) for e in chain):
            return RegistryError(f"cannot connect to {self.host}: name does not resolve")
        if isinstance(exc, requests.Timeout):
            # What the metered reads did not catch: a connection that did not open in time.
            if self._budget.left() <= 0:
                return self._budget.expired(f"connecting to {self.host}")
            window = self._budget.options.stall_seconds
            return self._budget.stalled(f"{self.host} did not answer in {window:g} s (see --stall-timeout)")
        return RegistryError(f"connection to {self.host} failed: {cause}", temporary=True)

    def _status_error(self, response: requests.Response, what: str, transfer: _Transfer) -> Exception:
        status = response.status_code
        try:
            with _metered(transfer):
                body = self._read_capped(response, MAX_ERROR_BODY, what)
        except RegistryError:
            body = b""
        finally:
            response.close()
        codes, messages = _error_codes(body)
        messages = tuple(self._scrub(m) for m in messages)
        if status in (401, 403):
            return self._auth_error(response)
        if status == 404 or NOT_FOUND_CODES.intersection(codes):
            return ImageNotFound(f"{what} not found ({', '.join(codes) or status}): {_display(self._ref)}")
        detail = "; ".join(messages) or response.reason or ""
        return RegistryError(
            f"{self.host} answered {status} for {what}: {detail}".rstrip(": "),
            status=status,
            codes=codes,
            temporary=status in TEMPORARY,
        )

    @staticmethod
    def _read_capped(response: requests.Response, cap: int, what: str) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            while size < cap and (chunk := response.raw.read(min(CHUNK, cap - size), decode_content=True)):
                chunks.append(chunk)
                size += len(chunk)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise RegistryError(f"reading {what} failed: {exc}", temporary=True) from None
        return b"".join(chunks)

    # --- auth --------------------------------------------------------------------------------

    def _credentials(self) -> Credentials | None:
        with self._lock:
            if not self._creds_loaded:
                self._creds = find_credentials(self._ref.registry, self._options, self._ref.repository)
                self._creds_loaded = True
            return self._creds

    def _auth_header(self) -> dict[str, str]:
        if self._bearer is not None and (token := TOKENS.get(self._bearer)):
            return {"Authorization": f"Bearer {token}"}
        if self._basic and (creds := self._credentials()) is not None:
            pair = f"{creds.username}:{creds.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        return {}

    def _answer(self, response: requests.Response, sent: str | None) -> None:
        """Act on a 401 (docker token auth spec, RFC 7617): fetch or refresh a token, or go Basic."""
        if response.status_code == 403:
            raise self._auth_error(response)
        challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        creds = self._credentials()
        if challenge is not None and challenge.scheme == "bearer" and challenge.params.get("realm"):
            self._fetch_token(challenge, creds, sent)
            return
        if challenge is not None and challenge.scheme == "basic" and creds is not None:
            if self._basic and sent is not None:
                raise self._auth_error(response)  # we sent them: refused
            self._basic = True
            return
        raise self._auth_error(response)

    def _fetch_token(self, challenge: Challenge, creds: Credentials | None, sent: str | None) -> None:
        realm, service = challenge.params["realm"], challenge.params.get("service", "")
        self._check_realm(realm)
        scope = f"repository:{self._ref.repository}:pull"
        key = (realm, service, _identity(creds), scope)
        if sent is not None and sent.startswith("Bearer "):
            TOKENS.drop(key, sent[7:])  # rejected: expired, or lacking this scope
        elif TOKENS.get(key) is not None:
            self._bearer = key  # another source already holds a token for this scope
            return
        scopes = [scope]
        if (asked := challenge.params.get("scope")) and asked != scope:
            scopes.append(asked)
        transfer = _Transfer(self._budget, f"token from {realm}")
        try:
            with _metered(transfer), self._token_request(realm, creds, service, scopes) as answer:
                if answer.status_code in (401, 403):
                    raise self._auth_error(answer, token_realm=realm)
                if answer.status_code != 200:
                    raise RegistryError(
                        f"token service {realm} answered {answer.status_code} for {scope}",
                        status=answer.status_code,
                        temporary=answer.status_code in TEMPORARY,
                    )
                body = self._read_capped(answer, MAX_ERROR_BODY, f"token from {realm}")
        except requests.RequestException as exc:
            raise self._transport_error(exc) from None
        try:
            payload = json.loads(body)
            token = payload.get("token") or payload.get("access_token")
            lifetime = float(payload.get("expires_in") or 60)  # token spec default: 60 s
        except (ValueError, TypeError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise AuthenticationError(f"token service {realm} gave no token for {scope}")
        # Renew a little early so a token does not expire between our check and the registry's.
        TOKENS.put(key, token, max(lifetime - 10, 1))
        self._bearer = key

    def _check_realm(self, realm: str) -> None:
        """A token request carries credentials: never in clear text unless the user chose plain
        HTTP for the registry itself (--plain-http, or a loopback host)."""
        scheme = urlsplit(realm).scheme.lower()
        if scheme == "https" or (scheme == "http" and self.scheme == "http"):
            return
        if scheme == "http":
            raise AuthenticationError(
                f"{self.host} (HTTPS) names a plain-HTTP token realm {realm}: refusing to send "
                "credentials in clear text"
            )
        raise AuthenticationError(f"{self.host} names a token realm that is not an http(s) URL: {realm!r}")

    def _token_request(
        self, realm: str, creds: Credentials | None, service: str, scopes: list[str]
    ) -> requests.Response:
        """The token endpoint's answer.  Redirects are followed only within the realm's origin
        (scheme, host, port): requests would re-send a POSTed refresh token to any host on 307."""
        session = self._client().session
        options: dict[str, Any] = {"verify": self._verify, "stream": True, "allow_redirects": False}
        form: dict[str, str] | None = None
        if creds is not None and creds.identity_token:
            # OAuth2 refresh-token grant (docker token spec, oauth.md).
            form = {
                "grant_type": "refresh_token",
                "refresh_token": creds.identity_token,
                "service": service,
                "scope": " ".join(scopes),
                "client_id": "ociboot",
            }
            answer = session.post(realm, data=form, **options)
        else:
            options["auth"] = (creds.username, creds.password) if creds is not None else None
            answer = session.get(realm, params={"service": service, "scope": scopes}, **options)
        for _ in range(MAX_TOKEN_REDIRECTS):
            if answer.status_code not in REDIRECTS:
                return answer
            target = urljoin(answer.url, answer.headers.get("Location", ""))
            answer.close()
            if _origin(target) != _origin(realm):
                raise AuthenticationError(
                    f"token service {realm} redirected to {_origin_text(target)}: a token request "
                    "carries credentials and is not sent to another host"
                )
            method = answer.request.method or "GET"
            answer = session.request(method, target, data=form if method == "POST" else None, **options)
        if answer.status_code in REDIRECTS:
            answer.close()
            raise AuthenticationError(f"token service {realm} redirected over {MAX_TOKEN_REDIRECTS} times")
        return answer

    def _scrub(self, text: str) -> str:
        """Remote text with our secrets masked: a hostile registry may echo what we sent it."""
        creds = self._creds
        secrets = []
        if creds is not None:
            pair = f"{creds.username}:{creds.password}".encode()
            secrets += [base64.b64encode(pair).decode(), creds.password, creds.identity_token or ""]
        if self._bearer is not None and (token := TOKENS.get(self._bearer)):
            secrets.append(token)
        for secret in sorted(filter(None, secrets), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def _auth_error(self, response: requests.Response, token_realm: str | None = None) -> AuthenticationError:
        status = self._scrub(f"{response.status_code} {response.reason or ''}".strip())
        creds = self._credentials()
        where = f"from {self.host} for repository {self._ref.repository}"
        if token_realm is not None:
            where = f"from token service {token_realm} for repository {self._ref.repository}"
        if creds is None:
            hint = "no credentials found: check --creds or the authfile"
        else:
            hint = f"credentials from {creds.source or 'the authfile'} were refused or lack access"
        return AuthenticationError(f"{status} {where}: {hint}")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        port = -1
    return scheme, (parts.hostname or "").lower(), port


def _origin_text(url: str) -> str:
    scheme, host, port = _origin(url)
    return f"{scheme}://{host}:{port}"


def _error_codes(body: bytes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Codes and messages of an OCI error body (distribution-spec "Error Codes")."""
    try:
        errors = json.loads(body).get("errors") or []
        codes = tuple(str(e.get("code", "")) for e in errors if isinstance(e, dict) and e.get("code"))
        messages = tuple(
            str(e.get("message", "")) for e in errors if isinstance(e, dict) and e.get("message")
        )
    except (ValueError, AttributeError, TypeError):
        return (), ()
    return codes, messages


_QUERY = re.compile(r"(?<=\S)\?[^\s'\")]+")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class _BlobStream(io.RawIOBase):
    """A blob's wire bytes; a dropped connection resumes with `Range: bytes=N-` (bounded)."""

    def __init__(self, source: RegistrySource, descriptor: Descriptor) -> None:
        super().__init__()
        self._source = source
        self._digest = str(descriptor.digest)
        self._size = descriptor.size
        self._url = source._url("blobs", self._digest)
        self._what = f"blob {self._digest}"
        self._offset = 0
        self._resumes = 0
        # Identity encoding: the hash is over the stored bytes, not a re-encoding of them.
        response, self._transfer = source._get(self._url, {"Accept-Encoding": "identity"}, self._what)
        self._response: requests.Response | None = response

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while True:
            if self._response is None:
                return 0
            try:
                with _metered(self._transfer):
                    data = self._response.raw.read(min(len(view), CHUNK), decode_content=False)
            except RegistryError as exc:  # stalled, or out of time
                if not exc.temporary:
                    raise
                self._resume(exc)
                continue
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
                self._resume(exc)
                continue
            if not data and self._offset < self._size:
                self._resume(None)  # an early clean EOF is a cut too
                continue
            view[: len(data)] = data
            self._offset += len(data)
            return len(data)

    def _resume(self, cause: BaseException | None) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None
        if self._resumes >= self._source._options.retries:
            raise RegistryError(
                f"{self._what} from {self._source.host}: connection lost at byte {self._offset} "
                f"of {self._size} after {self._resumes} resumes ({cause or 'early end of stream'})",
                temporary=True,
            )
        self._resumes += 1
        headers = {"Accept-Encoding": "identity", "Range": f"bytes={self._offset}-"}
        response, self._transfer = self._source._get(
            self._url, headers, self._what, allow=frozenset({200, 206})
        )
        if response.status_code == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            if match is None or int(match.group(1)) != self._offset:
                response.close()
                raise RegistryError(
                    f"{self._what}: registry answered Range bytes={self._offset}- with Content-Range "
                    f"{response.headers.get('Content-Range')!r}"
                )
        else:
            with _metered(self._transfer):
                self._skip(response)  # Range is only a SHOULD (spec.md): re-read and drop what we have
        self._response = response

    def _skip(self, response: requests.Response) -> None:
        left = self._offset
        while left:
            try:
                data = response.raw.read(min(left, CHUNK), decode_content=False)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                response.close()
                raise RegistryError(f"{self._what}: reading failed on resume: {exc}") from None
            if not data:
                response.close()
                raise RegistryError(f"{self._what}: stream ended before byte {self._offset} on resume")
            left -= len(data)

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None
        super().close()
