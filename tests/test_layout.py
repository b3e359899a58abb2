"""oci: and oci-archive: against built layouts and the conformance corpus."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from ociboot.digest import Digest
from ociboot.errors import ImageNotFound, InvalidManifest, SourceError, UnsupportedMediaType
from ociboot.mediatypes import is_index, is_manifest
from ociboot.ref import ImageRef, Transport
from ociboot.sources import ImageSource, SourceOptions, open_source
from ociboot.sources.layout import LayoutSource, open_layout
from ociboot.spec import Index, Manifest
from tests.support.imagebuilder import (
    BuiltImage,
    ImageBuilder,
    LayerBuilder,
    build_index,
    canonical_json,
    layout_files,
    write_oci_archive,
    write_oci_layout,
    write_tar,
)

OPTS = SourceOptions()


def _image(arch: str = "amd64", text: str = "hello") -> BuiltImage:
    layer = LayerBuilder().dir("etc").file("etc/motd", text)
    return (
        ImageBuilder(arch=arch)
        .add_layer(layer, "gzip")
        .add_layer(LayerBuilder().file("a", "b"), "zstd")
        .build()
    )


def _sha(data: bytes) -> Digest:
    return Digest.of(data)


def _open(path: Path, archive: bool, name: str | None = None) -> LayoutSource:
    transport = Transport.OCI_ARCHIVE if archive else Transport.OCI
    return open_layout(ImageRef(transport, path=str(path), name=name), OPTS)


def _write(tmp_path: Path, archive: bool, tags: dict[str, object]) -> Path:
    if archive:
        return write_oci_archive(tmp_path / "img.tar", tags)  # type: ignore[arg-type]
    return write_oci_layout(tmp_path / "layout", tags)  # type: ignore[arg-type]


def verify_tree(source: ImageSource, digest: Digest | None = None, seen: set[Digest] | None = None) -> int:
    """Read every manifest and blob reachable from `digest` (the ref's top when None); check each
    sha256 against the descriptor naming it.  Returns how many blobs were checked."""
    seen = set() if seen is None else seen
    raw = source.get_manifest(digest)
    if raw.digest is not None:
        assert _sha(raw.data) == raw.digest
    if digest is not None:
        assert raw.digest == digest
    obj = json.loads(raw.data)
    media_type = obj.get("mediaType") or raw.media_type
    count = 0
    if is_index(media_type) or "manifests" in obj:
        for child in Index.from_json(raw.data, "index", media_type).manifests:
            if child.digest in seen:
                continue  # regclient's `loop` tag: an index that lists itself
            seen.add(child.digest)
            if is_index(child.media_type) or is_manifest(child.media_type):
                count += verify_tree(source, child.digest, seen)
        return count
    manifest = Manifest.from_json(raw.data, "manifest", media_type)
    for desc in (manifest.config, *manifest.layers):
        with source.open_blob(desc) as f:
            data = f.read()
        assert len(data) == desc.size
        assert _sha(data) == desc.digest, f"{desc.digest} in {raw.where}"
        count += 1
    return count


@pytest.mark.parametrize("archive", [False, True], ids=["dir", "archive"])
def test_select_by_name(tmp_path: Path, archive: bool) -> None:
    one, two = _image(text="one"), _image(arch="arm64", text="two")
    path = _write(tmp_path, archive, {"v1": one, "v2": two})
    source = _open(path, archive, "v2")
    raw = source.get_manifest()
    assert raw.data == two.manifest.data
    assert raw.digest == Digest.parse(two.digest)
    assert raw.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert verify_tree(source) == 3
    with source.open_blob(Manifest.from_json(raw.data).layers[1]) as f:
        assert f.read() == two.layers[1].data

    with pytest.raises(ImageNotFound, match=r"has no image named 'v3' \(names: v1, v2\)"):
        _open(path, archive, "v3").get_manifest()
    transport = "oci-archive" if archive else "oci"
    with pytest.raises(
        ImageNotFound, match=rf"has 2 images, choose one: {transport}:.*:NAME \(names: v1, v2\)"
    ):
        _open(path, archive).get_manifest()


@pytest.mark.parametrize("archive", [False, True], ids=["dir", "archive"])
def test_single_entry_without_name_and_nested_index(tmp_path: Path, archive: bool) -> None:
    index = build_index([_image(), _image(arch="arm64", text="arm")])
    source = _open(_write(tmp_path, archive, {"latest": index}), archive)
    top = source.get_manifest()
    assert top.digest == Digest.parse(index.digest)
    assert top.media_type == "application/vnd.oci.image.index.v1+json"
    assert verify_tree(source) == 6
    child = Digest.parse(index.children[1].digest)
    assert source.get_manifest(child).data == index.children[1].manifest.data


def test_several_unnamed_entries_give_index_json(tmp_path: Path) -> None:
    """One image per platform without names: index.json itself, so image.py picks a platform."""
    amd, arm = _image(), _image(arch="arm64")
    files = layout_files({"x": amd, "y": arm})
    entries = [amd.descriptor(), arm.descriptor()]
    files["index.json"] = canonical_json({"schemaVersion": 2, "manifests": entries})
    root = tmp_path / "layout"
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    source = _open(root, False)
    raw = source.get_manifest()
    assert raw.digest is None
    assert raw.data == files["index.json"]
    assert raw.media_type == "application/vnd.oci.image.index.v1+json"
    assert verify_tree(source) == 6


def test_select_by_digest_name(tmp_path: Path) -> None:
    one, two = _image(text="1"), _image(text="2")
    root = write_oci_layout(tmp_path / "l", {"a": one, "b": two})
    assert _open(root, False, two.digest).get_manifest().data == two.manifest.data


def test_open_source_wiring(tmp_path: Path) -> None:
    image = _image()
    archive = write_oci_archive(tmp_path / "x.tar", {"v1": image})
    source = open_source(ImageRef(Transport.OCI_ARCHIVE, path=str(archive)))
    assert source.get_manifest().data == image.manifest.data
    source.close()


def test_missing_blob_names_blob_and_layout(tmp_path: Path) -> None:
    image = _image()
    root = write_oci_layout(tmp_path / "layout", {"v1": image})
    layer = image.layers[0]
    (root / "blobs/sha256" / layer.digest.split(":")[1]).unlink()
    source = _open(root, False)
    manifest = Manifest.from_json(source.get_manifest().data)
    with pytest.raises(ImageNotFound, match=rf"blob {layer.digest} \(.*tar\+gzip\) not found in oci:{root}"):
        source.open_blob(manifest.layers[0])
    (root / "blobs/sha256" / image.digest.split(":")[1]).unlink()
    with pytest.raises(ImageNotFound, match=rf"manifest {image.digest} not found in oci:{root}"):
        source.get_manifest()


def test_missing_blob_in_archive(tmp_path: Path) -> None:
    image = _image()
    files = layout_files({"v1": image})
    del files["blobs/sha256/" + image.config.digest.split(":")[1]]
    source = _open(write_tar(tmp_path / "a.tar", files), True)
    manifest = Manifest.from_json(source.get_manifest().data)
    with pytest.raises(ImageNotFound, match=rf"blob {manifest.config.digest} .* not found in oci-archive:"):
        source.open_blob(manifest.config)


def test_corrupt_index_json(tmp_path: Path) -> None:
    root = write_oci_layout(tmp_path / "layout", {"v1": _image()})
    (root / "index.json").write_text('{"schemaVersion": 2, "manifests": [')
    with pytest.raises(InvalidManifest, match=r"index\.json of oci:.* is not valid JSON"):
        _open(root, False)
    (root / "index.json").write_text('{"schemaVersion": 2, "manifests": [{"mediaType": "x"}]}')
    with pytest.raises(InvalidManifest, match=r"index\.json of oci:.*entry 0: missing 'digest'"):
        _open(root, False)
    (root / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
    with pytest.raises(ImageNotFound, match="holds no images"):
        _open(root, False).get_manifest()
    (root / "index.json").unlink()
    with pytest.raises(ImageNotFound, match=r"no index\.json"):
        _open(root, False)


def test_layout_header(tmp_path: Path) -> None:
    root = write_oci_layout(tmp_path / "layout", {"v1": _image()})
    (root / "oci-layout").write_text('{"imageLayoutVersion": "2.0.0"}')
    with pytest.raises(UnsupportedMediaType, match=r"image layout version '2\.0\.0' is not supported"):
        _open(root, False)
    (root / "oci-layout").write_text("{}")
    with pytest.raises(InvalidManifest, match="missing 'imageLayoutVersion'"):
        _open(root, False)
    (root / "oci-layout").unlink()
    with pytest.raises(ImageNotFound, match="is not an OCI image layout: no oci-layout file"):
        _open(root, False)


def test_wrong_medium(tmp_path: Path, conformance: Path) -> None:
    with pytest.raises(ImageNotFound, match="no such directory"):
        _open(tmp_path / "missing", False)
    with pytest.raises(ImageNotFound, match="no such file"):
        _open(tmp_path / "missing.tar", True)
    text = tmp_path / "text"
    text.write_text("not a tar\n" * 100)
    with pytest.raises(SourceError, match="is not a readable tar archive"):
        _open(text, True)
    with pytest.raises(ImageNotFound, match="looks like a docker-archive"):
        _open(conformance / "go-containerregistry/v1-tarball/test_image_1.tar", True)


# --- conformance corpus ------------------------------------------------------------------------

GGCR_LAYOUTS = ["test_index", "test_index_one_image", "test_index_media_type", "test_gc_index"]


@pytest.mark.parametrize("name", GGCR_LAYOUTS)
@pytest.mark.parametrize("archive", [False, True], ids=["dir", "archive"])
def test_ggcr_layouts(conformance: Path, tmp_path: Path, name: str, archive: bool) -> None:
    root = conformance / "go-containerregistry/v1-layout" / name
    if archive:
        files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
        root = write_tar(tmp_path / f"{name}.tar", files)
    source = _open(root, archive)
    index = source.index
    checked = 0
    for entry in index.manifests:
        if not (is_index(entry.media_type) or is_manifest(entry.media_type)):
            continue  # application/vnd.oci.descriptor.v1+json: an unknown type, not walked
        checked += verify_tree(source, entry.digest, {entry.digest})
    assert checked > 0
    if len(index.manifests) == 1:
        assert verify_tree(source) == checked


def test_ggcr_named_entries(conformance: Path) -> None:
    root = conformance / "go-containerregistry/v1-layout/test_index"
    raw = _open(root, False, "3").get_manifest()
    assert raw.digest == Digest.parse(
        "sha256:05f95b26ed10668b7183c1e2da98610e91372fa9f510046d4ce5812addad86b5"
    )
    assert _sha(raw.data) == raw.digest
    raw = _open(root, False, "4").get_manifest()
    assert raw.media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
    with pytest.raises(ImageNotFound, match=r"names: 1, 2, 3, 4"):
        _open(root, False).get_manifest()


def test_ggcr_unknown_media_type_without_blobs(conformance: Path) -> None:
    """test_gc_image_unknown_mediatype: one entry of an unknown type whose blob is absent."""
    source = _open(conformance / "go-containerregistry/v1-layout/test_gc_image_unknown_mediatype", False)
    with pytest.raises(ImageNotFound, match=r"manifest sha256:3258.* not found"):
        source.get_manifest()


def test_regclient_testrepo(conformance: Path) -> None:
    root = conformance / "regclient/testrepo"
    source = _open(root, False)
    names = sorted({d.ref_name for d in source.index.manifests if d.ref_name})
    assert {"v1", "v2", "v3", "a-docker", "loop"} <= set(names)
    total = 0
    for name in names:
        named = _open(root, False, name)
        raw = named.get_manifest()
        assert _sha(raw.data) == raw.digest
        total += verify_tree(named)
    assert total > 20
    # A multi-platform index: every platform's manifest and blobs are readable by digest.
    v1 = Index.from_json(_open(root, False, "v1").get_manifest().data)
    assert len([d for d in v1.manifests if d.platform is not None]) >= 4


def test_regclient_testrepo_as_archive(conformance: Path, tmp_path: Path) -> None:
    root = conformance / "regclient/testrepo"
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    archive = write_tar(tmp_path / "testrepo.tar", files)
    assert verify_tree(_open(archive, True, "v2")) == verify_tree(_open(root, False, "v2")) > 0


def test_layout_copied_with_symlinked_blobs(tmp_path: Path) -> None:
    """A layout directory whose blobs are symlinks (shared blob stores) is read through them."""
    image = _image()
    store = write_oci_layout(tmp_path / "store", {"v1": image})
    root = tmp_path / "layout"
    shutil.copytree(store, root, symlinks=True)
    blob = root / "blobs/sha256" / image.layers[0].digest.split(":")[1]
    blob.unlink()
    blob.symlink_to(store / "blobs/sha256" / image.layers[0].digest.split(":")[1])
    assert verify_tree(_open(root, False)) == 3
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == image.layers[0].digest.split(":")[1]
