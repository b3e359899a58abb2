"""Micro-benchmark: ociboot's tar walker against Python's tarfile on the same plain tar.

    python -m bench.tarwalk [--files 50000]

Builds an in-memory PAX tar of small files (0-699 bytes each), then lists it with
`layer.read_tar` (Entry records built) and with `tarfile` (TarInfo records built), best of 3.
"""

from __future__ import annotations

import argparse
import io
import tarfile
import time

from ociboot.layer import read_tar


def make_tar(files: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for i in range(files):
            info = tarfile.TarInfo(f"usr/share/d{i // 200:03d}/file{i:05d}.txt")
            data = b"x" * (i % 700)
            info.size, info.mtime = len(data), 1700000000
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def best(fn: object, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=50_000)
    args = parser.parse_args()
    tar = make_tar(args.files)

    def ours() -> None:
        assert len(read_tar(io.BytesIO(tar)).entries) == args.files

    def theirs() -> None:
        with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
            assert sum(1 for _ in tf) == args.files

    a, b = best(ours), best(theirs)
    mb = len(tar) / 1e6
    print(f"{args.files} members, {mb:.1f} MB plain tar")
    print(f"read_tar: {a:.3f} s  {a / args.files * 1e6:.1f} us/member  {mb / a:.0f} MB/s")
    print(f"tarfile:  {b:.3f} s  {b / args.files * 1e6:.1f} us/member  {mb / b:.0f} MB/s")
    print(f"speed-up: {b / a:.1f}x")


if __name__ == "__main__":
    main()
