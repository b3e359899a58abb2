"""The kairos profile rules (KAI-001..011) through the real pipeline: the kairos template passes
every one of them, and one small change per test makes one fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from ociboot.boot.emulate.kairos import GoVersion, kairos_kernel_version
from ociboot.boot.rules import kairos as rules
from ociboot.report import Outcome, Report, Severity
from tests.support.bootimages import (
    ELF,
    KAIROS_RELEASE,
    KVER,
    BootImage,
    boot,
    bootable,
    failed,
    initrd,
    kairos_release,
    kernel,
    passed,
)

KAI_IDS = [r.id for r in rules.RULES]
AGENTS = {"usr/bin/immucore": ELF, "usr/bin/kairos-agent": ELF}


def check(img: BootImage, tmp_path: Path) -> Report:
    return img.check(tmp_path, profile="kairos")


def with_release(img: BootImage, **changes: str | None) -> BootImage:
    values = {**KAIROS_RELEASE, **changes}
    return img.file("/etc/kairos-release", kairos_release({k: v for k, v in values.items() if v is not None}))


def standard(img: BootImage, prefix: str = "k3s") -> BootImage:
    with_release(
        img,
        KAIROS_VARIANT="standard",
        KAIROS_SOFTWARE_VERSION="v1.30.4+k3s1",
        KAIROS_SOFTWARE_VERSION_PREFIX=prefix,
    )
    for name in ("agent-provider-kairos", "kairos", "edgevpn"):
        img.exe(f"/usr/bin/{name}")
    return img


def only(report: Report, rule: str, outcome: Outcome) -> list[str]:
    return [f.message for f in report.findings if f.rule == rule and f.outcome is outcome]


@pytest.fixture(scope="module")
def template_report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    return check(bootable("kairos"), tmp_path_factory.mktemp("kairos"))


def test_every_rule_is_in_the_kairos_profile_only() -> None:
    assert [f"KAI-{n:03d}" for n in range(1, 12)] == KAI_IDS
    for r in rules.RULES:
        assert set(r.severity) == {"kairos"}
        assert r.sources and r.description != r.title


@pytest.mark.parametrize("rule", KAI_IDS)
def test_template_passes(template_report: Report, rule: str) -> None:
    assert passed(template_report, rule), [f for f in template_report.findings if f.rule == rule]


# --- KAI-001 binaries ----------------------------------------------------------------------------


def test_binary_missing(tmp_path: Path) -> None:
    report = check(bootable("kairos").remove("/usr/bin/kairos-agent"), tmp_path)
    (finding,) = failed(report, "KAI-001")
    assert finding.message == "binary kairos-agent not found"
    assert "/system/providers" in finding.evidence[0] and finding.severity is Severity.ERROR


def test_binary_not_executable(tmp_path: Path) -> None:
    report = check(bootable("kairos").file("/usr/bin/less", ELF, 0o644), tmp_path)
    (finding,) = failed(report, "KAI-001")
    assert finding.message == "less is on PATH but not executable"
    assert finding.path == "/usr/bin/less" and "mode 644" in finding.evidence[0]


def test_binary_through_a_link_and_provider_dir(tmp_path: Path) -> None:
    img = bootable("kairos").drop("/usr/bin/sudo").drop("/usr/bin/immucore")
    img.exe("/opt/sudo/bin/sudo").link("/usr/local/bin/sudo", "/opt/sudo/bin/sudo")
    img.exe("/system/discovery/immucore")
    report = check(img, tmp_path)
    assert passed(report, "KAI-001")
    (pass_,) = [f for f in report.findings if f.rule == "KAI-001"]
    assert "sudo: /usr/local/bin/sudo -> /opt/sudo/bin/sudo (mode 755)" in pass_.evidence
    assert "immucore: /system/discovery/immucore (mode 755)" in pass_.evidence


def test_mount_nfs_not_needed_on_hadron(tmp_path: Path) -> None:
    img = with_release(bootable("kairos").drop("/usr/bin/mount.nfs"), KAIROS_FAMILY="hadron")
    assert passed(check(img, tmp_path), "KAI-001")
    img = bootable("kairos").drop("/usr/bin/mount.nfs")
    assert [f.message for f in failed(check(img, tmp_path), "KAI-001")] == ["binary mount.nfs not found"]


def test_standard_variant_wants_its_binaries_and_the_prefix_distro(tmp_path: Path) -> None:
    img = standard(bootable("kairos")).drop("/usr/bin/edgevpn")
    messages = [f.message for f in failed(check(img, tmp_path), "KAI-001")]
    # kairos-init would not ask for k3s here (it compares KAIROS_SOFTWARE_VERSION to "k3s").
    assert messages == ["binary edgevpn not found", "binary k3s not found"]
    img = standard(bootable("kairos"), prefix="k0s").exe("/usr/bin/k0s")
    assert passed(check(img, tmp_path), "KAI-001")


# --- KAI-002 /boot/vmlinuz, /boot/initrd ---------------------------------------------------------


def test_initrd_missing(tmp_path: Path) -> None:
    report = check(bootable("kairos").remove("/boot/initrd"), tmp_path)
    (finding,) = failed(report, "KAI-002")
    assert finding.message == "/boot/initrd is missing" and "dracut" in (finding.hint or "")


def test_vmlinuz_dangling(tmp_path: Path) -> None:
    img = bootable("kairos").link("/boot/vmlinuz", "/boot/vmlinuz-6.9.9")
    (finding,) = failed(check(img, tmp_path), "KAI-002")
    assert finding.message == "/boot/vmlinuz does not resolve: no such file or directory"
    assert finding.evidence == ("/boot/vmlinuz -> /boot/vmlinuz-6.9.9",)


def test_vmlinuz_to_a_directory(tmp_path: Path) -> None:
    img = bootable("kairos").link("/boot/vmlinuz", "/usr/lib/modules")
    (finding,) = failed(check(img, tmp_path), "KAI-002")
    assert finding.message == "/boot/vmlinuz resolves to a dir, not a file"


def test_uki_needs_no_initrd(tmp_path: Path) -> None:
    img = bootable("kairos").drop("/boot/initrd").drop(f"/boot/initrd-{KVER}")
    img.file("/boot/EFI/Linux/kairos.efi", boot.uki())
    report = check(img, tmp_path)
    assert passed(report, "KAI-002")
    assert only(report, "KAI-002", Outcome.SKIP) == [
        "/boot/initrd not required: the kernel is a UKI (trusted boot)"
    ]
    for rule in ("KAI-005", "KAI-006"):
        assert [f.outcome for f in report.findings if f.rule == rule] == [Outcome.SKIP]
    assert passed(report, "KAI-011")  # the EFI binaries; the ISO pick is build-uki's business
    assert failed(check(img.drop("/boot/EFI"), tmp_path), "KAI-002")


# --- KAI-003 kairos-release ----------------------------------------------------------------------


def test_release_key_missing_or_empty(tmp_path: Path) -> None:
    img = with_release(bootable("kairos"), KAIROS_MODEL=None, KAIROS_FLAVOR="")
    messages = sorted(f.message for f in failed(check(img, tmp_path), "KAI-003"))
    assert messages == [
        "KAIROS_FLAVOR is empty in /etc/kairos-release",
        "KAIROS_MODEL is missing in /etc/kairos-release",
    ]


def test_release_file_missing(tmp_path: Path) -> None:
    (finding,) = failed(check(bootable("kairos").remove("/etc/kairos-release"), tmp_path), "KAI-003")
    assert finding.message == "/etc/kairos-release is missing"


def test_standard_variant_release_keys(tmp_path: Path) -> None:
    img = standard(bootable("kairos")).exe("/usr/bin/k3s")
    assert passed(check(img, tmp_path), "KAI-003")
    with_release(img, KAIROS_VARIANT="standard", KAIROS_SOFTWARE_VERSION_PREFIX="k3s")
    (finding,) = failed(check(img, tmp_path), "KAI-003")
    assert finding.message == "KAIROS_SOFTWARE_VERSION is missing in /etc/kairos-release"


# --- KAI-004 /var/lock ---------------------------------------------------------------------------


def test_var_lock_missing(tmp_path: Path) -> None:
    (finding,) = failed(check(bootable("kairos").remove("/var/lock"), tmp_path), "KAI-004")
    assert finding.message == "/var/lock does not exist: no such file or directory"


def test_var_lock_link_must_resolve(tmp_path: Path) -> None:
    img = bootable("kairos").drop("/var/lock").link("/var/lock", "../run/lock")
    (finding,) = failed(check(img, tmp_path), "KAI-004")
    assert finding.evidence == ("/var/lock -> ../run/lock",)
    assert passed(check(img.dir("/run/lock"), tmp_path), "KAI-004")


# --- KAI-005 / KAI-006 initrd content ------------------------------------------------------------


def test_initrd_without_kairos_agent(tmp_path: Path) -> None:
    img = bootable("kairos").file(
        f"/boot/initrd-{KVER}", initrd(KVER, ["systemd", "base", "immucore"], {"usr/bin/immucore": ELF})
    )
    (finding,) = failed(check(img, tmp_path), "KAI-005")
    assert (
        finding.message
        == f"kairos-agent not found in the initrd /boot/initrd -> initrd-{KVER} (= /boot/initrd-{KVER})"
    )
    assert "immucore" in finding.evidence[0]


def test_initrd_unreadable_is_not_a_pass(tmp_path: Path) -> None:
    img = bootable("kairos").file(f"/boot/initrd-{KVER}", b"\x1f\x8b\x08\x00" + b"\0" * 40)
    found = [f for f in check(img, tmp_path).findings if f.rule == "KAI-005"]
    assert found and all(f.outcome in (Outcome.ERROR, Outcome.FAIL) for f in found)


RENESAS = f"usr/lib/modules/{KVER}/kernel/drivers/usb/host/xhci-pci-renesas.ko.xz"


def test_renesas_shipped_but_not_in_initrd(tmp_path: Path) -> None:
    img = bootable("kairos").file(f"/{RENESAS}", b"\xfd7zXZ\0")
    (finding,) = failed(check(img, tmp_path), "KAI-006")
    assert finding.severity is Severity.WARNING
    assert finding.evidence == (f"kernel ships: /{RENESAS}",)


def test_renesas_shipped_and_in_initrd(tmp_path: Path) -> None:
    img = bootable("kairos").file(f"/{RENESAS}", b"\xfd7zXZ\0")
    img.file(f"/boot/initrd-{KVER}", initrd(KVER, ["immucore", "kairos-agent"], {**AGENTS, RENESAS: b"x"}))
    report = check(img, tmp_path)
    assert passed(report, "KAI-006")
    assert only(report, "KAI-006", Outcome.PASS) == [
        f"xhci-pci-renesas is in /boot/initrd -> initrd-{KVER} (= /boot/initrd-{KVER})"
    ]


# --- KAI-007 SSH host keys -----------------------------------------------------------------------


def test_ssh_host_key_baked_in(tmp_path: Path) -> None:
    img = bootable("kairos").file(
        "/etc/ssh/ssh_host_ed25519_key", "-----BEGIN OPENSSH PRIVATE KEY-----\n", 0o600
    )
    img.file("/etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAA\n")
    (finding,) = failed(check(img, tmp_path), "KAI-007")
    assert finding.path == "/etc/ssh/ssh_host_ed25519_key" and finding.severity is Severity.ERROR


# --- KAI-008 systemd units -----------------------------------------------------------------------

ROCKY = 'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.4"\n'


def test_getty_masked(tmp_path: Path) -> None:
    img = bootable("kairos").link("/etc/systemd/system/getty.target", "/dev/null")
    (finding,) = failed(check(img, tmp_path), "KAI-008")
    assert finding.message == "getty.target is masked" and finding.path == "/etc/systemd/system/getty.target"


def test_getty_missing(tmp_path: Path) -> None:
    img = bootable("kairos").remove("/usr/lib/systemd/system/getty.target")
    (finding,) = failed(check(img, tmp_path), "KAI-008")
    assert finding.message == "getty.target does not exist"


def test_empty_unit_file_is_masked(tmp_path: Path) -> None:
    img = bootable("kairos").file("/etc/systemd/system/getty.target", "")
    (finding,) = failed(check(img, tmp_path), "KAI-008")
    assert finding.message == "getty.target is masked" and "(empty file)" in finding.evidence[0]


def test_rhel_family_needs_udevd_and_logind(tmp_path: Path) -> None:
    img = bootable("kairos").file("/etc/os-release", ROCKY)
    assert passed(check(img, tmp_path), "KAI-008")
    img.link("/etc/systemd/system/systemd-logind.service", "/dev/null")
    img.remove("/usr/lib/systemd/system/systemd-udevd.service")
    messages = [f.message for f in failed(check(img, tmp_path), "KAI-008")]
    assert messages == ["systemd-udevd.service does not exist", "systemd-logind.service is masked"]


def test_debian_does_not_need_udevd(tmp_path: Path) -> None:
    img = bootable("kairos").remove("/usr/lib/systemd/system/systemd-udevd.service")
    assert passed(check(img, tmp_path), "KAI-008")


# --- KAI-009 kernel version ----------------------------------------------------------------------


def test_modules_dir_empty(tmp_path: Path) -> None:
    img = bootable("kairos").remove(f"/usr/lib/modules/{KVER}")
    (finding,) = failed(check(img, tmp_path), "KAI-009")
    assert finding.message == "/lib/modules is empty: Kairos cannot determine the kernel version"
    assert finding.severity is Severity.ERROR


def test_kairos_picks_another_kernel(tmp_path: Path) -> None:
    # go-version orders the Debian ABI "9-amd64" above "28-amd64" (text, not numbers).
    img = bootable("kairos").dir("/usr/lib/modules/6.1.0-9-amd64")
    report = check(img, tmp_path)
    assert only(report, "KAI-009", Outcome.PASS) == ["Kairos would choose kernel 6.1.0-9-amd64"]
    (finding,) = failed(report, "KAI-009")
    assert finding.severity is Severity.WARNING
    assert finding.message == "/boot/vmlinuz is not the kernel Kairos would choose (6.1.0-9-amd64)"
    assert finding.evidence[1] == f"version {KVER}"


def test_canonical_version_name_differs(tmp_path: Path) -> None:
    img = bootable("kairos").drop(f"/usr/lib/modules/{KVER}").dir("/usr/lib/modules/6.1")
    messages = [f.message for f in failed(check(img, tmp_path), "KAI-009")]
    assert "Kairos would use kernel version 6.1.0, but /lib/modules has no such directory" in messages


@pytest.mark.parametrize(
    ("names", "model", "chosen"),
    [
        (["6.1.0-28-amd64", "6.1.0-9-amd64"], "", "6.1.0-9-amd64"),
        (["5.14.21-150500.55-default", "6.4.0-150600.23-default"], "", "6.4.0-150600.23-default"),
        (["6.1.0", "6.1.0-rc1"], "", "6.1.0"),
        # x86_64 has an underscore, which go-version refuses: the first entry wins.
        (["6.8.5-301.fc40.x86_64", "6.8.10-300.fc40.x86_64"], "", "6.8.5-301.fc40.x86_64"),
        (["6.1.0-28-amd64", "6.8.0-1004-raspi", "6.5.0-1001-raspi"], "rpi4", "6.8.0-1004-raspi"),
        (["6.1.0-28-amd64", "6.8.0-1004-raspi"], "generic", "6.8.0-1004-raspi"),
        (["v6.1", "abc"], "", "6.1.0"),
    ],
)
def test_kairos_kernel_version_order(names: list[str], model: str, chosen: str) -> None:
    assert kairos_kernel_version([(n, True) for n in names], model) == chosen


def test_go_version_parse() -> None:
    assert str(GoVersion.parse("6.01.2-1+build.3")) == "6.1.2-1+build.3"
    rc = GoVersion.parse("6.1.0-rc1")
    assert rc is not None and rc.pre == "rc1" and rc.compare(GoVersion((6, 1, 0), "", "")) < 0
    for bad in ("x86_64", "6..1", "6.1.0_rc1", ""):
        assert GoVersion.parse(bad) is None, bad


# --- KAI-010 GRUB config -------------------------------------------------------------------------


def test_bootargs_missing(tmp_path: Path) -> None:
    (finding,) = failed(check(bootable("kairos").remove("/etc/cos/bootargs.cfg"), tmp_path), "KAI-010")
    assert finding.message == "/etc/cos/bootargs.cfg is missing" and finding.severity is Severity.WARNING


# --- KAI-011 AuroraBoot --------------------------------------------------------------------------


def test_only_an_absolute_kernel_link(tmp_path: Path) -> None:
    # The kernel lives in the modules dir; /boot/vmlinuz resolves in the image, not on the host.
    img = bootable("kairos").drop(f"/boot/vmlinuz-{KVER}")
    img.file(f"/usr/lib/modules/{KVER}/vmlinuz", kernel(KVER))
    img.link("/boot/vmlinuz", f"/usr/lib/modules/{KVER}/vmlinuz")
    report = check(img, tmp_path)
    assert passed(report, "KAI-002")
    (finding,) = failed(report, "KAI-011")
    assert finding.message == "AuroraBoot finds no kernel in /boot" and finding.severity is Severity.ERROR
    assert f"/boot/vmlinuz -> /usr/lib/modules/{KVER}/vmlinuz: absolute target" in finding.evidence[1]


def test_relative_kernel_link_is_picked(tmp_path: Path) -> None:
    img = bootable("kairos").drop(f"/boot/vmlinuz-{KVER}")
    img.file(f"/usr/lib/modules/{KVER}/vmlinuz", kernel(KVER))
    img.link("/boot/vmlinuz", f"../usr/lib/modules/{KVER}/vmlinuz")
    report = check(img, tmp_path)
    assert passed(report, "KAI-011")
    (pick,) = [f for f in report.findings if f.rule == "KAI-011" and "ISO" in f.message]
    assert pick.evidence[0] == (
        f"kernel: /usr/lib/modules/{KVER}/vmlinuz (via /boot/vmlinuz -> ../usr/lib/modules/{KVER}/vmlinuz)"
    )
    assert pick.evidence[1] == f"initrd: /boot/initrd-{KVER} (via /boot/initrd -> initrd-{KVER})"


def test_iso_picks_a_different_kernel(tmp_path: Path) -> None:
    # "Image-*" sorts before "vmlinuz": the ISO boots the old kernel, the disk the new one.
    img = bootable("kairos").file("/boot/Image-6.0.0-1-amd64", kernel("6.0.0-1-amd64"))
    (finding,) = failed(check(img, tmp_path), "KAI-011")
    assert finding.severity is Severity.WARNING
    assert finding.message == (
        "the ISO would boot /boot/Image-6.0.0-1-amd64, "
        f"the installed system /boot/vmlinuz -> /boot/vmlinuz-{KVER}"
    )


def test_iso_pick_is_not_a_kernel(tmp_path: Path) -> None:
    img = bootable("kairos").file("/boot/image-notes.txt", "not a kernel\n")
    messages = [f.message for f in failed(check(img, tmp_path), "KAI-011")]
    assert messages == [
        "AuroraBoot would put /boot/image-notes.txt on the ISO as the kernel, but it is not a kernel"
    ]


def test_efi_shim_missing(tmp_path: Path) -> None:
    (finding,) = failed(check(bootable("kairos").remove("/usr/lib/shim"), tmp_path), "KAI-011")
    assert finding.message == "no EFI shim binary where kairos-sdk looks for amd64"
    assert finding.severity is Severity.WARNING
