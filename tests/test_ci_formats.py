"""CI outputs as the CI systems that ingest them check them.

- SARIF: the OASIS SARIF 2.1.0 schema (tests/schemas) and SARIF Multitool's GitHub rules
  (`validate --rule-kind Gh`, what code scanning requires of an upload), zero errors; a run per
  image platform with a category of its own; fingerprints that follow a finding from one build
  to the next and tell two images apart.
- JUnit: the XSD of Jenkins' xunit plugin; test names unique within a suite and the same whatever
  profile was detected.
- JSON: every `--format json` document against its schema in ociboot/schemas, hostile names
  (their `<key>Base64` raw bytes) included; an installed wheel ships the schemas.
"""

from __future__ import annotations

import enum
import inspect
import json
import shutil
import subprocess
import sys
import typing
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer
import xmlschema
from typer.testing import CliRunner

from ociboot import schemas
from ociboot.cli import app
from ociboot.render import render_junit, render_sarif
from ociboot.render.sarif import GITHUB_MAX_RUNS, categories, category
from ociboot.report import Finding, Outcome, Report, RuleInfo, Severity
from tests.support.bootimages import KVER, bootable, generic
from tests.support.imagebuilder import build_index, write_oci_layout

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = REPO / "tests" / "schemas"
#: Where the README's test block installs SARIF Multitool (tests/npm/package.json pins it).
MULTITOOL = REPO / "tests" / "npm" / "node_modules" / ".bin" / "sarif-multitool"
#: A file name no UTF-8 decoder accepts, with a terminal escape in it.
HOSTILE = b"\x1b[2J\x9b\xff".decode("utf-8", "surrogateescape")

runner = CliRunner()


def _broken(extra: str = "") -> Any:
    """Not bootable: a dangling kernel link and two names that are not UTF-8 (one rule, two paths)."""
    img = bootable("generic")
    img.link("/boot/vmlinuz", f"vmlinuz-{KVER}{HOSTILE}")
    img.file(f"/etc/bad{HOSTILE}.conf", "x")
    img.file(f"/etc/worse{HOSTILE}.conf", "x")
    if extra:
        img.file(extra, "rebuilt")  # another build: another digest, the same findings
    return img.build()


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Image references by role: two builds of one repository, the same image in another
    repository, a bootable image, an index with one broken platform, and one that is absent."""
    base = tmp_path_factory.mktemp("ci")
    arm = generic()
    arm.arch = "arm64"  # an x86 kernel in an arm64 image
    one = write_oci_layout(
        base / "os",
        {
            "v1": _broken(),
            "v2": _broken("/etc/build-2"),
            "good": bootable("cos").build(),
            "multi": build_index([bootable("generic").build(), arm.build()]),
        },
    )
    other = write_oci_layout(base / "other", {"v1": _broken()})
    return {
        "v1": f"oci:{one}:v1",
        "v2": f"oci:{one}:v2",
        "good": f"oci:{one}:good",
        "multi": f"oci:{one}:multi",
        "other": f"oci:{other}:v1",
        "gone": f"oci:{base / 'gone'}:v1",
    }


def check(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["check", *args, "--quiet"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout


def _batch(layouts: dict[str, str]) -> list[str]:
    return [layouts[k] for k in ("v1", "good", "multi", "other", "gone")]


# --- SARIF ------------------------------------------------------------------------------------


def _sarif_schema_errors(doc: Any) -> list[str]:
    schema = json.loads((SCHEMAS / "sarif-schema-2.1.0.json").read_text())
    validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def _multitool_findings(sarif: str, tmp_path: Path) -> list[str]:
    """What `sarif-multitool validate --rule-kind Gh` reports about `sarif` (errors and warnings)."""
    if not MULTITOOL.exists():
        pytest.skip(f"SARIF Multitool is not installed at {MULTITOOL} (the README's test block installs it)")
    src, log = tmp_path / "report.sarif", tmp_path / "validation.sarif"
    src.write_text(sarif)
    done = subprocess.run(
        [
            str(MULTITOOL),
            "validate",
            "--rule-kind",
            "Gh",
            "--log",
            "ForceOverwrite",
            "--output",
            str(log),
            str(src),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and log.is_file(), done.stdout + done.stderr
    (run,) = json.loads(log.read_text())["runs"]
    (invocation,) = run["invocations"]
    # The tool ran on the file: an unreadable input or none at all is a notification, not a pass.
    assert invocation["executionSuccessful"] is True, invocation
    assert not invocation.get("toolConfigurationNotifications"), invocation
    assert not invocation.get("toolExecutionNotifications"), invocation
    return [
        f"{r['ruleId']} {r.get('level', 'warning')}: {r['message'].get('arguments')}"
        for r in run["results"]
        if r.get("level", "warning") in ("error", "warning")
    ]


def test_sarif_of_a_batch_is_valid_for_the_schema_and_for_github(
    layouts: dict[str, str], tmp_path: Path
) -> None:
    code, out = check(*_batch(layouts), "--format", "sarif")
    assert code == 3  # one image could not be read
    doc = json.loads(out)
    assert _sarif_schema_errors(doc) == []
    assert _multitool_findings(out, tmp_path) == []

    runs = doc["runs"]
    ids = [run["automationDetails"]["id"] for run in runs]
    # v1, good, the two platforms of multi, other; then the unreadable one.  v1, good and multi
    # are three images of one layout: told apart by their ref names
    assert (
        len(runs) == 6
        and len(set(ids)) == 6
        and all(i.startswith("ociboot/") and i.endswith("/") for i in ids)
    )
    *read, gone = runs
    assert all(run["invocations"][0]["executionSuccessful"] for run in read)
    assert gone["invocations"][0]["executionSuccessful"] is False and gone["results"] == []
    assert gone["automationDetails"]["id"].endswith("/unreadable/")
    (note,) = gone["invocations"][0]["toolExecutionNotifications"]
    assert note["level"] == "error" and layouts["gone"] in note["message"]["text"]
    results = [r for run in read for r in run["results"]]
    assert {r["properties"]["image"] for r in results} == {layouts["v1"], layouts["multi"], layouts["other"]}
    for run in read:
        rules = run["tool"]["driver"]["rules"]
        for rule in rules:
            assert rule["help"]["text"] and rule["help"]["markdown"]
            assert rule["helpUri"].endswith(f"/docs/rules.md#{rule['id'].lower()}")
        for r in run["results"]:
            assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
            (location,) = r["locations"]
            assert location["physicalLocation"]["region"] == {"startLine": 1}
            assert not location["physicalLocation"]["artifactLocation"]["uri"].startswith("/")
            assert set(r["partialFingerprints"]) == {"primaryLocationLineHash", "ocibootFinding/v1"}


def test_the_multitool_finds_what_github_would_refuse(layouts: dict[str, str], tmp_path: Path) -> None:
    """The control for the test above: a rule without `help` and a run too many are errors."""
    _, out = check(layouts["v1"], "--format", "sarif")
    doc = json.loads(out)
    del doc["runs"][0]["tool"]["driver"]["rules"][0]["help"]
    assert any(f.startswith("GH2012 error") for f in _multitool_findings(json.dumps(doc), tmp_path))
    doc = json.loads(out)
    doc["runs"] *= GITHUB_MAX_RUNS + 1
    assert any(" error" in f for f in _multitool_findings(json.dumps(doc), tmp_path))


def _fingerprints(out: str) -> dict[tuple[str, str, str], str]:
    """(category, rule, artifact URI) -> fingerprint, for every result."""
    found = {}
    for run in json.loads(out)["runs"]:
        for r in run["results"]:
            uri = r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            key = (run["automationDetails"]["id"], r["ruleId"], uri)
            assert key not in found  # a finding's location and category name it
            found[key] = r["partialFingerprints"]["primaryLocationLineHash"]
    return found


def test_fingerprints_follow_a_finding_across_runs_and_builds_and_tell_images_apart(
    layouts: dict[str, str],
) -> None:
    first = _fingerprints(check(layouts["v1"], "--format", "sarif")[1])
    assert len(first) >= 3 and len(set(first.values())) == len(first)
    assert _fingerprints(check(layouts["v1"], "--format", "sarif")[1]) == first
    # another tag, another digest (the image was rebuilt): the same alerts
    assert _fingerprints(check(layouts["v2"], "--format", "sarif")[1]) == first
    # the same image in another repository: other alerts, under another category
    other = _fingerprints(check(layouts["other"], "--format", "sarif")[1])
    assert len(other) == len(first)
    assert not set(other.values()) & set(first.values())
    assert not {k[0] for k in other} & {k[0] for k in first}


def test_a_sarif_category_prefix_names_every_run(layouts: dict[str, str], tmp_path: Path) -> None:
    """`--sarif-category` is what the action's `category` input becomes: the prefix of every
    run's category, unreadable ones too; one that is no category is a usage error."""
    batch = [layouts["v1"], layouts["gone"]]
    _, plain = check(*batch, "--format", "sarif")
    code, out = check(*batch, "--format", "sarif", "--sarif-category", "nightly/strict/")
    assert code == 3
    ids = [run["automationDetails"]["id"] for run in json.loads(out)["runs"]]
    assert ids == [
        f"nightly/strict/{run['automationDetails']['id'][8:]}" for run in json.loads(plain)["runs"]
    ]
    assert _multitool_findings(out, tmp_path) == []
    for bad in ("", "/", "a\nb"):
        code, _ = check(layouts["good"], "--format", "sarif", "--sarif-category", bad)
        assert code == 2, bad


def test_a_category_names_the_repository_and_platform_only() -> None:
    digest = "sha256:" + "a" * 64
    by_tag = category("docker://reg.example:5000/os/img:v1", "linux/amd64")
    assert by_tag == "ociboot/reg.example:5000/os/img/linux/amd64/"
    assert category(f"docker://reg.example:5000/os/img@{digest}", "linux/amd64") == by_tag
    assert category("docker://reg.example:5000/os/img:v1", "linux/arm64") != by_tag
    assert category("docker://reg.example:5000/os/img:v1", "linux/amd64", unreadable=True) != by_tag
    assert category("oci:/srv/layout:v1", "linux/amd64") == category("oci:/srv/layout:v2", "linux/amd64")


def test_categories_are_unique_within_a_document_and_the_same_for_the_same_batch() -> None:
    """GitHub refuses two runs of one category in an upload: two tags of one repository, or one
    image listed twice, are told apart, the same way every time."""
    batch = [
        ("docker://reg.example/os/img:v1", "linux/amd64", False),
        ("docker://reg.example/os/img:v2", "linux/amd64", False),
        ("docker://reg.example/os/img:v2", "linux/amd64", False),
        ("docker://reg.example/os/img:v1", "linux/arm64", False),
        ("docker://reg.example/os/img:v1", "linux/amd64", True),
    ]
    names = categories(batch)
    assert len(set(names)) == len(names) == 5 and names == categories(batch)
    assert names[0] == "ociboot/docker://reg.example/os/img:v1/linux/amd64/"
    assert names[1:3] == [
        "ociboot/docker://reg.example/os/img:v2/linux/amd64/#1/",
        "ociboot/docker://reg.example/os/img:v2/linux/amd64/#2/",
    ]
    # alone on its platform, or unreadable, a run keeps the repository's category
    assert names[3] == category("docker://reg.example/os/img:v9", "linux/arm64")
    assert names[4] == "ociboot/reg.example/os/img/linux/amd64/unreadable/"


# --- JUnit ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def junit_xsd() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(SCHEMAS / "junit-10.xsd"))


def _cases(xml: str) -> dict[str, list[tuple[str, str]]]:
    root = xmlschema.XMLResource(xml).root
    return {
        str(s.get("name")): [(str(c.get("classname")), str(c.get("name"))) for c in s.iter("testcase")]
        for s in root.iter("testsuite")
    }


def test_junit_of_a_batch_is_valid_for_the_xunit_xsd(
    layouts: dict[str, str], junit_xsd: xmlschema.XMLSchema
) -> None:
    code, out = check(*_batch(layouts), "--format", "junit")
    assert code == 3
    errors = [str(e.reason) for e in junit_xsd.iter_errors(out)]
    assert errors == []
    suites = _cases(out)
    assert len(suites) == 6
    for name, cases in suites.items():
        assert len(set(cases)) == len(cases), (name, Counter(cases).most_common(2))
    (v1,) = [cases for name, cases in suites.items() if name.startswith(layouts["v1"])]
    bad_names = [n for c, n in v1 if c == "ociboot.LAY-004"]
    assert len(bad_names) >= 2 and len(set(bad_names)) == len(bad_names)  # one rule, two paths


def test_junit_names_do_not_depend_on_the_profile(layouts: dict[str, str]) -> None:
    """A test keeps its name when the detected profile changes: the profile is a suite property."""
    by_profile = {}
    for profile in ("auto", "cos", "generic"):
        _, out = check(layouts["good"], "--format", "junit", "--profile", profile)
        (cases,) = _cases(out).values()
        by_profile[profile] = set(cases)
        assert f'name="profile" value="{"cos" if profile == "auto" else profile}"' in out
    assert by_profile["auto"] == by_profile["cos"]
    shared = {rule for rule, _ in by_profile["cos"]} & {rule for rule, _ in by_profile["generic"]}
    assert shared  # the generic rules run in the cos profile too, under the same names
    for rule in shared:
        assert {c for c in by_profile["cos"] if c[0] == rule} == {
            c for c in by_profile["generic"] if c[0] == rule
        }


def _report(*findings: Finding) -> Report:
    rules = {f.rule: RuleInfo(f.rule, "t", "d", f.severity) for f in findings}
    return Report("oci:/srv/os:v1", "sha256:" + "b" * 64, "linux/amd64", "cos", "detected", findings, rules)


def test_two_findings_of_one_rule_and_path_keep_distinct_stable_names(junit_xsd: xmlschema.XMLSchema) -> None:
    first = Finding("LAY-005", Severity.WARNING, Outcome.FAIL, "leftover a", "/etc")
    second = Finding("LAY-005", Severity.WARNING, Outcome.FAIL, "leftover b", "/etc")
    out = render_junit([_report(first, second)])
    junit_xsd.validate(out)
    (cases,) = _cases(out).values()
    assert cases == [("ociboot.LAY-005", "LAY-005 /etc"), ("ociboot.LAY-005", "LAY-005 /etc #2")]
    # the first one passing next time does not rename the second
    passed = Finding("LAY-005", Severity.WARNING, Outcome.PASS, "leftover a", "/etc")
    assert set(_cases(render_junit([_report(passed, second)]))["oci:/srv/os:v1 [linux/amd64]"]) == set(cases)
    sarif = json.loads(render_sarif([_report(first, second)]))
    prints = [r["partialFingerprints"]["primaryLocationLineHash"] for r in sarif["runs"][0]["results"]]
    assert len(set(prints)) == 2
    again = json.loads(render_sarif([_report(passed, second)]))["runs"][0]["results"]
    assert [r["partialFingerprints"]["primaryLocationLineHash"] for r in again] == prints[1:]


# --- JSON Schemas -----------------------------------------------------------------------------

#: Every `--format json` document: the schema (ociboot/schemas) and a command that writes it.
#: A new document adds its schema file, its entry in schemas.VERSIONS and a line here.
JSON_DOCUMENTS: dict[str, list[str]] = {
    "check": ["check", "-q", "{v1}", "{multi}", "{good}", "{gone}"],
    "inspect": ["inspect", "-q", "{multi}"],
    "ls": ["ls", "-q", "-R", "{v1}", "/"],
    "stat": ["stat", "-q", "{v1}", "/boot/vmlinuz"],
    "layers": ["layers", "-q", "{v1}"],
    "rules": ["rules"],
    "cache-info": ["cache", "info", "--cache-dir", "{cache}"],
    "cache-prune": ["cache", "prune", "--cache-dir", "{cache}"],
}
#: Documents whose output above holds a hostile name, so their `<key>Base64` fields are checked.
HOSTILE_DOCUMENTS = {"check", "ls", "stat"}


def _raw_fields(doc: Any) -> int:
    if isinstance(doc, dict):
        return sum(k.endswith("Base64") for k in doc) + sum(_raw_fields(v) for v in doc.values())
    if isinstance(doc, list):
        return sum(_raw_fields(v) for v in doc)
    return 0


@pytest.mark.parametrize("document", sorted(JSON_DOCUMENTS))
def test_every_json_document_follows_its_shipped_schema(
    document: str, layouts: dict[str, str], tmp_path: Path
) -> None:
    args = [a.format(**layouts, cache=tmp_path / "cache") for a in JSON_DOCUMENTS[document]]
    result = runner.invoke(app, [*args, "--format", "json"])
    assert result.exit_code in (0, 1, 3), result.output
    doc = json.loads(result.stdout)
    schema = schemas.load(document)
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = [
        f"{list(e.absolute_path)}: {e.message}"
        for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)
    ]
    assert errors == []
    assert doc["$schema"] == schema["$id"] == schemas.schema_id(document)
    assert doc["schemaVersion"] == schemas.VERSIONS[document]
    if document in HOSTILE_DOCUMENTS:
        assert _raw_fields(doc) > 0


def test_a_schema_refuses_what_it_does_not_document(layouts: dict[str, str]) -> None:
    """The schemas are strict where the output is ours: an unknown key or a wrong type fails."""
    doc = json.loads(
        runner.invoke(app, ["stat", layouts["v1"], "/etc", "--format", "json", "--quiet"]).stdout
    )
    validator = jsonschema.Draft202012Validator(schemas.load("stat"))
    assert validator.is_valid(doc)
    assert not validator.is_valid({**doc, "surprise": 1})
    assert not validator.is_valid({**doc, "pathBase64": "not base64!"})
    assert not validator.is_valid({**doc, "schemaVersion": 99})


def _json_commands() -> set[str]:
    """Every command (`cache info` as `cache-info`) that takes `--format json`: read from the
    CLI's declarations, so that a new one without a schema fails here."""
    found = set()

    def walk(typer_app: typer.Typer, prefix: str) -> None:
        for command in typer_app.registered_commands:
            assert command.callback is not None
            name = command.name or command.callback.__name__.rstrip("_").replace("_", "-")
            # What typer reads: a wrapped command's own hints name types imported when it runs.
            hints = typing.get_type_hints(command.callback, include_extras=True)
            for hint in hints.values():
                base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
                if (
                    inspect.isclass(base)
                    and issubclass(base, enum.Enum)
                    and {"json", "jsonl"} & {m.value for m in base}
                ):
                    found.add(prefix + name)
        for group in typer_app.registered_groups:
            assert group.typer_instance is not None and group.name
            walk(group.typer_instance, f"{prefix}{group.name}-")

    walk(app, "")
    return found


#: Commands whose `--format json` is another command's document, validated where they are
#: tested (tests/test_promote.py::test_reports_of_a_promotion_go_where_check_sends_them).
SAME_DOCUMENT = {"promote": "check"}
#: Documents only a registry gives: validated against their schema where the tests start one.
NEEDS_A_REGISTRY = {
    "verdicts": "tests/test_verdict.py::verdicts",
    "audit-record": "tests/test_audit.py::test_every_record_follows_the_shipped_schema",
}


#: Commands whose `--format jsonl` writes a document a line, named so in schemas.VERSIONS.
LINE_DOCUMENTS = {"audit": "audit-record"}


def test_every_json_command_has_a_schema() -> None:
    documents = set(JSON_DOCUMENTS) | set(NEEDS_A_REGISTRY)
    commands = {LINE_DOCUMENTS.get(c, c) for c in _json_commands()}
    assert commands - set(SAME_DOCUMENT) == documents == set(schemas.VERSIONS)
    shipped = {p.name for p in (REPO / "ociboot" / "schemas").glob("*.json")}
    assert {schemas.file_name(d) for d in schemas.VERSIONS} <= shipped


def test_an_installed_wheel_ships_the_schemas(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(REPO / "ociboot", src / "ociboot", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    dist, site = tmp_path / "dist", tmp_path / "site"
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)], check=True
    )
    (wheel,) = dist.glob("ociboot-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"ociboot/schemas/{schemas.file_name(d)}" for d in schemas.VERSIONS} <= names
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    # Run from / with only the installed copy on the path: not this checkout's files.
    code = "import ociboot.schemas as s; [s.load(d) for d in s.VERSIONS]; print(s.__file__)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd="/",
        env={"PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.startswith(str(site))
