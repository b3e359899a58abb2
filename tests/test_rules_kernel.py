"""KRN-001..007 through the real pipeline: a bootable template passes, one change fails it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ociboot.boot.rules import rules_for
from ociboot.report import Outcome, Severity
from tests.support.bootimages import (
    KVER,
    TEMPLATES,
    BootImage,
    boot,
    bootable,
    failed,
    findings,
    kernel,
    passed,
)
from tests.support.imagebuilder import LayerBuilder

KRN = [f"KRN-00{i}" for i in range(1, 8)]
OLD = "5.10.0-30-amd64"
NEW = "6.5.0-1-amd64"


def add_kernel(img: BootImage, kver: str) -> None:
    img.file(f"/boot/vmlinuz-{kver}", kernel(kver))
    img.file(f"/usr/lib/modules/{kver}/modules.dep", "")


@pytest.mark.parametrize("profile", sorted(TEMPLATES))
def test_templates_pass_every_kernel_rule(tmp_path: Path, profile: str) -> None:
    report = bootable(profile).check(tmp_path, profile=profile)
    ids = {r.id for r in rules_for(profile)} & set(KRN)
    assert ids, profile
    for rule_id in sorted(ids):
        assert passed(report, rule_id), (rule_id, findings(report, rule_id))


# --- KRN-001 -----------------------------------------------------------------------------------


def test_krn001_no_kernel(tmp_path: Path) -> None:
    img = bootable("generic").drop(f"/boot/vmlinuz-{KVER}").drop("/boot/vmlinuz")
    img.file(f"/boot/System.map-{KVER}", boot.system_map())
    (f,) = failed(img.check(tmp_path), "KRN-001")
    assert f.severity is Severity.ERROR and f.path == "/boot"
    assert any("/boot/vmlinuz*" in e for e in f.evidence) and f.hint


def test_krn001_names_rejected_candidates(tmp_path: Path) -> None:
    img = bootable("generic").drop(f"/boot/vmlinuz-{KVER}").drop("/boot/vmlinuz")
    img.file(f"/boot/vmlinux-{KVER}", boot.elf_vmlinux())
    (f,) = failed(img.check(tmp_path), "KRN-001")
    assert any(f"/boot/vmlinux-{KVER}: not a kernel (ELF" in e for e in f.evidence), f.evidence


def test_krn001_whiteout_removes_the_kernel(tmp_path: Path) -> None:
    img = bootable("generic").remove(f"/boot/vmlinuz-{KVER}")
    assert failed(img.check(tmp_path), "KRN-001")


# --- KRN-002 -----------------------------------------------------------------------------------


def test_krn002_vmlinux_picked(tmp_path: Path) -> None:
    img = bootable("generic").file(f"/boot/vmlinux-{KVER}", boot.elf_vmlinux())
    img.link("/boot/vmlinuz", f"vmlinux-{KVER}")
    (f,) = failed(img.check(tmp_path), "KRN-002")
    assert f.path == "/boot/vmlinuz" and "ELF" in f.message and "not a boot image" in f.message
    assert f"/boot/vmlinuz -> vmlinux-{KVER}" in f.evidence[0]


def test_krn002_truncated_kernel(tmp_path: Path) -> None:
    img = bootable("generic").file(f"/boot/vmlinuz-{KVER}", kernel()[:3000])
    (f,) = failed(img.check(tmp_path), "KRN-002")
    assert "damaged bzImage" in f.message and "truncated" in f.message


def test_krn002_custom_kernel_path(tmp_path: Path) -> None:
    img = bootable("generic").file("/opt/os/kernel.bin", kernel())
    report = img.check(tmp_path, kernel="/opt/os/kernel.bin")
    assert passed(report, "KRN-002")
    (f,) = findings(report, "KRN-002")
    assert f.path == "/opt/os/kernel.bin" and "(--kernel)" in f.message


def test_krn002_custom_kernel_path_missing(tmp_path: Path) -> None:
    report = bootable("generic").check(tmp_path, kernel="/opt/os/kernel.bin")
    (f,) = failed(report, "KRN-002")
    assert f.message.startswith("kernel /opt/os/kernel.bin (--kernel) does not resolve: no such file")


def test_krn002_custom_kernel_path_is_system_map(tmp_path: Path) -> None:
    img = bootable("generic").file(f"/boot/System.map-{KVER}", boot.system_map())
    (f,) = failed(img.check(tmp_path, kernel=f"/boot/System.map-{KVER}"), "KRN-002")
    assert "text file" in f.message


def test_krn002_uki(tmp_path: Path) -> None:
    img = bootable("generic").drop("/boot/vmlinuz").drop(f"/boot/vmlinuz-{KVER}")
    img.file("/boot/EFI/Linux/debian.efi", boot.uki())
    report = img.check(tmp_path)
    assert passed(report, "KRN-002")
    assert "uki kernel" in findings(report, "KRN-002")[0].message


# --- KRN-003 -----------------------------------------------------------------------------------


def test_krn003_x86_kernel_in_arm64_image(tmp_path: Path) -> None:
    img = bootable("generic")
    img.arch = "arm64"
    (f,) = failed(img.check(tmp_path), "KRN-003")
    assert f.severity is Severity.ERROR
    assert "amd64 kernel but the image is arm64" in f.message
    assert "kernel architecture: amd64 (bzImage)" in f.evidence


def test_krn003_arm64_kernel_in_arm64_image(tmp_path: Path) -> None:
    img = bootable("generic")
    img.arch = "arm64"
    img.file(f"/boot/vmlinuz-{KVER}", boot.arm64_image())
    report = img.check(tmp_path)
    assert passed(report, "KRN-003")
    assert "built for arm64" in findings(report, "KRN-003")[0].message


# --- KRN-004 / KRN-005 -------------------------------------------------------------------------


def test_krn004_modules_dir_missing(tmp_path: Path) -> None:
    img = bootable("cos").drop(f"/usr/lib/modules/{KVER}")
    (f,) = failed(img.check(tmp_path), "KRN-004")
    assert f.severity is Severity.ERROR and f.path == f"/usr/lib/modules/{KVER}"
    report = bootable("generic").drop(f"/usr/lib/modules/{KVER}").check(tmp_path)
    assert failed(report, "KRN-004")[0].severity is Severity.WARNING


def test_krn004_elemental_e3_substring_pitfall(tmp_path: Path) -> None:
    # E3a: '6.1.0' sorts first and is a substring of vmlinuz-6.1.0-28-amd64.
    img = bootable("cos").dir("/usr/lib/modules/6.1.0")
    (f,) = failed(img.check(tmp_path), "KRN-004")
    assert "Elemental v2 (E3) picks 6.1.0" in f.message
    generic = bootable("generic").dir("/usr/lib/modules/6.1.0")
    assert passed(generic.check(tmp_path), "KRN-004")


def test_krn004_plain_vmlinuz_has_no_version_for_e3(tmp_path: Path) -> None:
    img = bootable("cos").drop(f"/boot/vmlinuz-{KVER}").file("/boot/vmlinuz", kernel())
    (f,) = failed(img.check(tmp_path), "KRN-004")
    assert "finds none" in f.message


def test_krn005_modules_dep_missing(tmp_path: Path) -> None:
    img = bootable("generic").drop(f"/usr/lib/modules/{KVER}/modules.dep").dir(f"/usr/lib/modules/{KVER}")
    (f,) = failed(img.check(tmp_path), "KRN-005")
    assert f.path == f"/usr/lib/modules/{KVER}/modules.dep" and f.hint == f"run depmod -a {KVER}"


# --- KRN-006 -----------------------------------------------------------------------------------


def test_krn006_tools_disagree(tmp_path: Path) -> None:
    img = bootable("generic")
    add_kernel(img, NEW)  # Kairos K13 takes the highest semver modules dir, Elemental /boot/vmlinuz
    (f,) = failed(img.check(tmp_path), "KRN-006")
    assert f.severity is Severity.WARNING
    assert f"Elemental v2: /boot/vmlinuz (= /boot/vmlinuz-{KVER})" in f.evidence
    assert f"Kairos (K13, highest semver /lib/modules dir): /lib/modules/{NEW}" in f.evidence


def test_krn006_tools_agree(tmp_path: Path) -> None:
    img = bootable("generic")
    add_kernel(img, OLD)
    report = img.check(tmp_path)
    assert passed(report, "KRN-006")
    assert f"every tool picks {KVER}" in findings(report, "KRN-006")[0].message


def test_krn006_v1_passes_over_absolute_link(tmp_path: Path) -> None:
    # Elemental v1 skips /boot/vmlinuz -> /boot/... (host lookup) and takes the first sorted file.
    img = bootable("cos").link("/boot/vmlinuz", f"/boot/vmlinuz-{KVER}")
    add_kernel(img, OLD)
    (f,) = failed(img.check(tmp_path), "KRN-006")
    assert any(
        e.startswith(f"Elemental v1 / kairos-agent / AuroraBoot: /boot/vmlinuz-{OLD}") for e in f.evidence
    )


def test_krn006_bootc_two_kernels(tmp_path: Path) -> None:
    img = bootable("bootc")
    img.file(f"/usr/lib/modules/{NEW}/vmlinuz", kernel(NEW))
    (f,) = failed(img.check(tmp_path), "KRN-006")
    assert f.severity is Severity.ERROR and "multiple subdirectories in usr/lib/modules" in f.message


# --- KRN-007 -----------------------------------------------------------------------------------


def test_krn007_leftover_modules_dir(tmp_path: Path) -> None:
    img = bootable("bootc").file(f"/usr/lib/modules/{OLD}/modules.dep", "")
    (f,) = failed(img.check(tmp_path), "KRN-007")
    assert f.severity is Severity.WARNING and f.path == f"/usr/lib/modules/{OLD}"
    report = bootable("generic").file(f"/usr/lib/modules/{OLD}/modules.dep", "").check(tmp_path)
    assert failed(report, "KRN-007")[0].severity is Severity.INFO


def test_rules_could_not_run_are_not_passes(tmp_path: Path) -> None:
    # A kernel whose header hides its version and whose name has none: KRN-004 cannot decide.
    img = bootable("generic").drop(f"/boot/vmlinuz-{KVER}").file("/boot/vmlinuz", boot.arm_zimage())
    img.arch = "arm"
    report = img.check(tmp_path)
    (f,) = findings(report, "KRN-004")
    assert f.outcome is Outcome.ERROR and "release not readable" in f.message


# --- hardlinks ---------------------------------------------------------------------------------


@dataclass
class _WithUpper(BootImage):
    upper: LayerBuilder = field(default_factory=LayerBuilder)

    def upper_layers(self) -> list[tuple[LayerBuilder, str]]:
        return [(self.upper, "gzip")]


def test_kernel_hardlinked_before_its_target_in_one_layer_is_read(tmp_path: Path) -> None:
    # issue 7: the link was an empty file until the end of the layer, and KRN-001 failed.
    base = bootable("generic").drop(f"/boot/vmlinuz-{KVER}")
    upper = (
        LayerBuilder()
        .hardlink(f"boot/vmlinuz-{KVER}", f"usr/lib/modules/{KVER}/vmlinuz")
        .file(f"usr/lib/modules/{KVER}/vmlinuz", kernel(KVER))
    )
    img = _WithUpper(base.arch, base.labels, base.paths, base.removed, upper)
    report = img.check(tmp_path)
    for rule_id in ("KRN-001", "KRN-002"):
        assert passed(report, rule_id), (rule_id, findings(report, rule_id))
