"""The library API: `ociboot.check` -> Batch, the frozen Policy, and the CLI over them
(each shared option declared once, skopeo's `--tls-verify=false`, readable metavars)."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

import ociboot
from ociboot.boot.profiles import PolicyError, load_policy
from ociboot.cli import app
from tests.support.bootimages import generic
from tests.support.imagebuilder import write_oci_layout
from tests.support.registry_server import RegistryServer

runner = CliRunner()


@pytest.fixture(scope="module")
def refs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("api")
    write_oci_layout(root / "good", {"latest": generic().build()})
    write_oci_layout(root / "broken", {"latest": generic().remove("/usr/lib/systemd").build()})
    return {
        "good": f"oci:{root / 'good'}:latest",
        "broken": f"oci:{root / 'broken'}:latest",
        "missing": f"oci:{root / 'nowhere'}:latest",
    }


def test_a_python_user_checks_an_image_in_three_lines(refs: dict[str, str]) -> None:
    batch = ociboot.check(refs["good"])
    assert batch.exit_code == 0
    (report,) = batch.reports
    assert isinstance(report, ociboot.Report)
    assert report.bootable() and report.image == refs["good"]
    assert all(
        isinstance(f, ociboot.Finding) and isinstance(f.severity, ociboot.Severity) for f in report.findings
    )
    assert report.profile == ociboot.Profile.GENERIC


def test_a_batch_is_in_input_order_with_the_exit_code_of_its_worst_image(refs: dict[str, str]) -> None:
    order = [refs["broken"], refs["good"]]
    batch = ociboot.check(order, jobs=2)
    assert [r.image for r in batch.reports] == order
    assert [r.bootable() for r in batch.reports] == [False, True]
    assert batch.exit_code == 1 and not batch.bootable
    assert batch.summary() == "1 bootable, 1 not bootable, 0 unreadable"

    batch = ociboot.check([refs["good"], refs["missing"]])
    assert batch.exit_code == 3  # an image that could not be read is never a pass
    (unreadable,) = batch.unreadable
    assert isinstance(unreadable, ociboot.Unreadable) and unreadable.image == refs["missing"]


def test_each_result_is_handed_over_as_it_finishes_in_the_calling_thread(refs: dict[str, str]) -> None:
    seen: list[tuple[int, str, str]] = []
    texts = [refs["good"], refs["missing"], refs["broken"]]
    batch = ociboot.check(
        texts, jobs=3, on_result=lambda i, c: seen.append((i, c.image, threading.current_thread().name))
    )
    assert sorted((i, image) for i, image, _ in seen) == list(enumerate(texts))
    assert {thread for _, _, thread in seen} == {threading.current_thread().name}
    assert [c.image for c in batch.checked] == texts


def test_the_policy_is_checked_before_any_image_is_read(refs: dict[str, str]) -> None:
    for policy in (ociboot.Policy(skip=("NOPE-001",)), ociboot.Policy(severity={"NOPE-001": "error"})):
        with pytest.raises(PolicyError, match=r"unknown rule id.*NOPE-001") as caught:
            ociboot.check(refs["good"], policy)
        assert caught.value.exit_code == 2
    with pytest.raises(PolicyError, match="severity of KRN-001"):
        ociboot.check(refs["good"], ociboot.Policy(severity={"KRN-001": "fatal"}))
    with pytest.raises(PolicyError, match="at least one image"):
        ociboot.check([])


def test_a_skipped_rule_and_a_policy_severity_reach_the_report(refs: dict[str, str]) -> None:
    policy = ociboot.Policy().merge(skip=["INIT-001"], severity={"INIT-001": "info"})
    (report,) = ociboot.check(refs["broken"], policy).reports
    assert {f.outcome.value for f in report.findings if f.rule == "INIT-001"} == {"skip"}


def test_the_policy_is_frozen_and_merges_layer_on_layer(tmp_path: Path) -> None:
    base = ociboot.Policy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.kernel = "/boot/k"  # type: ignore[misc]
    one = base.merge(profile=ociboot.Profile.COS, kernel="/boot/k", skip=["SSH-001"], severity={"A": "info"})
    two = one.merge(
        profile=ociboot.Profile.AUTO,  # not given: the layer below wins
        initrd="/boot/i",
        skip=["LAY-004"],
        severity={"B": "error"},
        fatal_warnings=True,
        analysis_budget=1 << 20,
    )
    assert base == ociboot.Policy()  # nothing merged into changes what it was merged into
    assert one.profile is ociboot.Profile.COS and one.skip == ("SSH-001",) and not one.fatal_warnings
    assert (two.profile, two.kernel, two.initrd) == (ociboot.Profile.COS, "/boot/k", "/boot/i")
    assert two.skip == ("SSH-001", "LAY-004")
    assert dict(two.severity) == {"A": "info", "B": "error"}
    assert two.fatal_warnings and two.analysis_budget == 1 << 20
    assert two.merge(fatal_warnings=False).fatal_warnings  # asked for once, it stays on

    path = tmp_path / "policy.toml"
    path.write_text('skip = ["LAY-004"]\nkernel = "/boot/file"\n')
    loaded = load_policy(path, one)
    assert loaded.skip == ("SSH-001", "LAY-004") and loaded.kernel == "/boot/file"
    assert one.skip == ("SSH-001",)  # the base given to load_policy is left as it was


def test_import_ociboot_imports_nothing_else_until_used() -> None:
    code = (
        "import sys, ociboot\n"
        "print(sorted(m for m in sys.modules if m.startswith('ociboot.')))\n"
        "ociboot.check\n"
        "print('ociboot.api' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["[]", "True"]


REPO = Path(__file__).resolve().parent.parent


@pytest.mark.registry
def test_the_readme_python_examples_run_and_type_check_with_no_any(
    tmp_path: Path, registry: RegistryServer
) -> None:
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```$", readme, re.DOTALL | re.MULTILINE)
    assert len(blocks) >= 3 and len(blocks[0].strip().splitlines()) == 3 + 1  # import, blank, two
    for i, block in enumerate(blocks):
        # The promotion example's registry is this test's.
        block = block.replace("127.0.0.1:5000", registry.host)
        run = subprocess.run([sys.executable, "-"], input=block, cwd=REPO, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert "oci-archive:fixtures/example-cos.tar" in run.stdout
        if "promote(" in block:
            _, code, verdict, error = run.stdout.split()
            assert (code, verdict[:7], error) == ("0", "sha256:", "None"), run.stdout
        (tmp_path / f"readme_{i}.py").write_text(block)
    # Strict, and no expression of type Any: the examples see ociboot's real types (py.typed).
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nfollow_imports = silent\nstrict = True\ndisallow_any_expr = True\n")
    files = [str(tmp_path / f"readme_{i}.py") for i in range(len(blocks))]
    mypy = [sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir", str(tmp_path / "c")]
    typed = subprocess.run([*mypy, *files], cwd=REPO, capture_output=True, text=True)
    assert typed.returncode == 0, typed.stdout


# --- the CLI over it -------------------------------------------------------------------------

#: Every command that reads an image, and the options each of them takes from one declaration.
IMAGE_COMMANDS = ("inspect", "ls", "cat", "stat", "layers", "check")
SHARED = (
    "--platform",
    "--quiet",
    "--creds",
    "--authfile",
    "--tls-verify",
    "--cert-dir",
    "--plain-http",
    "--username",
    "--password",
    "--password-stdin",
    "--timeout",
    "--stall-timeout",
)


def _options(command: str) -> dict[str, object]:
    click_app = get_command(app)
    params = click_app.commands[command].params
    return {opt: p for p in params for opt in p.opts}


def test_every_image_command_takes_the_shared_options_from_one_declaration() -> None:
    commands = {name: _options(name) for name in IMAGE_COMMANDS}
    for option in SHARED:
        helps = {commands[name][option].help for name in IMAGE_COMMANDS if option != "--platform"}
        assert all(option in commands[name] for name in IMAGE_COMMANDS), option
        assert len(helps) <= 1, option
    assert all("--cache" in commands[name] for name in IMAGE_COMMANDS if name != "cat")
    source = (Path(ociboot.__file__).parent / "cli.py").read_text()
    for option in (*SHARED, "--cache-dir"):
        # A registry's options are written once for every side (`--creds`, `--src-creds`, ...).
        side = rf'f"{{flag}}{option.removeprefix("--")}'
        declared = re.findall(rf'typer\.Option\(\s*(?:"{option}|{side})[/"]', source)
        assert len(declared) == 1, option


POLICY = (
    "--profile",
    "--kernel",
    "--initrd",
    "--require-package",
    "--policy",
    "--skip",
    "--fatal-warnings",
    "--analysis-budget",
)


def test_check_and_promote_take_the_policy_and_access_options_from_one_declaration() -> None:
    check, promote = _options("check"), _options("promote")
    for option in (*POLICY, "--timeout", "--stall-timeout", "--quiet", "--cache-dir", "--authfile"):
        assert option in promote, option
        assert promote[option].help == check[option].help, option  # type: ignore[attr-defined]
    for side in ("src", "dest"):
        for name in ("creds", "authfile", "tls-verify", "cert-dir", "plain-http", "username", "password"):
            assert f"--{side}-{name}" in promote, (side, name)
    assert "--creds" not in promote and "--password-stdin" not in promote
    source = (Path(ociboot.__file__).parent / "cli.py").read_text()
    for option in POLICY[1:]:  # `rules --profile` is another option: it filters the rule list
        assert len(re.findall(rf'typer\.Option\(\s*"{option}"', source)) == 1, option


def test_help_names_every_value_by_a_metavar_not_a_python_type() -> None:
    for command in (*IMAGE_COMMANDS, "rules", "cache info", "cache prune"):
        result = runner.invoke(app, [*command.split(), "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0
        shown = re.findall(r"<[^>\n]*>", result.stdout)
        python_types = [s for s in shown if "|" not in s]  # <text|json> lists the choices
        assert not python_types, (command, python_types)


@pytest.mark.parametrize(
    ("flags", "verified"),
    [
        ([], True),
        (["--tls-verify"], True),
        (["--tls-verify=true"], True),
        (["--tls-verify=TRUE"], True),
        (["--tls-verify=1"], True),
        (["--tls-verify=false"], False),
        (["--tls-verify=False"], False),
        (["--tls-verify=0"], False),
        (["--no-tls-verify"], False),
        (["--no-tls-verify", "--tls-verify=true"], True),  # the last one given wins, as in skopeo
        (["--tls-verify=false", "--tls-verify"], True),
    ],
)
@pytest.mark.parametrize("command", IMAGE_COMMANDS)
def test_tls_verify_takes_skopeos_spellings(command: str, flags: list[str], verified: bool) -> None:
    click_command = get_command(app).commands[command]  # type: ignore[attr-defined]
    args = ["oci:x", "/etc"] if command in ("cat", "stat") else ["oci:x"]
    with click_command.make_context(command, [*flags, *args]) as ctx:
        assert ctx.params["tls_verify"] is verified
        assert ctx.args == [] and "oci:x" in str(ctx.params)


def test_tls_verify_refuses_a_value_that_is_not_a_boolean() -> None:
    result = runner.invoke(app, ["check", "--tls-verify=maybe", "oci:nowhere"])
    assert result.exit_code == 2
    assert "'maybe' is not true or false" in result.stderr


def test_a_bare_tls_verify_does_not_swallow_the_image_after_it(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", "--tls-verify", f"oci:{tmp_path / 'nowhere'}"])
    assert result.exit_code == 3 and "nowhere" in result.stderr
