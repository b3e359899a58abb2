"""The CI templates (action.yml, ci/gitlab/ociboot.gitlab-ci.yml): their structure, and their
commands run in a shell as a runner would, against a bootable and a non-bootable image.

What a runner does and the test does not: `actions/setup-python` and the install step (a venv and
pip from the action's own checkout) are replaced by this test's ociboot, the checkout under test,
put on PATH; GitLab's `before_script` (apt-get, pip) likewise.  `upload-sarif` is replaced by a
check that the file it would upload exists and is SARIF.  Nothing here reaches the network.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.bootimages import generic
from tests.support.imagebuilder import write_oci_archive

ROOT = Path(__file__).resolve().parent.parent
ACTION = ROOT / "action.yml"
GITLAB = ROOT / "ci" / "gitlab" / "ociboot.gitlab-ci.yml"
EXAMPLE = ROOT / "fixtures" / "example-cos.tar"
#: How GitHub runs a composite step's `shell: bash` (its documented template).
GITHUB_BASH = ["bash", "--noprofile", "--norc", "-eo", "pipefail"]
#: The keywords a GitLab job may have (docs.gitlab.com, "CI/CD YAML syntax reference").
GITLAB_JOB_KEYS = frozenset(
    [
        "after_script",
        "allow_failure",
        "artifacts",
        "before_script",
        "cache",
        "coverage",
        "dast_configuration",
        "dependencies",
        "environment",
        "extends",
        "hooks",
        "id_tokens",
        "identity",
        "image",
        "inherit",
        "interruptible",
        "needs",
        "pages",
        "parallel",
        "release",
        "resource_group",
        "retry",
        "rules",
        "script",
        "secrets",
        "services",
        "stage",
        "tags",
        "timeout",
        "trigger",
        "variables",
        "when",
    ]
)


@pytest.fixture(scope="module")
def ociboot_on_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bin directory whose `ociboot` is this checkout's: what the install step would provide."""
    bin_dir = tmp_path_factory.mktemp("bin")
    script = bin_dir / "ociboot"
    script.write_text(f'#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m ociboot "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bin_dir


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image with no kernel and no initrd: not bootable."""
    return write_oci_archive(
        tmp_path_factory.mktemp("broken") / "broken.tar", {"latest": generic().drop("/boot").build()}
    )


# --- GitHub Actions: a composite action ---------------------------------------------------------


def action() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(ACTION.read_text())
    return doc


def test_the_action_is_a_valid_composite_action() -> None:
    doc = action()
    assert isinstance(doc["name"], str) and isinstance(doc["description"], str)
    assert doc["runs"]["using"] == "composite"
    for name, spec in doc["inputs"].items():
        assert spec["description"], name
        assert isinstance(spec.get("default", ""), str), name  # inputs are strings
    ids = set()
    for step in doc["runs"]["steps"]:
        assert ("run" in step) != ("uses" in step), step
        if "run" in step:
            assert step["shell"] == "bash", step  # a composite's run step must name its shell
            assert "${{" not in step["run"], "inputs reach a script through env:, not pasted into it"
        ids.add(step.get("id"))
    text = ACTION.read_text()
    for context, name in re.findall(r"\b(inputs|steps)\.([\w-]+)", text):
        assert name in (doc["inputs"] if context == "inputs" else ids), f"{context}.{name}"


def test_the_action_uploads_before_it_fails_and_installs_from_its_own_checkout() -> None:
    steps = action()["runs"]["steps"]
    kinds = [s.get("id") or s["uses"].split("@")[0] for s in steps]
    upload = kinds.index("github/codeql-action/upload-sarif")
    assert kinds.index("check") < upload < len(steps) - 1
    assert "always()" in steps[upload]["if"] and "always()" in steps[-1]["if"]
    install = steps[kinds.index("install")]
    assert install["env"]["OCIBOOT_SOURCE"] == "${{ github.action_path }}"
    assert "pip install" in install["run"] and '"$OCIBOOT_SOURCE"' in install["run"]


@dataclass
class Run:
    """What a runner did with the action's steps."""

    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    uploaded: list[Path] = field(default_factory=list)
    failed: int | None = None  # the exit code of the step that failed the job


def evaluate(expression: str, context: dict[str, Any], failed: bool) -> Any:
    """A GitHub expression, of the forms these templates use: contexts, '...' strings, ==, !=,
    &&, ||, !, and the status functions.  A missing value is '' (as GitHub's null compares)."""

    def lookup(m: re.Match[str]) -> str:
        value: Any = context
        for part in m[0].split("."):
            value = value.get(part, "") if isinstance(value, dict) else ""
        return repr(value)

    py = re.sub(r"\b(always|success|failure)\(\)", lambda m: repr(_status(m[1], failed)), expression)
    py = re.sub(r"\b(?:inputs|steps|github)(?:\.[\w-]+)+", lookup, py)
    py = re.sub(r"!(?!=)", " not ", py.replace("&&", " and ").replace("||", " or "))
    return eval(py, {"__builtins__": {}})


def _status(function: str, failed: bool) -> bool:
    return {"always": True, "success": not failed, "failure": failed}[function]


def substitute(text: str, context: dict[str, Any], failed: bool) -> str:
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: str(evaluate(m[1], context, failed)), text)


def run_action(inputs: dict[str, str], workspace: Path, bin_dir: Path) -> Run:
    doc = action()
    given = {name: inputs.get(name, spec.get("default", "")) for name, spec in doc["inputs"].items()}
    assert set(inputs) <= set(given)
    run = Run()
    context: dict[str, Any] = {"inputs": given, "github": {"action_path": str(ROOT)}, "steps": run.steps}
    path = [str(bin_dir)]  # the install step would add its venv's bin to GITHUB_PATH
    for i, step in enumerate(doc["runs"]["steps"]):
        condition = step.get("if", "success()").removeprefix("${{").removesuffix("}}")
        record = run.steps.setdefault(step.get("id", f"step{i}"), {"outputs": {}})
        if not evaluate(condition, context, run.failed is not None):
            record["outcome"] = "skipped"
            continue
        code = 0
        if step.get("uses", "").startswith("actions/setup-python@") or step.get("id") == "install":
            pass  # replaced by `bin_dir` (see the module's docstring)
        elif step.get("uses", "").startswith("github/codeql-action/upload-sarif@"):
            sarif = workspace / substitute(step["with"]["sarif_file"], context, False)
            assert json.loads(sarif.read_text())["version"] == "2.1.0"
            run.uploaded.append(sarif)
        else:
            output = workspace / f"output-{i}"
            output.write_text("")
            env = {name: substitute(str(value), context, False) for name, value in step["env"].items()}
            env |= {
                "PATH": os.pathsep.join([*path, os.environ["PATH"]]),
                "GITHUB_OUTPUT": str(output),
                "RUNNER_TEMP": str(workspace),
            }
            script = workspace / f"step-{i}.sh"
            script.write_text(step["run"])
            done = subprocess.run(
                [*GITHUB_BASH, str(script)], cwd=workspace, env={**os.environ, **env}, check=False
            )
            code = done.returncode
            record["outputs"] = dict(line.split("=", 1) for line in output.read_text().splitlines())
        record["outcome"] = "success" if code == 0 else "failure"
        if code and run.failed is None:
            run.failed = code
    return run


@pytest.mark.parametrize(
    ("images", "exit_code"),
    [
        ("{example}", 0),
        ("{example}\n{broken}", 1),  # a list, one image a line
        ("{example} {workspace}/missing.tar", 3),
    ],
)
def test_the_action_checks_uploads_and_fails_the_job_on_the_verdict(
    tmp_path: Path, ociboot_on_path: Path, broken: Path, images: str, exit_code: int
) -> None:
    given = {"images": images.format(example=EXAMPLE, broken=broken, workspace=tmp_path)}
    run = run_action(given, tmp_path, ociboot_on_path)

    assert run.steps["check"]["outcome"] == "success"  # the check step keeps the code for later
    assert run.steps["check"]["outputs"] == {"exit-code": str(exit_code)}
    sarif, junit = tmp_path / "ociboot.sarif", tmp_path / "ociboot-junit.xml"
    assert run.uploaded == [sarif]  # uploaded whatever the verdict
    results = [r for one in json.loads(sarif.read_text())["runs"] for r in one["results"]]  # a run per image
    suites = ET.parse(junit).getroot()
    assert bool(results) == (exit_code == 1)  # an unreadable image is a notification, not a result
    assert (int(suites.get("failures") or 0) + int(suites.get("errors") or 0) > 0) == (exit_code != 0)
    assert run.failed == (exit_code or None)  # the job fails with the verdict, after the upload


def test_the_action_passes_policy_and_arguments_and_runs_no_input_as_code(
    tmp_path: Path, ociboot_on_path: Path, broken: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('skip = ["KRN-001"]\n')
    given = {
        "images": f"{broken} $(touch {tmp_path}/pwned)",
        "policy": str(policy),
        "args": "--profile generic --jobs 1",
        "sarif": "out/ociboot.sarif",
        "upload-sarif": "false",
    }
    (tmp_path / "out").mkdir()
    run = run_action(given, tmp_path, ociboot_on_path)
    assert not (tmp_path / "pwned").exists()
    assert run.steps["check"]["outputs"] == {"exit-code": "3"}  # `$(touch` is read as an image name
    assert run.uploaded == [] and run.failed == 3
    sarif = json.loads((tmp_path / "out" / "ociboot.sarif").read_text())
    assert "KRN-001" not in {r["ruleId"] for r in sarif["runs"][0]["results"]}


def test_the_category_input_names_every_run_of_the_upload(
    tmp_path: Path, ociboot_on_path: Path, broken: Path
) -> None:
    """upload-sarif gives its `category` only to runs without an `automationDetails.id`, and
    ociboot names each of its runs: the input reaches GitHub through ociboot, or not at all, and
    two jobs checking one image (two policies) would close each other's alerts."""
    images = f"{EXAMPLE}\n{broken}"
    ids = {}
    for category in ("ociboot", "nightly/strict"):
        run_action({"images": images, "category": category}, tmp_path, ociboot_on_path)
        doc = json.loads((tmp_path / "ociboot.sarif").read_text())
        ids[category] = [one["automationDetails"]["id"] for one in doc["runs"]]
    assert len(ids["ociboot"]) == 2 and all(i.startswith("ociboot/") for i in ids["ociboot"])
    assert ids["nightly/strict"] == [f"nightly/strict/{i.removeprefix('ociboot/')}" for i in ids["ociboot"]]


def test_an_image_named_like_an_option_is_an_image(tmp_path: Path, ociboot_on_path: Path) -> None:
    """An image list built from a branch or a tag name must not set options (`-o`, `--attach`)."""
    victim = tmp_path / "victim"
    victim.write_text("kept\n")
    run = run_action({"images": f"{EXAMPLE} --output={victim}"}, tmp_path, ociboot_on_path)
    assert run.steps["check"]["outputs"] == {"exit-code": "3"}  # an image by that name cannot be read
    assert victim.read_text() == "kept\n"


def test_a_usage_error_uploads_nothing_and_fails_the_job(tmp_path: Path, ociboot_on_path: Path) -> None:
    run = run_action({"images": str(EXAMPLE), "args": "--no-such-option"}, tmp_path, ociboot_on_path)
    assert run.steps["check"]["outputs"] == {"exit-code": "2"}
    assert run.uploaded == [] and run.failed == 2


# --- GitLab CI: a hidden job to extend ----------------------------------------------------------


def gitlab_job() -> dict[str, Any]:
    doc = yaml.safe_load(GITLAB.read_text())
    assert list(doc) == [".ociboot-check"]  # only a hidden job: including it runs nothing
    job: dict[str, Any] = doc[".ociboot-check"]
    return job


def test_the_gitlab_template_is_a_job_that_keeps_its_junit_report() -> None:
    job = gitlab_job()
    assert set(job) <= GITLAB_JOB_KEYS, set(job) - GITLAB_JOB_KEYS
    assert all(isinstance(line, str) for line in job["script"] + job["before_script"])
    assert all(isinstance(v, str) for v in job["variables"].values())
    (junit,) = re.findall(r"-o junit=(\S+)", " ".join(job["script"]))
    assert job["artifacts"]["when"] == "always"  # kept when the check failed the job
    assert job["artifacts"]["reports"]["junit"] == junit and junit in job["artifacts"]["paths"]
    # Installing is all that before_script does (the test replaces it with this checkout).
    assert all(re.match(r"(apt-get|python -m pip) ", line) for line in job["before_script"])


@pytest.mark.parametrize("shell", [["bash", "--noprofile", "--norc", "-eo", "pipefail"], ["sh", "-e"]])
@pytest.mark.parametrize(("broken_too", "exit_code"), [(False, 0), (True, 1)])
def test_the_gitlab_script_checks_and_writes_junit_whatever_the_verdict(
    tmp_path: Path, ociboot_on_path: Path, broken: Path, shell: list[str], broken_too: bool, exit_code: int
) -> None:
    job = gitlab_job()
    variables = job["variables"] | {
        "OCIBOOT_IMAGES": f"{EXAMPLE} {broken}" if broken_too else str(EXAMPLE),
        "OCIBOOT_ARGS": "--profile cos" if not broken_too else "",
    }
    script = tmp_path / "script.sh"
    script.write_text("\n".join(job["script"]) + "\n")
    env = {**os.environ, **variables, "PATH": f"{ociboot_on_path}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([*shell, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == exit_code, done.stderr
    suites = ET.parse(tmp_path / job["artifacts"]["reports"]["junit"]).getroot()
    assert len(suites.findall("testsuite")) == (2 if broken_too else 1)
    assert (int(suites.get("failures") or 0) > 0) == broken_too


def test_a_gitlab_image_named_like_an_option_is_an_image(tmp_path: Path, ociboot_on_path: Path) -> None:
    job = gitlab_job()
    victim = tmp_path / "victim"
    victim.write_text("kept\n")
    variables = job["variables"] | {"OCIBOOT_IMAGES": f"{EXAMPLE} --output={victim}"}
    script = tmp_path / "script.sh"
    script.write_text("\n".join(job["script"]) + "\n")
    env = {**os.environ, **variables, "PATH": f"{ociboot_on_path}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["sh", "-e", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 3, done.stderr  # an image by that name cannot be read
    assert victim.read_text() == "kept\n"
