"""The layer index cache: exact round trips, keys, validation against the manifest, corruption,
concurrent writers, an unwritable directory, warm runs that fetch no layer blob, info/prune."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import struct
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ociboot import pipeline
from ociboot.boot import rules, scan
from ociboot.boot.context import Policy
from ociboot.boot.initrd import InitrdInfo
from ociboot.boot.kernel import KernelInfo
from ociboot.boot.scan import PackageDbResult
from ociboot.cache import (
    FORMAT_VERSION,
    MAX_INFLATION,
    AnalysisCodec,
    CorruptEntry,
    LayerCache,
    decode_index,
    default_cache_dir,
    encode_index,
    parse_size,
    spec_key,
)
from ociboot.cli import app
from ociboot.compression import Compression
from ociboot.digest import Digest
from ociboot.errors import UnsafeCache
from ociboot.fs.node import Entry, Kind
from ociboot.image import ResolvedImage
from ociboot.layer import AnalysisFailed, AnalyzeSpec, CaptureSpec, LayerIndex
from ociboot.ref import ImageRef, Transport
from ociboot.spec import Descriptor, Platform
from tests.support.bootimages import generic, initrd
from tests.support.fuzzing import peak_memory
from tests.support.imagebuilder import write_oci_layout
from tests.support.registry_push import Pusher
from tests.support.registry_server import RegistryServer, blob_gets

TYPES = (KernelInfo, InitrdInfo, PackageDbResult)
CODEC = AnalysisCodec(TYPES)
runner = CliRunner()


def check_specs() -> tuple[CaptureSpec, AnalyzeSpec]:
    """What `ociboot check` asks of every layer."""
    return CaptureSpec(scan.capture_globs(rules.CAPTURE)), AnalyzeSpec(scan.analyze_globs())


def new_cache(root: Path, **kw: object) -> LayerCache:
    return LayerCache(root, analysis_types=TYPES, salt="test", **kw)  # type: ignore[arg-type]


def layout_of(tmp_path: Path, image: object, name: str = "layout") -> str:
    write_oci_layout(tmp_path / name, {"latest": image})  # type: ignore[dict-item]
    return str(ImageRef(Transport.OCI, path=str(tmp_path / name), name="latest"))


def indexed(ref: str, options: pipeline.Options) -> tuple[ResolvedImage, list[LayerIndex]]:
    capture, analyze = check_specs()
    with pipeline.opened(ref, options) as source:
        image = pipeline.open_image(source, options)
        return image, pipeline.index_layers(image, capture, options, analyze=analyze)


def assert_same_index(a: LayerIndex, b: LayerIndex) -> None:
    assert a == b
    # Fields dataclass equality skips: xattrs, and initrd members' captured files.
    assert [e.xattrs for e in a.entries] == [e.xattrs for e in b.entries]
    for path, result in a.analyses.items():
        if isinstance(result, InitrdInfo):
            assert result.files == b.analyses[path].files


# --- the format ----------------------------------------------------------------------------------


def synthetic_index() -> LayerIndex:
    """Every Entry field away from its default, every kind, non-UTF-8 names, binary xattrs."""
    odd = b"caf\xe9-\xff".decode("utf-8", "surrogateescape")
    entries = tuple(
        Entry(
            path=f"d/{kind.value}-{odd}",
            kind=kind,
            mode=0o4755,
            uid=1000 + i,
            gid=2000 + i,
            size=i * 7,
            mtime=1_700_000_000 + i,
            linkname="../t" if kind is Kind.SYMLINK else ("d/file" if kind is Kind.HARDLINK else ""),
            uname="user",
            gname="group",
            devmajor=8 if kind in (Kind.CHAR, Kind.BLOCK) else 0,
            devminor=i,
            xattrs={"security.capability": b"\x01\x00\x00\x02\xff", "user.empty": b""} if i % 2 else {},
            offset=512 * (i + 1),
        )
        for i, kind in enumerate(Kind)
    )
    digest = Digest.of(b"blob")
    return LayerIndex(
        name=str(digest),
        digest=digest,
        diff_id=Digest.of(b"tar"),
        media_type="application/vnd.oci.image.layer.v1.tar+zstd",
        compression=Compression.ZSTD,
        compressed_size=4,
        size=3,
        entries=entries,
        captured={f"d/file-{odd}": b"\x00\xffhead", "etc/os-release": b""},
        complete=frozenset({"etc/os-release"}),
        notes=("only one end-of-archive block (accepted, as Go's archive/tar does)",),
        analyses={"boot/x": AnalysisFailed("ValueError: boom"), "boot/none": None},
    )


def test_round_trip_of_every_field() -> None:
    index = synthetic_index()
    key, back = decode_index(encode_index(index, "k1", CODEC), CODEC)
    assert key == "k1"
    assert_same_index(index, back)
    assert all(type(e.kind) is Kind for e in back.entries) and back.compression is Compression.ZSTD


def test_an_entry_an_older_ociboot_wrote_is_read() -> None:
    # Written by the code before layer.py and cache.py became packages (fixtures/cache/README.md):
    # entries already on disk stay valid while the format version says so.
    old = Path(__file__).resolve().parent.parent / "fixtures/cache/layer-entry-v1.idx"
    key, index = decode_index(old.read_bytes(), CODEC)
    assert key == "k1"
    assert_same_index(index, synthetic_index())


@pytest.mark.parametrize("count", [0, 1])
def test_round_trip_of_few_entries_and_nul_in_a_name(count: int) -> None:
    # An empty column and a one-value column are both "" joined: the count tells them apart.
    entries = (Entry("a", Kind.SYMLINK, linkname="with\0nul"),)[:count]
    index = dataclasses.replace(synthetic_index(), entries=entries, analyses={})
    _, back = decode_index(encode_index(index, "k", CODEC), CODEC)
    assert back.entries == entries


def test_round_trip_of_real_analyses(tmp_path: Path) -> None:
    """Kernel, initrd and package database results of the real analyzers come back equal."""
    img = generic().file("/boot/initrd.img-x", initrd(files={"etc/x.conf": b"\x00bin"}))
    _, layers = indexed(layout_of(tmp_path, img.build()), pipeline.Options())
    kinds = {type(r) for layer in layers for r in layer.analyses.values()}
    assert {KernelInfo, InitrdInfo, PackageDbResult} <= kinds
    for layer in layers:
        _, back = decode_index(encode_index(layer, "k", CODEC), CODEC)
        assert_same_index(layer, back)


def test_an_unregistered_result_type_is_not_cached(tmp_path: Path) -> None:
    @dataclasses.dataclass(frozen=True)
    class Stranger:
        x: int

    index = dataclasses.replace(synthetic_index(), analyses={"a": Stranger(1)})
    cache = new_cache(tmp_path)
    assert cache.store(index, "k") is False
    assert not list(tmp_path.rglob("*.idx"))


def test_a_file_naming_an_unregistered_class_is_corrupt() -> None:
    """A cache file can only construct the registered types: never a way to run code."""
    codec = CODEC
    data = encode_index(synthetic_index(), "k", codec)
    body = json.loads(zlib.decompress(data[42:]))
    body["analyses"] = [["p", {"d": "subprocess.Popen", "f": {"args": ["true"]}}]]
    forged = zlib.compress(json.dumps(body).encode())
    data = data[:10] + hashlib.sha256(forged).digest() + forged
    with pytest.raises(CorruptEntry, match=r"subprocess\.Popen"):
        decode_index(data, codec)


def _resealed(text: bytes) -> bytes:
    body = zlib.compress(text)
    return b"ocibootL" + FORMAT_VERSION.to_bytes(2, "big") + hashlib.sha256(body).digest() + body


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d[: len(d) // 2],  # truncated
        lambda d: d[:-1] + bytes([d[-1] ^ 1]),  # one bit flipped
        lambda d: b"",  # empty
        lambda d: b"ocibootL" + (FORMAT_VERSION + 1).to_bytes(2, "big") + d[10:],  # other version
        lambda d: b"\x80\x04K\x01." + d,  # a pickle is not an entry
        lambda d: _resealed(b"[" * 100_000),  # valid checksum, JSON nested past the parser's depth
    ],
)
def test_damaged_files_are_corrupt(damage: Callable[[bytes], bytes]) -> None:
    data = encode_index(synthetic_index(), "k", CODEC)
    with pytest.raises(CorruptEntry):
        decode_index(damage(data), CODEC)


# --- keys ----------------------------------------------------------------------------------------


def test_spec_keys_separate_what_was_asked() -> None:
    capture, analyze = check_specs()
    keys = {
        spec_key(None, None),
        spec_key(capture, None),
        spec_key(capture, analyze),
        spec_key(CaptureSpec({"etc/os-release": 10}), None),
        spec_key(CaptureSpec({"etc/os-release": 11}), None),
        spec_key(None, AnalyzeSpec({"boot/*": scan.analyze_pkgdb})),
        spec_key(None, AnalyzeSpec({"boot/*": scan.analyze_boot_file})),
        spec_key(None, None, salt="0.2.0"),
    }
    assert len(keys) == 8 and None not in keys
    # The same rules however they were written give the same key.
    assert spec_key(CaptureSpec({"/a": 1, "b": None}), None) == spec_key(
        CaptureSpec([("b", None), ("a", 1)]), None
    )
    # An analyzer without a stable name (a lambda, a closure) cannot be keyed: no caching.
    assert spec_key(None, AnalyzeSpec({"x": lambda e, r, b: None})) is None


def test_ls_and_check_entries_do_not_collide(tmp_path: Path) -> None:
    ref = layout_of(tmp_path, generic().build())
    cache = new_cache(tmp_path / "cache")
    options = pipeline.Options(cache=cache)
    _, checked = indexed(ref, options)
    with pipeline.opened(ref, options) as source:
        image = pipeline.open_image(source, options)
        listed = pipeline.index_layers(image, None, options)
    assert checked[0].analyses and checked[0].captured
    assert not listed[0].analyses and not listed[0].captured
    assert len(list((tmp_path / "cache").rglob("*.idx"))) == 2


# --- validation against the manifest -------------------------------------------------------------


class Builds:
    def __init__(self, index: LayerIndex) -> None:
        self.index, self.calls = index, 0

    def __call__(self) -> LayerIndex:
        self.calls += 1
        return self.index


@pytest.fixture
def one_layer(tmp_path: Path) -> tuple[ResolvedImage, LayerIndex]:
    image, (layer,) = indexed(layout_of(tmp_path, generic().build()), pipeline.Options())
    return image, layer


def test_hit_needs_the_manifest_digest_and_the_config_diff_id(
    tmp_path: Path, one_layer: tuple[ResolvedImage, LayerIndex]
) -> None:
    image, layer = one_layer
    ref = image.layers[0]
    capture, analyze = check_specs()
    cache = new_cache(tmp_path / "c")
    build = Builds(layer)
    assert cache.layer(ref.descriptor, ref.diff_id, capture, analyze, build) is layer
    again = cache.layer(ref.descriptor, ref.diff_id, capture, analyze, build)
    assert build.calls == 1 and again is not layer
    assert_same_index(layer, again)

    # A config that names another diff_id for this digest: the entry is ignored and rebuilt.
    other = Digest.of(b"another tar")
    rebuilt = Builds(dataclasses.replace(layer, diff_id=other))
    assert cache.layer(ref.descriptor, other, capture, analyze, rebuilt).diff_id == other
    assert rebuilt.calls == 1
    # ... and the rebuilt entry replaced it, so now the first diff_id misses in turn.
    assert cache.load(ref.descriptor, ref.diff_id, spec_key(capture, analyze, "test") or "") is None

    # Another media type for the same digest (docker vs OCI) is not this entry either.
    docker = dataclasses.replace(
        ref.descriptor, media_type="application/vnd.docker.image.rootfs.diff.tar.gzip"
    )
    assert cache.load(docker, other, spec_key(capture, analyze, "test") or "") is None


def test_a_wrong_diff_id_in_a_cache_file_is_ignored(
    tmp_path: Path, one_layer: tuple[ResolvedImage, LayerIndex]
) -> None:
    image, layer = one_layer
    ref = image.layers[0]
    capture, analyze = check_specs()
    cache = new_cache(tmp_path / "c")
    key = spec_key(capture, analyze, "test") or ""
    assert cache.store(dataclasses.replace(layer, diff_id=Digest.of(b"wrong")), key)
    build = Builds(layer)
    assert cache.layer(ref.descriptor, ref.diff_id, capture, analyze, build).diff_id == ref.diff_id
    assert build.calls == 1


def test_a_corrupt_entry_is_ignored_removed_and_rebuilt(
    tmp_path: Path, one_layer: tuple[ResolvedImage, LayerIndex], caplog: pytest.LogCaptureFixture
) -> None:
    image, layer = one_layer
    ref = image.layers[0]
    capture, analyze = check_specs()
    cache = new_cache(tmp_path / "c")
    cache.layer(ref.descriptor, ref.diff_id, capture, analyze, Builds(layer))
    (path,) = (tmp_path / "c").rglob("*.idx")
    path.write_bytes(path.read_bytes()[:100])
    build = Builds(layer)
    with caplog.at_level("DEBUG", logger="ociboot.cache"):
        assert_same_index(cache.layer(ref.descriptor, ref.diff_id, capture, analyze, build), layer)
    assert build.calls == 1
    assert any("ignored and removed" in r.message and r.levelname == "DEBUG" for r in caplog.records)
    decode_index(path.read_bytes(), CODEC)  # rebuilt: a valid entry again


def test_pipeline_warm_run_gives_the_same_report(tmp_path: Path) -> None:
    ref = layout_of(tmp_path, generic().remove("/usr/lib/systemd").build())
    options = pipeline.Options(platform=Platform("linux", "amd64"), cache=new_cache(tmp_path / "c"))
    reports = []
    for _ in range(2):
        with pipeline.opened(ref, options) as source:
            reports.append(pipeline.check_image(pipeline.open_image(source, options), Policy(), options))
    assert reports[0] == reports[1] and not reports[0].bootable()


# --- writers -------------------------------------------------------------------------------------


def _writer(root: str, rounds: int) -> None:
    cache = new_cache(Path(root))
    index = synthetic_index()
    for i in range(rounds):
        # Differently sized contents each round, so a torn write could not pass as whole.
        big = dataclasses.replace(index, notes=("x" * (i * 5000),))
        assert cache.store(big, "shared")


def test_concurrent_writers_leave_a_valid_entry(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_writer, args=(str(tmp_path), 40)) for _ in range(2)]
    for p in procs:
        p.start()
    path = new_cache(tmp_path).path(synthetic_index().digest, "shared")
    while any(p.is_alive() for p in procs):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        decode_index(data, CODEC)  # readers never see a partial file
    for p in procs:
        p.join()
        assert p.exitcode == 0
    key, index = decode_index(path.read_bytes(), CODEC)
    assert key == "shared" and index.notes == ("x" * 39 * 5000,)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]


def test_threads_asking_for_one_layer_build_it_once(
    tmp_path: Path, one_layer: tuple[ResolvedImage, LayerIndex]
) -> None:
    image, layer = one_layer
    ref = image.layers[0]
    capture, analyze = check_specs()
    cache = new_cache(tmp_path / "c")
    calls: list[int] = []

    def slow() -> LayerIndex:
        calls.append(1)
        time.sleep(0.3)  # long enough that the other threads arrive while it builds
        return layer

    with ThreadPoolExecutor(4) as pool:
        got = list(
            pool.map(lambda _: cache.layer(ref.descriptor, ref.diff_id, capture, analyze, slow), range(4))
        )
    assert len(calls) == 1
    for index in got:
        assert_same_index(index, layer)


def test_an_unwritable_cache_dir_is_one_warning(
    tmp_path: Path, one_layer: tuple[ResolvedImage, LayerIndex]
) -> None:
    image, layer = one_layer
    ref = image.layers[0]
    (tmp_path / "file").write_bytes(b"")
    warnings: list[str] = []
    cache = new_cache(tmp_path / "file" / "cache", warn=warnings.append)
    capture, analyze = check_specs()
    for _ in range(3):
        assert cache.layer(ref.descriptor, ref.diff_id, capture, analyze, Builds(layer)) is layer
    assert len(warnings) == 1 and "cannot be written" in warnings[0] and "file/cache" in warnings[0]


# --- warm runs fetch no layer blob ---------------------------------------------------------------


def test_a_warm_check_fetches_no_layer_blob(registry: RegistryServer, tmp_path: Path) -> None:
    built = generic().file("/etc/motd", "hello\n").remove("/etc/motd").build()
    assert len(built.layers) == 2
    Pusher(registry.url).push("cache/warm", built, tag="v1")
    ref = f"docker://{registry.host}/cache/warm:v1"
    layers = [b.digest for b in built.layers]
    args = ["check", ref, "--format", "json", "--cache-dir", str(tmp_path / "c")]

    before = blob_gets(registry, "cache/warm", layers)
    cold = runner.invoke(app, args)
    after_cold = blob_gets(registry, "cache/warm", layers)
    # Another policy: no stored verdict applies, so the layer index cache is what serves it.
    warm = runner.invoke(app, [*args, "--fatal-warnings"])
    after_warm = blob_gets(registry, "cache/warm", layers)

    assert cold.exit_code == warm.exit_code == 0, cold.stderr
    assert after_cold - before == 2  # the cold run read both layers: the count is real
    assert after_warm == after_cold  # the warm one none
    assert json.loads(cold.stdout) == json.loads(warm.stdout)
    # The manifest and config were fetched again (the manifest decides what may be used).
    assert blob_gets(registry, "cache/warm", [built.config.digest]) >= 2


def test_the_cache_is_opt_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Without --cache or --cache-dir nothing is written to disk (docs/architecture.md: opt-in).
    ref = layout_of(tmp_path, generic().build())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert runner.invoke(app, ["check", ref]).exit_code == 0
    assert runner.invoke(app, ["ls", ref, "/boot", "--no-cache"]).exit_code == 0
    assert not (tmp_path / "xdg").exists()
    assert runner.invoke(app, ["ls", ref, "/boot", "--cache"]).exit_code == 0
    assert len(list((tmp_path / "xdg" / "ociboot").rglob("*.idx"))) == 1
    assert (tmp_path / "xdg" / "ociboot" / "CACHEDIR.TAG").read_bytes().startswith(b"Signature: 8a477f59")


# --- info and prune ------------------------------------------------------------------------------


def test_default_dir_and_sizes(tmp_path: Path) -> None:
    assert default_cache_dir({"XDG_CACHE_HOME": "/x/y", "HOME": "/h"}) == Path("/x/y/ociboot")
    assert default_cache_dir({"HOME": "/h"}) == Path("/h/.cache/ociboot")
    assert default_cache_dir({"XDG_CACHE_HOME": "rel", "HOME": "/h"}) == Path("/h/.cache/ociboot")
    assert [parse_size(t) for t in ("4096", "1k", "500M", "2G", "1.5GiB", "3 MB")] == [
        4096,
        1024,
        500 << 20,
        2 << 30,
        3 << 29,
        3 << 20,
    ]
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")


def fill(root: Path, n: int) -> list[Path]:
    cache = new_cache(root)
    paths = []
    for i in range(n):
        digest = Digest.of(str(i).encode())
        cache.store(dataclasses.replace(synthetic_index(), name=str(digest), digest=digest), "k")
        path = cache.path(digest, "k")
        os.utime(path, (time.time() - 86400 * (n - i), time.time() - 86400 * (n - i)))  # i=0 oldest
        paths.append(path)
    return paths


def cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_cache_info(tmp_path: Path) -> None:
    paths = fill(tmp_path / "c", 3)
    code, out, _ = cli("cache", "info", "--cache-dir", str(tmp_path / "c"), "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["entries"] == 3 and data["location"] == str(tmp_path / "c")
    assert data["size"] >= sum(p.stat().st_size for p in paths)
    code, out, _ = cli("cache", "info", "--cache-dir", str(tmp_path / "c"))
    assert code == 0 and "entries:  3" in out and str(tmp_path / "c") in out
    code, out, _ = cli("cache", "info", "--cache-dir", str(tmp_path / "none"), "--format", "json")
    assert code == 0 and json.loads(out)["entries"] == 0


def test_prune_older_than_max_size_and_all(tmp_path: Path) -> None:
    root = tmp_path / "c"
    paths = fill(root, 5)  # unused for 5, 4, 3, 2, 1 days
    stale = root / f"layers-v{FORMAT_VERSION}" / ".tmp-dead.part"
    stale.write_bytes(b"half")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    (root / "layers-v0").mkdir()
    (root / "layers-v0" / "old.idx").write_bytes(b"old format")

    code, out, _ = cli("cache", "prune", "--older-than", "3.5", "--cache-dir", str(root), "--format", "json")
    assert code == 0 and json.loads(out)["entries"] == 3
    assert [p.exists() for p in paths] == [False, False, True, True, True]
    assert not stale.exists() and not (root / "layers-v0").exists()

    one = paths[4].stat().st_size
    code, out, _ = cli("cache", "prune", "--max-size", str(one + 10), "--cache-dir", str(root))
    assert code == 0 and "1 entries left" in out
    assert [p.exists() for p in paths] == [False, False, False, False, True]  # the most recently used

    code, out, _ = cli("cache", "prune", "--all", "--cache-dir", str(root))
    assert code == 0 and not root.exists()
    code, _, err = cli("cache", "prune", "--max-size", "lots", "--cache-dir", str(root))
    assert code == 2 and "not a size" in err


def test_prune_touches_only_the_caches_own_files(tmp_path: Path) -> None:
    # --cache-dir pointed at a directory in use: prune used to delete everything in it.
    root = tmp_path / "home"
    paths = fill(root, 2)
    (root / "notes.txt").write_text("mine")
    (root / "empty-dir").mkdir()
    (root / "layers-notes").write_text("also mine")
    assert LayerCache(root).info().obsolete == 0
    assert LayerCache(root).prune(older_than=0).entries == 0
    assert not any(p.exists() for p in paths)
    code, _, _ = cli("cache", "prune", "--all", "--cache-dir", str(root))
    assert code == 0 and not (root / f"layers-v{FORMAT_VERSION}").exists()
    assert not (root / "CACHEDIR.TAG").exists()
    assert sorted(p.name for p in root.iterdir()) == ["empty-dir", "layers-notes", "notes.txt"]


def test_a_hit_counts_as_use_for_prune(tmp_path: Path, one_layer: tuple[ResolvedImage, LayerIndex]) -> None:
    image, layer = one_layer
    ref = image.layers[0]
    capture, analyze = check_specs()
    cache = new_cache(tmp_path / "c")
    cache.layer(ref.descriptor, ref.diff_id, capture, analyze, Builds(layer))
    (path,) = (tmp_path / "c").rglob("*.idx")
    os.utime(path, (0, 0))
    cache.layer(ref.descriptor, ref.diff_id, capture, analyze, Builds(layer))
    assert time.time() - path.stat().st_mtime < 60
    assert cache.prune(older_than=3600).entries == 1


# --- trust: a cache only the user can write ------------------------------------------------------

OTHER_UID = 65534  # nobody


def forge(cache_dir: Path, genuine: LayerIndex, victim: ResolvedImage) -> Path:
    """What a writer of a shared cache dir can do: the genuine layer's entry under the victim's
    digest, its fields rewritten to match and its checksum recomputed."""
    (path,) = cache_dir.rglob(f"{genuine.digest.hex}.*.idx")
    key, index = decode_index(path.read_bytes(), CODEC)
    ref = victim.layers[0]
    forged = dataclasses.replace(
        index,
        name=str(ref.descriptor.digest),
        digest=ref.descriptor.digest,
        diff_id=ref.diff_id,
        media_type=ref.descriptor.media_type,
        compressed_size=ref.descriptor.size,
    )
    target = path.parent.parent / ref.descriptor.digest.hex[:2] / f"{ref.descriptor.digest.hex}.{key}.idx"
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(encode_index(forged, key, CODEC))
    return target


def test_a_forged_entry_in_a_shared_cache_dir_cannot_pass_an_image(tmp_path: Path) -> None:
    # issue 7: in a 1777 cache dir, another layer's entry spliced under the victim's digest
    # turned NOT BOOTABLE into BOOTABLE.
    good = layout_of(tmp_path, generic().build(), "good")
    bad_built = generic().drop("/boot").build()
    bad = layout_of(tmp_path, bad_built, "bad")
    shared = tmp_path / "shared"
    assert cli("check", good, "--cache-dir", str(shared), "-q")[0] == 0
    assert cli("check", bad, "-q")[0] == 1
    with pipeline.opened(bad, pipeline.Options()) as source:
        victim = pipeline.open_image(source, pipeline.Options())
    genuine = indexed(good, pipeline.Options())[1][0]
    forge(shared, genuine, victim)
    shared.chmod(0o1777)
    code, out, err = cli("check", bad, "--cache-dir", str(shared), "-q")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and f"cache directory {shared} is writable by group and others" in err


@pytest.mark.parametrize("mode", [0o1777, 0o0775, 0o0722])
def test_a_cache_dir_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    root = tmp_path / "c"
    root.mkdir()
    root.chmod(mode)
    code, _, err = cli("ls", layout_of(tmp_path, generic().build()), "--cache-dir", str(root))
    assert code == 2 and "writable by" in err and f"mode {mode:04o}" in err
    with pytest.raises(UnsafeCache):
        new_cache(root).store(synthetic_index(), "k")
    assert not list(root.iterdir())


def test_a_cache_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "c"
    root.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(root, OTHER_UID, OTHER_UID)
    else:
        root = Path("/")  # root's, not ours
    with pytest.raises(UnsafeCache, match=r"belongs to uid \d+, not to you"):
        new_cache(root).verify()


def test_a_parent_others_can_write_is_refused_unless_sticky(tmp_path: Path) -> None:
    parent = tmp_path / "shared"
    parent.mkdir()
    parent.chmod(0o777)
    with pytest.raises(UnsafeCache, match=r"shared above it is writable by group and others .*not sticky"):
        new_cache(parent / "mine").store(synthetic_index(), "k")
    parent.chmod(0o1777)  # as /tmp: others cannot rename what is ours in it
    assert new_cache(parent / "mine").store(synthetic_index(), "k")
    if os.geteuid() == 0:
        parent.chmod(0o755)
        os.chown(parent, OTHER_UID, OTHER_UID)
        with pytest.raises(UnsafeCache, match=f"shared above it belongs to uid {OTHER_UID}"):
            new_cache(parent / "mine").verify()


def test_an_entry_others_can_write_is_refused(tmp_path: Path) -> None:
    cache = new_cache(tmp_path / "c")
    index = synthetic_index()
    assert cache.store(index, "k")
    entry = cache.path(index.digest, "k")
    entry.chmod(0o666)
    desc = Descriptor(index.media_type, index.digest, index.compressed_size)
    with pytest.raises(UnsafeCache, match=f"cache entry {entry} is writable by group and others"):
        new_cache(tmp_path / "c").load(desc, index.diff_id, "k")
    entry.chmod(0o600)
    entry.parent.chmod(0o770)
    with pytest.raises(UnsafeCache, match=f"cache directory {entry.parent} is writable by group"):
        new_cache(tmp_path / "c").load(desc, index.diff_id, "k")
    entry.parent.chmod(0o700)
    assert new_cache(tmp_path / "c").load(desc, index.diff_id, "k") is not None


def test_directories_the_cache_creates_are_private(tmp_path: Path) -> None:
    root = tmp_path / "new" / "ociboot"
    index = synthetic_index()
    assert new_cache(root).store(index, "k")
    entry = new_cache(root).path(index.digest, "k")
    for directory in [root.parent, *(p for p in entry.parents if p.is_relative_to(root))]:
        assert directory.stat().st_mode & 0o777 == 0o700, directory


def test_an_entry_inflates_only_so_far() -> None:
    # issue 7: a 1.5 MB entry inflated to 1.5 GB before it was refused.
    body = zlib.compress(b" " * (256 << 20), 9)
    data = struct.pack(">8sH32s", b"ocibootL", FORMAT_VERSION, hashlib.sha256(body).digest()) + body
    with pytest.raises(CorruptEntry, match=f"inflates past .*{MAX_INFLATION}x"):
        decode_index(data, CODEC)

    def attempt() -> None:
        with contextlib.suppress(CorruptEntry):
            decode_index(data, CODEC)

    peak = peak_memory(attempt)
    assert peak < 4 * MAX_INFLATION * len(body), peak  # was 256 MiB and more
