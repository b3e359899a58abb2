"""Registry credentials: where they come from, in the order skopeo and docker look.

    --creds USER:PASS                      (we never prompt: a missing password is an error)
    --username USER with --password-stdin  (or --password, as skopeo spells them)
    --authfile FILE                        (only that file, as skopeo does)
    $REGISTRY_AUTH_FILE
    ${XDG_RUNTIME_DIR}/containers/auth.json
    ~/.config/containers/auth.json
    $DOCKER_CONFIG/config.json, else ~/.docker/config.json

The first file holding an entry for the registry wins.  Inside a file `credHelpers[host]` comes
first, then the most specific `auths` key (podman's `host/namespace` keys, containers-auth.json(5)),
then `credsStore`.  Also the parser for `WWW-Authenticate` challenges (RFC 7235 section 4.1).
Standard library only: HTTP belongs to registry/transport.py.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AuthenticationError
from ..ref import DOCKER_HUB
from . import SourceOptions

#: docker stores Docker Hub under its v1 URL; credential helpers expect that exact string.
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = {"index.docker.io", "registry-1.docker.io", "registry.hub.docker.com", DOCKER_HUB}
HELPER_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    #: an OAuth2 refresh token (`identitytoken`, or a helper's `<token>` user) for the token endpoint
    identity_token: str | None = field(default=None, repr=False)
    source: str = ""  # where they were found, for error messages


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # lower case: "bearer", "basic"
    params: dict[str, str]


_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a `WWW-Authenticate` value, e.g. `Bearer realm="...",scope="..."`."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {
        m.group(1).lower(): re.sub(r"\\(.)", r"\1", m.group(2)) if m.group(2) is not None else m.group(3)
        for m in _PARAM.finditer(rest)
    }
    return Challenge(scheme.lower(), params)


def normalise_key(key: str) -> str:
    """An auths key as `host` or `host/namespace`.

    docker writes URL forms (`https://index.docker.io/v1/`, `https://host/v2/`): with a scheme only
    the host counts, as in containers/image's normalizeAuthFileKey; without one the key may name
    a namespace (podman's `host/ns/repo`).
    """
    key = key.strip()
    if "://" in key:
        key = key.split("://", 1)[1].split("/", 1)[0]
    key = key.rstrip("/")
    host, sep, path = key.partition("/")
    if host in _HUB_ALIASES:
        host = DOCKER_HUB
    return host + sep + path if path else host


def parse_creds(text: str) -> Credentials:
    user, sep, password = text.partition(":")
    if not user:
        raise AuthenticationError("--creds has an empty user name: use --creds USER:PASS")
    if not sep:
        # Not echoed: a value without a colon is as likely a password or token given alone.
        raise AuthenticationError(
            "--creds has no ':' (USER:PASS), so no password, and ociboot never prompts: "
            "use --creds USER:PASS or --username with --password-stdin"
        )
    return Credentials(user, password, source="--creds")


def _auth_files(options: SourceOptions) -> list[Path]:
    if options.authfile:
        path = Path(options.authfile)
        if not path.is_file():
            raise AuthenticationError(f"authfile {path} does not exist")
        return [path]
    env = os.environ
    home = Path.home()
    files = []
    if env.get("REGISTRY_AUTH_FILE"):
        files.append(Path(env["REGISTRY_AUTH_FILE"]))
    if env.get("XDG_RUNTIME_DIR"):
        files.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    files.append(home / ".config" / "containers" / "auth.json")
    # docker reads $DOCKER_CONFIG instead of ~/.docker, not in addition to it.
    docker_dir = Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else home / ".docker"
    files.append(docker_dir / "config.json")
    return files


def _load(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthenticationError(f"cannot read auth file {path}: {exc}") from None
    try:
        value = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise AuthenticationError(f"auth file {path} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise AuthenticationError(f"auth file {path} is not a JSON object")
    for key in ("auths", "credHelpers"):
        if not isinstance(value.get(key, {}), dict):
            raise AuthenticationError(f"auth file {path}: {key!r} is not an object")
    return value


def _candidates(registry: str, repository: str) -> list[str]:
    """Keys from most to least specific: host/a/b, host/a, host."""
    host = normalise_key(registry)
    parts = [p for p in repository.split("/") if p]
    return [f"{host}/{'/'.join(parts[:i])}" for i in range(len(parts), 0, -1)] + [host]


def _from_entry(entry: Any, path: Path, key: str) -> Credentials | None:
    where = f"auth file {path}, entry {key!r}"
    if not isinstance(entry, dict):
        raise AuthenticationError(f"{where} is not an object")
    token = entry.get("identitytoken") or None
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(str(entry["auth"]), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthenticationError(f"{where}: 'auth' is not base64 of USER:PASS") from None
        user, sep, password = decoded.partition(":")
        if not sep:
            raise AuthenticationError(f"{where}: 'auth' decodes to no USER:PASS pair")
        return Credentials(user, password, token, source=str(path))
    if entry.get("username") or token:
        return Credentials(str(entry.get("username", "")), str(entry.get("password", "")), token, str(path))
    return None


def run_helper(name: str, server: str) -> Credentials | None:
    """`docker-credential-NAME get` (docker-credential-helpers protocol): server URL on stdin."""
    program = f"docker-credential-{name}"
    try:
        done = subprocess.run(
            [program, "get"], input=server.encode(), capture_output=True, timeout=HELPER_TIMEOUT, check=False
        )
    except FileNotFoundError:
        raise AuthenticationError(f"credential helper {program} is not installed (not on PATH)") from None
    except subprocess.TimeoutExpired:
        raise AuthenticationError(
            f"credential helper {program} gave no answer in {HELPER_TIMEOUT:g} s"
        ) from None
    except OSError as exc:
        raise AuthenticationError(f"credential helper {program} could not run: {exc}") from None
    if done.returncode != 0:
        # The protocol's way of saying "nothing stored for this server" is this message.  Whatever
        # else a helper prints may hold the secret (a half-written answer): it is never echoed.
        message = (done.stdout or done.stderr).decode(errors="replace").strip()
        if "credentials not found" in message.lower():
            return None
        raise AuthenticationError(
            f"credential helper {program} failed for {server} (exit status {done.returncode}; "
            f"run `echo {server} | {program} get` to see its message)"
        )
    try:
        payload = json.loads(done.stdout)
        user, secret = str(payload["Username"]), str(payload["Secret"])
    except (json.JSONDecodeError, KeyError, TypeError):
        raise AuthenticationError(f"credential helper {program} printed no Username/Secret JSON") from None
    if user == "<token>":  # the helper protocol's marker for an identity token
        return Credentials("", "", identity_token=secret, source=program)
    return Credentials(user, secret, source=program)


def _server_url(registry: str) -> str:
    return DOCKER_HUB_KEY if normalise_key(registry) == DOCKER_HUB else registry


def _from_file(config: dict[str, Any], path: Path, registry: str, repository: str) -> Credentials | None:
    host = normalise_key(registry)
    helpers = {normalise_key(k): v for k, v in config.get("credHelpers", {}).items()}
    if isinstance(helpers.get(host), str) and helpers[host]:
        return run_helper(helpers[host], _server_url(registry))
    auths = {normalise_key(k): (k, v) for k, v in config.get("auths", {}).items()}
    for candidate in _candidates(registry, repository):
        if candidate in auths:
            found = _from_entry(auths[candidate][1], path, auths[candidate][0])
            if found is not None:
                return found
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        return run_helper(store, _server_url(registry))
    return None


def find_credentials(registry: str, options: SourceOptions, repository: str = "") -> Credentials | None:
    """Credentials for `registry` (as the user wrote it, e.g. docker.io) and `repository`, or None."""
    if options.creds is not None:
        return parse_creds(options.creds)
    if options.username is not None:
        if options.password is None:
            raise AuthenticationError(f"--username {options.username!r} needs --password or --password-stdin")
        return Credentials(options.username, options.password, source="--username")
    for path in _auth_files(options):
        config = _load(path)
        if config is None:
            continue
        found = _from_file(config, path, registry, repository)
        if found is not None:
            return found
    return None
