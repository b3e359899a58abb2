"""Reports as the documents CI systems ingest: SARIF 2.1.0 for code scanning (`sarif`), JUnit XML
for test-report plugins (`junit`).  Text and JSON, ociboot's own formats, stay in `report`.

Each renderer keeps to what its consumer validates (the OASIS SARIF schema and GitHub's upload
rules, the JUnit XSD of Jenkins' xunit plugin: both vendored under tests/schemas and checked
there) and names what it reports stably across runs: GitHub and Jenkins track a finding from one
run to the next by those names.
"""

from __future__ import annotations

from .junit import render_junit
from .sarif import render_sarif

__all__ = ["render_junit", "render_sarif"]
