"""Command line: arguments -> pipeline -> render -> exit code.  No logic of its own.

Exit codes (DESIGN.md §4): 0 ok/bootable, 1 not bootable, 2 usage, 3 the image could not be read.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from . import __version__, pipeline, views
from .budget import DEFAULT_ANALYSIS_BUDGET
from .cache import LayerCache, default_cache_dir, parse_size
from .errors import OcibootError
from .layer import CaptureSpec
from .report import Report, render_json, render_junit, render_sarif, render_text
from .report import exit_code as report_exit_code
from .sources import SourceOptions
from .spec import Platform

app = typer.Typer(
    name="ociboot",
    # Help texts are plain: `oci:DIR[:REF]` and `os/arch[/variant]` are grammar, not rich markup.
    rich_markup_mode=None,
    help="Inspect OCI and Docker images without Docker and without unpacking them: will this image boot?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Format(StrEnum):
    text = "text"
    json = "json"


ImageArg = Annotated[
    str,
    typer.Argument(
        help="docker://HOST/REPO:TAG, oci:DIR[:REF], oci-archive:FILE[:REF], "
        "docker-archive:FILE[:NAME:TAG|@N], a bare name, or a path"
    ),
]
PlatformOpt = Annotated[
    str | None, typer.Option("--platform", help="os/arch[/variant]; default: this host's")
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="output format")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")]
CredsOpt = Annotated[str | None, typer.Option("--creds", help="USER[:PASS] for the registry")]
AuthfileOpt = Annotated[
    str | None, typer.Option("--authfile", help="auth.json / config.json with credentials")
]
TlsOpt = Annotated[
    bool, typer.Option("--tls-verify/--no-tls-verify", help="verify registry TLS certificates")
]
CertDirOpt = Annotated[str | None, typer.Option("--cert-dir", help="directory with *.crt CAs, *.cert/*.key")]
PlainHttpOpt = Annotated[bool, typer.Option("--plain-http", help="use http:// even for non-loopback hosts")]
CacheDirOpt = Annotated[
    str | None,
    typer.Option("--cache-dir", help="keep layer indexes in DIR (implies --cache)"),
]
# Opt-in: without it nothing is ever written to disk (DESIGN.md; issue 4's cold run writes 0 bytes).
CacheOpt = Annotated[
    bool,
    typer.Option(
        "--cache/--no-cache",
        help="reuse layer indexes from the cache in $XDG_CACHE_HOME/ociboot (~/.cache/ociboot)",
    ),
]


def _options(
    platform: str | None,
    quiet: bool,
    creds: str | None,
    authfile: str | None,
    tls_verify: bool,
    cert_dir: str | None,
    plain_http: bool,
    cache_dir: str | None = None,
    use_cache: bool = False,
) -> pipeline.Options:
    try:
        wanted = Platform.parse(platform) if platform else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--platform") from None
    source = SourceOptions(
        creds=creds,
        authfile=authfile,
        tls_verify=tls_verify,
        cert_dir=cert_dir,
        plain_http=True if plain_http else None,
    )
    progress = None if quiet else _progress_factory()
    return pipeline.Options(
        source=source, platform=wanted, progress=progress, cache=_open_cache(cache_dir, use_cache)
    )


def _open_cache(cache_dir: str | None, use_cache: bool) -> LayerCache | None:
    if not use_cache and cache_dir is None:
        return None
    from .boot.initrd import InitrdInfo
    from .boot.kernel import KernelInfo
    from .boot.scan import PackageDbResult

    return LayerCache(
        cache_dir or default_cache_dir(),
        # What the check analyzers return (boot/scan.py): the only classes a cache file may name.
        analysis_types=(KernelInfo, InitrdInfo, PackageDbResult),
        salt=__version__,
        warn=lambda message: err.print(f"ociboot: warning: {message}", markup=False),
    )


_live: Progress | None = None


def _progress_factory() -> pipeline.ProgressFactory | None:
    if not err.is_terminal:
        return None

    def factory(name: str, total: int) -> Callable[[int], None]:
        assert _live is not None
        task = _live.add_task(name, total=total)
        return lambda n: _live.advance(task, n) if _live is not None else None

    return factory


@contextmanager
def _running(options: pipeline.Options) -> Iterator[None]:
    """Show progress bars while the body runs (terminal only); map errors to exit code 3."""
    global _live
    try:
        if options.progress is not None:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=err,
                transient=True,
            ) as _live:
                yield
        else:
            yield
    except OcibootError as exc:
        err.print(f"ociboot: error: {exc}", markup=False)
        raise typer.Exit(exc.exit_code) from None
    finally:
        _live = None


def _emit(fmt: Format, data: Any, text: Callable[[], str]) -> None:
    out = json.dumps(data, indent=2, sort_keys=False) if fmt is Format.json else text()
    sys.stdout.write(out if out.endswith("\n") or not out else out + "\n")


@app.command()
def inspect(
    image: ImageArg,
    raw: Annotated[bool, typer.Option("--raw", help="print the manifest (or index) bytes as stored")] = False,
    config: Annotated[bool, typer.Option("--config", help="print the image config bytes as stored")] = False,
    sizes: Annotated[
        bool, typer.Option("--sizes/--no-sizes", help="stream layers for uncompressed sizes")
    ] = True,
    platform: PlatformOpt = None,
    fmt: FormatOpt = Format.text,
    quiet: QuietOpt = False,
    creds: CredsOpt = None,
    authfile: AuthfileOpt = None,
    tls_verify: TlsOpt = True,
    cert_dir: CertDirOpt = None,
    plain_http: PlainHttpOpt = False,
    cache_dir: CacheDirOpt = None,
    use_cache: CacheOpt = False,
) -> None:
    """Manifest digest, platforms, config summary and layers of an image."""
    options = _options(
        platform, quiet, creds, authfile, tls_verify, cert_dir, plain_http, cache_dir, use_cache
    )
    with _running(options), pipeline.opened(image, options) as source:
        if raw:
            top = source.get_manifest()
            sys.stdout.buffer.write(top.data)
            return
        resolved = pipeline.open_image(source, options)
        if config:
            sys.stdout.buffer.write(resolved.config_raw)
            return
        layers = pipeline.index_layers(resolved, None, options) if sizes else None
        data = views.inspect_data(resolved, layers)
        _emit(fmt, data, lambda: views.inspect_text(data))


@app.command("ls")
def ls_(
    image: ImageArg,
    path: Annotated[str, typer.Argument(help="directory or file inside the image")] = "/",
    long: Annotated[bool, typer.Option("-l", "--long", help="mode, owner, size, link targets")] = False,
    recursive: Annotated[bool, typer.Option("-R", "--recursive", help="list subdirectories too")] = False,
    platform: PlatformOpt = None,
    fmt: FormatOpt = Format.text,
    quiet: QuietOpt = False,
    creds: CredsOpt = None,
    authfile: AuthfileOpt = None,
    tls_verify: TlsOpt = True,
    cert_dir: CertDirOpt = None,
    plain_http: PlainHttpOpt = False,
    cache_dir: CacheDirOpt = None,
    use_cache: CacheOpt = False,
) -> None:
    """List a directory of the image's final filesystem (symlinks shown with where they resolve)."""
    options = _options(
        platform, quiet, creds, authfile, tls_verify, cert_dir, plain_http, cache_dir, use_cache
    )
    with _running(options), pipeline.opened(image, options) as source:
        loaded = pipeline.load_tree(pipeline.open_image(source, options), None, options)
        rows = views.listing(loaded, path, recursive=recursive)
        _emit(fmt, rows, lambda: views.listing_text(rows, long=long))


@app.command()
def cat(
    image: ImageArg,
    path: Annotated[str, typer.Argument(help="file inside the image; symlinks are followed")],
    platform: PlatformOpt = None,
    quiet: QuietOpt = False,
    creds: CredsOpt = None,
    authfile: AuthfileOpt = None,
    tls_verify: TlsOpt = True,
    cert_dir: CertDirOpt = None,
    plain_http: PlainHttpOpt = False,
) -> None:
    """Write a file's bytes, read from the layer that supplies it, after its digests verified."""
    options = _options(platform, quiet, creds, authfile, tls_verify, cert_dir, plain_http)
    with _running(options), pipeline.opened(image, options) as source:
        resolved = pipeline.open_image(source, options)
        loaded = pipeline.load_tree(
            resolved, CaptureSpec.exact(path.lstrip("/"), pipeline.CAT_FIRST_PASS_CAP), options
        )
        _, data = pipeline.read_file(loaded, path, options)
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


@app.command()
def stat(
    image: ImageArg,
    path: Annotated[str, typer.Argument(help="path inside the image")],
    platform: PlatformOpt = None,
    fmt: FormatOpt = Format.text,
    quiet: QuietOpt = False,
    creds: CredsOpt = None,
    authfile: AuthfileOpt = None,
    tls_verify: TlsOpt = True,
    cert_dir: CertDirOpt = None,
    plain_http: PlainHttpOpt = False,
    cache_dir: CacheDirOpt = None,
    use_cache: CacheOpt = False,
) -> None:
    """Type, mode, owner, size, link chain and the layer that supplied a path."""
    options = _options(
        platform, quiet, creds, authfile, tls_verify, cert_dir, plain_http, cache_dir, use_cache
    )
    with _running(options), pipeline.opened(image, options) as source:
        loaded = pipeline.load_tree(pipeline.open_image(source, options), None, options)
        data = views.stat_data(loaded, path)
        _emit(fmt, data, lambda: views.stat_text(data))
    if not data.get("exists"):
        raise typer.Exit(3)


@app.command()
def layers(
    image: ImageArg,
    platform: PlatformOpt = None,
    fmt: FormatOpt = Format.text,
    quiet: QuietOpt = False,
    creds: CredsOpt = None,
    authfile: AuthfileOpt = None,
    tls_verify: TlsOpt = True,
    cert_dir: CertDirOpt = None,
    plain_http: PlainHttpOpt = False,
    cache_dir: CacheDirOpt = None,
    use_cache: CacheOpt = False,
) -> None:
    """What each layer adds, changes and removes, with its sizes."""
    options = _options(
        platform, quiet, creds, authfile, tls_verify, cert_dir, plain_http, cache_dir, use_cache
    )
    with _running(options), pipeline.opened(image, options) as source:
        loaded = pipeline.load_tree(pipeline.open_image(source, options), None, options)
        data = views.layers_data(loaded)
        _emit(fmt, data, lambda: views.layers_text(data))


class CheckFormat(StrEnum):
    text = "text"
    json = "json"
    sarif = "sarif"
    junit = "junit"


class ProfileName(StrEnum):
    auto = "auto"
    generic = "generic"
    cos = "cos"
    kairos = "kairos"
    bootc = "bootc"


@app.command()
def check(
    images: Annotated[
        list[str] | None, typer.Argument(help="one or more images (see `ociboot ls --help`)")
    ] = None,
    from_file: Annotated[
        str | None,
        typer.Option("--from", help="FILE with one image per line (blank lines and # comments ignored)"),
    ] = None,
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", min=1, help="images checked at once; default min(4, images)")
    ] = None,
    profile: Annotated[
        ProfileName, typer.Option("--profile", help="rule set; auto detects it")
    ] = ProfileName.auto,
    kernel: Annotated[
        str | None, typer.Option("--kernel", help="custom kernel path inside the image")
    ] = None,
    initrd: Annotated[
        str | None, typer.Option("--initrd", help="custom initrd path inside the image")
    ] = None,
    require_package: Annotated[
        list[str] | None,
        typer.Option("--require-package", help="package name, or role kernel|bootloader|init|initramfs"),
    ] = None,
    policy_file: Annotated[str | None, typer.Option("--policy", help="TOML policy file")] = None,
    skip: Annotated[list[str] | None, typer.Option("--skip", help="rule id to skip (repeatable)")] = None,
    fatal_warnings: Annotated[
        bool, typer.Option("--fatal-warnings", help="warnings fail the check too")
    ] = False,
    all_platforms: Annotated[bool, typer.Option("--all-platforms", help="one report per platform")] = False,
    analysis_budget: Annotated[
        int | None,
        typer.Option(
            "--analysis-budget",
            metavar="SIZE",
            parser=_budget_size,
            help="analysis work per image: bytes read and inflated from kernels, initrds and package "
            f"databases (e.g. 2G; default {_human(DEFAULT_ANALYSIS_BUDGET)}); "
            "rules whose files it does not cover say NOT RUN",
        ),
    ] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="write the report to FILE")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="list passed checks too")] = False,
    platform: PlatformOpt = None,
    fmt: Annotated[CheckFormat, typer.Option("--format", "-f", help="report format")] = CheckFormat.text,
    quiet: QuietOpt = False,
    creds: CredsOpt = None,
    authfile: AuthfileOpt = None,
    tls_verify: TlsOpt = True,
    cert_dir: CertDirOpt = None,
    plain_http: PlainHttpOpt = False,
    cache_dir: CacheDirOpt = None,
    use_cache: CacheOpt = False,
) -> None:
    """Will this image boot?  Exit 0 bootable, 1 not bootable, 3 an image could not be read."""
    from .boot.context import Policy
    from .boot.profiles import load_policy
    from .boot.rules import rule_ids

    options = _options(
        platform, quiet, creds, authfile, tls_verify, cert_dir, plain_http, cache_dir, use_cache
    )
    policy = Policy()
    try:
        if policy_file:
            policy = load_policy(policy_file, policy)
    except OcibootError as exc:
        raise typer.BadParameter(str(exc), param_hint="--policy") from None
    if profile is not ProfileName.auto:
        policy.profile = profile.value
    policy.kernel = kernel or policy.kernel
    policy.initrd = initrd or policy.initrd
    policy.require_packages = (*policy.require_packages, *(require_package or ()))
    policy.skip = (*policy.skip, *(skip or ()))
    policy.fatal_warnings = fatal_warnings or policy.fatal_warnings
    policy.analysis_budget = analysis_budget or policy.analysis_budget
    unknown = sorted(set(policy.skip) - rule_ids())
    if unknown:
        raise typer.BadParameter(
            f"unknown rule id(s) {', '.join(unknown)}; see `ociboot rules`", param_hint="--skip"
        )

    texts = [*(images or ()), *(_image_list(from_file) if from_file else ())]
    if not texts:
        raise typer.BadParameter("give at least one image, or --from FILE", param_hint="IMAGES")

    def one(text: str) -> list[Report] | None:
        """The reports of one image, or None (its error line printed) if it could not be read."""
        try:
            with pipeline.opened(text, options) as source:
                resolved = (
                    pipeline.open_all(source) if all_platforms else [pipeline.open_image(source, options)]
                )
                return [pipeline.check_image(image, policy, options) for image in resolved]
        except OcibootError as exc:
            err.print(f"ociboot: error: {exc}", markup=False)
            return None

    workers = jobs or min(4, len(texts))
    with _running(options):
        if workers == 1:
            results = [one(text) for text in texts]
        else:
            # Threads share the options, so the cache (and its per-layer build gate) too;
            # map() keeps input order, so the reports do not depend on --jobs.
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="image") as pool:
                results = list(pool.map(one, texts))
    reports = [r for result in results if result for r in result]
    unreadable = sum(result is None for result in results)
    summary = _summary(reports, unreadable, policy.fatal_warnings) if len(texts) > 1 else ""
    if fmt is CheckFormat.text and not output and sys.stdout.isatty():
        _print_tables(reports, policy.fatal_warnings, verbose)
        if summary:
            Console(highlight=False).print(summary, markup=False)
        raise typer.Exit(3 if unreadable else report_exit_code(reports, fatal_warnings=policy.fatal_warnings))
    rendered = _render_reports(reports, fmt, policy.fatal_warnings, verbose)
    if summary and fmt is CheckFormat.text:
        rendered += f"\n{summary}\n"
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(rendered)
    else:
        sys.stdout.write(rendered)
    code = 3 if unreadable else report_exit_code(reports, fatal_warnings=policy.fatal_warnings)
    raise typer.Exit(code)


def _budget_size(text: str) -> int:
    try:
        size = parse_size(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if size <= 0:
        raise typer.BadParameter(f"{text!r} is not a positive size")
    return size


def _image_list(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            lines = [line.strip() for line in fh]
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"{path}: {exc}", param_hint="--from") from None
    return [line for line in lines if line and not line.startswith("#")]


def _summary(reports: list[Report], unreadable: int, fatal_warnings: bool) -> str:
    bootable = sum(r.bootable(fatal_warnings=fatal_warnings) for r in reports)
    return f"{bootable} bootable, {len(reports) - bootable} not bootable, {unreadable} unreadable"


_MARKS = {
    "fail": "[bold red]FAIL[/]",
    "error": "[bold magenta]NOT RUN[/]",
    "pass": "[green]ok[/]",
    "skip": "[dim]skip[/]",
}
_SEVERITY = {"error": "[red]error[/]", "warning": "[yellow]warning[/]", "info": "[blue]info[/]"}


def _print_tables(reports: list[Report], fatal_warnings: bool, verbose: bool) -> None:
    """A table per image on a terminal; the same content as the plain text renderer."""
    out = Console(highlight=False)
    for r in reports:
        bootable = r.bootable(fatal_warnings=fatal_warnings)
        out.print(f"[bold]{escape(r.image)}[/]  [dim]{r.digest}  {r.platform}[/]")
        out.print(f"profile [bold]{r.profile}[/] [dim]({escape(r.profile_reason)})[/]")
        table = Table(show_lines=False, expand=False)
        for column in ("", "severity", "rule", "finding"):
            table.add_column(column, overflow="fold")
        for f in r.findings_ordered():
            if f.outcome.value in ("pass", "skip") and not verbose:
                continue
            detail = escape(f.message)
            for ev in f.evidence:
                detail += f"\n[dim]{escape(ev)}[/]"
            if f.hint and f.outcome.value in ("fail", "error"):
                detail += f"\n[cyan]fix:[/] {escape(f.hint)}"
            table.add_row(_MARKS[f.outcome.value], _SEVERITY[f.severity.value], f.rule, detail)
        out.print(table)
        c = r.counts()
        verdict = "[bold green]BOOTABLE[/]" if bootable else "[bold red]NOT BOOTABLE[/]"
        out.print(
            f"{verdict}: {c['fail']} failed, {c['error']} not run, {c['pass']} passed, {c['skip']} skipped\n"
        )


def _render_reports(reports: list[Report], fmt: CheckFormat, fatal_warnings: bool, verbose: bool) -> str:
    if fmt is CheckFormat.text:
        return render_text(reports, fatal_warnings=fatal_warnings, verbose=verbose)
    if fmt is CheckFormat.json:
        return render_json(reports, fatal_warnings=fatal_warnings)
    if fmt is CheckFormat.sarif:
        return render_sarif(reports, tool_version=__version__)
    return render_junit(reports, fatal_warnings=fatal_warnings)


@app.command()
def rules(
    profile: Annotated[
        ProfileName | None, typer.Option("--profile", help="only this profile's rules")
    ] = None,
    fmt: FormatOpt = Format.text,
) -> None:
    """List every rule: id, per-profile severity, title, sources."""
    from .boot.rules import ALL_RULES

    selected = [r for r in ALL_RULES if profile in (None, ProfileName.auto) or profile.value in r.severity]
    data: dict[str, Any] = {
        "schemaVersion": 1,
        "rules": [
            {
                "id": r.id,
                "title": r.title,
                "description": r.description,
                "severity": {p: str(s) for p, s in r.severity.items()},
                "sources": list(r.sources),
            }
            for r in selected
        ],
    }

    def text() -> str:
        lines = []
        for r in data["rules"]:
            sev = " ".join(f"{p}={s[0].upper()}" for p, s in r["severity"].items())
            lines.append(f"{r['id']:<8} {r['title']}  [{sev}]")
        return "\n".join(lines)

    _emit(fmt, data, text)


cache_app = typer.Typer(
    help="The layer index cache: where it is, what it holds, pruning it.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(cache_app, name="cache")


def _human(size: int) -> str:
    value, unit = float(size), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"


@cache_app.command("info")
def cache_info(cache_dir: CacheDirOpt = None, fmt: FormatOpt = Format.text) -> None:
    """Location, number of entries and total size of the cache."""
    info = LayerCache(cache_dir or default_cache_dir()).info()
    data = {"location": str(info.root), "entries": info.entries, "size": info.size, "obsolete": info.obsolete}
    _emit(
        fmt,
        data,
        lambda: (
            f"location: {info.root}\nentries:  {info.entries}\nsize:     {_human(info.size)}"
            + (
                f"\nobsolete: {info.obsolete} files (removed by `ociboot cache prune`)"
                if info.obsolete
                else ""
            )
        ),
    )


@cache_app.command("prune")
def cache_prune(
    max_size: Annotated[
        str | None,
        typer.Option("--max-size", help="drop least recently used entries down to SIZE (500M, 2G)"),
    ] = None,
    older_than: Annotated[
        float | None, typer.Option("--older-than", min=0, help="drop entries unused for DAYS days")
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="empty the cache")] = False,
    cache_dir: CacheDirOpt = None,
    fmt: FormatOpt = Format.text,
) -> None:
    """Remove cache entries (always: other format versions and leftovers of interrupted writes)."""
    try:
        limit = parse_size(max_size) if max_size is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--max-size") from None
    seconds = older_than * 86400 if older_than is not None else None
    done = LayerCache(cache_dir or default_cache_dir()).prune(
        max_size=limit, older_than=seconds, everything=everything
    )
    data = {"removed": done.removed, "freed": done.freed, "entries": done.entries, "size": done.size}
    _emit(
        fmt,
        data,
        lambda: (
            f"removed {done.removed} files ({_human(done.freed)}); "
            f"{done.entries} entries left ({_human(done.size)})"
        ),
    )


def _version(value: bool) -> None:
    if value:
        print(f"ociboot {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    """ociboot: will this container image boot?"""


def main() -> None:
    started = time.monotonic()
    try:
        app()
    except KeyboardInterrupt:
        err.print(f"ociboot: interrupted after {time.monotonic() - started:.1f}s")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)


__all__ = ["app", "main"]
