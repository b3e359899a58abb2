"""The verdict cache: a re-check of an unchanged image is one manifest read (issue 10).

A stored verdict is hostile until verified, as a layer index is (tests/test_cache.py): it is read
only from a directory that is the user's alone, names the digest and key it is for, is bounded,
and holds only report.py's types.  Only a complete verdict is stored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ociboot import api, pipeline
from ociboot.boot import scan
from ociboot.boot.check import Profile
from ociboot.boot.context import Policy
from ociboot.boot.kernel import KernelInfo
from ociboot.cache import MAX_VERDICT_BYTES, LayerCache, Verdict, code_fingerprint, verdict_key
from ociboot.cache import verdict as verdict_module
from ociboot.cache.verdict import VERDICT_FORMAT, VerdictCodec, package_fingerprint
from ociboot.cli import app
from ociboot.digest import Digest
from ociboot.pipeline import Options
from ociboot.ref import ImageRef, Transport
from ociboot.report import Finding, Outcome, Report, RuleInfo, Severity, Skipped
from ociboot.spec import Descriptor, Platform
from tests.support.bootimages import bootable, generic
from tests.support.imagebuilder import build_index, write_oci_archive, write_oci_layout
from tests.support.registry_push import Pusher
from tests.support.registry_server import RegistryServer, blob_gets

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent
CODEC = VerdictCodec([Profile])


def layout_of(tmp_path: Path, image: object, name: str = "layout") -> str:
    write_oci_layout(tmp_path / name, {"latest": image})  # type: ignore[dict-item]
    return str(ImageRef(Transport.OCI, path=str(tmp_path / name), name="latest"))


def cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def verdict_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.vdt"))


def remove_layer_blobs(layout: Path, keep: set[str]) -> int:
    """Delete every blob of an OCI layout but the manifests and indexes in `keep`: a check that
    reads any layer or config now fails."""
    removed = 0
    for blob in (layout / "blobs" / "sha256").iterdir():
        if f"sha256:{blob.name}" not in keep:
            blob.unlink()
            removed += 1
    return removed


# --- a re-check reads no layer and gives the same outputs ------------------------------------------


def test_a_re_check_fetches_no_blob_and_writes_identical_outputs(
    registry: RegistryServer, tmp_path: Path
) -> None:
    built = bootable("generic").build()
    Pusher(registry.url).push("verdict/same", built, tag="v1")
    ref = f"docker://{registry.host}/verdict/same:v1"
    blobs = [str(b.digest) for b in built.layers] + [str(built.config.digest)]

    def run(name: str) -> dict[str, bytes]:
        out = tmp_path / name
        out.mkdir()
        files = {f: out / f"report.{f}" for f in ("text", "json", "sarif", "junit")}
        code, _, err = cli(
            "check", ref, "-v", "--cache-dir", str(tmp_path / "c"), *(f"-o{f}={p}" for f, p in files.items())
        )
        assert code == 0, err
        return {f: p.read_bytes() for f, p in files.items()}

    cold = run("cold")
    after_cold = blob_gets(registry, "verdict/same", blobs)
    warm = run("warm")
    assert after_cold >= len(blobs)  # the cold run read them: the count is real
    assert blob_gets(registry, "verdict/same", blobs) == after_cold  # the re-check none
    assert warm == cold
    assert len(verdict_files(tmp_path / "c")) == 1


def test_a_miss_judges_the_manifest_it_pinned_reading_it_once(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """The key's manifest is the one judged: the tag is asked once, on a miss as on a hit."""
    built = bootable("generic").build()
    Pusher(registry.url).push("verdict/once", built, tag="v1")
    ref = f"docker://{registry.host}/verdict/once:v1"

    def tag_gets() -> int:
        return registry.log.read_text(errors="replace").count("GET /v2/verdict/once/manifests/v1 ")

    before = tag_gets()
    code, _, err = cli("check", "-q", ref, "--cache-dir", str(tmp_path / "c"))
    assert code == 0, err
    assert tag_gets() - before == 1
    assert len(verdict_files(tmp_path / "c")) == 1


def test_an_index_verdict_is_every_platform_s_report(tmp_path: Path) -> None:
    amd = bootable("generic").build()
    arm = generic()
    arm.arch = "arm64"  # an x86 kernel in an arm64 image: not bootable, a complete verdict still
    index = build_index([amd, arm.build()])
    root = write_oci_layout(tmp_path / "multi", {"v1": index})
    ref = str(ImageRef(Transport.OCI, path=str(root), name="v1"))
    options = Options(cache=api.open_cache(tmp_path / "c"))
    cold = api.check(ref, options=options)
    assert cold.exit_code == 1 and len(cold.reports) == 2
    (stored,) = verdict_files(tmp_path / "c")
    assert stored.name.startswith(Digest.parse(index.digest).hex)

    # Nothing but the index and its manifests is left to read: a miss would be unreadable.
    keep = {index.digest, amd.manifest.digest, *(c.manifest.digest for c in index.children)}
    assert remove_layer_blobs(root, keep) > 0
    warm = api.check(ref, options=Options(cache=api.open_cache(tmp_path / "c")))
    assert warm.checked == cold.checked  # reports, subject: equal field by field
    assert [r.platform for r in warm.reports] == ["linux/amd64", "linux/arm64"]
    # A platform asked for is another verdict (its subject is that platform's manifest).
    one = api.check(ref, options=Options(platform=Platform("linux", "amd64"), cache=options.cache))
    assert one.unreadable  # not stored yet, and the layers are gone: judged, so unreadable


# --- inputs of the key --------------------------------------------------------------------------


def test_another_policy_is_judged_again(tmp_path: Path) -> None:
    ref = layout_of(tmp_path, bootable("generic").build())
    options = Options(cache=api.open_cache(tmp_path / "c"))
    first = api.check(ref, options=options)
    assert first.exit_code == 0
    stricter = api.check(ref, Policy(severity={"LAY-001": "error"}, require_packages=("nosuchpkg",)), options)
    assert stricter.exit_code == 1  # not the stored pass
    assert len(verdict_files(tmp_path / "c")) == 2


def test_a_path_now_holding_another_medium_is_named_as_a_cold_check_names_it(tmp_path: Path) -> None:
    built = bootable("generic").build()
    path = tmp_path / "img"  # a bare path: its medium is sniffed, and reports name the transport
    write_oci_layout(path, {"latest": built})
    cache = api.open_cache(tmp_path / "c")
    assert api.check(str(path), options=Options(cache=cache)).reports[0].image.startswith("oci:")
    shutil.rmtree(path)
    write_oci_archive(path, {"latest": built})  # the same manifest digest, in an archive
    warm = api.check(str(path), options=Options(cache=cache))
    cold = api.check(str(path))
    assert cold.reports[0].image.startswith("oci-archive:")
    assert warm.checked == cold.checked


def test_required_packages_in_another_order_are_another_verdict(tmp_path: Path) -> None:
    ref = layout_of(tmp_path, bootable("generic").build())
    asked = Policy(require_packages=("zzz", "kernel", "aaa"))
    again = Policy(require_packages=("aaa", "kernel", "zzz", "aaa"))
    assert asked.digest == again.digest  # one policy as a verdict names it ...
    cache = api.open_cache(tmp_path / "c")
    assert api.check(ref, asked, Options(cache=cache)).exit_code == 1
    warm = api.check(ref, again, Options(cache=cache))
    cold = api.check(ref, again)
    # ... but PKG-002 answers each package in the order asked: a hit must say what a cold check says.
    assert next(f.message for f in cold.reports[0].findings if f.rule == "PKG-002") == "aaa is not installed"
    assert warm.checked == cold.checked


def test_every_input_is_in_the_key() -> None:
    base = {
        "reference": "oci:/x:latest",
        "located": "oci:/x:latest",
        "platform": None,
        "policy": Policy().digest,
        "version": "0.1.0",
        "fingerprint": "f" * 64,
        "libmagic": "545",
    }
    digest = Digest.of(b"manifest")
    keys = {verdict_key(digest, **base)}  # type: ignore[arg-type]
    keys.add(verdict_key(Digest.of(b"other"), **base))  # type: ignore[arg-type]
    changed = {
        "reference": "oci:/y:latest",
        "located": "oci-archive:/x:latest",
        "platform": "linux/arm64",
        "policy": Policy(skip=("SSH-001",)).digest,
        "version": "0.1.1",
        "fingerprint": "e" * 64,
        "libmagic": "544",
    }
    for name, value in changed.items():
        keys.add(verdict_key(digest, **{**base, name: value}))  # type: ignore[arg-type]
    assert len(keys) == 2 + len(changed)


def test_a_rule_changed_without_a_version_bump_changes_the_fingerprint(tmp_path: Path) -> None:
    package = Path(api.__file__).parent
    copy = tmp_path / "ociboot"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert package_fingerprint(copy) == package_fingerprint(package) == code_fingerprint() is not None
    rule = next((copy / "boot" / "rules").glob("*.py"))
    rule.write_text(rule.read_text().replace("Severity.ERROR", "Severity.WARNING", 1))
    assert package_fingerprint(copy) != package_fingerprint(package)
    broken = tmp_path / "broken"
    shutil.copytree(copy, broken)
    (broken / "gone.py").symlink_to(tmp_path / "nowhere")
    assert package_fingerprint(broken) is None  # no fingerprint: no verdict stored or read


def test_code_changed_without_a_version_bump_analyzes_the_layers_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fingerprint must reach the layer indexes too: a verdict missed for changed code but
    judged on the old code's stored kernel analysis would be the old verdict under a new key."""
    ref = layout_of(tmp_path, bootable("generic").build())
    assert api.check(ref, options=Options(cache=api.open_cache(tmp_path / "c"))).exit_code == 0
    analyze = scan.analyze_kernel

    def changed(*args: object, **kwargs: object) -> KernelInfo:
        return dataclasses.replace(analyze(*args, **kwargs), version="9.9.9-changed")  # type: ignore[arg-type]

    # A checkout edited in place: same version, same analyzer names, other code.
    monkeypatch.setattr(scan, "analyze_kernel", changed)
    monkeypatch.setattr(pipeline, "code_fingerprint", lambda: "e" * 64)
    monkeypatch.setattr(verdict_module, "code_fingerprint", lambda: "e" * 64)  # cache.build_id's
    warm = api.check(ref, options=Options(cache=api.open_cache(tmp_path / "c")))
    assert warm.reports[0].facts["kernel"]["version"] == "9.9.9-changed"


# --- only complete verdicts are stored ------------------------------------------------------------


def test_a_verdict_with_a_check_not_run_is_never_stored(tmp_path: Path) -> None:
    ref = layout_of(tmp_path, bootable("generic").build())
    options = Options(cache=api.open_cache(tmp_path / "c"))
    batch = api.check(ref, Policy(analysis_budget=1), options)
    assert any(f.outcome is Outcome.ERROR for r in batch.reports for f in r.findings)
    assert batch.exit_code == 1
    assert verdict_files(tmp_path / "c") == []
    assert api.check(ref, options=options).exit_code == 0
    assert len(verdict_files(tmp_path / "c")) == 1


def test_an_unreadable_image_is_never_stored(tmp_path: Path) -> None:
    built = bootable("generic").build()
    ref = layout_of(tmp_path, built)
    remove_layer_blobs(tmp_path / "layout", {built.manifest.digest})
    options = Options(cache=api.open_cache(tmp_path / "c"))
    assert api.check(ref, options=options).exit_code == 3
    assert verdict_files(tmp_path / "c") == []


# --- a stored verdict is hostile until verified ------------------------------------------------


def _forge(good: Path, bad: Path) -> None:
    """What a writer of a shared cache dir can do: the good image's reports under the bad one's
    digest and key, re-sealed with a valid checksum."""
    genuine = CODEC.decode(good.read_bytes())
    victim = CODEC.decode(bad.read_bytes())
    forged = dataclasses.replace(genuine, digest=victim.digest, key=victim.key, subject=victim.subject)
    bad.write_bytes(CODEC.seal(forged))


def _good_and_bad(tmp_path: Path, root: Path) -> tuple[str, Path, Path]:
    """A bootable and a not-bootable image checked into the cache `root`: the bad image's
    reference, then the verdict entries of the good and the bad one."""
    good = layout_of(tmp_path, generic().build(), "good")
    bad = layout_of(tmp_path, generic().drop("/boot").build(), "bad")
    assert cli("check", good, "--cache-dir", str(root), "-q")[0] == 0
    assert cli("check", bad, "--cache-dir", str(root), "-q")[0] == 1
    good_entry, bad_entry = sorted(verdict_files(root), key=lambda p: p.stat().st_mtime)
    return bad, good_entry, bad_entry


def test_a_forged_verdict_in_a_shared_cache_dir_cannot_pass_an_image(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    bad, good_entry, bad_entry = _good_and_bad(tmp_path, shared)
    _forge(good_entry, bad_entry)
    assert cli("check", bad, "--cache-dir", str(shared), "-q")[0] == 0  # the forgery is real
    shared.chmod(0o1777)
    code, out, err = cli("check", bad, "--cache-dir", str(shared), "-q")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and f"cache directory {shared} is writable by group and others" in err
    shared.chmod(0o700)
    bad_entry.parent.chmod(0o777)
    code, _, err = cli("check", bad, "--cache-dir", str(shared), "-q")
    assert code == 3 and "is writable by group and others" in err


def test_a_verdict_copied_under_another_digest_is_ignored(tmp_path: Path) -> None:
    root = tmp_path / "c"
    bad, good_entry, bad_entry = _good_and_bad(tmp_path, root)
    bad_entry.write_bytes(good_entry.read_bytes())  # names the good digest: not for this one
    assert cli("check", bad, "--cache-dir", str(root), "-q")[0] == 1


def _sealed(doc: bytes, body: bytes | None = None) -> bytes:
    body = zlib.compress(doc) if body is None else body
    return struct.pack(">8sH32s", b"ocibootV", VERDICT_FORMAT, hashlib.sha256(body).digest()) + body


def test_hostile_verdict_files_are_misses_and_removed(tmp_path: Path) -> None:
    ref = layout_of(tmp_path, bootable("generic").build())
    root = tmp_path / "c"
    assert cli("check", ref, "--cache-dir", str(root), "-q")[0] == 0
    (entry,) = verdict_files(root)
    doc = json.loads(zlib.decompress(entry.read_bytes()[42:]))
    hostile = {
        # inflates past the cap (a zlib bomb of valid JSON)
        "bomb": _sealed(b" " * (MAX_VERDICT_BYTES + 1) + json.dumps(doc).encode()),
        # over the cap as stored
        "long": _sealed(b"", b"\0" * (MAX_VERDICT_BYTES + 1)),
        # names a class that is not a report type
        "class": _sealed(json.dumps({**doc, "reports": [{"d": "subprocess.Popen", "f": {}}]}).encode()),
        # a report that is not a Report
        "type": _sealed(
            json.dumps({**doc, "reports": [{"e": "ociboot.report.Severity", "v": "error"}]}).encode()
        ),
        "cut": entry.read_bytes()[:-3],
        # valid checksum and size, JSON nested past the parser's depth (a RecursionError)
        "deep": _sealed(b"[" * 100_000),
    }
    for name, data in hostile.items():
        entry.write_bytes(data)
        code, _, err = cli("check", ref, "--cache-dir", str(root), "-q")
        assert code == 0, (name, err)
        (again,) = verdict_files(root)  # removed and stored anew from a real check
        assert CODEC.decode(again.read_bytes()).reports, name


def test_a_verdict_too_big_to_store_is_not_stored(tmp_path: Path) -> None:
    report = Report(
        "i", "sha256:" + "0" * 64, "linux/amd64", "generic", "r", (), facts={"x": "y" * MAX_VERDICT_BYTES}
    )
    subject = Descriptor("application/vnd.oci.image.manifest.v1+json", Digest.of(b"m"), 1)
    cache = LayerCache(tmp_path / "c", report_types=[Profile])
    assert not cache.store_verdict(Verdict(subject.digest, "k", subject, (report,)))
    assert verdict_files(tmp_path / "c") == []


# --- exact round trip -----------------------------------------------------------------------------


def test_a_report_round_trips_exactly() -> None:
    report = Report(
        image="oci:/x:latest",
        digest="sha256:" + "1" * 64,
        platform="linux/arm64/v8",
        profile=Profile.COS,
        profile_reason="chosen",
        findings=(
            Finding(
                "KRN-001", Severity.ERROR, Outcome.FAIL, "no kernel \udcff", "/boot/\udcfe", ("a", "b"), "fix"
            ),
            Finding("SSH-001", Severity.INFO, Outcome.SKIP, "skipped"),
        ),
        rules={"KRN-001": RuleInfo("KRN-001", "t", "d", Severity.ERROR, ("src",))},
        facts={"kernel": None, "layers": 3, "modules": {"6.1": ["a", "b"]}, "t": (1, 2.5, True)},
        index_digest="sha256:" + "2" * 64,
        skipped=(Skipped("sha256:" + "3" * 64, "attestation", None),),
    )
    subject = Descriptor(
        "application/vnd.oci.image.index.v1+json", Digest.parse(report.index_digest or ""), 9
    )
    verdict = Verdict(subject.digest, "key", subject, (report, dataclasses.replace(report, platform="x")))
    back = CODEC.decode(CODEC.seal(verdict))
    assert back == verdict
    assert back.reports[0].profile is Profile.COS and back.reports[0].facts["t"] == (1, 2.5, True)
    assert back.reports[0].to_json() == report.to_json()


# --- info and prune -----------------------------------------------------------------------------


def test_cache_info_and_prune_count_verdicts(tmp_path: Path) -> None:
    ref = layout_of(tmp_path, bootable("generic").build())
    root = tmp_path / "c"
    assert cli("check", ref, "--cache-dir", str(root), "-q")[0] == 0
    code, out, _ = cli("cache", "info", "--cache-dir", str(root), "--format", "json")
    info = json.loads(out)
    layers = len(list(root.rglob("*.idx")))
    assert code == 0 and info["verdicts"] == 1 and info["entries"] == layers + 1
    code, out, _ = cli("cache", "info", "--cache-dir", str(root))
    assert f"entries:  {layers + 1} (1 verdicts)" in out
    code, out, _ = cli("cache", "prune", "--all", "--cache-dir", str(root), "--format", "json")
    assert code == 0 and json.loads(out)["removed"] >= layers + 1
    assert not root.exists()


# --- what a re-check costs ------------------------------------------------------------------------

#: `ociboot ARGV` in a fresh interpreter, counting the libmagic databases loaded (magic.Magic).
_COUNT_MAGIC = """
import sys, magic
from ociboot.cli import main
made = []
Magic = magic.Magic
magic.Magic = lambda *a, **k: made.append(1) or Magic(*a, **k)
sys.argv = ["ociboot", *sys.argv[1:]]
try:
    main()
finally:
    print("magic databases:", len(made), file=sys.stderr)
"""


def test_a_re_check_loads_no_magic_database(tmp_path: Path) -> None:
    # libmagic's version is in the key; its database (a few MB to parse) describes kernels and
    # initrds, which a stored verdict already holds.
    ref = layout_of(tmp_path, bootable("generic").build())
    args = ["check", ref, "-q", "--cache-dir", str(tmp_path / "c")]

    def loaded() -> str:
        done = subprocess.run(
            [sys.executable, "-c", _COUNT_MAGIC, *args], cwd=REPO, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stderr.strip().splitlines()[-1]

    assert loaded() != "magic databases: 0"  # the cold check described the kernel: the count is real
    assert len(verdict_files(tmp_path / "c")) == 1
    assert loaded() == "magic databases: 0"


def test_a_cache_no_later_run_sees_keeps_layers_but_no_verdict(tmp_path: Path) -> None:
    """An audit's private cache (and a Dask worker's scratch one) is removed when the run ends,
    and the run judges each digest once: a verdict stored there would be written for nobody."""
    image = layout_of(tmp_path, generic().build())
    for keeps, root in ((True, tmp_path / "kept"), (False, tmp_path / "private")):
        cache = api.open_cache(root, verdicts=keeps)
        checked = pipeline.check_reference(image, Policy(), Options(cache=cache))
        assert checked.reports and not checked.unreadable
        assert bool(verdict_files(root)) is keeps
        assert list(cache.layers_dir.rglob("*.idx"))
