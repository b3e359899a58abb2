"""docs/ is what the code and the README cite: it is current, complete, and cites nothing outside
the repository."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from ociboot.boot.rules import ALL_RULES
from ociboot.boot.upstream import SOURCE
from ociboot.cli import app
from ociboot.render import render_sarif
from ociboot.report import RULES_DOC_URL, Finding, Outcome, Report, Severity

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
RULES_DOC = DOCS / "rules.md"


def test_rules_doc_is_the_rule_tables_output() -> None:
    result = CliRunner().invoke(app, ["rules", "--format", "markdown"])
    assert result.exit_code == 0
    assert RULES_DOC.read_text() == result.stdout, (
        "docs/rules.md is stale: ociboot rules --format markdown > docs/rules.md"
    )


def test_rules_doc_says_what_why_where_and_how_severe_for_every_rule() -> None:
    sections = re.split(r"^## ", RULES_DOC.read_text(), flags=re.MULTILINE)[1:]
    by_id = {s.split("\n", 1)[0]: s for s in sections}
    assert sorted(by_id) == sorted(r.id for r in ALL_RULES)
    for r in ALL_RULES:
        section = by_id[r.id]
        unescaped = section.replace("\\", "")
        assert r.title.replace("\\", "") in unescaped
        assert " ".join(r.description.split()).replace("\\", "") in unescaped, r.id
        for profile, severity in r.severity.items():
            assert f"{profile} {severity}" in section, r.id
        for source in r.sources:
            m = SOURCE.fullmatch(source)
            assert m is not None, (r.id, source)
            assert f"]({m['url']})" in section, (r.id, source)
            assert m["label"] is None or m["label"].replace("\\", "") in unescaped, (r.id, source)


def test_rule_descriptions_are_text_not_docstring_layout() -> None:
    # A docstring's line breaks used to come out escaped ("\\n    ") in every format.
    listed = json.loads(CliRunner().invoke(app, ["rules", "--format", "json"]).stdout)["rules"]
    kai003 = next(r["description"] for r in listed if r["id"] == "KAI-003")
    assert "\\n" not in kai003 and "  _FAMILY" not in kai003 and ", _FAMILY, _MODEL" in kai003


def test_markdown_markup_in_a_description_is_escaped_outside_code() -> None:
    doc = RULES_DOC.read_text()
    # KAI-003 lists KAIROS_ID, _ID_LIKE, ...: bare underscores would turn the list italic.
    assert "KAIROS\\_ID, \\_ID\\_LIKE" in doc
    assert "`containers.bootc`" in doc  # code spans are left as they are


def test_sarif_rules_link_to_their_section_of_the_rules_doc() -> None:
    finding = Finding("KRN-001", Severity.ERROR, Outcome.FAIL, "no kernel")
    report = Report("img", "sha256:0", "linux/amd64", "cos", "asked for", (finding,))
    driver = json.loads(render_sarif([report]))["runs"][0]["tool"]["driver"]
    (entry,) = driver["rules"]
    assert entry["helpUri"] == f"{RULES_DOC_URL}#krn-001"
    assert RULES_DOC_URL.endswith("/docs/rules.md")
    assert "\n## KRN-001\n" in RULES_DOC.read_text()  # GitHub's anchor for it is #krn-001


def test_docs_and_readme_cite_nothing_outside_the_repository() -> None:
    for path in [REPO / "README.md", *DOCS.rglob("*")]:
        if path.is_file():
            text = path.read_text()
            assert "../shared" not in text and "/work/" not in text, path
            assert "DESIGN.md" not in text and "field-notes" not in text, path


def test_every_repository_path_the_docs_link_to_exists() -> None:
    for path in [REPO / "README.md", *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text()):
            assert (path.parent / target).exists(), f"{path.name} links to missing {target}"


def test_the_readme_json_example_is_what_check_says_of_the_shipped_example() -> None:
    (block,) = re.findall(r"^```json\n(.*?)^```$", (REPO / "README.md").read_text(), re.DOTALL | re.MULTILINE)
    example = json.loads(block)["reports"][0]
    assert example["image"] == "oci-archive:fixtures/example-cos.tar"
    result = CliRunner().invoke(
        app, ["check", "-q", "--no-cache", "--format", "json", str(REPO / "fixtures" / "example-cos.tar")]
    )
    (actual,) = json.loads(result.stdout)["reports"]
    for key in ("bootable", "counts", "profile", "profileReason", "platform", "index"):
        assert example[key] == actual[key], key
    assert actual["digest"].startswith(example["digest"].rstrip("…"))
    facts, shown = actual["facts"], example["facts"]
    for key in ("layers", "compressedSize", "uncompressedSize", "osRelease", "modules"):
        assert shown[key] == facts[key], key
    for key in ("path", "resolved", "format", "version", "arch"):
        assert shown["kernel"][key] == facts["kernel"][key], key
    for key in ("path", "resolved", "compression", "members", "kernelVersions"):
        assert shown["initrd"][key] == facts["initrd"][key], key
    first = {k: v for k, v in actual["findings"][0].items() if k in ("rule", "severity", "outcome", "path")}
    assert first.items() <= example["findings"][0].items()


#: A citation of something outside the repository: the project's old design and research notes,
#: or the directory they lived in beside it (the conformance corpus there is read, not cited).
OUTSIDE = re.compile(
    r"\.\./shared(?!/conformance)|shared/reference|field-notes|boot-requirements|DESIGN(?:\.md| §)"
    r"|peers\.md"
)


def _cited_files() -> list[Path]:
    files = [REPO / "README.md", REPO / "pyproject.toml", *sorted((REPO / "ociboot").rglob("*.py"))]
    for folder in ("bench", "fixtures", "tests"):
        files += [p for p in sorted((REPO / folder).rglob("*")) if p.suffix in (".py", ".md", ".toml")]
    return [p for p in files if p.is_file() and p != Path(__file__).resolve()]


def test_code_cites_nothing_outside_the_repository() -> None:
    found = []
    for path in _cited_files():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not found, "cite docs/ or a public URL instead:\n" + "\n".join(found)


def test_the_outside_pattern_catches_what_it_is_for() -> None:
    for text in ("DESIGN.md §4", "(DESIGN §3)", "field-notes.md", "boot-requirements a.4", "../shared/x"):
        assert OUTSIDE.search(text), text
    assert not OUTSIDE.search("read from ../shared/conformance")


def test_every_rule_source_is_a_public_https_url_with_an_optional_label() -> None:
    for r in ALL_RULES:
        assert r.sources, r.id
        for source in r.sources:
            m = SOURCE.fullmatch(source)
            assert m is not None, f"{r.id}: {source!r} is not 'https://... [label]'"
            # Code is cited at a commit (what was read), not at a branch that moves on.
            github = re.fullmatch(r"https://github\.com/[^/]+/[^/]+/(blob|tree)/([^/]+)/.+", m["url"])
            assert github is None or re.fullmatch(r"[0-9a-f]{40}", github[2]), (r.id, source)


def test_every_tool_behaviour_id_the_code_names_is_described_in_docs() -> None:
    described = set(re.findall(r"^\| ([DEK]\d+a?) \|", (DOCS / "tools.md").read_text(), re.MULTILINE))
    named = set()
    for path in (REPO / "ociboot").rglob("*.py"):
        named |= set(re.findall(r"\b([DEK]\d{1,2}a?)\b", path.read_text()))
    assert named and named <= described, sorted(named - described)


# --- docs/security.md: its bounds are the code's --------------------------------------------------

_BOUND_ROW = re.compile(r"^\| `(ociboot\.[\w.]+)` \| ([^|]*?) \|", re.MULTILINE)
_UNITS = {"": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "s": 1}


def _bound(dotted: str) -> object:
    """The value a dotted name stands for: a module constant, or a dataclass field's default."""
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            value: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            value = getattr(value() if isinstance(value, type) else value, name)
        return value
    raise AssertionError(f"{dotted}: no such module")


def test_every_bound_in_the_security_model_is_the_codes() -> None:
    rows = _BOUND_ROW.findall((DOCS / "security.md").read_text())
    assert len(rows) >= 25
    for dotted, shown in rows:
        number, _, unit = shown.partition(" ")
        assert unit in _UNITS, f"docs/security.md: {dotted}: unknown unit in {shown!r}"
        assert _bound(dotted) == float(number) * _UNITS[unit], f"docs/security.md says {dotted} is {shown}"
