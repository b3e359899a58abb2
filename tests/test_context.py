"""The seam between the analyzers and the rules: typed analyses, one way to ask why a file was unread."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

from ociboot.boot.context import Analysis, Artifact, CheckContext, analysis_failure
from ociboot.boot.kernel import KernelFormat, KernelInfo
from ociboot.boot.scan import PackageDbResult
from ociboot.fs.tree import Resolution
from ociboot.layer import AnalysisFailed, OverBudget

RULES = Path(__file__).resolve().parent.parent / "ociboot" / "boot" / "rules"


def _artifact(analysis: Analysis) -> Artifact:
    return Artifact("/boot/vmlinuz", Resolution("/boot/vmlinuz", "/boot/vmlinuz", None), analysis)


def test_failure_names_why_a_file_was_not_read_and_nothing_else() -> None:
    assert _artifact(AnalysisFailed("ValueError: bad header")).failure == "ValueError: bad header"
    assert _artifact(OverBudget("the analysis budget ran out")).failure == "the analysis budget ran out"
    assert _artifact(PackageDbResult("/var/lib/rpm/rpmdb.sqlite", error="not a database")).failure == (
        "not a database"
    )
    assert _artifact(PackageDbResult("/var/lib/dpkg/status")).failure is None
    assert _artifact(KernelInfo(KernelFormat.BZIMAGE, version="6.1.0")).failure is None
    assert _artifact(None).failure is None
    assert analysis_failure(AnalysisFailed("x")) == "x"


def test_analyses_cross_into_the_rules_typed() -> None:
    assert typing.get_type_hints(Artifact)["analysis"] == Analysis
    assert typing.get_type_hints(CheckContext.analysis)["return"] == Analysis


def test_no_rule_reads_an_analysis_by_duck_typing() -> None:
    found = []
    for path in sorted(RULES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr":
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "use Artifact.failure / analysis_failure and isinstance:\n" + "\n".join(found)
