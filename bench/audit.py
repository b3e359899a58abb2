"""`ociboot audit` of N tags sharing layers beside N independent `ociboot check` runs (issue 11).

    python -m bench.audit --out bench/AUDIT.md [--tags 10,50] [--repeat 1] [--scale 1.0] [--smoke]

Pushes, for each N, a namespace `nN/` of five repositories `nN/os-0` … `nN/os-4` holding N tags
in all: every tag is bench:v1 (bench/images.py, three layers, about 200 MB) with one small layer
of its own on top (a file naming the tag), so the N images share L = 3 layers and differ in one.
Then measures, alternating round by round:

- `ociboot audit docker://HOST/nN --format jsonl` (no cache given: the audit's own temporary one);
- the status quo it replaces: a shell loop of N `ociboot check` processes, one per tag, cold.

Blob bytes fetched come from the registry's own log (bench/registry.py), wall time from the
whole process tree (bench/measure.py).  Each audit's jsonl verdicts are compared with the
loop's exit codes, tag by tag.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from bench import measure, registry
from bench.measure import Sample, Summary
from bench.registry import RegistryServer
from bench.run import HERE, OCIBOOT, bench_image, fresh_env, image_arguments, machine, mb, report_head
from ociboot.mediatypes import MediaType
from tests.support.imagebuilder import Blob, LayerBuilder, canonical_json, compress, sha256
from tests.support.registry_push import Pusher, PushError

REPOSITORIES = 5
OCI_MANIFEST = MediaType.OCI_MANIFEST.value
OCI_CONFIG = MediaType.OCI_CONFIG.value
OCI_GZIP = MediaType.OCI_LAYER_GZIP.value


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    tags: tuple[str, ...]  # docker://HOST/REPO:TAG of every tag


def _own_layer(tag: str) -> tuple[Blob, str]:
    """A tag's own small gzip layer and its diff_id (deterministic: fixed mtime, no gzip name)."""
    tar = LayerBuilder().dir("etc").file("etc/bench-tag", f"{tag}\n".encode()).tar()
    return Blob(OCI_GZIP, compress(tar, "gzip")), sha256(tar)


def push_namespace(server: RegistryServer, layout: Path, name: str, n: int) -> Namespace:
    """N tags over REPOSITORIES repositories of `name/`, each bench:v1 plus a layer of its own."""
    blobs = layout / "blobs" / "sha256"
    top = json.loads((layout / "index.json").read_text())["manifests"][0]
    manifest = json.loads((blobs / top["digest"].split(":")[1]).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"].split(":")[1]).read_bytes())
    pusher = Pusher(server.url)
    tags = []
    try:
        for i in range(n):
            repo, tag = f"{name}/os-{i % REPOSITORIES}", f"t{i:03d}"
            for layer in manifest["layers"]:
                with (blobs / layer["digest"].split(":")[1]).open("rb") as fh:
                    pusher.push_blob(repo, (layer["digest"], fh))  # once per repository (HEAD first)
            own, diff_id = _own_layer(f"{repo}:{tag}")
            cfg = json.loads(json.dumps(config))
            cfg["rootfs"]["diff_ids"].append(diff_id)
            cfg["created"] = f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z"
            cfg_blob = Blob(OCI_CONFIG, canonical_json(cfg))
            pusher.push_blob(repo, own)
            pusher.push_blob(repo, cfg_blob)
            derived = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": cfg_blob.descriptor(),
                "layers": [*manifest["layers"], own.descriptor()],
            }
            pusher.push_manifest(repo, tag, Blob(OCI_MANIFEST, canonical_json(derived)))
            tags.append(f"docker://{server.host}/{repo}:{tag}")
    except PushError as exc:
        raise SystemExit(f"push to {server.host}/{name}: {exc}") from None
    return Namespace(name, tuple(tags))


def audit_once(server: RegistryServer, ns: Namespace, scratch: Path) -> tuple[Sample, dict[str, bool | None]]:
    out = scratch / "audit.jsonl"
    cmd = [*OCIBOOT, "audit", "-q", "--format", "jsonl", "-o", str(out), f"docker://{server.host}/{ns.name}"]
    offset = registry.log_offset(server)
    sample = measure.run(cmd, env=fresh_env(scratch))
    if sample.returncode not in (0, 1):
        raise SystemExit(f"audit failed (exit {sample.returncode}):\n{sample.stderr[-3000:]}")
    verdicts = {}
    for line in out.read_text().splitlines():
        r = json.loads(line)
        verdicts[f"docker://{server.host}/{r['repository']}:{r['tag']}"] = r["bootable"]
    return replace(sample, fetched=registry.blob_bytes_since(server, offset)), verdicts


def loop_once(server: RegistryServer, ns: Namespace, scratch: Path) -> tuple[Sample, dict[str, bool | None]]:
    """The shell loop the audit replaces: `for t in TAGS; do ociboot check -q "$t"; done`."""
    script = scratch / "loop.sh"
    script.write_text("for t in " + " ".join(ns.tags) + '; do\n  "$@" "$t" >/dev/null; echo "$t $?"\ndone\n')
    offset = registry.log_offset(server)
    sample = measure.run(
        ["sh", str(script), *OCIBOOT, "check", "-q", "--format", "json"], env=fresh_env(scratch)
    )
    verdicts: dict[str, bool | None] = {}
    for line in sample.stdout.splitlines():
        ref, _, code = line.rpartition(" ")
        if ref.startswith("docker://") and code.isdigit():
            verdicts[ref] = {0: True, 1: False}.get(int(code))
    return replace(sample, fetched=registry.blob_bytes_since(server, offset)), verdicts


def render(
    argv: str,
    info: dict[str, str],
    layers: list[dict[str, object]],
    kver: str,
    runs: int,
    rows: list[tuple[int, Summary, Summary]],
    notes: list[str],
) -> str:
    lines = report_head(
        "`ociboot audit` against a loop of `ociboot check`", "bench.audit", info, argv, layers, kver, runs
    )
    lines += [
        "",
        "| tags N | audit s | loop of N checks s | wall ratio | audit blob MB | loop blob MB | bytes ratio "
        "| audit peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, audit, loop in rows:
        bytes_ratio = (loop.fetched or 0) / audit.fetched if audit.fetched else float("nan")
        lines.append(
            f"| {n} | {audit.wall:.2f} | {loop.wall:.2f} | {loop.wall / audit.wall:.1f}x faster | "
            f"{mb(audit.fetched)} | {mb(loop.fetched)} | {bytes_ratio:.1f}x fewer | {mb(audit.rss)} |"
        )
    lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "AUDIT.md")
    ap.add_argument("--tags", default="10,50", help="the values of N, comma-separated")
    ap.add_argument("--repeat", type=int, default=1, help="measured rounds (median reported)")
    image_arguments(ap)
    ap.add_argument("--smoke", action="store_true", help="tiny image, N=3, one round: does it work?")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the registry is stopped below
    if args.smoke:
        args.scale, args.repeat, args.tags = 0.01, 1, "3"
    counts = [int(n) for n in args.tags.split(",")]
    work: Path = args.work.resolve()
    print("building the image", file=sys.stderr)
    layout, kernel = bench_image(args)
    server = registry.start(work / "registry-audit", "bench-audit")
    scratch_root = work / "scratch-audit"
    shutil.rmtree(scratch_root, ignore_errors=True)
    scratch_root.mkdir(parents=True)
    rows = []
    notes = ["ociboot's modules were compiled to bytecode first, as `pip install` does"]
    try:
        for n in counts:
            print(f"pushing n{n}/: {n} tags over {REPOSITORIES} repositories", file=sys.stderr)
            ns = push_namespace(server, layout, f"n{n}", n)
            samples: dict[str, list[Sample]] = {"audit": [], "loop": []}
            judged: dict[str, dict[str, bool | None]] = {}
            for r in range(args.repeat):
                for key, once in (("audit", audit_once), ("loop", loop_once))[:: 1 if r % 2 == 0 else -1]:
                    scratch = Path(tempfile.mkdtemp(dir=scratch_root))
                    try:
                        sample, verdicts = once(server, ns, scratch)
                    finally:
                        shutil.rmtree(scratch, ignore_errors=True)
                    print(f"  N={n} round {r + 1}: {key} {sample.wall:.2f} s", file=sys.stderr)
                    if set(verdicts) != set(ns.tags):
                        raise SystemExit(f"{key} judged {len(verdicts)} of the {n} tags")
                    samples[key].append(sample)
                    judged[key] = verdicts
                if judged["audit"] != judged["loop"]:
                    raise SystemExit(f"N={n}: the audit's verdicts differ from the checks'")
            rows.append((n, Summary.of(samples["audit"]), Summary.of(samples["loop"])))
    finally:
        server.stop()
        shutil.rmtree(scratch_root, ignore_errors=True)
    notes.append("every tag's verdict in the audit's jsonl equals the exit code of its own `check` run")
    notes.append(
        "the loop runs its checks one after another, as a shell loop does; the audit judges "
        "several images at once (its default --jobs) and fetches each shared layer once"
    )
    layers = json.loads((layout / "bench-layers.json").read_text())
    argv = " ".join(["python", "-m", "bench.audit", *sys.argv[1:]])
    text = render(argv, machine(), layers, kernel.kver, args.repeat, rows, notes)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
