"""CLI wiring only: exit codes, one-line errors without tracebacks, JSON keys.  Logic is tested
below the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ociboot.cli import app
from tests.support.faultproxy import FaultProxy
from tests.support.imagebuilder import ImageBuilder, LayerBuilder, write_oci_archive
from tests.support.registry_push import Pusher
from tests.support.registry_server import RegistryServer, blob_gets

runner = CliRunner()


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    layer = (
        LayerBuilder()
        .dir("boot")
        .file("boot/vmlinuz-6.1", b"kernel")
        .symlink("boot/vmlinuz", "vmlinuz-6.1")
        .symlink("boot/dangling", "nowhere")
        .file("etc/os-release", "ID=test\n")
    )
    path = tmp_path_factory.mktemp("cli") / "image.tar"
    return write_oci_archive(path, {"v1": ImageBuilder().add_layer(layer, "gzip").build()})


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_ls_json_keys_and_resolved_links(archive: Path) -> None:
    code, out, _ = run("ls", str(archive), "/boot", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert {"schemaVersion", "reference", "digest", "path", "entries"} <= data.keys()
    rows = {r["path"]: r for r in data["entries"]}
    assert rows["/boot/vmlinuz"]["resolved"] == "/boot/vmlinuz-6.1"
    assert rows["/boot/dangling"]["resolved"] is None


def test_inspect_json(archive: Path) -> None:
    code, out, _ = run("inspect", str(archive), "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["digest"].startswith("sha256:") and data["platform"] == "linux/amd64"
    # By default the layers are not read: their sizes are the manifest's only.
    assert data["uncompressedSize"] is None and "uncompressedSize" not in data["layers"][0]
    code, out, _ = run("inspect", str(archive), "--sizes", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["layers"][0]["uncompressedSize"] > data["layers"][0]["size"] > 0
    assert data["uncompressedSize"] == data["layers"][0]["uncompressedSize"]


@pytest.mark.registry
def test_inspect_reads_layers_only_with_sizes(registry: RegistryServer) -> None:
    image = (
        ImageBuilder()
        .add_layer(LayerBuilder().file("etc/os-release", "ID=test\n"), "gzip")
        .add_layer(LayerBuilder().file("etc/motd", b"hello"), "gzip")
        .build()
    )
    Pusher(registry.url).push("cli/inspect", image, "t")
    ref = f"docker://{registry.host}/cli/inspect:t"
    layers = [b.digest for b in image.layers]

    before = blob_gets(registry, "cli/inspect", layers)
    code, out, err = run("inspect", "-q", ref, "--format", "json")
    assert code == 0, err
    assert json.loads(out)["config"]["digest"] == image.config.digest
    assert blob_gets(registry, "cli/inspect", layers) == before
    code, _, err = run("inspect", "-q", "--sizes", ref)
    assert code == 0, err
    assert blob_gets(registry, "cli/inspect", layers) - before == len(layers)  # the count is real


def test_inspect_raw_prints_stored_bytes(archive: Path) -> None:
    code, out, _ = run("inspect", str(archive), "--raw")
    assert code == 0 and json.loads(out)["schemaVersion"] == 2


def test_cat_and_stat(archive: Path) -> None:
    code, out, _ = run("cat", str(archive), "/boot/vmlinuz")
    assert (code, out) == (0, "kernel")
    code, out, _ = run("stat", str(archive), "/boot/vmlinuz", "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["chain"] == [{"path": "/boot/vmlinuz", "target": "vmlinuz-6.1"}]
    assert data["layer"]["index"] == 0


def test_layers_json(archive: Path) -> None:
    code, out, _ = run("layers", str(archive), "--format", "json")
    assert code == 0
    assert "/boot/vmlinuz" in json.loads(out)["layers"][0]["added"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["ls", "docker://Bad/Name"], "must be lowercase"),
        (["ls", "oci:/does/not/exist"], "/does/not/exist"),
        (["cat", "{archive}", "/nope"], "no such file or directory"),
        (["cat", "{archive}", "/boot"], "is a directory"),
    ],
)
def test_errors_are_one_line_with_exit_code_3(archive: Path, args: list[str], needle: str) -> None:
    code, _out, err = run(*[a.format(archive=archive) for a in args])
    assert code == 3
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_usage_errors_exit_2(archive: Path) -> None:
    assert run("ls")[0] == 2
    assert run("ls", str(archive), "--platform", "linux")[0] == 2


def test_module_entry_point_runs(archive: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ociboot", "ls", str(archive), "/etc"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip() == "/etc/os-release"


COMMANDS = [
    "",
    "inspect",
    "ls",
    "cat",
    "stat",
    "layers",
    "check",
    "rules",
    "cache",
    "cache info",
    "cache prune",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_help_text_renders(command: str) -> None:
    # The reference grammar (`oci:DIR[:REF]`, `os/arch[/variant]`) once broke rich's markup.
    result = runner.invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0 and "Usage" in result.stdout


def test_a_missing_file_is_not_asked_of_docker_hub(tmp_path: Path) -> None:
    code, _, err = run("ls", str(tmp_path / "typo.tar"))
    assert code == 3 and "no such file or directory" in err and "docker.io" not in err
    code, _, err = run("ls", "image.tar")
    assert code == 3 and "image.tar: no such file or directory" in err


# --- registry options: credentials and time limits -------------------------------------------

IMAGE_COMMANDS = [["inspect"], ["ls"], ["cat", "/etc/os-release"], ["stat", "/etc"], ["layers"], ["check"]]


@pytest.fixture(scope="module")
def basic_ref(basic_registry: RegistryServer) -> str:
    image = ImageBuilder().add_layer(LayerBuilder().file("etc/os-release", "ID=test\n"), "gzip").build()
    Pusher(basic_registry.url, "alice", "wonderland").push("cli/creds", image, "t")
    return f"docker://{basic_registry.host}/cli/creds:t"


@pytest.mark.registry
@pytest.mark.parametrize("command", IMAGE_COMMANDS)
def test_every_image_command_takes_the_password_on_stdin(basic_ref: str, command: list[str]) -> None:
    name, *rest = command
    args = [name, basic_ref, *rest, "--username", "alice", "--password-stdin", "--timeout", "2m"]
    result = runner.invoke(app, args, input="wonderland\n")
    assert result.exit_code in ((0, 1) if name == "check" else (0,)), result.stderr  # check: a verdict
    result = runner.invoke(app, args, input="wrong\n")
    assert result.exit_code == 3 and "credentials from --username were refused" in result.stderr


@pytest.mark.parametrize("command", IMAGE_COMMANDS)
@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (
            ["--creds", "a:b", "--username", "a", "--password", "b"],
            "--creds and --username cannot be used together",
        ),
        (["--password-stdin"], "a password needs --username"),
        (["--username", "a"], "--username needs --password-stdin"),
        (["--username", "a", "--password", "b", "--password-stdin"], "not both"),
        (["--timeout", "soon"], "not a duration: 'soon'"),
        (["--stall-timeout", "0s"], "not a duration: '0s'"),
    ],
)
def test_credential_and_limit_misuse_is_a_usage_error(
    command: list[str], flags: list[str], needle: str
) -> None:
    name, *rest = command
    result = runner.invoke(app, [name, "docker://127.0.0.1:9/x/y", *rest, *flags], input="pw\n")
    assert result.exit_code == 2 and needle in result.stderr


@pytest.mark.registry
@pytest.mark.parametrize("command", [["inspect"], ["check"]])
def test_a_stalled_registry_is_one_error_line_and_exit_3(
    registry: RegistryServer, command: list[str]
) -> None:
    image = ImageBuilder().add_layer(LayerBuilder().file("etc/os-release", "ID=test\n"), "gzip").build()
    Pusher(registry.url).push("cli/stall", image, "t")
    proxy = FaultProxy(registry.host)
    try:
        for _ in range(2):  # a stall is retried once
            proxy.trickle_next("/manifests/")
        ref = f"docker://{proxy.host}/cli/stall:t"
        code, _, err = run(*command, ref, "--stall-timeout", "500ms")
    finally:
        proxy.close()
    assert code == 3 and err.count("\n") == 1 and "Traceback" not in err
    assert f"{proxy.host}/cli/stall:t: manifest t of {proxy.host}/cli/stall from {proxy.host} stalled" in err


def test_a_reference_with_a_password_is_never_echoed() -> None:
    for text in (
        "docker://alice:hunter2@127.0.0.1:9/x/y",
        "alice:hunter2@127.0.0.1:9/x/y",
        "alice:hunter2@h/x/y.tar",
    ):
        code, out, err = run("inspect", text)
        assert code == 3 and "hunter2" not in out + err and "***@" in err
    # check names an unreadable image in its report too, in every format
    for fmt in ("text", "json", "sarif", "junit"):
        code, out, err = run("check", "-f", fmt, "docker://alice:hunter2@127.0.0.1:9/x/y")
        assert code == 3 and "hunter2" not in out + err and "***@" in out
