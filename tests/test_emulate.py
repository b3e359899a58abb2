"""The tool emulations (ociboot.boot.emulate) through the real pipeline: every rule that says
what a tool picks says the same thing, because each asks the one emulation of that tool."""

from __future__ import annotations

from pathlib import Path

from ociboot.report import Outcome, Report, Severity
from tests.support.bootimages import KVER, BootImage, bootable, failed, findings, kernel, passed

OTHER = "6.2.0-1-amd64"


def four_links_and_a_linked_dir() -> BootImage:
    """/boot/Image -> i1 -> i2 -> i3 -> ../d/k with /d -> /real: Elemental v2 reads four links
    (the linked /d is the kernel's path walk, not one of its hops); Elemental v1 stats /boot/i1
    on the host, where /d -> /real leads out of the image, so it passes /boot/Image over."""
    img = bootable("cos")
    img.link("/boot/Image", "i1").link("/boot/i1", "i2").link("/boot/i2", "i3").link("/boot/i3", "../d/k")
    img.link("/d", "/real").file("/real/k", kernel(OTHER))
    return img


def evidence(report: Report, rule: str) -> list[str]:
    return [e for f in findings(report, rule) for e in f.evidence]


def test_every_rule_tells_the_same_picks(tmp_path: Path) -> None:
    report = four_links_and_a_linked_dir().check(tmp_path, profile="cos")
    v2, v1 = "/real/k", f"/boot/vmlinuz-{KVER}"
    # COS-002: Elemental v2 finds /boot/Image (its E3 then finds no version in /d/k), v1 another file.
    cos = failed(report, "COS-002")
    assert cos[0].message == "Elemental v2: could not determine the version of kernel /d/k"
    assert (
        cos[0].evidence[0]
        == "/boot/Image* matched first: /boot/Image -> /boot/i1 -> /boot/i2 -> /boot/i3 -> /d/k"
    )
    assert cos[1].severity is Severity.WARNING
    assert cos[1].message == f"Elemental v1 and v2 pick different kernel files: v1 {v1}, v2 {v2}"
    # KRN-006: the same two picks, so the tools disagree.
    (krn,) = failed(report, "KRN-006")
    assert "Elemental v2: /boot/Image (= /real/k)" in krn.evidence
    assert any(
        e.startswith(f"Elemental v1 / kairos-agent / AuroraBoot: /boot/vmlinuz (= {v1})")
        for e in krn.evidence
    )
    # LNK-002: four links is within Elemental's limit, as COS-002 found.
    assert passed(report, "LNK-002")
    assert "longest link chain 4" in findings(report, "LNK-002")[0].message
    # LNK-003: v1 passed /boot/Image over because of the absolute /d -> /real, and takes v1.
    (lnk,) = findings(report, "LNK-003")
    assert lnk.outcome is Outcome.PASS and lnk.path == "/boot/Image"
    assert lnk.message == (
        "absolute kernel link(s) /d -> /real (on the way from /boot/Image) passed over; "
        f"{v1} follows in sorted order"
    )
    # Whatever the rule, no line says v2 finds nothing or v1 finds /real/k.
    lines = [line for rule in ("COS-002", "KRN-006", "LNK-002", "LNK-003") for line in evidence(report, rule)]
    assert not any("Elemental v2: nothing" in line or "too many nested links" in line for line in lines)
    assert not any("both pick" in line for line in lines)


def test_a_fifth_link_is_one_too_many_for_every_rule(tmp_path: Path) -> None:
    img = four_links_and_a_linked_dir()
    img.link("/boot/i3", "i4").link("/boot/i4", "../d/k")
    report = img.check(tmp_path, profile="cos")
    assert failed(report, "COS-002")[0].message == (
        "Elemental v2: No Kernel file found: can't resolve this path '/boot/i4', too many nested links"
    )
    (lnk,) = failed(report, "LNK-002")
    assert lnk.message == "/boot/Image needs 5 links to resolve, more than Elemental's 4"
    (krn,) = failed(report, "KRN-006")
    too_deep = "can't resolve this path '/boot/i4', too many nested links"
    assert f"Elemental v2: nothing (No Kernel file found: {too_deep})" in krn.evidence


def test_lnk003_names_the_absolute_link_on_the_way(tmp_path: Path) -> None:
    # Only /boot/Image is a kernel entry, and its way goes through /d -> /real: v1 finds nothing.
    img = bootable("cos").drop("/boot/vmlinuz").drop(f"/boot/vmlinuz-{KVER}")
    img.link("/boot/Image", "../d/k").link("/d", "/real").file("/real/k", kernel(KVER))
    (f,) = failed(img.check(tmp_path, profile="cos"), "LNK-003")
    assert f.path == "/boot/Image" and f.severity is Severity.WARNING
    assert f.hint == "use a relative link (ln -sf real /d)"
