"""The analysis budget of an image (ociboot.budget): every analyzer of one image spends from it,
the second reads of `check` too; when it runs out the rules that needed the cut files say NOT RUN,
naming the budget and how to raise it, and nothing over budget is cached.

The hostile files here are small versions of the real attacks (an initrd inflating to its cap, an
lz4-wrapped Image scanned for a banner that is not there, many tiny cpio members), against a
budget sized to them; the work counted is deterministic, so the tests hit the bound exactly."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ociboot.boot import scan
from ociboot.boot.initrd import inspect_initrd
from ociboot.boot.kernel import analyze_kernel
from ociboot.budget import MEMBER_COST, AnalysisBudget
from ociboot.cache import LayerCache
from ociboot.cli import app
from ociboot.compression import DECODE_COST, Compression
from ociboot.errors import AnalysisBudgetExceeded
from ociboot.layer import AnalyzeSpec
from ociboot.report import Outcome
from tests.support.bootimages import KVER, BootImage, boot, bootable, findings, passed
from tests.support.imagebuilder import write_oci_layout

MIB = 1 << 20
S_IFREG = boot.S_IFREG


def bomb(size: int) -> bytes:
    """A gzip initrd whose one member is `size` zero bytes: a few KB inflating to `size`."""
    return gzip.compress(boot.cpio([("big", S_IFREG | 0o644, bytes(size))]), 9, mtime=0)


@dataclass(frozen=True)
class _Member:
    path: str
    size: int


def cost(img: BootImage) -> int:
    """What analyzing the files of `img` charges, computed with the analyzers check uses."""
    spec, budget = AnalyzeSpec(scan.analyze_globs()), AnalysisBudget(1 << 40)
    for path, (kind, *rest) in sorted(img.paths.items()):
        analyzer = spec.analyzer(path.lstrip("/")) if kind == "file" else None
        if analyzer is not None:
            analyzer(_Member(path.lstrip("/"), len(rest[0])), io.BytesIO(rest[0]), budget)  # type: ignore[arg-type]
    return budget.spent


TEMPLATE = cost(bootable("generic"))


def not_run(report: object, rule: str) -> list[str]:
    return [f.message for f in findings(report, rule) if f.outcome is Outcome.ERROR]  # type: ignore[arg-type]


# --- the unit: what is charged ---------------------------------------------------------------------


def test_an_initrd_is_charged_for_what_it_inflates_to() -> None:
    blob = bomb(8 * MIB)
    budget = AnalysisBudget(1 << 40)
    info = inspect_initrd(blob, budget=budget)
    assert info.ok
    per_in, per_out = DECODE_COST[Compression.GZIP]
    assert budget.spent >= 8 * MIB * per_out + len(blob) * per_in
    with pytest.raises(AnalysisBudgetExceeded, match="analysis budget of 4 MiB is used up"):
        inspect_initrd(blob, budget=AnalysisBudget(4 * MIB))


def test_tiny_members_are_charged_per_member() -> None:
    # A member of no bytes still costs a header parse and a record in memory.
    members = [(f"f{i}", S_IFREG | 0o644, b"") for i in range(2000)]
    budget = AnalysisBudget(1 << 40)
    assert inspect_initrd(boot.cpio(members), budget=budget).member_count == 2000
    assert budget.spent >= 2000 * MEMBER_COST


def test_zero_padding_is_charged() -> None:
    # Zeros between archives are skipped, not parsed, but a bomb of zeros is still work.
    blob = gzip.compress(boot.cpio([("f", S_IFREG | 0o644, b"x")]) + bytes(16 * MIB), 9, mtime=0)
    budget = AnalysisBudget(1 << 40)
    assert inspect_initrd(blob, budget=budget).ok
    assert budget.spent >= 16 * MIB


def test_a_banner_scan_is_charged() -> None:
    # An arm64 Image without a `Linux version` banner is scanned to its end.
    image = bytearray(boot.arm64_image())
    image[0x900:0xA00] = bytes(0x100)  # no banner
    image += bytes(32 * MIB)
    budget = AnalysisBudget(1 << 40)
    info = analyze_kernel(io.BytesIO(bytes(image)), len(image), budget)
    assert info.is_kernel and info.version is None
    assert budget.spent >= 32 * MIB
    with pytest.raises(AnalysisBudgetExceeded):
        analyze_kernel(io.BytesIO(bytes(image)), len(image), AnalysisBudget(8 * MIB))


def test_once_used_up_nothing_more_is_started() -> None:
    budget = AnalysisBudget(2 * MIB)
    with pytest.raises(AnalysisBudgetExceeded):
        budget.spend(3 * MIB)
    with pytest.raises(AnalysisBudgetExceeded):
        budget.spend(1)  # would fit, but the analyses of this image are already incomplete
    assert budget.exhausted


# --- through check -----------------------------------------------------------------------------


def test_initrds_over_the_budget_say_not_run(tmp_path: Path) -> None:
    img = bootable("generic")
    for i in range(4):  # 4 x 24 MiB of inflating, after /boot in tar order: the real files fit
        img.file(f"/usr/lib/modules/9.9.{i}/initramfs.img", bomb(24 * MIB))
    report = img.check(tmp_path, analysis_budget=TEMPLATE + 64 * MIB)
    assert not report.bootable()
    messages = not_run(report, "INI-004")
    assert messages and all("analysis budget of" in m and "is used up" in m for m in messages)
    assert all("--analysis-budget" in m for m in messages)
    assert passed(report, "INI-002")  # the initrd the kernel boots was read whole
    # With room enough, the same image is read to the end.
    assert not not_run(img.check(tmp_path, analysis_budget=1 << 30), "INI-004")


def test_the_chosen_initrd_over_the_budget_is_not_run(tmp_path: Path) -> None:
    img = bootable("generic").file(f"/boot/initrd-{KVER}", bomb(48 * MIB))  # first in tar order
    report = img.check(tmp_path, analysis_budget=32 * MIB)
    (message,) = not_run(report, "INI-002")
    assert "could not be read" in message and "analysis budget of" in message
    assert not report.bootable()


def test_a_kernel_over_the_budget_is_not_run_never_a_pass(tmp_path: Path) -> None:
    # An lz4-wrapped arm64 Image with no banner: scanned to its end for a version.
    image = bytearray(boot.arm64_image())
    image[0x900:0xA00] = bytes(0x100)
    lz4 = subprocess.run(["lz4", "-l", "-c"], input=bytes(image) + bytes(128 * MIB), capture_output=True)
    img = bootable("generic")
    img.file("/boot/vmlinuz-9.9.9-hostile", lz4.stdout)  # a candidate, after the real kernel in tar order
    report = img.check(tmp_path, analysis_budget=TEMPLATE + 64 * MIB)
    (message,) = not_run(report, "KRN-001")
    assert message.startswith("/boot/vmlinuz-9.9.9-hostile could not be read: the image's analysis budget")
    assert not report.bootable()


def test_a_package_database_over_the_budget_blocks(tmp_path: Path) -> None:
    # The dpkg status is the last file analyzed (var/ after boot/ in tar order): one unit short
    # of the template's cost cuts only it.  PKG-001 is only informational under generic, but a
    # database this run did not read is not a damaged one: it blocks like every file not read.
    report = bootable("generic").check(tmp_path, analysis_budget=TEMPLATE - 1)
    (blocking,) = report.failures()
    assert blocking.rule == "PKG-001" and blocking.outcome is Outcome.ERROR
    assert blocking.message.startswith("package database /var/lib/dpkg/status could not be read: the image's")
    assert bootable("generic").check(tmp_path, analysis_budget=TEMPLATE).bootable()


def test_the_second_read_spends_from_the_same_budget(tmp_path: Path) -> None:
    # --kernel names a path no analyzer glob matches: check reads its layer again (fetch), and
    # that read finds the budget already used up by the first pass.
    img = bootable("generic").file("/opt/kernel/linux", boot.bzimage())
    for i in range(2):
        img.file(f"/boot/initrd-{KVER}-x{i}", bomb(24 * MIB))
    report = img.check(tmp_path, kernel="/opt/kernel/linux", analysis_budget=TEMPLATE + 40 * MIB)
    (message,) = not_run(report, "KRN-002")
    assert "/opt/kernel/linux" in message and "analysis budget of" in message
    report = img.check(tmp_path, kernel="/opt/kernel/linux", analysis_budget=1 << 30)
    assert passed(report, "KRN-002")


def test_an_analysis_over_budget_is_not_cached(tmp_path: Path) -> None:
    from ociboot import pipeline
    from ociboot.boot.context import Policy
    from ociboot.boot.initrd import InitrdInfo
    from ociboot.boot.kernel import KernelInfo
    from ociboot.boot.scan import PackageDbResult
    from ociboot.ref import ImageRef, Transport

    img = bootable("generic").file(f"/boot/initrd-{KVER}", bomb(48 * MIB))
    layout = write_oci_layout(tmp_path / "layout", {"latest": img.build()})
    # The classes the CLI registers (cli._open_cache): an over-budget result is none of them.
    cache = LayerCache(tmp_path / "cache", analysis_types=(KernelInfo, InitrdInfo, PackageDbResult))
    options = pipeline.Options(cache=cache)

    def check(budget: int) -> object:
        with pipeline.opened(str(ImageRef(Transport.OCI, path=str(layout), name="latest")), options) as src:
            return pipeline.check_image(
                pipeline.open_image(src, options), Policy(analysis_budget=budget), options
            )

    assert not_run(check(32 * MIB), "INI-002")
    assert passed(check(1 << 30), "INI-002")  # read again, not taken from the cache
    assert passed(check(32 * MIB), "INI-002")  # the complete result was cached


# --- CLI and policy ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def heavy_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    img = bootable("generic").file(f"/boot/initrd-{KVER}", bomb(48 * MIB))
    return write_oci_layout(tmp_path_factory.mktemp("budget") / "layout", {"latest": img.build()})


def _check(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["check", "-q", *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_analysis_budget_option(heavy_layout: Path) -> None:
    ref = f"oci:{heavy_layout}:latest"
    code, out, _ = _check(ref, "--analysis-budget", "32M", "--format", "json")
    assert code == 1
    (report,) = json.loads(out)["reports"]
    ini = [f for f in report["findings"] if f["rule"] == "INI-002"]
    assert ini[0]["outcome"] == "error" and "analysis budget of" in ini[0]["message"]
    assert _check(ref, "--format", "json")[0] == 0  # the default has room for it


@pytest.mark.parametrize("value", ["lots", "0", "-5M"])
def test_cli_analysis_budget_must_be_a_size(heavy_layout: Path, value: str) -> None:
    code, _, err = _check(f"oci:{heavy_layout}:latest", "--analysis-budget", value)
    assert code == 2 and "--analysis-budget" in err


def test_policy_analysis_budget(heavy_layout: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('analysis-budget = "32M"\n')
    code, out, _ = _check(f"oci:{heavy_layout}:latest", "--policy", str(policy), "--format", "json")
    assert code == 1 and "analysis budget of 32 MiB" in out
    # The option wins over the file.
    code, _, _ = _check(
        f"oci:{heavy_layout}:latest", "--policy", str(policy), "--analysis-budget", "1G", "--format", "json"
    )
    assert code == 0
    for bad in ("[1]", '"lots"', "0", "true"):
        policy.write_text(f"analysis-budget = {bad}\n")
        code, _, err = _check(f"oci:{heavy_layout}:latest", "--policy", str(policy))
        assert code == 2 and "analysis-budget must be a positive size" in err, (bad, err)
