"""`docker save | gzip > x.tar.gz` (and zstd, and a compressed oci-archive) is read like the plain
archive by every command, in place: nothing is written to disk, memory does not grow with the
archive, and a damaged compressed stream is one line and exit 3."""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ociboot.cli import app
from ociboot.compression import Compression, ResumableReader, ResumePoint
from ociboot.errors import SourceError
from ociboot.ref import ImageRef, Transport
from ociboot.sources import _store, open_source
from ociboot.sources._compressed import (
    KEEP_MEMBER_BYTES,
    MAX_RESUME_POINTS,
    RESUME_SPACING,
    CompressedTarStore,
    _Points,
)
from tests.support.bootimages import bootable
from tests.support.dockerarchive import write_docker_archive
from tests.support.imagebuilder import ImageBuilder, LayerBuilder, compress, write_oci_archive, write_tar

REPO = Path(__file__).resolve().parent.parent


def _cli(tool: list[str]) -> Callable[[Path, Path], None]:
    def run(src: Path, dst: Path) -> None:
        with src.open("rb") as fin, dst.open("wb") as fout:
            subprocess.run(tool, stdin=fin, stdout=fout, check=True)

    return run


def _python(fn: Callable[[bytes], bytes]) -> Callable[[Path, Path], None]:
    def run(src: Path, dst: Path) -> None:
        dst.write_bytes(fn(src.read_bytes()))

    return run


def _two_gzip_streams(data: bytes) -> bytes:
    """`cat a.gz b.gz`: a multi-member gzip, cut in the middle of a member."""
    half = len(data) // 2 + 7
    return gzip.compress(data[:half]) + gzip.compress(data[half:])


#: How people compress an archive: the tools that are installed, and the libraries.
COMPRESSORS: dict[str, Callable[[Path, Path], None]] = {
    "python-gzip": _python(gzip.compress),
    "gzip-members": _python(_two_gzip_streams),
    "python-zstd": _python(lambda d: compress(d, "zstd")),
    "zstd-frames": _python(lambda d: compress(d, "zstd", frames=7)),
}
for _name, _tool in {
    "gzip": ["gzip", "-c"],
    "pigz": ["pigz", "-c"],
    "zstd": ["zstd", "-q", "-c"],
    "pzstd": ["pzstd", "-q", "-c", "-p", "2"],
}.items():
    if shutil.which(_tool[0]):
        COMPRESSORS[_name] = _cli(_tool)


def _image() -> object:
    image = bootable("cos")
    # A second, larger layer above the base, so that members sit past resume points.
    return (
        ImageBuilder(arch=image.arch, labels=image.labels)
        .add_layer(image.base_layer(), "gzip")
        .add_layer(LayerBuilder().file("opt/blob", os.urandom(3 * RESUME_SPACING)), "gzip")
        .build()
    )


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("archives")
    image = _image()
    return {
        "legacy": write_docker_archive(out / "legacy.tar", [(image, ["os:1"])]),
        "v25": write_docker_archive(out / "v25.tar", [(image, ["os:1"])], form="v25"),
        "oci": write_oci_archive(out / "oci.tar", {"latest": image}),
    }


runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _commands(path: str) -> list[list[str]]:
    """One of each command, never writing a layer cache (the test watches the disk)."""
    return [
        ["inspect", "--no-cache", "--format", "json", path],
        ["inspect", "--no-cache", "--sizes", path],
        ["ls", "--no-cache", "-l", path, "/boot"],
        ["cat", path, "/etc/os-release"],
        ["stat", "--no-cache", path, "/boot/vmlinuz"],
        ["layers", "--no-cache", path],
        ["check", "--no-cache", "--format", "json", path],
    ]


def _packed(tmp_path: Path, plain: Path, tool: str) -> Path:
    packed = tmp_path / f"{plain.stem}.tar.{'zst' if 'zst' in tool else 'gz'}"
    COMPRESSORS[tool](plain, packed)
    return packed


@pytest.fixture
def watched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory holding the archive, the temporary directory and the cache directory: it must
    hold exactly the same files afterwards (nothing unpacked, nothing cached)."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    yield tmp_path
    assert not os.listdir(scratch)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("form", ["legacy", "v25", "oci"])
@pytest.mark.parametrize("tool", ["python-gzip", "python-zstd"])
def test_every_command_says_of_the_compressed_archive_what_it_says_of_the_plain_one(
    watched: Path, archives: dict[str, Path], form: str, tool: str
) -> None:
    plain = archives[form]
    packed = _packed(watched, plain, tool)
    before = sorted(os.listdir(watched))
    prefix = "oci-archive:" if form == "oci" else "docker-archive:"
    for named in ("", prefix):  # sniffed, and named
        for plain_args, packed_args in zip(
            _commands(named + str(plain)), _commands(named + str(packed)), strict=True
        ):
            expected, got = run(*plain_args), run(*packed_args)
            assert expected[0] == 0, (plain_args, expected[2])
            assert got[0] == 0, (packed_args, got[2])
            assert got[1].replace(str(packed), str(plain)) == expected[1], packed_args
    assert sorted(os.listdir(watched)) == before


@pytest.mark.parametrize("form", ["legacy", "v25", "oci"])
@pytest.mark.parametrize("tool", sorted(COMPRESSORS))
def test_check_json_is_identical_but_for_the_image_name(
    watched: Path, archives: dict[str, Path], form: str, tool: str
) -> None:
    plain = archives[form]
    packed = _packed(watched, plain, tool)
    code, out, err = run("check", "--no-cache", "--format", "json", str(plain))
    want = json.loads(out)
    code, out, err = run("check", "--no-cache", "--format", "json", str(packed))
    assert code == 0, err
    got = json.loads(out)
    prefix = "oci-archive:" if form == "oci" else "docker-archive:"
    assert got["reports"][0]["image"] == f"{prefix}{packed}"
    got["reports"][0]["image"] = want["reports"][0]["image"]
    assert got == want
    assert want["reports"][0]["bootable"] is True


# --- damaged and hostile archives --------------------------------------------------------------


def _one_line_exit_3(args: list[str], match: str) -> None:
    code, out, err = run(*args)
    assert code == 3, (out, err)
    assert err.count("\n") == 1 and err.startswith("ociboot: error: "), err
    assert match in err, err


def _damaged(plain: Path, tool: str, tmp_path: Path, how: str) -> Path:
    data = _packed(tmp_path, plain, tool).read_bytes()
    middle = len(data) // 2
    damaged = {
        "flipped": data[:middle] + bytes([data[middle] ^ 0x55]) + data[middle + 1 :],
        "truncated": data[:middle],
        "garbage-after": data + b"this is not compressed",
    }[how]
    path = tmp_path / f"{how}.tar.{'zst' if 'zst' in tool else 'gz'}"
    path.write_bytes(damaged)
    return path


@pytest.mark.parametrize("how", ["flipped", "truncated", "garbage-after"])
@pytest.mark.parametrize("tool", ["python-gzip", "gzip-members", "python-zstd", "zstd-frames"])
def test_a_damaged_compressed_archive_is_one_line_and_exit_3(
    tmp_path: Path, archives: dict[str, Path], tool: str, how: str
) -> None:
    path = _damaged(archives["legacy"], tool, tmp_path, how)
    for shown in (str(path), f"docker-archive:{path}"):
        _one_line_exit_3(["check", "--no-cache", shown], str(path))


def test_a_gzip_bomb_is_given_up_on_at_the_images_deadline(tmp_path: Path) -> None:
    # A member claiming 6 GiB of zeros, as 96 concatenated gzip members of 64 MiB each (~6 MB).
    header = _header(b"bomb.tar", b"0", 6 << 30)
    path = tmp_path / "bomb.tar.gz"
    zeros = gzip.compress(bytes(64 << 20), compresslevel=1)
    path.write_bytes(gzip.compress(header) + zeros * 96)
    _one_line_exit_3(["check", "--no-cache", "--timeout", "1s", str(path)], "--timeout")


def _header(name: bytes, kind: bytes, size: int) -> bytes:
    header = bytearray(512)
    header[: len(name)] = name
    header[100:108] = b"0000644\0"
    header[124:136] = b"%011o\0" % size
    header[148:156] = b" " * 8
    header[156:157] = kind
    header[257:263] = b"ustar\0"
    header[148:155] = b"%06o\0" % sum(header)
    return bytes(header)


@pytest.mark.parametrize("kind", [b"x", b"g", b"L"])
def test_an_extended_header_over_its_cap_is_refused_before_it_is_read(tmp_path: Path, kind: bytes) -> None:
    """tarfile reads a pax header or GNU long name whole: compressed, gigabytes of it fit in a
    few kilobytes, so its size is checked first, in plain archives too."""
    size = _store.MAX_ARCHIVE_META_BYTES + 1
    data = _header(b"PaxHeader", kind, size) + bytes(size + 511 & ~511) + bytes(1024)
    plain = tmp_path / "meta.tar"
    plain.write_bytes(data)
    packed = _packed(tmp_path, plain, "python-gzip")
    for shown in (str(packed), f"docker-archive:{packed}", f"docker-archive:{plain}"):
        _one_line_exit_3(["check", "--no-cache", shown], "extended tar header")


def test_the_member_table_is_capped(
    tmp_path: Path, archives: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {f"f{i}": b"" for i in range(60)}
    path = tmp_path / "many.tar"
    write_tar(path, files)
    packed = _packed(tmp_path, path, "python-gzip")
    monkeypatch.setattr(_store, "MAX_ARCHIVE_MEMBERS", 50)
    _one_line_exit_3(["check", "--no-cache", str(packed)], "more than 50 members")
    _one_line_exit_3(["check", "--no-cache", f"docker-archive:{path}"], "more than 50 members")  # plain too
    monkeypatch.setattr(_store, "MAX_ARCHIVE_MEMBERS", 60)
    with pytest.raises(SourceError, match=r"not a docker-archive|not an OCI"):  # read, just not an image
        open_source(ImageRef(Transport.DOCKER_ARCHIVE, path=str(packed)))


def test_resume_points_are_thinned_to_their_cap() -> None:
    points = _Points()
    for pos in range(0, 4000 * RESUME_SPACING, RESUME_SPACING // 3):
        points.offer(ResumePoint(pos, pos))
    assert len(points.kept) <= MAX_RESUME_POINTS
    gaps = [b.pos - a.pos for a, b in zip(points.kept, points.kept[1:], strict=False)]
    assert min(gaps) >= points.spacing and max(gaps) < 2 * points.spacing
    assert points.kept[-1].pos > 3990 * RESUME_SPACING - 2 * points.spacing  # covers the whole range


def _layered(tmp_path: Path, layers: int, layer_bytes: int) -> Path:
    builder = ImageBuilder()
    for i in range(layers):
        builder.add_layer(LayerBuilder().file(f"data/{i}", os.urandom(layer_bytes)), "none")
    return write_docker_archive(tmp_path / f"{layers}x{layer_bytes}.tar", [(builder.build(), ["big:1"])])


def test_members_read_in_archive_order_decode_a_single_zstd_frame_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-frame zstd archive resumes only at its start: a closed member stream hands its decoder
    to the next member, so reading them in order costs one pass, not one per member."""
    plain = _layered(tmp_path, 8, KEEP_MEMBER_BYTES + 4096)  # not kept from the scan
    packed = _packed(tmp_path, plain, "python-zstd")
    decoded = 0
    real_read = ResumableReader.read

    def counting(self: ResumableReader, n: int = -1) -> bytes:
        nonlocal decoded
        data = real_read(self, n)
        decoded += len(data)
        return data

    monkeypatch.setattr(ResumableReader, "read", counting)
    store = CompressedTarStore(str(packed), Compression.ZSTD, math.inf)
    scanned, decoded = decoded, 0
    assert scanned >= plain.stat().st_size - 10240
    assert json.loads(store.read("manifest.json"))[0]["RepoTags"] == ["big:1"]
    assert decoded == 0  # small members are kept from the scan
    by_offset = [n for n in sorted(store.names(), key=lambda n: store._members[n].offset) if store.exists(n)]
    for name in by_offset:  # a head is looked at (docker_archive sniffs each layer file), then
        with store.open(name) as f:  # the next member starts where that read stopped
            f.read(6)
    assert decoded <= scanned
    decoded = 0
    for name in by_offset:
        with store.open(name) as f:
            f.read()
    assert decoded <= scanned


def _peak_rss(args: list[str]) -> int:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ociboot", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stderr is not None
    assert proc.returncode in (0, 1), proc.stderr.read()
    proc.stderr.close()
    return usage.ru_maxrss << 10


@pytest.mark.parametrize("tool", ["python-gzip", "python-zstd"])
def test_memory_does_not_grow_with_the_archive(tmp_path: Path, tool: str) -> None:
    small = _packed(tmp_path, _layered(tmp_path, 24, 128 << 10), tool)
    large = _packed(tmp_path, _layered(tmp_path, 24, 4 << 20), tool)
    grown = large.stat().st_size - small.stat().st_size
    assert grown > 90 << 20
    rss_small = _peak_rss(["check", "--no-cache", "-q", str(small)])
    rss_large = _peak_rss(["check", "--no-cache", "-q", str(large)])
    assert rss_large - rss_small < grown // 4, (rss_small, rss_large)


#: Paths opened while an audit is on (sys.audit hooks cannot be removed: one, switched by a flag).
_OPENED: list[str] | None = None


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event == "open" and _OPENED is not None and isinstance(args[0], str):
        _OPENED.append(args[0])


sys.addaudithook(_audit)


def test_what_a_run_checks_before_reading_an_image_does_not_read_it(
    archives: dict[str, Path], tmp_path: Path
) -> None:
    """Sniffing a compressed archive decompresses it; that happens once, when the image is read,
    under its deadline: never in the checks made before (outputs onto inputs, promotion lists,
    --attach), which had no deadline and would each have done it again."""
    from ociboot import outputs, promolist
    from ociboot.cli import _registry_only

    global _OPENED
    packed = _packed(tmp_path, archives["legacy"], "gzip")
    texts = [str(packed), "docker://127.0.0.1:1/os:1"]
    _OPENED = []
    try:
        outputs.refuse([outputs.Output(outputs.ReportFormat.json, str(tmp_path / "r.json"))], texts)
        plan = promolist.Plan.of(texts)
        with pytest.raises(Exception, match="not a registry image"):
            _registry_only(texts, "--attach")
        opened, _OPENED = _OPENED, None
    finally:
        _OPENED = None
    assert str(packed) not in opened
    assert plan.left_out == (str(packed),) and list(plan.images) == [1]
