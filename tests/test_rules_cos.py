"""The cos profile rules (COS-001..016) through the real pipeline.

The cos template (an Elemental v2 derivative) and a legacy luet-era cOS variant built here pass
every rule; each test then changes one thing and checks the one rule that must notice, with the
message, path and severity a user would see.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ociboot.boot.emulate.grub import grub_path
from ociboot.boot.rules import cos as rules
from ociboot.boot.rules.cos import LEGACY_UNITS, parse_layout
from ociboot.report import Outcome, Report, Severity
from tests.support.boltwriter import BoltWriter, storm_luet_db
from tests.support.bootimages import (
    ELEMENTAL_MODULES,
    ELEMENTAL_UNITS,
    ELF,
    FIXTURES,
    KVER,
    OS_RELEASE,
    BootImage,
    bootable,
    failed,
    findings,
    initrd,
    kernel,
    passed,
)

COS_IDS = [r.id for r in rules.RULES]
LEGACY_MODULES = ["systemd", "base", "rootfs-block", "dmsquash-live", "cos-immutable-rootfs"]
ELEMENTAL_IN_INITRD = {"usr/bin/elemental": ELF}


def check(img: BootImage, tmp_path: Path) -> Report:
    return img.check(tmp_path, profile="cos")


def legacy() -> BootImage:
    """A luet-era cOS derivative (v0.8): /etc/cos only, cos-setup units, a dracut-initrd built
    with cos-immutable-rootfs, the cos-config files and a real luet database."""
    img = bootable("cos")
    img.drop("/etc/elemental")
    for unit in ELEMENTAL_UNITS:
        img.drop(f"/usr/lib/systemd/system/{unit}")
        for wants in ("multi-user.target.wants", "timers.target.wants"):
            img.drop(f"/etc/systemd/system/{wants}/{unit}")
    img.file("/etc/cos/grub.cfg", "set timeout=5\nsource (loop0)/etc/cos/bootargs.cfg\n")
    img.file("/etc/cos/bootargs.cfg", "set kernel=/boot/vmlinuz\nset initramfs=/boot/initrd\n")
    img.file(
        "/etc/cos/config",
        "COS_OEM=COS_OEM\nDEFAULT_IMAGE_SIZE=3240\nGRUBCONF=/etc/cos/grub.cfg\n"
        'CLOUD_INIT_PATHS="/system/oem /oem/ /usr/local/cloud-config/"\n',
    )
    img.file("/etc/cos-upgrade-image", "UPGRADE_IMAGE=system/cos\nCHANNEL_UPGRADES=true\n")
    for unit in LEGACY_UNITS:
        img.file(f"/usr/lib/systemd/system/{unit}", "[Unit]\n")
        wants = "timers.target.wants" if unit.endswith(".timer") else "multi-user.target.wants"
        img.link(f"/etc/systemd/system/{wants}/{unit}", f"/lib/systemd/system/{unit}")
    img.drop(f"/boot/elemental.initrd-{KVER}")
    img.file(f"/boot/initrd-{KVER}", initrd(KVER, LEGACY_MODULES, ELEMENTAL_IN_INITRD))
    img.link("/boot/initrd", f"initrd-{KVER}")
    img.drop("/etc/dracut.conf.d/50-elemental-initrd.conf")
    img.file("/etc/dracut.conf.d/50-cos-initrd.conf", 'hostonly="no"\nhostonly_cmdline="no"\ncompress="xz"\n')
    img.file("/var/cache/luet/luet.db", (FIXTURES / "pkgdb" / "luet.db").read_bytes())
    return img


def messages(report: Report, rule: str, outcome: Outcome = Outcome.FAIL) -> list[str]:
    return [f.message for f in findings(report, rule) if f.outcome is outcome]


@pytest.fixture(scope="module")
def template_report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    return check(bootable("cos"), tmp_path_factory.mktemp("cos"))


@pytest.fixture(scope="module")
def legacy_report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    return legacy().check(tmp_path_factory.mktemp("legacy"))  # profile auto-detected


def test_every_rule_is_in_the_cos_profile_only() -> None:
    assert [f"COS-{n:03d}" for n in range(1, 17)] == COS_IDS
    for r in rules.RULES:
        assert set(r.severity) == {"cos"}
        assert r.sources and r.description != r.title


@pytest.mark.parametrize("rule", COS_IDS)
def test_template_passes(template_report: Report, rule: str) -> None:
    assert passed(template_report, rule), findings(template_report, rule)


@pytest.mark.parametrize("rule", COS_IDS)
def test_legacy_variant_passes(legacy_report: Report, rule: str) -> None:
    assert legacy_report.profile == "cos"
    assert passed(legacy_report, rule), findings(legacy_report, rule)


def test_legacy_variant_is_judged_with_legacy_expectations(legacy_report: Report) -> None:
    # The same image read with v2 expectations would miss every elemental-* unit and module.
    assert messages(legacy_report, "COS-007", Outcome.PASS) == ["all 6 legacy cOS setup units are enabled"]
    (ok,) = messages(legacy_report, "COS-006", Outcome.PASS)
    assert "cos-immutable-rootfs" in ok and "elemental-setup" not in ok
    assert messages(legacy_report, "COS-003", Outcome.PASS) == [
        "GRUB config /etc/cos/grub.cfg present (legacy cOS)"
    ]
    (luet,) = findings(legacy_report, "COS-015")
    assert "meta/cos-minimal" in luet.evidence and "system/kernel" not in luet.evidence


# --- COS-001 GRUB's kernel and initrd paths ------------------------------------------------------


def test_kernel_link_missing(tmp_path: Path) -> None:
    report = check(bootable("cos").remove("/boot/vmlinuz"), tmp_path)
    (finding,) = failed(report, "COS-001")
    assert (
        finding.message
        == "GRUB kernel path /boot/vmlinuz does not resolve to a file: no such file or directory"
    )
    assert finding.severity is Severity.ERROR and finding.hint


def test_initrd_link_dangles(tmp_path: Path) -> None:
    report = check(bootable("cos").link("/boot/initrd", "elemental.initrd-5.3"), tmp_path)
    (finding,) = failed(report, "COS-001")
    assert finding.path == "/boot/initrd"
    assert finding.evidence[0].startswith("initramfs: /boot/initrd -> elemental.initrd-5.3")


def test_custom_bootargs_move_the_kernel(tmp_path: Path) -> None:
    img = bootable("cos").remove("/boot/vmlinuz")
    img.file(
        "/etc/elemental/bootargs.cfg", "set kernel=/${root_subpath}boot/custom\nset initramfs=/boot/initrd\n"
    )
    img.file("/boot/custom", kernel())
    assert passed(check(img, tmp_path), "COS-001")
    img.drop("/boot/custom")
    (finding,) = failed(check(img, tmp_path), "COS-001")
    assert (
        "/boot/custom" in finding.message and "set kernel=/${root_subpath}boot/custom" in finding.evidence[0]
    )


# --- COS-002 Elemental's kernel / initrd selection ---------------------------------------------


def test_e3a_regular_file_named_vmlinuz_has_no_version(tmp_path: Path) -> None:
    # The kernel is fine for GRUB, but Elemental v2 reads the version from the resolved path.
    report = check(bootable("cos").file("/boot/vmlinuz", kernel()), tmp_path)
    assert passed(report, "COS-001")
    (finding,) = failed(report, "COS-002")
    assert finding.message == "Elemental v2: could not determine the version of kernel /boot/vmlinuz"
    assert finding.severity is Severity.ERROR and "vmlinuz-<version>" in (finding.hint or "")


def test_elemental_1450_initrd_for_another_kernel_sorts_first(tmp_path: Path) -> None:
    img = bootable("cos").file(
        "/boot/elemental.initrd-5.14.21", initrd("5.14.21", ELEMENTAL_MODULES, ELEMENTAL_IN_INITRD)
    )
    report = check(img, tmp_path)
    finding, v1 = failed(report, "COS-002")
    assert finding.severity is Severity.ERROR and v1.severity is Severity.WARNING  # v1 takes /boot/initrd
    assert finding.message == (
        "Elemental v2 picks initrd /boot/elemental.initrd-5.14.21, built for kernel 5.14.21, "
        f"but its kernel is version {KVER} (rancher/elemental#1450)"
    )
    assert f"an initrd for {KVER} exists but sorts later: /boot/elemental.initrd-{KVER}" in finding.evidence
    assert passed(report, "COS-001")  # GRUB's /boot/initrd is still the right one


def test_no_modules_directory(tmp_path: Path) -> None:
    report = check(bootable("cos").remove("/usr/lib/modules"), tmp_path)
    (finding, *_) = failed(report, "COS-002")
    assert finding.message.startswith("Elemental v2: failed reading modules directory")


def test_dangling_first_match_is_fatal_for_v2_not_v1(tmp_path: Path) -> None:
    # resolveLink's lstat error ends FindFile; v1 skips the entry and takes vmlinuz-<ver>.
    report = check(bootable("cos").link("/boot/vmlinuz", "vmlinuz-gone"), tmp_path)
    found = failed(report, "COS-002")
    assert found[0].message == (
        "Elemental v2: No Kernel file found: lstat /boot/vmlinuz-gone: no such file or directory"
    )
    assert found[1].severity is Severity.WARNING
    assert found[1].message.startswith(
        f"Elemental v1 and v2 pick different kernel files: v1 /boot/vmlinuz-{KVER}"
    )


def test_link_chain_deeper_than_four(tmp_path: Path) -> None:
    img = bootable("cos").link("/boot/vmlinuz", ".k1")
    for i in range(1, 5):
        img.link(f"/boot/.k{i}", f".k{i + 1}" if i < 4 else f"vmlinuz-{KVER}")
    (finding, *_) = failed(check(img, tmp_path), "COS-002")
    assert finding.message == (
        "Elemental v2: No Kernel file found: can't resolve this path '/boot/.k4', too many nested links"
    )
    img.link("/boot/.k3", f"vmlinuz-{KVER}")  # four links: within MaxLinkDepth
    assert passed(check(img, tmp_path), "COS-002")


def test_v1_and_v2_disagree_on_the_initrd(tmp_path: Path) -> None:
    # v2 tries /boot/elemental.initrd* first; v1 only knows the initrd/initramfs prefixes.
    img = bootable("cos").file(
        f"/boot/initramfs-{KVER}.img", initrd(KVER, ELEMENTAL_MODULES, ELEMENTAL_IN_INITRD)
    )
    report = check(img, tmp_path)
    (finding,) = failed(report, "COS-002")
    assert finding.severity is Severity.WARNING
    assert finding.message == (
        f"Elemental v1 and v2 pick different initrd files: v1 /boot/initramfs-{KVER}.img, "
        f"v2 /boot/elemental.initrd-{KVER}"
    )
    assert len(messages(report, "COS-002", Outcome.PASS)) == 2  # v2's kernel and initrd are fine


def test_no_kernel_at_all(tmp_path: Path) -> None:
    img = bootable("cos").remove("/boot/vmlinuz").remove(f"/boot/vmlinuz-{KVER}")
    (finding, *_) = failed(check(img, tmp_path), "COS-002")
    assert finding.message == (
        "Elemental v2: No Kernel file found: failed to find binary matching "
        "[/boot/uImage* /boot/Image* /boot/zImage* /boot/vmlinuz* /boot/image*]"
    )


# --- COS-003 grub.cfg ----------------------------------------------------------------------------


def test_only_legacy_grub_config_on_elemental2_warns(tmp_path: Path) -> None:
    img = bootable("cos").remove("/etc/elemental/grub.cfg").file("/etc/cos/grub.cfg", "set timeout=5\n")
    (finding,) = failed(check(img, tmp_path), "COS-003")
    assert finding.severity is Severity.WARNING
    assert "Grub config not found, using legacy config" in finding.message


def test_no_grub_config(tmp_path: Path) -> None:
    (finding,) = failed(check(bootable("cos").remove("/etc/elemental/grub.cfg"), tmp_path), "COS-003")
    assert finding.severity is Severity.ERROR
    assert finding.message == "no GRUB config: neither /etc/elemental/grub.cfg nor /etc/cos/grub.cfg exists"


# --- COS-004 bootargs ----------------------------------------------------------------------------


def test_no_bootargs(tmp_path: Path) -> None:
    (finding,) = failed(check(bootable("cos").remove("/etc/elemental/bootargs.cfg"), tmp_path), "COS-004")
    assert finding.message.startswith("no GRUB bootargs")


def test_bootargs_name_a_missing_initrd(tmp_path: Path) -> None:
    img = bootable("cos").file(
        "/etc/elemental/bootargs.cfg", 'set kernel=/boot/vmlinuz\nset initramfs="/boot/initrd.img"\n'
    )
    (finding,) = failed(check(img, tmp_path), "COS-004")
    assert finding.message == (
        '/etc/elemental/bootargs.cfg:2 sets initramfs="/boot/initrd.img", but /boot/initrd.img does not '
        "exist: no such file or directory"
    )


def test_bootargs_without_initramfs(tmp_path: Path) -> None:
    img = bootable("cos").file("/etc/elemental/bootargs.cfg", "set kernel=/boot/vmlinuz\n")
    (finding,) = failed(check(img, tmp_path), "COS-004")
    assert finding.message.startswith("no `set initramfs=` in /etc/elemental/bootargs.cfg")


def test_grub_path_strips_variables_devices_and_quotes() -> None:
    assert grub_path("/${root_subpath}boot/vmlinuz") == "/boot/vmlinuz"
    assert grub_path('"($root)/boot/initrd"') == "/boot/initrd"
    assert grub_path("$kernel_path") is None


# --- COS-005 elemental binary ------------------------------------------------------------------


def test_elemental_binary_missing(tmp_path: Path) -> None:
    (finding,) = failed(check(bootable("cos").remove("/usr/bin/elemental"), tmp_path), "COS-005")
    assert finding.message == "/usr/bin/elemental missing or not executable (no such file or directory)"


def test_elemental_binary_not_executable(tmp_path: Path) -> None:
    (finding,) = failed(check(bootable("cos").file("/usr/bin/elemental", ELF), tmp_path), "COS-005")
    assert "(not executable)" in finding.message


# --- COS-006 dracut modules in the initrd --------------------------------------------------------


def test_initrd_without_sysroot_module(tmp_path: Path) -> None:
    modules = [m for m in ELEMENTAL_MODULES if m != "elemental-sysroot"]
    img = bootable("cos").file(f"/boot/elemental.initrd-{KVER}", initrd(KVER, modules, ELEMENTAL_IN_INITRD))
    (finding,) = failed(check(img, tmp_path), "COS-006")
    assert finding.message == "initrd /boot/initrd lacks dracut module elemental-sysroot"
    assert finding.evidence[1].startswith("modules.txt: systemd base")


def test_initrd_without_elemental_binary(tmp_path: Path) -> None:
    img = bootable("cos").file(f"/boot/elemental.initrd-{KVER}", initrd(KVER, ELEMENTAL_MODULES))
    (finding,) = failed(check(img, tmp_path), "COS-006")
    assert finding.message == "initrd /boot/initrd does not contain usr/bin/elemental"


def test_legacy_initrd_without_immutable_rootfs(tmp_path: Path) -> None:
    img = legacy().file(f"/boot/initrd-{KVER}", initrd(KVER, ["systemd", "base"], ELEMENTAL_IN_INITRD))
    (finding,) = failed(check(img, tmp_path), "COS-006")
    assert (
        finding.message == "initrd /boot/initrd lacks dracut module cos-immutable-rootfs or elemental-rootfs"
    )


def test_elemental2_accepts_the_legacy_rootfs_module(tmp_path: Path) -> None:
    modules = [m if m != "elemental-rootfs" else "cos-immutable-rootfs" for m in ELEMENTAL_MODULES]
    img = bootable("cos").file(f"/boot/elemental.initrd-{KVER}", initrd(KVER, modules, ELEMENTAL_IN_INITRD))
    assert passed(check(img, tmp_path), "COS-006")


# --- COS-007 units -------------------------------------------------------------------------------


def test_setup_unit_not_enabled(tmp_path: Path) -> None:
    img = bootable("cos").remove("/etc/systemd/system/multi-user.target.wants/elemental-setup-fs.service")
    (finding,) = failed(check(img, tmp_path), "COS-007")
    assert finding.severity is Severity.WARNING
    assert (
        finding.message
        == "elemental-setup-fs.service is not enabled: no link in /etc/systemd/system/*.wants/"
    )


def test_setup_unit_masked(tmp_path: Path) -> None:
    img = bootable("cos").link(
        "/etc/systemd/system/timers.target.wants/elemental-setup-reconcile.timer", "/dev/null"
    )
    (finding,) = failed(check(img, tmp_path), "COS-007")
    assert finding.message.startswith("elemental-setup-reconcile.timer is masked")


def test_legacy_units_expected_on_legacy_images(tmp_path: Path) -> None:
    img = legacy().remove("/etc/systemd/system/multi-user.target.wants/cos-setup-boot.service")
    assert messages(check(img, tmp_path), "COS-007") == [
        "cos-setup-boot.service is not enabled: no link in /etc/systemd/system/*.wants/"
    ]


# --- COS-008 EFI binaries ------------------------------------------------------------------------


def test_shim_missing(tmp_path: Path) -> None:
    (finding,) = failed(check(bootable("cos").remove("/usr/share/efi/x86_64/shim.efi"), tmp_path), "COS-008")
    assert finding.message == "Elemental: failed to find shim image"


def test_efi_binary_for_another_arch(tmp_path: Path) -> None:
    img = bootable("cos").remove("/usr/share/efi/x86_64/MokManager.efi")
    img.file("/usr/share/efi/aarch64/MokManager.efi", b"MZ" + b"\0" * 62)
    (finding,) = failed(check(img, tmp_path), "COS-008")
    assert finding.message == (
        "Elemental picks /usr/share/efi/aarch64/MokManager.efi for mok manager, built for arm64, "
        "on this amd64 image"
    )


def test_riscv64_needs_no_shim(tmp_path: Path) -> None:
    img = bootable("cos")
    img.arch = "riscv64"
    img.drop("/usr/share/efi").drop("/usr/share/grub2/x86_64-efi")
    img.file("/usr/share/grub2/riscv64-efi/grub.efi", b"MZ" + b"\0" * 62)
    report = check(img, tmp_path)
    assert passed(report, "COS-008")
    assert len(messages(report, "COS-008", Outcome.SKIP)) == 2
    img.drop("/usr/share/grub2/riscv64-efi/grub.efi")
    assert messages(check(img, tmp_path), "COS-008") == ["Elemental: failed to find grub image"]


# --- COS-009 GRUB modules ------------------------------------------------------------------------


def test_grub_module_missing(tmp_path: Path) -> None:
    img = bootable("cos").remove("/usr/share/grub2/x86_64-efi/xzio.mod")
    (finding,) = failed(check(img, tmp_path), "COS-009")
    assert finding.message == "Elemental: failed to find binary matching xzio.mod"


def test_grub_modules_in_the_debian_location(tmp_path: Path) -> None:
    img = bootable("cos")
    for mod in ("loopback", "squash4", "xzio"):
        img.drop(f"/usr/share/grub2/x86_64-efi/{mod}.mod").file(f"/usr/lib/grub/x86_64-efi/{mod}.mod", ELF)
    report = check(img, tmp_path)
    assert passed(report, "COS-009")
    assert "xzio.mod: /usr/lib/grub/x86_64-efi/xzio.mod" in findings(report, "COS-009")[0].evidence


# --- COS-010 grub editenv ------------------------------------------------------------------------


def test_no_grub_editenv(tmp_path: Path) -> None:
    img = bootable("cos").remove("/usr/bin/grub-editenv").remove("/usr/bin/grub2-editenv")
    (finding,) = failed(check(img, tmp_path), "COS-010")
    assert finding.message == "neither grub2-editenv nor grub-editenv is an executable on PATH"


def test_grub2_editenv_through_a_dangling_link_is_not_enough(tmp_path: Path) -> None:
    report = check(bootable("cos").remove("/usr/bin/grub-editenv"), tmp_path)
    assert failed(report, "COS-010")


# --- COS-011 cloud-config --------------------------------------------------------------------


def test_no_cloud_config(tmp_path: Path) -> None:
    (finding,) = failed(check(bootable("cos").remove("/system/oem"), tmp_path), "COS-011")
    assert finding.severity is Severity.WARNING
    assert finding.message == "no cloud-config (*.yaml) in /system/oem, /oem, /usr/local/cloud-config"


def test_cloud_config_in_usr_local(tmp_path: Path) -> None:
    img = bootable("cos").remove("/system/oem").file("/usr/local/cloud-config/90_custom.yml", "stages: {}\n")
    assert passed(check(img, tmp_path), "COS-011")


# --- COS-012 layout paths ------------------------------------------------------------------------


def test_persistent_path_missing(tmp_path: Path) -> None:
    (finding,) = failed(check(bootable("cos").remove("/var/lib/rancher"), tmp_path), "COS-012")
    assert finding.severity is Severity.WARNING
    assert finding.message == (
        "PERSISTENT_STATE_PATHS path /var/lib/rancher (declared at /system/oem/00_rootfs.yaml:11) does not "
        "exist in the image: the boot stalls mounting it"
    )


def test_no_layout_declared_is_skipped(tmp_path: Path) -> None:
    report = check(bootable("cos").remove("/system/oem/00_rootfs.yaml"), tmp_path)
    assert [f.outcome for f in findings(report, "COS-012")] == [Outcome.SKIP]


def test_layout_forms() -> None:
    text = (
        'RW_PATHS="/var /etc"\n'
        "x:\n"
        '  - PERSISTENT_STATE_PATHS: "/home\n'
        '      /opt"  # continued\n'
        "  RW_PATHS: |\n"
        "    /srv\n"
        "\n"
        "    /tmp\n"
        "  other: 1\n"
        "PERSISTENT_STATE_PATHS: /root # comment\n"
    )
    got = [(e.line, e.key, e.paths) for e in parse_layout(text, "f")]
    assert got == [
        (1, "RW_PATHS", ("/var", "/etc")),
        (3, "PERSISTENT_STATE_PATHS", ("/home", "/opt")),
        (5, "RW_PATHS", ("/srv", "/tmp")),
        (10, "PERSISTENT_STATE_PATHS", ("/root",)),
    ]


# --- COS-013 os-release keys -------------------------------------------------------------------


def test_os_release_without_upgrade_keys(tmp_path: Path) -> None:
    img = bootable("cos").file("/etc/os-release", OS_RELEASE + 'IMAGE_REPO="registry.example/os"\n')
    report = check(img, tmp_path)
    assert [(f.message, f.severity) for f in failed(report, "COS-013")] == [
        (
            "/etc/os-release has no GRUB_ENTRY_NAME: the GRUB menu entry falls back to the default name",
            Severity.INFO,
        ),
        (
            "/etc/os-release has no IMAGE_TAG: suc-upgrade cannot tell whether an upgrade is newer",
            Severity.WARNING,
        ),
    ]


def test_no_suc_upgrade(tmp_path: Path) -> None:
    (finding,) = failed(check(bootable("cos").remove("/usr/sbin/suc-upgrade"), tmp_path), "COS-013")
    assert finding.severity is Severity.INFO and finding.path == "/usr/sbin/suc-upgrade"


# --- COS-014 dracut hostonly ---------------------------------------------------------------------


def test_hostonly_overridden_by_a_later_drop_in(tmp_path: Path) -> None:
    img = bootable("cos").file("/etc/dracut.conf.d/99-local.conf", "hostonly='yes'\n")
    (finding,) = failed(check(img, tmp_path), "COS-014")
    assert finding.message == (
        '/etc/dracut.conf.d/99-local.conf:1 sets hostonly="yes": the initrd is built for the build host only'
    )


def test_hostonly_unset(tmp_path: Path) -> None:
    img = bootable("cos").remove("/etc/dracut.conf.d/50-elemental-initrd.conf")
    (finding,) = failed(check(img, tmp_path), "COS-014")
    assert finding.message.startswith("no hostonly= in the dracut configuration")


def test_etc_drop_in_replaces_the_usr_lib_one(tmp_path: Path) -> None:
    # dracut.conf(5): a same-named file in /etc/dracut.conf.d hides the /usr/lib one.
    img = bootable("cos").file("/usr/lib/dracut/dracut.conf.d/50-elemental-initrd.conf", 'hostonly="yes"\n')
    assert passed(check(img, tmp_path), "COS-014")
    img.file("/usr/lib/dracut/dracut.conf.d/60-dist.conf", 'hostonly="yes"\n')
    assert failed(check(img, tmp_path), "COS-014")


# --- COS-015 luet markers ------------------------------------------------------------------------


def test_luet_database_without_toolkit_packages(tmp_path: Path) -> None:
    db = BoltWriter().write(storm_luet_db([{"name": "htop", "category": "utils", "version": "3.2"}]))
    (finding,) = failed(check(legacy().file("/var/cache/luet/luet.db", db), tmp_path), "COS-015")
    assert finding.severity is Severity.INFO
    assert finding.message == "/var/cache/luet/luet.db lists 1 package(s) but none of meta/cos-minimal's"


# --- COS-016 legacy files ------------------------------------------------------------------------


def test_legacy_image_without_upgrade_image_file(tmp_path: Path) -> None:
    (finding,) = failed(check(legacy().remove("/etc/cos-upgrade-image"), tmp_path), "COS-016")
    assert finding.severity is Severity.INFO
    assert finding.message.startswith("legacy cOS image without /etc/cos-upgrade-image")
