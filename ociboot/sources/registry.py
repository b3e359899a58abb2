"""docker:// — manifests and blobs from a registry (OCI distribution-spec v1.1).

oras-py supplies the HTTP session and request plumbing; ociboot owns the rest, because oras's
defaults are wrong for an inspector (field-notes "oras-py 0.2.43"):
- we call the undecorated `do_request` (its retry decorator retries anything for ~131 s) and run
  our own bounded retries: 429 (honouring Retry-After), 502/503/504, resets and timeouts only;
- we own auth: tokens are cached per scope (oras keeps one for every repository and refreshes
  only on 403, while distribution answers 401 for a new scope and for an expired token);
- we keep raw manifest bytes and never verify here (image.py and layer.py do, once);
- a blob stream resumes with `Range` when the connection drops (spec.md: registries SHOULD
  support Range on blob GETs; we check 206 and Content-Range and fall back to skipping).
This module and auth.py are the only importers of oras, requests and urllib3.
"""

from __future__ import annotations

import base64
import hashlib
import io
import ipaddress
import json
import re
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import oras.provider  # first: `import oras.decorator` alone fails on a circular import
import requests
import urllib3
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


class _TimeoutSession(requests.Session):
    """oras's do_request passes no timeout; a session that always has one."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


class _ContextAdapter(HTTPAdapter):
    """Verifies against system roots plus a cert dir's CAs (containers-certs.d(5): `*.crt`)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)


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
            response = self._get(self._url("manifests", reference), {"Accept": _ACCEPT}, what)
            try:
                length = response.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > MAX_MANIFEST_BYTES:
                    raise InvalidManifest(f"{what} is {length} bytes, over the {MAX_MANIFEST_BYTES} byte cap")
                data = self._read_capped(response, MAX_MANIFEST_BYTES + 1, what)
                break
            except RegistryError:
                # The connection dropped mid-body: the GET is idempotent, so ask again (bounded).
                if attempt >= self._options.retries:
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

    def _tls_settings(self) -> tuple[bool, _ContextAdapter | None, tuple[str, str] | None]:
        options = self._options
        if not options.tls_verify:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        if not options.cert_dir:
            return options.tls_verify, None, None
        directory = Path(options.cert_dir)
        if not directory.is_dir():
            raise RegistryError(f"--cert-dir {directory} is not a directory")
        adapter = None
        cas = sorted(directory.glob("*.crt"))
        if cas and options.tls_verify:
            context = ssl.create_default_context()
            for ca in cas:
                try:
                    context.load_verify_locations(cafile=str(ca))
                except (ssl.SSLError, OSError) as exc:
                    raise RegistryError(f"cannot load CA certificate {ca}: {exc}") from None
            adapter = _ContextAdapter(context)
        cert = None
        for client_cert in sorted(directory.glob("*.cert")):
            key = client_cert.with_suffix(".key")
            if not key.is_file():
                raise RegistryError(f"client certificate {client_cert} has no key {key.name} beside it")
            cert = (str(client_cert), str(key))
        return options.tls_verify, adapter, cert

    def _client(self) -> oras.provider.Registry:
        """One oras Registry (and requests session) per thread and registry: oras's are not
        thread-safe, and sources of the same thread share connections to the same registry."""
        client = getattr(self._local, "client", None)
        if client is None:
            shared: dict[tuple[object, ...], oras.provider.Registry] = _SHARED.__dict__.setdefault(
                "clients", {}
            )
            key = (
                self.scheme,
                self.host,
                self._options.tls_verify,
                self._options.cert_dir,
                self._options.timeout,
            )
            client = shared.get(key)
        if client is None:
            client = oras.provider.Registry(
                hostname=self.host, insecure=self.scheme == "http", tls_verify=self._verify
            )
            session = _TimeoutSession(self._options.timeout)
            session.cookies = client.session.cookies  # oras's no-cookies policy
            if self._adapter is not None:
                session.mount("https://", self._adapter)
            session.cert = self._cert
            client.session = session
            client.auth = _OwnAuth()
            shared[key] = client
        self._local.client = client
        return client

    def _get(
        self, url: str, headers: Mapping[str, str], what: str, *, allow: frozenset[int] = frozenset({200})
    ) -> requests.Response:
        """GET with our auth and bounded retries; a response with a status in `allow`, else an error."""
        attempt = auth_rounds = 0
        while True:
            sent = {**headers, **self._auth_header()}  # a fresh dict: oras mutates what it is given
            try:
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
                if not error.temporary or attempt >= self._options.retries:
                    raise error from None
                attempt += 1
                time.sleep(min(0.25 * 2**attempt, 2.0))
                continue
            if response.status_code in allow:
                return response
            if response.status_code in TEMPORARY and attempt < self._options.retries:
                attempt += 1
                wait = self._retry_after(response, attempt)
                response.close()
                time.sleep(wait)
                continue
            raise self._status_error(response, what)

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
        if isinstance(exc, requests.exceptions.SSLError):
            hint = "give the CA with --cert-dir or use --no-tls-verify"
            return RegistryError(f"TLS error talking to {self.host}: {chain[-1]}; {hint}")
        if any(isinstance(e, ConnectionRefusedError) for e in chain) or "Connection refused" in text:
            return RegistryError(f"cannot connect to {self.host}: connection refused")
        if any(isinstance(e, urllib3.exceptions.NameResolutionError) for e in chain):
            return RegistryError(f"cannot connect to {self.host}: name does not resolve")
        if isinstance(exc, requests.Timeout):
            seconds = f"{self._options.timeout:g}"
            return RegistryError(f"{self.host} did not answer in {seconds} s", temporary=True)
        return RegistryError(f"connection to {self.host} failed: {chain[-1]}", temporary=True)

    def _status_error(self, response: requests.Response, what: str) -> Exception:
        status = response.status_code
        try:
            body = self._read_capped(response, MAX_ERROR_BODY, what)
        except RegistryError:
            body = b""
        finally:
            response.close()
        codes, messages = _error_codes(body)
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
        session = self._client().session
        try:
            if creds is not None and creds.identity_token:
                # OAuth2 refresh-token grant (docker token spec, oauth.md).
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": creds.identity_token,
                    "service": service,
                    "scope": " ".join(scopes),
                    "client_id": "ociboot",
                }
                answer = session.post(realm, data=form, verify=self._verify, stream=True)
            else:
                auth = (creds.username, creds.password) if creds is not None else None
                params = {"service": service, "scope": scopes}
                answer = session.get(realm, params=params, auth=auth, verify=self._verify, stream=True)
        except requests.RequestException as exc:
            raise self._transport_error(exc) from None
        with answer:
            if answer.status_code in (401, 403):
                raise self._auth_error(answer, token_realm=realm)
            if answer.status_code != 200:
                raise RegistryError(
                    f"token service {realm} answered {answer.status_code} for {scope}",
                    status=answer.status_code,
                    temporary=answer.status_code in TEMPORARY,
                )
            try:
                payload = json.loads(self._read_capped(answer, MAX_ERROR_BODY, f"token from {realm}"))
                token = payload.get("token") or payload.get("access_token")
                lifetime = float(payload.get("expires_in") or 60)  # token spec default: 60 s
            except (ValueError, TypeError, AttributeError):
                token = None
            if not isinstance(token, str) or not token:
                raise AuthenticationError(f"token service {realm} gave no token for {scope}")
        # Renew a little early so a token does not expire between our check and the registry's.
        TOKENS.put(key, token, max(lifetime - 10, 1))
        self._bearer = key

    def _auth_error(self, response: requests.Response, token_realm: str | None = None) -> AuthenticationError:
        status = f"{response.status_code} {response.reason or ''}".strip()
        creds = self._credentials()
        where = f"from {self.host} for repository {self._ref.repository}"
        if token_realm is not None:
            where = f"from token service {token_realm} for repository {self._ref.repository}"
        if creds is None:
            hint = "no credentials found: check --creds or the authfile"
        else:
            hint = f"credentials from {creds.source or 'the authfile'} were refused or lack access"
        return AuthenticationError(f"{status} {where}: {hint}")


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
        self._response: requests.Response | None = source._get(
            self._url, {"Accept-Encoding": "identity"}, self._what
        )

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while True:
            if self._response is None:
                return 0
            try:
                data = self._response.raw.read(min(len(view), CHUNK), decode_content=False)
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
        response = self._source._get(self._url, headers, self._what, allow=frozenset({200, 206}))
        if response.status_code == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            if match is None or int(match.group(1)) != self._offset:
                response.close()
                raise RegistryError(
                    f"{self._what}: registry answered Range bytes={self._offset}- with Content-Range "
                    f"{response.headers.get('Content-Range')!r}"
                )
        else:
            self._skip(response)  # Range is only a SHOULD (spec.md): re-read and drop what we have
        self._response = response

    def _skip(self, response: requests.Response) -> None:
        left = self._offset
        while left:
            data = response.raw.read(min(left, CHUNK), decode_content=False)
            if not data:
                response.close()
                raise RegistryError(f"{self._what}: stream ended before byte {self._offset} on resume")
            left -= len(data)

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None
        super().close()
