"""DirStore / TarStore: the same four operations over a directory and a tar, read in place."""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import tarfile
import threading
from pathlib import Path

import pytest
import zstandard

from ociboot.errors import ImageNotFound, InvalidManifest, SourceError
from ociboot.ref import Transport
from ociboot.sources._store import DirStore, TarStore, clean_name, open_store, sniff_path
from tests.support.dockerarchive import write_docker_archive
from tests.support.imagebuilder import (
    MTIME,
    BuiltImage,
    ImageBuilder,
    LayerBuilder,
    write_oci_archive,
    write_oci_layout,
)


def _member(tf: tarfile.TarFile, name: str, data: bytes | None = None, **kw: object) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = MTIME
    for key, value in kw.items():
        setattr(info, key, value)
    if data is not None:
        info.size = len(data)
    tf.addfile(info, io.BytesIO(data) if data is not None else None)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """A tar with `./` prefixes, links of every kind, escapes and a loop."""
    path = tmp_path / "a.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        _member(tf, "./", type=tarfile.DIRTYPE)
        _member(tf, "./dir/one", b"first file")
        _member(tf, "./dir/two", b"x" * 5000)
        _member(tf, "other/link", type=tarfile.SYMTYPE, linkname="../dir/one")
        _member(tf, "abs", type=tarfile.SYMTYPE, linkname="/dir/two")
        _member(tf, "hard", type=tarfile.LNKTYPE, linkname="./dir/one")
        _member(tf, "chain", type=tarfile.SYMTYPE, linkname="other/link")
        _member(tf, "escape", type=tarfile.SYMTYPE, linkname="../../etc/passwd")
        _member(tf, "loop1", type=tarfile.SYMTYPE, linkname="loop2")
        _member(tf, "loop2", type=tarfile.SYMTYPE, linkname="loop1")
        _member(tf, "../outside", b"never addressable")
        _member(tf, "dup", b"old")
        _member(tf, "dup", b"new")
    return path


def test_clean_name() -> None:
    assert clean_name("./a//b/", "x") == "a/b"
    assert clean_name("/a/./b", "x") == "a/b"
    assert clean_name("a/../b", "x") == "b"
    with pytest.raises(InvalidManifest, match=r"'\.\./b' escapes"):
        clean_name("../b", "x")
    with pytest.raises(InvalidManifest, match="escapes"):
        clean_name("a/../../b", "x")


def test_tar_members_and_links(archive: Path) -> None:
    store = TarStore(archive)
    assert store.read("dir/one") == b"first file"
    assert store.read("./dir/one") == b"first file"
    assert store.read("other/link") == b"first file"  # relative symlink
    assert store.read("hard") == b"first file"  # hardlink names an archive path
    assert store.read("chain") == b"first file"  # symlink to a symlink
    assert store.read("abs") == b"x" * 5000  # absolute target re-rooted at the archive
    assert store.size("abs") == 5000
    assert store.read("dup") == b"new"  # the later duplicate wins, as tar extraction does
    assert store.exists("dir/two") and not store.exists("dir") and not store.exists("nope")
    assert "dir/one" in set(store.names())


def test_tar_refuses_escapes_loops_and_missing(archive: Path) -> None:
    store = TarStore(archive)
    with pytest.raises(InvalidManifest, match="escapes the archive"):
        store.open("escape")
    with pytest.raises(InvalidManifest, match="loop"):
        store.read("loop1")
    with pytest.raises(ImageNotFound, match=rf"missing not found in {archive}"):
        store.open("missing")
    # A `../` member is skipped at scan time, and a name with `..` is refused.
    assert not store.exists("outside")
    with pytest.raises(InvalidManifest):
        store.read("../outside")
    assert not store.exists("escape") and not store.exists("loop1")


def test_read_limit_names_the_member(tmp_path: Path, archive: Path) -> None:
    with pytest.raises(InvalidManifest, match=r"dir/two in .* is 5000 bytes, over the 100 byte cap"):
        TarStore(archive).read("dir/two", limit=100)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "big").write_bytes(b"y" * 200)
    with pytest.raises(InvalidManifest, match=r"big in .* is 200 bytes, over the 100 byte cap"):
        DirStore(tmp_path / "d").read("big", limit=100)


def test_slice_is_bounded_and_seekable(archive: Path) -> None:
    with TarStore(archive).open("dir/one") as f:
        assert f.read(5) == b"first"
        assert f.read() == b" file"
        assert f.read() == b""  # never reads into the next member
        f.seek(6)
        assert f.read() == b"file"


def test_dir_store(tmp_path: Path) -> None:
    (tmp_path / "blobs" / "sha256").mkdir(parents=True)
    (tmp_path / "blobs" / "sha256" / "abc").write_bytes(b"hello")
    store = DirStore(tmp_path)
    assert store.exists("./blobs/sha256/abc") and not store.exists("blobs")
    assert store.size("blobs/sha256/abc") == 5
    with store.open("blobs/sha256/abc") as f:
        assert f.read() == b"hello"
    assert list(store.names()) == ["blobs/sha256/abc"]
    with pytest.raises(ImageNotFound, match="blobs/sha256/nope not found in"):
        store.read("blobs/sha256/nope")
    with pytest.raises(ImageNotFound, match="not a regular file"):
        store.read("blobs")
    with pytest.raises(InvalidManifest, match="escapes"):
        store.read("../x")


def test_missing_and_wrong_kinds(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFound, match="nope: no such directory"):
        DirStore(tmp_path / "nope")
    with pytest.raises(ImageNotFound, match=r"nope\.tar: no such file"):
        open_store(str(tmp_path / "nope.tar"), archive=True)
    (tmp_path / "f").write_text("x")
    with pytest.raises(ImageNotFound, match="is not a directory"):
        DirStore(tmp_path / "f")
    with pytest.raises(SourceError, match="is a directory, not a tar"):
        TarStore(tmp_path)


def test_not_a_tar(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("this is not a tar archive at all\n" * 40)
    with pytest.raises(SourceError, match=r"notes\.txt is not a readable tar archive"):
        TarStore(text)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match="empty"):
        TarStore(empty)


def test_a_gzip_or_zstd_archive_is_the_same_store_and_an_xz_one_is_refused_with_a_hint(
    tmp_path: Path, archive: Path
) -> None:
    plain = TarStore(archive)
    gz, zst = tmp_path / "a.tar.gz", tmp_path / "a.tar.zst"
    gz.write_bytes(gzip.compress(archive.read_bytes()))
    zst.write_bytes(zstandard.ZstdCompressor().compress(archive.read_bytes()))
    readable = [name for name in plain.names() if plain.exists(name)]
    assert readable
    for path in (gz, zst):
        compressed = open_store(str(path), archive=True)
        assert list(compressed.names()) == list(plain.names())
        assert [name for name in compressed.names() if compressed.exists(name)] == readable
        for name in readable:
            with compressed.open(name) as f:
                assert f.read() == plain.read(name), name
    xz = tmp_path / "a.tar.xz"
    xz.write_bytes(lzma.compress(archive.read_bytes()))
    with pytest.raises(SourceError, match="xz-compressed archive; decompress it first"):
        open_store(str(xz), archive=True)


def test_truncated_archive(tmp_path: Path, archive: Path) -> None:
    data = archive.read_bytes()
    offset = TarStore(archive)._members["dir/two"].offset
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: offset + 100])
    with pytest.raises(SourceError, match=r"cut\.tar is (truncated|not a readable tar)"):
        TarStore(cut)


def test_parallel_reads_use_separate_handles(tmp_path: Path) -> None:
    """layer.py reads layers from several threads: each open() must have its own position."""
    blobs = {f"layer{i}": os.urandom(3 << 20) for i in range(2)}
    path = tmp_path / "big.tar"
    with tarfile.open(path, "w") as tf:
        for name, data in blobs.items():
            _member(tf, name, data)
    store = TarStore(path)
    results: dict[str, str] = {}
    barrier = threading.Barrier(4)

    def read(name: str, key: str) -> None:
        h = hashlib.sha256()
        with store.open(name) as f:
            barrier.wait()
            while chunk := f.read(4096):  # small reads interleave the threads
                h.update(chunk)
        results[key] = h.hexdigest()

    threads = [threading.Thread(target=read, args=(n, f"{n}-{k}")) for n in blobs for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, data in blobs.items():
        expected = hashlib.sha256(data).hexdigest()
        assert results[f"{name}-0"] == results[f"{name}-1"] == expected


def test_docker_save_layer_symlink(conformance: Path) -> None:
    """test_link.tar: `<id>/layer.tar -> ../<other>/layer.tar` (go-containerregistry#987)."""
    store = TarStore(conformance / "go-containerregistry/v1-tarball/test_link.tar")
    linked = "b159278ac0c8813245b6c3b22cbbe7abefe3b2ec3fac6c7e87138811e1ef2a88/layer.tar"
    target = "6e77476643c3155b1e9ae07dd5a4c8288bdb6590c131c222b7a3f277dec1e266/layer.tar"
    assert store.size(linked) == store.size(target) == 10240
    with store.open(linked) as a, store.open(target) as b:
        assert a.read() == b.read()


def _image() -> BuiltImage:
    return ImageBuilder().add_layer(LayerBuilder().file("etc/os-release", "ID=test\n"), "gzip").build()


def test_sniff_path(tmp_path: Path, conformance: Path) -> None:
    image = _image()
    layout = write_oci_layout(tmp_path / "layout", {"v1": image})
    oci_archive = write_oci_archive(tmp_path / "oci.tar", {"v1": image})
    legacy = write_docker_archive(tmp_path / "legacy.tar", [(image, ["a:b"])])
    v25 = write_docker_archive(tmp_path / "v25.tar", [(image, ["a:b"])], form="v25")
    (tmp_path / "plain").mkdir()
    (tmp_path / "text").write_text("hello")
    assert sniff_path(str(layout)) == Transport.OCI
    assert sniff_path(str(oci_archive)) == Transport.OCI_ARCHIVE
    assert sniff_path(str(legacy)) == Transport.DOCKER_ARCHIVE
    assert sniff_path(str(v25)) == Transport.DOCKER_ARCHIVE  # both manifest.json and oci-layout
    assert sniff_path(str(conformance / "go-containerregistry/v1-tarball/hello-world-v25.tar")) == (
        Transport.DOCKER_ARCHIVE
    )
    assert sniff_path(str(conformance / "regclient/testrepo")) == Transport.OCI
    assert sniff_path(str(conformance / "go-containerregistry/v1-tarball/content.tar")) is None
    assert sniff_path(str(tmp_path / "plain")) is None
    assert sniff_path(str(tmp_path / "text")) is None
    assert sniff_path(str(tmp_path / "missing")) is None
