"""`ociboot promote SRC DST`: check by digest, copy exactly that digest only when it is bootable.

Against Debian's docker-registry, with skopeo as the independent client that reads what was
copied.  A FaultProxy in front of a registry counts the requests a promotion makes (and fails
one on command); the token service records the scopes each user asked for.
"""

from __future__ import annotations

import io
import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote

import jsonschema
import pytest
from typer.testing import CliRunner

from fixtures import make_boot_fixtures as boot
from ociboot import schemas
from ociboot.boot.context import Policy
from ociboot.cli import app
from ociboot.copy import Action, _Withheld
from ociboot.digest import Digest, VerifyingReader
from ociboot.errors import DigestMismatch
from ociboot.pipeline import Checked, Options
from ociboot.promote import Promotion, promote
from tests.support.bootimages import bootable, generic, initrd
from tests.support.dockerarchive import write_docker_archive
from tests.support.faultproxy import FaultProxy
from tests.support.imagebuilder import (
    OCI_INDEX,
    BuiltImage,
    BuiltIndex,
    attestation,
    build_index,
    canonical_json,
)
from tests.support.registry_push import Pusher
from tests.support.registry_server import RegistryServer, start_registry

runner = CliRunner()
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def unique_bootable(arch: str = "amd64") -> BuiltImage:
    """A bootable image whose layer no other test shares (a test may corrupt or count it)."""
    img = bootable("generic").file("/etc/promote-test", uuid.uuid4().hex)
    if arch != "amd64":  # an arm64 kernel with its own initrd and modules: no finding at all
        kver = boot.ARM64_KVER
        img.arch = arch
        for path in (
            f"/boot/vmlinuz-{boot.KVER}",
            f"/boot/initrd-{boot.KVER}",
            f"/usr/lib/modules/{boot.KVER}",
        ):
            img.drop(path)
        img.file(f"/boot/vmlinuz-{kver}", boot.arm64_image(kver))
        img.file(f"/boot/initrd-{kver}", initrd(kver))
        img.link("/boot/vmlinuz", f"vmlinuz-{kver}")
        img.link("/boot/initrd", f"initrd-{kver}")
        img.dir(f"/usr/lib/modules/{kver}")
        img.file(f"/usr/lib/modules/{kver}/modules.dep", "")
    built: BuiltImage = img.build()
    return built


def multi_arch() -> BuiltIndex:
    amd = unique_bootable()
    return build_index([amd, unique_bootable("arm64"), attestation(amd)])


def every_manifest(image: BuiltImage | BuiltIndex) -> Iterator[BuiltImage | BuiltIndex]:
    yield image
    if isinstance(image, BuiltIndex):
        for child in image.children:
            yield from every_manifest(child)


def blobs(image: BuiltImage | BuiltIndex) -> list[str]:
    return sorted(
        {b.digest for m in every_manifest(image) if isinstance(m, BuiltImage) for b in m.layers}
        | {m.config.digest for m in every_manifest(image) if isinstance(m, BuiltImage)}
    )


def run(*args: str, quiet: bool = True) -> tuple[int, str, str]:
    result = runner.invoke(app, ["promote", *(["-q"] if quiet else []), *args])
    return result.exit_code, result.stdout, result.stderr


def skopeo_raw(ref: str, *extra: str) -> bytes | None:
    done = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", *extra, ref], capture_output=True, timeout=60
    )
    return done.stdout if done.returncode == 0 else None


def status(server: RegistryServer, repo: str, kind: str, reference: str, user: str | None = None) -> int:
    pusher = Pusher(server.url, user, server.users.get(user) if user else None)
    headers = {
        "Accept": "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"
    }
    return pusher.request("HEAD", repo, f"/v2/{repo}/{kind}/{reference}", headers=headers).status_code


def writes(proxy: FaultProxy) -> list[tuple[str, str]]:
    return [(method, path) for method, path, _ in proxy.requests if method in WRITES]


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = start_registry("second_registry", tmp_path_factory.mktemp("second-registry"))
    yield server
    server.stop()


@pytest.fixture
def proxy(registry: RegistryServer) -> Iterator[FaultProxy]:
    fronted = FaultProxy(registry.host)
    yield fronted
    fronted.close()


# --- within one registry -----------------------------------------------------------------------


def test_bootable_index_is_promoted_byte_for_byte_and_again_sends_nothing(
    registry: RegistryServer, proxy: FaultProxy
) -> None:
    index = multi_arch()
    Pusher(registry.url).push("staging/os", index, "1")
    src, dst = f"docker://{proxy.host}/staging/os:1", f"docker://{proxy.host}/prod/os:1"

    code, out, err = run(src, dst)
    assert code == 0, err
    assert out.count("BOOTABLE") == 2  # both platforms judged; the attestation is not an image
    assert skopeo_raw(f"docker://{registry.host}/prod/os:1") == index.manifest.data
    for manifest in every_manifest(index):
        assert skopeo_raw(f"docker://{registry.host}/prod/os@{manifest.digest}") == manifest.manifest.data
    for digest in blobs(index):
        assert status(registry, "prod/os", "blobs", digest) == 200
    sent = writes(proxy)
    # One registry: every blob of the image mounted from staging/os, none streamed (the verdict's
    # two small blobs are new: they are sent).
    put = [unquote(p) for m, p in sent if m == "PUT" and "/blobs/" in p]
    assert not [p for p in put if any(d in p for d in blobs(index))] and len(put) <= 2
    assert len([p for m, p in sent if m == "POST" and "mount=" in p and "from=staging%2Fos" in p]) == len(
        blobs(index)
    )
    assert sent[-1] == ("PUT", "/v2/prod/os/manifests/1")  # the tag last
    # The verdict hangs from the index digest in DST, listed in the tag schema before the tag.
    schema_tag = f"/v2/prod/os/manifests/sha256-{index.digest.removeprefix('sha256:')}"
    assert sent[-2] == ("PUT", schema_tag)
    verdicts = runner.invoke(app, ["verdicts", "-q", "--format", "json", dst])
    assert verdicts.exit_code == 0, verdicts.output
    listed = json.loads(verdicts.stdout)
    assert [(v["result"], v["valid"]) for v in listed["verdicts"]] == [("PASSED", True)]
    assert "tag" in listed["via"]

    proxy.requests.clear()
    code, _, err = run(src, dst)
    assert code == 0, err
    assert writes(proxy) == []  # idempotent: everything was already there, the verdict too


def test_an_index_with_one_broken_platform_writes_nothing(
    registry: RegistryServer, proxy: FaultProxy
) -> None:
    broken = generic()
    broken.arch = "arm64"  # an x86 kernel in an arm64 image: KRN-003 fails
    index = build_index([unique_bootable(), broken.build()])
    Pusher(registry.url).push("staging/broken", index, "1")

    code, out, err = run(f"docker://{proxy.host}/staging/broken:1", f"docker://{proxy.host}/prod/broken:1")
    assert code == 1
    assert "NOT BOOTABLE" in out and "not bootable: nothing was written" in err
    assert writes(proxy) == []
    assert skopeo_raw(f"docker://{registry.host}/prod/broken:1") is None
    for digest in blobs(index):
        assert status(registry, "prod/broken", "blobs", digest) == 404


def test_dry_run_says_what_would_be_copied_and_writes_nothing(
    registry: RegistryServer, proxy: FaultProxy
) -> None:
    image = unique_bootable()
    Pusher(registry.url).push("staging/dry", image, "1")
    code, _, err = run(
        "--dry-run", f"docker://{proxy.host}/staging/dry:1", f"docker://{proxy.host}/prod/dry:1"
    )
    assert code == 0, err
    assert f"would mount (or send if the registry will not): blob {image.layers[0].digest}" in err
    assert f"would push: manifest {image.digest}" in err
    assert f"would write: tag 1 -> {image.digest}" in err
    assert writes(proxy) == []
    assert skopeo_raw(f"docker://{registry.host}/prod/dry:1") is None


def test_platform_promotes_the_one_manifest_judged(registry: RegistryServer) -> None:
    index = multi_arch()
    arm = index.children[1]
    Pusher(registry.url).push("staging/one", index, "1")
    code, out, err = run(
        "--platform",
        "linux/arm64",
        "-v",
        f"docker://{registry.host}/staging/one:1",
        f"docker://{registry.host}/prod/one:1",
        quiet=False,
    )
    assert code == 0, err
    assert out.count("BOOTABLE") == 1 and "linux/arm64" in out
    assert skopeo_raw(f"docker://{registry.host}/prod/one:1") == arm.manifest.data
    assert f"written: tag 1 -> {arm.digest}" in err
    assert f"promoted docker://{registry.host}/staging/one:1 ({arm.digest}) to " in err
    assert "blobs 2 mounted" in err and "1 manifests pushed; verdict sha256:" in err and "tag written" in err


@pytest.mark.parametrize(
    ("dst", "said"),
    [
        ("oci:/tmp/somewhere:1", "must be docker://HOST/REPO:TAG"),
        ("docker://127.0.0.1:1/prod/os", "must name a tag"),
        (f"docker://127.0.0.1:1/prod/os@sha256:{'a' * 64}", "must name a tag"),
        ("docker://127.0.0.1:1/Prod/os:1", "invalid"),
    ],
)
def test_destination_other_than_a_registry_tag_is_a_usage_error(dst: str, said: str) -> None:
    code, _, err = run(f"oci-archive:{FIXTURES / 'example-cos.tar'}", dst)
    assert code == 2
    assert said in err


def test_missing_destination_is_a_usage_error() -> None:
    assert run(f"oci-archive:{FIXTURES / 'example-cos.tar'}")[0] == 2


# --- across registries: streamed and verified ---------------------------------------------------


def test_across_registries_every_blob_is_streamed(registry: RegistryServer, second: RegistryServer) -> None:
    index = multi_arch()
    Pusher(registry.url).push("staging/far", index, "1")
    done = promote(
        f"docker://{registry.host}/staging/far:1", f"docker://{second.host}/prod/far:1", Policy(), Options()
    )
    assert done.exit_code == 0, done.error
    assert {s.action for s in done.steps if s.kind == "blob"} == {Action.SEND}
    assert skopeo_raw(f"docker://{second.host}/prod/far:1") == index.manifest.data
    for digest in blobs(index):
        assert status(second, "prod/far", "blobs", digest) == 200


def test_a_tag_moved_after_the_check_does_not_change_what_is_copied(
    registry: RegistryServer, second: RegistryServer
) -> None:
    checked_image, swapped = unique_bootable(), generic()
    swapped.arch = "arm64"  # not bootable: what an attacker (or a race) would slip in
    Pusher(registry.url).push("staging/race", checked_image, "1")

    def retag(checked: Checked) -> None:
        Pusher(registry.url).push("staging/race", swapped.build(), "1")

    done = promote(
        f"docker://{registry.host}/staging/race:1",
        f"docker://{second.host}/prod/race:1",
        Policy(),
        Options(),
        after_check=retag,
    )
    assert done.exit_code == 0, done.error
    assert skopeo_raw(f"docker://{registry.host}/staging/race:1") != checked_image.manifest.data
    assert skopeo_raw(f"docker://{second.host}/prod/race:1") == checked_image.manifest.data


@contextmanager
def rotting(server: RegistryServer, digest: str) -> Iterator[Callable[[Checked], None]]:
    """An after_check that changes blob `digest` in the registry's storage (same size, other
    bytes) once the check found the image bootable; the blob is restored on leaving."""
    stored = server.blob_file(digest)
    original = stored.read_bytes()

    def corrupt(checked: Checked) -> None:
        assert checked.reports and checked.reports[0].bootable()
        stored.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))

    try:
        yield corrupt
    finally:
        stored.write_bytes(original)


def assert_refused_as_corrupt(done: Promotion, digest: str) -> None:
    assert done.exit_code == 3
    assert done.error is not None and "digest mismatch" in done.error.lower() and digest in done.error


def test_layer_corrupted_after_the_check_is_never_completed_in_the_destination(
    registry: RegistryServer, second: RegistryServer
) -> None:
    image = unique_bootable()
    Pusher(registry.url).push("staging/rot", image, "1")
    layer = image.layers[0]
    with rotting(registry, layer.digest) as corrupt:
        done = promote(
            f"docker://{registry.host}/staging/rot:1",
            f"docker://{second.host}/prod/rot:1",
            Policy(),
            Options(),
            after_check=corrupt,
        )
    assert_refused_as_corrupt(done, layer.digest)
    assert skopeo_raw(f"docker://{second.host}/prod/rot:1") is None
    assert status(second, "prod/rot", "blobs", layer.digest) == 404
    assert status(second, "prod/rot", "manifests", image.digest) == 404


def test_layer_corrupted_after_the_check_is_not_mounted_within_one_registry(registry: RegistryServer) -> None:
    # One registry keeps one copy of a digest's bytes for every repository: a mount links
    # whatever it holds now, so the bytes are read and verified before the mount is asked for.
    image = unique_bootable()
    Pusher(registry.url).push("staging/rotmount", image, "1")
    layer = image.layers[0]
    with rotting(registry, layer.digest) as corrupt:
        done = promote(
            f"docker://{registry.host}/staging/rotmount:1",
            f"docker://{registry.host}/prod/rotmount:1",
            Policy(),
            Options(),
            after_check=corrupt,
        )
        assert_refused_as_corrupt(done, layer.digest)
        assert status(registry, "prod/rotmount", "manifests", "1") == 404
        assert status(registry, "prod/rotmount", "blobs", layer.digest) == 404
    # Intact, the same promotion still mounts every blob: nothing is streamed within one registry.
    done = promote(
        f"docker://{registry.host}/staging/rotmount:1",
        f"docker://{registry.host}/prod/rotmount:1",
        Policy(),
        Options(),
    )
    assert done.exit_code == 0, done.error
    actions = {s.digest: s.action for s in done.steps if s.kind == "blob"}
    assert actions[Digest.parse(layer.digest)] is Action.MOUNT and Action.SEND not in actions.values()


def test_layer_corrupted_after_the_check_is_not_taken_as_present_within_one_registry(
    registry: RegistryServer,
) -> None:
    # A tag of the same repository (or a repository already linking the blob): DST "holds" the
    # blob, but within one registry what it holds is the bytes that were judged, as they are now.
    image = unique_bootable()
    Pusher(registry.url).push("staging/rottag", image, "rc")
    layer = image.layers[0]
    with rotting(registry, layer.digest) as corrupt:
        done = promote(
            f"docker://{registry.host}/staging/rottag:rc",
            f"docker://{registry.host}/staging/rottag:stable",
            Policy(),
            Options(),
            after_check=corrupt,
        )
        assert_refused_as_corrupt(done, layer.digest)
        assert status(registry, "staging/rottag", "manifests", "stable") == 404


def test_an_upload_gets_the_last_bytes_of_a_blob_only_after_it_verified() -> None:
    data = bytes(range(256)) * 64
    wrong = Digest.of(b"other bytes")
    reader = _Withheld(VerifyingReader(io.BytesIO(data), wrong, "blob", len(data)), len(data), None)
    given = 0
    with pytest.raises(DigestMismatch):
        while chunk := reader.read(4096):
            given += len(chunk)
    assert given < len(data)  # the read that would complete the body raised instead


def test_a_failed_push_leaves_the_destination_tag_where_it_was(
    registry: RegistryServer, second: RegistryServer
) -> None:
    old, new = unique_bootable(), unique_bootable()
    Pusher(second.url).push("prod/keep", old, "1")
    Pusher(registry.url).push("staging/keep", new, "1")
    fronted = FaultProxy(second.host)
    try:
        fronted.fail_next(500, "/blobs/uploads/")  # the destination breaks down mid-push
        code, _, err = run(f"docker://{registry.host}/staging/keep:1", f"docker://{fronted.host}/prod/keep:1")
    finally:
        fronted.close()
    assert code == 3
    assert err.startswith(f"ociboot: error: docker://{registry.host}/staging/keep:1: promoting to ")
    assert skopeo_raw(f"docker://{second.host}/prod/keep:1") == old.manifest.data


def test_a_verdict_that_cannot_be_attached_leaves_the_tag_unwritten(
    registry: RegistryServer, second: RegistryServer
) -> None:
    image = unique_bootable()
    Pusher(registry.url).push("staging/noverdict", image, "1")
    Pusher(second.url).push("prod/noverdict", image, "elsewhere")  # every blob and manifest there
    fronted = FaultProxy(second.host)
    try:
        fronted.fail_next(400, "/blobs/uploads/")  # the first upload is the verdict's
        code, _, err = run(
            f"docker://{registry.host}/staging/noverdict:1", f"docker://{fronted.host}/prod/noverdict:1"
        )
        uploads = [p for m, p, _ in fronted.requests if m == "POST" and "/blobs/uploads/" in p]
    finally:
        fronted.close()
    assert code == 3 and "promoting to" in err
    assert len(uploads) == 1
    assert status(second, "prod/noverdict", "manifests", "1") == 404


# --- credentials ----------------------------------------------------------------------------------


def test_two_repositories_with_different_credentials_under_token_auth(token_registry: RegistryServer) -> None:
    tokens = token_registry.tokens
    assert tokens is not None
    image = unique_bootable()
    Pusher(token_registry.url, "alice", "wonderland").push("team/app", image, "promo")
    before = len(tokens.issued)
    code, _, err = run(
        "--src-creds",
        "bob:builder",
        "--dest-creds",
        "alice:wonderland",
        f"docker://{token_registry.host}/team/app:promo",
        f"docker://{token_registry.host}/prod/tok:1",
    )
    assert code == 0, err
    asked = tokens.issued[before:]  # (skopeo below asks for its own)
    bob = {scope for user, scopes in asked if user == "bob" for scope in scopes}
    alice = {scope for user, scopes in asked if user == "alice" for scope in scopes}
    assert bob == {"repository:team/app:pull"}
    assert "repository:prod/tok:pull,push" in alice
    # (pull alone on prod/tok: the verdicts already there are read before one is attached)
    assert alice <= {"repository:prod/tok:pull,push", "repository:prod/tok:pull", "repository:team/app:pull"}
    raw = skopeo_raw(f"docker://{token_registry.host}/prod/tok:1", "--creds", "alice:wonderland")
    assert raw == image.manifest.data


def test_a_destination_that_denies_push_keeps_its_tag(token_registry: RegistryServer) -> None:
    old, new = unique_bootable(), unique_bootable()
    Pusher(token_registry.url, "alice", "wonderland").push("team/lib", old, "1")
    Pusher(token_registry.url, "alice", "wonderland").push("team/app", new, "deny")
    code, _, err = run(
        "--src-creds",
        "bob:builder",
        "--dest-creds",
        "bob:builder",  # bob may only pull team/lib
        f"docker://{token_registry.host}/team/app:deny",
        f"docker://{token_registry.host}/team/lib:1",
    )
    assert code == 3
    assert "promoting to" in err and "bob:builder" not in err and "builder" not in err
    raw = skopeo_raw(f"docker://{token_registry.host}/team/lib:1", "--creds", "alice:wonderland")
    assert raw == old.manifest.data


# --- offline sources --------------------------------------------------------------------------------


def test_oci_archive_is_promoted_into_a_registry(registry: RegistryServer) -> None:
    archive = f"oci-archive:{FIXTURES / 'example-cos.tar'}"
    code, _, err = run(archive, f"docker://{registry.host}/prod/cos:1")
    assert code == 0, err
    assert skopeo_raw(f"docker://{registry.host}/prod/cos:1") == skopeo_raw(archive)


def test_a_layout_whose_index_json_lists_the_platforms_is_promoted_as_that_index(
    registry: RegistryServer, tmp_path: Path
) -> None:
    # index.json listing one unnamed manifest per platform: `check oci:DIR` reads it as one
    # multi-platform image, so a promotion judges and copies that index, as its exact bytes.
    amd, arm = unique_bootable(), unique_bootable("arm64")
    files = {"oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"})}
    entries = []
    for image, arch in ((amd, "amd64"), (arm, "arm64")):
        files.update((f"blobs/sha256/{d.removeprefix('sha256:')}", b) for d, b in image.blobs.items())
        entries.append(image.manifest.descriptor(platform={"os": "linux", "architecture": arch}))
    index_json = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    files["index.json"] = index_json
    for rel, data in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    code, out, err = run(f"oci:{tmp_path}", f"docker://{registry.host}/prod/layout:1")
    assert code == 0, err
    assert out.count("BOOTABLE") == 2
    assert skopeo_raw(f"docker://{registry.host}/prod/layout:1") == index_json


def test_docker_archive_is_promoted_into_a_registry(registry: RegistryServer, tmp_path: Path) -> None:
    image = unique_bootable()
    path = write_docker_archive(tmp_path / "saved.tar", [(image, ["os:1"])])
    done = promote(f"docker-archive:{path}", f"docker://{registry.host}/prod/saved:1", Policy(), Options())
    assert done.exit_code == 0, done.error
    assert done.subject is not None
    raw = skopeo_raw(f"docker://{registry.host}/prod/saved:1")
    assert raw is not None and Digest.of(raw) == done.subject.digest
    config = subprocess.run(
        [
            "skopeo",
            "inspect",
            "--config",
            "--raw",
            "--tls-verify=false",
            f"docker://{registry.host}/prod/saved:1",
        ],
        capture_output=True,
        check=True,
    ).stdout
    assert config == image.config.data
    inspected = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", f"docker://{registry.host}/prod/saved:1"],
            capture_output=True,
            check=True,
        ).stdout
    )
    assert len(inspected["Layers"]) == len(image.layers)


def test_reports_of_a_promotion_go_where_check_sends_them(registry: RegistryServer, tmp_path: Path) -> None:
    """`-o FORMAT=FILE` as for check: the gate's CI keeps its SARIF and JUnit from the promotion."""
    image = unique_bootable()
    Pusher(registry.url).push("staging/outs", image, "1")
    sarif, junit = tmp_path / "r.sarif", tmp_path / "r.xml"
    code, out, err = run(
        "-o",
        f"sarif={sarif}",
        "-o",
        f"junit={junit}",
        "--format",
        "json",
        f"docker://{registry.host}/staging/outs:1",
        f"docker://{registry.host}/prod/outs:1",
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["bootable"] is True and doc["$schema"] == schemas.schema_id("check")
    jsonschema.Draft202012Validator(schemas.load("check")).validate(doc)
    assert json.loads(sarif.read_text())["version"] == "2.1.0"
    assert "<testsuite" in junit.read_text()
    code, _, err = run(
        "-o",
        str(tmp_path / "s"),
        "-o",
        f"json={tmp_path / 's'}",
        f"docker://{registry.host}/staging/outs:1",
        f"docker://{registry.host}/prod/outs2:1",
    )
    assert code == 2 and "into one file" in " ".join(err.split())
    assert skopeo_raw(f"docker://{registry.host}/prod/outs2:1") is None


def test_no_attach_promotes_without_a_verdict(registry: RegistryServer) -> None:
    image = unique_bootable()
    Pusher(registry.url).push("staging/bare", image, "1")
    dst = f"docker://{registry.host}/prod/bare:1"
    code, _, err = run("--no-attach", f"docker://{registry.host}/staging/bare:1", dst)
    assert code == 0, err
    assert skopeo_raw(dst) == image.manifest.data
    assert (
        skopeo_raw(f"docker://{registry.host}/prod/bare:sha256-{image.digest.removeprefix('sha256:')}")
        is None
    )
    verdicts = runner.invoke(app, ["verdicts", "-q", dst])
    assert verdicts.exit_code == 1, verdicts.output
