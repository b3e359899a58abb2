"""`ociboot check` over many images: --from FILE, --jobs N, one report each, a summary, exit codes."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from typer.testing import CliRunner

from ociboot import pipeline
from ociboot.cli import app
from ociboot.image import ResolvedImage
from tests.support.bootimages import generic
from tests.support.imagebuilder import write_oci_layout

runner = CliRunner()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A bootable image, one without init (not bootable), and two that cannot be read."""
    root = tmp_path_factory.mktemp("batch")
    write_oci_layout(root / "good", {"latest": generic().build()})
    write_oci_layout(root / "broken", {"latest": generic().remove("/usr/lib/systemd").build()})
    write_oci_layout(root / "missing-blob", {"latest": generic().file("/etc/motd", "x").build()})
    for blob in (root / "missing-blob" / "blobs" / "sha256").iterdir():
        if blob.stat().st_size > 4096:  # the layer, not the manifest or config
            blob.unlink()
    return {
        "good": f"oci:{root / 'good'}:latest",
        "broken": f"oci:{root / 'broken'}:latest",
        "missing-blob": f"oci:{root / 'missing-blob'}:latest",
        "no-such-path": f"oci:{root / 'nowhere'}:latest",
    }


def listing(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "images.txt"
    path.write_text("# images to gate\n\n" + "\n".join(f"  {line}  " for line in lines) + "\n# end\n")
    return str(path)


def check(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["check", "--no-cache", *args])
    return result.exit_code, result.stdout, result.stderr


def test_from_file_one_report_each_and_a_summary(tmp_path: Path, images: dict[str, str]) -> None:
    names = ["good", "broken", "missing-blob"]
    code, out, err = check("--from", listing(tmp_path, *(images[n] for n in names)))
    assert code == 3  # one image could not be read
    headers = [line.split()[0] for line in out.splitlines() if line.startswith("oci:")]
    assert sorted(headers) == sorted(images[n] for n in names)  # each as it finished
    assert "BOOTABLE: " in out and "NOT BOOTABLE: " in out and "UNREADABLE: " in out
    assert out.rstrip().splitlines()[-1] == "1 bootable, 1 not bootable, 1 unreadable"
    assert err.count("ociboot: error:") == 1 and "Traceback" not in err


def test_exit_1_when_all_were_read_and_one_is_not_bootable(tmp_path: Path, images: dict[str, str]) -> None:
    code, out, _ = check(images["good"], "--from", listing(tmp_path, images["broken"]))
    assert code == 1 and out.rstrip().endswith("1 bootable, 1 not bootable, 0 unreadable")


def test_exit_0_when_all_boot(images: dict[str, str]) -> None:
    code, out, _ = check(images["good"], images["good"])
    assert code == 0 and out.rstrip().endswith("2 bootable, 0 not bootable, 0 unreadable")


def test_one_image_has_no_summary_line(images: dict[str, str]) -> None:
    code, out, _ = check(images["good"])
    assert code == 0 and "unreadable" not in out


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_jobs_2_gives_the_same_reports_as_jobs_1(tmp_path: Path, images: dict[str, str], fmt: str) -> None:
    order = ["broken", "no-such-path", "good", "missing-blob", "good", "broken"]
    from_file = listing(tmp_path, *(images[n] for n in order))
    one = check("--from", from_file, "--jobs", "1", "--format", fmt)
    two = check("--from", from_file, "--jobs", "2", "--format", fmt)
    assert one[0] == two[0] == 3
    assert sorted(one[2].splitlines()) == sorted(two[2].splitlines())  # errors may interleave
    if fmt == "json":
        assert one[1] == two[1]  # one document, in input order
        doc = json.loads(one[1])
        assert [r["image"] for r in doc["reports"]] == [images[n] for n in order if n in ("good", "broken")]
        assert [u["image"] for u in doc["unreadable"]] == [images["no-such-path"], images["missing-blob"]]
    else:
        # Each report is printed as its image finishes: the same reports, maybe in another order.
        assert sorted(one[1].split("\n\n")) == sorted(two[1].split("\n\n"))
        assert one[1].rstrip().endswith("2 bootable, 2 not bootable, 2 unreadable")


def test_shared_cache_across_concurrent_images(tmp_path: Path, images: dict[str, str]) -> None:
    """Four threads checking images that share their base layer: each entry written once, and
    the warm batch gives the cold batch's reports."""
    cache = tmp_path / "cache"
    args = ["check", "--cache-dir", str(cache), "--jobs", "4", "--format", "json"]
    args += [images["good"]] * 4
    cold = runner.invoke(app, args)
    warm = runner.invoke(app, args)
    assert cold.exit_code == warm.exit_code == 0
    assert cold.stdout == warm.stdout
    assert len(list(cache.rglob("*.idx"))) == 1


def test_usage_errors(tmp_path: Path) -> None:
    assert check()[0] == 2
    code, _, err = check("--from", str(tmp_path / "absent.txt"))
    assert code == 2 and "--from" in err
    assert check("--jobs", "0", "x")[0] == 2


# --- a verdict a gate can trust: what could not be read is a failure, in every format ----------


def unreadable_in(fmt: str, out: str, image: str) -> bool:
    """Does the `fmt` document carry `image` as a failure (and the whole run as not passing)?"""
    if fmt == "json":
        doc = json.loads(out)
        return doc["bootable"] is False and image in [u["image"] for u in doc["unreadable"]]
    if fmt == "sarif":
        # a run per image platform; one that could not be read is an unsuccessful run naming it
        failed = [run["invocations"][0] for run in json.loads(out)["runs"]]
        named = [
            n["locations"][0]["logicalLocations"][0]["name"]
            for invocation in failed
            if invocation["executionSuccessful"] is False
            for n in invocation["toolExecutionNotifications"]
        ]
        return image in named
    if fmt == "junit":
        root = ET.fromstring(out)
        errors = [
            s
            for s in root.iter("testsuite")
            if s.get("name") == image and s.find("testcase/error") is not None
        ]
        return len(errors) == 1 and int(root.get("errors") or 0) >= 1
    lines = out.splitlines()
    return image in lines and lines[lines.index(image) + 1].startswith("  UNREADABLE: ")


@pytest.mark.parametrize("to_file", [False, True])
@pytest.mark.parametrize("fmt", ["json", "sarif", "junit", "text"])
def test_an_unreadable_image_is_a_failure_in_every_format(
    tmp_path: Path, images: dict[str, str], fmt: str, to_file: bool
) -> None:
    for batch in ([images["no-such-path"]], [images["good"], images["missing-blob"]]):
        report = tmp_path / f"report.{fmt}"
        args = [*batch, "--format", fmt, *(["--output", str(report)] if to_file else [])]
        code, out, err = check(*args)
        assert code == 3 and "Traceback" not in err
        assert unreadable_in(fmt, report.read_text() if to_file else out, batch[-1])


def test_one_missing_image_is_not_an_empty_pass(tmp_path: Path) -> None:
    missing = str(tmp_path / "nonexistent.tar")
    code, out, _ = check(missing, "--format", "json")
    doc = json.loads(out)
    assert code == 3 and doc["bootable"] is False and doc["reports"] == []
    assert doc["unreadable"] == [
        {
            "image": missing,
            "platform": None,
            "error": f"{missing}: no such file or directory"
            " (for a registry image, write docker://" + missing + ")",
        }
    ]


# --- batches isolate: one image's failure, of any kind, is that image's alone ------------------


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("hostile")
    built = generic().file("/etc/motd", "y").build()
    write_oci_layout(root / "corrupt", {"latest": built})
    blob = root / "corrupt" / "blobs" / "sha256" / built.layers[0].digest.split(":")[1]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: only the digest can tell
    blob.write_bytes(bytes(data))
    write_oci_layout(root / "hostile", {"latest": generic().build()})
    return {"corrupt": f"oci:{root / 'corrupt'}:latest", "hostile": f"oci:{root / 'hostile'}:latest"}


def test_every_error_line_names_its_image(images: dict[str, str], hostile: dict[str, str]) -> None:
    batch = [images["good"], hostile["corrupt"], images["missing-blob"], images["no-such-path"]]
    code, _, err = check(*batch, "--jobs", "2", "--format", "json")
    assert code == 3
    lines = err.splitlines()
    assert len(lines) == 3 and any("digest mismatch" in line for line in lines)
    assert sorted(line.split()[2].rstrip(":") for line in lines) == sorted(batch[1:])


@pytest.mark.parametrize(
    "failure", [RecursionError("maximum recursion depth exceeded"), MemoryError(), KeyError("bug")]
)
@pytest.mark.parametrize("jobs", ["1", "3"])
def test_an_unexpected_failure_is_that_images_internal_error(
    monkeypatch: pytest.MonkeyPatch,
    images: dict[str, str],
    hostile: dict[str, str],
    failure: Exception,
    jobs: str,
) -> None:
    """A bug (or a parser's RecursionError, MemoryError) while one image is judged: the others
    are still judged, and that image is unreadable (exit 3), never a pass and never a traceback."""
    real = pipeline.load_tree

    def load_tree(image: ResolvedImage, *args: Any, **kwargs: Any) -> pipeline.ImageTree:
        if "hostile" in str(image.ref):
            raise failure
        return real(image, *args, **kwargs)

    monkeypatch.setattr(pipeline, "load_tree", load_tree)
    batch = [images["good"], hostile["hostile"], images["broken"]]
    code, out, err = check(*batch, "--jobs", jobs, "--format", "json")
    doc = json.loads(out)
    assert code == 3 and doc["bootable"] is False and "Traceback" not in err
    assert [r["image"] for r in doc["reports"]] == [images["good"], images["broken"]]
    (unreadable,) = doc["unreadable"]
    assert unreadable["image"] == hostile["hostile"]
    assert unreadable["error"].startswith(f"internal error ({type(failure).__name__}")
    assert err == f"ociboot: error: {hostile['hostile']}: {unreadable['error']}\n"


def test_each_report_is_printed_as_its_image_finishes(tmp_path: Path, images: dict[str, str]) -> None:
    """An archive that is a FIFO blocks its reader until someone writes: the good image's report
    must be out while the other image is still stuck, not held back until every image is done."""
    fifo = tmp_path / "stuck.tar"
    os.mkfifo(fifo)
    argv = [sys.executable, "-m", "ociboot", "check", "-q", "--no-cache", "--jobs", "2"]
    proc = subprocess.Popen(
        [*argv, f"oci-archive:{fifo}", images["good"]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert proc.stdout is not None
        # A guard against hanging for ever on a regression, not a time limit on ociboot.
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        first = proc.stdout.readline().decode() if ready else ""
        assert first.startswith(images["good"] + "  sha256:")
    finally:
        with open(fifo, "wb"):  # releases the stuck reader: it sees an empty archive
            pass
        out, err = proc.communicate()
    assert proc.returncode == 3 and out.decode().endswith("\n1 bootable, 0 not bootable, 1 unreadable\n")
    assert f"ociboot: error: oci-archive:{fifo}" in err.decode() and b"Traceback" not in err
