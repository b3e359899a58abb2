"""The whole engine, end to end: one built image through every medium gives the same layers,
the same flattened tree and the same listings; the outside corpus flattens as the specs say.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import pytest

from ociboot import pipeline, views
from ociboot.errors import ContentError, DigestMismatch, ImageNotFound, TruncatedLayer
from ociboot.layer import CaptureSpec
from ociboot.ref import ImageRef, Transport
from ociboot.sources import SourceOptions
from ociboot.spec import Platform
from tests.support.dockerarchive import write_docker_archive
from tests.support.imagebuilder import (
    ImageBuilder,
    LayerBuilder,
    build_index,
    write_oci_archive,
    write_oci_layout,
)
from tests.support.registry_push import Pusher
from tests.support.registry_server import RegistryServer

AMD64 = Platform("linux", "amd64")
KERNEL = b"MZ" + b"\0" * 0x1FE + b"HdrS" + b"k" * 4000


def overlay_image(arch: str = "amd64") -> Any:
    """Every overlay case the core engine must handle, in three layers (gzip, zstd, plain)."""
    base = (
        LayerBuilder(prefix="./")
        .raw(_root_entry())
        .dir("boot")
        .dir("etc")
        .file("etc/os-release", "ID=example\nVERSION_ID=1\n")
        .file("etc/motd", "base motd\n")
        .dir("usr/lib/modules/6.1.0-28-amd64")
        .file("usr/lib/modules/6.1.0-28-amd64/modules.dep", "")
        .symlink("lib", "usr/lib")
        .dir("var/cache/old")
        .file("var/cache/old/a", "a")
        .file("var/cache/old/b", "b")
        .dir("opt/dir-becomes-file")
        .file("opt/dir-becomes-file/x", "x")
        .file("opt/file-becomes-dir", "f")
        .file("srv/original", "original bytes")
        .file("tmp/keep", "k")
    )
    middle = (
        LayerBuilder()
        .file("boot/vmlinuz-6.1.0-28-amd64", KERNEL, mode=0o644)
        .file("boot/initrd-6.1.0-28-amd64", b"070701" + b"0" * 100)
        .symlink("boot/vmlinuz", "vmlinuz-6.1.0-28-amd64")
        .symlink("boot/initrd", "/boot/initrd-6.1.0-28-amd64")
        .hardlink("srv/link-to-lower", "srv/original")
        .whiteout("etc/motd")
        .opaque("var/cache/old")
        .file("var/cache/old/new", "new")
        .file("opt/dir-becomes-file", "now a file")
        .dir("opt/file-becomes-dir")
        .file("opt/file-becomes-dir/inner", "i")
        .file(
            "usr/share/" + "long-name-" * 12 + "/file",
            "pax path",
            xattrs={"security.capability": b"\x01\x00\x00\x02\n\x00"},
        )
    )
    top = (
        LayerBuilder(prefix="/")
        .whiteout("srv/original")
        .file("etc/motd", "top motd\n")  # re-created after the whiteout below it
        .symlink("boot/loop-a", "loop-b")
        .symlink("boot/loop-b", "loop-a")
        .symlink("boot/escape", "../../../../etc/os-release")
        .whiteout("tmp/keep", as_hardlink_to="tmp/keep")  # a whiteout stored as a hardlink
        .file("tmp/keep", "same layer: the entry wins over its whiteout")
    )
    return (
        ImageBuilder(arch=arch, labels={"org.example": "yes"})
        .add_layer(base, "gzip")
        .add_layer(middle, "zstd", frames=3)
        .add_layer(top, "none", end_blocks=False)
        .build()
    )


def _root_entry() -> tarfile.TarInfo:
    info = tarfile.TarInfo("./")
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info


EXPECTED = {
    "/etc/motd": ("file", "top motd\n"),
    "/etc/os-release": ("file", "ID=example\nVERSION_ID=1\n"),
    "/var/cache/old/new": ("file", "new"),
    "/opt/dir-becomes-file": ("file", "now a file"),
    "/opt/file-becomes-dir/inner": ("file", "i"),
    "/srv/link-to-lower": ("file", "original bytes"),
    "/tmp/keep": ("file", "same layer: the entry wins over its whiteout"),
}
ABSENT = ["/var/cache/old/a", "/var/cache/old/b", "/opt/dir-becomes-file/x", "/srv/original"]


def snapshot(loaded: pipeline.ImageTree) -> list[tuple[Any, ...]]:
    """Everything observable about the final tree, medium-independent."""
    return [
        (
            path,
            str(node.kind),
            node.entry.mode,
            node.entry.uid,
            node.entry.size,
            node.entry.linkname,
            node.layer,
        )
        for path, node in loaded.tree.walk("/")
    ]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory, registry: RegistryServer) -> dict[str, ImageRef]:
    image = overlay_image()
    other = overlay_image("arm64")
    index = build_index([image, other])
    tmp = tmp_path_factory.mktemp("media")
    write_oci_layout(tmp / "layout", {"v1": image, "multi": index})
    write_oci_archive(tmp / "image.oci.tar", {"v1": image})
    write_docker_archive(tmp / "legacy.tar", [(image, ["example/overlay:v1"])], form="legacy")
    write_docker_archive(tmp / "v25.tar", [(image, ["example/overlay:v1"])], form="v25")
    Pusher(registry.url).push("example/overlay", index, tag="multi")
    Pusher(registry.url).push("example/overlay", image, tag="v1")
    return {
        "oci": ImageRef(Transport.OCI, path=str(tmp / "layout"), name="v1"),
        "oci-index": ImageRef(Transport.OCI, path=str(tmp / "layout"), name="multi"),
        "oci-archive": ImageRef(Transport.OCI_ARCHIVE, path=str(tmp / "image.oci.tar"), name="v1"),
        "docker-archive": ImageRef(Transport.DOCKER_ARCHIVE, path=str(tmp / "legacy.tar")),
        "docker-archive-v25": ImageRef(Transport.DOCKER_ARCHIVE, path=str(tmp / "v25.tar")),
        "docker": ImageRef(Transport.DOCKER, registry=registry.host, repository="example/overlay", tag="v1"),
        "docker-index": ImageRef(
            Transport.DOCKER, registry=registry.host, repository="example/overlay", tag="multi"
        ),
    }


def load(ref: ImageRef, capture: CaptureSpec | None = None) -> pipeline.ImageTree:
    options = pipeline.Options(platform=AMD64)
    with pipeline.opened(str(ref), options) as source:
        return pipeline.load_tree(pipeline.open_image(source, options), capture, options)


def test_every_medium_gives_the_same_layers_tree_and_listing(media: dict[str, ImageRef]) -> None:
    capture = CaptureSpec(
        {"etc/*": None, "srv/*": None, "tmp/*": None, "opt/*": None, "var/cache/old/*": None}
    )
    loaded = {name: load(ref, capture) for name, ref in media.items()}
    reference = loaded["oci"]
    diff_ids = [str(d) for d in reference.image.config.diff_ids]
    assert len(diff_ids) == 3
    for name, one in loaded.items():
        assert [str(layer.diff_id) for layer in one.layers] == diff_ids, name
        assert snapshot(one) == snapshot(reference), name
        listing = views.listing(one, "/boot", recursive=False).to_json()
        assert (
            listing["entries"] == views.listing(reference, "/boot", recursive=False).to_json()["entries"]
        ), name
        for path, (kind, text) in EXPECTED.items():
            res = one.tree.lookup(path)
            assert res.ok and str(res.node.kind if res.node else "") == kind, (name, path)
            assert one.tree.read(path) == text.encode(), (name, path)
        for path in ABSENT:
            assert not one.tree.lookup(path).ok, (name, path)
    # Layer blobs differ only where the medium stores layers differently (docker save: plain tars).
    assert [layer.digest for layer in loaded["docker"].layers] == [layer.digest for layer in reference.layers]
    assert all(str(layer.compression) == "none" for layer in loaded["docker-archive"].layers)


def test_links_resolve_inside_the_root(media: dict[str, ImageRef]) -> None:
    tree = load(media["oci-archive"]).tree
    res = tree.lookup("/boot/vmlinuz")
    assert res.path == "/boot/vmlinuz-6.1.0-28-amd64"
    assert res.chain == (("/boot/vmlinuz", "vmlinuz-6.1.0-28-amd64"),)
    assert tree.lookup("/boot/initrd").path == "/boot/initrd-6.1.0-28-amd64"
    assert tree.lookup("/boot/escape").path == "/etc/os-release"  # `..` clamped at the root
    assert tree.lookup("/boot/loop-a").error == "loop"
    assert tree.lookup("/lib/modules/6.1.0-28-amd64/modules.dep").path == (
        "/usr/lib/modules/6.1.0-28-amd64/modules.dep"
    )


def test_registry_listing_of_boot_shows_resolved_links(media: dict[str, ImageRef]) -> None:
    view = views.listing(load(media["docker"]), "/boot", recursive=False)
    data = view.to_json()
    rows = {row["path"]: row for row in data["entries"]}
    assert rows["/boot/vmlinuz"]["resolved"] == "/boot/vmlinuz-6.1.0-28-amd64"
    assert rows["/boot/initrd"]["resolved"] == "/boot/initrd-6.1.0-28-amd64"
    assert rows["/boot/loop-a"]["resolved"] is None and rows["/boot/loop-a"]["error"] == "loop"
    text = view.to_text(long=True)
    assert "/boot/vmlinuz -> vmlinuz-6.1.0-28-amd64  => /boot/vmlinuz-6.1.0-28-amd64" in text


def test_platform_selection_from_an_index(media: dict[str, ImageRef]) -> None:
    for name in ("oci-index", "docker-index"):
        options = pipeline.Options(platform=Platform("linux", "arm64"))
        with pipeline.opened(str(media[name]), options) as source:
            image = pipeline.open_image(source, options)
        assert image.platform.architecture == "arm64"
        assert {str(p) for p in image.platforms} == {"linux/amd64", "linux/arm64"}


def test_cat_reads_the_file_from_its_own_layer_after_verification(media: dict[str, ImageRef]) -> None:
    loaded = load(media["oci"])  # nothing captured: read_file streams the owning layer again
    path, data = pipeline.read_file(loaded, "/srv/link-to-lower", pipeline.Options())
    assert (path, data) == ("/srv/link-to-lower", b"original bytes")
    path, data = pipeline.read_file(loaded, "/boot/vmlinuz", pipeline.Options())
    assert path == "/boot/vmlinuz-6.1.0-28-amd64" and data == KERNEL


def test_a_corrupt_layer_blob_in_a_layout_is_a_digest_mismatch(tmp_path: Path) -> None:
    image = overlay_image()
    write_oci_layout(tmp_path, {"v1": image})
    blob = tmp_path / "blobs" / "sha256" / image.layers[1].digest.split(":")[1]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises((DigestMismatch, TruncatedLayer)) as info:
        load(ImageRef(Transport.OCI, path=str(tmp_path), name="v1"))
    assert image.layers[1].digest in str(info.value)


def test_a_truncated_layer_blob_in_a_layout_is_refused(tmp_path: Path) -> None:
    image = overlay_image()
    write_oci_layout(tmp_path, {"v1": image})
    blob = tmp_path / "blobs" / "sha256" / image.layers[0].digest.split(":")[1]
    blob.write_bytes(blob.read_bytes()[:-20])
    with pytest.raises(DigestMismatch) as info:
        load(ImageRef(Transport.OCI, path=str(tmp_path), name="v1"))
    assert "bytes" in str(info.value)


# --- the outside corpus, through the whole engine ---------------------------------------------


def corpus_tree(conformance: Path, rel: str, name: str | None = None) -> dict[str, tuple[str, bytes | None]]:
    ref = ImageRef(Transport.DOCKER_ARCHIVE, path=str(conformance / rel), name=name)
    loaded = load(ref, CaptureSpec({"*": None}))
    return {p: (str(n.kind), loaded.tree.read(p)) for p, n in loaded.tree.walk("/")}


def test_ggcr_whiteout_image_hides_the_whited_out_file(conformance: Path) -> None:
    tree = corpus_tree(conformance, "go-containerregistry/v1-mutate/whiteout_image.tar")
    assert tree == {"/bar.txt": ("file", b"bar\n")}


def test_ggcr_whiteout_dir_keeps_only_files_created_after_the_whiteout(conformance: Path) -> None:
    # google/go-containerregistry#2029: a/foo; .wh.a; a/baz -> only a/baz survives.
    tree = corpus_tree(conformance, "go-containerregistry/v1-mutate/whiteout_dir.tar")
    assert sorted(p for p, (kind, _) in tree.items() if kind == "file") == ["/a/baz", "/b/bar"]


def test_ggcr_overwritten_file_takes_the_upper_layer(conformance: Path) -> None:
    tree = corpus_tree(conformance, "go-containerregistry/v1-mutate/overwritten_file.tar")
    assert tree["/foo.txt"][0] == "symlink"
    assert tree["/bar.txt"] == ("file", b"bar\n")


def test_ggcr_symlinked_layer_tar_and_docker25_archives_flatten(conformance: Path) -> None:
    linked = corpus_tree(
        conformance, "go-containerregistry/v1-tarball/test_link.tar", "bazel/v1/tarball:test_image_3"
    )
    assert linked
    hello = corpus_tree(conformance, "go-containerregistry/v1-tarball/hello-world-v25.tar")
    assert list(hello) == ["/hello"] and hello["/hello"][1] is not None


def test_regclient_whiteout_and_opaque_layers_flatten(conformance: Path, tmp_path: Path) -> None:
    # regclient's two raw layers, stacked into an image by our builder: layer-wh.tar removes
    # layer2.txt and makes exdir opaque (OCI image-spec layer.md, whiteouts and opaque dirs).
    lower = (conformance / "regclient/layer.tar").read_bytes()
    upper = (conformance / "regclient/layer-wh.tar").read_bytes()
    image = ImageBuilder().add_layer(lower, "gzip").add_layer(upper, "none").build()
    write_oci_layout(tmp_path, {"v1": image})
    loaded = load(ImageRef(Transport.OCI, path=str(tmp_path), name="v1"))
    paths = {p for p, _ in loaded.tree.walk("/")}
    with tarfile.open(conformance / "regclient/layer.tar") as tf:
        lower_names = {"/" + m.name.strip("./") for m in tf}
    assert "/layer2.txt" in lower_names and "/layer2.txt" not in paths
    # exdir exists (created by its own entry) and the opaque marker itself is never visible.
    assert "/exdir" in paths and not any(".wh." in p for p in paths)
    assert paths == {"/layer1.txt", "/layer3.txt", "/exdir"}


def test_missing_tag_in_a_registry_is_image_not_found(registry: RegistryServer) -> None:
    ref = ImageRef(Transport.DOCKER, registry=registry.host, repository="example/overlay", tag="nope")
    with pytest.raises(ImageNotFound), pipeline.opened(str(ref), pipeline.Options(SourceOptions())) as source:
        pipeline.open_image(source, pipeline.Options())


def test_layers_view_reports_what_each_layer_adds_changes_and_removes(conformance: Path) -> None:
    ref = ImageRef(
        Transport.DOCKER_ARCHIVE, path=str(conformance / "go-containerregistry/v1-mutate/whiteout_dir.tar")
    )
    rows = views.layers_data(load(ref)).to_json()["layers"]
    assert [(r["added"], r["changed"], r["removed"]) for r in rows] == [
        (["/a", "/a/foo"], [], []),
        (["/b", "/b/bar"], [], []),
        ([], [], ["/a", "/a/foo"]),
        (["/a", "/a/baz"], [], []),
    ]


def test_cat_refuses_files_over_its_memory_limit(
    media: dict[str, ImageRef], monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load(media["oci"])
    monkeypatch.setattr(pipeline, "CAT_MAX_BYTES", 100)
    with pytest.raises(ContentError, match="over the 100 byte limit"):
        pipeline.read_file(loaded, "/boot/vmlinuz", pipeline.Options())
    assert pipeline.read_file(loaded, "/etc/motd", pipeline.Options())[1] == b"top motd\n"


def test_cat_of_a_device_or_fifo_says_so_without_streaming_again(tmp_path: Path) -> None:
    layer = LayerBuilder().device("dev/null").fifo("run/pipe").file("etc/motd", "hi\n")
    write_oci_layout(tmp_path / "l", {"v1": ImageBuilder().add_layer(layer, "gzip").build()})
    loaded = load(ImageRef(Transport.OCI, path=str(tmp_path / "l"), name="v1"))
    streamed: list[str] = []

    def progress(name: str, total: int) -> Any:
        streamed.append(name)
        return lambda n: None

    options = pipeline.Options(progress=progress)
    for path, kind in [("/dev/null", "char"), ("/run/pipe", "fifo")]:
        with pytest.raises(ContentError, match=f"{path}: is a {kind}, not a regular file"):
            pipeline.read_file(loaded, path, options)
    assert streamed == []
    assert pipeline.read_file(loaded, "/etc/motd", options)[1] == b"hi\n"
