"""Where the check's report goes: a report that cannot be delivered is never a verdict."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.bootimages import generic
from tests.support.imagebuilder import write_oci_archive, write_oci_layout
from tests.support.process import ociboot_check as ociboot


@pytest.fixture(scope="module")
def not_bootable(tmp_path_factory: pytest.TempPathFactory) -> str:
    image = generic().drop("/boot")
    layout = write_oci_layout(tmp_path_factory.mktemp("out") / "layout", {"latest": image.build()})
    return f"oci:{layout}:latest"


def assert_one_line_exit_2(done: subprocess.CompletedProcess[str], where: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and where in lines[0] and "could not be written" in lines[0]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("fmt", ["text", "json", "junit"])
def test_a_full_output_file_is_exit_2_not_a_traceback(not_bootable: str, fmt: str) -> None:
    done = ociboot(not_bootable, not_bootable, "--format", fmt, "--output", "/dev/full")
    assert_one_line_exit_2(done, "/dev/full")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_stdout_is_exit_2_not_a_traceback(not_bootable: str) -> None:
    with open("/dev/full", "w") as full:
        done = ociboot(not_bootable, "--format", "sarif", stdout=full.fileno())
    assert_one_line_exit_2(done, "standard output")


def test_a_closed_stdout_is_never_exit_0(not_bootable: str) -> None:
    """`ociboot check IMG | head -c0` under pipefail: the pipe closed, the image is not
    bootable; exit 0 would pass the gate."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = ociboot(not_bootable, "--format", "json", stdout=write)
    finally:
        os.close(write)
    assert_one_line_exit_2(done, "standard output")


@pytest.mark.parametrize("inside", ["", "index.json"])
def test_an_output_that_is_an_input_image_is_refused_before_it_is_truncated(
    tmp_path: Path, inside: str
) -> None:
    """`check image.tar -o image.tar` (a slip of the shell) would empty the image it checks."""
    archive = write_oci_archive(tmp_path / "image.tar", {"latest": generic().build()})
    layout = write_oci_layout(tmp_path / "layout", {"latest": generic().build()})
    image, target = (
        (f"oci-archive:{archive}:latest", archive) if not inside else (f"{layout}", layout / inside)
    )
    before = target.read_bytes()
    done = ociboot(image, "--output", str(target))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--output" in done.stderr and str(target) in done.stderr
    assert target.read_bytes() == before
