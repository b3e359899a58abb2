"""System rules (INIT-001, OSR-001, LAY-001..005, SSH-001, SIZ-001) through the real pipeline:
each starts from a bootable template, changes one thing, and reads the verdict."""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ociboot.boot.rules.system import (
    COS_IMAGE_SIZE,
    KAIROS_FACTOR,
    MIB,
    root_size,
    size_checks,
)
from ociboot.render import render_junit, render_sarif
from ociboot.report import Outcome, Severity, render_json, render_text
from tests.support.bootimages import BootImage, bootable, failed, findings, passed
from tests.support.imagebuilder import LayerBuilder

SYSTEM_RULES = (
    "INIT-001",
    "OSR-001",
    "LAY-001",
    "LAY-002",
    "LAY-003",
    "LAY-004",
    "LAY-005",
    "SSH-001",
    "SIZ-001",
)


@dataclass
class Layered(BootImage):
    """A BootImage with extra upper layers written member by member (odd names, hardlinks)."""

    upper: list[LayerBuilder] = field(default_factory=list)

    @classmethod
    def of(cls, img: BootImage, *layers: LayerBuilder) -> Layered:
        return cls(img.arch, img.labels, img.paths, img.removed, list(layers))

    def upper_layers(self) -> list[tuple[LayerBuilder, str]]:
        return [(layer, "gzip") for layer in self.upper]


def _sev(report: Any, rule: str) -> set[Severity]:
    return {f.severity for f in failed(report, rule)}


@pytest.mark.parametrize("profile", ["generic", "cos", "kairos", "bootc"])
def test_templates_pass_every_system_rule(tmp_path: Path, profile: str) -> None:
    report = bootable(profile).check(tmp_path, profile=profile)
    for rule in SYSTEM_RULES:
        assert passed(report, rule), (rule, findings(report, rule))


# --- INIT-001 ------------------------------------------------------------------------------------


def test_init_follows_links_to_systemd(tmp_path: Path) -> None:
    report = bootable("generic").check(tmp_path, profile="generic")
    (f,) = findings(report, "INIT-001")
    assert "/usr/lib/systemd/systemd" in f.message
    # The chain shows every hop, including the /sbin -> usr/sbin parent link.
    assert any("/sbin -> usr/sbin" in e and "../lib/systemd/systemd" in e for e in f.evidence)


def test_init_dangling_sbin_init_fails(tmp_path: Path) -> None:
    img = bootable("generic").remove("/usr/lib/systemd/systemd")
    report = img.check(tmp_path, profile="generic")
    (f,) = failed(report, "INIT-001")
    assert f.severity is Severity.ERROR
    assert "dangling" in f.message and "/usr/sbin/init -> ../lib/systemd/systemd" in f.message
    assert f.hint


def test_init_missing_sbin_init_but_systemd_passes(tmp_path: Path) -> None:
    img = bootable("generic").drop("/usr/sbin/init")
    report = img.check(tmp_path, profile="cos")
    assert passed(report, "INIT-001")
    assert "systemd" in findings(report, "INIT-001")[0].message


def test_init_not_executable_fails(tmp_path: Path) -> None:
    img = bootable("generic").file("/usr/lib/systemd/systemd", b"\x7fELF", 0o644)
    report = img.check(tmp_path, profile="generic")
    (f,) = failed(report, "INIT-001")
    assert "not an executable" in f.message


def _busybox_init(img: BootImage) -> BootImage:
    img.drop("/usr/lib/systemd")
    img.exe("/usr/bin/busybox")
    return img.link("/usr/sbin/init", "/usr/bin/busybox")


def test_init_non_systemd_passes_generic_fails_cos_and_bootc(tmp_path: Path) -> None:
    assert passed(_busybox_init(bootable("generic")).check(tmp_path, profile="generic"), "INIT-001")
    for profile in ("cos", "bootc"):
        report = _busybox_init(bootable(profile)).check(tmp_path, profile=profile)
        (f,) = failed(report, "INIT-001")
        assert "no systemd found" in f.message and "/usr/bin/busybox" in f.message


def _alpine(img: BootImage) -> BootImage:
    img.file("/etc/os-release", 'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.20.0\n')
    img.exe("/usr/sbin/openrc")
    return _busybox_init(img)


def test_init_openrc_accepted_on_alpine_under_kairos_only(tmp_path: Path) -> None:
    report = _alpine(bootable("kairos")).check(tmp_path, profile="kairos")
    assert passed(report, "INIT-001")
    assert "OpenRC" in findings(report, "INIT-001")[0].message
    report = _alpine(bootable("cos")).check(tmp_path, profile="cos")
    assert failed(report, "INIT-001")
    # OpenRC outside Alpine is not the Kairos flavor kairos-init builds.
    img = _busybox_init(bootable("kairos")).exe("/usr/sbin/openrc")
    assert failed(img.check(tmp_path, profile="kairos"), "INIT-001")


# --- OSR-001 -------------------------------------------------------------------------------------


def test_os_release_missing_key_is_error_for_bootc_warning_elsewhere(tmp_path: Path) -> None:
    img = bootable("bootc").file("/etc/os-release", 'NAME="Fedora Linux"\nID=fedora\n')
    report = img.check(tmp_path, profile="bootc")
    (f,) = failed(report, "OSR-001")
    assert f.severity is Severity.ERROR and "VERSION_ID" in f.message and f.path == "/etc/os-release"
    img = bootable("generic").file("/etc/os-release", "ID=debian\nVERSION_ID=12\n")
    (f,) = failed(img.check(tmp_path, profile="generic"), "OSR-001")
    assert f.severity is Severity.WARNING and "NAME" in f.message


def test_os_release_falls_back_to_usr_lib(tmp_path: Path) -> None:
    img = bootable("bootc").drop("/etc/os-release")
    img.file("/usr/lib/os-release", 'NAME="Fedora Linux"\nID=fedora\nVERSION_ID=40\n')
    img.link("/etc/os-release", "../usr/lib/os-release")
    assert passed(img.check(tmp_path, profile="bootc"), "OSR-001")
    img.drop("/etc/os-release")
    assert passed(img.check(tmp_path, profile="bootc"), "OSR-001")


def test_os_release_absent_fails(tmp_path: Path) -> None:
    img = bootable("bootc").remove("/etc/os-release")
    (f,) = failed(img.check(tmp_path, profile="bootc"), "OSR-001")
    assert "no os-release" in f.message and "/etc/os-release: missing" in f.evidence


# --- LAY-001..003 --------------------------------------------------------------------------------


def test_api_dir_symlink_or_missing_fails_bootc(tmp_path: Path) -> None:
    img = bootable("bootc").drop("/tmp").link("/tmp", "var/tmp").remove("/proc")
    report = img.check(tmp_path, profile="bootc")
    bad = {f.path: f for f in failed(report, "LAY-001")}
    assert set(bad) == {"/tmp", "/proc"}
    assert "symlink" in bad["/tmp"].message and "missing" in bad["/proc"].message
    assert _sev(report, "LAY-001") == {Severity.ERROR}
    assert _sev(img.check(tmp_path, profile="generic"), "LAY-001") == {Severity.INFO}


def test_var_run_directory_fails(tmp_path: Path) -> None:
    img = bootable("bootc").drop("/var/run").dir("/var/run")
    assert _sev(img.check(tmp_path, profile="bootc"), "LAY-002") == {Severity.ERROR}
    assert _sev(img.check(tmp_path, profile="kairos"), "LAY-002") == {Severity.WARNING}
    assert passed(bootable("bootc").drop("/var/run").check(tmp_path, profile="bootc"), "LAY-002")


def test_etc_and_usr_etc_fails(tmp_path: Path) -> None:
    img = bootable("bootc").file("/usr/etc/fstab", "")
    (f,) = failed(img.check(tmp_path, profile="bootc"), "LAY-003")
    assert f.severity is Severity.ERROR and "/usr/etc" in f.message


# --- LAY-004 -------------------------------------------------------------------------------------


def _raw(name: bytes, kind: bytes = tarfile.REGTYPE, target: bytes = b"") -> tarfile.TarInfo:
    # tarfile writes str names; surrogateescape turns them back into the exact bytes.
    info = tarfile.TarInfo(name.decode("utf-8", "surrogateescape"))
    info.type = kind
    info.mode = 0o777 if kind == tarfile.SYMTYPE else 0o644
    info.linkname = target.decode("utf-8", "surrogateescape")
    return info


class _BadNames(LayerBuilder):
    """Writes names as raw bytes: GNU format keeps them in the header as given (PAX would
    store them as a UTF-8 `path` record, which is how tarfile refuses invalid bytes)."""

    def tar(self, *, fmt: int = tarfile.GNU_FORMAT, end_blocks: bool = True) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(
            fileobj=buf, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape"
        ) as tf:
            for m in self.members:
                tf.addfile(m.info, io.BytesIO(m.data) if m.data is not None else None)
        return buf.getvalue()


def test_non_utf8_names_and_targets_fail(tmp_path: Path) -> None:
    layer = _BadNames()
    layer.raw(_raw(b"etc/caf\xe9.conf"), b"")
    layer.raw(_raw(b"usr/bin/link", tarfile.SYMTYPE, b"caf\xe9"))
    img = Layered.of(bootable("bootc"), layer)
    report = img.check(tmp_path, profile="bootc")
    # Findings hold the names as the image has them; the renderers escape (test_textsafe.py).
    bad = {f.path: f for f in failed(report, "LAY-004")}
    assert set(bad) == {"/etc/caf\udce9.conf", "/usr/bin/link"}, bad
    assert "non-UTF-8 file name" in bad["/etc/caf\udce9.conf"].message
    assert bad["/etc/caf\udce9.conf"].evidence == ("byte 8 (0xe9) is not UTF-8",)
    assert "symlink target caf\udce9" in bad["/usr/bin/link"].message
    assert bad["/usr/bin/link"].evidence == ("byte 3 (0xe9) is not UTF-8",)
    assert _sev(report, "LAY-004") == {Severity.ERROR}
    # Every renderer writes it as UTF-8, the byte as \xe9 (no lone surrogate leaks out).
    for render in (render_text, render_json, render_sarif, render_junit):
        assert "/etc/caf\\xe9.conf" in render([report]).encode("utf-8").decode("utf-8").replace("\\\\", "\\")


# --- LAY-005 -------------------------------------------------------------------------------------


def test_build_leftovers_each_reported(tmp_path: Path) -> None:
    img = bootable("bootc")
    img.file("/run/dnf/metadata_lock.pid", "123\n").file("/tmp/build.sh", "#!/bin/sh\n")
    img.file("/var/log/dnf5.log", "installed things\n").file("/var/log/empty.log", "")
    img.file("/etc/resolv.conf", "")
    report = img.check(tmp_path, profile="bootc")
    by_path = {f.path: f for f in failed(report, "LAY-005")}
    assert set(by_path) == {"/run/dnf", "/var/log/dnf5.log", "/etc/resolv.conf"}, by_path
    assert {"/run/dnf", "/run/dnf/metadata_lock.pid", "/tmp/build.sh"} <= set(by_path["/run/dnf"].evidence)
    assert by_path["/var/log/dnf5.log"].evidence == ("/var/log/dnf5.log",)  # the empty log is fine
    assert _sev(report, "LAY-005") == {Severity.WARNING}
    assert _sev(img.check(tmp_path, profile="generic"), "LAY-005") == {Severity.INFO}


def test_podman_mount_leftovers_are_ignored(tmp_path: Path) -> None:
    img = bootable("bootc")
    img.file("/run/systemd/resolve/stub-resolv.conf", "").dir("/run/secrets").file("/run/.containerenv", "")
    assert passed(img.check(tmp_path, profile="bootc"), "LAY-005")
    img.file("/run/systemd/resolve/stub-resolv.conf", "nameserver 10.0.0.1\n")
    (f,) = failed(img.check(tmp_path, profile="bootc"), "LAY-005")
    assert "/run/systemd/resolve/stub-resolv.conf" in f.evidence


# --- SSH-001 -------------------------------------------------------------------------------------


def test_ssh_host_keys_fail_kairos_as_error(tmp_path: Path) -> None:
    img = bootable("kairos").file("/etc/ssh/ssh_host_ed25519_key", "secret", 0o600)
    img.file("/etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAA")
    report = img.check(tmp_path, profile="kairos")
    (f,) = failed(report, "SSH-001")
    assert f.severity is Severity.ERROR and f.path == "/etc/ssh/ssh_host_ed25519_key" and f.hint
    assert _sev(img.check(tmp_path, profile="generic"), "SSH-001") == {Severity.WARNING}
    # Public keys alone identify nothing secret.
    only_pub = bootable("kairos").file("/etc/ssh/ssh_host_rsa_key.pub", "ssh-rsa AAAA")
    assert passed(only_pub.check(tmp_path, profile="kairos"), "SSH-001")


# --- SIZ-001 -------------------------------------------------------------------------------------


def test_size_limits_pure() -> None:
    (cos,) = size_checks(COS_IMAGE_SIZE, 0, "cos")
    assert cos.limit == 3240 * MIB and not cos.over
    (cos,) = size_checks(COS_IMAGE_SIZE + 1, 0, "cos")
    assert cos.over and "3240.0 MiB" in cos.describe(COS_IMAGE_SIZE + 1)
    (kai,) = size_checks(250, 100, "kairos")
    assert kai.limit == int(100 * KAIROS_FACTOR) and not kai.over
    (kai,) = size_checks(251, 100, "kairos")
    assert kai.over
    assert size_checks(10, 0, "kairos") == []  # compressed size unknown: no Kairos estimate
    assert len(size_checks(10, 10, "generic")) == 2


def _file_bytes(img: BootImage) -> int:
    return sum(len(v[1]) for v in img.paths.values() if v[0] == "file")


def test_root_size_is_exact_hardlinks_once_whiteouts_excluded(tmp_path: Path) -> None:
    img = bootable("generic")
    expected = _file_bytes(img) - len(img.paths["/etc/hostname"][1])
    upper = LayerBuilder()
    upper.file("opt/blob", b"x" * 5000)
    upper.hardlink("opt/blob-again", "opt/blob")
    upper.whiteout("etc/hostname")
    upper.file("etc/group", b"root:x:0:\nwheel:x:10:\n")  # replaces a lower file: new size counts
    expected += 5000 + len(b"root:x:0:\nwheel:x:10:\n") - len(img.paths["/etc/group"][1])
    report = Layered.of(img, upper).check(tmp_path, profile="generic")
    (f,) = findings(report, "SIZ-001")
    assert f.outcome is Outcome.PASS
    assert f"root is {expected} bytes" in f.message, (expected, f.message)


def test_root_size_function_counts_hardlink_targets_once(tmp_path: Path) -> None:
    from ociboot.fs.node import Entry, Kind, Node

    a = Node(Entry("a", Kind.FILE, size=10), 0)
    b = Node(a.entry, 0, hardlink=Entry("b", Kind.HARDLINK, linkname="a"))
    c = Node(Entry("c", Kind.FILE, size=5), 1)
    d = Node(Entry("d", Kind.DIR, size=4096), 0, children={})
    assert root_size([("/a", a), ("/b", b), ("/c", c), ("/d", d)]) == (15, 2)


def test_kairos_allocation_exceeded_by_compressible_root(tmp_path: Path) -> None:
    img = bootable("kairos").file("/opt/zeros", bytes(20 << 20))
    report = img.check(tmp_path, profile="kairos")
    (f,) = failed(report, "SIZ-001")
    assert f.severity is Severity.WARNING and "Kairos allocation" in f.message
    # cos sizes against a fixed 3240 MiB, which 20 MiB fits.
    assert passed(img.check(tmp_path, profile="cos"), "SIZ-001")
    # generic and bootc only report the comparison.
    (f,) = findings(img.check(tmp_path, profile="generic"), "SIZ-001")
    assert f.outcome is Outcome.PASS and any("> Kairos allocation" in e for e in f.evidence)
