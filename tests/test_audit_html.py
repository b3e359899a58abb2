"""The audit's HTML report (ociboot.audit.html): inert hostile text, a page that fetches nothing,
rule links that land on their docs, and what headless Chromium shows a person."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from ociboot.audit.html import CONTENT_SECURITY_POLICY, MAX_SHOWN_ERROR, render, rule_anchor
from ociboot.audit.record import AuditRecord, from_checked
from ociboot.boot.context import Policy
from ociboot.boot.rules import ALL_RULES
from ociboot.pipeline import Options, check_reference
from ociboot.report import RULES_DOC_URL
from ociboot.spec import Platform
from tests.support.bootimages import bootable
from tests.support.imagebuilder import write_oci_archive

REPO = Path(__file__).resolve().parent.parent
#: Installed by the README's test block (tests/npm/package.json pins it).
PLAYWRIGHT = REPO / "tests" / "npm" / "node_modules" / "playwright-core"
BROWSER_SCRIPT = REPO / "tests" / "support" / "html_browser.mjs"
CHROMIUM = Path("/usr/bin/chromium")
REGISTRY = "127.0.0.1:5000"
#: What a hostile registry or --resume file may put where the report shows text.
SCRIPT = "</script><script>document.title='owned'</script><!--"
ATTRIBUTE = "\"'><img src=x onerror=alert(1)>"
#: Were it markup, the browser would fetch it (a loopback address: nothing listens there).
FETCH = '<img src="http://127.0.0.1:9/leak"><link rel=stylesheet href="http://127.0.0.1:9/css">'


def _digest(n: int) -> str:
    return "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()


def _records() -> list[AuditRecord]:
    """An audit of three repositories: shared digests, a failing tag, an unreadable one."""
    ok, broken, other = _digest(1), _digest(2), _digest(3)
    return [
        AuditRecord(REGISTRY, "os/debian", "12", ok, True, platforms=("linux/amd64",)),
        AuditRecord(REGISTRY, "os/debian", "latest", ok, True, platforms=("linux/amd64",)),
        AuditRecord(REGISTRY, "os/debian", "13", broken, False, ("KRN-001", "LNK-001"), ("OSR-001",)),
        AuditRecord(REGISTRY, "os/fedora", "40", other, True),
        AuditRecord(REGISTRY, "os/fedora", "9", other, True),
        AuditRecord(REGISTRY, "os/fedora", "latest", other, True),
        AuditRecord(REGISTRY, "os/alpine", "3", None, None, error="manifest unknown: 404 Not Found"),
    ]


def _hostile() -> list[AuditRecord]:
    return [
        AuditRecord(
            REGISTRY,
            f"os/{SCRIPT}",
            ATTRIBUTE,
            _digest(4) + ATTRIBUTE,
            None,
            (f"{SCRIPT}", "KRN-001"),
            error=f"registry said {SCRIPT} {ATTRIBUTE} {FETCH} \x1b[2J\u202e",
        )
    ]


class _Parsed(HTMLParser):
    """Elements, attributes and text as a browser's tokenizer sees them."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.raw: dict[str, list[str]] = {"script": [], "style": []}
        self._in: str | None = None
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in self.raw:
            self._in = tag

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self.raw[self._in].append(data)
        else:
            self.text.append(data)

    def named(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]

    def ids(self) -> set[str]:
        return {a["id"] for _, a in self.tags if a.get("id")}


def test_hostile_text_comes_out_as_text() -> None:
    page = render(_records() + _hostile(), title=f"audit {SCRIPT}")
    parsed = _Parsed(page)
    assert len(parsed.named("script")) == 1 and parsed.named("script")[0] == {}
    assert not parsed.named("img") and not parsed.named("link")
    handlers = [(tag, name) for tag, attrs in parsed.tags for name in attrs if name.startswith("on")]
    assert handlers == []
    # Each arrives whole as text, and the terminal escape and the bidi override are spelled out.
    shown = "".join(parsed.text)
    for hostile in (SCRIPT, ATTRIBUTE, FETCH, "\\x1b[2J", "\\xe2\\x80\\xae"):
        assert hostile in shown
    assert "\x1b" not in page and "\u202e" not in page
    assert parsed.named("title") and f"audit {SCRIPT}" in shown
    digest_titles = [a["title"] for a in parsed.named("code") if a.get("title", "").startswith("sha256:")]
    assert _digest(4) + ATTRIBUTE in digest_titles


def test_the_page_fetches_nothing_and_runs_only_its_own_style_and_script() -> None:
    parsed = _Parsed(render(_records() + _hostile(), title="audit"))
    (meta,) = [a for a in parsed.named("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    assert meta["content"] == CONTENT_SECURITY_POLICY
    policy = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert policy["default-src"] == "'none'"
    for kind, directive in (("script", "script-src"), ("style", "style-src")):
        (body,) = ["".join(parsed.raw[kind])]
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert policy[directive] == f"'sha256-{digest}'"
    # No attribute that loads or styles: the policy would block it anyway, the page has none.
    loading = [(t, n) for t, attrs in parsed.tags for n in attrs if n in ("src", "style", "srcset", "data")]
    assert loading == []
    links = [a["href"] or "" for a in parsed.named("a")]
    assert links and all(h.startswith(("#", "https://")) for h in links)


def test_every_failing_rule_links_to_its_entry_and_docs_rules_md_has_the_same_anchor() -> None:
    parsed = _Parsed(render(_records(), title="audit"))
    fragments = {a["href"] for a in parsed.named("a") if (a["href"] or "").startswith("#")}
    assert fragments == {"#krn-001", "#lnk-001", "#osr-001"}
    rules_md = (REPO / "docs" / "rules.md").read_text()
    titles = {r.id: r.title for r in ALL_RULES}
    shown = "".join(parsed.text)
    for fragment in fragments:
        assert fragment[1:] in parsed.ids()
        assert f"]({fragment})" in rules_md and f"\n## {fragment[1:].upper()}\n" in rules_md
        assert titles[fragment[1:].upper()] in shown
    outbound = [a["href"] for a in parsed.named("a") if (a["href"] or "").startswith(RULES_DOC_URL)]
    assert sorted(outbound) == [f"{RULES_DOC_URL}#{f[1:]}" for f in sorted(fragments)]


def test_a_rule_id_that_is_not_ours_stays_text() -> None:
    record = AuditRecord(REGISTRY, "os/x", "1", _digest(5), False, ("NOPE-001", 'x" onclick="y'))
    parsed = _Parsed(render([record], title="audit"))
    assert not [a for a in parsed.named("a") if (a["href"] or "").startswith("#")]
    assert "nope-001" not in parsed.ids()
    assert 'x" onclick="y' in "".join(parsed.text)


def test_the_same_records_give_the_same_bytes_in_any_order() -> None:
    records = _records() + _hostile()
    shuffled = records[:]
    random.Random(11).shuffle(shuffled)
    assert shuffled != records
    assert render(shuffled, title="audit") == render(records, title="audit")


def test_the_header_counts_tags_digests_and_verdicts() -> None:
    parsed = _Parsed(render(_records(), title="audit"))
    summary = re.sub(r"\s+", " ", "".join(parsed.text))
    for said in ("7 tags", "3 distinct digests", "5 bootable", "1 not bootable", "1 unreadable"):
        assert said in summary
    # One bar per repository, named and counted for a screen reader and a tooltip.
    assert "os/debian: 2 bootable, 1 not bootable, 0 unreadable" in summary
    assert "os/alpine: 0 bootable, 0 not bootable, 1 unreadable" in summary


def test_an_audit_of_nothing_is_a_page_too() -> None:
    shown = re.sub(r"\s+", " ", "".join(_Parsed(render([], title="audit")).text))
    assert "0 tags" in shown and "0 distinct digests" in shown and "No rule failed." in shown


def test_a_repository_is_named_with_its_registry_when_the_audit_read_several() -> None:
    records = [
        AuditRecord("127.0.0.1:5001", "os/x", "1", _digest(6), True),
        AuditRecord("127.0.0.1:5002", "os/x", "1", _digest(6), True),
    ]
    shown = re.sub(r"\s+", " ", "".join(_Parsed(render(records, title="audit")).text))
    assert "127.0.0.1:5001/os/x: 1 bootable" in shown and "127.0.0.1:5002/os/x: 1 bootable" in shown
    assert "2 tags" in shown and "1 distinct digests" in shown


def test_a_long_error_is_cut_in_the_page() -> None:
    record = AuditRecord(REGISTRY, "os/x", "1", None, None, error="e" * 60_000)
    page = render([record], title="audit")
    assert "e" * MAX_SHOWN_ERROR + "\u2026" in page and "e" * (MAX_SHOWN_ERROR + 1) not in page


def test_records_of_a_real_check_link_their_real_rules(tmp_path: Path) -> None:
    broken = bootable("generic").drop("/boot").drop("/usr/lib/modules")
    images = {"good": bootable("generic").build(), "bad": broken.build()}
    archive = write_oci_archive(tmp_path / "images.tar", images)
    options = Options(platform=Platform("linux", "amd64"))
    records = []
    for tag in ("good", "bad"):
        checked = check_reference(f"oci-archive:{archive}:{tag}", Policy(), options)
        assert checked.reports and not checked.unreadable
        records.append(from_checked("local", "images", tag, checked.reports[0].digest, checked))
    good, bad = records
    assert good.bootable is True and bad.bootable is False and bad.failed
    parsed = _Parsed(render(records, title="audit"))
    titles = {r.id: r.title for r in ALL_RULES}
    shown = "".join(parsed.text)
    for rule in bad.failed:
        assert f"#{rule_anchor(rule)}" in {a["href"] for a in parsed.named("a")}
        assert rule_anchor(rule) in parsed.ids() and f"{rule}: {titles[rule]}" in shown


# --- in a browser --------------------------------------------------------------------------------


def _png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, RGB of every pixel) of an 8-bit truecolour PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    at, idat, header = 8, b"", b""
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        at += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    step = 3 if colour == 2 else 4
    raw, stride, rows, previous = zlib.decompress(idat), width * step, [], bytes(width * step)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - step] if x >= step else 0
            up, corner = previous[x], previous[x - step] if x >= step else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[x] = (line[x] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(bytes(line))
        previous = bytes(line)
    return width, height, [bytes(row[i : i + 3]) for row in rows for i in range(0, stride, step)]


def _browse(page: Path, tmp_path: Path) -> dict[str, Any]:
    if not (PLAYWRIGHT.is_dir() and CHROMIUM.exists() and shutil.which("node")):
        pytest.skip(f"needs node, {PLAYWRIGHT} and {CHROMIUM} (the README's test block installs them)")
    shot = tmp_path / "shot.png"
    done = subprocess.run(
        ["node", str(BROWSER_SCRIPT), str(page), str(shot), str(tmp_path / "profile")],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    seen: dict[str, Any] = json.loads(done.stdout)
    seen["png"] = shot.read_bytes()
    return seen


def test_chromium_shows_the_table_sorts_it_and_fetches_nothing(tmp_path: Path) -> None:
    page = tmp_path / "audit.html"
    page.write_text(render(_records() + _hostile(), title="Nightly audit"), encoding="utf-8")
    seen = _browse(page, tmp_path)

    # Nothing but the page itself was asked for, nothing was blocked, no script failed.
    assert seen["requests"] == [seen["url"]]
    assert seen["violations"] == [] and seen["errors"] == []

    # The failing row as laid out, each cell in its column; the hostile row's text as text.
    failing = [row.split("\t") for row in seen["rows"] if "\tnot bootable\t" in row]
    rules = "KRN-001, LNK-001 (warnings: OSR-001)"
    assert failing == [["os/debian", "13", f"sha256:{_digest(2)[7:19]}", "not bootable", rules, ""]]
    assert any(SCRIPT in row and FETCH in row for row in seen["rows"])

    # Sorted by repository first; a click on "tag" sorts by tag, numbers as numbers, a second
    # click reverses it, and aria-sort says so.
    tags = [r.tag for r in sorted(_records() + _hostile(), key=lambda r: (r.repository, r.tag))]
    assert seen["tags"] == tags
    assert seen["sorts"] == ["ascending"] + ["none"] * 5
    # (the collator puts punctuation before digits and letters)
    assert seen["tags_after_click"] == [ATTRIBUTE, "3", "9", "12", "13", "40", "latest", "latest"]
    assert seen["sorts_after_click"] == ["none", "ascending"] + ["none"] * 4
    assert seen["tags_after_second_click"] == seen["tags_after_click"][::-1]
    assert seen["sorts_after_second_click"] == ["none", "descending"] + ["none"] * 4

    # A failing rule's link lands on its entry in the page.
    assert seen["rule_link"] == "KRN-001" and seen["hash"] == "#krn-001"
    assert seen["target"].startswith("KRN-001: " + {r.id: r.title for r in ALL_RULES}["KRN-001"])
    assert seen["chart_title"] == "Verdicts per repository"

    # The screenshot is the viewport, the table's failing row inside it, and not blank.
    width, height, pixels = _png(seen["png"])
    assert (width, height) == (seen["viewport"]["width"], seen["viewport"]["height"])
    box = seen["failing_row_box"]
    assert box["y"] + box["height"] <= height
    colours = set(pixels)
    assert len(colours) > 50
    assert sum(p != b"\xff\xff\xff" for p in pixels) > len(pixels) // 50
    # The chart's red (not bootable) and green (bootable) bars are drawn.
    assert b"\xc6\x28\x28" in colours and b"\x2e\x7d\x32" in colours
