"""Session-wide test setup.  Registry servers live in tests/support/registry_server.py, the Dask
cluster in tests/support/dask_cluster.py."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.support.registry_server", "tests.support.redis_server", "tests.support.dask_cluster"]

REPO = Path(__file__).resolve().parent.parent
CONFORMANCE = REPO.parent / "shared" / "conformance"


@pytest.fixture(scope="session")
def conformance() -> Path:
    """Other projects' image fixtures, kept beside the repository (a clone does not have them;
    CI always does, and .ci/run fails without them).  Only the tests that read them skip."""
    if not CONFORMANCE.is_dir():
        pytest.skip(f"the outside conformance corpus is not at {CONFORMANCE} (../shared/conformance)")
    return CONFORMANCE


@pytest.fixture(autouse=True)
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test writes to the real ~/.cache: the CLI's default cache dir is a fresh temp dir."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
