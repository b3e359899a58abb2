"""layer.index_layer: real layer blobs (imagebuilder), verified end to end.

The source is an honest fake at our own seam: it only hands out the bytes it was given.
"""

from __future__ import annotations

import hashlib
import io
import math
from pathlib import Path
from typing import Any

import pytest

from ociboot.compression import Compression
from ociboot.digest import Digest
from ociboot.errors import DigestMismatch, OcibootError, TruncatedLayer, UnsafePath, UnsupportedMediaType
from ociboot.fs.node import Entry, Kind, LayerContent
from ociboot.layer import AnalysisFailed, AnalyzeSpec, CaptureSpec, LayerIndex, index_layer, read_tar
from ociboot.ref import ImageRef
from ociboot.sources import RawManifest
from ociboot.spec import Descriptor
from tests.support.imagebuilder import LAYER_TYPES, LayerBuilder, compress

KERNEL = b"MZ" + bytes(510) + b"HdrS" + bytes(100_000)


class BlobSource:
    """Serves blobs from a dict, nothing else; records what was opened and closed."""

    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs
        self.open_count = 0
        self.closed = 0
        self.deadline = math.inf  # no time bound: these tests are about bytes

    @property
    def ref(self) -> ImageRef:
        raise NotImplementedError("not needed by index_layer")

    def get_manifest(self, digest: Digest | None = None) -> RawManifest:
        raise NotImplementedError("not needed by index_layer")

    def open_blob(self, descriptor: Descriptor) -> io.BytesIO:
        self.open_count += 1
        source = self

        class _Blob(io.BytesIO):
            def close(self) -> None:
                source.closed += 1
                super().close()

        return _Blob(self.blobs[str(descriptor.digest)])

    def close(self) -> None:
        pass


def _sha(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def _layer(
    tar: bytes,
    compression: str = "gzip",
    *,
    media_type: str | None = None,
    frames: int = 1,
    blob: bytes | None = None,
    size: int | None = None,
) -> tuple[BlobSource, Descriptor, Digest]:
    data = compress(tar, compression, frames=frames) if blob is None else blob
    mt = media_type or LAYER_TYPES[("oci", compression)]
    desc = Descriptor(mt, _sha(data), len(data) if size is None else size)
    return BlobSource({str(desc.digest): data}), desc, _sha(tar)


def _boot_layer() -> LayerBuilder:
    return (
        LayerBuilder()
        .dir("boot")
        .file("boot/vmlinuz-6.1.0", KERNEL, mode=0o600)
        .symlink("boot/vmlinuz", "vmlinuz-6.1.0")
        .dir("etc")
        .file("etc/os-release", "ID=debian\n")
    )


@pytest.mark.parametrize(("compression", "frames"), [("gzip", 1), ("zstd", 1), ("zstd", 3), ("none", 1)])
def test_index_layer_in_every_compression(compression: str, frames: int) -> None:
    tar = _boot_layer().tar()
    source, desc, diff_id = _layer(tar, compression, frames=frames)
    seen: list[int] = []
    index = index_layer(
        source, desc, diff_id, CaptureSpec({"boot/*": 1024, "etc/os-release": None}), progress=seen.append
    )
    assert isinstance(index, LayerIndex)
    layer: LayerContent = index  # the overlay's protocol
    assert layer.name == str(desc.digest)
    assert [(e.path, e.kind) for e in index.entries] == [
        ("boot", Kind.DIR),
        ("boot/vmlinuz-6.1.0", Kind.FILE),
        ("boot/vmlinuz", Kind.SYMLINK),
        ("etc", Kind.DIR),
        ("etc/os-release", Kind.FILE),
    ]
    assert index.compression == Compression(compression)
    assert index.digest == desc.digest and index.diff_id == diff_id
    assert index.compressed_size == desc.size and index.size == len(tar)
    assert sum(seen) == desc.size
    assert index.captured == {"boot/vmlinuz-6.1.0": KERNEL[:1024], "etc/os-release": b"ID=debian\n"}
    assert index.complete == frozenset({"etc/os-release"})
    assert index.notes == ()
    assert source.closed == 1
    kernel = index.entries[1]
    assert (kernel.size, kernel.mode, kernel.uname) == (len(KERNEL), 0o600, "root")
    assert tar[kernel.offset : kernel.offset + kernel.size] == KERNEL


def test_media_type_mismatch_is_decompressed_by_magic_and_noted() -> None:
    tar = _boot_layer().tar()
    source, desc, diff_id = _layer(tar, "zstd", media_type=LAYER_TYPES[("oci", "gzip")])
    index = index_layer(source, desc, diff_id)
    assert index.compression is Compression.ZSTD
    assert index.notes == (f"media type {LAYER_TYPES[('oci', 'gzip')]} says gzip, content is zstd",)
    # and an uncompressed blob behind a gzip media type (skopeo-era mixups)
    source, desc, diff_id = _layer(tar, "none", media_type=LAYER_TYPES[("docker", "gzip")])
    assert "content is none" in index_layer(source, desc, diff_id).notes[0]


def test_plain_tar_whose_first_name_looks_like_a_magic_is_still_a_tar() -> None:
    tar = LayerBuilder().file("]", b"x").tar()  # 5d 00 00: the lzma "alone" look-alike
    assert tar[:3] == b"]\0\0"
    source, desc, diff_id = _layer(tar, "none")
    index = index_layer(source, desc, diff_id)
    assert index.compression is Compression.NONE and index.entries[0].path == "]"


@pytest.mark.parametrize(
    "media_type",
    [
        "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
        "application/vnd.oci.image.config.v1+json",
        "application/octet-stream",
    ],
)
def test_unknown_or_encrypted_media_types_are_refused(media_type: str) -> None:
    source, desc, diff_id = _layer(_boot_layer().tar(), media_type=media_type)
    with pytest.raises(UnsupportedMediaType, match=str(desc.digest)):
        index_layer(source, desc, diff_id)
    assert source.open_count == 0


def test_wrong_blob_digest() -> None:
    tar = _boot_layer().tar()
    source, desc, diff_id = _layer(tar)
    wrong = Descriptor(desc.media_type, _sha(b"other"), desc.size)
    source.blobs[str(wrong.digest)] = source.blobs[str(desc.digest)]
    with pytest.raises(DigestMismatch) as info:
        index_layer(source, wrong, diff_id)
    assert info.value.exit_code == 3
    assert info.value.expected == str(wrong.digest) and info.value.actual == str(desc.digest)
    assert source.closed == 1


def test_wrong_diff_id() -> None:
    source, desc, _ = _layer(_boot_layer().tar())
    with pytest.raises(DigestMismatch, match=r"uncompressed \(diff_id\)") as info:
        index_layer(source, desc, _sha(b"not the tar"))
    assert info.value.exit_code == 3


@pytest.mark.parametrize("delta", [-1, 1])
def test_wrong_size(delta: int) -> None:
    tar = _boot_layer().tar()
    blob = compress(tar, "gzip")
    source, desc, diff_id = _layer(tar, blob=blob, size=len(blob) + delta)
    with pytest.raises(DigestMismatch, match="bytes") as info:
        index_layer(source, desc, diff_id)
    assert info.value.exit_code == 3


def test_corrupt_blob_is_blamed_on_the_blob_digest_not_the_decoder() -> None:
    tar = _boot_layer().tar()
    source, desc, diff_id = _layer(tar)
    blob = bytearray(source.blobs[str(desc.digest)])
    blob[len(blob) // 2] ^= 0xFF
    source.blobs[str(desc.digest)] = bytes(blob)
    with pytest.raises(DigestMismatch, match=f"layer {desc.digest}:"):
        index_layer(source, desc, diff_id)


def test_diff_id_covers_bytes_after_the_end_of_archive() -> None:
    # The walker stops at the end blocks; draining must still hash what follows.
    tar = _boot_layer().tar()
    padded = tar + bytes(10240) + b"trailing"
    source, desc, _ = _layer(padded)
    with pytest.raises(DigestMismatch, match="diff_id"):
        index_layer(source, desc, _sha(tar))
    index = index_layer(source, desc, _sha(padded))
    assert index.size == len(padded) and len(index.entries) == 5


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_truncated_blob_is_truncated_layer(compression: str) -> None:
    tar = _boot_layer().tar()
    full = compress(tar, compression)
    cut = full[: len(full) * 3 // 4]
    source, desc, diff_id = _layer(tar, compression, blob=cut)  # digest of the cut blob: it verifies
    with pytest.raises(TruncatedLayer, match=f"layer {desc.digest}"):
        index_layer(source, desc, diff_id)


def test_layer_without_end_blocks_is_accepted_with_a_note() -> None:
    tar = _boot_layer().tar(end_blocks=False)
    assert not tar.endswith(bytes(1024))
    source, desc, diff_id = _layer(tar, "zstd")
    index = index_layer(source, desc, diff_id, CaptureSpec({"etc/*": None}))
    assert [e.path for e in index.entries][-1] == "etc/os-release"
    assert index.captured["etc/os-release"] == b"ID=debian\n"
    assert any("no end-of-archive blocks" in n for n in index.notes)


def test_member_cut_mid_data_is_rejected_naming_it() -> None:
    tar = _boot_layer().tar(end_blocks=False)
    cut = tar[: tar.index(KERNEL[:520]) + 2000]
    source, desc, diff_id = _layer(cut, "gzip")
    with pytest.raises(
        TruncatedLayer,
        match=rf"inside member 'boot/vmlinuz-6.1.0' \(2000 of {len(KERNEL)} data bytes, data at offset 1024",
    ):
        index_layer(source, desc, diff_id)


@pytest.mark.parametrize("tar", [bytes(1024), b""], ids=["zero-blocks", "zero-bytes"])
@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_empty_layers(tar: bytes, compression: str) -> None:
    source, desc, diff_id = _layer(tar, compression)
    index = index_layer(source, desc, diff_id)
    assert index.entries == () and index.size == len(tar)


def test_unsafe_member_names_the_layer_and_member() -> None:
    source, desc, diff_id = _layer(LayerBuilder().file("../etc/shadow", "x").tar())
    with pytest.raises(UnsafePath, match=rf"layer {desc.digest}: member name '../etc/shadow'"):
        index_layer(source, desc, diff_id)


def test_every_failure_is_an_ociboot_error() -> None:
    tar = _boot_layer().tar()
    source, desc, diff_id = _layer(tar, blob=b"\x1f\x8b\x08\x00" + bytes(40))
    with pytest.raises(OcibootError):
        index_layer(source, desc, diff_id)


# --- conformance layers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rel", "names"),
    [
        ("regclient/layer.tar", ["layer1.txt", "layer2.txt", "layer3.txt"]),
        (
            "regclient/layer-wh.tar",
            ["layer1.txt", ".wh.layer2.txt", "layer3.txt", "exdir", "exdir/.wh..wh..opq"],
        ),
        ("go-containerregistry/crane/content.tar", ["", "bat", "baz"]),
        ("go-containerregistry/crane/content.tar.zst", ["", "bat", "baz"]),
    ],
)
def test_conformance_layers(conformance: Path, rel: str, names: list[str]) -> None:
    blob = (conformance / rel).read_bytes()
    compression = "zstd" if rel.endswith(".zst") else "none"
    tar = (
        (conformance / "go-containerregistry/crane/content.tar").read_bytes()
        if compression == "zstd"
        else blob
    )
    source, desc, diff_id = _layer(tar, compression, blob=blob)
    index = index_layer(source, desc, diff_id, CaptureSpec({"*": None}))
    assert [e.path for e in index.entries] == names
    assert index.entries[0].kind is (Kind.DIR if names[0] == "" else Kind.FILE)
    if rel.startswith("regclient"):
        assert index.captured["layer1.txt"] == b"1\n"
        assert index.entries[0].uname == "bmitch"
    else:
        assert index.captured["bat"] == b"bat\n" and "bat" in index.complete
        assert index.entries[1].mode == 0o555


# --- streaming analyzers ---------------------------------------------------------------------


def _digest_of_member(entry: Entry, reader: Any, budget: object) -> tuple[str, int]:
    h = hashlib.sha256()
    while chunk := reader.read(7):  # odd sizes: the reader must never run past the member
        h.update(chunk)
    return h.hexdigest(), entry.size


def test_analyzers_read_whole_members_from_the_stream_without_keeping_them() -> None:
    big = bytes(range(256)) * 1000
    layer = LayerBuilder().file("boot/initrd-1", big).file("boot/other", b"x" * 600).file("etc/a", b"a")
    listing = read_tar(
        io.BytesIO(layer.tar()),
        capture=CaptureSpec({"etc/*": None}),
        analyze=AnalyzeSpec({"boot/initrd*": _digest_of_member}),
    )
    assert listing.analyses == {"boot/initrd-1": (hashlib.sha256(big).hexdigest(), len(big))}
    assert "boot/initrd-1" not in listing.captured and listing.captured["etc/a"] == b"a"
    assert [e.path for e in listing.entries] == ["boot/initrd-1", "boot/other", "etc/a"]


def test_an_analyzer_that_stops_early_leaves_the_walk_intact_and_keeps_a_captured_head() -> None:
    layer = LayerBuilder().file("boot/k", b"H" * 100 + b"T" * 5000).file("after", b"z")
    listing = read_tar(
        io.BytesIO(layer.tar()),
        capture=CaptureSpec({"boot/k": 10}),
        analyze=AnalyzeSpec({"boot/k": lambda entry, reader, budget: reader.read(3)}),
    )
    assert listing.analyses["boot/k"] == b"HHH"
    assert listing.captured["boot/k"] == b"H" * 10 and "boot/k" not in listing.complete
    assert [e.path for e in listing.entries] == ["boot/k", "after"]


def test_a_failing_analyzer_is_a_result_and_a_cut_member_still_fails_the_layer() -> None:
    def boom(entry: Entry, reader: Any, budget: object) -> None:
        raise ValueError("bad initrd")

    layer = LayerBuilder().file("boot/initrd", b"q" * 3000)
    listing = read_tar(io.BytesIO(layer.tar()), analyze=AnalyzeSpec({"boot/*": boom}))
    assert listing.analyses["boot/initrd"] == AnalysisFailed("ValueError: bad initrd")
    with pytest.raises(TruncatedLayer, match="boot/initrd"):
        read_tar(io.BytesIO(layer.tar()[:1536]), analyze=AnalyzeSpec({"boot/*": _digest_of_member}))
