"""The verdict attached to the image (`check --attach`) and `ociboot verdicts`, against Debian's
docker-registry 2.8, which has no referrers API: the referrers tag schema is what is exercised
there.  The referrers API path is covered where it can be without a registry that has it: the
decision (`uses_tag_schema`), and the parsing of a referrers response (`referrer.listed`).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from ociboot import schemas
from ociboot.boot.check import Profile
from ociboot.boot.context import Policy
from ociboot.boot.profiles import load_policy
from ociboot.boot.rules import ALL_RULES
from ociboot.cli import app
from ociboot.digest import Digest
from ociboot.errors import InvalidManifest
from ociboot.mediatypes import MediaType
from ociboot.pipeline import Checked, Options, check_reference, locate
from ociboot.report import Finding, Outcome, Report, Severity
from ociboot.sources import SourceOptions
from ociboot.sources.registry.push import RegistryTarget
from ociboot.sources.registry.referrers import Referrers
from ociboot.spec import Descriptor
from ociboot.verdict import referrer, statement
from ociboot.verdict.attach import attach, uses_tag_schema
from ociboot.verdict.statement import Result, Tally
from tests.support.bootimages import bootable, generic
from tests.support.faultproxy import FaultProxy
from tests.support.imagebuilder import Blob, BuiltImage, BuiltIndex, build_index
from tests.support.registry_push import Pusher
from tests.support.registry_server import RegistryServer

runner = CliRunner()


def cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def verdicts(image: str, *args: str) -> tuple[int, dict[str, Any], str]:
    """`ociboot verdicts --format json`; every document is checked against its shipped schema
    (the verdicts of these tests are valid, invalid, forged, several: each shape is met)."""
    code, out, err = cli("verdicts", "-q", image, "--format", "json", *args)
    doc = json.loads(out) if out.strip() else {}
    if doc:
        jsonschema.Draft202012Validator(schemas.load("verdicts")).validate(doc)
        assert doc["$schema"] == schemas.schema_id("verdicts")
    return code, doc, err


def sha(data: bytes) -> Digest:
    return Digest.of(data)


# --- the policy's digest, and the statement ------------------------------------------------------


def test_the_policy_digest_ignores_the_order_a_file_listed_things_in(tmp_path: Path) -> None:
    one, two, other = tmp_path / "one.toml", tmp_path / "two.toml", tmp_path / "other.toml"
    one.write_text('skip = ["LAY-004", "KRN-005"]\nrequire-packages = ["grub2", "kernel"]\n')
    two.write_text('require-packages = ["kernel", "grub2", "kernel"]\nskip = ["KRN-005", "LAY-004"]\n')
    other.write_text('skip = ["LAY-004"]\nrequire-packages = ["grub2", "kernel"]\n')
    assert load_policy(one).digest == load_policy(two).digest
    assert load_policy(one).digest != load_policy(other).digest
    assert Policy().digest != Policy(fatal_warnings=True).digest
    assert Policy().digest != Policy(profile=Profile.COS).digest


def _report(platform: str, *findings: tuple[str, Severity, Outcome]) -> Report:
    return Report(
        image="x",
        digest=str(sha(platform.encode())),
        platform=platform,
        profile="generic",
        profile_reason="",
        findings=tuple(Finding(rule, sev, outcome, "m") for rule, sev, outcome in findings),
    )


E, W, I = Severity.ERROR, Severity.WARNING, Severity.INFO  # noqa: E741
OK, FAIL, NOT_RUN, SKIP = Outcome.PASS, Outcome.FAIL, Outcome.ERROR, Outcome.SKIP


def test_the_platforms_of_an_index_combine_into_one_result() -> None:
    amd = _report("linux/amd64", ("A", E, OK), ("B", W, FAIL), ("C", E, OK), ("D", I, OK))
    arm = _report("linux/arm64", ("A", E, FAIL), ("B", W, OK), ("C", E, OK), ("D", I, SKIP))
    # A rule that blocks on any platform is failed there and nowhere else; one that failed
    # without blocking somewhere is warned; one that passed everywhere it ran is passed.
    assert Tally.of((amd, arm), False) == Tally(Result.FAILED, ("C", "D"), ("B",), ("A",))
    assert Tally.of((amd,), False) == Tally(Result.WARNED, ("A", "C", "D"), ("B",), ())
    assert Tally.of((amd,), True) == Tally(Result.FAILED, ("A", "C", "D"), (), ("B",))
    good = _report("linux/amd64", ("A", E, OK), ("X", I, FAIL))
    assert Tally.of((good,), False).result is Result.PASSED  # info is not a warning
    unrun = _report("linux/amd64", ("A", E, NOT_RUN))
    assert Tally.of((unrun,), False) == Tally(Result.FAILED, (), (), ("A",))


def test_a_statement_reads_back_as_it_was_made() -> None:
    subject = sha(b"image")
    tests = Tally(Result.WARNED, ("A",), ("B",), ())
    data = statement.make("reg/repo", subject, tests, Policy(), "9.9")
    doc = json.loads(data)
    assert doc["_type"] == "https://in-toto.io/Statement/v1"
    assert doc["predicateType"] == "https://in-toto.io/attestation/test-result/v0.1"
    assert doc["subject"] == [{"name": "reg/repo", "digest": {"sha256": subject.hex}}]
    back = statement.parse(data, "s")
    assert back == statement.Statement((subject,), tests, Policy().digest, "9.9")


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(_type="https://in-toto.io/Statement/v0.1"),
        lambda d: d["predicate"].update(result="PASSED!"),
        lambda d: d["predicate"].update(result=["PASSED"]),
        lambda d: d["predicate"].update(passedTests="A"),
        lambda d: d.update(subject=[]),
    ],
)
def test_a_malformed_statement_is_refused(change: Any) -> None:
    doc = json.loads(statement.make("r", sha(b"i"), Tally(Result.PASSED, (), (), ()), Policy(), "1"))
    change(doc)
    with pytest.raises(InvalidManifest):
        statement.parse(json.dumps(doc).encode(), "s")


def test_a_statement_over_the_cap_is_refused_before_parsing() -> None:
    with pytest.raises(InvalidManifest, match="byte cap"):
        statement.parse(b" " * (statement.MAX_STATEMENT_BYTES + 1), "s")


def _statement_with(ids: int, width: int = 0) -> bytes:
    tests = Tally(Result.PASSED, tuple(f"T{i:0{width}d}" for i in range(ids)), (), ())
    return statement.make("r", sha(b"i"), tests, Policy(), "1")


def test_what_one_statement_may_make_ociboot_hold_is_bounded() -> None:
    # `verdicts` keeps every verdict of a list (MAX_REFERRERS of them) to order and print them:
    # a statement is at most a few hundred bytes of rule ids per check ociboot has, so one that
    # is far longer, or lists far more ids, is no verdict of ours and is refused before it is kept.
    ours = _statement_with(len(ALL_RULES))
    assert statement.parse(ours, "s") is not None
    with pytest.raises(InvalidManifest, match="test ids"):
        statement.parse(_statement_with(1000), "s")  # 6 KB of short ids: 1000 strings kept
    with pytest.raises(InvalidManifest, match="byte cap"):
        statement.parse(_statement_with(100, width=200), "s")  # 20 KB in a few ids


def test_another_kind_of_statement_is_not_a_verdict() -> None:
    sbom = {"_type": statement.STATEMENT_TYPE, "predicateType": "https://spdx.dev/Document", "subject": []}
    assert statement.parse(json.dumps(sbom).encode(), "s") is None


# --- the referrers list ---------------------------------------------------------------------------


def _entry(digest: Digest, **extra: Any) -> dict[str, Any]:
    return {"mediaType": MediaType.OCI_MANIFEST, "digest": str(digest), "size": 10, **extra}


def test_a_referrers_api_answer_is_read_for_its_digests_only() -> None:
    # The shape distribution-spec's "Listing Referrers" shows: an index of descriptors carrying
    # artifactType and annotations, which are the lister's word and are not kept.
    one, two = sha(b"1"), sha(b"2")
    answer = {
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_INDEX,
        "manifests": [
            _entry(one, artifactType="application/vnd.in-toto+json", annotations={referrer.CREATED: "2099"}),
            _entry(two, artifactType="application/vnd.example.sbom"),
            _entry(one),
        ],
    }
    assert referrer.listed(json.dumps(answer).encode(), "list") == (one, two)
    # A registry that answers the API keeps the list; a 404 (None) leaves it to the client.
    assert uses_tag_schema(None) and not uses_tag_schema(json.dumps(answer).encode())


def test_a_referrers_list_longer_than_the_bound_is_refused_not_read_in_part() -> None:
    entries = [_entry(sha(str(i).encode())) for i in range(referrer.MAX_REFERRERS + 1)]
    raw = json.dumps({"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "manifests": entries}).encode()
    with pytest.raises(InvalidManifest, match="more than"):
        referrer.listed(raw, "list")
    with pytest.raises(InvalidManifest):
        referrer.appended(raw, Descriptor(MediaType.OCI_MANIFEST, sha(b"new"), 1), {}, "list")


def test_appending_keeps_what_others_listed_and_does_not_repeat_an_entry() -> None:
    theirs = {"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "annotations": {"k": "v"}}
    theirs["manifests"] = [_entry(sha(b"sbom"), artifactType="application/spdx+json", extra="kept")]
    ours = Descriptor(MediaType.OCI_MANIFEST, sha(b"ours"), 7)
    raw = referrer.appended(json.dumps(theirs).encode(), ours, {referrer.CREATED: "t"}, "list")
    assert raw is not None
    doc = json.loads(raw)
    assert doc["annotations"] == {"k": "v"}
    assert doc["manifests"][0] == theirs["manifests"][0]
    assert doc["manifests"][1] == {
        "mediaType": MediaType.OCI_MANIFEST,
        "digest": str(ours.digest),
        "size": 7,
        "artifactType": "application/vnd.in-toto+json",
        "annotations": {referrer.CREATED: "t"},
    }
    assert referrer.appended(raw, ours, {}, "list") is None
    with pytest.raises(InvalidManifest):  # a tag holding something else is not overwritten
        referrer.appended(b'{"schemaVersion": 2, "config": {}}', ours, {}, "list")


def test_the_tag_schema_tag_and_the_empty_descriptor() -> None:
    digest = sha(b"x")
    assert referrer.tag_for(digest) == f"sha256-{digest.hex}"
    assert str(referrer.EMPTY.digest) == (
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    )
    assert referrer.EMPTY.size == 2


# --- against the real registry --------------------------------------------------------------------


def _push(registry: RegistryServer, repo: str, image: BuiltImage | BuiltIndex) -> str:
    Pusher(registry.url).push(repo, image, "v1")
    return f"docker://{registry.host}/{repo}:v1"


def _broken() -> BuiltImage:
    arm = generic()
    arm.arch = "arm64"  # an x86 kernel in an arm64 image: KRN-003 fails
    return arm.build()


@pytest.fixture(scope="module")
def good() -> BuiltImage:
    return bootable("generic").build()


@pytest.mark.registry
def test_check_attach_then_verdicts_passes(registry: RegistryServer, good: BuiltImage) -> None:
    image = _push(registry, "verdict/good", good)
    code, _, err = cli("check", "-q", "--no-cache", "--attach", image)
    assert code == 0, err
    assert "verdict PASSED attached" in err
    code, doc, err = verdicts(image)
    assert code == 0, err
    assert doc["schemaVersion"] == 1 and doc["digest"] == good.digest and doc["passed"] is True
    assert doc["via"] == f"referrers tag sha256-{good.digest.removeprefix('sha256:')}"
    (one,) = doc["verdicts"]
    assert (one["result"], one["valid"], one["policy"]) == ("PASSED", True, str(Policy().digest))
    assert doc["deciding"] == [one["referrer"]] and "KRN-001" in one["passedTests"]
    # The text form says the same.
    code, out, _ = cli("verdicts", "-q", image)
    assert code == 0 and "PASSED" in out and "newest verdict passed" in out


@pytest.mark.registry
def test_an_index_with_a_broken_platform_gets_one_failed_verdict(
    registry: RegistryServer, good: BuiltImage
) -> None:
    index = build_index([good, _broken()])
    image = _push(registry, "verdict/multi", index)
    code, _, err = cli("check", "-q", "--no-cache", "--attach", image)
    assert code == 1, err  # the check's exit code, unchanged by a successful attach
    code, doc, err = verdicts(image)
    assert code == 1, err
    assert doc["digest"] == index.digest and doc["passed"] is False
    (one,) = doc["verdicts"]
    assert one["result"] == "FAILED" and "KRN-003" in one["failedTests"]
    # The statement hangs from the index and is about the index.
    tag = referrer.tag_for(Digest.parse(index.digest))
    listed = _skopeo_raw(registry, "verdict/multi", tag)
    (entry,) = listed["manifests"]
    assert entry["digest"] == one["referrer"] and entry["artifactType"] == "application/vnd.in-toto+json"
    manifest = _skopeo_raw(registry, "verdict/multi", one["referrer"])
    assert manifest["subject"]["digest"] == index.digest
    assert manifest["subject"]["mediaType"] == MediaType.OCI_INDEX


@pytest.mark.registry
def test_no_verdict_is_exit_1(registry: RegistryServer) -> None:
    image = _push(registry, "verdict/none", bootable("cos").build())
    code, doc, err = verdicts(image)
    assert code == 1, err
    assert doc["verdicts"] == [] and doc["deciding"] == [] and doc["passed"] is False


def _skopeo_raw(registry: RegistryServer, repo: str, reference: str) -> dict[str, Any]:
    sep = "@" if reference.startswith("sha256:") else ":"
    done = subprocess.run(
        [
            "skopeo",
            "inspect",
            "--raw",
            "--tls-verify=false",
            f"docker://{registry.host}/{repo}{sep}{reference}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def _checked(image: str) -> Checked:
    return check_reference(image, Policy(), Options())


def _target(image: str) -> RegistryTarget:
    ref = locate(image)
    return RegistryTarget(ref, SourceOptions())


@pytest.mark.registry
def test_two_attaches_keep_both_and_the_newest_decides(registry: RegistryServer) -> None:
    built = _broken()
    image = _push(registry, "verdict/two", built)
    checked = _checked(image)
    assert checked.subject is not None and str(checked.subject.digest) == built.digest
    # A passing verdict made earlier, then the failing one: the newest (failing) decides.
    passing = Checked(checked.image, (_report("linux/arm64", ("A", E, OK)),), (), checked.subject)
    first = attach(_target(image), checked.subject, passing, Policy(), created="2026-01-01T00:00:00Z")
    second = attach(_target(image), checked.subject, checked, Policy(), created="2026-01-02T00:00:00Z")
    listed = _skopeo_raw(registry, "verdict/two", referrer.tag_for(checked.subject.digest))
    assert [m["digest"] for m in listed["manifests"]] == [str(first), str(second)]
    assert [m["annotations"][referrer.CREATED] for m in listed["manifests"]] == [
        "2026-01-01T00:00:00Z",
        "2026-01-02T00:00:00Z",
    ]
    code, doc, _ = verdicts(image)
    assert code == 1
    assert [(v["referrer"], v["result"]) for v in doc["verdicts"]] == [
        (str(second), "FAILED"),
        (str(first), "PASSED"),
    ]
    # Re-attaching the same verdict adds no entry.
    attach(_target(image), checked.subject, checked, Policy(), created="2026-01-02T00:00:00Z")
    assert (
        len(_skopeo_raw(registry, "verdict/two", referrer.tag_for(checked.subject.digest))["manifests"]) == 2
    )


@pytest.mark.registry
def test_verdicts_sharing_the_newest_time_pass_only_if_all_do(registry: RegistryServer) -> None:
    image = _push(registry, "verdict/tie", _broken())
    checked = _checked(image)
    assert checked.subject is not None
    passing = Checked(checked.image, (_report("linux/arm64", ("A", E, OK)),), (), checked.subject)
    when = "2026-03-01T00:00:00Z"
    attach(_target(image), checked.subject, passing, Policy(), created=when)
    assert verdicts(image)[0] == 0
    attach(
        _target(image), checked.subject, checked, Policy(), created="2026-03-01T01:00:00+01:00"
    )  # same instant
    code, doc, _ = verdicts(image)
    assert code == 1 and len(doc["deciding"]) == 2


def _forge(
    registry: RegistryServer, repo: str, hangs_from: Digest, about: Digest, created: str, listed_under: Digest
) -> Digest:
    """A referrer pushed and listed by hand (as anyone with push access could)."""
    pusher = Pusher(registry.url)
    tests = Tally(Result.PASSED, ("KRN-001",), (), ())
    data = statement.make(f"{registry.host}/{repo}", about, tests, Policy(), "forged")
    blob = Descriptor(MediaType.IN_TOTO, sha(data), len(data))
    pusher.push_blob(repo, (str(blob.digest), data))
    pusher.push_blob(repo, (str(referrer.EMPTY.digest), referrer.EMPTY_DATA))
    subject = Descriptor(MediaType.OCI_MANIFEST, hangs_from, 100)
    manifest = referrer.manifest(blob, subject, created)
    pusher.push_manifest(repo, str(sha(manifest)), Blob(MediaType.OCI_MANIFEST, manifest))
    tag = referrer.tag_for(listed_under)
    old = Referrers.of(_target(f"docker://{registry.host}/{repo}")).tagged(tag)
    entry = Descriptor(MediaType.OCI_MANIFEST, sha(manifest), len(manifest))
    index = referrer.appended(old, entry, {referrer.CREATED: "2999-01-01T00:00:00Z"}, "index")
    assert index is not None
    pusher.push_manifest(repo, tag, Blob(MediaType.OCI_INDEX, index))
    return sha(manifest)


@pytest.mark.registry
def test_a_forged_statement_about_another_digest_is_invalid_and_never_counts(
    registry: RegistryServer,
) -> None:
    repo = "verdict/forged"
    image = _push(registry, repo, _broken())
    code, _, err = cli("check", "-q", "--no-cache", "--attach", image)
    assert code == 1, err
    found = _checked(image).subject
    assert found is not None
    subject = found.digest
    other = sha(b"another image")
    # Newer, PASSED, hanging from this digest, but the statement is about another one; and one
    # whose manifest hangs from another digest though the list names it here.
    about_other = _forge(registry, repo, subject, other, "2099-01-01T00:00:00Z", subject)
    hangs_other = _forge(registry, repo, other, subject, "2026-06-01T00:00:00Z", subject)
    future = _forge(registry, repo, subject, subject, "2999-01-01T00:00:00Z", subject)
    code, doc, _ = verdicts(image)
    assert code == 1
    by = {v["referrer"]: v for v in doc["verdicts"]}
    assert by[str(about_other)]["valid"] is False and "is about" in by[str(about_other)]["problem"]
    assert by[str(hangs_other)]["valid"] is False and "hangs from" in by[str(hangs_other)]["problem"]
    assert by[str(future)]["valid"] is False and "future" in by[str(future)]["problem"]
    (deciding,) = doc["deciding"]
    assert by[deciding]["result"] == "FAILED" and by[deciding]["valid"] is True


@pytest.mark.registry
def test_policy_chooses_the_verdicts_that_count(registry: RegistryServer, tmp_path: Path) -> None:
    image = _push(registry, "verdict/policy", _broken())
    skipping = tmp_path / "skip.toml"
    skipping.write_text('skip = ["KRN-003"]\n')
    default = tmp_path / "default.toml"
    default.write_text("")
    code, _, err = cli("check", "-q", "--no-cache", "--attach", "--policy", str(skipping), image)
    assert code == 0, err
    code, _, err = cli("check", "-q", "--no-cache", "--attach", image)
    assert code == 1, err
    assert verdicts(image, "--policy", str(skipping))[0] == 0
    assert verdicts(image, "--policy", str(default))[0] == 1
    other = tmp_path / "other.toml"
    other.write_text('skip = ["LAY-004"]\n')
    code, doc, _ = verdicts(image, "--policy", str(other))
    assert code == 1 and doc["deciding"] == [] and len(doc["verdicts"]) == 2


@pytest.mark.registry
def test_the_options_a_verdict_was_made_with_are_the_ones_that_read_it(
    registry: RegistryServer, good: BuiltImage, tmp_path: Path
) -> None:
    # --fatal-warnings is part of the policy a check is judged by (and of its digest): read with
    # the same --policy and --fatal-warnings, the verdict counts; so it does for the file alone
    # (fatal warnings only make a policy stricter), and a verdict of the file alone still counts
    # when read with --fatal-warnings (its PASSED had no warning).
    image = _push(registry, "verdict/fatal", good)
    gate = tmp_path / "gate.toml"
    gate.write_text('skip = ["LAY-004"]\n')
    code, _, err = cli(
        "check", "-q", "--no-cache", "--attach", "--policy", str(gate), "--fatal-warnings", image
    )
    assert code == 0, err
    assert verdicts(image, "--policy", str(gate), "--fatal-warnings")[0] == 0
    assert verdicts(image, "--policy", str(gate))[0] == 0
    plain = _push(registry, "verdict/plain", good)
    code, _, err = cli("check", "-q", "--no-cache", "--attach", "--policy", str(gate), plain)
    assert code == 0, err
    assert verdicts(plain, "--policy", str(gate), "--fatal-warnings")[0] == 0
    # A verdict under a laxer policy never counts for a stricter one.
    lax = tmp_path / "lax.toml"
    lax.write_text('skip = ["LAY-004", "KRN-003"]\n')
    assert verdicts(image, "--policy", str(lax))[0] == 1


@pytest.mark.registry
def test_token_auth_attach_and_read(token_registry: RegistryServer, good: BuiltImage) -> None:
    Pusher(token_registry.url, "alice", "wonderland").push("team/app", good, "v1")
    image = f"docker://{token_registry.host}/team/app:v1"
    # bob may only pull team/app: the check passes, the attach is refused (exit 3).
    code, _, err = cli("check", "-q", "--no-cache", "--attach", "--creds", "bob:builder", image)
    assert code == 3 and "could not be attached" in err
    code, _, err = cli("check", "-q", "--no-cache", "--attach", "--creds", "alice:wonderland", image)
    assert code == 0, err
    code, doc, err = verdicts(image, "--creds", "bob:builder")
    assert code == 0, err
    assert [v["result"] for v in doc["verdicts"]] == ["PASSED"]


def test_verdicts_live_in_a_registry(tmp_path: Path) -> None:
    from tests.support.imagebuilder import write_oci_layout

    root = write_oci_layout(tmp_path / "layout", {"v1": bootable("cos").build()})
    code, _, err = cli("check", "-q", "--no-cache", "--attach", f"oci:{root}:v1")
    assert code == 2 and "not a registry image" in err
    code, _, err = cli("verdicts", "-q", f"oci:{root}:v1")
    assert code == 2 and "not a registry image" in err


@pytest.mark.registry
def test_a_statement_blob_over_the_cap_is_invalid_without_being_read(registry: RegistryServer) -> None:
    repo = "verdict/huge"
    built = bootable("cos").build()
    image = _push(registry, repo, built)
    subject = Digest.parse(built.digest)
    pusher = Pusher(registry.url)
    data = b" " * (statement.MAX_STATEMENT_BYTES + 1)
    blob = Descriptor(MediaType.IN_TOTO, sha(data), len(data))
    pusher.push_blob(repo, (str(blob.digest), data))
    pusher.push_blob(repo, (str(referrer.EMPTY.digest), referrer.EMPTY_DATA))
    manifest = referrer.manifest(blob, Descriptor(MediaType.OCI_MANIFEST, subject, 1), "2026-01-01T00:00:00Z")
    pusher.push_manifest(repo, str(sha(manifest)), Blob(MediaType.OCI_MANIFEST, manifest))
    index = referrer.appended(None, Descriptor(MediaType.OCI_MANIFEST, sha(manifest), len(manifest)), {}, "i")
    assert index is not None
    pusher.push_manifest(repo, referrer.tag_for(subject), Blob(MediaType.OCI_INDEX, index))
    code, doc, _ = verdicts(image)
    assert code == 1
    (one,) = doc["verdicts"]
    assert one["valid"] is False and "byte cap" in one["problem"]


def test_attach_refuses_a_check_that_did_not_judge_everything() -> None:
    checked = Checked("x", (), (), None)
    target = RegistryTarget(locate("docker://127.0.0.1:1/x/y:z"), SourceOptions())
    with pytest.raises(ValueError, match="not fully judged"):
        attach(target, Descriptor(MediaType.OCI_MANIFEST, sha(b"x"), 1), checked, Policy())


@pytest.mark.registry
@pytest.mark.parametrize("path", ["/referrers/", "/manifests/sha256-"])
def test_a_registry_failing_the_list_is_unreadable_not_no_verdict(
    registry: RegistryServer, good: BuiltImage, path: str
) -> None:
    # A 500 where the list is read is neither "no referrers API" nor "no verdict": exit 3.
    image = _push(registry, "verdict/faulty", good)
    proxy = FaultProxy(registry.host)
    try:
        proxy.fail_next(500, path)
        code, _, err = cli("verdicts", "-q", image.replace(registry.host, proxy.host))
    finally:
        proxy.close()
    assert code == 3 and "500" in err
