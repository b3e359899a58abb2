"""Session-wide test setup.  Registry servers live in tests/registry_server.py."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["registry_server"]

REPO = Path(__file__).resolve().parent.parent
CONFORMANCE = REPO.parent / "shared" / "conformance"


@pytest.fixture(scope="session")
def conformance() -> Path:
    if not CONFORMANCE.is_dir():
        pytest.fail(f"conformance corpus not found at {CONFORMANCE} (expected ../shared/conformance)")
    return CONFORMANCE
