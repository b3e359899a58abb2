"""Manifest resolution: index -> manifest -> config with every digest verified.

Part (a) runs against `DictSource`, an honest fake at our own seam: it hands back stored bytes
and nothing else (no parsing, no verification), so every check under test is image.py's.
Part (b) runs the conformance layouts through the real OCI layout source.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import pytest

from ociboot.digest import Digest
from ociboot.errors import (
    DigestMismatch,
    ImageNotFound,
    InvalidManifest,
    NoMatchingPlatform,
    UnsupportedMediaType,
)
from ociboot.image import MAX_INDEX_DEPTH, EntryKind, describe_index, resolve, resolve_all
from ociboot.ref import ImageRef, Transport, parse_ref
from ociboot.sources import ImageSource, RawManifest, open_source
from ociboot.spec import MAX_DESCRIPTORS, Descriptor, Platform
from tests.support.imagebuilder import (
    OCI_INDEX,
    Blob,
    BuiltImage,
    BuiltIndex,
    ImageBuilder,
    LayerBuilder,
    build_index,
    canonical_json,
    sha256,
    tree_files,
    write_oci_layout,
    write_tar,
)

REF = parse_ref("oci:/test/layout:v1")
AMD64 = Platform("linux", "amd64")


class DictSource:
    """Stored bytes by digest, plus the body the reference names.  No checks of its own."""

    def __init__(
        self,
        top: bytes,
        blobs: dict[str, bytes],
        *,
        ref: ImageRef = REF,
        content_type: str | None = None,
        claimed: Digest | None = None,
    ) -> None:
        self._ref = ref
        self.top = top
        self.blobs = dict(blobs)
        self.content_type = content_type
        self.claimed = claimed
        self.manifest_requests: list[str | None] = []

    @property
    def ref(self) -> ImageRef:
        return self._ref

    def get_manifest(self, digest: Digest | None = None) -> RawManifest:
        self.manifest_requests.append(None if digest is None else str(digest))
        if digest is None:
            return RawManifest(self.top, self.content_type, self.claimed, "test:top")
        try:
            data = self.blobs[str(digest)]
        except KeyError:
            raise ImageNotFound(f"no manifest {digest}") from None
        return RawManifest(data, None, None, f"test:{digest}")

    def open_blob(self, descriptor: Descriptor) -> IO[bytes]:
        try:
            return io.BytesIO(self.blobs[str(descriptor.digest)])
        except KeyError:
            raise ImageNotFound(f"no blob {descriptor.digest}") from None

    def close(self) -> None:
        pass


def image(
    arch: str = "amd64", variant: str | None = None, flavour: str = "oci", layers: int = 2
) -> BuiltImage:
    builder = ImageBuilder(arch=arch, variant=variant, flavour=flavour)
    for i in range(layers):
        builder.add_layer(LayerBuilder().file(f"f{i}", f"{arch} {variant} {i}"), "gzip")
    return builder.build()


def source_of(built: BuiltImage | BuiltIndex, **kwargs: Any) -> DictSource:
    return DictSource(built.manifest.data, built.blobs, **kwargs)


def index_of(entries: list[dict[str, Any]], blobs: dict[str, bytes]) -> tuple[bytes, dict[str, bytes]]:
    raw = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    return raw, {**blobs, sha256(raw): raw}


def manifest_with(built: BuiltImage, **changes: Any) -> tuple[bytes, dict[str, bytes]]:
    """The image's manifest JSON with fields replaced (and its blobs)."""
    obj = {**json.loads(built.manifest.data), **changes}
    raw = canonical_json(obj)
    return raw, {**built.blobs, sha256(raw): raw}


# --- single manifests ------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["oci", "docker"])
def test_single_manifest(flavour: str) -> None:
    built = image(flavour=flavour)
    resolved = resolve(source_of(built))
    assert str(resolved.manifest_digest) == built.digest
    assert resolved.manifest_raw == built.manifest.data
    assert resolved.media_type == built.manifest.media_type
    assert str(resolved.config_digest) == built.config.digest
    assert resolved.config_raw == built.config.data
    assert resolved.platform == AMD64
    assert resolved.index is None and resolved.index_digest is None and resolved.platforms == ()
    assert [str(layer.descriptor.digest) for layer in resolved.layers] == [b.digest for b in built.layers]
    assert [str(layer.diff_id) for layer in resolved.layers] == built.diff_ids
    assert resolved.ref == REF
    assert str(resolved.pinned_ref) == f"oci:/test/layout:@{built.digest}"
    assert resolve_all(source_of(built)) == [resolved]


def test_manifest_without_media_type_uses_content_type() -> None:
    built = image()
    obj = json.loads(built.manifest.data)
    del obj["mediaType"]
    raw = canonical_json(obj)
    resolved = resolve(
        DictSource(raw, built.blobs, content_type="application/vnd.oci.image.manifest.v1+json")
    )
    assert resolved.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert resolved.manifest_digest == Digest.of(raw)


def test_resolved_image_equality_ignores_source() -> None:
    built = image()
    assert resolve(source_of(built)) == resolve(source_of(built))
    assert "DictSource" not in repr(resolve(source_of(built)))


# --- digest verification ---------------------------------------------------------------------


def test_top_manifest_checked_against_reference_digest() -> None:
    built, other = image("amd64"), image("arm64")
    ref = replace(REF, name=None, digest=Digest.parse(other.digest))
    with pytest.raises(DigestMismatch) as info:
        resolve(source_of(built, ref=ref))
    assert info.value.expected == other.digest
    assert info.value.actual == built.digest
    assert DigestMismatch("a", "b", "c").exit_code == 3


def test_top_manifest_checked_against_source_claim() -> None:
    built, other = image("amd64"), image("arm64")
    with pytest.raises(DigestMismatch, match="test:top"):
        resolve(source_of(built, claimed=Digest.parse(other.digest)))


def test_matching_reference_digest_passes() -> None:
    built = image()
    ref = replace(REF, name=None, digest=Digest.parse(built.digest))
    assert str(resolve(source_of(built, ref=ref, claimed=ref.digest)).manifest_digest) == built.digest


def test_config_digest_mismatch() -> None:
    built = image()
    source = source_of(built)
    tampered = built.config.data.replace(b'"amd64"', b'"arm64"')
    assert len(tampered) == len(built.config.data)
    source.blobs[built.config.digest] = tampered
    with pytest.raises(DigestMismatch, match=f"config {built.config.digest}"):
        resolve(source)


def test_config_size_mismatch() -> None:
    built = image()
    source = source_of(built)
    source.blobs[built.config.digest] = built.config.data + b" "
    with pytest.raises(DigestMismatch, match="more than"):
        resolve(source)


def test_child_digest_mismatch() -> None:
    amd, arm = image("amd64"), image("arm64")
    idx = build_index([amd, arm])
    source = source_of(idx)
    # Same size, still valid JSON, pointing at another config: only the digest can tell.
    hex_char = arm.config.digest[-1]
    swapped = "0" if hex_char != "0" else "1"
    tampered = arm.manifest.data.replace(
        arm.config.digest.encode(), (arm.config.digest[:-1] + swapped).encode()
    )
    assert len(tampered) == len(arm.manifest.data) and tampered != arm.manifest.data
    source.blobs[arm.digest] = tampered
    with pytest.raises(DigestMismatch) as info:
        resolve(source, Platform("linux", "arm64"))
    assert info.value.expected == arm.digest
    # The amd64 child was untouched and still resolves.
    assert str(resolve(source, AMD64).manifest_digest) == amd.digest


def test_child_size_mismatch() -> None:
    amd = image("amd64")
    raw, blobs = index_of([amd.descriptor(size=len(amd.manifest.data) + 1)], amd.blobs)
    with pytest.raises(DigestMismatch, match=r"expected \d+ bytes"):
        resolve(DictSource(raw, blobs), AMD64)


def test_missing_child_is_not_found() -> None:
    amd = image("amd64")
    raw, blobs = index_of([amd.descriptor()], {})
    with pytest.raises(ImageNotFound):
        resolve(DictSource(raw, blobs), AMD64)


# --- platform selection ----------------------------------------------------------------------


def multi() -> tuple[BuiltIndex, dict[str, BuiltImage]]:
    images = {
        "linux/amd64": image("amd64"),
        "linux/arm64/v8": image("arm64", "v8"),
        "linux/arm/v6": image("arm", "v6"),
        "linux/arm/v7": image("arm", "v7"),
        "linux/s390x": image("s390x"),
    }
    return build_index(images.values()), images


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/arm64", "linux/arm64/v8"),  # a bare arm64 means v8 (containerd Normalize)
        ("linux/arm64/v8", "linux/arm64/v8"),
        ("linux/aarch64", "linux/arm64/v8"),
        ("linux/arm/v6", "linux/arm/v6"),
        ("linux/arm/v7", "linux/arm/v7"),
        ("linux/arm", "linux/arm/v7"),  # a bare arm means v7, not the first arm entry (v6)
        ("linux/s390x", "linux/s390x"),
    ],
)
def test_platform_selection(wanted: str, expected: str) -> None:
    idx, images = multi()
    resolved = resolve(source_of(idx), Platform.parse(wanted))
    assert str(resolved.manifest_digest) == images[expected].digest
    assert str(resolved.platform) == expected
    assert resolved.index_digest == Digest.parse(idx.digest)
    assert resolved.index is not None and len(resolved.index.manifests) == 5
    assert [str(p) for p in resolved.platforms] == list(images)


def test_bare_arm64_entry_matches_arm64_v8_request() -> None:
    arm = image("arm64")  # index entry without variant
    resolved = resolve(source_of(build_index([arm])), Platform.parse("linux/arm64/v8"))
    assert str(resolved.manifest_digest) == arm.digest


def test_arm_v7_request_does_not_take_v6() -> None:
    v6 = image("arm", "v6")
    with pytest.raises(NoMatchingPlatform) as info:
        resolve(source_of(build_index([v6])), Platform.parse("linux/arm/v7"))
    assert info.value.available == ("linux/arm/v6",)


def test_host_platform_is_the_default() -> None:
    idx, images = multi()
    host = Platform.host()
    expected = next((img for key, img in images.items() if host.matches(Platform.parse(key))), None)
    if expected is None:
        with pytest.raises(NoMatchingPlatform, match=str(host)):
            resolve(source_of(idx))
    else:
        assert str(resolve(source_of(idx)).manifest_digest) == expected.digest


def test_no_match_lists_platforms() -> None:
    idx, _ = multi()
    with pytest.raises(NoMatchingPlatform) as info:
        resolve(source_of(idx), Platform.parse("windows/amd64"))
    message = str(info.value)
    assert message.startswith("no manifest for platform windows/amd64 in index sha256:")
    assert "available: linux/amd64, linux/arm64/v8, linux/arm/v6, linux/arm/v7, linux/s390x" in message


def test_first_match_wins() -> None:
    first, second = image("amd64", layers=1), image("amd64", layers=2)
    resolved = resolve(source_of(build_index([first, second])), AMD64)
    assert str(resolved.manifest_digest) == first.digest


def test_docker_manifest_list() -> None:
    amd, arm = image("amd64", flavour="docker"), image("arm64", flavour="docker")
    idx = build_index([amd, arm], docker=True)
    resolved = resolve(source_of(idx), Platform.parse("linux/arm64"))
    assert str(resolved.manifest_digest) == arm.digest
    assert resolved.index is not None and resolved.index.media_type.endswith("manifest.list.v2+json")


def test_resolve_all_in_index_order() -> None:
    idx, images = multi()
    resolved = resolve_all(source_of(idx))
    assert [str(r.manifest_digest) for r in resolved] == [i.digest for i in images.values()]
    assert [str(r.platform) for r in resolved] == list(images)


def test_children_fetched_once() -> None:
    idx, _ = multi()
    source = source_of(idx)
    resolve_all(source)
    requested = [d for d in source.manifest_requests if d is not None]
    assert len(requested) == len(set(requested)) == 5


# --- entries that are not images -------------------------------------------------------------


def attestation_for(target: BuiltImage) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A BuildKit-style attestation manifest: platform unknown/unknown, a non-layer payload."""
    payload = Blob("application/vnd.in-toto+json", b'{"_type":"x"}')
    config = Blob("application/vnd.oci.image.config.v1+json", b"{}")
    obj = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config.descriptor(),
        "layers": [payload.descriptor()],
    }
    raw = canonical_json(obj)
    desc = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha256(raw),
        "size": len(raw),
        "platform": {"architecture": "unknown", "os": "unknown"},
        "annotations": {
            "vnd.docker.reference.digest": target.digest,
            "vnd.docker.reference.type": "attestation-manifest",
        },
    }
    return desc, {sha256(raw): raw, config.digest: config.data, payload.digest: payload.data}


def artifact() -> tuple[bytes, dict[str, bytes]]:
    empty = Blob("application/vnd.oci.empty.v1+json", b"{}")
    sbom = Blob("application/spdx+json", b"{}")
    obj = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/spdx+json",
        "config": empty.descriptor(),
        "layers": [sbom.descriptor()],
    }
    raw = canonical_json(obj)
    return raw, {sha256(raw): raw, empty.digest: empty.data, sbom.digest: sbom.data}


def test_attestations_and_artifacts_are_skipped() -> None:
    amd = image("amd64")
    att, att_blobs = attestation_for(amd)
    art_raw, art_blobs = artifact()
    art_desc = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha256(art_raw),
        "size": len(art_raw),
        "artifactType": "application/spdx+json",
    }
    unknown = {"mediaType": "application/x-unknown", "digest": sha256(b"x"), "size": 1}
    raw, blobs = index_of([att, art_desc, unknown, amd.descriptor()], {**amd.blobs, **att_blobs, **art_blobs})
    source = DictSource(raw, blobs)
    assert str(resolve(source, AMD64).manifest_digest) == amd.digest
    assert [str(r.manifest_digest) for r in resolve_all(source)] == [amd.digest]
    listing = describe_index(source)
    assert [e.kind for e in listing.entries] == [
        EntryKind.ATTESTATION,
        EntryKind.ARTIFACT,
        EntryKind.UNKNOWN,
        EntryKind.IMAGE,
    ]
    assert listing.platforms == (AMD64,)


def test_index_of_only_artifacts() -> None:
    art_raw, art_blobs = artifact()
    desc = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha256(art_raw),
        "size": len(art_raw),
    }
    raw, blobs = index_of([desc], art_blobs)
    with pytest.raises(UnsupportedMediaType, match="holds no container image"):
        resolve(DictSource(raw, blobs), AMD64)


def test_empty_index() -> None:
    raw, blobs = index_of([], {})
    with pytest.raises(InvalidManifest, match="lists no manifests"):
        resolve(DictSource(raw, blobs), AMD64)


def test_entry_without_platform_is_identified_by_its_config() -> None:
    amd, arm = image("amd64"), image("arm64")
    entries = [amd.manifest.descriptor(), arm.manifest.descriptor()]  # no "platform" (oras#636)
    raw, blobs = index_of(entries, {**amd.blobs, **arm.blobs})
    resolved = resolve(DictSource(raw, blobs), Platform.parse("linux/arm64"))
    assert str(resolved.manifest_digest) == arm.digest
    assert resolved.platforms == (AMD64, Platform("linux", "arm64"))


# --- nested indexes --------------------------------------------------------------------------


def test_nested_index() -> None:
    amd, arm = image("amd64"), image("arm64")
    inner = build_index([arm])
    outer = build_index([amd, inner])
    resolved = resolve(source_of(outer), Platform.parse("linux/arm64"))
    assert str(resolved.manifest_digest) == arm.digest
    assert resolved.index_digest == Digest.parse(outer.digest)
    assert resolved.platforms == (AMD64, Platform("linux", "arm64"))
    listing = describe_index(source_of(outer))
    assert [(e.kind, e.depth) for e in listing.entries] == [
        (EntryKind.IMAGE, 0),
        (EntryKind.INDEX, 0),
        (EntryKind.IMAGE, 1),
    ]


def nest(levels: int) -> BuiltIndex:
    node: BuiltImage | BuiltIndex = image("amd64")
    for _ in range(levels):
        node = build_index([node])
    assert isinstance(node, BuiltIndex)
    return node


def test_nesting_at_the_limit_resolves() -> None:
    # MAX_INDEX_DEPTH nested indexes below the top one
    assert resolve(source_of(nest(MAX_INDEX_DEPTH + 1)), AMD64).platform == AMD64


def test_nesting_beyond_the_limit_is_refused() -> None:
    with pytest.raises(InvalidManifest, match=f"index nesting deeper than {MAX_INDEX_DEPTH}"):
        resolve(source_of(nest(MAX_INDEX_DEPTH + 2)), AMD64)


def test_entry_claiming_index_but_holding_manifest() -> None:
    amd = image("amd64")
    raw, blobs = index_of([amd.manifest.descriptor(mediaType=OCI_INDEX)], amd.blobs)
    with pytest.raises(InvalidManifest, match="as an index"):
        resolve(DictSource(raw, blobs), AMD64)


# --- manifests that are not runnable images --------------------------------------------------


def test_artifact_manifest() -> None:
    raw, blobs = artifact()
    with pytest.raises(UnsupportedMediaType) as info:
        resolve(DictSource(raw, blobs))
    assert "is an artifact (config type application/vnd.oci.empty.v1+json" in str(info.value)
    assert "not a container image" in str(info.value)


def test_encrypted_layer() -> None:
    built = image()
    layers = json.loads(built.manifest.data)["layers"]
    layers[1]["mediaType"] += "+encrypted"
    raw, blobs = manifest_with(built, layers=layers)
    # Resolving needs no layer: the image resolves, with a note; reading the layer refuses it.
    resolved = resolve(DictSource(raw, blobs))
    assert any(re.search(r"layer 1 \(sha256:[0-9a-f]+\) .*encrypted", note) for note in resolved.notes)


def test_unknown_layer_type() -> None:
    built = image()
    layers = json.loads(built.manifest.data)["layers"]
    layers[0]["mediaType"] = "application/vnd.example.blob"
    raw, blobs = manifest_with(built, layers=layers)
    resolved = resolve(DictSource(raw, blobs))
    assert resolved.layers[0].descriptor.media_type == "application/vnd.example.blob"
    assert any(
        re.search(r"layer 0 .* media type 'application/vnd\.example\.blob': not a layer type", note)
        for note in resolved.notes
    )


def test_foreign_layer_is_accepted_with_a_note() -> None:
    built = image(flavour="docker")
    layers = json.loads(built.manifest.data)["layers"]
    layers[0]["mediaType"] = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    layers[0]["urls"] = ["https://example.invalid/layer"]
    raw, blobs = manifest_with(built, layers=layers)
    resolved = resolve(DictSource(raw, blobs))
    assert len(resolved.layers) == 2
    assert resolved.notes == (
        f"layer 0 ({built.layers[0].digest}) is a foreign/non-distributable layer "
        "from https://example.invalid/layer",
    )


def test_schema1_body() -> None:
    raw = canonical_json({"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []})
    with pytest.raises(UnsupportedMediaType, match="schema1"):
        resolve(DictSource(raw, {}))


def test_too_large_manifest() -> None:
    raw = b'{"schemaVersion":2,"layers":[],"pad":"' + b"x" * (4 << 20) + b'"}'
    with pytest.raises(InvalidManifest, match="over the 4194304 byte cap"):
        resolve(DictSource(raw, {}))


def test_too_large_config_is_not_read() -> None:
    built = image()
    obj = json.loads(built.manifest.data)
    obj["config"]["size"] = (4 << 20) + 1
    raw, blobs = manifest_with(built, config=obj["config"])
    with pytest.raises(InvalidManifest, match=r"config .* over the"):
        resolve(DictSource(raw, blobs))


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[]", b""])
def test_corrupt_json(body: bytes) -> None:
    with pytest.raises(InvalidManifest):
        resolve(DictSource(body, {}))


def test_corrupt_child_json_with_right_digest() -> None:
    bad = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":'
    desc = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha256(bad),
        "size": len(bad),
    }
    raw, blobs = index_of(
        [{**desc, "platform": {"os": "linux", "architecture": "amd64"}}], {sha256(bad): bad}
    )
    with pytest.raises(InvalidManifest, match="not valid JSON"):
        resolve(DictSource(raw, blobs), AMD64)


def test_layer_and_diff_id_counts_must_agree() -> None:
    built = image()
    layers = json.loads(built.manifest.data)["layers"][:1]
    raw, blobs = manifest_with(built, layers=layers)
    with pytest.raises(InvalidManifest, match=r"has 1 layers but its config .* lists 2 diff_ids"):
        resolve(DictSource(raw, blobs))


def test_docker_config_needs_diff_ids() -> None:
    built = image(flavour="docker")
    config_obj = json.loads(built.config.data)
    del config_obj["rootfs"]["diff_ids"]
    config = Blob(built.config.media_type, canonical_json(config_obj))
    raw, blobs = manifest_with(built, config=config.descriptor())
    blobs[config.digest] = config.data
    with pytest.raises(InvalidManifest, match=r"missing rootfs\.diff_ids"):
        resolve(DictSource(raw, blobs))


# --- (b) conformance layouts through the real OCI layout source ------------------------------

V1 = {
    "linux/amd64": "sha256:1effc9d48232693f4584ceb9c5e8d84ddeb5924ea4aff341aa8204510422f668",
    "linux/arm64": "sha256:7e87ffc91b9ceafa85be2777b16b1be10e4664fd4f3acc86e4295b97da5163ba",
}
V2 = {
    "linux/amd64": "sha256:ee378b79279b57eb5ac1f3b892c9ad2a9be9d9ccabe1a29a9cbaed8cad182358",
    "linux/arm64": "sha256:6bed79d0800a0d3a1d0e0e8105a6a5f7f7758ce09e160a8f142574c418302467",
    "linux/arm/v7": "sha256:36ed7f4ec4545a40ca043f60d76653ef3d2a76f58a051c0f3a256aaab26fb847",
}
V3 = {
    "linux/amd64": "sha256:f8c9d547514d66b562f791c361e4e9795340a7626aff22980138718689ef2a44",
    "linux/arm64": "sha256:e2a061deaaf445494e98f544b7dc3717288733d6bf918d888d50aec982a587ab",
    "linux/arm/v7": "sha256:f4682754068e9235e63d24d8e5a2b9faca41bbfff1e74b131293b9d86cb0bc2b",
    "linux/arm/v6": "sha256:8fb6a85012f44e45a0555da6449e1444bdfe9b6589c3090ffccbdbcdcf979011",
}
V1_INDEX = "sha256:7ceb9b6bcc274697d0c38be6214b50cec79d601bc61708747d3f6cb772f6c6fa"


def open_testrepo(conformance: Path, name: str | None, transport: Transport = Transport.OCI) -> ImageSource:
    return open_source(ImageRef(transport, path=str(conformance / "regclient" / "testrepo"), name=name))


@pytest.mark.parametrize(("tag", "expected", "layers"), [("v1", V1, 2), ("v2", V2, 3), ("v3", V3, 5)])
def test_testrepo_multi_platform(conformance: Path, tag: str, expected: dict[str, str], layers: int) -> None:
    source = open_testrepo(conformance, tag)
    for platform, digest in expected.items():
        resolved = resolve(source, Platform.parse(platform))
        assert str(resolved.manifest_digest) == digest
        assert str(resolved.platform) == platform
        assert len(resolved.layers) == layers
        assert [str(p) for p in resolved.platforms] == list(expected)
        assert all(layer.descriptor.media_type.endswith("tar+gzip") for layer in resolved.layers)
        assert tuple(layer.diff_id for layer in resolved.layers) == resolved.config.diff_ids
    assert [str(r.manifest_digest) for r in resolve_all(source)] == list(expected.values())


def test_testrepo_v1_skips_unknown_platform_entries(conformance: Path) -> None:
    listing = describe_index(open_testrepo(conformance, "v1"))
    assert str(listing.digest) == V1_INDEX
    assert [e.kind for e in listing.entries] == [
        EntryKind.IMAGE,
        EntryKind.IMAGE,
        EntryKind.ATTESTATION,
        EntryKind.ATTESTATION,
    ]
    with pytest.raises(NoMatchingPlatform) as info:
        resolve(open_testrepo(conformance, "v1"), Platform.parse("linux/arm/v7"))
    assert info.value.available == ("linux/amd64", "linux/arm64")
    assert V1_INDEX in str(info.value)


def test_testrepo_bare_arm_picks_v7_not_v6(conformance: Path) -> None:
    resolved = resolve(open_testrepo(conformance, "v3"), Platform.parse("linux/arm"))
    assert str(resolved.manifest_digest) == V3["linux/arm/v7"]


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ("a-docker", "has unsupported media type 'application/vnd.example.build-type+json'"),
        (
            "a1",
            "is an artifact (config type application/vnd.oci.empty.v1+json, "
            "artifactType application/example.sbom)",
        ),
        ("a-example", "is an artifact"),
        ("child", "artifactType application/example.child"),
        ("mirror", "artifactType application/example.mirror"),
        # `loop` is an index whose subject is its own child: subjects are never followed, and
        # its one entry (no platform, so identified by fetching it) is an artifact.
        ("loop", "holds no container image (only: artifact)"),
        ("ai", "holds no container image (only: artifact)"),
    ],
)
def test_testrepo_non_images(conformance: Path, tag: str, message: str) -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        resolve(open_testrepo(conformance, tag), AMD64)
    assert message in str(info.value)
    assert f"testrepo:{tag}" in str(info.value)


def test_testrepo_as_oci_archive(conformance: Path, tmp_path: Path) -> None:

    archive = write_tar(tmp_path / "testrepo.tar", tree_files(conformance / "regclient" / "testrepo"))
    source = open_source(ImageRef(Transport.OCI_ARCHIVE, path=str(archive), name="v3"))
    resolved = resolve(source, Platform.parse("linux/arm/v6"))
    assert str(resolved.manifest_digest) == V3["linux/arm/v6"]
    assert resolved.index_digest is not None


GGCR_IMAGE = "sha256:eebff607b1628d67459b0596643fc07de70d702eccf030f0bc7bb6fc2b278650"


@pytest.mark.parametrize(
    ("name", "digest", "via_index"),
    [
        ("1", GGCR_IMAGE, False),
        # entry media type application/vnd.oci.descriptor.v1+json: the body's own type decides
        ("2", "sha256:32589985702551b6c56033bb3334432a0a513bf9d6aceda0f67c42b003850720", False),
        ("3", GGCR_IMAGE, True),  # OCI index
        ("4", GGCR_IMAGE, True),  # Docker manifest list
    ],
)
def test_ggcr_test_index(conformance: Path, name: str, digest: str, via_index: bool) -> None:
    path = conformance / "go-containerregistry" / "v1-layout" / "test_index"
    resolved = resolve(open_source(ImageRef(Transport.OCI, path=str(path), name=name)), AMD64)
    assert str(resolved.manifest_digest) == digest
    assert (resolved.index is not None) == via_index
    assert resolved.platform == AMD64
    assert len(resolved.layers) == 1


def test_ggcr_one_image(conformance: Path) -> None:
    path = conformance / "go-containerregistry" / "v1-layout" / "test_index_one_image"
    resolved = resolve(open_source(ImageRef(Transport.OCI, path=str(path))), AMD64)
    assert str(resolved.manifest_digest).startswith("sha256:98ceaf93e482")
    assert resolved.layers[0].diff_id == resolved.config.diff_ids[0]


def test_ggcr_helm_chart_is_not_an_image(conformance: Path) -> None:
    path = conformance / "go-containerregistry" / "v1-layout" / "test_index_media_type"
    with pytest.raises(UnsupportedMediaType, match=r"config type application/vnd\.cncf\.helm\.config"):
        resolve(open_source(ImageRef(Transport.OCI, path=str(path))), AMD64)


def test_ggcr_missing_manifest_blob(conformance: Path) -> None:
    path = conformance / "go-containerregistry" / "v1-layout" / "test_gc_image_unknown_mediatype"
    with pytest.raises(ImageNotFound, match="sha256:32589985"):
        resolve(open_source(ImageRef(Transport.OCI, path=str(path))), AMD64)


def test_built_layout_round_trip(tmp_path: Path) -> None:

    idx, images = multi()
    write_oci_layout(tmp_path / "lay", {"multi": idx, "single": images["linux/s390x"]})
    source = open_source(parse_ref(f"oci:{tmp_path / 'lay'}:multi"))
    resolved = resolve(source, Platform.parse("linux/arm/v6"))
    assert str(resolved.manifest_digest) == images["linux/arm/v6"].digest
    assert [str(layer.diff_id) for layer in resolved.layers] == images["linux/arm/v6"].diff_ids
    single = resolve(open_source(parse_ref(f"oci:{tmp_path / 'lay'}:single")), AMD64)
    assert str(single.platform) == "linux/s390x"  # a lone manifest is not filtered by platform
    assert single.notes == (
        "the image is linux/s390x, not the requested linux/amd64 (it is not in an index)",
    )


# --- index blow-ups --------------------------------------------------------------------------


def repeated(child: BuiltImage | BuiltIndex, times: int) -> BuiltIndex:
    """An index listing the same child `times` times."""
    index = build_index([child])
    obj = json.loads(index.manifest.data)
    obj["manifests"] = obj["manifests"] * times
    raw = canonical_json(obj)
    return BuiltIndex(Blob(OCI_INDEX, raw), [child])


def test_a_nested_index_listed_many_times_is_walked_once() -> None:
    # Walked per listing, 300 x 300 repeats are 90,000 entries; at the 20,000 x 20,000
    # (a 6 MB layout) they were past 2.8 GB.
    amd = image("amd64")
    top = repeated(repeated(amd, 300), 300)
    source = source_of(top)
    listing = describe_index(source)
    assert [(e.kind, e.depth) for e in listing.entries] == [(EntryKind.INDEX, 0), (EntryKind.IMAGE, 1)]
    assert source.manifest_requests.count(json.loads(top.manifest.data)["manifests"][0]["digest"]) == 1
    assert [str(r.manifest_digest) for r in resolve_all(source_of(top))] == [amd.digest]


def unknown_entries(count: int, salt: str) -> list[dict[str, Any]]:
    """Distinct entries of a media type no one fetches."""
    return [
        {"mediaType": "application/x-unknown", "digest": sha256(f"{salt}{i}".encode()), "size": 1}
        for i in range(count)
    ]


def test_an_index_over_the_descriptor_cap_is_refused() -> None:
    raw, blobs = index_of([image("amd64").descriptor(), *unknown_entries(MAX_DESCRIPTORS, "a")], {})
    with pytest.raises(InvalidManifest, match=f"over the cap of {MAX_DESCRIPTORS}"):
        describe_index(DictSource(raw, blobs))


def test_nested_indexes_over_the_descriptor_cap_together_are_refused() -> None:
    half = MAX_DESCRIPTORS // 2 + 1
    inner = [index_of(unknown_entries(half, salt), {}) for salt in "ab"]
    inner_descs = [{"mediaType": OCI_INDEX, "digest": sha256(raw), "size": len(raw)} for raw, _ in inner]
    raw, blobs = index_of(inner_descs, {k: v for _, b in inner for k, v in b.items()})
    with pytest.raises(InvalidManifest, match=f"list more than {MAX_DESCRIPTORS} entries"):
        describe_index(DictSource(raw, blobs))


def test_a_manifest_over_the_descriptor_cap_is_refused() -> None:
    amd = image("amd64")
    layers = json.loads(amd.manifest.data)["layers"] * (MAX_DESCRIPTORS + 1)
    raw, blobs = manifest_with(amd, layers=layers)
    with pytest.raises(InvalidManifest, match=f"over the cap of {MAX_DESCRIPTORS}"):
        resolve(DictSource(raw, blobs), AMD64)
