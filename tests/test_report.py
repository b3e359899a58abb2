"""Report renderers: the documented JSON keys, SARIF 2.1.0 structure, JUnit XML, exit codes."""

from __future__ import annotations

import json
from xml.etree import ElementTree as ET

from ociboot.render import render_junit, render_sarif
from ociboot.report import (
    JSON_SCHEMA_VERSION,
    Finding,
    Outcome,
    Report,
    RuleInfo,
    Severity,
    Unreadable,
    exit_code,
    render_json,
    render_text,
)


def report(*findings: Finding) -> Report:
    rules = {
        f.rule: RuleInfo(f.rule, f"title of {f.rule}", "what it checks", f.severity, ("src",))
        for f in findings
    }
    return Report(
        "oci:img:v1",
        "sha256:" + "a" * 64,
        "linux/amd64",
        "cos",
        "detected",
        findings,
        rules,
        {"kernel": {"path": "/boot/vmlinuz"}},
    )


OK = Finding("KRN-001", Severity.ERROR, Outcome.PASS, "1 kernel found", "/boot/vmlinuz")
BAD = Finding(
    "INI-001",
    Severity.ERROR,
    Outcome.FAIL,
    "no initrd found",
    "/boot",
    ("looked in /boot/initrd*",),
    "run dracut",
)
WARN = Finding("KRN-005", Severity.WARNING, Outcome.FAIL, "no modules.dep", "/usr/lib/modules/6.1")
NOT_RUN = Finding("INI-002", Severity.ERROR, Outcome.ERROR, "initrd over the cap", "/boot/initrd")
INFO = Finding("SIZ-001", Severity.INFO, Outcome.FAIL, "root is big")


def test_verdict_and_exit_codes() -> None:
    assert report(OK, WARN, INFO).bootable() and exit_code([report(OK, WARN)]) == 0
    assert not report(OK, WARN).bootable(fatal_warnings=True)
    assert exit_code([report(OK, WARN)], fatal_warnings=True) == 1
    assert not report(OK, BAD).bootable()
    # A check that could not run is never a pass.
    assert not report(OK, NOT_RUN).bootable()
    assert exit_code([report(OK), report(BAD)]) == 1


def test_json_is_versioned_and_has_the_documented_keys() -> None:
    doc = json.loads(render_json([report(OK, BAD, WARN)]))
    assert doc["schemaVersion"] == JSON_SCHEMA_VERSION and doc["bootable"] is False
    (r,) = doc["reports"]
    assert set(r) == {
        "image",
        "digest",
        "platform",
        "profile",
        "profileReason",
        "bootable",
        "counts",
        "findings",
        "facts",
        "index",
    }
    assert r["index"] is None and doc["unreadable"] == []
    assert r["counts"] == {"pass": 1, "fail": 2, "skip": 0, "error": 0}
    first = r["findings"][0]  # failures first, errors before warnings
    assert first == {
        "rule": "INI-001",
        "severity": "error",
        "outcome": "fail",
        "message": "no initrd found",
        "path": "/boot",
        "evidence": ["looked in /boot/initrd*"],
        "hint": "run dracut",
    }


def test_sarif_has_rules_and_results_for_failures_only() -> None:
    doc = json.loads(render_sarif([report(OK, BAD, WARN, NOT_RUN)], tool_version="1.2"))
    assert doc["version"] == "2.1.0" and doc["$schema"].endswith("/sarif-schema-2.1.0.json")
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == sorted(r["id"] for r in rules)
    results = run["results"]
    assert {r["ruleId"] for r in results} == {"INI-001", "KRN-005", "INI-002"}
    for r in results:
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
        assert r["level"] in ("error", "warning", "note")
        assert r["locations"][0]["physicalLocation"]["region"] == {"startLine": 1}
    by_rule = {r["ruleId"]: r for r in results}
    assert by_rule["KRN-005"]["level"] == "warning"
    assert "could not run" in by_rule["INI-002"]["message"]["text"]


def test_junit_counts_failures_errors_and_skips() -> None:
    skipped = Finding("LAY-004", Severity.WARNING, Outcome.SKIP, "skipped by request")
    root = ET.fromstring(render_junit([report(OK, BAD, WARN, NOT_RUN, skipped)]))
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
        "5",
        "1",
        "1",
        "1",
    )
    assert root.get("failures") == "1"
    strict = ET.fromstring(render_junit([report(WARN)], fatal_warnings=True))
    assert strict.get("failures") == "1"


def test_text_lists_failures_with_evidence_and_hint() -> None:
    text = render_text([report(OK, BAD, WARN)])
    assert "NOT BOOTABLE" in text and "looked in /boot/initrd*" in text and "fix: run dracut" in text
    assert "1 kernel found" not in text  # passes only with verbose
    assert "1 kernel found" in render_text([report(OK, BAD)], verbose=True)


GONE = Unreadable("oci:gone:v1", "oci:gone:v1: no such file or directory")


def test_unreadable_images_fail_every_format() -> None:
    assert exit_code([report(OK)], unreadable=[GONE]) == 3 and exit_code([], unreadable=[GONE]) == 3
    doc = json.loads(render_json([], unreadable=[GONE]))
    assert doc["bootable"] is False
    assert doc["unreadable"] == [{"image": "oci:gone:v1", "platform": None, "error": GONE.error}]
    readable, run = json.loads(render_sarif([report(OK)], unreadable=[GONE]))["runs"]
    assert readable["invocations"][0]["executionSuccessful"] is True
    (invocation,) = run["invocations"]
    assert invocation["executionSuccessful"] is False
    (note,) = invocation["toolExecutionNotifications"]
    assert note["level"] == "error" and "oci:gone:v1" in note["message"]["text"]
    clean = json.loads(render_sarif([report(OK)]))["runs"][0]["invocations"]
    assert clean == [{"executionSuccessful": True, "toolExecutionNotifications": []}]
    root = ET.fromstring(render_junit([], unreadable=[GONE]))
    assert (root.get("tests"), root.get("errors")) == ("1", "1")
    error = root.find("testsuite/testcase/error")
    assert error is not None and error.get("type") == "unreadable" and error.text == GONE.error
    text = render_text([], unreadable=[Unreadable("oci:multi:v1", "layer gone", "linux/arm64")])
    assert text == "oci:multi:v1 [linux/arm64]\n  UNREADABLE: layer gone\n"


def test_an_unreadable_image_with_hostile_bytes_is_valid_in_every_format() -> None:
    """The unreadable entry (added beside the escaping) goes through the same one escaping."""
    hostile = Unreadable("oci:evil\x1b[2J:v1", "bad \x07 body \udcff\x9b", "linux/\x7famd64")
    for render in (render_json, render_sarif):
        out = render([], unreadable=[hostile])
        out.encode("utf-8")  # strict: no lone surrogate
        assert "\x1b" not in out and "\\x1b" in json.dumps(json.loads(out))
    junit = render_junit([], unreadable=[hostile])
    error = ET.fromstring(junit.encode("utf-8")).find("testsuite/testcase/error")
    assert error is not None and error.text == "bad \\x07 body \\xff\\xc2\\x9b"
    text = render_text([], unreadable=[hostile])
    assert not any(c in text for c in "\x1b\x07\x7f\x9b\udcff")
