"""docker-archive: both `docker save` forms, built here and from the conformance corpus."""

from __future__ import annotations

import gzip
import json
import lzma
import tarfile
from pathlib import Path

import pytest

from ociboot.digest import Digest
from ociboot.errors import (
    ImageNotFound,
    InvalidManifest,
    SourceError,
    UnsupportedCompression,
    UnsupportedMediaType,
)
from ociboot.image import resolve
from ociboot.mediatypes import MediaType
from ociboot.ref import ImageRef, Transport
from ociboot.sources import SourceOptions, open_source
from ociboot.sources.docker_archive import (
    DockerArchiveSource,
    normalize_name,
    open_docker_archive,
    parse_manifest_json,
)
from ociboot.spec import MAX_DESCRIPTORS, Descriptor, ImageConfig, Manifest
from tests.support.dockerarchive import plain_tar, write_docker_archive
from tests.support.imagebuilder import (
    BuiltImage,
    ImageBuilder,
    LayerBuilder,
    build_index,
    write_oci_archive,
    write_tar,
)

GGCR = "go-containerregistry"


def _open(path: Path, name: str | None = None, index: int | None = None) -> DockerArchiveSource:
    ref = ImageRef(Transport.DOCKER_ARCHIVE, path=str(path), name=name, index=index)
    return open_docker_archive(ref, SourceOptions())


def _read(source: DockerArchiveSource, desc: Descriptor) -> bytes:
    with source.open_blob(desc) as f:
        return f.read()


def check_image(source: DockerArchiveSource) -> tuple[Manifest, ImageConfig]:
    """Every blob the manifest names has the descriptor's sha256 and size; the layers' diff_ids
    agree with the config's rootfs.diff_ids (a plain layer's digest IS its diff_id)."""
    raw = source.get_manifest()
    if raw.digest is not None:
        assert Digest.of(raw.data) == raw.digest
    manifest = Manifest.from_json(raw.data, raw.where, raw.media_type)
    config_raw = _read(source, manifest.config)
    assert Digest.of(config_raw) == manifest.config.digest
    assert len(config_raw) == manifest.config.size
    config = ImageConfig.from_json(config_raw)
    assert len(config.diff_ids) == len(manifest.layers)
    for desc, diff_id in zip(manifest.layers, config.diff_ids, strict=True):
        data = _read(source, desc)
        assert len(data) == desc.size
        assert Digest.of(data) == desc.digest
        if desc.media_type in (MediaType.DOCKER_LAYER, MediaType.OCI_LAYER):
            assert desc.digest == diff_id
        else:
            assert Digest.of(plain_tar(data)) == diff_id
    return manifest, config


# --- conformance corpus ------------------------------------------------------------------------

CONFORMANCE_ARCHIVES = {
    "v1-tarball/test_bundle.tar": 2,
    "v1-tarball/test_image_1.tar": 1,
    "v1-tarball/test_image_2.tar": 1,
    "v1-tarball/test_link.tar": 2,
    "v1-tarball/test_load_manifest.tar": 1,
    "v1-tarball/hello-world-v25.tar": 1,
    "v1-mutate/whiteout_image.tar": 1,
    "v1-mutate/whiteout_dir.tar": 1,
    "v1-mutate/overwritten_file.tar": 1,
    "v1-mutate/source_image.tar": 1,
    "v1-mutate/source_image_with_empty_layer_history.tar": 1,
}


@pytest.mark.parametrize("rel", sorted(CONFORMANCE_ARCHIVES))
def test_conformance_archives(conformance: Path, rel: str) -> None:
    path = conformance / GGCR / rel
    count = CONFORMANCE_ARCHIVES[rel]
    for i in range(count):
        manifest, _ = check_image(_open(path, index=i))
        assert manifest.layers
    with pytest.raises(ImageNotFound, match=rf"has {count} image\(s\); @{count} is out of range"):
        _open(path, index=count)
    if count > 1:
        with pytest.raises(ImageNotFound, match=f"has {count} images, choose one"):
            _open(path)


def test_legacy_manifest_is_synthesised(conformance: Path) -> None:
    source = _open(conformance / GGCR / "v1-tarball/test_image_1.tar")
    raw = source.get_manifest()
    assert raw.digest is None  # nothing in the archive claims a digest for it
    assert raw.media_type == MediaType.DOCKER_MANIFEST
    assert raw.data == json.dumps(json.loads(raw.data), sort_keys=True, separators=(",", ":")).encode()
    manifest = Manifest.from_json(raw.data)
    assert manifest.config.media_type == MediaType.DOCKER_CONFIG
    assert manifest.config.digest == Digest.parse(
        "sha256:6e0b05049ed9c17d02e1a55e80d6599dbfcce7f4f4b022e3c673e685789c470e"
    )
    assert [d.media_type for d in manifest.layers] == [MediaType.DOCKER_LAYER]
    # get_manifest by its own digest returns it, now with the digest it was asked for.
    digest = Digest.of(raw.data)
    assert source.get_manifest(digest).data == raw.data
    assert source.get_manifest(digest).digest == digest
    with pytest.raises(ImageNotFound, match=r"manifest sha256:0000.* not found in docker-archive:"):
        source.get_manifest(Digest("sha256", "0" * 64))
    unknown = Descriptor(MediaType.DOCKER_LAYER, Digest("sha256", "1" * 64), 3)
    with pytest.raises(ImageNotFound, match=r"blob sha256:1111.* \(.*diff\.tar\) not found"):
        source.open_blob(unknown)


def test_docker25_prefers_the_real_oci_manifest(conformance: Path) -> None:
    """hello-world-v25.tar has `"manifests": null` (moby/moby#47210): found among the blobs."""
    raw = _open(conformance / GGCR / "v1-tarball/hello-world-v25.tar").get_manifest()
    assert raw.digest == Digest.parse(
        "sha256:411caf340c828657e915a83ed561a79d2b8150dabad4dc079d881cbfe6f86afe"
    )
    assert raw.media_type == MediaType.OCI_MANIFEST
    assert Manifest.from_json(raw.data).layers[0].media_type == MediaType.OCI_LAYER


def test_kaniko_style_gzip_layers(conformance: Path) -> None:
    """whiteout_dir.tar: `.tar.gz` layers and a config named `sha256:<hex>`."""
    source = _open(conformance / GGCR / "v1-mutate/whiteout_dir.tar")
    manifest, config = check_image(source)
    assert {d.media_type for d in manifest.layers} == {MediaType.DOCKER_LAYER_GZIP}
    assert [d.digest for d in manifest.layers] != list(config.diff_ids)


def test_select_by_tag(conformance: Path) -> None:
    bundle = conformance / GGCR / "v1-tarball/test_bundle.tar"
    first = "sha256:6e0b05049ed9c17d02e1a55e80d6599dbfcce7f4f4b022e3c673e685789c470e"
    for name in ("test_image_1", "test_image_1:latest", "docker.io/library/test_image_1:latest"):
        assert Manifest.from_json(_open(bundle, name).get_manifest().data).config.digest == Digest.parse(
            first
        )
    second = Manifest.from_json(_open(bundle, "index.docker.io/library/test_image_2").get_manifest().data)
    assert str(second.config.digest).startswith("sha256:930705ce")
    with pytest.raises(
        ImageNotFound, match=r"no image tagged 'test_image_3' \(tags: test_image_2, test_image_1\)"
    ):
        _open(bundle, "test_image_3")
    with pytest.raises(ImageNotFound, match="no image tagged 'test_image_1:v2'"):
        _open(bundle, "test_image_1:v2")


def test_symlinked_layer(conformance: Path) -> None:
    source = _open(conformance / GGCR / "v1-tarball/test_link.tar", "bazel/v1/tarball:test_image_3")
    manifest, config = check_image(source)
    assert len(manifest.layers) == 2
    assert manifest.layers[0].digest == config.diff_ids[0]


def test_negative_fixtures(conformance: Path) -> None:
    with pytest.raises(
        UnsupportedMediaType, match=r"only the legacy 'repositories' file and no manifest\.json"
    ):
        _open(conformance / GGCR / "v1-tarball/no_manifest.tar")
    with pytest.raises(InvalidManifest, match=r"manifest\.json of .* must be a list of images, got null"):
        _open(conformance / GGCR / "v1-tarball/null_manifest.tar")
    with pytest.raises(ImageNotFound, match=r"is not a docker-archive: no manifest\.json"):
        _open(conformance / GGCR / "v1-tarball/content.tar")


def test_oci_archive_is_pointed_to_its_transport(tmp_path: Path) -> None:
    a, _ = _images()
    with pytest.raises(ImageNotFound, match="is an OCI layout: use oci-archive:"):
        _open(write_oci_archive(tmp_path / "o.tar", {"v1": a}))


# --- built archives ------------------------------------------------------------------------------


def _images() -> tuple[BuiltImage, BuiltImage]:
    base = LayerBuilder().dir("etc").file("etc/os-release", "ID=base\n")
    top = LayerBuilder().dir("boot").file("boot/vmlinuz", b"\0" * 600)
    a = ImageBuilder().add_layer(base, "gzip").add_layer(top, "zstd").build()
    b = (
        ImageBuilder(arch="arm64")
        .add_layer(base, "gzip")
        .add_layer(LayerBuilder().file("x", "y"), "none")
        .build()
    )
    return a, b


@pytest.mark.parametrize("form", ["legacy", "v25"])
def test_built_archives(tmp_path: Path, form: str) -> None:
    a, b = _images()
    path = write_docker_archive(
        tmp_path / "s.tar", [(a, ["busybox:latest"]), (b, ["quay.io/x/y:1"])], form=form
    )
    for name, image in (("busybox", a), ("docker.io/library/busybox:latest", a), ("quay.io/x/y:1", b)):
        source = _open(path, name)
        manifest, config = check_image(source)
        assert [str(d) for d in config.diff_ids] == image.diff_ids
        assert manifest.config.digest == Digest.parse(image.config.digest)
        raw = source.get_manifest()
        if form == "v25":
            assert raw.data == image.manifest.data and raw.digest == Digest.parse(image.digest)
        else:
            assert raw.digest is None
            assert {d.media_type for d in manifest.layers} == {MediaType.DOCKER_LAYER}
    assert _open(path, index=1).get_manifest().data == _open(path, "quay.io/x/y:1").get_manifest().data
    with pytest.raises(ImageNotFound, match=r"tags: busybox:latest, quay\.io/x/y:1"):
        _open(path)
    with pytest.raises(ImageNotFound, match=r"no image tagged 'quay\.io/x/y:2'"):
        _open(path, "quay.io/x/y:2")


def test_open_source_wiring(tmp_path: Path) -> None:
    a, _ = _images()
    path = write_docker_archive(tmp_path / "s.tar", [(a, ["a:1"])])
    source = open_source(ImageRef(Transport.DOCKER_ARCHIVE, path=str(path)))
    assert Manifest.from_json(source.get_manifest().data).config.digest == Digest.parse(a.config.digest)
    source.close()


def test_linked_duplicate_layers(tmp_path: Path) -> None:
    """As test_link.tar: one image's only (top) layer is another image's base layer."""
    a, _ = _images()
    base = LayerBuilder().dir("etc").file("etc/os-release", "ID=base\n")
    b = ImageBuilder(arch="arm64").add_layer(base, "gzip").build()
    assert b.diff_ids[0] == a.diff_ids[0]
    path = write_docker_archive(tmp_path / "s.tar", [(a, ["a:1"]), (b, ["b:1"])], link_duplicate_layers=True)
    with tarfile.open(path) as tf:
        links = [m for m in tf.getmembers() if m.issym()]
    assert len(links) == 1 and links[0].linkname.startswith("../")
    for name in ("a:1", "b:1"):
        manifest, config = check_image(_open(path, name))
        assert manifest.layers[0].digest == config.diff_ids[0]


def test_compressed_layer_files(tmp_path: Path) -> None:
    a, _ = _images()
    path = write_docker_archive(tmp_path / "k.tar", [(a, ["kaniko:1"])], compress_layers=True)
    with tarfile.open(path) as tf:
        assert f"sha256:{a.config.digest.split(':')[1]}" in tf.getnames()
    manifest, config = check_image(_open(path))
    assert {d.media_type for d in manifest.layers} == {MediaType.DOCKER_LAYER_GZIP}
    assert [str(d) for d in config.diff_ids] == a.diff_ids


def test_docker25_null_index_and_names_only_in_index(tmp_path: Path) -> None:
    a, b = _images()
    images = [(a, ["busybox:latest"]), (b, ["alpine:3"])]
    nulled = write_docker_archive(tmp_path / "n.tar", images, form="v25", null_index=True)
    raw = _open(nulled, "alpine:3").get_manifest()
    assert raw.digest == Digest.parse(b.digest)  # found by scanning blobs (moby/moby#47210)

    untagged = write_docker_archive(tmp_path / "u.tar", images, form="v25", repo_tags_in_manifest=False)
    raw = _open(untagged, "docker.io/library/alpine:3").get_manifest()
    assert raw.digest == Digest.parse(b.digest)  # via io.containerd.image.name
    assert raw.media_type == "application/vnd.oci.image.manifest.v1+json"
    with pytest.raises(ImageNotFound, match=r"untagged: @0, @1"):
        _open(untagged)
    check_image(_open(untagged, "busybox"))


def _hand_archive(tmp_path: Path, layer: bytes, diff_ids: list[str], layers: list[str] | None = None) -> Path:
    config = json.dumps(
        {"os": "linux", "architecture": "amd64", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    )
    manifest = [{"Config": "c.json", "RepoTags": ["t:1"], "Layers": layers or ["l/layer.tar"]}]
    files = {"c.json": config.encode(), "l/layer.tar": layer, "manifest.json": json.dumps(manifest).encode()}
    return write_tar(tmp_path / "h.tar", files)


def test_malformed_archives(tmp_path: Path) -> None:
    tar = LayerBuilder().file("a", "b").tar()
    diff = str(Digest.of(tar))
    with pytest.raises(InvalidManifest, match=r"lists 1 layers for c\.json, its rootfs\.diff_ids 2"):
        _open(_hand_archive(tmp_path, tar, [diff, diff]))
    with pytest.raises(ImageNotFound, match=r"layer l/missing\.tar named by manifest\.json is missing"):
        _open(_hand_archive(tmp_path, tar, [diff], ["l/missing.tar"]))
    with pytest.raises(UnsupportedCompression, match=r"layer l/layer\.tar of .* is xz-compressed"):
        _open(_hand_archive(tmp_path, lzma.compress(tar), [diff]))
    gz = _hand_archive(tmp_path, gzip.compress(tar, mtime=0), [diff])
    manifest = Manifest.from_json(_open(gz).get_manifest().data)
    assert manifest.layers[0].media_type == MediaType.DOCKER_LAYER_GZIP


def test_wrong_files(tmp_path: Path, conformance: Path) -> None:
    with pytest.raises(ImageNotFound, match="no such file"):
        _open(tmp_path / "missing.tar")
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\x89PNG not a tar" * 100)
    with pytest.raises(SourceError, match="is not a readable tar archive"):
        _open(junk)
    with pytest.raises(SourceError, match="is a directory, not a tar archive"):
        _open(conformance / GGCR / "v1-layout/test_index_one_image")
    bad = tmp_path / "bad.tar"
    write_tar(bad, {"manifest.json": b"[{'Config': 1}]"})
    with pytest.raises(InvalidManifest, match=r"manifest\.json of .* is not valid JSON"):
        _open(bad)
    write_tar(bad, {"manifest.json": b'[{"Config": "c.json", "Layers": "x"}]'})
    with pytest.raises(InvalidManifest, match="entry 0: 'Layers' must be a list of paths"):
        _open(bad)
    write_tar(bad, {"manifest.json": b"[]"})
    with pytest.raises(ImageNotFound, match="holds no images"):
        _open(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("user/app:v1", "docker.io/user/app:v1"),
        ("index.docker.io/library/busybox", "docker.io/library/busybox:latest"),
        ("localhost:5000/whiteout", "localhost:5000/whiteout:latest"),
        ("localhost/x:1", "localhost/x:1"),
        ("quay.io/a/b:c", "quay.io/a/b:c"),
    ],
)
def test_normalize_name(text: str, expected: str) -> None:
    assert normalize_name(text) == expected


def _v25_files(entries: list[dict[str, object]], index: list[dict[str, object]] | None) -> dict[str, bytes]:
    return {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": json.dumps({"schemaVersion": 2, "manifests": index}).encode(),
        "manifest.json": json.dumps(entries).encode(),
    }


def _blob_files(blobs: dict[str, bytes]) -> dict[str, bytes]:
    return {f"blobs/sha256/{d.split(':')[1]}": data for d, data in blobs.items()}


def test_docker25_index_entry_is_a_platform_index(tmp_path: Path) -> None:
    """containerd's image store saves an image index per tag; the platform manifest that names
    the saved config is the one manifest.json means."""
    amd, arm = ImageBuilder().add_layer(LayerBuilder().file("a", "1"), "none").build(), _images()[1]
    index = build_index([amd, arm])
    entry = {
        "Config": f"blobs/sha256/{arm.config.digest.split(':')[1]}",
        "RepoTags": ["multi:1"],
        "Layers": [f"blobs/sha256/{b.digest.split(':')[1]}" for b in arm.layers],
    }
    annotated = index.descriptor(annotations={"io.containerd.image.name": "docker.io/library/multi:1"})
    files = {**_blob_files(index.blobs), **_v25_files([entry], [annotated])}
    path = write_tar(tmp_path / "m.tar", files)
    raw = _open(path).get_manifest()
    assert raw.digest == Digest.parse(arm.digest)
    check_image(_open(path))
    # Named only by index.json: the whole index, for image.py to pick a platform from.
    files["manifest.json"] = json.dumps([{**entry, "RepoTags": None}]).encode()
    path = write_tar(tmp_path / "n.tar", files)
    raw = _open(path, "multi:1").get_manifest()
    assert raw.digest == Digest.parse(index.digest)
    assert raw.media_type == "application/vnd.oci.image.index.v1+json"
    assert _open(path, "multi:1").get_manifest(Digest.parse(amd.digest)).data == amd.manifest.data


def test_docker25_without_any_manifest_falls_back_to_synthesis(tmp_path: Path) -> None:
    a, _ = _images()
    blobs = {d: data for d, data in a.blobs.items() if d != a.digest}
    entry = {
        "Config": f"blobs/sha256/{a.config.digest.split(':')[1]}",
        "RepoTags": ["x:1"],
        "Layers": [f"blobs/sha256/{b.digest.split(':')[1]}" for b in a.layers],
    }
    path = write_tar(tmp_path / "s.tar", {**_blob_files(blobs), **_v25_files([entry], None)})
    source = _open(path)
    assert source.get_manifest().digest is None
    manifest, _ = check_image(source)
    assert [d.media_type for d in manifest.layers] == [
        MediaType.DOCKER_LAYER_GZIP,
        MediaType.DOCKER_LAYER_ZSTD,
    ]
    assert [d.digest for d in manifest.layers] == [Digest.parse(b.digest) for b in a.layers]


def test_deeply_nested_manifest_json_is_invalid_not_a_crash() -> None:
    with pytest.raises(InvalidManifest, match="nested too deeply"):
        parse_manifest_json(b"[" * 200_000, "test.tar")


def test_manifest_json_over_the_descriptor_cap_is_refused() -> None:
    entry = {"Config": "c.json", "Layers": ["l.tar"] * (MAX_DESCRIPTORS + 1)}
    with pytest.raises(InvalidManifest, match=f"over the cap of {MAX_DESCRIPTORS}"):
        parse_manifest_json(json.dumps([entry]).encode(), "test.tar")
    with pytest.raises(InvalidManifest, match=f"over the cap of {MAX_DESCRIPTORS}"):
        parse_manifest_json(
            json.dumps([{"Config": "c.json", "Layers": []}] * (MAX_DESCRIPTORS + 1)).encode(), "t"
        )


def test_a_scanned_manifest_whose_media_type_is_not_a_string_is_invalid(tmp_path: Path) -> None:
    # With "manifests": null the manifest is found among the blobs, its mediaType taken as is:
    # a list there raised AttributeError in media type sniffing.
    image = (
        ImageBuilder().add_layer(LayerBuilder().file("f", b"x")).build(manifest_extra={"mediaType": ["x"]})
    )
    path = write_docker_archive(tmp_path / "n.tar", [(image, ["a:b"])], form="v25", null_index=True)
    with pytest.raises(InvalidManifest, match="'mediaType' has the wrong type"):
        resolve(_open(path, "a:b"))
