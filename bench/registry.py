"""The benchmark's registry: the tests' docker-registry (tests/support/registry_server.py) with fresh
storage, a push of an OCI layout streamed from disk, and the bytes its log says it sent.

The registry logs at info level: every finished request is logged with its URI and the bytes
written back, which is how blob bytes fetched are counted per measured run.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

from tests.support.imagebuilder import Blob
from tests.support.registry_push import Pusher, PushError
from tests.support.registry_server import BINARY, RegistryServer, RegistryStartError, start_registry

__all__ = ["BINARY", "RegistryServer", "blob_bytes_since", "log_offset", "push", "start"]


def start(directory: Path, name: str = "bench") -> RegistryServer:
    """A plain-HTTP registry on 127.0.0.1 with empty storage under `directory`."""
    shutil.rmtree(directory, ignore_errors=True)
    try:
        return start_registry(name, directory)
    except RegistryStartError as exc:
        raise SystemExit(str(exc)) from None


def log_offset(server: RegistryServer) -> int:
    return server.log.stat().st_size


def blob_bytes_since(server: RegistryServer, offset: int, digests: set[str] | None = None) -> int:
    """Bytes the registry sent for blob GETs logged after `offset`, only `digests` if given.

    The registry logs a request after the client has its last byte, so wait for the log
    to stop growing before reading it.
    """
    size, still = log_offset(server), 0
    while still < 6:
        time.sleep(0.05)
        now = log_offset(server)
        size, still = now, still + 1 if now == size else 0
    total = 0
    with server.log.open("rb") as fh:
        fh.seek(offset)
        for line in fh.read().decode(errors="replace").splitlines():
            if "response completed" not in line or "http.request.method=GET" not in line:
                continue
            uri = re.search(r'http\.request\.uri="[^"]*/blobs/(sha256:[0-9a-f]{64})"', line)
            written = re.search(r"http\.response\.written=(\d+)", line)
            if uri and written and (digests is None or uri.group(1) in digests):
                total += int(written.group(1))
    return total


def push(server: RegistryServer, layout: Path, repo: str, tag: str) -> str:
    """Push the layout's one image by tag, blobs streamed from disk (a layer is never in memory)."""
    blobs = layout / "blobs" / "sha256"
    desc = json.loads((layout / "index.json").read_text())["manifests"][0]
    manifest = Blob(desc["mediaType"], (blobs / desc["digest"].split(":")[1]).read_bytes())
    parsed = json.loads(manifest.data)
    pusher = Pusher(server.url)
    try:
        for blob in [*parsed["layers"], parsed["config"]]:
            with (blobs / blob["digest"].split(":")[1]).open("rb") as fh:
                pusher.push_blob(repo, (blob["digest"], fh))
        pusher.push_manifest(repo, tag, manifest)
    except PushError as exc:
        raise SystemExit(f"push to {server.host}/{repo}:{tag}: {exc}") from None
    return str(desc["digest"])
