"""JUnit XML valid against the XSD of Jenkins' xunit plugin (junit-10.xsd, vendored in
tests/schemas): a testsuite per image platform, a testcase per finding.

A test report plugin follows a test by (suite, classname, name) from one build to the next, so
these never hold what a run decides: the detected profile is a suite property, not part of a
classname, and two findings of one rule and path are told apart by their occurrence
(`names.case_name`).  Every attribute and text goes through textsafe: XML 1.0 cannot carry most
C0 characters, even as references.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.etree import ElementTree as ET

from ..report import Outcome, Report, Severity, Unreadable
from ..textsafe import escape
from .names import case_name, numbered

#: The classname of every finding's testcase is this, a dot, and the rule id.
CLASSNAME_PREFIX = "ociboot"
_COUNTS = ("tests", "failures", "errors", "skipped")


def _lines(*parts: str) -> str:
    """Lines of an element's text, each escaped (a newline inside a part is data)."""
    return "\n".join(escape(part) for part in parts)


def _unreadable_suite(suites: ET.Element, u: Unreadable) -> dict[str, int]:
    suite = ET.SubElement(suites, "testsuite", name=u.label, tests="1", failures="0", errors="1")
    suite.set("skipped", "0")
    case = ET.SubElement(suite, "testcase", classname=f"{CLASSNAME_PREFIX}.read", name=f"read {u.label}")
    ET.SubElement(case, "error", message=u.error, type="unreadable").text = _lines(u.error)
    return {"tests": 1, "failures": 0, "errors": 1, "skipped": 0}


def _report_suite(suites: ET.Element, r: Report, fatal_warnings: bool) -> dict[str, int]:
    suite = ET.SubElement(suites, "testsuite", name=f"{r.image} [{r.platform}]")
    props = ET.SubElement(suite, "properties")
    named = {
        "digest": r.digest,
        "indexDigest": r.index_digest,
        "platform": r.platform,
        "profile": r.profile,
        "profileReason": r.profile_reason,
    }
    for prop, text in named.items():
        if text:
            ET.SubElement(props, "property", name=prop, value=text)
    counts = dict.fromkeys(_COUNTS, 0)
    for f, occurrence in numbered(r.findings):
        case = ET.SubElement(
            suite, "testcase", classname=f"{CLASSNAME_PREFIX}.{f.rule}", name=case_name(f, occurrence)
        )
        counts["tests"] += 1
        detail = _lines(f.message, *f.evidence, *([f"fix: {f.hint}"] if f.hint else []))
        gating = f.severity is Severity.ERROR or (fatal_warnings and f.severity is Severity.WARNING)
        if f.outcome is Outcome.FAIL and gating:
            ET.SubElement(case, "failure", message=f.message, type=str(f.severity)).text = detail
            counts["failures"] += 1
        elif f.outcome is Outcome.ERROR and gating:
            ET.SubElement(case, "error", message=f.message, type="not-run").text = detail
            counts["errors"] += 1
        elif f.outcome is Outcome.SKIP:
            ET.SubElement(case, "skipped", message=f.message)
            counts["skipped"] += 1
        elif f.outcome in (Outcome.FAIL, Outcome.ERROR):
            ET.SubElement(case, "system-out").text = f"{f.severity}: {detail}"
    for key, value in counts.items():
        suite.set(key, str(value))
    return counts


def render_junit(
    reports: Sequence[Report], *, fatal_warnings: bool = False, unreadable: Sequence[Unreadable] = ()
) -> str:
    """A testsuite per image platform (digest, index, platform and profile as properties), a
    testcase per finding (failure / error / skipped), and a testsuite with one `<error>` testcase
    per image that could not be read."""
    suites = ET.Element("testsuites", name="ociboot")
    total = dict.fromkeys(_COUNTS, 0)
    counted = [_unreadable_suite(suites, u) for u in unreadable]
    counted += [_report_suite(suites, r, fatal_warnings) for r in reports]
    for counts in counted:
        for key, value in counts.items():
            total[key] += value
    # The XSD's <testsuites> has no `skipped`: each suite carries its own.
    for key in ("tests", "failures", "errors"):
        suites.set(key, str(total[key]))
    # Every attribute is escaped here, element texts where they are built (`_lines`: their
    # newlines are structure).
    for el in suites.iter():
        el.attrib.update({key: escape(value) for key, value in el.attrib.items()})
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


__all__ = ["CLASSNAME_PREFIX", "render_junit"]
