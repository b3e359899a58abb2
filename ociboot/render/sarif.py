"""SARIF 2.1.0 as GitHub code scanning ingests it: one run per image platform.

GitHub keys an alert on (tool, category, rule, file path, fingerprint) and treats an upload as
the whole truth for its category: a result missing from the next upload closes its alert.  So:

- each image platform is its own run, its category (`automationDetails.id`) naming the image's
  repository and platform and nothing that changes from one build to the next (no tag, no
  digest): two images' findings never merge, and the next build of the same image updates them;
- a result's location is a relative URI made of the repository and the path inside the image,
  with `startLine: 1` (GitHub requires a region; a file in an image has no lines to point at), and
  its `partialFingerprints` hash what the finding is about (repository, platform, rule, path and
  its occurrence), never its digest or wording;
- an image (or one platform of an index) that could not be read is a run of its own category
  (`…/unreadable/`), unsuccessful, with a notification naming it.  Sharing the readable
  category would tell GitHub that the image's findings were fixed.

Every string goes through textsafe (no control character, no lone surrogate); a URI carries a
name's bytes percent-encoded (RFC 3986), exact for any name, UTF-8 or not.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from ..errors import OcibootError
from ..ref import ImageRef, Transport, parse_ref
from ..report import RULES_DOC_URL, Finding, Outcome, Report, RuleInfo, Severity, Unreadable
from ..textsafe import clean, raw
from .markdown import md
from .names import numbered

#: The schema the document names: the OASIS standard's (errata 01), vendored in tests/schemas.
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
INFORMATION_URI = "https://github.com/ociboot/ociboot"
#: Prefix of every run's category (`automationDetails.id`), unless `check --sarif-category` says
#: another (the action's `category` input: upload-sarif names only runs that have no category).
CATEGORY_PREFIX = "ociboot"
#: The partialFingerprints key GitHub combines with the file path and the rule; ours beside it
#: names what our hash covers, versioned, should it ever change.
FINGERPRINT_KEYS = ("primaryLocationLineHash", "ocibootFinding/v1")

#: GitHub code scanning rejects an upload of more runs than this (its "SARIF file limits"), and
#: SARIF Multitool's GitHub rules flag it: `check` warns when a batch's SARIF would exceed it.
GITHUB_MAX_RUNS = 20

#: Appended to the message of a finding whose check could not run (never a pass).
_NOT_RUN = " (check could not run)"
_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def _parsed(image: str) -> ImageRef | None:
    try:
        return parse_ref(image)
    except OcibootError:
        return None  # an unreadable image's text, as typed


def repository(image: str) -> str:
    """What stays the same from one build of `image` to the next: the registry repository, or
    the layout or archive file, without tag, digest, ref name or index.  Text that is not a
    reference is kept as it is."""
    ref = _parsed(image)
    if ref is None:
        return image
    if ref.transport is Transport.DOCKER:
        return f"{ref.registry}/{ref.repository}"
    return f"{ref.transport}:{ref.path}"


def _tagged(image: str) -> str:
    """The reference without its digest (a tag or ref name kept): one build's name, not its bytes."""
    ref = _parsed(image)
    if ref is None or ref.digest is None or (ref.tag is None and ref.transport is Transport.DOCKER):
        return image
    return str(replace(ref, digest=None))


def category_prefix(text: str) -> str:
    """A `--sarif-category`: what GitHub's category input takes, without the trailing `/`."""
    prefix = text.strip().rstrip("/")
    if not prefix or any(not c.isprintable() for c in prefix):
        raise ValueError(
            f"{text!r} is not a category: printable text, e.g. nightly or {CATEGORY_PREFIX}/strict"
        )
    return prefix


def category(
    image: str,
    platform: str | None,
    *,
    unreadable: bool = False,
    name: str | None = None,
    prefix: str = CATEGORY_PREFIX,
) -> str:
    """A run's `automationDetails.id` (GitHub's category is all of it: it ends with `/`): the
    image's repository (or `name`) and platform."""
    parts = [prefix, name or repository(image), platform or "all"]
    return "/".join([*parts, *(["unreadable"] if unreadable else [])]) + "/"


def categories(runs: Sequence[tuple[str, str | None, bool]], prefix: str = CATEGORY_PREFIX) -> list[str]:
    """The category of each (image, platform, unreadable) run of one document, unique within it:
    GitHub refuses an upload with two runs of one category.  Two tags of one repository (or two
    images of one layout) in a batch are named by their tags, then by the reference as given,
    then by their position: the same batch gets the same categories every time."""
    namings = (repository, _tagged, lambda image: image)
    chosen: list[str | None] = [None] * len(runs)
    for naming in namings:
        named = {
            i: category(image, platform, unreadable=bad, name=naming(image), prefix=prefix)
            for i, (image, platform, bad) in enumerate(runs)
            if chosen[i] is None
        }
        taken = Counter([*named.values(), *(c for c in chosen if c is not None)])
        for i, text in named.items():
            if taken[text] == 1:
                chosen[i] = text
    out, seen = [], Counter[str]()
    for i, (image, platform, bad) in enumerate(runs):
        text = chosen[i] or category(image, platform, unreadable=bad, name=image, prefix=prefix)
        seen[text] += 1
        out.append(text if chosen[i] else f"{text}#{seen[text]}/")
    return out


def artifact_uri(image: str, path: str | None) -> str:
    """A relative URI for `path` inside `image`: the repository (or the file's path) as path
    segments, then the path.  Every segment is percent-encoded, so a `:` cannot read as a scheme
    and a `.` or `..` cannot walk."""
    ref = _parsed(image)
    if ref is None:
        base = image
    elif ref.transport is Transport.DOCKER:
        base = f"{ref.registry}/{ref.repository}"
    else:
        base = ref.path
    return "/".join(_segment(s) for s in f"{base}/{path or ''}".split("/") if s)


def _segment(text: str) -> str:
    if text in (".", ".."):
        return text.replace(".", "%2E")
    return quote(raw(text), safe="")


def fingerprint(report: Report, finding: Finding, occurrence: int) -> str:
    """The same finding of the same repository and platform hashes the same in every run."""
    key = "\0".join(
        [repository(report.image), report.platform, finding.rule, finding.path or "", str(occurrence)]
    )
    return hashlib.sha256(raw(key)).hexdigest()[:32]


def _rule(info: RuleInfo) -> dict[str, Any]:
    url = f"{RULES_DOC_URL}#{info.id.lower()}"
    description = " ".join(info.description.split()) or info.title
    out: dict[str, Any] = {
        "id": info.id,
        "name": info.title,
        "shortDescription": {"text": info.title},
        "fullDescription": {"text": description},
        "help": {
            "text": f"{info.title}. {description}\nDocumentation: {url}",
            "markdown": f"**{md(info.title)}**\n\n{md(description)}\n\n[{info.id} in the rules]({url})",
        },
        "helpUri": url,
        "defaultConfiguration": {"level": _LEVEL[info.severity]},
    }
    if info.sources:
        out["properties"] = {"sources": list(info.sources)}
    return out


def _driver(tool_version: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "driver": {
            "name": "ociboot",
            "version": tool_version,
            "informationUri": INFORMATION_URI,
            "rules": rules,
        }
    }


def _report_run(report: Report, tool_version: str) -> dict[str, Any]:
    table = dict(report.rules)
    for f in report.findings:
        table.setdefault(f.rule, RuleInfo(f.rule, f.rule, "", f.severity))
    rule_ids = sorted(table)
    where = {rid: i for i, rid in enumerate(rule_ids)}
    results = []
    for f, occurrence in numbered(report.findings):
        if f.outcome not in (Outcome.FAIL, Outcome.ERROR):
            continue
        hashed = fingerprint(report, f, occurrence)
        results.append(
            {
                "ruleId": f.rule,
                "ruleIndex": where[f.rule],
                "level": _LEVEL[f.severity],
                "kind": "fail",
                "message": {"text": f.message + (_NOT_RUN if f.outcome is Outcome.ERROR else "")},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": artifact_uri(report.image, f.path)},
                            "region": {"startLine": 1},
                        },
                        "logicalLocations": [
                            {
                                "name": report.image,
                                "fullyQualifiedName": f"{report.image}@{report.digest}",
                                "kind": "module",
                            }
                        ],
                    }
                ],
                "partialFingerprints": {key: hashed for key in FINGERPRINT_KEYS},
                "properties": {
                    "image": report.image,
                    "digest": report.digest,
                    **({"indexDigest": report.index_digest} if report.index_digest else {}),
                    "platform": report.platform,
                    "profile": report.profile,
                    **({"path": f.path} if f.path else {}),
                    "evidence": list(f.evidence),
                    **({"hint": f.hint} if f.hint else {}),
                },
            }
        )
    return {
        "tool": _driver(tool_version, [_rule(table[rid]) for rid in rule_ids]),
        "invocations": [{"executionSuccessful": True, "toolExecutionNotifications": []}],
        "results": results,
        "properties": {
            "image": report.image,
            "digest": report.digest,
            **({"indexDigest": report.index_digest} if report.index_digest else {}),
            "platform": report.platform,
            "profile": report.profile,
            "profileReason": report.profile_reason,
        },
    }


def _unreadable_run(u: Unreadable, tool_version: str) -> dict[str, Any]:
    notification = {
        "level": "error",
        "message": {"text": f"{u.label}: could not be read: {u.error}"},
        "locations": [{"logicalLocations": [{"name": u.image, "kind": "module"}]}],
        "properties": {"image": u.image, "platform": u.platform, "error": u.error},
    }
    return {
        "tool": _driver(tool_version, []),
        "invocations": [{"executionSuccessful": False, "toolExecutionNotifications": [notification]}],
        "results": [],
        "properties": {"image": u.image, "platform": u.platform},
    }


def run_count(reports: Sequence[Report], unreadable: Sequence[Unreadable]) -> int:
    """Runs in the document: one per image platform and one per image or platform not read."""
    return len(reports) + len(unreadable)


def render_sarif(
    reports: Sequence[Report],
    *,
    tool_version: str = "0",
    unreadable: Sequence[Unreadable] = (),
    category_prefix: str = CATEGORY_PREFIX,
) -> str:
    """SARIF 2.1.0: a run per image platform (its rules, a result per failed or not-run finding),
    then a run per image or platform that could not be read; every category under `category_prefix`."""
    runs = [_report_run(r, tool_version) for r in reports]
    runs += [_unreadable_run(u, tool_version) for u in unreadable]
    named: list[tuple[str, str | None, bool]] = [(r.image, r.platform, False) for r in reports]
    named += [(u.image, u.platform, True) for u in unreadable]
    for run, text in zip(runs, categories(named, category_prefix), strict=True):
        run["automationDetails"] = {"id": text}
    doc = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": runs}
    return json.dumps(clean(doc, raw_keys=frozenset()), indent=2) + "\n"


__all__ = [
    "GITHUB_MAX_RUNS",
    "SARIF_SCHEMA",
    "artifact_uri",
    "categories",
    "category",
    "category_prefix",
    "fingerprint",
    "render_sarif",
    "repository",
    "run_count",
]
