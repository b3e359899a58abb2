"""Print the README's set-up: its first two ```sh blocks (install and try, then test), as one
script.  .ci/run executes it in a bare clone, so the README cannot drift from what works."""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def setup_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", text, re.DOTALL | re.MULTILINE)[:2]


if __name__ == "__main__":
    sys.stdout.write("\n".join(setup_blocks(README.read_text())))
