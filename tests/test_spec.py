"""The OCI/Docker vocabulary: strict parsing of descriptors, manifests, indexes, configs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ociboot.digest import Digest
from ociboot.errors import InvalidManifest, UnsupportedMediaType
from ociboot.mediatypes import MediaType
from ociboot.spec import (
    MAX_MANIFEST_BYTES,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    load_json,
    sniff_manifest_type,
)
from tests.support.imagebuilder import ImageBuilder, LayerBuilder, build_index, canonical_json

D = "sha256:" + "0" * 64


def desc(**changes: Any) -> dict[str, Any]:
    return {"mediaType": MediaType.OCI_LAYER_GZIP.value, "digest": D, "size": 3, **changes}


# --- load_json -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{", "thing is not valid JSON"),
        (b"\xff\xfe\x00", "thing is not valid JSON"),
        (b"[1]", "thing is not a JSON object"),
        (b"null", "thing is not a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"{" + b" " * MAX_MANIFEST_BYTES + b"}", "over the 4194304 byte cap"),
    ],
)
def test_load_json_rejects(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidManifest, match=message):
        load_json(raw, "thing")


# --- descriptors -----------------------------------------------------------------------------


def test_descriptor_fields() -> None:
    obj = desc(
        platform={"os": "linux", "architecture": "arm", "variant": "v7", "os.version": "x"},
        annotations={"org.opencontainers.image.ref.name": "v1"},
        urls=["https://example.invalid/b"],
        artifactType="application/x",
    )
    d = Descriptor.from_json(obj, "entry")
    assert d.digest == Digest.parse(D)
    assert d.size == 3
    assert d.platform == Platform("linux", "arm", "v7", "x")
    assert d.ref_name == "v1"
    assert d.urls == ("https://example.invalid/b",)
    assert d.artifact_type == "application/x"
    # annotations do not take part in equality or hashing
    assert d == Descriptor.from_json({**obj, "annotations": {}}, "entry")
    assert hash(d) == hash(Descriptor.from_json({**obj, "annotations": {}}, "entry"))


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "entry: descriptor is not an object"),
        ({"digest": D, "size": 1}, "entry: missing 'mediaType'"),
        (desc(digest=None), "entry: missing 'digest'"),
        (desc(size=None), "entry: missing 'size'"),
        (desc(digest="sha256:abc"), "entry: invalid sha256 digest 'sha256:abc'"),
        (desc(digest="md5:" + "0" * 32), "unsupported digest algorithm 'md5'"),
        (desc(size=-1), "entry: negative size -1"),
        (desc(size=True), "'size' has the wrong type \\(bool\\)"),
        (desc(size=1.5), "'size' has the wrong type \\(float\\)"),
        (desc(mediaType=7), "'mediaType' has the wrong type \\(int\\)"),
        (desc(urls=[1]), "'urls' must be a list of strings"),
        (desc(annotations={"a": 1}), "'annotations' must map strings to strings"),
        (desc(platform="linux/amd64"), "'platform' is not an object"),
        (desc(platform={"os": "linux"}), "missing 'architecture'"),
    ],
)
def test_descriptor_rejects(obj: Any, message: str) -> None:
    with pytest.raises(InvalidManifest, match=message):
        Descriptor.from_json(obj, "entry")


# --- platforms -------------------------------------------------------------------------------


def test_platform_parse_and_str() -> None:
    assert Platform.parse("linux/ARM64/V8") == Platform("linux", "arm64", "v8")
    assert str(Platform.parse(" linux/amd64 ")) == "linux/amd64"
    for bad in ("linux", "linux/", "a/b/c/d", "/amd64"):
        with pytest.raises(ValueError, match="expected os/arch"):
            Platform.parse(bad)


@pytest.mark.parametrize(
    ("wanted", "candidate", "match"),
    [
        ("linux/amd64", "linux/amd64", True),
        ("linux/amd64", "linux/x86_64", True),
        ("linux/amd64", "linux/arm64", False),
        ("linux/amd64", "windows/amd64", False),
        ("linux/arm64", "linux/arm64/v8", True),
        ("linux/arm64/v8", "linux/arm64", True),
        ("linux/aarch64", "linux/arm64/v8", True),
        ("linux/arm", "linux/arm/v7", True),
        ("linux/arm", "linux/arm", True),
        ("linux/arm", "linux/arm/v6", False),
        ("linux/arm/v7", "linux/arm/v6", False),
        ("linux/arm/v6", "linux/arm/v7", False),
        ("linux/arm/v6", "linux/arm/v6", True),
        ("linux/amd64", "linux/amd64/v1", True),
    ],
)
def test_platform_matches(wanted: str, candidate: str, match: bool) -> None:
    assert Platform.parse(wanted).matches(Platform.parse(candidate)) is match


def test_host_platform_is_normalised() -> None:
    host = Platform.host()
    assert host.os == "linux"
    assert host.architecture not in ("x86_64", "aarch64")
    assert host.matches(host)


# --- manifests -------------------------------------------------------------------------------


def built(flavour: str = "oci") -> Any:
    return (
        ImageBuilder(flavour=flavour)
        .add_layer(LayerBuilder().file("a", "1"), "gzip")
        .add_layer(LayerBuilder().file("b", "2"), "zstd")
        .build()
    )


@pytest.mark.parametrize("flavour", ["oci", "docker"])
def test_manifest_from_builder(flavour: str) -> None:
    image = built(flavour)
    m = Manifest.from_json(image.manifest.data)
    assert m.media_type == image.manifest.media_type
    assert str(m.config.digest) == image.config.digest
    assert [str(layer.digest) for layer in m.layers] == [b.digest for b in image.layers]
    assert m.subject is None and m.artifact_type is None


def test_manifest_without_media_type_takes_the_transport_type() -> None:
    obj = json.loads(built("docker").manifest.data)
    del obj["mediaType"]
    m = Manifest.from_json(canonical_json(obj), media_type=MediaType.DOCKER_MANIFEST)
    assert m.media_type == MediaType.DOCKER_MANIFEST
    assert Manifest.from_json(canonical_json(obj)).media_type == MediaType.OCI_MANIFEST


def manifest_obj(**changes: Any) -> bytes:
    obj = {**json.loads(built().manifest.data), **changes}
    return canonical_json({k: v for k, v in obj.items() if v is not None})


@pytest.mark.parametrize(
    ("raw", "error", "message"),
    [
        (canonical_json({"schemaVersion": 1, "fsLayers": []}), UnsupportedMediaType, "schema1"),
        (manifest_obj(mediaType=MediaType.DOCKER_SCHEMA1_SIGNED.value), UnsupportedMediaType, "schema1"),
        (manifest_obj(schemaVersion=None), InvalidManifest, "schemaVersion must be 2, got None"),
        (manifest_obj(schemaVersion=3), InvalidManifest, "schemaVersion must be 2, got 3"),
        (manifest_obj(schemaVersion=True), InvalidManifest, "schemaVersion must be 2, got True"),
        (
            canonical_json({"mediaType": "application/vnd.oci.artifact.manifest.v1+json", "blobs": []}),
            UnsupportedMediaType,
            "unsupported media type 'application/vnd.oci.artifact.manifest.v1\\+json'",
        ),
        (manifest_obj(mediaType=MediaType.OCI_INDEX.value), InvalidManifest, "is an index"),
        (manifest_obj(manifests=[]), InvalidManifest, "is an index"),
        (manifest_obj(layers=None), InvalidManifest, "missing 'layers'"),
        (manifest_obj(config=None), InvalidManifest, "missing 'config'"),
        (
            manifest_obj(layers=[desc(size="3")]),
            InvalidManifest,
            "manifest layer 0: 'size' has the wrong type",
        ),
    ],
)
def test_manifest_rejects(raw: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        Manifest.from_json(raw, "manifest")


# --- indexes ---------------------------------------------------------------------------------


def test_index_from_builder() -> None:
    a, b = built(), ImageBuilder(arch="arm64").add_layer(LayerBuilder().file("x"), "none").build()
    index = Index.from_json(build_index([a, b]).manifest.data)
    assert [str(d.digest) for d in index.manifests] == [a.digest, b.digest]
    assert [str(d.platform) for d in index.manifests] == ["linux/amd64", "linux/arm64"]


def test_index_with_null_manifests() -> None:
    # Docker 25 `docker save image@digest` (moby/moby#47210)
    raw = canonical_json({"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX.value, "manifests": None})
    assert Index.from_json(raw).manifests == ()


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST.value}, "not an index"),
        ({"schemaVersion": 2, "manifests": {}}, "'manifests' has the wrong type"),
        ({"schemaVersion": 2, "manifests": [{"digest": D}]}, "index entry 0: missing 'mediaType'"),
        ({"manifests": []}, "schemaVersion must be 2"),
    ],
)
def test_index_rejects(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidManifest, match=message):
        Index.from_json(canonical_json(obj))


# --- sniffing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "content_type", "expected"),
    [
        ({"mediaType": "application/x-own"}, MediaType.OCI_INDEX, "application/x-own"),
        ({"schemaVersion": 1}, None, MediaType.DOCKER_SCHEMA1),
        ({"schemaVersion": 2, "config": {}}, MediaType.DOCKER_MANIFEST, MediaType.DOCKER_MANIFEST),
        (
            {"schemaVersion": 2, "config": {}},
            f"{MediaType.DOCKER_MANIFEST}; charset=utf-8",
            MediaType.DOCKER_MANIFEST,
        ),
        ({"schemaVersion": 2, "manifests": []}, "application/json", MediaType.OCI_INDEX),
        ({"schemaVersion": 2, "manifests": []}, "application/octet-stream", MediaType.OCI_INDEX),
        (
            {"schemaVersion": 2, "layers": []},
            "application/vnd.oci.descriptor.v1+json",
            MediaType.OCI_MANIFEST,
        ),
        ({"schemaVersion": 2, "config": {}}, None, MediaType.OCI_MANIFEST),
    ],
)
def test_sniff_manifest_type(obj: dict[str, Any], content_type: str | None, expected: str) -> None:
    assert sniff_manifest_type(canonical_json(obj), content_type, "m") == expected


def test_sniff_unknown_shape() -> None:
    with pytest.raises(InvalidManifest, match="cannot tell whether this is a manifest or an index"):
        sniff_manifest_type(b'{"schemaVersion":2}', "application/json", "m")


# --- image configs ---------------------------------------------------------------------------


def test_config_from_builder() -> None:
    image = (
        ImageBuilder(arch="arm", variant="v7", labels={"a": "b"}).add_layer(LayerBuilder(), "gzip").build()
    )
    config = ImageConfig.from_json(image.config.data)
    assert config.platform == Platform("linux", "arm", "v7")
    assert [str(d) for d in config.diff_ids] == image.diff_ids
    assert config.labels == {"a": "b"}
    assert config.cmd == ("/bin/sh",)
    assert config.env == ("PATH=/usr/sbin:/usr/bin:/sbin:/bin",)
    assert config.history[0].created_by == "layer 1"
    assert config.history[0].empty_layer is False


def config_obj(**changes: Any) -> bytes:
    obj = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [D]}, **changes}
    return canonical_json(obj)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{}", "config: missing 'rootfs'"),
        (config_obj(rootfs={"type": "tar", "diff_ids": []}), "rootfs.type must be 'layers', got 'tar'"),
        (config_obj(rootfs={"type": "layers", "diff_ids": [1]}), r"diff_ids\[0\] is not a string"),
        (
            config_obj(rootfs={"type": "layers", "diff_ids": ["sha256:x"]}),
            r"diff_ids\[0\]: invalid sha256 digest",
        ),
        (config_obj(config={"Env": ["A=1", 2]}), "config config: 'Env' must be a list of strings"),
        (config_obj(config={"Cmd": "sh"}), "'Cmd' has the wrong type \\(str\\)"),
        (config_obj(config={"Labels": {"a": 1}}), "'Labels' must map strings to strings"),
        (config_obj(history=["x"]), r"history\[0\] is not an object"),
        (config_obj(history=[{"created_by": 1}]), r"history\[0\]: 'created_by' has the wrong type"),
        (config_obj(architecture=64), "'architecture' has the wrong type"),
    ],
)
def test_config_rejects(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidManifest, match=message):
        ImageConfig.from_json(raw, "config")


def test_config_without_diff_ids_is_empty() -> None:
    # An OCI image with no layers; image.py requires diff_ids for Docker configs separately.
    assert ImageConfig.from_json(config_obj(rootfs={"type": "layers"})).diff_ids == ()
