"""What a packager or a user installing from a clone gets: the licence pyproject names, PEP 561
type information, shell completion, and dependency floors that CI really installs."""

from __future__ import annotations

import re
import runpy
import tomllib
from pathlib import Path

from packaging.version import Version
from typer.testing import CliRunner

from ociboot.cli import app

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
#: The floor of every runtime dependency, pinned; .ci/run installs exactly these and runs a smoke test.
FLOORS = REPO / ".ci" / "floors.txt"


def test_license_is_the_apache_text_pyproject_names() -> None:
    assert PYPROJECT["project"]["license"] == {"text": "Apache-2.0"}
    text = (REPO / "LICENSE").read_text()
    assert text.splitlines()[0].strip() == "Apache License"
    assert "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License" in text


def test_type_information_is_shipped_with_the_package() -> None:
    assert (REPO / "ociboot" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["ociboot"]


def test_shell_completion_is_offered() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout


def _floors(requirements: list[str]) -> dict[str, str]:
    out = {}
    for req in requirements:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?>=([0-9][0-9.]*)", req)
        assert m, f"a runtime dependency without a plain floor: {req!r}"
        out[m[1].lower()] = m[2]
    return out


def test_the_floor_constraints_pin_every_declared_floor() -> None:
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    declared = _floors([*project["dependencies"], *extras["fast"], *extras["redis"], *extras["dask"]])
    pinned = {}
    for line in FLOORS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pinned[name.strip().lower()] = Version(version)
    assert pinned == {name: Version(version) for name, version in declared.items()}


def _readme_setup() -> list[str]:
    """The README's set-up blocks, as .ci/run extracts and runs them in a bare clone."""
    blocks: list[str] = runpy.run_path(str(REPO / ".ci" / "readme_setup.py"))["setup_blocks"](
        (REPO / "README.md").read_text()
    )
    return blocks


def test_the_readme_setup_is_a_venv_the_example_check_and_the_tests() -> None:
    install, test = (block.splitlines() for block in _readme_setup())
    assert "python3 -m venv .venv" in install and ". .venv/bin/activate" in install
    assert "pip install ." in install and install[-1] == "ociboot check fixtures/example-cos.tar"
    assert ". .venv/bin/activate" in test and "pip install '.[test,fast]'" in test
    assert test[-1] == "python -m pytest tests"


def test_ci_runs_the_readme_setup_and_exactly_its_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert "python3 .ci/readme_setup.py" in ci and "git clone" in ci
    assert ci.rstrip().splitlines()[-1] == _readme_setup()[1].splitlines()[-1]
    # CI installs every Debian package the README names before it runs the blocks.
    named = {
        pkg
        for block in _readme_setup()
        for line in re.findall(r"apt-get install -y ([^\n&#]+)", block)
        for pkg in line.split()
    }
    ci_packages = re.search(r"for pkg in ([^;]+);", ci)
    # and what it adds only where a command is missing (npm: Node.js may come from elsewhere)
    fallback = {pkg for added in re.findall(r"need\+=\(([^)$]+)\)", ci) for pkg in added.split()}
    assert ci_packages and named and named <= set(ci_packages[1].split()) | fallback
