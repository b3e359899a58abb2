"""bootc profile rules (BTC-001..009) through the real pipeline: the bootc template passes every
rule and every lint, and one small change to it makes exactly the rule (or lint) at hand fail."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ociboot.boot.emulate.bootc import LINT_NAMES, parse_kargs, parse_sysusers, sample
from ociboot.boot.rules.bootc import merge_install_config
from ociboot.report import Finding, Outcome, Report, Severity
from tests.support.bootimages import ELF, BootImage, boot, bootable, failed, findings, initrd, kernel, passed

KVER = "6.8.5-301.fc40.x86_64"
MODS = f"/usr/lib/modules/{KVER}"
BTC = [f"BTC-00{i}" for i in range(1, 10)]
REF = "/usr/share/doc/bootc/baseimage/base"


def lint(report: Report, name: str) -> Finding:
    found = [f for f in findings(report, "BTC-002") if f.message.startswith(f"{name}:")]
    assert len(found) == 1, [f.message for f in findings(report, "BTC-002")]
    return found[0]


def only(report: Report, rule: str) -> Finding:
    bad = failed(report, rule)
    assert len(bad) == 1, [(f.outcome, f.message) for f in findings(report, rule)]
    return bad[0]


# --- the template ------------------------------------------------------------------------------


def test_template_passes_every_bootc_rule(tmp_path: Path) -> None:
    report = bootable("bootc").check(tmp_path)
    assert report.profile == "bootc"
    for rule in BTC:
        assert passed(report, rule), [(f.outcome, f.message) for f in findings(report, rule)]


def test_template_passes_every_lint_and_skips_var_tmpfiles(tmp_path: Path) -> None:
    report = bootable("bootc").check(tmp_path)
    results = findings(report, "BTC-002")
    # bootc runs its lints sorted by name; so do we, one result each.
    assert [f.message.split(":", 1)[0] for f in results] == sorted(LINT_NAMES)
    assert len(LINT_NAMES) == 14
    for f in results:
        if f.message.startswith("var-tmpfiles:"):
            assert f.outcome is Outcome.SKIP and "running root" in f.message
        else:
            assert f.outcome is Outcome.PASS, f.message
    # Lint types are bootc's own, whatever the rule's row says.
    assert lint(report, "kernel").severity is Severity.ERROR
    assert lint(report, "var-log").severity is Severity.WARNING


def test_bootc_rules_are_bootc_only(tmp_path: Path) -> None:
    report = bootable("generic").check(tmp_path)
    assert not [f for f in report.findings if f.rule.startswith("BTC-")]


# --- BTC-001 label -----------------------------------------------------------------------------


def test_btc001_no_label_is_an_error(tmp_path: Path) -> None:
    img = bootable("bootc")
    img.labels.clear()
    f = only(img.check(tmp_path, profile="bootc"), "BTC-001")
    assert f.severity is Severity.ERROR and "no containers.bootc" in f.message and f.hint


def test_btc001_wrong_value_is_a_warning(tmp_path: Path) -> None:
    img = bootable("bootc")
    img.labels["containers.bootc"] = "true"
    f = only(img.check(tmp_path), "BTC-001")
    assert f.severity is Severity.WARNING and '"true"' in f.message


def test_btc001_legacy_label_passes(tmp_path: Path) -> None:
    img = bootable("bootc")
    img.labels.clear()
    img.labels["ostree.bootable"] = "true"
    report = img.check(tmp_path)
    assert passed(report, "BTC-001")
    assert "ostree.bootable" in findings(report, "BTC-001")[0].message


# --- BTC-002 lints: one broken image per lint ------------------------------------------------------

Breakage = Callable[[BootImage], object]

LINT_CASES: list[tuple[str, Breakage, Severity, str]] = [
    (
        "api-base-directories",
        lambda i: i.remove("/proc"),
        Severity.ERROR,
        "Missing API filesystem base directory: /proc",
    ),
    (
        "api-base-directories",
        lambda i: i.drop("/tmp").link("/tmp", "var/tmp"),
        Severity.ERROR,
        "Expected directory for API filesystem base directory: /tmp",
    ),
    (
        "baseimage-composefs",
        lambda i: i.file("/usr/lib/ostree/prepare-root.conf", "[composefs]\nenabled = no\n"),
        Severity.WARNING,
        "does not have composefs enabled",
    ),
    (
        "baseimage-composefs",
        lambda i: i.remove("/usr/lib/ostree/prepare-root.conf"),
        Severity.WARNING,
        "is not present to enable composefs",
    ),
    (
        # /etc is read first and wins even when /usr/lib enables composefs.
        "baseimage-composefs",
        lambda i: i.file("/etc/ostree/prepare-root.conf", "[composefs]\nenabled = false\n"),
        Severity.WARNING,
        "/etc/ostree/prepare-root.conf does not have composefs enabled",
    ),
    (
        # bootc also checks its reference base content when the image embeds it.
        "baseimage-composefs",
        lambda i: i.dir(f"{REF}/sysroot").link(f"{REF}/ostree", "sysroot/ostree"),
        Severity.WARNING,
        f"(looked in {REF}/{{etc,usr/lib}}/ostree/prepare-root.conf)",
    ),
    ("baseimage-root", lambda i: i.remove("/sysroot"), Severity.ERROR, "Missing /sysroot"),
    (
        "baseimage-root",
        lambda i: i.link("/ostree", "/sysroot/ostree"),
        Severity.ERROR,
        'Expected /ostree -> sysroot/ostree, not "/sysroot/ostree"',
    ),
    (
        "baseimage-root",
        # bootc also checks its reference base content when the image embeds it.
        lambda i: i.dir(f"{REF}/sysroot").file(
            f"{REF}/usr/lib/ostree/prepare-root.conf", "[composefs]\nenabled=1\n"
        ),
        Severity.ERROR,
        "Missing /usr/share/doc/bootc/baseimage/base/ostree -> sysroot/ostree link",
    ),
    (
        "bootc-kargs",
        lambda i: i.file("/usr/lib/bootc/kargs.d/10-console.toml", 'kargs = ["console=ttyS0"\n'),
        Severity.ERROR,
        "Parsing 10-console.toml: TOML parse error",
    ),
    (
        "bootc-kargs",
        lambda i: i.file(
            "/usr/lib/bootc/kargs.d/10-console.toml", 'kargs = ["console=ttyS0"]\nfoo = "bar"\n'
        ),
        Severity.ERROR,
        "unknown field `foo`",
    ),
    (
        "bootc-kargs",
        lambda i: i.file("/usr/lib/bootc/kargs.d/10-console.toml", "kargs = [1, 2]\n"),
        Severity.ERROR,
        "expected a sequence of strings",
    ),
    (
        "bootc-kargs",
        lambda i: i.file("/usr/lib/bootc/kargs.d", "not a directory\n"),
        Severity.ERROR,
        "/usr/lib/bootc/kargs.d is not a directory",
    ),
    (
        "buildah-injected",
        lambda i: i.file("/etc/hostname", ""),
        Severity.WARNING,
        "/etc/hostname is an empty file",
    ),
    (
        "buildah-injected",
        lambda i: i.file("/etc/resolv.conf", ""),
        Severity.WARNING,
        "/etc/resolv.conf is an empty",
    ),
    ("etc-usretc", lambda i: i.dir("/usr/etc"), Severity.ERROR, "Found /usr/etc"),
    (
        "kernel",
        lambda i: i.file("/usr/lib/modules/6.9.1-100.fc40.x86_64/vmlinuz", kernel("6.9.1-100.fc40.x86_64")),
        Severity.ERROR,
        "Found multiple subdirectories in usr/lib/modules",
    ),
    (
        "nonempty-boot",
        lambda i: i.file("/boot/vmlinuz-x", kernel()),
        Severity.WARNING,
        "Found non-empty /boot: vmlinuz-x",
    ),
    ("nonempty-boot", lambda i: i.remove("/boot"), Severity.WARNING, "Missing /boot directory"),
    (
        "nonempty-run-tmp",
        lambda i: i.file("/run/dnf/metadata_lock.pid", "42\n"),
        Severity.WARNING,
        "Found content in runtime-only directories (/run, /tmp): /run/dnf, /run/dnf/metadata_lock.pid",
    ),
    ("nonempty-run-tmp", lambda i: i.file("/tmp/build.log", ""), Severity.WARNING, "/tmp/build.log"),
    (
        "sysusers",
        lambda i: i.file("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\navahi:x:70:70::/:/sbin/nologin\n"),
        Severity.WARNING,
        "Found /etc/passwd entry without corresponding systemd sysusers.d: avahi",
    ),
    (
        "sysusers",
        lambda i: i.file("/etc/group", "root:x:0:\nwheel:x:10:\n"),
        Severity.WARNING,
        "Found /etc/group entry without corresponding systemd sysusers.d: wheel",
    ),
    (
        # A sysusers.d file bootc cannot parse stops `bootc container lint` altogether.
        "sysusers",
        lambda i: i.file("/usr/lib/sysusers.d/broken.conf", "u\n"),
        Severity.ERROR,
        "Failed to parse sysusers entry",
    ),
    (
        "utf8",
        lambda i: i.file("/usr/share/caf\udce9.txt", "x"),
        Severity.ERROR,
        # The finding holds the name's bytes; every renderer shows them as bootc does (caf\\xe9).
        '/usr/share: Found non-utf8 filename "caf\udce9.txt"',
    ),
    (
        "utf8",
        lambda i: i.link("/usr/share/latin1", "caf\udce9"),
        Severity.ERROR,
        "/usr/share/latin1: Found non-utf8 symlink target",
    ),
    (
        "var-log",
        lambda i: i.file("/var/log/dnf5.log", "installed\n"),
        Severity.WARNING,
        "Found non-empty logfiles: /var/log/dnf5.log",
    ),
    ("var-run", lambda i: i.drop("/var/run").dir("/var/run"), Severity.ERROR, "Not a symlink: var/run"),
]


@pytest.mark.parametrize(
    ("name", "breakage", "severity", "text"),
    LINT_CASES,
    ids=[f"{c[0]}-{n}" for n, c in enumerate(LINT_CASES)],
)
def test_btc002_lint_fails(
    tmp_path: Path, name: str, breakage: Breakage, severity: Severity, text: str
) -> None:
    img = bootable("bootc")
    breakage(img)
    report = img.check(tmp_path)
    f = lint(report, name)
    assert f.outcome is Outcome.FAIL and f.severity is severity, f.message
    assert text in f.message and f.hint
    # Every other lint still passes: each breakage is about one lint only.
    others = [g for g in findings(report, "BTC-002") if g is not f and g.outcome is not Outcome.PASS]
    assert [g.message for g in others if not g.message.startswith("var-tmpfiles:")] == []


PASSING_VARIANTS: list[tuple[str, Breakage]] = [
    (
        "baseimage-composefs",
        lambda i: i.file("/usr/lib/ostree/prepare-root.conf", "[root]\ntransient = true\n"),
    ),
    (
        "baseimage-composefs",
        lambda i: i.file("/usr/lib/ostree/prepare-root.conf", "[composefs]\nenabled=maybe\n"),
    ),
    (
        "bootc-kargs",
        lambda i: i.file(
            "/usr/lib/bootc/kargs.d/10-console.toml",
            'kargs = ["console=ttyS0", "nosmt"]\nmatch-architectures = ["aarch64"]\n',
        ),
    ),
    ("bootc-kargs", lambda i: i.file("/usr/lib/bootc/kargs.d/README", "not toml at all [")),
    # Directories without a vmlinuz are ignored by bootc (ublue-os/aurora#1286).
    ("kernel", lambda i: i.file("/usr/lib/modules/6.9.1-100.fc40.x86_64/modules.dep", "")),
    ("nonempty-boot", lambda i: i.file("/boot/EFI/Linux/.keep", "")),
    # podman's DNS stub and its otherwise empty parents are pruned (bootc#2050).
    ("nonempty-run-tmp", lambda i: i.file("/run/systemd/resolve/stub-resolv.conf", "nameserver 10.0.2.3\n")),
    (
        "sysusers",
        lambda i: i.file("/etc/passwd", "root:x:0:0::/root:/bin/bash\navahi:x:70:70::/:/sbin/nologin\n").file(
            "/usr/lib/sysusers.d/avahi.conf",
            '# avahi\nu avahi 70 "Avahi mDNS/DNS-SD Stack" /var/run/avahi-daemon\n',
        ),
    ),
    (
        "var-log",
        lambda i: i.file("/var/log/empty.log", "").link("/var/log/README", "../../usr/share/doc/README"),
    ),
]


@pytest.mark.parametrize(
    ("name", "change"), PASSING_VARIANTS, ids=[f"{c[0]}-{n}" for n, c in enumerate(PASSING_VARIANTS)]
)
def test_btc002_lint_passes_variant(tmp_path: Path, name: str, change: Breakage) -> None:
    img = bootable("bootc")
    change(img)
    f = lint(img.check(tmp_path), name)
    assert f.outcome is Outcome.PASS, f.message


def test_btc002_lists_are_truncated_like_bootc(tmp_path: Path) -> None:
    img = bootable("bootc")
    for n in range(8):
        img.file(f"/var/log/app{n}.log", "line\n")
    f = lint(img.check(tmp_path), "var-log")
    assert f.message.endswith("/var/log/app4.log, ...and 3 more")
    assert f.evidence[-1] == "...and 3 more" and len(f.evidence) == 6


def test_btc002_kargs_not_captured_whole_cannot_run(tmp_path: Path) -> None:
    img = bootable("bootc")
    # A link out of the captured directory: the bytes were never kept, so no verdict either way.
    img.file("/usr/share/kargs/console.toml", 'kargs = ["console=ttyS0"]\n')
    img.link("/usr/lib/bootc/kargs.d/10-console.toml", "../../../share/kargs/console.toml")
    f = lint(img.check(tmp_path), "bootc-kargs")
    assert f.outcome is Outcome.ERROR and "could not run" in f.message


# --- BTC-003 kernel ---------------------------------------------------------------------------


def test_btc003_no_kernel(tmp_path: Path) -> None:
    img = bootable("bootc")
    img.remove(f"{MODS}/vmlinuz")
    img.file(f"/boot/vmlinuz-{KVER}", kernel(KVER))
    f = only(img.check(tmp_path), "BTC-003")
    assert f.message == "no kernel where bootc looks"
    assert any("masked at runtime" in e for e in f.evidence) and f.hint


def test_btc003_two_kernels(tmp_path: Path) -> None:
    img = bootable("bootc")
    img.file("/usr/lib/modules/6.9.1-100.fc40.x86_64/vmlinuz", kernel("6.9.1-100.fc40.x86_64"))
    f = only(img.check(tmp_path), "BTC-003")
    assert f.message.startswith("2 kernels in /usr/lib/modules")


def test_btc003_vmlinuz_that_is_not_a_kernel(tmp_path: Path) -> None:
    img = bootable("bootc")
    img.file(f"{MODS}/vmlinuz", ELF)
    f = only(img.check(tmp_path), "BTC-003")
    assert f.message == f"{MODS}/vmlinuz is not a kernel" and "ELF" in f.evidence[0]


def test_btc003_uki_instead_of_split_kernel(tmp_path: Path) -> None:
    img = bootable("bootc")
    img.drop(MODS).dir(MODS)
    img.file("/usr/lib/modules/6.1.0-28-amd64/modules.dep", "")
    img.file("/boot/EFI/Linux/6.1.0-28-amd64.efi", boot.uki())
    report = img.check(tmp_path)
    assert passed(report, "BTC-003")
    assert "UKI /boot/EFI/Linux/6.1.0-28-amd64.efi" in findings(report, "BTC-003")[0].message
    # The UKI carries its initrd: nothing for BTC-004/005 to check, and EFI is allowed in /boot.
    assert findings(report, "BTC-004")[0].outcome is Outcome.SKIP
    assert passed(report, "BTC-009")


def test_btc003_efi_that_is_not_a_uki(tmp_path: Path) -> None:
    img = bootable("bootc")
    img.file("/boot/EFI/Linux/fake.efi", b"MZ" + b"\0" * 62)
    f = only(img.check(tmp_path), "BTC-003")
    assert "is not a unified kernel image" in f.message


# --- BTC-004 / BTC-005 initramfs ------------------------------------------------------------------


def test_btc004_missing_initramfs(tmp_path: Path) -> None:
    img = bootable("bootc")
    img.remove(f"{MODS}/initramfs.img")
    report = img.check(tmp_path)
    f = only(report, "BTC-004")
    assert f.severity is Severity.ERROR and "initramfs.img is missing" in f.message and KVER in (f.hint or "")
    assert findings(report, "BTC-005")[0].outcome is Outcome.SKIP


def test_btc004_garbage_initramfs(tmp_path: Path) -> None:
    img = bootable("bootc")
    img.file(f"{MODS}/initramfs.img", b"this is not a cpio archive" * 40)
    f = only(img.check(tmp_path), "BTC-004")
    assert f.severity is Severity.ERROR and "is not a valid initramfs" in f.message and f.evidence


def test_btc004_initramfs_for_another_kernel_is_a_warning(tmp_path: Path) -> None:
    img = bootable("bootc")
    img.file(
        f"{MODS}/initramfs.img", initrd("6.7.0-1.fc40.x86_64", ["systemd", "ostree"], compression="zstd")
    )
    report = img.check(tmp_path)
    f = only(report, "BTC-004")
    assert f.severity is Severity.WARNING and "built for 6.7.0-1.fc40.x86_64, not " + KVER in f.message
    assert passed(report, "BTC-005")


def test_btc005_initramfs_without_ostree_or_bootc(tmp_path: Path) -> None:
    img = bootable("bootc")
    img.file(f"{MODS}/initramfs.img", initrd(KVER, ["systemd", "base", "rootfs-block"], compression="zstd"))
    report = img.check(tmp_path)
    f = only(report, "BTC-005")
    assert f.severity is Severity.WARNING and "neither the ostree nor the bootc" in f.message
    assert f.evidence == ("modules.txt: systemd base rootfs-block",)
    assert passed(report, "BTC-004")


# --- BTC-006 install configuration ----------------------------------------------------------------


def test_btc006_no_root_filesystem_type(tmp_path: Path) -> None:
    img = bootable("bootc")
    img.remove("/usr/lib/bootc/install/00-root.toml")
    f = only(img.check(tmp_path), "BTC-006")
    assert f.severity is Severity.WARNING
    assert f.message == "no default root filesystem type specified in container, please use --rootfs"


def test_btc006_later_drop_in_overrides(tmp_path: Path) -> None:
    img = bootable("bootc")
    img.file("/usr/lib/bootc/install/50-zfs.toml", '[install.filesystem.root]\ntype = "zfs"\n')
    f = only(img.check(tmp_path), "BTC-006")
    assert f.message == "unsupported root filesystem type: zfs (from 50-zfs.toml)"
    img.file("/usr/lib/bootc/install/90-ext4.toml", '[install]\nroot-fs-type = "ext4"\n')
    report = img.check(tmp_path)
    assert passed(report, "BTC-006")
    assert "ext4 (from 90-ext4.toml)" in findings(report, "BTC-006")[0].message


def test_btc006_invalid_toml_is_an_error(tmp_path: Path) -> None:
    img = bootable("bootc")
    img.file("/usr/lib/bootc/install/10-broken.toml", "[install.filesystem.root\n")
    f = only(img.check(tmp_path), "BTC-006")
    assert f.severity is Severity.ERROR and "10-broken.toml" in f.message


# --- BTC-007 os-release ------------------------------------------------------------------------


def test_btc007_missing_version_id(tmp_path: Path) -> None:
    img = bootable("bootc")
    img.file("/etc/os-release", 'NAME="Fedora Linux"\nID=fedora\n')
    f = only(img.check(tmp_path), "BTC-007")
    assert f.severity is Severity.ERROR and f.message == "missing VERSION_ID in os-release"


def test_btc007_no_os_release(tmp_path: Path) -> None:
    img = bootable("bootc")
    img.remove("/etc/os-release")
    f = only(img.check(tmp_path), "BTC-007")
    assert f.message.startswith("no os-release")


# --- BTC-008 bootupd, BTC-009 /boot -----------------------------------------------------------------


def test_btc008_no_bootupd_vendor(tmp_path: Path) -> None:
    img = bootable("bootc")
    img.remove("/usr/lib/bootupd/updates/EFI/fedora")
    img.dir("/usr/lib/bootupd/updates/EFI/BOOT")
    f = only(img.check(tmp_path), "BTC-008")
    assert f.severity is Severity.WARNING and "no UEFI vendor directory" in f.message
    assert f.evidence == ("/usr/lib/bootupd/updates/EFI: BOOT",)


def test_btc009_files_in_boot(tmp_path: Path) -> None:
    img = bootable("bootc")
    img.file("/boot/initramfs-6.8.5.img", b"x").file("/boot/loader.conf", "")
    f = only(img.check(tmp_path), "BTC-009")
    assert f.severity is Severity.WARNING
    assert f.message == "Found non-empty /boot: initramfs-6.8.5.img, loader.conf"


# --- parsers, directly ------------------------------------------------------------------------------


def test_parse_kargs_arch_matching() -> None:
    text = 'kargs = ["console=tty0", "nosmt"]\nmatch-architectures = ["x86_64"]\n'
    assert parse_kargs(text, "x86_64") == ["console=tty0", "nosmt"]
    assert parse_kargs(text, "aarch64") == []
    with pytest.raises(ValueError, match="missing field `kargs`"):
        parse_kargs("# nothing\n", "x86_64")


def test_parse_sysusers_user_declares_its_group() -> None:
    users, groups = parse_sysusers(
        '# c\nu root 0 "Super User" /root\ng wheel 10\nr - 500-900\nm root wheel\n'
    )
    assert users == {"root"} and groups == {"root", "wheel"}
    assert parse_sysusers('u "quoted name" - "Q"\n')[0] == {"quoted name"}


def test_merge_install_config_skips_other_architectures() -> None:
    files = [
        ("00-base.toml", '[install.filesystem.root]\ntype = "xfs"\n'),
        (
            "10-arm.toml",
            '[install]\nmatch-architectures = ["aarch64"]\n[install.filesystem.root]\ntype = "ext4"\n',
        ),
    ]
    assert merge_install_config(files, "x86_64") == ("xfs", "00-base.toml")
    assert merge_install_config(files, "aarch64") == ("ext4", "10-arm.toml")


def test_sample() -> None:
    assert sample(["a", "b"]) == ["a", "b"]
    assert sample([str(n) for n in range(7)]) == ["0", "1", "2", "3", "4", "...and 2 more"]
