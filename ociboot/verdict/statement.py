"""The verdict as an in-toto Statement v1 with a test-result v0.1 predicate: made, and read back.

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": "HOST/REPO", "digest": {"sha256": "<the checked digest>"}}],
     "predicateType": "https://in-toto.io/attestation/test-result/v0.1",
     "predicate": {"result": "PASSED" | "WARNED" | "FAILED",
                   "passedTests": [rule ids], "warnedTests": [...], "failedTests": [...],
                   "configuration": [ociboot's version, the policy's digest]}}

One statement is about one digest: an index's covers every platform judged.  A rule id is
failed when it blocks booting on any platform, warned when it failed without blocking on some
platform and blocked on none, passed when it passed on every platform it ran on.  `result` is
FAILED when some platform is not bootable under the policy, WARNED when every platform is
bootable but a warning-severity rule failed or could not run, PASSED otherwise.  A check that
could not read a platform makes no statement at all (it is not a judgement).

What is read back is hostile until checked: `parse` is bounded (MAX_STATEMENT_BYTES) and strict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..boot.context import Policy
from ..digest import Digest
from ..errors import InvalidManifest
from ..report import Outcome, Report, Severity
from ..spec import parse_json

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://in-toto.io/attestation/test-result/v0.1"
#: A statement is read into memory to be parsed, and `verdicts` keeps what every verdict of a
#: list (up to MAX_REFERRERS) says: ours are a few KiB (one short id per rule, under a hundred
#: rules), so these bound what a list of hostile ones makes ociboot hold (tens of MiB).
MAX_STATEMENT_BYTES = 16 << 10
MAX_TEST_IDS = 512  # passedTests, warnedTests and failedTests together
#: configuration[].name of the two ResourceDescriptors a verdict carries.
TOOL = "ociboot"
POLICY = "ociboot-policy"


class Result(StrEnum):
    PASSED = "PASSED"
    WARNED = "WARNED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class Tally:
    result: Result
    passed: tuple[str, ...]
    warned: tuple[str, ...]
    failed: tuple[str, ...]

    @classmethod
    def of(cls, reports: tuple[Report, ...], fatal_warnings: bool) -> Tally:
        """The platforms' reports of one digest combined (the module docstring says how)."""
        if not reports:
            raise ValueError("a verdict needs at least one report")
        failed: set[str] = set()
        warned: set[str] = set()
        passed: set[str] = set()
        warning = False
        for report in reports:
            blocking = {id(f) for f in report.failures(fatal_warnings=fatal_warnings)}
            for finding in report.findings:
                if id(finding) in blocking:
                    failed.add(finding.rule)
                elif finding.outcome in (Outcome.FAIL, Outcome.ERROR):
                    warned.add(finding.rule)
                    warning = warning or finding.severity is Severity.WARNING
                elif finding.outcome is Outcome.PASS:
                    passed.add(finding.rule)
        warned -= failed
        passed -= failed | warned
        if failed or not all(r.bootable(fatal_warnings=fatal_warnings) for r in reports):
            result = Result.FAILED
        else:
            result = Result.WARNED if warning else Result.PASSED
        return cls(result, tuple(sorted(passed)), tuple(sorted(warned)), tuple(sorted(failed)))


def make(name: str, subject: Digest, tests: Tally, policy: Policy, version: str) -> bytes:
    """The statement's bytes (compact JSON, keys sorted: one verdict, one digest)."""
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {subject.algorithm: subject.hex}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "result": str(tests.result),
            "passedTests": list(tests.passed),
            "warnedTests": list(tests.warned),
            "failedTests": list(tests.failed),
            "configuration": [
                {"name": TOOL, "uri": f"pkg:pypi/ociboot@{version}", "annotations": {"version": version}},
                {
                    "name": POLICY,
                    "digest": {policy.digest.algorithm: policy.digest.hex},
                    "mediaType": "application/json",
                },
            ],
        },
    }
    return json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Statement:
    """A test-result statement read back (not yet compared with the digest it hangs from)."""

    subjects: tuple[Digest, ...]
    tests: Tally
    policy: Digest | None
    version: str | None


def parse(data: bytes, what: str) -> Statement | None:
    """The statement in `data`; None when it is some other kind of statement (an SBOM, a
    provenance: not a verdict).  InvalidManifest when it claims to be a verdict and is malformed."""
    if len(data) > MAX_STATEMENT_BYTES:
        raise InvalidManifest(f"{what} is {len(data)} bytes, over the {MAX_STATEMENT_BYTES} byte cap")
    obj = parse_json(data, what)
    if not isinstance(obj, dict) or obj.get("_type") != STATEMENT_TYPE:
        raise InvalidManifest(f"{what} is not an in-toto Statement v1")
    if obj.get("predicateType") != PREDICATE_TYPE:
        return None
    predicate = _object(obj.get("predicate"), f"{what} predicate")
    given = predicate.get("result")
    if not isinstance(given, str) or given not in set(Result):
        raise InvalidManifest(f"{what}: its result is not PASSED, WARNED or FAILED")
    result = Result(given)
    tests = Tally(
        result,
        _ids(predicate, "passedTests", what),
        _ids(predicate, "warnedTests", what),
        _ids(predicate, "failedTests", what),
    )
    if (ids := len(tests.passed) + len(tests.warned) + len(tests.failed)) > MAX_TEST_IDS:
        raise InvalidManifest(f"{what} lists {ids} test ids, more than the {MAX_TEST_IDS} a verdict may")
    subjects = obj.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise InvalidManifest(f"{what}: no subject")
    digests = []
    for entry in subjects:
        entry = _object(entry, f"{what} subject")
        for algorithm, hex_ in _object(entry.get("digest"), f"{what} subject digest").items():
            try:
                digests.append(Digest.parse(f"{algorithm}:{hex_}"))
            except InvalidManifest:
                continue  # an algorithm we do not know cannot name our digest
    policy = version = None
    configuration = predicate.get("configuration") or []
    if not isinstance(configuration, list):
        raise InvalidManifest(f"{what}: configuration is not a list")
    for item in configuration:
        if not isinstance(item, dict):
            continue
        if item.get("name") == POLICY and isinstance(item.get("digest"), dict):
            hex_ = item["digest"].get("sha256")
            policy = Digest.parse(f"sha256:{hex_}") if isinstance(hex_, str) else None
        elif item.get("name") == TOOL and isinstance(item.get("annotations"), dict):
            given = item["annotations"].get("version")
            version = given if isinstance(given, str) else None
    return Statement(tuple(digests), tests, policy, version)


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidManifest(f"{what} is not a JSON object")
    return value


def _ids(predicate: dict[str, Any], key: str, what: str) -> tuple[str, ...]:
    value = predicate.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidManifest(f"{what}: {key} is not a list of strings")
    return tuple(value)
