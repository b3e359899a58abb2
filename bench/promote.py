"""`ociboot promote` beside `skopeo copy` for the bench image (issue 9's closing note).

    python -m bench.promote --out bench/PROMOTE.md [--repeat 5] [--scale 1.0] [--smoke]

Pushes `bench:v1` (bench/images.py, about 200 MB) to a docker-registry on 127.0.0.1 as
`staging/os:1`, then measures in one run, alternating the variants round by round, a copy of it
to a fresh destination repository every round:

- one registry: `ociboot promote -q [--no-cache] .../staging/os:1 .../prod-N/os:1` (cross-repository
  mounts) beside `skopeo copy .../staging/os:1 .../prod2-N/os:1`, cold (an empty blob-info cache:
  skopeo does not know the blobs are in the registry, so it reads and sends them) and warm (its
  cache knows the source repository from an earlier copy, so it mounts);
- two registries: the same with the destination on a second registry (the streamed path), cold;
- for reference, `ociboot check` of the source alone (what promote must read anyway).

Every copy is verified: the destination's manifest digest must be the source's.  Until
`ociboot promote` exists, only the skopeo variants run and the output says so.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from bench import measure, registry
from bench.measure import Sample, Summary
from bench.registry import RegistryServer
from bench.run import (
    HERE,
    OCIBOOT,
    bench_image,
    fresh_env,
    has_option,
    image_arguments,
    layer_digests,
    machine,
    mb,
    report_head,
)

SOURCE = "staging/os"
TAG = "1"
#: What the registries are asked for when a destination is compared with the source.
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


@dataclass(frozen=True, slots=True)
class Copy:
    key: str
    title: str
    command: Callable[[str, str], list[str]]  # (source ref, destination ref)
    env: Callable[[Path], dict[str, str]]  # given a fresh scratch dir
    source: RegistryServer
    dest: RegistryServer | None  # None: nothing is copied (the reference check)
    repo: str  # the destination repository, `{n}` replaced by the sample's number


@dataclass(frozen=True, slots=True)
class Measured:
    sample: Sample
    mounted: int  # blobs the destination mounted from another repository


def has_command(command: str) -> bool:
    return subprocess.run([*OCIBOOT, command, "--help"], capture_output=True).returncode == 0


def skopeo(src: str, dst: str) -> list[str]:
    return ["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", src, dst]


def skopeo_env(data_home: Path) -> dict[str, str]:
    """skopeo with its blob-info cache (where it has seen each blob: what lets it mount) under
    `data_home`.  As root it would use the machine's one cache in /var/lib/containers/cache; the
    containers/image library takes this variable as the user id that picks the per-user one."""
    return {**os.environ, "_CONTAINERS_ROOTLESS_UID": "65534", "XDG_DATA_HOME": str(data_home)}


def copies(a: RegistryServer, b: RegistryServer, promote: bool, no_cache: bool, warm: Path) -> list[Copy]:
    cold = ["--no-cache"] if no_cache else []

    def ociboot_promote(src: str, dst: str) -> list[str]:
        return [*OCIBOOT, "promote", "-q", *cold, src, dst]

    def ociboot_check(src: str, dst: str) -> list[str]:
        return [*OCIBOOT, "check", "-q", *cold, src]

    def cold_skopeo(scratch: Path) -> dict[str, str]:
        return skopeo_env(scratch / "skopeo-data")

    out = [Copy("r", "`ociboot check` of the source (reference)", ociboot_check, fresh_env, a, None, "")]
    if promote:
        out.append(
            Copy("p1", "`ociboot promote`, one registry", ociboot_promote, fresh_env, a, a, "prod-{n}/os")
        )
    out.append(Copy("s1", "`skopeo copy`, one registry, cold", skopeo, cold_skopeo, a, a, "prod2-{n}/os"))
    out.append(
        Copy(
            "s1w",
            "`skopeo copy`, one registry, warm",
            skopeo,
            lambda s: skopeo_env(warm),
            a,
            a,
            "prod3-{n}/os",
        )
    )
    if promote:
        out.append(
            Copy("p2", "`ociboot promote`, two registries", ociboot_promote, fresh_env, a, b, "prod-{n}/os")
        )
    out.append(Copy("s2", "`skopeo copy`, two registries, cold", skopeo, cold_skopeo, a, b, "prod2-{n}/os"))
    return out


def manifest_digest(server: RegistryServer, repo: str, tag: str) -> str | None:
    response = requests.head(
        f"{server.url}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES}, timeout=30
    )
    return response.headers.get("Docker-Content-Digest") if response.status_code == 200 else None


def sample(copy: Copy, n: int, scratch_root: Path, layers: set[str], digest: str) -> Measured:
    scratch = Path(tempfile.mkdtemp(dir=scratch_root))
    repo = copy.repo.format(n=n)
    dest = copy.dest or copy.source
    src_ref, dst_ref = f"docker://{copy.source.host}/{SOURCE}:{TAG}", f"docker://{dest.host}/{repo}:{TAG}"
    try:
        read_from, mounted_at = registry.log_offset(copy.source), registry.log_offset(dest)
        result = measure.run(copy.command(src_ref, dst_ref), env=copy.env(scratch))
        if result.returncode != 0:
            raise SystemExit(f"{copy.key} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
        fetched = registry.blob_bytes_since(copy.source, read_from, layers)
        mounted = registry.mounts_since(dest, mounted_at) if copy.dest else 0
        if copy.dest is not None and (copied := manifest_digest(dest, repo, TAG)) != digest:
            raise SystemExit(f"{copy.key}: {dst_ref} is {copied}, not the source's {digest}")
        return Measured(dataclasses.replace(result, fetched=fetched), mounted)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def alternate(
    todo: list[Copy], rounds: int, warmup: int, scratch: Path, layers: set[str], digest: str
) -> dict[str, list[Measured]]:
    """Each round runs every variant once, the order rotated; every copy goes to a new repository."""
    samples: dict[str, list[Measured]] = {c.key: [] for c in todo}
    numbers = itertools.count(1)
    for r in range(-warmup, rounds):
        order = todo[r % len(todo) :] + todo[: r % len(todo)]
        for copy in order:
            m = sample(copy, next(numbers), scratch, layers, digest)
            tag = "warm-up" if r < 0 else f"round {r + 1}/{rounds}"
            print(f"  {tag} {copy.key}: {m.sample.wall:.2f} s wall, {m.mounted} mounted", file=sys.stderr)
            if r >= 0:
                samples[copy.key].append(m)
    return samples


# --- report --------------------------------------------------------------------------------------


def render(
    args_line: str,
    layers: list[dict[str, object]],
    kver: str,
    todo: list[Copy],
    samples: dict[str, list[Measured]],
    notes: list[str],
) -> str:
    results = {k: Summary.of([m.sample for m in v]) for k, v in samples.items()}
    runs = max((s.runs for s in results.values()), default=0)
    lines = report_head("Promotion benchmark", "bench.promote", machine(), args_line, layers, kver, runs)
    lines += [
        "",
        f"Source `{SOURCE}:{TAG}` on registry A; every copy goes to a repository that did not exist before.",
        "",
        "| | variant | wall s | CPU s | peak RSS MiB | disk written MB | layer bytes read from A MB "
        "| blobs mounted | wall s of each run |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in todo:
        s = results[c.key]
        mounted = max(m.mounted for m in samples[c.key])
        each = " ".join(f"{w:.2f}" for w in s.walls)
        lines.append(
            f"| {c.key} | {c.title} | {s.wall:.2f} | {s.cpu:.2f} | {s.rss / 2**20:.0f} | {mb(s.written)} | "
            f"{mb(s.fetched)} | {mounted} | {each} |"
        )
    if "p1" not in results:
        lines.append(
            "| p1, p2 | `ociboot promote` | not available yet (ociboot has no `promote`) | | | | | | |"
        )
    lines += ["", "## promote beside skopeo copy", "", "| route | promote / skopeo copy, wall |", "|---|---|"]
    routes = (("one registry, skopeo cold", "p1", "s1"), ("one registry, skopeo warm", "p1", "s1w"))
    for route, pk, sk in (*routes, ("two registries", "p2", "s2")):
        if pk in results:
            p, s = results[pk], results[sk]
            lines.append(f"| {route} | {p.wall:.2f} s / {s.wall:.2f} s = {p.wall / s.wall:.2f}x |")
        else:
            lines.append(f"| {route} | not measured (no `ociboot promote`) |")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "PROMOTE.md")
    ap.add_argument("--repeat", type=int, default=5, help="measured rounds (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (page cache, imports)")
    image_arguments(ap)
    ap.add_argument("--smoke", action="store_true", help="tiny image, one round: checks the script works")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the registries are stopped below
    if args.smoke:
        args.scale, args.repeat, args.warmup = 0.01, 1, 0
    if shutil.which("skopeo") is None:
        raise SystemExit("skopeo not found: apt-get install -y skopeo")
    work: Path = args.work.resolve()
    notes: list[str] = []

    print("building the image", file=sys.stderr)
    layout, kernel = bench_image(args)
    notes.append("ociboot's modules were compiled to bytecode first, as `pip install` does")
    promote = has_command("promote")
    no_cache = has_option("check", "--no-cache")
    if not promote:
        notes.append("`ociboot promote` is not available yet: only skopeo and the reference check ran.")

    a = registry.start(work / "registry-a", "bench-a")
    b: RegistryServer | None = None
    scratch = work / "scratch-promote"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        b = registry.start(work / "registry-b", "bench-b")
        print(f"pushing to {a.host} as {SOURCE}:{TAG}; second registry {b.host}", file=sys.stderr)
        digest = registry.push(a, layout, SOURCE, TAG)
        warm = scratch / "skopeo-warm"
        primed = subprocess.run(
            skopeo(f"docker://{a.host}/{SOURCE}:{TAG}", f"docker://{a.host}/prime/os:{TAG}"),
            env=skopeo_env(warm),
            capture_output=True,
            text=True,
        )
        if primed.returncode != 0:
            raise SystemExit(f"priming skopeo's blob-info cache failed:\n{primed.stderr[-3000:]}")
        todo = copies(a, b, promote, no_cache, warm)
        print(
            f"measuring {[c.key for c in todo]}: {args.warmup} warm-up + {args.repeat} rounds",
            file=sys.stderr,
        )
        samples = alternate(todo, args.repeat, args.warmup, scratch, layer_digests(layout), digest)
    finally:
        a.stop()
        if b is not None:
            b.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    notes.append(f"every copy's manifest digest was checked equal to the source's, {digest}")
    notes.append(
        "the registries are Debian's docker-registry on 127.0.0.1 (plain HTTP, no auth); skopeo mounts "
        "a blob from another repository only when its blob-info cache knows where the blob is: cold "
        "skopeo has an empty one every run, warm skopeo one primed by an unmeasured copy from "
        f'{SOURCE}; the "blobs mounted" column says what each variant did'
    )
    if promote:
        notes.append("`ociboot promote` also attached its verdict to each destination (the default)")
    layers = json.loads((layout / "bench-layers.json").read_text())
    argv = ["python", "-m", "bench.promote", *sys.argv[1:]]
    text = render(" ".join(argv), layers, kernel.kver, todo, samples, notes)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
