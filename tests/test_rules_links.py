"""LNK-001..003 through the real pipeline: a bootable template passes, one change fails it."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from ociboot.boot.rules import rules_for
from ociboot.report import Outcome, Severity
from tests.support.bootimages import KVER, TEMPLATES, BootImage, bootable, failed, findings, passed

LNK = ["LNK-001", "LNK-002", "LNK-003"]


@pytest.mark.parametrize("profile", sorted(TEMPLATES))
def test_templates_pass_every_link_rule(tmp_path: Path, profile: str) -> None:
    report = bootable(profile).check(tmp_path, profile=profile)
    ids = {r.id for r in rules_for(profile)} & set(LNK)
    assert ids == ({"LNK-002"} if profile == "bootc" else set(LNK))
    for rule_id in sorted(ids):
        assert passed(report, rule_id), (rule_id, findings(report, rule_id))


# --- LNK-001 -----------------------------------------------------------------------------------


def test_lnk001_dangling_kernel_link(tmp_path: Path) -> None:
    img = bootable("generic").link("/boot/vmlinuz", "vmlinuz-9.9.9")
    report = img.check(tmp_path)
    (f,) = failed(report, "LNK-001")
    assert f.severity is Severity.ERROR and f.path == "/boot/vmlinuz"
    assert f.message == "/boot/vmlinuz is dangling: no such file or directory at /boot/vmlinuz-9.9.9"
    assert f.evidence[0] == "/boot/vmlinuz -> vmlinuz-9.9.9"
    assert "ln -sf vmlinuz-<kver> /boot/vmlinuz" in (f.hint or "")
    # The initrd link of the same image is still fine and reported as such.
    assert [x.outcome for x in findings(report, "LNK-001")] == [Outcome.FAIL, Outcome.PASS]


def test_lnk001_dangling_after_whiteout(tmp_path: Path) -> None:
    img = bootable("kairos").remove(f"/boot/initrd-{KVER}")
    (f,) = failed(img.check(tmp_path), "LNK-001")
    assert f.path == "/boot/initrd" and "dangling" in f.message


def test_lnk001_loop(tmp_path: Path) -> None:
    img = bootable("cos").link("/boot/vmlinuz", "vmlinuz.a").link("/boot/vmlinuz.a", "vmlinuz")
    (f,) = failed(img.check(tmp_path), "LNK-001")
    assert f.message.startswith("/boot/vmlinuz is a link loop: too many levels of symbolic links")


def test_lnk001_link_to_a_directory(tmp_path: Path) -> None:
    img = bootable("generic").link("/boot/initrd", "/usr/lib")
    (f,) = failed(img.check(tmp_path), "LNK-001")
    assert f.message == "/boot/initrd resolves to a dir, not a regular file: /usr/lib"


def test_lnk001_clamped_target_is_a_warning_in_evidence(tmp_path: Path) -> None:
    img = bootable("generic").link("/boot/vmlinuz", f"../../../boot/vmlinuz-{KVER}")
    report = img.check(tmp_path)
    assert passed(report, "LNK-001")
    (f, _) = findings(report, "LNK-001")
    assert any(
        e.startswith("warning: /boot/vmlinuz -> ../../../boot/") and "climbs above /" in e for e in f.evidence
    )


def test_lnk001_custom_kernel_link_checked(tmp_path: Path) -> None:
    img = bootable("generic").link("/opt/kernel", "/nowhere/vmlinuz")
    report = img.check(tmp_path, kernel="/opt/kernel")
    assert [f.path for f in failed(report, "LNK-001")] == ["/opt/kernel"]


# --- LNK-002 -----------------------------------------------------------------------------------


def chain(img_profile: str, depth: int) -> BootImage:
    """/boot/vmlinuz -> k1 -> ... -> vmlinuz-KVER: `depth` links in all."""
    img = bootable(img_profile)
    names = ["vmlinuz", *(f"k{i}" for i in range(1, depth)), f"vmlinuz-{KVER}"]
    for here, there in itertools.pairwise(names):
        img.link(f"/boot/{here}", there)
    return img


def test_lnk002_five_deep_chain(tmp_path: Path) -> None:
    (f,) = failed(chain("cos", 5).check(tmp_path), "LNK-002")
    assert f.severity is Severity.ERROR and f.path == "/boot/vmlinuz"
    assert "needs 5 links to resolve, more than Elemental's 4" in f.message
    assert f.evidence[0].startswith("/boot/vmlinuz -> k1 -> k2 -> k3 -> k4 -> vmlinuz-")
    report = chain("generic", 5).check(tmp_path)
    assert failed(report, "LNK-002")[0].severity is Severity.WARNING
    assert passed(report, "LNK-001")  # it does resolve; only Elemental gives up


def test_lnk002_four_deep_chain_is_fine(tmp_path: Path) -> None:
    report = chain("cos", 4).check(tmp_path)
    assert passed(report, "LNK-002")
    assert "longest link chain 4" in findings(report, "LNK-002")[0].message


# --- LNK-003 -----------------------------------------------------------------------------------


def test_lnk003_only_an_absolute_kernel_link(tmp_path: Path) -> None:
    # The RHEL layout (kairos#3590): the kernel lives in /usr/lib/modules, /boot has a link to it.
    img = bootable("kairos").drop(f"/boot/vmlinuz-{KVER}")
    img.file(f"/usr/lib/modules/{KVER}/vmlinuz", bootable("generic").paths[f"/boot/vmlinuz-{KVER}"][1])
    img.link("/boot/vmlinuz", f"/usr/lib/modules/{KVER}/vmlinuz")
    report = img.check(tmp_path)
    (f,) = failed(report, "LNK-003")
    assert f.severity is Severity.WARNING and f.path == "/boot/vmlinuz"
    assert "no kernel for Elemental v1 / kairos-agent / AuroraBoot" in f.message
    assert f.hint == f"use a relative link (ln -sf ../usr/lib/modules/{KVER}/vmlinuz /boot/vmlinuz)"
    # ... and that fix is what Elemental v1 then finds.
    img.link("/boot/vmlinuz", f"../usr/lib/modules/{KVER}/vmlinuz")
    assert passed(img.check(tmp_path), "LNK-003")
    assert passed(report, "LNK-001")  # inside the image the link is fine


def test_lnk003_relative_link_passes(tmp_path: Path) -> None:
    img = bootable("kairos").link("/boot/vmlinuz", f"vmlinuz-{KVER}")
    report = img.check(tmp_path)
    assert passed(report, "LNK-003")
    assert findings(report, "LNK-003")[0].message == "no absolute kernel or initrd links in /boot"


def test_lnk003_absolute_initrd_link_with_a_file_after_it(tmp_path: Path) -> None:
    img = bootable("cos").link("/boot/initrd", f"/boot/elemental.initrd-{KVER}")
    report = img.check(tmp_path)
    (f,) = failed(report, "LNK-003")  # 'elemental.initrd-*' has no v1 prefix: nothing follows
    assert "no initrd" in f.message
    img = bootable("generic").link("/boot/initrd", f"/boot/initrd-{KVER}")
    assert passed(img.check(tmp_path), "LNK-003")
