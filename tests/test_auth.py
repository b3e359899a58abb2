"""Credentials lookup (ociboot.sources.auth), unit by unit and end to end against a real registry."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ociboot.cli import app
from ociboot.errors import AuthenticationError
from ociboot.ref import ImageRef, Transport
from ociboot.sources import SourceOptions
from ociboot.sources.auth import (
    Credentials,
    find_credentials,
    normalise_key,
    parse_challenge,
    parse_creds,
)
from ociboot.sources.registry.source import RegistrySource
from tests.support.imagebuilder import BuiltImage, ImageBuilder, LayerBuilder
from tests.support.registry_push import Pusher
from tests.support.registry_server import RegistryServer


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HOME and none of the auth variables: only what a test writes exists."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def write_json(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def helper(directory: Path, name: str, body: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A docker-credential-NAME script on PATH; it logs the server URL it was asked about."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / f"docker-credential-{name}"
    script.write_text(
        f'#!/bin/sh\n[ "$1" = get ] || exit 3\nread server\necho "$server" >> {directory}/asked\n{body}\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")
    return directory / "asked"


# --- parsing ---------------------------------------------------------------------------------


def test_parse_creds() -> None:
    assert parse_creds("alice:pa:ss") == Credentials("alice", "pa:ss", source="--creds")
    # Without a colon the value may as well be the password or a token pasted alone: never echoed.
    with pytest.raises(AuthenticationError, match=r"no ':'.*never prompts") as info:
        parse_creds("ghp_s3cretToken")
    assert "s3cret" not in str(info.value)
    with pytest.raises(AuthenticationError, match="empty user"):
        parse_creds(":secret")


def test_password_not_in_repr() -> None:
    assert "hunter2" not in repr(Credentials("alice", "hunter2", "tok"))
    options = SourceOptions(creds="alice:hunter2", username="bob", password="hunter3")
    assert "hunter" not in repr(options)


def test_username_and_password_options() -> None:
    found = find_credentials("quay.example", SourceOptions(username="al:ice", password="pa:ss"), "x")
    assert found == Credentials("al:ice", "pa:ss", source="--username")
    with pytest.raises(AuthenticationError, match="--username 'al' needs --password"):
        find_credentials("quay.example", SourceOptions(username="al"), "x")


def test_parse_challenge() -> None:
    c = parse_challenge(
        'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"'
    )
    assert c is not None
    assert c.scheme == "bearer"
    assert c.params == {
        "realm": "https://auth.example/token",
        "service": "reg",
        "scope": "repository:a/b:pull,push",
    }
    basic = parse_challenge('Basic realm="ociboot basic"')
    assert basic is not None and basic.scheme == "basic" and basic.params == {"realm": "ociboot basic"}
    assert parse_challenge("") is None


@pytest.mark.parametrize(
    ("key", "normal"),
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("http://quay.example:5000/v2/", "quay.example:5000"),
        ("quay.example/team/app", "quay.example/team/app"),
        ("quay.example/", "quay.example"),
    ],
)
def test_normalise_key(key: str, normal: str) -> None:
    assert normalise_key(key) == normal


# --- lookup order ----------------------------------------------------------------------------


def test_nothing_configured(home: Path) -> None:
    assert find_credentials("quay.example", SourceOptions(), "team/app") is None


def test_creds_option_wins_over_files(home: Path) -> None:
    write_json(home / ".docker" / "config.json", {"auths": {"quay.example": {"auth": b64("file:pw")}}})
    found = find_credentials("quay.example", SourceOptions(creds="cli:pw"), "team/app")
    assert found is not None and found.username == "cli"


def test_docker_config_url_key_and_docker_hub(home: Path) -> None:
    write_json(
        home / ".docker" / "config.json", {"auths": {"https://index.docker.io/v1/": {"auth": b64("hub:pw")}}}
    )
    found = find_credentials("docker.io", SourceOptions(), "library/debian")
    assert found == Credentials("hub", "pw", source=str(home / ".docker" / "config.json"))


def test_docker_config_env_replaces_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_json(home / ".docker" / "config.json", {"auths": {"quay.example": {"auth": b64("home:pw")}}})
    write_json(
        home / "dc" / "config.json", {"auths": {"quay.example": {"username": "env", "password": "pw"}}}
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(home / "dc"))
    found = find_credentials("quay.example", SourceOptions(), "x")
    assert found is not None and (found.username, found.password) == ("env", "pw")


def test_podman_files_come_before_docker(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_json(home / ".docker" / "config.json", {"auths": {"quay.example": {"auth": b64("docker:pw")}}})
    write_json(
        home / ".config" / "containers" / "auth.json", {"auths": {"quay.example": {"auth": b64("user:pw")}}}
    )
    assert find_credentials("quay.example", SourceOptions(), "x").username == "user"  # type: ignore[union-attr]
    write_json(
        home / "run" / "containers" / "auth.json", {"auths": {"quay.example": {"auth": b64("run:pw")}}}
    )
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home / "run"))
    assert find_credentials("quay.example", SourceOptions(), "x").username == "run"  # type: ignore[union-attr]
    write_json(home / "env.json", {"auths": {"quay.example": {"auth": b64("env:pw")}}})
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(home / "env.json"))
    assert find_credentials("quay.example", SourceOptions(), "x").username == "env"  # type: ignore[union-attr]
    # A file without an entry for this registry does not stop the search.
    write_json(home / "env.json", {"auths": {"other.example": {"auth": b64("other:pw")}}})
    assert find_credentials("quay.example", SourceOptions(), "x").username == "run"  # type: ignore[union-attr]


def test_authfile_option_is_the_only_file(home: Path) -> None:
    write_json(home / ".docker" / "config.json", {"auths": {"quay.example": {"auth": b64("docker:pw")}}})
    only = write_json(home / "only.json", {"auths": {}})
    assert find_credentials("quay.example", SourceOptions(authfile=str(only)), "x") is None
    with pytest.raises(AuthenticationError, match=r"authfile .*missing\.json does not exist"):
        find_credentials("quay.example", SourceOptions(authfile=str(home / "missing.json")), "x")


def test_most_specific_namespace_key_wins(home: Path) -> None:
    write_json(
        home / ".config" / "containers" / "auth.json",
        {
            "auths": {
                "quay.example": {"auth": b64("host:pw")},
                "quay.example/team": {"auth": b64("team:pw")},
                "quay.example/team/app": {"auth": b64("app:pw")},
            }
        },
    )
    users = [
        find_credentials("quay.example", SourceOptions(), repo).username
        for repo in ("team/app", "team/lib", "solo")
    ]  # type: ignore[union-attr]
    assert users == ["app", "team", "host"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[]", "is not a JSON object"),
        ('{"auths": []}', "'auths' is not an object"),
        ('{"auths": {"quay.example": {"auth": "***"}}}', "'auth' is not base64"),
        ('{"auths": {"quay.example": {"auth": "' + b64("nocolon") + '"}}}', "no USER:PASS"),
    ],
)
def test_corrupt_auth_file_names_the_file(home: Path, content: str, message: str) -> None:
    path = home / "auth.json"
    path.write_text(content)
    with pytest.raises(AuthenticationError) as caught:
        find_credentials("quay.example", SourceOptions(authfile=str(path)), "x")
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_identity_token_entry(home: Path) -> None:
    path = write_json(home / "a.json", {"auths": {"quay.example": {"identitytoken": "refresh-me"}}})
    found = find_credentials("quay.example", SourceOptions(authfile=str(path)), "x")
    assert found is not None and found.identity_token == "refresh-me"


# --- credential helpers ----------------------------------------------------------------------


def test_cred_helper_for_host(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = helper(
        home / "bin", "fake", 'echo \'{"ServerURL":"s","Username":"helped","Secret":"s3cret"}\'', monkeypatch
    )
    write_json(
        home / ".docker" / "config.json",
        {"auths": {"quay.example": {"auth": b64("inline:pw")}}, "credHelpers": {"quay.example": "fake"}},
    )
    found = find_credentials("quay.example", SourceOptions(), "x")
    assert found == Credentials("helped", "s3cret", source="docker-credential-fake")
    assert asked.read_text() == "quay.example\n"


def test_creds_store_and_docker_hub_server_url(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = helper(home / "bin", "store", 'echo \'{"Username":"<token>","Secret":"idtok"}\'', monkeypatch)
    write_json(
        home / ".docker" / "config.json",
        {"auths": {"https://index.docker.io/v1/": {}}, "credsStore": "store"},
    )
    found = find_credentials("docker.io", SourceOptions(), "library/debian")
    assert found is not None and found.identity_token == "idtok"
    assert asked.read_text() == "https://index.docker.io/v1/\n"


def test_cred_helper_not_found_message_means_none(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helper(home / "bin", "empty", "echo 'credentials not found in native keychain'; exit 1", monkeypatch)
    write_json(home / ".docker" / "config.json", {"credsStore": "empty"})
    assert find_credentials("quay.example", SourceOptions(), "x") is None


def test_cred_helper_failure_and_missing_helper(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A helper that dies half-way may have printed the secret: its name and status are all we say.
    body = 'echo \'{"Username":"u","Secret":"hunter2"\'; echo "token hunter3 locked" >&2; exit 7'
    helper(home / "bin", "broken", body, monkeypatch)
    write_json(
        home / ".docker" / "config.json",
        {"credHelpers": {"quay.example": "broken", "other.example": "absent"}},
    )
    with pytest.raises(
        AuthenticationError, match=r"docker-credential-broken failed for quay\.example \(exit status 7"
    ) as caught:
        find_credentials("quay.example", SourceOptions(), "x")
    assert "hunter" not in str(caught.value)
    with pytest.raises(AuthenticationError, match="docker-credential-absent is not installed"):
        find_credentials("other.example", SourceOptions(), "x")


# --- end to end against the htpasswd registry ------------------------------------------------


@pytest.fixture(scope="module")
def pushed(basic_registry: RegistryServer) -> BuiltImage:
    image = ImageBuilder().add_layer(LayerBuilder().file("etc/hostname", b"auth\n"), "gzip").build()
    Pusher(basic_registry.url, "alice", "wonderland").push("auth/e2e", image, "t")
    return image


def pull(server: RegistryServer, **options: object) -> bytes:
    ref = ImageRef(Transport.DOCKER, registry=server.host, repository="auth/e2e", tag="t")
    source = RegistrySource(ref, SourceOptions(**options))  # type: ignore[arg-type]
    try:
        return source.get_manifest().data
    finally:
        source.close()


@pytest.mark.registry
def test_docker_config_credentials_reach_the_registry(
    basic_registry: RegistryServer, pushed: BuiltImage, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url_key = f"http://{basic_registry.host}/v2/"
    write_json(home / "dc" / "config.json", {"auths": {url_key: {"auth": b64("bob:builder")}}})
    monkeypatch.setenv("DOCKER_CONFIG", str(home / "dc"))
    assert pull(basic_registry) == pushed.manifest.data


@pytest.mark.registry
def test_registry_auth_file_and_authfile_option(
    basic_registry: RegistryServer, pushed: BuiltImage, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = write_json(home / "good.json", {"auths": {basic_registry.host: {"auth": b64("alice:wonderland")}}})
    bad = write_json(home / "bad.json", {"auths": {basic_registry.host: {"auth": b64("alice:wrong")}}})
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(good))
    assert pull(basic_registry) == pushed.manifest.data
    with pytest.raises(AuthenticationError, match=f"credentials from {bad} were refused"):
        pull(basic_registry, authfile=str(bad))


@pytest.mark.registry
def test_cred_helper_credentials_reach_the_registry(
    basic_registry: RegistryServer, pushed: BuiltImage, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = helper(home / "bin", "e2e", 'echo \'{"Username":"bob","Secret":"builder"}\'', monkeypatch)
    write_json(home / ".docker" / "config.json", {"credHelpers": {basic_registry.host: "e2e"}})
    assert pull(basic_registry) == pushed.manifest.data
    assert asked.read_text() == f"{basic_registry.host}\n"


@pytest.mark.registry
def test_a_creds_value_without_colon_is_never_printed_or_written(
    basic_registry: RegistryServer, pushed: BuiltImage, home: Path
) -> None:
    ref = f"docker://{basic_registry.host}/auth/e2e:t"
    for fmt in ("text", "json", "sarif", "junit"):
        done = CliRunner().invoke(app, ["check", "-q", ref, "--creds", "ghp_s3cretToken", "--format", fmt])
        assert done.exit_code == 3, done.stderr
        assert "--creds" in done.stderr and "s3cret" not in done.stdout + done.stderr
