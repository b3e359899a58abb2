"""`ociboot check` over many images: --from FILE, --jobs N, one report each, a summary, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bootimages import generic
from imagebuilder import write_oci_layout
from typer.testing import CliRunner

from ociboot.cli import app

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
    assert headers == [images["good"], images["broken"]]  # in input order
    assert "BOOTABLE: " in out and "NOT BOOTABLE: " in out
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
    assert one[1] == two[1]
    assert sorted(one[2].splitlines()) == sorted(two[2].splitlines())  # errors may interleave
    if fmt == "json":
        reports = json.loads(one[1])["reports"]
        assert [r["image"] for r in reports] == [images[n] for n in order if n in ("good", "broken")]
    else:
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
