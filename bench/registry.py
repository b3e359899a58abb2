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
from dataclasses import dataclass
from pathlib import Path

from tests.support.imagebuilder import Blob
from tests.support.registry_push import Pusher, PushError
from tests.support.registry_server import BINARY, RegistryServer, RegistryStartError, start_registry

__all__ = [
    "BINARY",
    "Logged",
    "RegistryServer",
    "blob_bytes_since",
    "log_offset",
    "mounts_since",
    "push",
    "requests_since",
    "start",
]


def start(directory: Path, name: str = "bench") -> RegistryServer:
    """A plain-HTTP registry on 127.0.0.1 with empty storage under `directory`."""
    shutil.rmtree(directory, ignore_errors=True)
    try:
        return start_registry(name, directory)
    except RegistryStartError as exc:
        raise SystemExit(str(exc)) from None


def log_offset(server: RegistryServer) -> int:
    return server.log.stat().st_size


@dataclass(frozen=True, slots=True)
class Logged:
    """One finished request, as the registry's "response completed" log line has it."""

    method: str
    uri: str
    status: int
    written: int  # bytes of the response body


_FIELD = re.compile(r'http\.(request\.method|request\.uri|response\.status|response\.written)=("[^"]*"|\S+)')
_BLOB_GET = re.compile(r"/blobs/(sha256:[0-9a-f]{64})$")


def requests_since(server: RegistryServer, offset: int) -> list[Logged]:
    """The requests the registry logged after `offset`.

    The registry logs a request after the client has its last byte, so wait for the log
    to stop growing before reading it.
    """
    size, still = log_offset(server), 0
    while still < 6:
        time.sleep(0.05)
        now = log_offset(server)
        size, still = now, still + 1 if now == size else 0
    out = []
    with server.log.open("rb") as fh:
        fh.seek(offset)
        for line in fh.read().decode(errors="replace").splitlines():
            if "response completed" not in line:
                continue
            fields = {key: value.strip('"') for key, value in _FIELD.findall(line)}
            out.append(
                Logged(
                    fields.get("request.method", ""),
                    fields.get("request.uri", ""),
                    int(fields.get("response.status", "0")),
                    int(fields.get("response.written", "0")),
                )
            )
    return out


def blob_bytes_since(server: RegistryServer, offset: int, digests: set[str] | None = None) -> int:
    """Bytes the registry sent for blob GETs logged after `offset`, only `digests` if given."""
    total = 0
    for r in requests_since(server, offset):
        blob = _BLOB_GET.search(r.uri) if r.method == "GET" else None
        if blob and (digests is None or blob.group(1) in digests):
            total += r.written
    return total


def mounts_since(server: RegistryServer, offset: int) -> int:
    """Blobs mounted from another repository (distribution-spec: POST ...?mount=&from=, 201)."""
    return sum(
        1
        for r in requests_since(server, offset)
        if r.method == "POST" and "mount=" in r.uri and r.status == 201
    )


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
