"""`check --promotion-list FORMAT=FILE`: the images that passed, by digest, for skopeo sync,
regsync and kpromo; Debian's skopeo runs the skopeo-sync file against real registries."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from typer.testing import CliRunner

from fixtures import make_boot_fixtures as boot
from ociboot import api
from ociboot.cli import app
from ociboot.digest import Digest
from ociboot.promolist import ListFormat, Plan, Target, promoted, render
from ociboot.sources import SourceOptions
from tests.support.bootimages import KVER, BootImage, bootable, generic
from tests.support.imagebuilder import BuiltImage, BuiltIndex, build_index, write_oci_layout
from tests.support.registry_push import Pusher
from tests.support.registry_server import RegistryServer, start_registry

pytestmark = pytest.mark.registry
runner = CliRunner()
SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"


def _arm64(image: BootImage) -> BootImage:
    """The image for arm64 machines, with an arm64 kernel."""
    image.arch = "arm64"
    return image.file(f"/boot/vmlinuz-{KVER}", boot.arm64_image())


@dataclass(frozen=True)
class Staged:
    host: str
    multi: BuiltIndex  # two bootable platforms: passes
    one: BuiltImage  # bootable: passes
    broken: BuiltImage  # an x86 kernel in an arm64 image (KRN-003): does not pass

    @property
    def refs(self) -> list[str]:
        return [f"{self.host}/promo/multi:1", f"{self.host}/promo/one:2", f"{self.host}/promo/broken:3"]


@pytest.fixture(scope="module")
def staged(registry: RegistryServer) -> Staged:
    multi = build_index([bootable("generic").build(), _arm64(bootable("generic")).build()])
    broken = generic()
    broken.arch = "arm64"  # with its x86 kernel: KRN-003 fails
    one = bootable("cos").build()
    pusher = Pusher(registry.url)
    pusher.push("promo/multi", multi, "1")
    pusher.push("promo/one", one, "2")
    pusher.push("promo/broken", broken.build(), "3")
    return Staged(registry.host, multi, one, broken.build())


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A second registry, the destination of the copies."""
    server = start_registry("prod_registry", tmp_path_factory.mktemp("prod-registry"))
    yield server
    server.stop()


def check(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["check", "-q", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def lists(staged: Staged, prod: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One check of the three images writing all three lists."""
    directory = tmp_path_factory.mktemp("lists")
    images = directory / "images.txt"
    images.write_text("# staging\n" + "\n".join(staged.refs) + "\n")
    code, _, err = check(
        "--from",
        str(images),
        "--promotion-list",
        f"skopeo-sync={directory / 'sync.yaml'}",
        "--promotion-list",
        f"regsync={directory / 'regsync.yaml'}",
        "--promotion-list",
        f"kpromo={directory / 'images.yaml'}",
        "--promotion-target",
        f"{prod.host}/prod",
    )
    assert code == 1, err  # promo/broken is not bootable
    texts = {name: (directory / f).read_text() for name, f in _FILES.items()}
    return {"dir": directory, "text": texts, "yaml": {k: yaml.safe_load(v) for k, v in texts.items()}}


_FILES = {"skopeo-sync": "sync.yaml", "regsync": "regsync.yaml", "kpromo": "images.yaml"}


# skopeo-sync(1), "YAML file content (used source for --src yaml)", skopeo 1.9 (Debian 12):
#   REGISTRY: {images: {REPOSITORY: [TAG or DIGEST, ...]}, images-by-tag-regex: {...},
#              credentials: {username, password}, tls-verify: bool, cert-dir: path}
# https://github.com/containers/skopeo/blob/v1.9.3/docs/skopeo-sync.1.md
def test_the_skopeo_sync_file_lists_exactly_the_passing_digests(
    lists: dict[str, Any], staged: Staged
) -> None:
    assert lists["yaml"]["skopeo-sync"] == {
        staged.host: {
            "tls-verify": False,  # the check read it over plain HTTP (loopback)
            "images": {"promo/multi": [staged.multi.digest], "promo/one": [staged.one.digest]},
        }
    }
    # skopeo cannot tag a digest it copies: the tags are said beside it, for the person.
    assert f'"{staged.multi.digest}"  # tags: 1' in lists["text"]["skopeo-sync"]


# regclient docs/regsync.md, "Configuration File": version: 1; creds: [{registry, tls:
# enabled|insecure|disabled, user, pass, ...}]; sync: [{source, target, type: registry|repository|image}].
# https://github.com/regclient/regclient/blob/main/docs/regsync.md
def test_the_regsync_file_copies_each_passing_digest_to_its_tag(
    lists: dict[str, Any], staged: Staged, prod: RegistryServer
) -> None:
    config = lists["yaml"]["regsync"]
    assert config["version"] == 1
    assert config["creds"] == [
        {"registry": host, "tls": "disabled"} for host in sorted([staged.host, prod.host])
    ]
    assert config["sync"] == [
        {
            "source": f"{staged.host}/promo/multi@{staged.multi.digest}",
            "target": f"{prod.host}/prod/multi:1",
            "type": "image",
        },
        {
            "source": f"{staged.host}/promo/one@{staged.one.digest}",
            "target": f"{prod.host}/prod/one:2",
            "type": "image",
        },
    ]
    assert "{{" not in lists["text"]["regsync"]  # regsync expands Go templates in these fields


# promo-tools docs/image-promotion.md, "Thin manifests example": images.yaml is a list of
# {name: IMAGE (relative to the src registry of promoter-manifest.yaml), dmap: {DIGEST: [TAG, ...]}}.
# https://github.com/kubernetes-sigs/promo-tools/blob/main/docs/image-promotion.md
def test_the_kpromo_images_yaml_maps_each_passing_digest_to_its_tags(
    lists: dict[str, Any], staged: Staged
) -> None:
    assert lists["yaml"]["kpromo"] == [
        {"name": "multi", "dmap": {staged.multi.digest: ["1"]}},
        {"name": "one", "dmap": {staged.one.digest: ["2"]}},
    ]
    assert f"relative to {staged.host}/promo " in lists["text"]["kpromo"]


def test_skopeo_sync_copies_only_the_passing_digests(
    lists: dict[str, Any], staged: Staged, prod: RegistryServer
) -> None:
    sync = subprocess.run(
        [
            *(SKOPEO, "sync", "--all", "--src", "yaml", "--dest", "docker", "--dest-tls-verify=false"),
            *(str(lists["dir"] / _FILES["skopeo-sync"]), f"{prod.host}/synced"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert sync.returncode == 0, sync.stderr
    for name, image in (("multi", staged.multi), ("one", staged.one)):
        raw = _inspect(f"{prod.host}/synced/{name}@{image.digest}")
        assert raw is not None and f"sha256:{hashlib.sha256(raw).hexdigest()}" == image.digest
    assert _inspect(f"{prod.host}/synced/broken@{staged.broken.digest}") is None
    catalog = requests.get(f"{prod.url}/v2/_catalog", timeout=10).json()["repositories"]
    assert sorted(r for r in catalog if r.startswith("synced/")) == ["synced/multi", "synced/one"]


def _inspect(reference: str) -> bytes | None:
    found = subprocess.run(
        [SKOPEO, "inspect", "--raw", "--tls-verify=false", f"docker://{reference}"],
        capture_output=True,
        timeout=60,
    )
    return found.stdout if found.returncode == 0 else None


def test_with_platform_the_list_names_the_one_manifest_judged(staged: Staged, tmp_path: Path) -> None:
    out = tmp_path / "images.yaml"
    code, _, err = check(staged.refs[0], "--platform", "linux/arm64", "--promotion-list", f"kpromo={out}")
    assert code == 0, err
    arm = staged.multi.children[1]
    assert yaml.safe_load(out.read_text()) == [{"name": "multi", "dmap": {arm.digest: ["1"]}}]


def test_a_tag_that_moved_between_two_checks_is_given_to_neither_digest(
    registry: RegistryServer,
) -> None:
    pusher = Pusher(registry.url)
    first, second = bootable("generic").build(), bootable("cos").build()
    ref = f"{registry.host}/moving/os:1"
    pusher.push("moving/os", first, "1")
    before = api.check(ref)
    pusher.push("moving/os", second, "1")
    after = api.check(ref)
    plan = Plan.of([ref, ref])
    found = promoted(plan, (*before.checked, *after.checked), fatal_warnings=False)
    assert found.ambiguous == ("os:1",)
    assert [(str(e.digest), e.tags) for e in found.entries] == sorted(
        [(first.digest, []), (second.digest, [])]
    )


def test_a_digest_that_does_not_parse_back_never_reaches_a_file(staged: Staged) -> None:
    """The gate: whatever a Digest holds, a line it cannot be parsed back from is refused."""
    checked = api.check(staged.refs[1]).checked[0]
    assert checked.subject is not None
    forged = replace(checked.subject, digest=Digest("sha256", 'ab"\n- evil: {{ .Sync }}'))
    plan = Plan.of([staged.refs[1]])
    found = promoted(plan, (replace(checked, subject=forged),), fatal_warnings=False)
    assert found.entries == () and len(found.refused) == 1
    for list_format in ListFormat:
        text = render(list_format, found, plan, SourceOptions(), Target.parse("127.0.0.1:1/prod"))
        assert "evil" not in text
        assert yaml.safe_load(text) in ({}, [], {"version": 1, "creds": [_loopback_creds], "sync": []})


_loopback_creds = {"registry": "127.0.0.1:1", "tls": "disabled"}


def test_an_image_not_in_a_registry_is_left_out_with_a_warning(staged: Staged, tmp_path: Path) -> None:
    layout = write_oci_layout(tmp_path / "local", {"v1": staged.one})
    out = tmp_path / "sync.yaml"
    code, _, err = check(f"oci:{layout}:v1", staged.refs[1], "--promotion-list", f"skopeo-sync={out}")
    assert code == 0, err
    assert f"oci:{layout}:v1: not a registry image: left out of the promotion lists" in err
    assert yaml.safe_load(out.read_text())[staged.host]["images"] == {"promo/one": [staged.one.digest]}


def test_nothing_passed_is_an_empty_list_each_copier_reads(staged: Staged, tmp_path: Path) -> None:
    outs = {f: tmp_path / f"{f}.yaml" for f in ListFormat}
    args = [a for f, p in outs.items() for a in ("--promotion-list", f"{f}={p}")]
    code, _, err = check(staged.refs[2], *args, "--promotion-target", "127.0.0.1:1/prod")
    assert code == 1, err
    assert yaml.safe_load(outs[ListFormat.SKOPEO_SYNC].read_text()) == {}
    assert yaml.safe_load(outs[ListFormat.KPROMO].read_text()) == []
    assert yaml.safe_load(outs[ListFormat.REGSYNC].read_text())["sync"] == []


def test_an_unreadable_image_is_not_listed(staged: Staged, registry: RegistryServer, tmp_path: Path) -> None:
    out = tmp_path / "images.yaml"
    missing = f"{registry.host}/promo/absent:1"
    code, _, err = check(missing, staged.refs[1], "--promotion-list", f"kpromo={out}")
    assert code == 3, err
    assert yaml.safe_load(out.read_text()) == [{"name": "one", "dmap": {staged.one.digest: ["2"]}}]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--promotion-list", "crane=x.yaml"], "unknown promotion list format 'crane'"),
        (["--promotion-list", "kpromo"], "is not FORMAT=FILE"),
        (["--promotion-list", "kpromo=/nonexistent/dir/x.yaml"], "/nonexistent/dir/x.yaml"),
        (["--promotion-list", "regsync=r.yaml"], "needs --promotion-target"),
        (["--promotion-list", "kpromo=k.yaml", "--promotion-target", "h:1/p"], "only a regsync list"),
        (["--promotion-list", "regsync=r.yaml", "--promotion-target", "prod"], "name the registry host"),
        (["--promotion-list", "kpromo=a.yaml", "--promotion-list", "skopeo-sync=a.yaml"], "into one file"),
        (["--promotion-list", "kpromo=a.yaml", "--output", "a.yaml"], "into one file"),
    ],
)
def test_a_list_that_cannot_be_written_is_a_usage_error_before_any_image_is_read(
    args: list[str], says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # Nothing listens there: reading the image would be exit 3, and it is never tried.
    code, _, err = check("127.0.0.1:1/never/read:1", *args)
    assert code == 2, err
    assert says in " ".join(err.split()) and "never/read" not in err


def test_a_kpromo_list_has_one_source_registry(tmp_path: Path) -> None:
    code, _, err = check(
        "127.0.0.1:1/a/os:1", "127.0.0.1:2/a/os:1", "--promotion-list", f"kpromo={tmp_path / 'k.yaml'}"
    )
    assert code == 2
    assert "one source registry" in err and not (tmp_path / "k.yaml").exists()


def test_a_list_never_overwrites_an_image_given(staged: Staged, tmp_path: Path) -> None:
    layout = write_oci_layout(tmp_path / "local", {"v1": staged.one})
    before = sorted(p.read_bytes() for p in layout.rglob("*") if p.is_file())
    code, _, err = check(str(layout), "--promotion-list", f"kpromo={layout / 'index.json'}")
    assert code == 2 and "would destroy it" in err
    assert sorted(p.read_bytes() for p in layout.rglob("*") if p.is_file()) == before


def test_the_files_are_json_scalars_in_yaml(lists: dict[str, Any]) -> None:
    """Every quoted scalar is a JSON string: a reader of either grammar reads the same value."""
    for text in lists["text"].values():
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            for quoted in line.split('"')[1::2]:
                assert json.loads(f'"{quoted}"') == quoted


@pytest.mark.parametrize(("fatal", "listed"), [([], True), (["--fatal-warnings"], False)])
def test_an_image_with_warnings_is_listed_unless_warnings_are_fatal(
    registry: RegistryServer, tmp_path: Path, fatal: list[str], listed: bool
) -> None:
    warned = bootable("generic").file("/etc/os-release", "ID=debian\nVERSION_ID=12\n").build()  # OSR-001
    Pusher(registry.url).push("warned/os", warned, "4")
    out = tmp_path / "images.yaml"
    code, _, err = check(f"{registry.host}/warned/os:4", *fatal, "--promotion-list", f"kpromo={out}")
    assert code == (0 if listed else 1), err
    assert yaml.safe_load(out.read_text()) == (
        [{"name": "os", "dmap": {warned.digest: ["4"]}}] if listed else []
    )


def test_a_list_that_could_not_be_written_whole_is_exit_2(staged: Staged) -> None:
    """A copier must not act on a part of the list: a full disk is no answer, whatever the verdict."""
    code, _, err = check(staged.refs[1], "--promotion-list", "kpromo=/dev/full")
    assert code == 2
    assert "the promotion list could not be written to /dev/full" in err
