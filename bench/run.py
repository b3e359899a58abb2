"""ociboot against the Docker-free status quo and against the decompression limit (issue 4).

    python -m bench.run --out bench/RESULTS.md [--repeat 5] [--scale 1.0] [--smoke]

Builds the benchmark images under bench/work/ (once; reused while their shape is unchanged),
pushes them to a local docker-registry, then measures in one run, alternating the variants
round by round, and writes the medians and the issue-4 targets to --out.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import compileall
import dataclasses
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import debkernel, images, measure, registry
from bench.measure import Sample, Summary
from bench.registry import RegistryServer

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OCIBOOT = [sys.executable, "-m", "ociboot"]


@dataclass(frozen=True, slots=True)
class Variant:
    key: str
    title: str
    command: Callable[[Path], list[str]]  # given a fresh scratch dir
    env: Callable[[Path], dict[str, str]] | None = None
    ok: tuple[int, ...] = (0, 1)  # exit codes that are answers (1: not bootable), not failures


def layer_digests(layout: Path) -> set[str]:
    return {path.name.join(("sha256:", "")) for path in images.blob_paths(layout)[:-1]}


def has_option(command: str, option: str) -> bool:
    """Whether `ociboot COMMAND` accepts OPTION (click says "No such option" otherwise)."""
    probe = subprocess.run([*OCIBOOT, command, option, "/nonexistent-probe"], capture_output=True, text=True)
    return "No such option" not in probe.stderr


def fresh_env(scratch: Path) -> dict[str, str]:
    # A default cache under $XDG_CACHE_HOME must neither help a cold run nor outlive it.
    return {**os.environ, "XDG_CACHE_HOME": str(scratch / "xdg-cache"), "NO_COLOR": "1"}


def variants(host: str, jobs: int, warm_cache: Path | None, no_cache: bool) -> list[Variant]:
    image = f"docker://{host}/bench:v1"
    cold_flags: Callable[[Path], list[str]]
    if no_cache:
        cold_flags = lambda s: ["--no-cache"]  # noqa: E731
    elif warm_cache is not None:
        cold_flags = lambda s: ["--cache-dir", str(s / "empty-cache")]  # noqa: E731
    else:
        cold_flags = lambda s: []  # noqa: E731
    mandatory = [sys.executable, str(HERE / "mandatory.py"), f"http://{host}", "bench", "v1"]
    out = [
        Variant("a", "`ociboot check` cold", lambda s: [*OCIBOOT, "check", *cold_flags(s), image], fresh_env),
        Variant(
            "b",
            "skopeo copy + umoci unpack + shell checks",
            lambda s: ["bash", str(HERE / "statusquo.sh"), image, str(s / "sq")],
        ),
        Variant(
            "c",
            f"mandatory work: fetch + inflate + sha256, {jobs} threads",
            lambda s: [*mandatory, "--jobs", str(jobs)],
            ok=(0,),
        ),
        Variant(
            "c1", "mandatory work, one thread (for reference)", lambda s: [*mandatory, "--jobs", "1"], ok=(0,)
        ),
    ]
    if warm_cache is not None:
        warm = lambda s: [*OCIBOOT, "check", "--cache-dir", str(warm_cache), image]  # noqa: E731
        # Compared with (s), `skopeo inspect` (waiting_variants): a re-check of an unchanged image
        # needs what reading its manifest and config needs.
        out.append(Variant("d", "`ociboot check` warm cache", warm, fresh_env))
    return out


#: Issue 10's rows, measured in the same rounds: (ociboot variant, its yardstick, target ratio, what).
RATIOS = (
    ("i", "s", 3.0, "`inspect` (default) of bench:v1"),
    ("v", "p", 5.0, "`--version`"),
    ("h", "p", 5.0, "`--help`"),
)


def waiting_variants(host: str) -> list[Variant]:
    """What users wait for on every run (issue 10): inspect against skopeo inspect of the same
    image, start-up against the interpreter's own."""
    image = f"docker://{host}/bench:v1"
    return [
        Variant(
            "i",
            "`ociboot inspect` (default: manifest and config)",
            lambda s: [*OCIBOOT, "inspect", "-q", image],
            fresh_env,
            ok=(0,),
        ),
        Variant(
            "s",
            "`skopeo inspect` (yardstick for i and d)",
            lambda s: ["skopeo", "inspect", "--tls-verify=false", image],
            ok=(0,),
        ),
        Variant("v", "`ociboot --version`", lambda s: [*OCIBOOT, "--version"], fresh_env, ok=(0,)),
        Variant("h", "`ociboot --help`", lambda s: [*OCIBOOT, "--help"], fresh_env, ok=(0,)),
        Variant(
            "p", "`python -c pass` (yardstick for v, h)", lambda s: [sys.executable, "-c", "pass"], ok=(0,)
        ),
    ]


def ratios(results: dict[str, Summary]) -> list[str]:
    lines = [
        "",
        "## Where users wait (issue 10)",
        "",
        "| | ociboot s | yardstick s | ratio | target | layer bytes fetched | |",
        "|---|---:|---:|---:|---|---:|---|",
    ]
    for mine, theirs, target, what in RATIOS:
        if mine not in results or theirs not in results:
            continue
        a, b = results[mine], results[theirs]
        ratio = a.wall / b.wall
        met = ratio <= target and not a.fetched
        lines.append(
            f"| {what} ({mine} / {theirs}) | {a.wall:.3f} | {b.wall:.3f} | {ratio:.1f}x | within {target:g}x "
            f"| {mb(a.fetched)} MB | {'met' if met else 'NOT met'} |"
        )
    return lines


def ls_command(image: str) -> Callable[[Path], list[str]]:
    return lambda scratch: [*OCIBOOT, "ls", "-R", "-q", image]


def sample(reg: RegistryServer, variant: Variant, scratch_root: Path, layers: set[str]) -> Sample:
    scratch = Path(tempfile.mkdtemp(dir=scratch_root))
    try:
        env = variant.env(scratch) if variant.env else None
        offset = registry.log_offset(reg)
        result = measure.run(variant.command(scratch), env=env)
        return dataclasses.replace(result, fetched=registry.blob_bytes_since(reg, offset, layers))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _fields(s: Sample) -> dict[str, object]:
    return {name: getattr(s, name) for name in Sample.__slots__}


def alternate(
    reg: RegistryServer, todo: list[Variant], rounds: int, warmup: int, scratch: Path, layers: set[str]
) -> dict[str, list[Sample]]:
    """Each round runs every variant once, the order rotated so no variant always goes first."""
    samples: dict[str, list[Sample]] = {v.key: [] for v in todo}
    for r in range(-warmup, rounds):
        order = todo[r % len(todo) :] + todo[: r % len(todo)]
        for variant in order:
            s = sample(reg, variant, scratch, layers)
            tag = "warm-up" if r < 0 else f"round {r + 1}/{rounds}"
            print(f"  {tag} {variant.key}: {s.wall:.2f} s wall, rc {s.returncode}", file=sys.stderr)
            if s.returncode not in variant.ok:
                raise SystemExit(f"variant {variant.key} failed (exit {s.returncode}):\n{s.stderr[-3000:]}")
            if r >= 0:
                samples[variant.key].append(s)
    return samples


# --- report --------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "?"
    )
    mem = next(
        ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")
    )

    def out(*cmd: str) -> str:
        try:
            done = subprocess.run(list(cmd), capture_output=True, text=True, cwd=REPO, timeout=30)
        except OSError:
            return "?"
        return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else "?"

    commit = out("git", "rev-parse", "--short=12", "HEAD")
    if out("git", "status", "--porcelain", "--", "ociboot") not in ("", "?"):
        commit += " (with uncommitted changes in ociboot/: other work in progress)"
    versions = {}
    for name in ("isal", "zstandard"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:
            versions[name] = "not installed"
    return {
        "CPU": f"{os.cpu_count()} x {model}",
        "RAM": f"{int(mem) / 1024 / 1024:.1f} GiB",
        "OS kernel": platform.release(),
        "Python": platform.python_version(),
        "ociboot commit": commit,
        "skopeo": out("skopeo", "--version"),
        "umoci": out("umoci", "--version"),
        "docker-registry": out(registry.BINARY, "--version"),
        "isal / zstandard": f"{versions['isal']} / {versions['zstandard']}",
    }


def mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f}"


def image_section(layers: list[dict[str, object]], kver: str) -> list[str]:
    """The `## Image` section: the bench image's layers (images.py writes bench-layers.json)."""
    total_c = sum(int(x["size"]) for x in layers)  # type: ignore[call-overload]
    total_u = sum(int(x["uncompressed"]) for x in layers)  # type: ignore[call-overload]
    lines = [
        "## Image",
        "",
        f"`bench:v1`, linux/amd64, kernel {kver} from Debian's package; {len(layers)} layers, "
        f"{total_c / 1e6:.1f} MB compressed, {total_u / 1e6:.1f} MB uncompressed.",
        "",
        "| layer | media type | compressed MB | uncompressed MB | tar members |",
        "|---|---|---:|---:|---:|",
    ]
    for i, x in enumerate(layers, 1):
        lines.append(
            f"| {i} | {str(x['mediaType']).rsplit('.', 1)[-1]} | {mb(int(x['size']))} | "  # type: ignore[call-overload]
            f"{mb(int(x['uncompressed']))} | {x['members']} |"  # type: ignore[call-overload]
        )
    return lines


def report_head(
    title: str,
    module: str,
    info: dict[str, str],
    args_line: str,
    layers: list[dict[str, object]],
    kver: str,
    runs: int,
) -> list[str]:
    """What every bench report opens with: the machine, the command, the image, and the heading
    of the medians' table."""
    lines = [
        f"# {title}",
        "",
        f"Written by `python -m {module}`; a snapshot, the script is what matters.",
        "",
    ]
    lines += ["## Machine", ""] + [f"- {k}: {v}" for k, v in info.items()]
    lines += ["", "## Command", "", "```", args_line, "```", ""]
    lines += image_section(layers, kver)
    return [*lines, "", f"## Medians of {runs} alternating runs"]


def render(
    args_line: str,
    info: dict[str, str],
    layers: list[dict[str, object]],
    kver: str,
    todo: list[Variant],
    results: dict[str, Summary],
    memory: dict[str, Summary],
    memory_sizes: tuple[int, int],
    notes: list[str],
) -> str:
    runs = max((s.runs for s in results.values()), default=0)
    lines = report_head("Benchmark results", "bench.run", info, args_line, layers, kver, runs)
    lines += [
        "",
        "| | variant | wall s | CPU s | peak RSS MiB | disk written MB | layer bytes fetched MB "
        "| wall s of each run |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for v in todo:
        s = results[v.key]
        each = " ".join(f"{w:.2f}" for w in s.walls)
        lines.append(
            f"| {v.key} | {v.title} | {s.wall:.2f} | {s.cpu:.2f} | {s.rss / 2**20:.0f} | {mb(s.written)} | "
            f"{mb(s.fetched)} | {each} |"
        )
    if "d" not in results:
        lines.append(
            "| d | `ociboot check` warm cache | not available yet "
            "(`ociboot check` has no `--cache-dir`) | | | | | |"
        )
    lines += ["", "## Targets (issue 4)", "", "| target | measured | |", "|---|---|---|"]
    lines += targets(results, memory)
    lines += ratios(results)
    small, large = memory_sizes
    mem_runs = max((s.runs for s in memory.values()), default=0)
    lines += [
        "",
        f"Memory: `ociboot ls -R -q` of a one-layer image (gzip level 1, 4 random files) of {mb(large)} MB "
        f"vs {mb(small)} MB uncompressed, medians of {mem_runs} runs each:",
        "",
        "| layer | wall s | CPU s | peak RSS MiB | disk written MB |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, s in memory.items():
        lines.append(f"| {key} | {s.wall:.2f} | {s.cpu:.2f} | {s.rss / 2**20:.1f} | {mb(s.written)} |")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def targets(results: dict[str, Summary], memory: dict[str, Summary]) -> list[str]:
    def row(name: str, measured: str, met: bool | None) -> str:
        return f"| {name} | {measured} | {'met' if met else 'not measured' if met is None else 'NOT met'} |"

    a, b, c, d, s = (results.get(k) for k in "abcds")
    out = []
    if a and b:
        ratio = b.wall / a.wall
        out.append(
            row(
                "(a) at least 5x faster than (b), 0 bytes written",
                f"{ratio:.1f}x faster; (a) wrote {a.written} bytes",
                ratio >= 5 and a.written == 0,
            )
        )
    if a and c:
        ratio = a.wall / c.wall
        out.append(row("(a) within 1.3x of (c)", f"{ratio:.2f}x of (c)", ratio <= 1.3))
    if a and d:
        ratio = a.wall / d.wall
        fetched = d.fetched or 0
        out.append(
            row(
                "(d) at least 20x faster than (a), no layer bytes fetched",
                f"{ratio:.1f}x faster; (d) fetched {fetched} layer bytes",
                ratio >= 20 and fetched == 0,
            )
        )
    else:
        out.append(
            row("(d) at least 20x faster than (a), no layer bytes fetched", "cache not available yet", None)
        )
    if d and s:
        ratio = d.wall / s.wall
        fetched = d.fetched or 0
        out.append(
            row(
                "(d) within 4x of `skopeo inspect` (s), no layer bytes fetched",
                f"{ratio:.1f}x of (s); (d) fetched {fetched} layer bytes",
                ratio <= 4 and fetched == 0,
            )
        )
    if len(memory) == 2:
        small, large = memory.values()
        ratio = large.rss / small.rss
        out.append(row("peak RSS, large layer within 1.2x of small layer", f"{ratio:.2f}x", ratio <= 1.2))
    return out


# --- main ----------------------------------------------------------------------------------------


def size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].upper() in units else int(text)


def image_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of every bench script that builds bench:v1 (`bench_image`)."""
    ap.add_argument(
        "--scale", type=float, default=1.0, help="image size factor (1.0: about 200 MB compressed)"
    )
    ap.add_argument("--kernel-deb", type=Path, help="a linux-image-*.deb to use instead of apt-get download")
    ap.add_argument("--work", type=Path, default=HERE / "work")


def bench_image(args: argparse.Namespace) -> tuple[Path, debkernel.Kernel]:
    """bench:v1's layout under --work (built once) and its kernel; ociboot compiled to bytecode
    first, as `pip install` does (an editable checkout under PYTHONDONTWRITEBYTECODE, set on this
    kind of machine, would recompile ociboot at every start)."""
    work: Path = args.work.resolve()
    kernel = debkernel.fetch(work, args.kernel_deb)
    layout = images.realistic(work, images.Shape().scaled(args.scale), kernel)
    import ociboot

    compileall.compile_dir(str(Path(ociboot.__file__).parent), quiet=1)
    return layout, kernel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    ap.add_argument("--repeat", type=int, default=5, help="measured rounds (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (page cache, imports)")
    image_arguments(ap)
    ap.add_argument("--memory-sizes", default="10M,1G", help="small,large layer for the RSS target")
    ap.add_argument("--smoke", action="store_true", help="tiny image, one round: checks the script works")
    args = ap.parse_args()
    # A terminated run still stops its registry (the `finally` below) instead of orphaning it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.smoke:
        args.scale, args.repeat, args.warmup, args.memory_sizes = 0.01, 1, 0, "1M,8M"
    for tool in ("skopeo", "umoci", "file", "dpkg-query", "zstdcat", "cpio"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install -y skopeo umoci file dpkg zstd cpio")
    small_size, large_size = (size(x) for x in args.memory_sizes.split(","))
    work: Path = args.work.resolve()
    notes: list[str] = []

    print("building images", file=sys.stderr)
    layout, kernel = bench_image(args)
    mem_layouts = {"small": images.one_layer(work, small_size), "large": images.one_layer(work, large_size)}
    notes.append("ociboot's modules were compiled to bytecode first, as `pip install` does")

    cache_dir = has_option("check", "--cache-dir")
    no_cache = cache_dir and has_option("check", "--no-cache")
    warm_cache = work / "warm-cache" if cache_dir else None
    jobs = os.cpu_count() or 1

    reg = registry.start(work / "registry")
    scratch = work / "scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        print(f"pushing to {reg.host}", file=sys.stderr)
        registry.push(reg, layout, "bench", "v1")
        for key, mem_layout in mem_layouts.items():
            registry.push(reg, mem_layout, f"mem-{key}", "v1")
        image = f"docker://{reg.host}/bench:v1"
        verdict = measure.run([*OCIBOOT, "check", image], env=fresh_env(scratch))
        said = [ln.strip() for ln in verdict.stdout.splitlines() if "BOOTABLE" in ln]
        notes.append(f"`ociboot check` said: {said[-1] if said else verdict.stdout.strip()[-300:]}")
        if warm_cache is not None:
            shutil.rmtree(warm_cache, ignore_errors=True)
            filled = measure.run(
                [*OCIBOOT, "check", "--cache-dir", str(warm_cache), image], env=fresh_env(scratch)
            )
            if filled.returncode not in (0, 1):
                raise SystemExit(f"filling the cache failed:\n{filled.stderr[-3000:]}")
        else:
            notes.append("(d) not available yet: `ociboot check` has no `--cache-dir`; rerun once it has.")
        todo = variants(reg.host, jobs, warm_cache, no_cache) + waiting_variants(reg.host)
        print(
            f"measuring {[v.key for v in todo]}: {args.warmup} warm-up + {args.repeat} rounds",
            file=sys.stderr,
        )
        samples = alternate(reg, todo, args.repeat, args.warmup, scratch, layer_digests(layout))
        results = {k: Summary.of(v) for k, v in samples.items()}
        notes.append(
            f"(b) said: {samples['b'][-1].stdout.strip().splitlines()[-1]}; "
            f"skopeo + umoci left {samples['b'][-1].stdout.split()[1]} bytes on disk (du -sb)"
        )
        notes.append(f"(c) {samples['c'][-1].stdout.strip()}")

        mem_variants = [
            Variant(k, f"ls {k}", ls_command(f"docker://{reg.host}/mem-{k}:v1"), fresh_env, ok=(0,))
            for k in mem_layouts
        ]
        print("measuring memory", file=sys.stderr)
        mem_digests = set().union(*(layer_digests(m) for m in mem_layouts.values()))
        mem_samples = alternate(reg, mem_variants, max(3, args.repeat), 0, scratch, mem_digests)
        memory = {k: Summary.of(v) for k, v in mem_samples.items()}
    finally:
        reg.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    layers = json.loads((layout / "bench-layers.json").read_text())
    argv = ["python", "-m", "bench.run", *sys.argv[1:]]
    text = render(
        " ".join(argv), machine(), layers, kernel.kver, todo, results, memory, (small_size, large_size), notes
    )
    args.out.write_text(text)
    raw = {
        k: [_fields(s) | {"stdout": s.stdout[-500:], "stderr": s.stderr[-500:]} for s in v]
        for k, v in samples.items()
    }
    (work / "results.json").write_text(json.dumps(raw, indent=1))
    print(text)


if __name__ == "__main__":
    main()
