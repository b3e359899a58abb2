"""`ociboot check` wiring: profiles, policy files, exit codes, formats, several images."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ociboot import pipeline
from ociboot.boot.check import Profile, rule
from ociboot.boot.context import Policy
from ociboot.boot.profiles import PolicyError, load_policy
from ociboot.boot.rules import ALL_RULES
from ociboot.cli import app
from ociboot.errors import OcibootError
from ociboot.ref import ImageRef, Transport
from ociboot.report import Severity
from ociboot.spec import Platform
from tests.support.bootimages import KVER, bootable, generic, kernel
from tests.support.imagebuilder import build_index, write_oci_archive, write_oci_layout

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("profile", "reason"),
    [
        ("generic", "no /etc/kairos-release"),
        ("cos", "/etc/elemental"),
        ("kairos", "/etc/kairos-release"),  # Kairos images carry /etc/cos too: kairos wins
        ("bootc", "containers.bootc"),
    ],
)
def test_auto_profile_detection_says_why(tmp_path: Path, profile: str, reason: str) -> None:
    report = bootable(profile).check(tmp_path)
    assert report.profile == profile and reason in report.profile_reason


def test_legacy_cos_is_detected_by_etc_cos(tmp_path: Path) -> None:
    img = generic().file("/etc/cos/config", "GRUBCONF=/etc/cos/grub.cfg\n")
    assert img.check(tmp_path).profile == "cos"


def test_forced_profile(tmp_path: Path) -> None:
    report = bootable("cos").check(tmp_path, profile="generic")
    assert report.profile == "generic" and report.profile_reason == "chosen with --profile"


def test_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        'profile = "kairos"\nkernel = "/boot/k"\nrequire-packages = ["systemd", "kernel"]\n'
        'skip = ["LAY-004"]\nfatal-warnings = true\n[severity]\nKRN-005 = "error"\n'
    )
    policy = load_policy(path, Policy(skip=("SSH-001",)))
    assert (policy.profile, policy.kernel, policy.fatal_warnings) == ("kairos", "/boot/k", True)
    assert policy.require_packages == ("systemd", "kernel")
    assert policy.skip == ("SSH-001", "LAY-004") and policy.severity == {"KRN-005": "error"}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("profile = 'nope'", "profile 'nope'"),
        ("colour = 1", "unknown keys colour"),
        ("skip = 'LAY-004'", "skip must be a list"),
        ("[severity]\nKRN-005 = 'fatal'", "must be error, warning or info"),
        ("profile = ", "not valid TOML"),
        ("[severity]\nKRN-005 = ['error']", "must be error, warning or info, not a list"),
        ("[severity]\nKRN-005 = {level = 'error'}", "must be error, warning or info, not a table"),
        ("[severity.KRN-005]\nlevel = 'error'", "must be error, warning or info, not a table"),
        ("[severity]\nNOPE-1 = 'error'", "unknown rule id NOPE-1"),
        pytest.param("skip = " + "[" * 5000 + "]" * 5000, "nested too deeply", id="deep-arrays"),
        pytest.param("kernel = " + "{a = " * 5000 + "1" + "}" * 5000, "nested too deeply", id="deep-tables"),
    ],
)
def test_bad_policy_files_are_usage_errors(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=needle) as info:
        load_policy(path)
    assert info.value.exit_code == 2
    code, _, err = run("--policy", str(path), str(tmp_path / "never-read.tar"))
    assert code == 2 and needle in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("Error: Invalid value for --policy: ")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ('[severity]\n"\\u001b]0;T\\u0007" = "error"', r"unknown rule id \x1b]0;T\x07;"),
        ('skip = ["\\u009b2J"]', r"unknown rule id(s) \xc2\x9b2J;"),
    ],
)
def test_controls_in_a_policy_file_never_reach_the_terminal(tmp_path: Path, text: str, shown: str) -> None:
    """A policy file may come from the repository under test: its usage errors are escaped."""
    path = tmp_path / "p.toml"
    path.write_text(text)
    code, _, err = run("--policy", str(path), str(tmp_path / "never-read.tar"))
    assert code == 2 and shown in err
    assert not any(0x80 <= ord(c) <= 0x9F or (ord(c) < 0x20 and c != "\n") for c in err)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("check-cli")
    good = bootable("generic").build()
    broken = generic().drop("/boot").build()
    arm = generic()
    arm.arch = "arm64"
    write_oci_layout(tmp / "multi", {"v1": build_index([good, arm.build()])})
    return {
        "good": write_oci_archive(tmp / "good.tar", {"v1": good}),
        "broken": write_oci_archive(tmp / "broken.tar", {"v1": broken}),
        "multi": tmp / "multi",
    }


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["check", "-q", *args])
    return result.exit_code, result.stdout, result.stderr


def test_exit_codes(images: dict[str, Path], tmp_path: Path) -> None:
    assert run(str(images["good"]))[0] == 0
    code, out, _ = run(str(images["broken"]))
    assert code == 1 and "NOT BOOTABLE" in out and "KRN-001" in out
    assert run(str(images["good"]), str(images["broken"]))[0] == 1
    code, out, err = run(str(images["good"]), str(tmp_path / "missing.tar"))
    assert code == 3 and "missing.tar" in err and "BOOTABLE" in out  # the readable one is still reported


def test_json_output_to_a_file(images: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    code, stdout, _ = run(str(images["broken"]), "--format", "json", "--output", str(out))
    assert code == 1 and stdout == ""
    doc = json.loads(out.read_text())
    assert doc["bootable"] is False and doc["reports"][0]["facts"]["kernel"] is None


@pytest.mark.parametrize("where", ["no-such-dir/report.json", "."])
def test_an_unwritable_output_is_a_usage_error_before_any_image_is_read(
    images: dict[str, Path], tmp_path: Path, where: str
) -> None:
    missing = tmp_path / "never-read.tar"  # if it were read, its error line would be printed
    code, out, err = run(
        str(images["good"]), str(missing), "--format", "json", "--output", str(tmp_path / where)
    )
    assert code == 2 and out == "" and "--output" in err
    assert "Traceback" not in err and "never-read" not in err


def test_all_platforms_gives_one_report_each(images: dict[str, Path]) -> None:
    code, out, _ = run(f"oci:{images['multi']}:v1", "--all-platforms", "--format", "json")
    doc = json.loads(out)
    assert [r["platform"] for r in doc["reports"]] == ["linux/amd64", "linux/arm64"]
    arm = doc["reports"][1]
    assert any(f["rule"] == "KRN-003" and f["outcome"] == "fail" for f in arm["findings"])
    assert code == 1


def test_skip_and_unknown_rules(images: dict[str, Path]) -> None:
    assert run(str(images["good"]), "--skip", "NOPE-1")[0] == 2
    _, out, _ = run(str(images["broken"]), "--skip", "KRN-001", "--format", "json")
    findings = json.loads(out)["reports"][0]["findings"]
    assert [f["outcome"] for f in findings if f["rule"] == "KRN-001"] == ["skip"]


def test_sarif_and_junit_formats(images: dict[str, Path]) -> None:
    code, out, _ = run(str(images["broken"]), "--format", "sarif")
    assert code == 1 and json.loads(out)["runs"][0]["results"]
    code, out, _ = run(str(images["broken"]), "--format", "junit")
    assert code == 1 and out.startswith("<?xml") and "<failure" in out


def test_rules_listing_is_stable_json() -> None:
    result = runner.invoke(app, ["rules", "--format", "json"])
    doc = json.loads(result.stdout)
    ids = [r["id"] for r in doc["rules"]]
    assert ids == sorted(ids) == sorted(r.id for r in ALL_RULES)
    assert all(r["sources"] and r["severity"] and r["title"] for r in doc["rules"])


def test_profiles_are_one_enum_that_rules_key_their_severities_by() -> None:
    # The spellings users type and reports print; AUTO chooses, it is no rule set.
    assert [str(p) for p in Profile] == ["auto", "generic", "cos", "kairos", "bootc"]
    assert Profile.rule_sets() == (Profile.GENERIC, Profile.COS, Profile.KAIROS, Profile.BOOTC)
    for r in ALL_RULES:
        assert r.severity and all(type(p) is Profile and p is not Profile.AUTO for p in r.severity), r.id
        assert all(isinstance(s, Severity) for s in r.severity.values()), r.id
    with pytest.raises(ValueError, match="auto is not a rule set"):
        rule("X-001", "never", {Profile.AUTO: Severity.ERROR})(lambda ctx: ())
    result = runner.invoke(app, ["rules", "--profile", "bootc", "--format", "json"])
    listed = json.loads(result.output)["rules"]
    assert listed and all("bootc" in r["severity"] for r in listed)


def test_readme_example_is_bootable() -> None:
    assert run(str(REPO / "fixtures/example-cos.tar"))[0] == 0


def test_a_layer_that_fails_when_read_again_is_an_error_not_a_finding(tmp_path: Path) -> None:
    # /boot/vmlinuz points outside the kernel globs, so the rules re-read its layer (Fetch); the
    # blob changes on disk before that second read.  "Could not read the image" raises
    # (docs/architecture.md §4-5): it must not become a rule's "internal error" finding.
    img = generic().drop(f"/boot/vmlinuz-{KVER}").file(f"/opt/k/vmlinuz-{KVER}", kernel())
    img.link("/boot/vmlinuz", f"/opt/k/vmlinuz-{KVER}")
    built = img.build()
    layout = tmp_path / "layout"
    write_oci_layout(layout, {"latest": built})
    blob = layout / "blobs" / "sha256" / built.layers[0].digest.split(":")[1]
    reads: list[str] = []

    def progress(name: str, total: int) -> Callable[[int], None]:
        reads.append(name)
        if len(reads) == 2:  # the re-read: the bytes on disk no longer match the manifest
            data = bytearray(blob.read_bytes())
            data[len(data) // 2] ^= 0xFF
            blob.write_bytes(bytes(data))
        return lambda n: None

    options = pipeline.Options(platform=Platform("linux", "amd64"), progress=progress)
    ref = str(ImageRef(Transport.OCI, path=str(layout), name="latest"))
    with pipeline.opened(ref, options) as source:
        image = pipeline.open_image(source, options)
        with pytest.raises(OcibootError):
            pipeline.check_image(image, Policy(profile="generic"), options)
    assert len(reads) == 2  # read again once, not once per rule that asked
