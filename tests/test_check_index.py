"""`ociboot check` of a reference naming an index: every image platform is judged by default.

A promotion copies the whole index, so a verdict on the host's platform alone would vouch for
the others unseen.  Attestations listed in the index are not images: skipped, and said so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from typer.testing import CliRunner

from ociboot import api
from ociboot.cli import app
from ociboot.pipeline import MAX_INDEX_IMAGES, Options
from ociboot.spec import Platform
from tests.support.bootimages import bootable, generic
from tests.support.imagebuilder import (
    Blob,
    BuiltImage,
    BuiltIndex,
    ImageBuilder,
    LayerBuilder,
    attestation,
    build_index,
    canonical_json,
    write_oci_layout,
)
from tests.support.registry_push import Pusher
from tests.support.registry_server import RegistryServer

runner = CliRunner()


@dataclass(frozen=True)
class Multi:
    index: BuiltIndex
    amd: BuiltImage  # bootable
    arm: BuiltImage  # an x86 kernel in an arm64 image: KRN-003 fails
    att: BuiltImage  # BuildKit's provenance attestation of `amd`


@pytest.fixture(scope="module")
def multi() -> Multi:
    amd = bootable("generic").build()
    arm = generic()
    arm.arch = "arm64"
    arm_built = arm.build()
    att = attestation(amd)
    return Multi(build_index([amd, arm_built, att]), amd, arm_built, att)


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory, multi: Multi) -> str:
    root = write_oci_layout(tmp_path_factory.mktemp("index") / "multi", {"v1": multi.index})
    return f"oci:{root}:v1"


@pytest.fixture(scope="module")
def pushed(registry: RegistryServer, multi: Multi) -> str:
    Pusher(registry.url).push("os/multi", multi.index, "multi")
    return f"docker://{registry.host}/os/multi:multi"


def check(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["check", "-q", "--no-cache", *args])
    return result.exit_code, result.stdout, result.stderr


def assert_every_platform_judged(doc: dict[str, Any], multi: Multi) -> None:
    assert doc["bootable"] is False and doc["unreadable"] == []
    reports = doc["reports"]
    assert [(r["platform"], r["digest"], r["bootable"]) for r in reports] == [
        ("linux/amd64", multi.amd.digest, True),
        ("linux/arm64", multi.arm.digest, False),
    ]
    skipped = [{"digest": multi.att.digest, "kind": "attestation", "platform": "unknown/unknown"}]
    assert [r["index"] for r in reports] == [{"digest": multi.index.digest, "skipped": skipped}] * 2
    arm_failed = [f["rule"] for f in reports[1]["findings"] if f["outcome"] == "fail"]
    assert "KRN-003" in arm_failed


def test_every_platform_of_a_layout_index_is_judged(layout: str, multi: Multi) -> None:
    code, out, err = check(layout, "--format", "json")
    assert code == 1, err
    assert_every_platform_judged(json.loads(out), multi)


@pytest.mark.registry
def test_every_platform_of_a_registry_index_is_judged(pushed: str, multi: Multi) -> None:
    code, out, err = check(pushed, "--format", "json")
    assert code == 1, err
    assert_every_platform_judged(json.loads(out), multi)


@pytest.mark.registry
def test_the_other_commands_keep_the_host_platform(pushed: str, multi: Multi) -> None:
    host = {"amd64": multi.amd, "arm64": multi.arm}[Platform.host().architecture]
    result = runner.invoke(app, ["inspect", "-q", "--no-sizes", pushed, "--format", "json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["digest"] == host.digest


def test_all_platforms_is_still_accepted_and_is_the_default(layout: str) -> None:
    assert check(layout, "--format", "json") == check(layout, "--all-platforms", "--format", "json")
    assert check(layout, "--all-platforms", "--platform", "linux/amd64")[0] == 2


@pytest.mark.parametrize(("platform", "code"), [("linux/amd64", 0), ("linux/arm64", 1)])
def test_platform_narrows_to_one(layout: str, multi: Multi, platform: str, code: int) -> None:
    got, out, _ = check(layout, "--platform", platform, "--format", "json")
    assert got == code
    (report,) = json.loads(out)["reports"]
    wanted = multi.amd if platform.endswith("amd64") else multi.arm
    assert (report["platform"], report["digest"]) == (platform, wanted.digest)
    assert report["index"]["digest"] == multi.index.digest


def test_a_platform_not_in_the_index_cannot_be_read(layout: str) -> None:
    code, out, err = check(layout, "--platform", "linux/s390x", "--format", "json")
    assert code == 3 and json.loads(out)["bootable"] is False and "s390x" in err


def test_an_index_entry_whose_config_is_another_platform_is_not_a_pass(tmp_path: Path, multi: Multi) -> None:
    """An index that lists a bootable amd64 image as linux/arm64 serves it to arm64 machines:
    judging it as the amd64 image its config says it is would pass an index arm64 cannot boot."""
    amd = bootable("generic").file("/etc/marker", "x").build()
    amd.platform = {"architecture": "arm64", "os": "linux"}
    root = write_oci_layout(tmp_path / "liar", {"v1": build_index([multi.amd, amd])})
    for extra in ([], ["--platform", "linux/arm64"]):
        code, out, err = check(f"oci:{root}:v1", *extra, "--format", "json")
        doc = json.loads(out)
        assert code == 3 and doc["bootable"] is False, err
        (unreadable,) = doc["unreadable"]
        assert "linux/arm64" in unreadable["error"] and "linux/amd64" in unreadable["error"]
        assert amd.digest in unreadable["error"]


def test_an_attestation_annotation_does_not_hide_an_image_of_a_real_platform(
    tmp_path: Path, multi: Multi
) -> None:
    """Runtimes choose an index entry by platform, not by annotations: an arm64 entry annotated
    as BuildKit's attestation is what arm64 machines run, so it is judged, not skipped."""
    arm = replace(multi.arm, annotations={"vnd.docker.reference.type": "attestation-manifest"})
    root = write_oci_layout(tmp_path / "hidden", {"v1": build_index([multi.amd, arm, multi.att])})
    code, out, err = check(f"oci:{root}:v1", "--format", "json")
    doc = json.loads(out)
    assert code == 1 and doc["bootable"] is False, err
    assert [(r["platform"], r["bootable"]) for r in doc["reports"]] == [
        ("linux/amd64", True),
        ("linux/arm64", False),
    ]
    assert [s["digest"] for s in doc["reports"][0]["index"]["skipped"]] == [multi.att.digest]


def test_an_artifact_type_on_the_entry_does_not_hide_an_image_of_a_real_platform(
    tmp_path: Path, multi: Multi
) -> None:
    """The descriptor's artifactType is the index's word; what a runtime runs is the manifest it
    points at.  An arm64 image manifest listed with an artifactType is judged, not skipped."""
    index = build_index([multi.amd, multi.arm])
    obj = json.loads(index.manifest.data)
    obj["manifests"][1]["artifactType"] = "application/vnd.example.not-an-image"
    forged = BuiltIndex(Blob(index.manifest.media_type, canonical_json(obj)), index.children)
    root = write_oci_layout(tmp_path / "hidden", {"v1": forged})
    code, out, err = check(f"oci:{root}:v1", "--format", "json")
    doc = json.loads(out)
    assert code == 1 and doc["bootable"] is False, err
    assert [(r["platform"], r["bootable"]) for r in doc["reports"]] == [
        ("linux/amd64", True),
        ("linux/arm64", False),
    ]


def test_a_lone_manifest_of_another_platform_is_not_judged_for_the_one_asked(
    tmp_path: Path, multi: Multi
) -> None:
    """`--platform linux/arm64` asks about arm64: a single amd64 image (no index) must not pass
    for it, as an index without arm64 does not."""
    root = write_oci_layout(tmp_path / "single", {"v1": multi.amd})
    code, out, err = check(f"oci:{root}:v1", "--platform", "linux/arm64", "--format", "json")
    doc = json.loads(out)
    assert code == 3 and doc["bootable"] is False and doc["reports"] == []
    (unreadable,) = doc["unreadable"]
    assert "linux/arm64" in unreadable["error"] and "linux/amd64" in unreadable["error"]
    assert f"oci:{root}:v1" in err
    assert check(f"oci:{root}:v1", "--platform", "linux/amd64")[0] == 0


def test_text_names_the_index_each_manifest_and_the_skipped_attestation(layout: str, multi: Multi) -> None:
    code, out, _ = check(layout)
    assert code == 1
    headers = [line.split() for line in out.splitlines() if line.startswith("oci:")]
    assert [(h[1], h[2]) for h in headers] == [
        (multi.amd.digest, "linux/amd64"),
        (multi.arm.digest, "linux/arm64"),
    ]
    assert out.count(f"  index: {multi.index.digest}\n") == 2
    assert f"attestation {multi.att.digest} (unknown/unknown)" in out
    assert "  BOOTABLE: " in out and "  NOT BOOTABLE: " in out


def test_sarif_and_junit_name_the_index_and_each_manifest(layout: str, multi: Multi) -> None:
    code, out, _ = check(layout, "--format", "sarif")
    results = [r for run in json.loads(out)["runs"] for r in run["results"]]
    assert code == 1 and results
    assert {(r["properties"]["indexDigest"], r["properties"]["digest"]) for r in results} == {
        (multi.index.digest, multi.arm.digest)
    }
    code, out, _ = check(layout, "--format", "junit")
    suites = ET.fromstring(out).findall("testsuite")
    props = [{p.get("name"): p.get("value") for p in s.iter("property")} for s in suites]
    assert [(p["indexDigest"], p["digest"], p["platform"]) for p in props] == [
        (multi.index.digest, multi.amd.digest, "linux/amd64"),
        (multi.index.digest, multi.arm.digest, "linux/arm64"),
    ]
    assert code == 1 and int(suites[1].get("failures") or 0) > 0


def test_an_index_of_only_attestations_is_not_a_pass(tmp_path: Path, multi: Multi) -> None:
    root = write_oci_layout(tmp_path / "att", {"v1": build_index([multi.att])})
    code, out, err = check(f"oci:{root}:v1", "--format", "json")
    assert code == 3 and json.loads(out)["bootable"] is False and "no container image" in err


def test_one_unreadable_platform_fails_the_index_and_the_others_are_still_judged(
    tmp_path: Path, multi: Multi
) -> None:
    arm = generic().file("/etc/only-on-arm", "x")
    arm.arch = "arm64"
    arm_built = arm.build()
    root = write_oci_layout(tmp_path / "half", {"v1": build_index([multi.amd, arm_built])})
    amd_blobs = {b.digest for b in multi.amd.layers}
    for layer in arm_built.layers:
        if layer.digest not in amd_blobs:
            (root / "blobs" / "sha256" / layer.digest.split(":")[1]).unlink()
    image = f"oci:{root}:v1"
    code, out, err = check(image, "--format", "json")
    doc = json.loads(out)
    assert code == 3 and doc["bootable"] is False
    assert [(r["platform"], r["bootable"]) for r in doc["reports"]] == [("linux/amd64", True)]
    (unreadable,) = doc["unreadable"]
    assert (unreadable["image"], unreadable["platform"]) == (image, "linux/arm64")
    assert err.startswith(f"ociboot: error: {image} [linux/arm64]: ") and err.count("\n") == 1


def test_an_index_listing_one_manifest_twice_is_judged_once(tmp_path: Path, multi: Multi) -> None:
    root = write_oci_layout(tmp_path / "twice", {"v1": build_index([multi.amd, multi.amd])})
    code, out, _ = check(f"oci:{root}:v1", "--format", "json")
    assert code == 0 and [r["digest"] for r in json.loads(out)["reports"]] == [multi.amd.digest]


def test_one_manifest_listed_for_two_platforms_is_judged_for_each(tmp_path: Path, multi: Multi) -> None:
    """Judged once per digest, the amd64 image listed a second time as linux/arm64 would pass
    the index that serves it to arm64 machines."""
    as_arm = replace(multi.amd, platform={"architecture": "arm64", "os": "linux"})
    root = write_oci_layout(tmp_path / "twice", {"v1": build_index([multi.amd, as_arm])})
    code, out, err = check(f"oci:{root}:v1", "--format", "json")
    doc = json.loads(out)
    assert code == 3 and doc["bootable"] is False, err
    assert [(r["platform"], r["bootable"]) for r in doc["reports"]] == [("linux/amd64", True)]
    (unreadable,) = doc["unreadable"]
    assert "as linux/arm64, but its config says linux/amd64" in unreadable["error"]
    assert unreadable["platform"] == "linux/arm64"


def test_an_index_of_too_many_images_is_refused_before_any_is_read(tmp_path: Path) -> None:
    """Each image judged streams its layers: an index of many small manifests over shared layers
    would multiply the work.  Over the cap the reference is unreadable; --platform picks one."""
    base = LayerBuilder().file("etc/os-release", "ID=test\n")
    many = [ImageBuilder(labels={"n": str(n)}).add_layer(base).build() for n in range(MAX_INDEX_IMAGES + 1)]
    root = write_oci_layout(tmp_path / "many", {"v1": build_index(many)})
    for layer in many[0].layers:  # shared by all: were any image judged, this would be missed
        (root / "blobs" / "sha256" / layer.digest.split(":")[1]).unlink()
    code, out, err = check(f"oci:{root}:v1", "--format", "json")
    assert code == 3 and json.loads(out)["bootable"] is False
    assert f"lists {MAX_INDEX_IMAGES + 1} images, more than the {MAX_INDEX_IMAGES}" in err
    assert "not found" not in err and err.count("\n") == 1


def test_the_subject_is_the_index_judged_whole_or_the_one_platform_judged(layout: str, multi: Multi) -> None:
    """A promotion copies, and a verdict hangs from, exactly the digest that was judged."""
    whole = api.check(layout).checked[0].subject
    assert whole is not None
    assert (str(whole.digest), whole.size, whole.media_type) == (
        multi.index.digest,
        len(multi.index.manifest.data),
        "application/vnd.oci.image.index.v1+json",
    )
    one = api.check(layout, options=Options(platform=Platform.parse("linux/arm64"))).checked[0].subject
    assert one is not None and str(one.digest) == multi.arm.digest
    assert api.check(f"{layout}-missing").checked[0].subject is None
