"""Variant (c), the mandatory work alone: every layer blob read once from the registry, inflated
with the fastest decompressor installed, both streams sha256-hashed, everything discarded.

    python bench/mandatory.py http://127.0.0.1:PORT REPO TAG [--jobs N]

The compressed digest and the uncompressed diff_id are compared with the manifest and the config,
as any honest reader must.  Layers run on `--jobs` threads (inflate and hashing release the GIL).
Prints one JSON line: bytes in and out, the inflaters used.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
import zstandard

CHUNK = 1 << 20  # docs/measurements.md: 1 MiB reads; 8 KiB costs 1.7x
ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"

try:
    from isal.igzip import IGzipFile as GzipReader

    GZIP = "isal"
except ImportError:  # the stdlib's zlib is 2-2.5x slower (docs/measurements.md) but always there
    GzipReader = gzip.GzipFile  # type: ignore[assignment,misc]
    GZIP = "zlib"


class Hashing:
    """A read-only file over the raw response body that hashes and counts what is read."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n if n > 0 else CHUNK)
        self.hash.update(data)
        self.count += len(data)
        return bytes(data)

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)


def _sniff(head: bytes) -> str:
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    return "none"


class Peeked:
    """Puts the sniffed head back in front of the stream."""

    def __init__(self, head: bytes, rest: Hashing) -> None:
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.head:
            out, self.head = self.head, b""
            return out
        return self.rest.read(n)

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)


def layer(session: requests.Session, base: str, desc: dict[str, Any], diff_id: str) -> tuple[int, int, str]:
    with session.get(f"{base}/blobs/{desc['digest']}", stream=True, timeout=60) as response:
        response.raise_for_status()
        wire = Hashing(response.raw)
        head = wire.read(4)
        kind = _sniff(head)
        source = Peeked(head, wire)
        if kind == "gzip":
            reader: Any = GzipReader(fileobj=source)
        elif kind == "zstd":
            # Peeked has the read() that stream_reader calls; its stub asks for a whole IO[bytes].
            reader = zstandard.ZstdDecompressor().stream_reader(source, read_size=CHUNK)  # type: ignore[arg-type]
        else:
            reader = source
        plain, count, buf = hashlib.sha256(), 0, bytearray(CHUNK)
        view = memoryview(buf)
        while True:
            if kind == "none":
                data = reader.read(CHUNK)
                n = len(data)
                view[:n] = data
            else:
                n = reader.readinto(view)
            if not n:
                break
            plain.update(view[:n])
            count += n
    if f"sha256:{wire.hash.hexdigest()}" != desc["digest"] or wire.count != desc["size"]:
        raise SystemExit(f"blob {desc['digest']}: digest or size mismatch")
    if f"sha256:{plain.hexdigest()}" != diff_id:
        raise SystemExit(f"blob {desc['digest']}: diff_id mismatch")
    return wire.count, count, kind


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("registry")
    ap.add_argument("repo")
    ap.add_argument("tag")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    base = f"{args.registry}/v2/{args.repo}"
    session = requests.Session()
    manifest = session.get(f"{base}/manifests/{args.tag}", headers={"Accept": ACCEPT}, timeout=30)
    manifest.raise_for_status()
    layers = json.loads(manifest.content)["layers"]
    config = session.get(f"{base}/blobs/{json.loads(manifest.content)['config']['digest']}", timeout=30)
    config.raise_for_status()
    diff_ids = json.loads(config.content)["rootfs"]["diff_ids"]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        # one session per thread: requests' Session is not documented as thread-safe
        results = list(
            pool.map(lambda ld: layer(requests.Session(), base, *ld), zip(layers, diff_ids, strict=True))
        )
    kinds = sorted({k for _, _, k in results})
    inflaters = [{"gzip": GZIP, "zstd": "zstandard"}.get(k, k) for k in kinds]
    summary = {
        "compressed": sum(r[0] for r in results),
        "uncompressed": sum(r[1] for r in results),
        "inflaters": inflaters,
        "jobs": args.jobs,
    }
    json.dump(summary, sys.stdout)
    print()


if __name__ == "__main__":
    main()
