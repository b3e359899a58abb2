"""Write a deterministic OCI layout holding one image whose single layer is a gzip tar of many
small files (default: 60,000 files, about 200 MB compressed), streamed to disk.

    python -m bench.make_layer bench/work/small-files [--files 60000] [--compression gzip|zstd]

Content is pseudo-random (seeded), so it barely compresses: the blob is about as large as the
tar, which is the hard case for a reader (every byte inflated, every header parsed).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import random
import tarfile
from pathlib import Path

from bench.images import HashingWriter

MTIME = 1700000000


def write_tar(out: io.RawIOBase, files: int, seed: int) -> None:
    rng = random.Random(seed)
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        dirs = [f"usr/share/bench/d{i:03d}" for i in range(files // 200 + 1)]
        for d in ["usr", "usr/share", "usr/share/bench", *dirs]:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
            tf.addfile(info)
        for i in range(files):
            size = int(rng.expovariate(1 / 3400))
            info = tarfile.TarInfo(f"{dirs[i // 200]}/file-{i:06d}.dat")
            info.size, info.mode, info.mtime = size, 0o644, MTIME
            tf.addfile(info, io.BytesIO(rng.randbytes(size)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("layout", type=Path)
    ap.add_argument("--files", type=int, default=60_000)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    blobs = args.layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    tmp = blobs / "layer.tmp"
    with tmp.open("wb") as fh:
        compressed = HashingWriter(fh)
        with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0, compresslevel=1) as gz:
            plain = HashingWriter(gz)
            write_tar(plain, args.files, args.seed)
    layer_digest = compressed.hash.hexdigest()
    tmp.rename(blobs / layer_digest)

    def put(obj: dict) -> dict:
        data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    config = put(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{plain.hash.hexdigest()}"]},
        }
    )
    manifest = put(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": f"sha256:{layer_digest}",
                    "size": compressed.count,
                }
            ],
        }
    )
    (args.layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (args.layout / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        **manifest,
                        "annotations": {"org.opencontainers.image.ref.name": "v1"},
                    }
                ],
            }
        )
    )
    print(
        f"layer sha256:{layer_digest}: {compressed.count} bytes compressed, {plain.count} uncompressed, "
        f"{args.files} files"
    )


if __name__ == "__main__":
    main()
