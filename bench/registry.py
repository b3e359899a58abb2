"""Debian's docker-registry on 127.0.0.1 for the benchmark, a streaming push, and its access log.

The registry runs from a config written here (the packaged one listens everywhere with auth,
docs/measurements.md), with info-level logging: every finished request is logged with its URI and the
bytes written back, which is how blob bytes fetched are counted per measured run.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

BINARY = "/usr/bin/docker-registry"


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_offset(self) -> int:
        return self.log.stat().st_size

    def blob_bytes_since(self, offset: int, digests: set[str] | None = None) -> int:
        """Bytes the registry sent for blob GETs logged after `offset`, only `digests` if given.

        The registry logs a request after the client has its last byte, so wait for the log
        to stop growing before reading it.
        """
        size, still = self.log_offset(), 0
        while still < 6:
            time.sleep(0.05)
            now = self.log_offset()
            size, still = now, still + 1 if now == size else 0
        total = 0
        with self.log.open("rb") as fh:
            fh.seek(offset)
            for line in fh.read().decode(errors="replace").splitlines():
                if "response completed" not in line or "http.request.method=GET" not in line:
                    continue
                uri = re.search(r'http\.request\.uri="[^"]*/blobs/(sha256:[0-9a-f]{64})"', line)
                written = re.search(r"http\.response\.written=(\d+)", line)
                if uri and written and (digests is None or uri.group(1) in digests):
                    total += int(written.group(1))
        return total


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(directory: Path) -> Registry:
    if shutil.which(BINARY) is None:
        raise SystemExit(f"{BINARY} not found: apt-get install -y docker-registry")
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    port = _free_port()
    config = directory / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: info\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {directory / 'storage'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: ociboot-bench\n"
    )
    log = directory / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen([BINARY, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT)
    registry = Registry(f"127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(f"http://{registry.host}/v2/", timeout=1).status_code == 200:
                return registry
        except requests.ConnectionError:
            time.sleep(0.05)
    registry.stop()
    raise SystemExit(f"docker-registry did not start:\n{log.read_text(errors='replace')[-2000:]}")


def push(registry: Registry, layout: Path, repo: str, tag: str) -> str:
    """Push the layout's one image (distribution-spec: POST then monolithic PUT, blobs from disk)."""
    base = f"http://{registry.host}/v2/{repo}"
    blobs = layout / "blobs" / "sha256"
    index = json.loads((layout / "index.json").read_text())
    desc = index["manifests"][0]
    manifest_bytes = (blobs / desc["digest"].split(":")[1]).read_bytes()
    manifest = json.loads(manifest_bytes)
    session = requests.Session()
    for blob in [*manifest["layers"], manifest["config"]]:
        digest = blob["digest"]
        if session.head(f"{base}/blobs/{digest}", timeout=30).status_code == 200:
            continue
        started = session.post(f"{base}/blobs/uploads/", timeout=30)
        started.raise_for_status()
        location = started.headers["Location"]
        if location.startswith("/"):
            location = f"http://{registry.host}{location}"
        sep = "&" if "?" in location else "?"
        with (blobs / digest.split(":")[1]).open("rb") as fh:  # requests streams a file body
            done = session.put(
                f"{location}{sep}digest={digest}",
                data=fh,
                headers={"Content-Type": "application/octet-stream"},
                timeout=600,
            )
        if done.status_code != 201:
            raise SystemExit(f"push of {digest}: {done.status_code} {done.text[:500]}")
    put = session.put(
        f"{base}/manifests/{tag}",
        data=manifest_bytes,
        headers={"Content-Type": desc["mediaType"]},
        timeout=30,
    )
    if put.status_code != 201:
        raise SystemExit(f"push of manifest {repo}:{tag}: {put.status_code} {put.text[:500]}")
    return str(desc["digest"])
