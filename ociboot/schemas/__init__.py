"""The JSON Schema of every `--format json` document, shipped with the package.

Each document names its schema: `$schema` is the schema's `$id` and `schemaVersion` its version
(bumped when a key changes meaning or disappears; adding keys is compatible).  A schema file is
`<document>-v<version>.json` beside this module, so an old version stays readable after a bump.
tests/test_ci_formats.py validates real outputs of every command against these files.  stdlib
only (import level 0).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

#: Where the schemas are published: this directory of the repository, on the main branch.
SCHEMA_BASE = "https://raw.githubusercontent.com/ociboot/ociboot/main/ociboot/schemas"
#: Document name -> its current schemaVersion, one entry per `--format json` output.
VERSIONS = {
    "check": 2,
    "inspect": 1,
    "ls": 1,
    "stat": 1,
    "layers": 1,
    "rules": 1,
    "cache-info": 1,
    "cache-prune": 1,
    "verdicts": 1,
    "audit-record": 1,  # one per line of `audit --format jsonl`: the lines carry no header
}


def file_name(document: str, version: int | None = None) -> str:
    return f"{document}-v{VERSIONS[document] if version is None else version}.json"


def schema_id(document: str) -> str:
    return f"{SCHEMA_BASE}/{file_name(document)}"


def header(document: str) -> dict[str, Any]:
    """The keys that open a `document`: which schema it follows, and that schema's version."""
    return {"$schema": schema_id(document), "schemaVersion": VERSIONS[document]}


def load(document: str, version: int | None = None) -> dict[str, Any]:
    """The JSON Schema of `document` (at its current version unless given)."""
    text = resources.files(__name__).joinpath(file_name(document, version)).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


__all__ = ["SCHEMA_BASE", "VERSIONS", "file_name", "header", "load", "schema_id"]
