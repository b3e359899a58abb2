"""Real registries for the tests: Debian's `docker-registry` (CNCF distribution 2.8) on 127.0.0.1.

Session fixtures, each a separate `docker-registry serve CONFIG` process with its own storage:

    registry         anonymous, plain HTTP
    basic_registry   htpasswd (bcrypt) auth, users in `.users`
    token_registry   bearer-token auth against `TokenService`, a real token endpoint in a thread
    tls_registry     HTTPS with a certificate from a throwaway CA (`.ca_file`, `.cert_dir`)
    tls_token_registry  HTTPS, bearer-token auth against a plain-HTTP `TokenService` realm

A registry's log goes to a file; the tail of every registry's log is attached to a failing test's
report.  Nothing here imitates a registry: every answer comes from the real binary.

`start_registry` is also how bench/ starts its registry (plain HTTP, info-level log).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.server
import ipaddress
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.support.process import stop as stop_processes

BINARY = "/usr/bin/docker-registry"
USERS = {"alice": "wonderland", "bob": "builder"}

_STARTED: list[RegistryServer] = []


class RegistryStartError(RuntimeError):
    """docker-registry is not installed, or did not answer on its port."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- certificates ----------------------------------------------------------------------------


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(
    subject: str, key: rsa.RSAPrivateKey, issuer: tuple[str, rsa.RSAPrivateKey] | None, *, ca: bool
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name, issuer_key = issuer if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def libtrust_kid(cert: x509.Certificate) -> str:
    """The key id distribution matches a token's `kid` against (docker/libtrust keyIDFromCryptoKey)."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    b32 = base64.b32encode(hashlib.sha256(spki).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i : i + 4] for i in range(0, 48, 4))


# --- token service ---------------------------------------------------------------------------


class _RecordingServer(http.server.ThreadingHTTPServer):
    errors: list[str]
    accepted: int = 0

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.accepted += 1
        return True

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.errors.append(f"{time.strftime('%H:%M:%S')} {client_address}: {traceback.format_exc()}")
        super().handle_error(request, client_address)


@dataclass
class TokenService:
    """A token endpoint (docker token auth spec) that signs RS256 JWTs the registry trusts.

    `grants[user][repository]` lists the actions a user may have; anonymous gets `anonymous`;
    the users in `catalog` may list the registry's repositories (scope `registry:catalog:*`).
    `expire_next` makes the next N tokens already expired (past the registry's 60 s leeway).
    `issued` records (user, scopes) of every token handed out; `seen` (method, path) of every request;
    `errors` the traceback of every request the service failed to answer (shown with a failed
    test's registry log: a client sees such a request as a connection closed without an answer).
    Hostile modes, each for the next answer only: `redirect_next` answers 307 to that URL;
    `trickle_next` sends the answer one byte per 0.05 s.
    """

    directory: Path
    service: str = "ociboot-test-registry"
    issuer: str = "ociboot-test-issuer"
    users: dict[str, str] = field(default_factory=lambda: dict(USERS))
    grants: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    anonymous: dict[str, list[str]] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    catalog: set[str] = field(default_factory=set)  # users who may list the registry's catalog
    expire_next: int = 0
    issued: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    seen: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    redirect_next: str | None = None
    trickle_next: bool = False
    port: int = 0

    def __post_init__(self) -> None:
        self._key = _rsa()
        self._cert = _certificate("ociboot token signer", self._key, None, ca=True)
        self.cert_path = self.directory / "token-signer.pem"
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self.kid = libtrust_kid(self._cert)
        self._lock = threading.Lock()
        self._server = _RecordingServer(("127.0.0.1", 0), self._handler())
        self._server.errors = self.errors
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True, name="token-service").start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def report(self) -> str:
        """The last requests and every failure to answer one, for a failed test's report."""
        seen = "\n".join(f"{method} {path}" for method, path in self.seen[-10:])
        counts = f"connections accepted: {self._server.accepted}, requests read: {len(self.seen)}"
        return f"{counts}\nlast requests:\n{seen}\nerrors: {len(self.errors)}\n" + "\n".join(self.errors[-3:])

    def _allowed(self, user: str, scope: str) -> dict[str, Any] | None:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if (kind, name) == ("registry", "catalog"):
            granted = ["*"] if user and user in self.catalog and actions == "*" else []
            return {"type": "registry", "name": "catalog", "actions": granted}
        if kind != "repository" or not name:
            return None
        table = self.grants.get(user, {}) if user else self.anonymous
        may = table.get(name, table.get("*", []))
        granted = [a for a in actions.split(",") if a in may]
        return {"type": "repository", "name": name, "actions": granted}

    def issue(self, user: str, scopes: list[str]) -> str:
        now = int(time.time())
        with self._lock:
            expired = self.expire_next > 0
            self.expire_next -= 1 if expired else 0
            self.issued.append((user, tuple(scopes)))
        exp = now - 3600 if expired else now + 300
        access = [a for s in scopes if (a := self._allowed(user, s)) is not None]
        claims = {
            "iss": self.issuer,
            "aud": self.service,
            "sub": user,
            "iat": min(now, exp - 60),
            "nbf": min(now, exp - 60) - 5,
            "exp": exp,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        return jwt.encode(claims, _pem_key(self._key), algorithm="RS256", headers={"kid": self.kid})

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                trickle, service.trickle_next = service.trickle_next, False
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if not trickle:
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self._headers_buffer.append(b"\r\n")
                raw = b"".join(self._headers_buffer) + data
                self._headers_buffer = []
                try:
                    for i in range(len(raw)):
                        time.sleep(0.05)
                        self.wfile.write(raw[i : i + 1])
                except OSError:
                    self.close_connection = True

            def _hostile(self) -> bool:
                """Record the request; answer it with the armed redirect instead, if any."""
                service.seen.append((self.command, self.path))
                target, service.redirect_next = service.redirect_next, None
                if target is None:
                    return False
                if self.command == "POST":
                    self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(307)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return True

            def _basic_user(self) -> str | None:
                header = self.headers.get("Authorization", "")
                if not header.lower().startswith("basic "):
                    return ""
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                return user if service.users.get(user) == password else None

            def do_GET(self) -> None:
                if self._hostile():
                    return
                query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                user = self._basic_user()
                if user is None:
                    self._reply(401, {"details": "invalid username or password"})
                    return
                token = service.issue(user, query.get("scope", []))
                self._reply(200, {"token": token, "access_token": token, "expires_in": 300})

            def do_POST(self) -> None:
                # OAuth2 (docker token spec, oauth.md): refresh_token or password grants.
                if self._hostile():
                    return
                length = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                grant = form.get("grant_type", [""])[0]
                user: str | None = None
                if grant == "refresh_token":
                    user = service.refresh_tokens.get(form.get("refresh_token", [""])[0])
                elif grant == "password":
                    name = form.get("username", [""])[0]
                    user = name if service.users.get(name) == form.get("password", [""])[0] else None
                if not user:
                    self._reply(401, {"error": "invalid_grant"})
                    return
                token = service.issue(user, form.get("scope", [""])[0].split())
                self._reply(200, {"access_token": token, "expires_in": 300})

        return Handler


# --- registry processes ----------------------------------------------------------------------


@dataclass
class RegistryServer:
    name: str  # the fixture's name
    host: str  # 127.0.0.1:PORT
    scheme: str
    directory: Path
    process: subprocess.Popen[bytes]
    log: Path
    users: dict[str, str] = field(default_factory=dict)
    tokens: TokenService | None = None
    ca_file: Path | None = None
    cert_dir: Path | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def log_tail(self, limit: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def blob_file(self, digest: str) -> Path:
        """Where the registry's filesystem storage keeps a blob (to damage or remove it)."""
        hexa = digest.removeprefix("sha256:")
        return self.directory / "storage/docker/registry/v2/blobs/sha256" / hexa[:2] / hexa / "data"

    def stop(self) -> None:
        stop_processes(self.process, timeout=5)
        if self.tokens is not None:
            self.tokens.stop()


def blob_gets(server: RegistryServer, repo: str, digests: list[str]) -> int:
    """How many times the registry served these blobs of `repo` (its access log counts them)."""
    text = server.log.read_text(errors="replace")
    return sum(len(re.findall(rf"GET /v2/{re.escape(repo)}/blobs/{d}", text)) for d in digests)


def _config(port: int, root: Path, extra: list[str]) -> str:
    lines = [
        "version: 0.1",
        "log:",
        "  level: info",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {root}",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: 127.0.0.1:{port}",
        "  secret: ociboot-test-secret",
        *extra,
    ]
    return "\n".join(lines) + "\n"


def _ready(url: str, ca_file: Path | None) -> bool:
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    try:
        with urllib.request.urlopen(f"{url}/v2/", timeout=1, context=context) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except OSError:
        return False


def start_registry(
    name: str,
    directory: Path,
    *,
    http_extra: tuple[str, ...] = (),
    auth: tuple[str, ...] = (),
    ca_file: Path | None = None,
) -> RegistryServer:
    if not os.access(BINARY, os.X_OK):
        raise RegistryStartError(f"{BINARY} not found: apt-get install -y docker-registry")
    directory.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # a port chosen free can be taken by a parallel run before we bind it
        port = free_port()
        config = directory / "config.yml"
        config.write_text(_config(port, directory / "storage", [*http_extra, *auth]))
        log = directory / "registry.log"
        with log.open("wb") as out:
            process = subprocess.Popen([BINARY, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT)
        scheme = "https" if ca_file else "http"
        server = RegistryServer(name, f"127.0.0.1:{port}", scheme, directory, process, log, ca_file=ca_file)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and process.poll() is None:
            if _ready(server.url, ca_file):
                _STARTED.append(server)
                return server
            time.sleep(0.05)
        server.stop()
        if "address already in use" not in server.log_tail():
            break
    raise RegistryStartError(f"registry {name} did not start:\n{server.log_tail()}")


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = start_registry("registry", tmp_path_factory.mktemp("registry"))
    yield server
    server.stop()


def start_basic_registry(name: str, directory: Path, users: dict[str, str]) -> RegistryServer:
    """A registry that answers only with one of `users`' passwords (htpasswd, Basic auth)."""
    htpasswd = directory / "htpasswd"
    htpasswd.write_text(
        "".join(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}\n" for u, p in users.items())
    )
    auth = ("auth:", "  htpasswd:", f"    realm: ociboot-{name}", f"    path: {htpasswd}")
    server = start_registry(name, directory, auth=auth)
    server.users = dict(users)
    return server


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = start_basic_registry("basic_registry", tmp_path_factory.mktemp("basic-registry"), USERS)
    yield server
    server.stop()


def _start_token_registry(name: str, directory: Path, http_extra: tuple[str, ...] = ()) -> RegistryServer:
    tokens = TokenService(directory)
    # alice may pull and push everywhere, bob only pulls under team/; anonymous only pulls public/open.
    tokens.grants = {"alice": {"*": ["pull", "push"]}, "bob": {"team/app": ["pull"], "team/lib": ["pull"]}}
    tokens.anonymous = {"public/open": ["pull"]}
    tokens.refresh_tokens = {"refresh-for-bob": "bob"}
    tokens.catalog = {"alice"}
    auth = [
        "auth:",
        "  token:",
        f"    realm: {tokens.realm}",
        f"    service: {tokens.service}",
        f"    issuer: {tokens.issuer}",
        f"    rootcertbundle: {tokens.cert_path}",
    ]
    try:
        server = start_registry(
            name, directory, http_extra=http_extra, auth=tuple(auth), ca_file=_ca_file(directory)
        )
    except BaseException:
        tokens.stop()
        raise
    server.users, server.tokens = dict(USERS), tokens
    return server


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = _start_token_registry("token_registry", tmp_path_factory.mktemp("token-registry"))
    yield server
    server.stop()
    if server.tokens is not None and server.tokens.errors:
        warnings.warn(f"the token service failed to answer requests: {server.tokens.report()}", stacklevel=1)


def _ca_file(directory: Path) -> Path | None:
    ca_file = directory / "certs.d" / "ca.crt"
    return ca_file if ca_file.is_file() else None


def _tls_config(directory: Path) -> tuple[str, ...]:
    """A throwaway CA in `directory/certs.d/ca.crt` and the `tls:` lines of a server it signed."""
    ca_key, server_key = _rsa(), _rsa()
    ca_cert = _certificate("ociboot test CA", ca_key, None, ca=True)
    cert = _certificate("127.0.0.1", server_key, ("ociboot test CA", ca_key), ca=False)
    cert_dir = directory / "certs.d"
    cert_dir.mkdir()
    ca_file = cert_dir / "ca.crt"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(_pem_key(server_key))
    return ("  tls:", f"    certificate: {directory / 'server.pem'}", f"    key: {directory / 'server.key'}")


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    directory = tmp_path_factory.mktemp("tls-registry")
    tls = _tls_config(directory)
    server = start_registry("tls_registry", directory, http_extra=tls, ca_file=_ca_file(directory))
    server.cert_dir = directory / "certs.d"
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    directory = tmp_path_factory.mktemp("tls-token-registry")
    server = _start_token_registry("tls_token_registry", directory, _tls_config(directory))
    server.cert_dir = directory / "certs.d"
    yield server
    server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for server in _STARTED:
            if server.name in getattr(item, "fixturenames", ()):
                report.sections.append((f"registry log ({server.name}, {server.host})", server.log_tail()))
                if server.tokens is not None:
                    report.sections.append((f"token service ({server.name})", server.tokens.report()))
