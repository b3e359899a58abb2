"""Package rules (PKG-001, PKG-002) through the real pipeline, with real databases: dpkg status
(generic template), rpm sqlite (bootc template), an apk installed file, a luet bbolt database and
corrupt copies of them."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from ociboot.boot.pkgdb import luet as luet_reader
from ociboot.boot.profiles import load_policy
from ociboot.report import Outcome, Severity
from tests.support.boltwriter import branch_chain
from tests.support.bootimages import FIXTURES, BootImage, bootable, failed, findings, passed
from tests.support.imagebuilder import LayerBuilder

RPMDB = "/usr/lib/sysimage/rpm/rpmdb.sqlite"
DPKG = "/var/lib/dpkg/status"
APK = "/usr/lib/apk/db/installed"
LUET = "/var/cache/luet/luet.db"


def _outcomes(report: object, rule: str) -> list[tuple[Outcome, str]]:
    return [(f.outcome, f.message) for f in findings(report, rule)]  # type: ignore[arg-type]


def alpine() -> BootImage:
    img = bootable("generic").drop(DPKG)
    img.file("/etc/os-release", 'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.20.0\n')
    return img.file(APK, (FIXTURES / "pkgdb" / "apk-installed").read_bytes())


def luet() -> BootImage:
    """A cOS luet-era image: no distribution database, os-release of a derivative."""
    img = bootable("cos").drop(DPKG)
    img.file("/etc/os-release", 'NAME="cOS"\nID=cos\nVERSION_ID=0.8.14\n')
    return img.file(LUET, (FIXTURES / "pkgdb" / "luet.db").read_bytes())


# --- PKG-001 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["generic", "cos", "kairos", "bootc"])
def test_templates_pass_pkg001(tmp_path: Path, profile: str) -> None:
    report = bootable(profile).check(tmp_path, profile=profile)
    assert passed(report, "PKG-001"), findings(report, "PKG-001")
    messages = " | ".join(m for _, m in _outcomes(report, "PKG-001"))
    assert "init: systemd" in messages and "kernel: " in messages


def test_dpkg_roles_name_packages_and_versions(tmp_path: Path) -> None:
    report = bootable("generic").check(tmp_path, profile="generic")
    by_role = {f.message.split(":")[0]: f for f in findings(report, "PKG-001")}
    assert by_role["kernel"].message == "kernel: linux-image-6.1.0-28-amd64 6.1.119-1"
    assert by_role["initramfs"].message.startswith("initramfs: dracut-core ")
    assert by_role["kernel"].path == DPKG


def test_rpm_sqlite_roles(tmp_path: Path) -> None:
    report = bootable("bootc").check(tmp_path, profile="bootc")
    messages = {m.split(":")[0]: m for _, m in _outcomes(report, "PKG-001")}
    assert messages["kernel"].startswith("kernel: kernel-core 6.8.5-301.fc40")
    assert messages["bootloader"].startswith("bootloader: grub2-efi-x64 1:2.06")
    assert messages["init"].startswith("init: systemd 255.4")  # not systemd-libs


def test_missing_role_package_warns_under_cos(tmp_path: Path) -> None:
    status = (FIXTURES / "pkgdb" / "dpkg-status").read_text()
    # Drop grub from the database (the paragraph with grub-efi-amd64-bin).
    paragraphs = [p for p in status.split("\n\n") if "Package: grub-efi-amd64-bin" not in p]
    img = bootable("cos").file(DPKG, "\n\n".join(paragraphs))
    report = img.check(tmp_path, profile="cos")
    (f,) = failed(report, "PKG-001")
    assert f.severity is Severity.WARNING and "no bootloader package" in f.message and f.path == DPKG
    assert "file evidence: grub2-editenv at /usr/bin/grub2-editenv" in f.evidence  # files still shown
    assert {f.severity for f in failed(img.check(tmp_path, profile="generic"), "PKG-001")} == {Severity.INFO}


def test_apk_database_with_alpine_names(tmp_path: Path) -> None:
    report = alpine().check(tmp_path, profile="kairos")
    assert passed(report, "PKG-001"), findings(report, "PKG-001")
    messages = " | ".join(m for _, m in _outcomes(report, "PKG-001"))
    for expected in ("kernel: linux-lts", "bootloader: grub-efi", "init: openrc", "initramfs: mkinitfs"):
        assert expected in messages


def test_luet_database_roles_and_file_fallback_for_init(tmp_path: Path) -> None:
    report = luet().check(tmp_path, profile="cos")
    assert passed(report, "PKG-001"), findings(report, "PKG-001")
    messages = {m.split(":")[0]: m for _, m in _outcomes(report, "PKG-001")}
    assert messages["kernel"].startswith("kernel: system/kernel")
    assert messages["initramfs"].startswith("initramfs: system/dracut-initrd")
    # luet names no init package: systemd is shown from the files instead.
    assert "file evidence: systemd" in messages["init"]


def test_no_database_uses_file_evidence(tmp_path: Path) -> None:
    img = bootable("generic").drop(DPKG)
    report = img.check(tmp_path, profile="cos")
    (f,) = findings(report, "PKG-001")
    assert f.outcome is Outcome.PASS
    assert f.message.startswith("no package database; file evidence: ")
    assert "dracut at /usr/bin/dracut" in f.message and "grub2-editenv at /usr/bin/grub2-editenv" in f.message
    assert "systemd via /sbin/init" in f.message
    img.drop("/usr/bin/dracut")
    (f,) = failed(img.check(tmp_path, profile="cos"), "PKG-001")
    assert "no file evidence of a initramfs" in f.message


def test_corrupt_database_is_a_finding_and_roles_are_undecided(tmp_path: Path) -> None:
    data = gzip.decompress((FIXTURES / "pkgdb" / "rpmdb.sqlite.gz").read_bytes())
    img = bootable("bootc").file(RPMDB, data[: len(data) // 2])
    report = img.check(tmp_path, profile="bootc")
    results = findings(report, "PKG-001")
    fails = [f for f in results if f.outcome is Outcome.FAIL]
    assert len(fails) == 1 and fails[0].path == RPMDB and "malformed" in fails[0].message
    undecided = [f for f in results if f.outcome is Outcome.ERROR]
    assert len(undecided) == 4 and all("cannot tell" in f.message for f in undecided)
    assert not passed(report, "PKG-001")


def test_corrupt_luet_beside_a_good_database_still_decides(tmp_path: Path) -> None:
    img = bootable("generic").file(LUET, (FIXTURES / "pkgdb" / "luet.db").read_bytes()[:100])
    report = img.check(tmp_path, profile="generic")
    results = findings(report, "PKG-001")
    (bad,) = [f for f in results if f.outcome is Outcome.FAIL]
    assert bad.path == LUET and "past the end" in bad.message
    assert sum(f.outcome is Outcome.PASS for f in results) == 4


def _deep_luet() -> BootImage:
    """cOS without a distribution database, its luet.db a 3000-deep chain of branch pages."""
    img = luet()
    return img.file(LUET, branch_chain(3000, [{"name": "kernel", "category": "system", "version": "1"}]))


def _names_unreadable_luet(report: object) -> None:
    results = findings(report, "PKG-001")  # type: ignore[arg-type]
    (bad,) = [f for f in results if f.outcome is Outcome.FAIL]
    assert bad.path == LUET and "could not be read" in bad.message
    assert not any(f.outcome is Outcome.PASS for f in results), results
    assert [f.outcome for f in results if f.outcome is Outcome.ERROR] == [Outcome.ERROR] * 4


def test_luet_deep_branch_chain_is_a_finding(tmp_path: Path) -> None:
    report = _deep_luet().check(tmp_path, profile="cos")
    _names_unreadable_luet(report)
    (bad,) = [f for f in findings(report, "PKG-001") if f.outcome is Outcome.FAIL]
    assert "deeper than" in bad.message


def test_a_reader_that_crashes_still_names_its_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without its depth bound the reader meets Python's recursion limit: whatever a reader
    # raises, the database is reported as unreadable and its roles stay undecided.
    monkeypatch.setattr(luet_reader, "MAX_TREE_DEPTH", 1 << 20)
    report = _deep_luet().check(tmp_path, profile="cos")
    _names_unreadable_luet(report)
    (bad,) = [f for f in findings(report, "PKG-001") if f.outcome is Outcome.FAIL]
    assert "RecursionError" in bad.message


class _Linked(BootImage):
    """The image plus an upper layer holding `link` as a hard link to a file elsewhere."""

    link: tuple[str, str] = ("", "")

    def upper_layers(self) -> list[tuple[LayerBuilder, str]]:
        path, target = self.link
        top = LayerBuilder().file(target.lstrip("/"), (FIXTURES / "pkgdb" / "dpkg-status").read_bytes())
        top.hardlink(path.lstrip("/"), target.lstrip("/"))
        return [*super().upper_layers(), (top, "gzip")]


@pytest.mark.parametrize("how", ["hardlink", "symlink"])
def test_a_database_that_was_not_read_is_never_absent(tmp_path: Path, how: str) -> None:
    # The database at a known location is a link to a file nobody analyzed: before, it simply was
    # not there, and PKG-001 passed on file evidence.
    if how == "hardlink":
        img: BootImage = _Linked(paths=bootable("cos").drop(DPKG).paths)
        img.link = (DPKG, "/opt/status")  # type: ignore[attr-defined]
    else:
        img = bootable("cos").drop(DPKG)
        img.file("/opt/status", (FIXTURES / "pkgdb" / "dpkg-status").read_bytes()).link(DPKG, "/opt/status")
    report = img.check(tmp_path, profile="cos")
    results = findings(report, "PKG-001")
    (bad,) = [f for f in results if f.outcome is Outcome.FAIL]
    assert bad.path == DPKG and "not read" in bad.message, bad
    assert not any(f.outcome is Outcome.PASS for f in results), results


# --- PKG-002 -------------------------------------------------------------------------------------


def test_require_package_not_given_is_skipped(tmp_path: Path) -> None:
    report = bootable("generic").check(tmp_path, profile="generic")
    assert [f.outcome for f in findings(report, "PKG-002")] == [Outcome.SKIP]


@pytest.mark.parametrize("profile", ["generic", "cos", "kairos", "bootc"])
def test_require_package_is_an_error_in_every_profile(tmp_path: Path, profile: str) -> None:
    report = bootable(profile).check(tmp_path, profile=profile, require_packages=("no-such-package",))
    (f,) = failed(report, "PKG-002")
    assert f.severity is Severity.ERROR and "no-such-package is not installed" in f.message


def test_require_exact_names_on_dpkg(tmp_path: Path) -> None:
    img = bootable("generic")
    report = img.check(
        tmp_path, profile="generic", require_packages=("systemd", "libsystemd0", "initramfs-tools")
    )
    results = {f.message.split(" ")[0]: f for f in findings(report, "PKG-002")}
    assert results["systemd"].outcome is Outcome.PASS
    assert results["libsystemd0"].outcome is Outcome.PASS
    # Removed with config files left: dpkg says deinstall, so it is not installed.
    assert results["initramfs-tools"].outcome is Outcome.FAIL


def test_library_does_not_satisfy_systemd(tmp_path: Path) -> None:
    status = (FIXTURES / "pkgdb" / "dpkg-status").read_text()
    paragraphs = [p for p in status.split("\n\n") if not p.startswith("Package: systemd\n")]
    img = bootable("generic").file(DPKG, "\n\n".join(paragraphs))
    report = img.check(tmp_path, profile="generic", require_packages=("systemd",))
    (f,) = failed(report, "PKG-002")
    assert "systemd is not installed" in f.message
    assert any("libsystemd0" in e and "not the exact name" in e for e in f.evidence)


def test_require_roles(tmp_path: Path) -> None:
    roles = ("kernel", "bootloader", "init", "initramfs")
    report = bootable("bootc").check(tmp_path, profile="bootc", require_packages=roles)
    assert passed(report, "PKG-002"), findings(report, "PKG-002")
    # 'kernel' is also a Fedora package name; the fixture has only kernel-core: the role counts.
    assert any(m.startswith("role kernel: kernel-core") for _, m in _outcomes(report, "PKG-002"))
    status = (FIXTURES / "pkgdb" / "dpkg-status").read_text()
    paragraphs = [p for p in status.split("\n\n") if "Package: dracut-core" not in p]
    img = bootable("generic").file(DPKG, "\n\n".join(paragraphs))
    (f,) = failed(img.check(tmp_path, profile="generic", require_packages=roles), "PKG-002")
    assert f.message == "no package fills the initramfs role"


def test_require_on_apk_and_luet(tmp_path: Path) -> None:
    report = alpine().check(tmp_path, profile="generic", require_packages=("openrc", "init", "systemd"))
    outcomes = [f.outcome for f in findings(report, "PKG-002")]
    assert outcomes == [Outcome.PASS, Outcome.PASS, Outcome.FAIL]
    report = luet().check(tmp_path, profile="cos", require_packages=("meta/cos-minimal", "cos-minimal"))
    outcomes = [f.outcome for f in findings(report, "PKG-002")]
    assert outcomes == [Outcome.PASS, Outcome.FAIL]  # exact names include the luet category


def test_require_without_database_cannot_tell(tmp_path: Path) -> None:
    img = bootable("generic").drop(DPKG)
    report = img.check(tmp_path, profile="generic", require_packages=("systemd",))
    (f,) = failed(report, "PKG-002")
    assert f.outcome is Outcome.ERROR and f.message == "systemd: cannot tell: no package database found"
    assert f.blocking  # an unknown answer to an explicit requirement fails the verdict


def test_require_with_corrupt_database_cannot_tell(tmp_path: Path) -> None:
    data = gzip.decompress((FIXTURES / "pkgdb" / "rpmdb.sqlite.gz").read_bytes())
    img = bootable("bootc").file(RPMDB, data[:4096])
    (f,) = failed(img.check(tmp_path, profile="bootc", require_packages=("systemd",)), "PKG-002")
    assert f.outcome is Outcome.ERROR and "unreadable" in f.message
    assert any(RPMDB in e and "malformed" in e for e in f.evidence)


def test_require_packages_from_policy_file(tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text('profile = "bootc"\nrequire-packages = ["dracut", "grub2-tools"]\n')
    policy = load_policy(policy_file)
    report = bootable("bootc").check(
        tmp_path, profile=policy.profile, require_packages=policy.require_packages
    )
    outcomes = {f.message.split(" ")[0]: f.outcome for f in findings(report, "PKG-002")}
    assert outcomes == {"dracut": Outcome.PASS, "grub2-tools": Outcome.FAIL}
