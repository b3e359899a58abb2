"""Several reports from one read of the images: `check -o FORMAT=FILE`, repeatable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.support.bootimages import generic
from tests.support.imagebuilder import build_index, write_oci_archive, write_oci_layout
from tests.support.process import ROOT
from tests.support.process import ociboot_check as ociboot
from tests.support.registry_push import Pusher
from tests.support.registry_server import RegistryServer, blob_gets

FORMATS = ("text", "json", "sarif", "junit")
#: What may differ between two runs of one check: when they ran.
TIMES = frozenset({"timestamp", "time", "startTimeUtc", "endTimeUtc", "created"})


def document(fmt: str, text: str) -> Any:
    """A report as a comparable value, without its timestamps."""
    if fmt in ("json", "sarif"):
        return _timeless(json.loads(text))
    if fmt == "junit":
        root = ET.fromstring(text)
        for el in root.iter():
            for key in TIMES & el.attrib.keys():
                del el.attrib[key]
        return ET.canonicalize(ET.tostring(root, encoding="unicode"), strip_text=True)
    return text


def _timeless(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _timeless(v) for k, v in data.items() if k not in TIMES}
    if isinstance(data, list):
        return [_timeless(v) for v in data]
    return data


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A bootable image, a not bootable one, an index of both and one that cannot be read."""
    out = tmp_path_factory.mktemp("images")
    good, broken = generic().build(), generic().drop("/boot").build()
    layout = write_oci_layout(
        out / "layout", {"good": good, "broken": broken, "both": build_index([good, broken])}
    )
    return [f"oci:{layout}:good", f"oci:{layout}:broken", f"oci:{layout}:both", str(out / "missing.tar")]


def test_every_format_of_one_run_is_what_its_own_run_writes(images: list[str], tmp_path: Path) -> None:
    """`-o FMT=FILE` writes the very document `-f FMT` would, from the same check; text stays on
    stdout.  One image at a time: text reports are written in the order images finish."""
    files = {fmt: tmp_path / f"report.{fmt}" for fmt in FORMATS}
    together = ociboot(*images, "-j", "1", *(f"-o{fmt}={path}" for fmt, path in files.items()))
    assert together.returncode == 3, together.stderr
    assert "BOOTABLE" in together.stdout and "UNREADABLE" in together.stdout
    for fmt, path in files.items():
        alone = ociboot(*images, "-j", "1", "--format", fmt)
        assert alone.returncode == 3
        assert document(fmt, path.read_text()) == document(fmt, alone.stdout), fmt
        if fmt == "text":
            assert together.stdout == alone.stdout
            assert together.stderr == alone.stderr  # each error line once, not once per output


@pytest.mark.registry
def test_the_layers_are_read_once_for_every_output(registry: RegistryServer, tmp_path: Path) -> None:
    built = generic().file("/etc/motd", "hello\n").remove("/etc/motd").build()
    assert len(built.layers) == 2
    Pusher(registry.url).push("outputs/once", built, tag="v1")
    layers = [b.digest for b in built.layers]
    files = {fmt: tmp_path / f"report.{fmt}" for fmt in FORMATS}

    before = blob_gets(registry, "outputs/once", layers)
    done = ociboot(
        f"docker://{registry.host}/outputs/once:v1", *(f"--output={f}={p}" for f, p in files.items())
    )
    assert done.returncode == 0, done.stderr
    assert blob_gets(registry, "outputs/once", layers) - before == len(layers)
    assert json.loads(files["json"].read_text())["bootable"] is True
    assert json.loads(files["sarif"].read_text())["runs"][0]["results"] == []
    assert ET.fromstring(files["junit"].read_text()).get("failures") == "0"
    assert "BOOTABLE" in files["text"].read_text() and "BOOTABLE" in done.stdout


def test_a_plain_file_takes_the_place_of_stdout(images: list[str], tmp_path: Path) -> None:
    """`--output FILE` (with `--format`) writes FILE, as before outputs could repeat; a FORMAT=FILE
    beside it is one more report."""
    plain, sarif = tmp_path / "report.json", tmp_path / "report.sarif"
    done = ociboot(images[1], "-f", "json", "-o", str(plain), "-o", f"sarif={sarif}")
    assert done.returncode == 1 and done.stdout == ""
    assert json.loads(plain.read_text())["bootable"] is False
    assert json.loads(sarif.read_text())["runs"][0]["results"]


def test_format_dash_is_standard_output(images: list[str], tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    done = ociboot(images[1], "-o", "json=-", "-o", f"junit={junit}")
    assert done.returncode == 1
    assert json.loads(done.stdout)["bootable"] is False  # the JSON alone: no text report beside it
    assert int(ET.fromstring(junit.read_text()).get("failures") or 0) >= 1


def test_a_file_name_with_an_equals_sign(images: list[str], tmp_path: Path) -> None:
    """A word before `=` is a format, so a typo is an error, not a file named `sraif=x`; a file so
    named is written as a path (`./sraif=x`)."""
    done = ociboot(images[0], "-o", "sraif=x.sarif")
    assert done.returncode == 2 and "sraif" in done.stderr and "Traceback" not in done.stderr
    named = tmp_path / "sraif=x"
    done = ociboot(images[0], "-f", "json", "-o", str(named))
    assert done.returncode == 0 and json.loads(named.read_text())["bootable"] is True


# --- refused before any image is read --------------------------------------------------------


@pytest.fixture()
def watched(registry: RegistryServer) -> tuple[RegistryServer, str, str]:
    """An image on a registry whose log shows whether anything of it was asked for."""
    Pusher(registry.url).push("outputs/watched", generic().build(), tag="v1")
    return registry, "outputs/watched", f"docker://{registry.host}/outputs/watched:v1"


def requests_for(server: RegistryServer, repo: str) -> int:
    return server.log.read_text(errors="replace").count(f"/v2/{repo}/")


@pytest.mark.registry
@pytest.mark.parametrize(
    ("outputs", "said"),
    [
        (["json={d}/r", "sarif={d}/r"], "into one file"),
        (["json={d}/r", "sarif={d}/sub/../r"], "into one file"),
        (["json={d}/r", "sarif={d}/link"], "into one file"),  # a symlink to r, which exists
        (["json=-", "sarif=-"], "into one file"),
        (["{d}/r", "text={d}/r"], "into one file"),
        (["json={d}/r", "junit={d}/no-such-dir/junit.xml"], "No such file or directory"),
        (["json={d}/r", "junit={d}"], "Is a directory"),
        (["json={d}/r", "sarif={d}/images.txt"], "read by this run"),
        (["json={d}/r", "sarif={d}/image.tar"], "is the image"),
        (["json=", "sarif={d}/s"], "no file after"),
    ],
)
def test_an_output_that_cannot_be_honoured_is_exit_2_before_anything_is_read(
    watched: tuple[RegistryServer, str, str], tmp_path: Path, outputs: list[str], said: str
) -> None:
    """Nothing of any image is asked for, and no report file is truncated or left behind."""
    server, repo, image = watched
    (tmp_path / "sub").mkdir()
    (tmp_path / "r").write_text("yesterday's report\n")
    (tmp_path / "link").symlink_to(tmp_path / "r")
    archive = write_oci_archive(tmp_path / "image.tar", {"latest": generic().build()})
    (tmp_path / "images.txt").write_text(f"{image}\n")
    before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    asked = requests_for(server, repo)

    args = [f"--output={o.format(d=tmp_path)}" for o in outputs]
    done = ociboot(f"oci-archive:{archive}:latest", "--from", str(tmp_path / "images.txt"), *args)

    assert done.returncode == 2, done.stderr
    assert said in done.stderr and "--output" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""
    assert requests_for(server, repo) == asked
    assert {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("victim", ["archive", "from", "policy", "authfile", "blob", "cache entry"])
def test_a_report_is_never_written_onto_a_file_the_run_reads_by_another_name(
    tmp_path: Path, victim: str
) -> None:
    """A hard link names the same bytes as the file it links: opening it for a report truncates
    the image, the image list, the policy, the credentials or a cache entry.  Refused (exit 2)."""
    archive = write_oci_archive(tmp_path / "image.tar", {"latest": generic().build()})
    layout = write_oci_layout(tmp_path / "layout", {"v1": generic().build()})
    listed = tmp_path / "images.txt"
    listed.write_text(f"oci:{layout}:v1\n")
    policy = tmp_path / "policy.toml"
    policy.write_text('analysis-budget = "32M"\n')
    authfile = tmp_path / "auth.json"
    authfile.write_text('{"auths": {}}\n')
    cache = tmp_path / "cache"
    args = [f"oci-archive:{archive}:latest", "--from", str(listed), "--policy", str(policy)]
    args += ["--authfile", str(authfile), "--cache-dir", str(cache)]
    assert ociboot(str(layout), "--cache-dir", str(cache)).returncode in (0, 1)  # fills the cache
    entry = next(p for p in cache.rglob("*") if p.is_file() and p.stat().st_size > 0)
    blob = next(p for p in (layout / "blobs").rglob("*") if p.is_file())
    linked = {"archive": archive, "from": listed, "policy": policy, "authfile": authfile}
    linked |= {"blob": blob, "cache entry": entry}
    os.link(linked[victim], tmp_path / "report.json")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    before = {p: p.read_bytes() for p in files}

    done = ociboot(*args, "-o", f"json={tmp_path / 'report.json'}")

    assert done.returncode == 2, done.stderr
    assert "would destroy it" in done.stderr and "Traceback" not in done.stderr
    assert {p: p.read_bytes() for p in files} == before


@pytest.mark.parametrize("outputs", [[], ["-f", "json"], ["-o", "json={d}/r.json"]])
def test_a_closed_standard_output_is_exit_2_before_anything_is_read(
    images: list[str], tmp_path: Path, outputs: list[str]
) -> None:
    """`check IMG >&-`: the report for standard output has nowhere to go (no traceback, no
    verdict), and no other report is written."""
    args = [a.format(d=tmp_path) for a in outputs]
    done = subprocess.run(
        ["sh", "-c", 'exec "$@" >&-', "sh", sys.executable, "-m", "ociboot", "check", "-q", images[0], *args],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "standard output" in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_stdout_redirected_into_an_output_file_is_one_file(images: list[str], tmp_path: Path) -> None:
    """`check IMG -o json=out > out`: the text report and the JSON would be interleaved in one file."""
    target = tmp_path / "out"
    with target.open("w") as out:
        done = ociboot(images[0], "-o", f"json={target}", stdout=out.fileno())
    assert done.returncode == 2 and "into one file" in done.stderr


# --- a report that could not be written is no verdict ------------------------------------------


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("full", ["text", "json", "sarif", "junit"])
def test_one_output_failing_is_exit_2_and_the_others_are_still_written(
    images: list[str], tmp_path: Path, full: str
) -> None:
    others = {fmt: tmp_path / f"report.{fmt}" for fmt in FORMATS if fmt != full}
    done = ociboot(
        images[1], images[0], f"-o{full}=/dev/full", *(f"-o{fmt}={path}" for fmt, path in others.items())
    )
    assert done.returncode == 2  # the images say 1: never 0 or 1 when a report is missing
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "/dev/full" in lines[0] and "could not be written" in lines[0]
    for fmt, path in others.items():
        alone = ociboot(images[1], images[0], "-j", "1", "--format", fmt)
        if fmt != "text":  # text: in the order the images finished
            assert document(fmt, path.read_text()) == document(fmt, alone.stdout)
