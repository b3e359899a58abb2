"""Committed fixtures are exactly what their generators write (so they can be regenerated)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_example_image_is_reproducible(tmp_path: Path) -> None:
    out = tmp_path / "example.tar"
    subprocess.run(
        [sys.executable, "-m", "fixtures.make_example", str(out)], check=True, capture_output=True, cwd=REPO
    )
    assert out.read_bytes() == (REPO / "fixtures/example-cos.tar").read_bytes()


def test_boot_fixtures_are_what_their_generator_writes() -> None:
    from fixtures import make_boot_fixtures as boot

    files = {**boot.kernels(), **boot.initrds()}
    committed = {
        p.name: p.read_bytes() for p in (REPO / "fixtures" / "boot").iterdir() if p.name != "README.md"
    }
    assert committed == files
