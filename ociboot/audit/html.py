"""The audit's HTML report (`--html FILE`): one self-contained document a person opens from a
CI artifact or a mail, offline.

It fetches nothing: its style and script are inline, allowed by their hashes in a
Content-Security-Policy that forbids every fetch (`default-src 'none'`), so a browser that
opens it makes no request, and a script or style that escaping failed to stop would not run.
Everything from a registry or an image (repositories, tags, digests, error texts that quote a
registry's answer, rule ids read back from a --resume file) is hostile text: each goes through
textsafe (controls, bidi overrides, undecodable bytes spelled out) and then HTML escaping; no
such text is ever put in a URL, a style or a script.

The page is drawn on the server: totals, a stacked bar per repository (inline SVG) and the
table of tags, so it reads without JavaScript; the script only sorts the table when a column
header is clicked.  Each failing rule links to its entry in the rule docs inside the page, under
the anchor docs/rules.md gives it (its id in lower case), so a fragment works in both.
The same records give the same bytes, whatever their order (no time unless the title has one).
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from html import escape as _html
from typing import Any

from ..boot.rules import documented
from ..boot.upstream import SOURCE, link_text
from ..report import RULES_DOC_URL
from ..textsafe import escape as _safe
from ..textsafe import shortened
from .record import VERDICTS, AuditRecord

#: An error is shown up to this many characters (the jsonl record keeps up to MAX_ERROR_CHARS): a
#: tag's error, as long as a record allows, must not make the page unreadable.
MAX_SHOWN_ERROR = 1000
#: Characters of a repository name in the chart's label column (the full name is its tooltip).
_CHART_LABEL = 36
#: The short digest shown in the table: algorithm and the first 12 hex digits, as docker does.
_SHORT_DIGEST = 12

_CLASS = dict(zip(VERDICTS, ("ok", "bad", "unread"), strict=True))
_COLUMNS = ("repository", "tag", "digest", "verdict", "failed rules", "error")

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;color:#1b1b1b;background:#fff}
body{margin:1.5em auto;max-width:75em;padding:0 1em}
h1{font-size:1.5em;margin:0 0 .3em}
h2{font-size:1.2em;margin:1.6em 0 .5em}
h3{font-size:1em;margin:0 0 .3em}
.totals{display:flex;flex-wrap:wrap;gap:.5em;padding:0;list-style:none}
.totals li{border:1px solid #ccc;border-radius:4px;padding:.3em .7em}
.totals b{font-size:1.2em}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th button{font:inherit;font-weight:bold;border:0;background:none;padding:0;cursor:pointer;color:inherit}
th[aria-sort=ascending] button::after{content:" \\25B2"}
th[aria-sort=descending] button::after{content:" \\25BC"}
td{overflow-wrap:anywhere}
td.fixed,td a{white-space:nowrap}
code{font-size:.95em}
svg text{font-size:12px}
.ok{color:#1b5e20}
.bad{color:#b71c1c;font-weight:bold}
.unread{color:#616161;font-style:italic}
.warned{color:#8a5a00}
.legend rect{stroke:none}
.rule{border-left:3px solid #ccc;padding:.2em .8em;margin:.8em 0}
.rule:target{border-color:#b71c1c;background:#fff4f4}
"""

_SCRIPT = """
(function () {
  "use strict";
  var table = document.getElementById("tags");
  var heads = table.tHead.rows[0].cells;
  var body = table.tBodies[0];
  var order = new Intl.Collator("en", {numeric: true});
  function key(row, column) {
    var cell = row.cells[column];
    return cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent;
  }
  function sortBy(column) {
    var ascending = heads[column].getAttribute("aria-sort") !== "ascending";
    // Keys read once per row, not once per comparison: an audit may have thousands of tags.
    var rows = Array.prototype.map.call(body.rows, function (row) {
      return {row: row, key: key(row, column), at: Number(row.getAttribute("data-row"))};
    });
    rows.sort(function (a, b) {
      var d = order.compare(a.key, b.key);
      return (ascending ? d : -d) || a.at - b.at;
    });
    var moved = document.createDocumentFragment();
    rows.forEach(function (entry) { moved.appendChild(entry.row); });
    body.appendChild(moved);
    for (var i = 0; i < heads.length; i++) heads[i].setAttribute("aria-sort", "none");
    heads[column].setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  Array.prototype.forEach.call(heads, function (head, column) {
    head.querySelector("button").addEventListener("click", function () { sortBy(column); });
  });
})();
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


#: Nothing may be fetched; only the page's own style and script run.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src {_sha256(_STYLE)}; script-src {_sha256(_SCRIPT)}; "
    "base-uri 'none'; form-action 'none'"
)


def text(value: str) -> str:
    """Hostile text as HTML text or attribute value: escaped for the terminal's and the
    parser's sake both."""
    return _html(_safe(value), quote=True)


def rule_anchor(rule: str) -> str:
    """The fragment of a rule's entry, here and in docs/rules.md."""
    return rule.lower()


def render(records: Sequence[AuditRecord], *, title: str) -> str:
    """The whole report: a UTF-8 HTML document."""
    ordered = sorted(records, key=_order)
    several = len({r.registry for r in ordered}) > 1
    known = {r["id"]: r for r in documented()}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{text(title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{text(title)}</h1>",
        *_totals(ordered),
        *_chart(ordered, several),
        *_table(ordered, several, known),
        *_rule_docs(ordered, known),
        f"<script>{_SCRIPT}</script>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def _order(record: AuditRecord) -> tuple[str, str, str]:
    return (record.repository, record.tag, record.registry)


def _repository(record: AuditRecord, several: bool) -> str:
    """Its name as shown: with its registry when the audit read more than one."""
    return f"{record.registry}/{record.repository}" if several else record.repository


def _totals(records: Sequence[AuditRecord]) -> list[str]:
    tags = [r for r in records if r.listed]
    counts = Counter(r.verdict for r in tags)
    registries = sorted({r.registry for r in records})
    digests = {r.digest for r in records if r.digest is not None}
    items = [
        ("tags", len(tags), ""),
        ("distinct digests", len(digests), ""),
        *((verdict, counts[verdict], _CLASS[verdict]) for verdict in VERDICTS),
    ]
    if len(tags) < len(records):
        items.append(
            ("repositories whose tags could not be listed", len(records) - len(tags), _CLASS["unreadable"])
        )
    out = ['<section id="summary" aria-label="totals">']
    if registries:
        out.append("<p>Registry: " + ", ".join(f"<code>{text(r)}</code>" for r in registries) + "</p>")
    out.append('<ul class="totals">')
    out += [f'<li class="{css}"><b>{count}</b> {label}</li>' for label, count, css in items]
    out += ["</ul>", "</section>"]
    return out


# The chart's geometry, in SVG user units.
_LABEL_WIDTH = 260
_BAR_WIDTH = 480
_ROW = 22
_BAR = 16
_COLOURS = {"bootable": "#2e7d32", "not bootable": "#c62828", "unreadable": "#9e9e9e"}


def _chart(records: Sequence[AuditRecord], several: bool) -> list[str]:
    per: dict[str, Counter[str]] = {}
    for r in records:
        if not r.listed:  # no tag to draw: the totals and the table say it
            continue
        per.setdefault(_repository(r, several), Counter())[r.verdict] += 1
    widest = max((sum(c.values()) for c in per.values()), default=1)
    height = _ROW * (len(per) + 1) + 6
    width = _LABEL_WIDTH + _BAR_WIDTH + 60
    out = [
        '<section id="chart">',
        "<h2>Verdicts per repository</h2>",
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-labelledby="chart-title chart-desc">',
        '<title id="chart-title">Verdicts per repository</title>',
        f'<desc id="chart-desc">{len(per)} repositories, one bar each: its tags that are bootable, '
        "not bootable and unreadable; the table below lists every tag.</desc>",
    ]
    out += _legend()
    for row, (name, counts) in enumerate(sorted(per.items()), start=1):
        y = row * _ROW
        said = ", ".join(f"{counts[v]} {v}" for v in VERDICTS)
        label = name if len(name) <= _CHART_LABEL else name[: _CHART_LABEL - 1] + "\u2026"
        out.append(f"<g><title>{text(name)}: {said}</title>")
        out.append(f'<text x="{_LABEL_WIDTH - 8}" y="{y + _BAR - 3}" text-anchor="end">{text(label)}</text>')
        x = 0.0
        for verdict in VERDICTS:
            if counts[verdict]:
                w = _BAR_WIDTH * counts[verdict] / widest
                out.append(
                    f'<rect x="{_LABEL_WIDTH + x:.1f}" y="{y}" width="{w:.1f}" height="{_BAR}" '
                    f'fill="{_COLOURS[verdict]}"/>'
                )
                x += w
        total = sum(counts.values())
        out.append(f'<text x="{_LABEL_WIDTH + x + 6:.1f}" y="{y + _BAR - 3}">{total}</text></g>')
    out += ["</svg>", "</section>"]
    return out


def _legend() -> list[str]:
    out = ['<g class="legend" aria-hidden="true">']
    x = _LABEL_WIDTH
    for verdict in VERDICTS:
        out.append(f'<rect x="{x}" y="2" width="12" height="12" fill="{_COLOURS[verdict]}"/>')
        out.append(f'<text x="{x + 16}" y="13">{verdict}</text>')
        x += 120
    out.append("</g>")
    return out


def _table(records: Sequence[AuditRecord], several: bool, known: dict[str, Any]) -> list[str]:
    heads = "".join(
        f'<th scope="col" aria-sort="{"ascending" if column == "repository" else "none"}">'
        f'<button type="button">{column}</button></th>'
        for column in _COLUMNS
    )
    out = [
        '<section id="tags-section">',
        "<h2>Tags</h2>",
        '<table id="tags">',
        f"<thead><tr>{heads}</tr></thead>",
        "<tbody>",
    ]
    out += [_row(index, r, several, known) for index, r in enumerate(records)]
    out += ["</tbody>", "</table>", "</section>"]
    return out


def _row(index: int, r: AuditRecord, several: bool, known: dict[str, Any]) -> str:
    if r.digest is None:
        digest = '<td class="fixed">\u2014</td>'
    else:
        algorithm, _, hex_ = r.digest.partition(":")
        short = f"{algorithm}:{hex_[:_SHORT_DIGEST]}" if hex_ else r.digest
        full = text(r.digest)
        digest = f'<td class="fixed" data-sort="{full}"><code title="{full}">{text(short)}</code></td>'
    rules = ", ".join(_rule_link(rule, known) for rule in r.failed)
    if r.warned:
        warned = ", ".join(_rule_link(rule, known) for rule in r.warned)
        rules += f'{" " if rules else ""}<span class="warned">(warnings: {warned})</span>'
    error = r.error or ""
    shown = shortened(error, MAX_SHOWN_ERROR)
    cells = [
        f'<td title="{text(r.registry)}/{text(r.repository)}">{text(_repository(r, several))}</td>',
        f"<td>{text(r.tag)}</td>" if r.listed else '<td data-sort=""><i>(not listed)</i></td>',
        digest,
        f'<td class="fixed {_CLASS[r.verdict]}">{r.verdict}</td>',
        f'<td data-sort="{len(r.failed)} {len(r.warned)}">{rules}</td>',
        f"<td>{text(shown)}</td>",
    ]
    return f'<tr data-row="{index}" class="{_CLASS[r.verdict]}-row">' + "".join(cells) + "</tr>"


def _rule_link(rule: str, known: dict[str, Any]) -> str:
    """A rule id: a link to its entry below when it is one of ours; an id read back from a
    --resume file may be anything, and stays text."""
    if rule in known:
        return f'<a href="#{rule_anchor(rule)}">{_html(rule)}</a>'
    return f"<code>{text(rule)}</code>"


def _rule_docs(records: Iterable[AuditRecord], known: dict[str, Any]) -> list[str]:
    seen = sorted({rule for r in records for rule in (*r.failed, *r.warned) if rule in known})
    out = ['<section id="rules">', "<h2>Rules that failed</h2>"]
    if not seen:
        out.append("<p>No rule failed.</p>")
    for rule in seen:
        doc = known[rule]
        severity = ", ".join(f"{profile} {level}" for profile, level in doc["severity"].items())
        anchor = rule_anchor(rule)
        out += [
            f'<article class="rule" id="{anchor}">',
            f"<h3>{_html(rule)}: {_html(doc['title'])}</h3>",
            f"<p>{_html(doc['description'])}</p>",
            f"<p>Severity: {_html(severity or 'in no profile')}.</p>",
        ]
        if doc["sources"]:
            out.append("<p>Sources:</p><ul>")
            out += [f"<li>{_source(source)}</li>" for source in doc["sources"]]
            out.append("</ul>")
        docs = f"{_html(RULES_DOC_URL)}#{anchor}"
        out.append(f'<p><a href="{docs}" rel="noreferrer">{_html(rule)} in docs/rules.md</a></p>')
        out.append("</article>")
    out.append("</section>")
    return out


def _source(source: str) -> str:
    """A rule source (`boot.upstream`: URL, then an optional label) as a link a reader may follow."""
    m = SOURCE.fullmatch(source)
    if m is None:
        return _html(source)
    link = f'<a href="{_html(m["url"])}" rel="noreferrer">{_html(link_text(m["url"]))}</a>'
    return f"{link} {_html(m['label'])}" if m["label"] else link


__all__ = ["CONTENT_SECURITY_POLICY", "MAX_SHOWN_ERROR", "render", "rule_anchor", "text"]
