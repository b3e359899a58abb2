"""INI-001..004 through the real pipeline: a bootable template passes, one change fails it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ociboot.boot.rules import rules_for
from ociboot.report import Outcome, Severity
from tests.support.bootimages import KVER, TEMPLATES, boot, bootable, failed, findings, initrd, passed

INI = ["INI-001", "INI-002", "INI-003", "INI-004"]
OLD = "5.10.0-30-amd64"


@pytest.mark.parametrize("profile", sorted(TEMPLATES))
def test_templates_pass_every_initrd_rule(tmp_path: Path, profile: str) -> None:
    report = bootable(profile).check(tmp_path, profile=profile)
    ids = {r.id for r in rules_for(profile)} & set(INI)
    assert ids == set(INI)
    for rule_id in sorted(ids):
        assert passed(report, rule_id), (rule_id, findings(report, rule_id))


# --- INI-001 -----------------------------------------------------------------------------------


def test_ini001_no_initrd(tmp_path: Path) -> None:
    img = bootable("generic").drop("/boot/initrd").drop(f"/boot/initrd-{KVER}")
    (f,) = failed(img.check(tmp_path), "INI-001")
    assert f.severity is Severity.ERROR and "no initramfs found" in f.message
    assert "/boot/initramfs*" in f.evidence[0] and "dracut" in (f.hint or "")


def test_ini001_bootc_initramfs_beside_the_kernel(tmp_path: Path) -> None:
    img = bootable("bootc").remove("/usr/lib/modules/6.8.5-301.fc40.x86_64/initramfs.img")
    (f,) = failed(img.check(tmp_path), "INI-001")
    assert f.evidence == ("looked in: /usr/lib/modules/6.8.5-301.fc40.x86_64/initramfs.img",)


def test_ini001_uki_needs_no_initrd(tmp_path: Path) -> None:
    img = bootable("kairos")
    for path in ("/boot/vmlinuz", f"/boot/vmlinuz-{KVER}", "/boot/initrd", f"/boot/initrd-{KVER}"):
        img.drop(path)
    img.file("/boot/EFI/Linux/kairos.efi", boot.uki())
    report = img.check(tmp_path)
    assert passed(report, "INI-001")
    assert "is a UKI" in findings(report, "INI-001")[0].message
    for rule_id in ("INI-002", "INI-003"):
        assert findings(report, rule_id)[0].outcome is Outcome.SKIP


def test_ini001_custom_initrd_path(tmp_path: Path) -> None:
    img = bootable("cos").file("/opt/os/initrd.img", initrd())
    report = img.check(tmp_path, initrd="/opt/os/initrd.img")
    for rule_id in ("INI-001", "INI-002", "INI-003"):
        assert passed(report, rule_id), findings(report, rule_id)
        assert findings(report, rule_id)[0].path == "/opt/os/initrd.img"


def test_ini001_custom_initrd_path_missing(tmp_path: Path) -> None:
    (f,) = failed(bootable("cos").check(tmp_path, initrd="/opt/os/initrd.img"), "INI-001")
    assert f.message.startswith("initrd /opt/os/initrd.img (--initrd) does not resolve: no such file")


# --- INI-002 -----------------------------------------------------------------------------------


def test_ini002_truncated_initrd(tmp_path: Path) -> None:
    data = initrd()
    img = bootable("generic").file(f"/boot/initrd-{KVER}", data[: len(data) // 2])
    (f,) = failed(img.check(tmp_path), "INI-002")
    assert f.severity is Severity.ERROR and f.path == "/boot/initrd"
    assert "not a valid initramfs" in f.message and any(e.startswith("segments: xz@0") for e in f.evidence)


def test_ini002_not_a_cpio(tmp_path: Path) -> None:
    img = bootable("generic").file(f"/boot/initrd-{KVER}", b"#!/bin/sh\necho not an initrd\n" * 20)
    (f,) = failed(img.check(tmp_path), "INI-002")
    assert "not a valid initramfs" in f.message


def test_ini002_early_microcode_then_zstd(tmp_path: Path) -> None:
    img = bootable("generic").file(
        f"/boot/initrd-{KVER}", boot.early_microcode() + initrd(compression="zstd")
    )
    report = img.check(tmp_path)
    assert passed(report, "INI-002")
    assert "(zstd)" in findings(report, "INI-002")[0].message


# --- INI-003 -----------------------------------------------------------------------------------


def test_ini003_stale_initrd_for_another_kernel(tmp_path: Path) -> None:
    img = bootable("generic").file(f"/boot/initrd-{OLD}", initrd(OLD)).link("/boot/initrd", f"initrd-{OLD}")
    (f,) = failed(img.check(tmp_path), "INI-003")
    assert f.severity is Severity.WARNING
    assert f"not built for kernel {KVER} (modules for: {OLD})" in f.message
    assert f"built for {KVER}: /boot/initrd-{KVER}" in f.evidence
    assert f"dracut -f /boot/initrd-{KVER} {KVER}" in (f.hint or "")


@pytest.mark.parametrize("profile", ["cos", "kairos"])
def test_ini003_is_an_error_for_cos_and_kairos(tmp_path: Path, profile: str) -> None:
    img = bootable(profile).file(f"/boot/initrd-{OLD}", initrd(OLD)).link("/boot/initrd", f"initrd-{OLD}")
    (f,) = failed(img.check(tmp_path), "INI-003")
    assert f.severity is Severity.ERROR


def test_ini003_initrd_without_modules(tmp_path: Path) -> None:
    img = bootable("generic").file(f"/boot/initrd-{KVER}", initrd(None))
    (f,) = failed(img.check(tmp_path), "INI-003")
    assert "(modules for: none)" in f.message


# --- INI-004 -----------------------------------------------------------------------------------


def test_ini004_tools_pick_different_initrds(tmp_path: Path) -> None:
    # Elemental v1 sorts 'initramfs-...' before 'initrd' and loads the stale one (elemental#1450).
    img = bootable("generic").file(f"/boot/initramfs-{OLD}", initrd(OLD))
    (f,) = failed(img.check(tmp_path), "INI-004")
    assert f.severity is Severity.WARNING
    assert any(
        e.startswith(f"Elemental v1 / kairos-agent / AuroraBoot: /boot/initramfs-{OLD}") for e in f.evidence
    )
    assert f"loads /boot/initramfs-{OLD}, built for another kernel than {KVER}" in f.message


def test_ini004_tools_agree(tmp_path: Path) -> None:
    img = bootable("generic").file(f"/boot/initrd.img-{KVER}", initrd())
    report = img.check(tmp_path)
    assert passed(report, "INI-004")
    assert f"every tool loads /boot/initrd-{KVER}" in findings(report, "INI-004")[0].message


def test_ini004_elemental_v2_pattern_order(tmp_path: Path) -> None:
    # E4 tries /boot/elemental.initrd* before /boot/initrd*: a stale one there wins.
    img = bootable("cos").file(f"/boot/elemental.initrd-{OLD}", initrd(OLD))
    (f,) = failed(img.check(tmp_path), "INI-004")
    assert f"Elemental v2: /boot/elemental.initrd-{OLD} [modules for: {OLD}]" in f.evidence


def test_ini004_generic_needs_no_boot_initrd_link(tmp_path: Path) -> None:
    img = bootable("generic").drop("/boot/initrd").file(f"/boot/initrd.img-{KVER}", initrd())
    report = img.check(tmp_path)
    assert passed(report, "INI-004"), findings(report, "INI-004")
    (f,) = failed(
        bootable("cos").drop("/boot/initrd").file(f"/boot/initrd-{KVER}", initrd()).check(tmp_path), "INI-004"
    )
    assert "GRUB bootargs / Kairos K4: nothing (/boot/initrd: no such file or directory)" in f.evidence


def test_ini002_custom_initrd_path_is_read_as_an_initrd_whatever_its_name(tmp_path: Path) -> None:
    # --initrd asks for the initrd reading even where the name would pick the kernel one (cOS
    # docs allow custom paths); a link to it is read the same way, via a second pass.
    img = (
        bootable("generic")
        .file("/opt/os/boot.cpio.xz", initrd())
        .link("/boot/custom", "/opt/os/boot.cpio.xz")
    )
    for path in ("/opt/os/boot.cpio.xz", "/boot/custom"):
        report = img.check(tmp_path, initrd=path)
        assert passed(report, "INI-002") and passed(report, "INI-003"), path
    garbage = bootable("generic").file("/opt/os/boot.cpio.xz", b"not an initrd at all" * 10)
    assert failed(garbage.check(tmp_path, initrd="/opt/os/boot.cpio.xz"), "INI-002")
