"""Command line: arguments -> pipeline -> render -> exit code.  No logic of its own.

Exit codes (docs/architecture.md §5): 0 ok/bootable, 1 not bootable, 2 usage, 3 the image could not be read.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, replace
from enum import Enum, StrEnum
from inspect import Parameter, Signature, signature
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

# Start-up imports only what declaring the commands needs: a command imports the rest (the
# pipeline, registry client, rules, rich) when it runs, so `--version`, `--help`, `rules` and a
# local `ls` load no code they do not use (tests/test_structure.py).
from . import __version__, api, schemas
from .audit.executor import LOCAL as LOCAL_EXECUTOR
from .audit.record import VERDICTS, AuditFormat
from .boot.check import Profile
from .boot.upstream import SOURCE, link_text
from .budget import DEFAULT_ANALYSIS_BUDGET
from .errors import OcibootError
from .render.sarif import CATEGORY_PREFIX
from .report import ReportFormat as CheckFormat
from .sources import SourceOptions, parse_duration
from .textsafe import clean
from .textsafe import escape as escape_text

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from . import outputs, pipeline, promolist, views
    from .audit.record import AuditRecord
    from .audit.run import Summary
    from .boot.context import Policy
    from .cache import LayerCache
    from .copy import Step
    from .promote import Promotion
    from .report import Unreadable

#: A value `_plain` leaves to typer: the typer of the day converts it, or words its refusal.
_TYPERS = object()


def _plain(param: Any, value: Any, ctx: Any) -> Any:
    """`value` as typer 0.29 would convert it for `param`, for the kinds this CLI declares (text,
    repeated text, an enum, a whole number); `_TYPERS` for anything else and every value typer
    would refuse, so that its messages stay its own."""
    kind = param.type_descriptor.annotation
    info = param.type_descriptor.parameter_info
    many = param.multiple or param.nargs == -1
    if value is None:
        return () if many else None
    if info.parser is not None:
        return _TYPERS
    if kind is str and not many and type(value) is str:
        return value
    if kind == list[str] and many and isinstance(value, (list, tuple)):
        return list(value) if all(type(v) is str for v in value) else _TYPERS
    if isinstance(kind, type) and issubclass(kind, Enum) and not many:
        if isinstance(value, kind):
            return value
        if type(value) is str and info.case_sensitive and ctx.token_normalize_func is None:
            return next((c for c in kind if str(c.value) == value), _TYPERS)
    if kind is int and not many and not info.clamp and type(value) in (int, str):
        if type(value) is str and not (value.isascii() and value.isdigit() and len(value) < 19):
            return _TYPERS
        number = int(value)
        low, high = info.min, info.max
        if (low is None or number >= low) and (high is None or number <= high):
            return number
    return _TYPERS


@dataclass(frozen=True, slots=True)
class _Coercion:
    """What typer's `process_value` asks a parameter for: the plain conversion, else typer's own.

    Typer 0.29 converts every value of a non-boolean parameter, absent ones too, through a
    pydantic TypeAdapter built on first use: importing pydantic and building the adapters cost
    about 0.15 s of a 0.5 s `inspect` (docs/measurements.md, "Start-up").  Typer offers no
    supported way around it (`parser=` builds an adapter too), so `_Group` swaps the classes of
    the parameters for ones that answer with this; a typer without the hook never asks.  Typer's
    own conversion (`typers`) is built only for a value `_plain` leaves to it."""

    typers: Callable[[], Any]

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        plain = _plain(param, value, ctx)
        return self.typers().coerce(value, param=param, ctx=ctx) if plain is _TYPERS else plain


class _PlainOption(TyperOption):
    def get_runtime_param(self) -> Any:
        return _Coercion(super().get_runtime_param)


class _PlainArgument(TyperArgument):
    def get_runtime_param(self) -> Any:
        return _Coercion(super().get_runtime_param)


class _Argument(_PlainArgument):
    """An argument shown by its metavar alone: typer would add the Python type (`IMAGE <str>`)."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None if self.metavar else super().display_type_rich(ctx)


def _plain_params(params: list[Any]) -> list[Any]:
    for param in params:
        if type(param) is TyperOption:
            param.__class__ = _PlainOption
        elif type(param) is TyperArgument:
            param.__class__ = _PlainArgument
    return params


class _PlainCommand(TyperCommand):
    """A command whose parameters, `--help` too (made per context), convert by `_Coercion`."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_params(super().get_params(ctx))


def _plain_commands(group: TyperGroup) -> None:
    for command in group.commands.values():
        if type(command) is TyperCommand:
            command.__class__ = _PlainCommand
        elif type(command) is TyperGroup:
            command.__class__ = _Group
            _plain_commands(command)


class _Group(TyperGroup):
    """The command tree: its commands and sub-groups are built before it, by typer's classes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_commands(self)

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_params(super().get_params(ctx))


app = typer.Typer(
    name="ociboot",
    cls=_Group,
    # Help texts are plain: `oci:DIR[:REF]` and `os/arch[/variant]` are grammar, not rich markup.
    rich_markup_mode=None,
    help="Inspect OCI and Docker images without Docker and without unpacking them: will this image boot?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@functools.cache
def _err() -> Console:
    """Standard error, made on first use: a run that says nothing there loads no rich."""
    from rich.console import Console

    # No emoji codes: `:skull:` in a file name is text, not a picture.
    return Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def _say(level: str, message: object) -> None:
    """Every error and warning line: its text may hold an image's or a registry's bytes."""
    _err().print(f"ociboot: {level}: {escape_text(str(message))}", markup=False)


class Format(StrEnum):
    text = "text"
    json = "json"


ImageArg = Annotated[
    str,
    typer.Argument(
        metavar="IMAGE",
        help="docker://HOST/REPO:TAG, oci:DIR[:REF], oci-archive:FILE[:REF], "
        "docker-archive:FILE[:NAME:TAG|@N], a bare name, or a path",
    ),
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="output format")]
#: The report options of the commands that judge images (check, promote).
ReportFormatOpt = Annotated[CheckFormat, typer.Option("--format", "-f", help="report format")]
ReportsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--output",
        "-o",
        metavar="[FORMAT=]FILE",
        help="write the report to FILE (in --format) instead of standard output; FORMAT=FILE "
        "(text, json, sarif, junit) writes one more report from the same read, FILE - is "
        "standard output (repeatable: -o sarif=ociboot.sarif -o junit=report.xml)",
    ),
]
CacheDirOpt = Annotated[
    str | None,
    typer.Option(
        "--cache-dir", metavar="DIR", help="keep the cache (layer indexes, verdicts) in DIR (implies --cache)"
    ),
]
#: A password on stdin is a line, not a file: more than this is a mistake (a file piped by accident).
MAX_STDIN_PASSWORD = 64 << 10
_PLATFORM_HELP = "os/arch[/variant]; default: this host's"


def _access(platform_help: str, cache: bool) -> list[Parameter]:
    """The options of every command that reads an image, declared here once (`_reads_images`)."""
    return _parameters(_reading(platform_help, cache) + _credentials(""))


def _parameters(options: list[tuple[str, Any, object]]) -> list[Parameter]:
    return [
        Parameter(name, Parameter.KEYWORD_ONLY, annotation=kind, default=default)
        for name, kind, default in options
    ]


def _own(command: Callable[..., None], given: Iterable[str], evaluate: bool = True) -> list[Parameter]:
    """A command's parameters but those its wrapper gives it (`given`), their annotations
    evaluated for typer unless an outer wrapper will (`evaluate`).  The given ones are never
    evaluated: they name types (pipeline.Options, Policy) imported only when the command runs."""
    skip = set(given)
    own = []
    for p in signature(command).parameters.values():
        if p.name in skip:
            continue
        if evaluate and isinstance(p.annotation, str):
            # What signature(eval_str=True) does, for these only; the text is this module's source.
            p = p.replace(annotation=eval(p.annotation, command.__globals__))
        own.append(p)
    return own


def _declare(run: Callable[..., None], params: list[Parameter]) -> None:
    """What typer reads of a wrapper: its signature and its evaluated annotations."""
    run.__signature__ = Signature(params)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in params if p.annotation is not Parameter.empty}


#: The two registries of a promotion, as skopeo copy names their options (`--src-creds`).
_SIDES = {"src": "the source registry", "dest": "the destination registry"}


def _credentials(side: str) -> list[tuple[str, Any, object]]:
    """How to reach a registry: unprefixed for the one image of a reading command, `src`/`dest`
    for a promotion (Python names `src_creds`, flags `--src-creds`).  The password goes on
    stdin for an unprefixed side only: a promotion's two would compete for it."""
    flag = f"--{side}-" if side else "--"
    name = f"{side}_" if side else ""
    whose = _SIDES.get(side, "the registry")
    options: list[tuple[str, Any, object]] = [
        (
            f"{name}creds",
            Annotated[
                str | None,
                typer.Option(f"{flag}creds", metavar="USER[:PASS]", help=f"credentials for {whose}"),
            ],
            None,
        ),
        (
            f"{name}authfile",
            Annotated[
                str | None,
                typer.Option(
                    f"{flag}authfile",
                    metavar="FILE",
                    help=f"auth.json / config.json with credentials for {whose}",
                ),
            ],
            None,
        ),
        (
            f"{name}tls_verify",
            Annotated[
                bool,
                typer.Option(
                    f"{flag}tls-verify/--no-{flag[2:]}tls-verify",
                    help=f"verify TLS certificates of {whose} (skopeo's {flag}tls-verify=false works too)",
                ),
            ],
            True,
        ),
        (
            f"{name}cert_dir",
            Annotated[
                str | None,
                typer.Option(
                    f"{flag}cert-dir",
                    metavar="DIR",
                    help=f"directory with *.crt CAs, *.cert/*.key for {whose}",
                ),
            ],
            None,
        ),
        (
            f"{name}plain_http",
            Annotated[
                bool,
                typer.Option(f"{flag}plain-http", help=f"use http:// for {whose} even when not loopback"),
            ],
            False,
        ),
        (
            f"{name}username",
            Annotated[
                str | None,
                typer.Option(
                    f"{flag}username",
                    metavar="USER",
                    help=f"user for {whose} (with {flag}password{'' if side else ' or --password-stdin'}"
                    f"; not with {flag}creds)",
                ),
            ],
            None,
        ),
        (
            f"{name}password",
            Annotated[
                str | None,
                typer.Option(
                    f"{flag}password",
                    metavar="PASS",
                    help=f"password for {whose} (visible in the process list"
                    + (": prefer --password-stdin)" if not side else "; prefer an authfile)"),
                ),
            ],
            None,
        ),
    ]
    if not side:
        options.append(
            (
                "password_stdin",
                Annotated[
                    bool,
                    typer.Option("--password-stdin", help="read the registry password from standard input"),
                ],
                False,
            )
        )
    return options


def _reading(platform_help: str, cache: bool) -> list[tuple[str, Any, object]]:
    """How an image is read, whatever its medium: platform, progress, time bounds, cache."""
    defaults = SourceOptions()
    options: list[tuple[str, Any, object]] = [
        (
            "platform",
            Annotated[
                str | None, typer.Option("--platform", metavar="OS/ARCH[/VARIANT]", help=platform_help)
            ],
            None,
        ),
        ("quiet", Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")], False),
        (
            "timeout",
            Annotated[
                str | None,
                typer.Option(
                    "--timeout",
                    metavar="DURATION",
                    help="give up on an image not read within DURATION (registry transfers and layer "
                    "streaming), e.g. 90s, 2m "
                    f"(default {defaults.timeout:g}s)",
                ),
            ],
            None,
        ),
        (
            "stall_timeout",
            Annotated[
                str | None,
                typer.Option(
                    "--stall-timeout",
                    metavar="DURATION",
                    help=f"a registry transfer that moves under {defaults.stall_bytes} bytes in this long "
                    f"has stalled (default {defaults.stall_seconds:g}s)",
                ),
            ],
            None,
        ),
    ]
    if cache:
        options += [
            ("cache_dir", CacheDirOpt, None),
            (
                # Opt-in: without it nothing is ever written to disk (docs/architecture.md §4; issue 4's
                # cold run writes 0 bytes).
                "use_cache",
                Annotated[
                    bool,
                    typer.Option(
                        "--cache/--no-cache",
                        help="reuse layer indexes (and check's verdicts of unchanged images) from the "
                        "cache in $XDG_CACHE_HOME/ociboot (~/.cache/ociboot)",
                    ),
                ],
                False,
            ),
            (
                "cache_url",
                Annotated[
                    str | None,
                    typer.Option(
                        "--cache-url",
                        metavar="URL",
                        # From the environment too: a password there is not in the process list.
                        envvar="OCIBOOT_CACHE_URL",
                        show_envvar=False,
                        help="share layer indexes and verdicts with other runs and machines through "
                        "this Redis server (redis://[:PASSWORD@]HOST:PORT[/DB], rediss:// for TLS), "
                        "besides --cache-dir if given; values are sealed with OCIBOOT_CACHE_KEY, "
                        "else with a key of this run's own; default $OCIBOOT_CACHE_URL, which keeps "
                        "a password out of the process list",
                    ),
                ],
                None,
            ),
        ]
    return options


#: skopeo's spellings of a boolean option (Go's strconv.ParseBool): `--tls-verify=false`.
_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})
_BOOLEANS = ("--tls-verify", "--src-tls-verify", "--dest-tls-verify")


def _skopeo_booleans(args: list[str]) -> list[str]:
    """`--tls-verify=true|false` as `--tls-verify` / `--no-tls-verify` (click's boolean flags take
    no value); an optional value would swallow the image that follows a bare `--tls-verify`."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + args[i:]
        name, eq, value = arg.partition("=")
        if not eq or name not in _BOOLEANS:
            out.append(arg)
        elif value in _TRUE:
            out.append(name)
        elif value in _FALSE:
            out.append(f"--no-{name[2:]}")
        else:
            raise typer.BadParameter(f"{value!r} is not true or false", param_hint=name)
    return out


class _ImageCommand(_PlainCommand):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if type(param) is TyperArgument:
                param.__class__ = _Argument

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            args = _skopeo_booleans(args)
        except typer.BadParameter as exc:
            exc.ctx = ctx
            raise
        return super().parse_args(ctx, args)


def _reads_images(
    name: str | None = None, *, platform_help: str = _PLATFORM_HELP, cache: bool = True
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A command that reads an image: it takes the shared options (`_access`) and receives them
    as one keyword argument, `options` (pipeline.Options)."""
    shared = _access(platform_help, cache)

    def wrap(command: Callable[..., None]) -> Callable[..., None]:
        params = _own(command, ["options"])

        @functools.wraps(command)
        def run(**given: Any) -> None:
            access = {p.name: given.pop(p.name) for p in shared}
            command(options=_options(**access), **given)

        _declare(run, [*params, *shared])
        return app.command(name, cls=_ImageCommand)(run)

    return wrap


def _options(
    platform: str | None,
    quiet: bool,
    creds: str | None,
    authfile: str | None,
    tls_verify: bool,
    cert_dir: str | None,
    plain_http: bool,
    username: str | None,
    password: str | None,
    password_stdin: bool,
    timeout: str | None,
    stall_timeout: str | None,
    cache_dir: str | None = None,
    use_cache: bool = False,
    cache_url: str | None = None,
) -> pipeline.Options:
    limits = _limits(timeout, stall_timeout)
    source = _source(
        creds, authfile, tls_verify, cert_dir, plain_http, username, password, password_stdin, limits
    )
    return _pipeline_options(platform, quiet, source, cache_dir, use_cache, cache_url)


def _pipeline_options(
    platform: str | None,
    quiet: bool,
    source: SourceOptions,
    cache_dir: str | None,
    use_cache: bool,
    cache_url: str | None = None,
) -> pipeline.Options:
    from . import pipeline
    from .spec import Platform

    try:
        wanted = Platform.parse(platform) if platform else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--platform") from None
    cache = _open_cache(cache_dir, use_cache, cache_url)
    progress = None if quiet else _progress_factory()
    return pipeline.Options(source=source, platform=wanted, progress=progress, cache=cache)


def _limits(timeout: str | None, stall_timeout: str | None) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    for name, hint, text in (
        ("timeout", "--timeout", timeout),
        ("stall_seconds", "--stall-timeout", stall_timeout),
    ):
        try:
            if text is not None:
                limits[name] = parse_duration(text)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint=hint) from None
    return limits


def _source(
    creds: str | None,
    authfile: str | None,
    tls_verify: bool,
    cert_dir: str | None,
    plain_http: bool,
    username: str | None,
    password: str | None,
    password_stdin: bool,
    limits: dict[str, Any],
    side: str = "",
) -> SourceOptions:
    return SourceOptions(
        creds=creds,
        authfile=authfile,
        tls_verify=tls_verify,
        cert_dir=cert_dir,
        plain_http=True if plain_http else None,
        username=username,
        password=_password(creds, username, password, password_stdin, f"--{side}-" if side else "--"),
        **limits,
    )


def _password(
    creds: str | None, username: str | None, password: str | None, from_stdin: bool, flag: str = "--"
) -> str | None:
    """--username's password; the combinations skopeo refuses are usage errors here too."""
    if creds is not None and username is not None:
        raise typer.BadParameter(
            f"{flag}creds and {flag}username cannot be used together", param_hint=f"{flag}username"
        )
    if password is not None and from_stdin:
        raise typer.BadParameter("give --password or --password-stdin, not both", param_hint="--password")
    if username is None:
        if password is not None or from_stdin:
            raise typer.BadParameter(f"a password needs {flag}username", param_hint=f"{flag}username")
        return None
    if not from_stdin:
        if password is None:
            raise typer.BadParameter(
                "--username needs --password-stdin (or --password)"
                if flag == "--"
                else f"{flag}username needs {flag}password",
                param_hint=f"{flag}username",
            )
        return password
    text = sys.stdin.read(MAX_STDIN_PASSWORD + 1)
    if len(text) > MAX_STDIN_PASSWORD:
        raise typer.BadParameter(
            f"over {MAX_STDIN_PASSWORD} characters on stdin", param_hint="--password-stdin"
        )
    text = text.removesuffix("\n").removesuffix("\r")  # `echo $PASS |` adds a newline
    if not text:
        raise typer.BadParameter("standard input held no password", param_hint="--password-stdin")
    return text


def _open_cache(cache_dir: str | None, use_cache: bool, cache_url: str | None = None) -> LayerCache | None:
    if not use_cache and cache_dir is None and cache_url is None:
        return None
    directory = cache_dir
    if directory is None and use_cache and cache_url is not None:
        from .cache import default_cache_dir

        # --cache-url alone is the shared cache only, nothing on disk; with --cache, both.
        directory = str(default_cache_dir())
    try:
        # before any image is read: an unsafe cache or an unusable URL is the user's setup (exit 2)
        return api.open_cache(directory, warn=_warned, remote_url=cache_url)
    except OcibootError as exc:
        _say("error", exc)
        raise typer.Exit(exc.exit_code) from None


_live: Progress | None = None


def _progress_factory() -> pipeline.ProgressFactory | None:
    if not _err().is_terminal:
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
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=_err(),
                transient=True,
            ) as _live:
                yield
        else:
            yield
    except OcibootError as exc:
        _say("error", exc)
        raise typer.Exit(exc.exit_code) from None
    finally:
        _live = None


def _emit(fmt: Format, data: Any, text: Callable[[Any], str]) -> None:
    """Print `data` as JSON or through `text`, both from the same escaped copy (textsafe)."""
    safe = clean(data)
    _write(json.dumps(safe, indent=2, sort_keys=False) if fmt is Format.json else text(safe))


def _show(fmt: Format, view: views.View, text: Callable[[], str] | None = None) -> None:
    """A view as JSON, escaped by textsafe.clean, or as its text (`text`, default `to_text`),
    which the view escapes line by line."""
    if fmt is Format.json:
        _write(json.dumps(clean(view.to_json()), indent=2, sort_keys=False))
    else:
        _write(text() if text is not None else view.to_text())


def _write(out: str) -> None:
    sys.stdout.write(out if out.endswith("\n") or not out else out + "\n")


def _budget_size(text: str) -> int:
    from .cache import parse_size

    try:
        size = parse_size(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if size <= 0:
        raise typer.BadParameter(f"{text!r} is not a positive size")
    return size


def _human(size: int) -> str:
    value, unit = float(size), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"


@_reads_images()
def inspect(
    image: ImageArg,
    raw: Annotated[bool, typer.Option("--raw", help="print the manifest (or index) bytes as stored")] = False,
    config: Annotated[bool, typer.Option("--config", help="print the image config bytes as stored")] = False,
    sizes: Annotated[
        bool,
        typer.Option(
            "--sizes/--no-sizes",
            help="stream every layer for its uncompressed size, compression and entries "
            "(reads the whole image; by default only the manifest and config are read)",
        ),
    ] = False,
    fmt: FormatOpt = Format.text,
    *,
    options: pipeline.Options,
) -> None:
    """Manifest digest, platforms, config summary and layers of an image."""
    from . import pipeline, views
    from .mediatypes import unreadable_layer

    with _running(options), pipeline.opened(image, options) as source:
        if raw:
            top = source.get_manifest()
            sys.stdout.buffer.write(top.data)
            return
        resolved = pipeline.open_image(source, options)
        if config:
            sys.stdout.buffer.write(resolved.config_raw)
            return
        # A layer ociboot cannot read (unknown or encrypted type) has no uncompressed size.
        readable = all(unreadable_layer(ref.descriptor.media_type) is None for ref in resolved.layers)
        layers = pipeline.index_layers(resolved, None, options) if sizes and readable else None
        _show(fmt, views.inspect_data(resolved, layers))


@_reads_images("ls")
def ls_(
    image: ImageArg,
    path: Annotated[str, typer.Argument(metavar="PATH", help="directory or file inside the image")] = "/",
    long: Annotated[bool, typer.Option("-l", "--long", help="mode, owner, size, link targets")] = False,
    recursive: Annotated[bool, typer.Option("-R", "--recursive", help="list subdirectories too")] = False,
    fmt: FormatOpt = Format.text,
    *,
    options: pipeline.Options,
) -> None:
    """List a directory of the image's final filesystem (symlinks shown with where they resolve)."""
    from . import pipeline, views

    with _running(options), pipeline.opened(image, options) as source:
        loaded = pipeline.load_tree(pipeline.open_image(source, options), None, options)
        rows = views.listing(loaded, path, recursive=recursive)
        _show(fmt, rows, lambda: rows.to_text(long=long))


@_reads_images(cache=False)
def cat(
    image: ImageArg,
    path: Annotated[str, typer.Argument(metavar="PATH", help="file inside the image; symlinks are followed")],
    *,
    options: pipeline.Options,
) -> None:
    """Write a file's bytes, read from the layer that supplies it, after its digests verified."""
    from . import pipeline
    from .layer import CaptureSpec

    with _running(options), pipeline.opened(image, options) as source:
        resolved = pipeline.open_image(source, options)
        loaded = pipeline.load_tree(
            resolved, CaptureSpec.exact(path.lstrip("/"), pipeline.CAT_FIRST_PASS_CAP), options
        )
        _, data = pipeline.read_file(loaded, path, options)
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


@_reads_images()
def stat(
    image: ImageArg,
    path: Annotated[str, typer.Argument(metavar="PATH", help="path inside the image")],
    fmt: FormatOpt = Format.text,
    *,
    options: pipeline.Options,
) -> None:
    """Type, mode, owner, size, link chain and the layer that supplied a path."""
    from . import pipeline, views

    with _running(options), pipeline.opened(image, options) as source:
        loaded = pipeline.load_tree(pipeline.open_image(source, options), None, options)
        found = views.stat_data(loaded, path)
        _show(fmt, found)
    if not found.exists:
        raise typer.Exit(3)


@_reads_images()
def layers(image: ImageArg, fmt: FormatOpt = Format.text, *, options: pipeline.Options) -> None:
    """What each layer adds, changes and removes, with its sizes."""
    from . import pipeline, views

    with _running(options), pipeline.opened(image, options) as source:
        loaded = pipeline.load_tree(pipeline.open_image(source, options), None, options)
        _show(fmt, views.layers_data(loaded))


def _policy_options() -> list[tuple[str, Any, object]]:
    """The options that make the policy an image is judged by (`check`, `promote`): `_judging`."""
    return [
        (
            "profile",
            Annotated[Profile, typer.Option("--profile", help="rule set; auto detects it")],
            Profile.AUTO,
        ),
        (
            "kernel",
            Annotated[
                str | None,
                typer.Option("--kernel", metavar="PATH", help="custom kernel path inside the image"),
            ],
            None,
        ),
        (
            "initrd",
            Annotated[
                str | None,
                typer.Option("--initrd", metavar="PATH", help="custom initrd path inside the image"),
            ],
            None,
        ),
        (
            "require_package",
            Annotated[
                list[str] | None,
                typer.Option(
                    "--require-package",
                    metavar="NAME",
                    help="package name, or role kernel|bootloader|init|initramfs (repeatable)",
                ),
            ],
            None,
        ),
        (
            "policy_file",
            Annotated[str | None, typer.Option("--policy", metavar="FILE", help="TOML policy file")],
            None,
        ),
        (
            "skip",
            Annotated[
                list[str] | None, typer.Option("--skip", metavar="RULE", help="rule id to skip (repeatable)")
            ],
            None,
        ),
        (
            "fatal_warnings",
            Annotated[bool, typer.Option("--fatal-warnings", help="warnings fail the check too")],
            False,
        ),
        (
            "analysis_budget",
            Annotated[
                int | None,
                typer.Option(
                    "--analysis-budget",
                    metavar="SIZE",
                    parser=_budget_size,
                    help="analysis work per image: bytes read and inflated from kernels, initrds and "
                    f"package databases (e.g. 2G; default {_human(DEFAULT_ANALYSIS_BUDGET)}); "
                    "rules whose files it does not cover say NOT RUN",
                ),
            ],
            None,
        ),
    ]


def _judging(command: Callable[..., None]) -> Callable[..., None]:
    """A command that judges images: it takes the policy options (`_policy_options`) and receives
    them as one keyword argument, `policy` (verified; a bad one is a usage error)."""
    shared = _parameters(_policy_options())
    params = _own(command, ["policy", "policy_file"], evaluate=False)  # `options` is _reads_images'

    @functools.wraps(command)
    def run(**given: Any) -> None:
        chosen = {p.name: given.pop(p.name) for p in shared}
        # The file's name too: a report must never be written over what the run reads.
        command(policy=_policy(**chosen), policy_file=chosen["policy_file"], **given)

    ordinary = [p for p in params if p.kind is not Parameter.KEYWORD_ONLY]
    keyword = [p for p in params if p.kind is Parameter.KEYWORD_ONLY]
    _declare(run, [*ordinary, *shared, *keyword])
    return run


def _taking(*names: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A command that takes some of the policy options (`_policy_options`, by parameter name)
    as they are declared there, each given to it as its own argument."""

    def wrap(command: Callable[..., None]) -> Callable[..., None]:
        shared = _parameters([o for o in _policy_options() if o[0] in names])
        params = _own(command, names, evaluate=False)
        ordinary = [p for p in params if p.kind is not Parameter.KEYWORD_ONLY]
        keyword = [p for p in params if p.kind is Parameter.KEYWORD_ONLY]

        @functools.wraps(command)
        def run(**given: Any) -> None:
            command(**given)

        _declare(run, [*ordinary, *shared, *keyword])
        return run

    return wrap


def _policy(
    profile: Profile,
    kernel: str | None,
    initrd: str | None,
    require_package: list[str] | None,
    policy_file: str | None,
    skip: list[str] | None,
    fatal_warnings: bool,
    analysis_budget: int | None,
) -> Policy:
    from .boot.context import Policy
    from .boot.profiles import load_policy, verify_policy

    try:
        policy = load_policy(policy_file) if policy_file else Policy()
    except OcibootError as exc:
        raise typer.BadParameter(str(exc), param_hint="--policy") from None
    policy = policy.merge(
        profile=profile,
        kernel=kernel,
        initrd=initrd,
        require_packages=require_package or (),
        skip=skip or (),
        fatal_warnings=fatal_warnings,
        analysis_budget=analysis_budget,
    )
    try:
        verify_policy(policy)
    except OcibootError as exc:
        raise typer.BadParameter(escape_text(str(exc)), param_hint="--skip") from None
    return policy


@_reads_images(platform_help="os/arch[/variant]: judge only this platform of an index")
@_judging
def check(
    images: Annotated[
        list[str] | None,
        typer.Argument(metavar="IMAGE", help="one or more images (see `ociboot ls --help`)"),
    ] = None,
    from_file: Annotated[
        str | None,
        typer.Option(
            "--from", metavar="FILE", help="FILE with one image per line (blank lines and # comments ignored)"
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            metavar="N",
            help=f"images checked at once; default min({api.DEFAULT_IMAGE_JOBS}, images)",
        ),
    ] = None,
    all_platforms: Annotated[
        bool,
        typer.Option(
            "--all-platforms",
            help="judge every image platform of an index, one report each (the default; "
            "--platform narrows to one)",
        ),
    ] = False,
    output: ReportsOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="list passed checks too")] = False,
    fmt: ReportFormatOpt = CheckFormat.text,
    promotion_list: Annotated[
        list[str] | None,
        typer.Option(
            "--promotion-list",
            metavar="FORMAT=FILE",
            help="also write FILE for a registry copier, FORMAT skopeo-sync, regsync or kpromo: "
            "the registry images that passed, by the digest checked (repeatable)",
        ),
    ] = None,
    promotion_target: Annotated[
        str | None,
        typer.Option(
            "--promotion-target",
            metavar="REGISTRY[/PREFIX]",
            help="where a regsync promotion list copies the images to",
        ),
    ] = None,
    sarif_category: Annotated[
        str,
        typer.Option(
            "--sarif-category",
            metavar="TEXT",
            help="the prefix of each SARIF run's category (automationDetails.id): a code scanning "
            "upload's category, to keep two checks of one image apart (two policies)",
        ),
    ] = CATEGORY_PREFIX,
    attach: Annotated[
        bool,
        typer.Option(
            "--attach",
            help="attach the verdict to each registry image (an in-toto statement pushed as an OCI "
            "referrer; needs push access); see `ociboot verdicts`",
        ),
    ] = False,
    *,
    policy: Policy,
    policy_file: str | None,
    options: pipeline.Options,
) -> None:
    """Will this image boot?  Exit 0 bootable, 1 not bootable, 3 an image could not be read."""
    from . import outputs

    if all_platforms and options.platform is not None:
        raise typer.BadParameter(
            "--all-platforms and --platform contradict each other", param_hint="--platform"
        )

    texts = [*(images or ()), *(_image_list(from_file) if from_file else ())]
    if not texts:
        raise typer.BadParameter("give at least one image, or --from FILE", param_hint="IMAGES")

    from .render.sarif import category_prefix

    try:
        category = category_prefix(sarif_category)
    except ValueError as exc:
        raise typer.BadParameter(escape_text(str(exc)), param_hint="--sarif-category") from None
    if attach:
        _registry_only(texts, "--attach")
    try:
        lists, list_outputs = outputs.lists(promotion_list or (), promotion_target, texts)
    except outputs.OutputError as exc:
        raise typer.BadParameter(str(exc), param_hint="--promotion-list") from None
    tables, delivery = _deliver(
        output,
        fmt,
        texts,
        [from_file, policy_file, *_read_paths(options)],
        policy.fatal_warnings,
        verbose,
        list_outputs,
        lists,
        options,
        category,
    )
    if list_outputs:
        for text in lists.plan.left_out:
            _say("warning", f"{text}: not a registry image: left out of the promotion lists")
    with delivery:
        try:
            code = _check_all(texts, policy, options, jobs, delivery, tables, verbose, attach)
        except outputs.Undelivered:
            code = 2
    for warning in delivery.warnings:
        _say("warning", warning)
    raise typer.Exit(_delivered(delivery, code))


def _deliver(
    specs: list[str] | None,
    fmt: CheckFormat,
    texts: list[str],
    inputs: list[str | None],
    fatal_warnings: bool,
    verbose: bool,
    extra: list[outputs.Output] | None = None,
    lists: promolist.Lists | None = None,
    options: pipeline.Options | None = None,
    sarif_category: str = CATEGORY_PREFIX,
) -> tuple[bool, outputs.Delivery]:
    """The `--output`s (and `extra`: the promotion lists), opened before any image is read: a
    report that cannot be written fails now (exit 2), not after the check.  `tables`: the text on
    stdout is drawn as rich tables."""
    from . import outputs

    try:
        wanted = outputs.parse(specs or (), fmt) + list(extra or ())
        outputs.refuse(wanted, texts, inputs)
        terminal = outputs.Output(CheckFormat.text, outputs.STDOUT)
        tables = terminal in wanted and sys.stdout.isatty()
        if tables:
            wanted.remove(terminal)
        source = options.source if options is not None else None
        return tables, outputs.open_all(
            wanted,
            fatal_warnings=fatal_warnings,
            verbose=verbose,
            lists=lists,
            source=source,
            sarif_category=sarif_category,
        )
    except outputs.OutputError as exc:
        raise typer.BadParameter(str(exc), param_hint="--output") from None


def _read_paths(options: pipeline.Options) -> list[str | None]:
    """The files and directories besides the images that a run reads: no report goes there."""
    cache = options.cache.root if options.cache is not None else None
    return [options.source.authfile, options.source.cert_dir, str(cache) if cache else None]


def _delivered(delivery: outputs.Delivery, code: int) -> int:
    """The exit code: a verdict nobody received is no verdict, neither 0 nor 1, whatever the images were."""
    from . import promolist

    for output, reason in delivery.failures:
        what = "promotion list" if isinstance(output.format, promolist.ListFormat) else "report"
        _say("error", f"the {what} could not be written to {output.where}: {reason}")
    return 2 if delivery.failures else code


def _check_all(
    texts: list[str],
    policy: Policy,
    options: pipeline.Options,
    jobs: int | None,
    delivery: outputs.Delivery,
    tables: bool,
    verbose: bool,
    attach: bool = False,
) -> int:
    """Check each image, printing its error lines (and tables) as it finishes; `delivery` writes
    the reports.  Returns the images' exit code."""
    fatal = policy.fatal_warnings

    def finished(_: int, checked: pipeline.Checked) -> None:
        for u in checked.unreadable:
            _say("error", _named(u))
        if tables:
            _print_tables(checked, fatal, verbose)
        delivery.image_done(checked)

    with _running(options):
        batch = api.check(texts, policy, options, jobs=jobs, on_result=finished)
    if tables and len(texts) > 1:
        from rich.console import Console

        Console(highlight=False, emoji=False).print(batch.summary(), markup=False)
    delivery.finish(batch)
    if attach and not _attach_verdicts(texts, batch, policy, options):
        return 3
    return batch.exit_code


@_reads_images(platform_help="os/arch[/variant]: judge only this platform of each index")
@_judging
def audit(
    namespace: Annotated[
        str | None,
        typer.Argument(
            metavar="NAMESPACE",
            help="docker://HOST[/PREFIX]: every tag of every repository the registry's catalog "
            "lists (under PREFIX)",
        ),
    ] = None,
    from_file: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="FILE",
            help="FILE with one docker:// reference per line, where the catalog is closed "
            "(blank lines and # comments ignored)",
        ),
    ] = None,
    repo: Annotated[
        str | None, typer.Option("--repo", metavar="REGEX", help="only repositories matching REGEX")
    ] = None,
    tag: Annotated[
        str | None, typer.Option("--tag", metavar="REGEX", help="only tags matching REGEX")
    ] = None,
    newest: Annotated[
        int | None, typer.Option("--newest", min=1, metavar="N", help="only the N newest tags per repository")
    ] = None,
    jobs: Annotated[
        int,
        typer.Option("--jobs", "-j", min=1, metavar="N", help="tags resolved and images judged at once"),
    ] = api.DEFAULT_IMAGE_JOBS,
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            metavar="threads|dask://HOST:PORT",
            help="where images are judged: threads of this process, or a Dask distributed "
            "scheduler (the ociboot[dask] extra; its workers keep their own caches)",
        ),
    ] = LOCAL_EXECUTOR,
    fmt: Annotated[
        AuditFormat,
        typer.Option(
            "--format", "-f", help="a line per tag: text (then a summary) or jsonl (one JSON record a line)"
        ),
    ] = AuditFormat.text,
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", metavar="FILE", help="write the records to FILE, not standard output"),
    ] = None,
    html: Annotated[
        str | None,
        typer.Option("--html", metavar="FILE", help="also write a self-contained HTML report to FILE"),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="FILE",
            help="continue the audit whose jsonl records FILE holds: digests judged there under "
            "the same policy, --platform and ociboot are not judged again (unreadable ones are "
            "retried); with --format jsonl -o FILE the new records are appended to FILE",
        ),
    ] = None,
    page_size: Annotated[
        int | None,
        typer.Option(
            "--page-size", min=1, metavar="N", help="entries asked of the registry per catalog page"
        ),
    ] = None,
    *,
    policy: Policy,
    policy_file: str | None,
    options: pipeline.Options,
) -> None:
    """Judge every tag of a registry namespace, each image once however many tags name it.

    Each layer is fetched and indexed once for the whole audit: without --cache or --cache-dir the
    audit keeps its layer cache in a private temporary directory, removed at the end (nothing is
    kept after the run).  A repository whose tags the registry refuses to list is one unreadable
    record; the audit goes on.  Exit 0 every tag bootable, 1 one is not, 3 one could not be read
    or a repository's tags could not be listed (3 wins), 2 usage."""
    from . import outputs
    from .audit import output as audit_output
    from .audit import record as audit_record
    from .audit import run as audit_run
    from .audit.executor import open_executor
    from .audit.record import NotARecord
    from .audit.targets import Filters, enumerate_targets, parse_namespace, targets_from_file

    if namespace is None and from_file is None:
        raise typer.BadParameter(
            "give a NAMESPACE (docker://HOST[/PREFIX]) or --from FILE", param_hint="NAMESPACE"
        )
    patterns: dict[str, re.Pattern[str] | None] = {}
    for hint, pattern in (("--repo", repo), ("--tag", tag)):
        try:
            patterns[hint] = re.compile(pattern) if pattern is not None else None
        except re.error as exc:
            raise typer.BadParameter(f"{escape_text(pattern or '')}: {exc}", param_hint=hint) from None
    try:
        space = parse_namespace(namespace) if namespace is not None else None
    except (ValueError, OcibootError) as exc:
        raise typer.BadParameter(escape_text(str(exc)), param_hint="NAMESPACE") from None
    try:
        earlier = audit_output.read_resume(resume) if resume is not None else None
    except (NotARecord, OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"{escape_text(resume or '')}: {exc}", param_hint="--resume") from None
    if earlier is not None and earlier.cut_short:
        _say("warning", f"{resume}: its last line is a record cut short: it is read as not there")
    title = f"ociboot audit of {namespace or from_file}"
    try:
        outs = audit_output.open_outputs(
            fmt, output, html, earlier, [from_file, policy_file, *_read_paths(options)], title
        )
    except outputs.OutputError as exc:
        raise typer.BadParameter(str(exc), param_hint="--output") from None
    bar = options.progress is not None
    filters = Filters(patterns["--repo"], patterns["--tag"], newest)
    quiet = replace(options, progress=None)
    # A cluster's workers keep their own caches: the client judges nothing and needs none.
    cached = audit_run.private_cache(quiet, _warned) if executor == LOCAL_EXECUTOR else nullcontext(quiet)
    with outs, cached as run_options:
        try:
            judge = open_executor(executor, policy, run_options, jobs)
        except ValueError as exc:
            raise typer.BadParameter(escape_text(str(exc)), param_hint="--executor") from None
        except OcibootError as exc:
            _say("error", exc)
            raise typer.Exit(exc.exit_code) from None
        try:
            with _running(run_options):
                listing = (
                    enumerate_targets(space, run_options, filters, page_size) if space is not None else None
                )
                targets = [
                    *(listing.targets if listing is not None else ()),
                    *(targets_from_file(from_file, filters, run_options) if from_file is not None else ()),
                ]
                targets = list(dict.fromkeys(targets))  # listed and in --from: once
                unlisted = [
                    audit_record.unlisted(u.registry, u.repository, u.error)
                    for u in (listing.unlisted if listing is not None else ())
                ]
                if not targets and not unlisted:
                    _say("error", f"{title}: no tag to audit")
                with _audit_progress(bar, len(targets), outs.summary) as shown:
                    records = audit_run.audit(
                        targets,
                        policy,
                        run_options,
                        judge,
                        jobs=jobs,
                        earlier=earlier.earlier if earlier is not None else None,
                        on_resolved=shown.resolved,
                    )
                    for record in itertools.chain(unlisted, records):
                        if record.error is not None:
                            _say("error", f"{record.name}: {record.error}")
                        outs.record(record)
                        shown.judged(record)
        finally:
            judge.close()
        outs.finish()
    for where, why in outs.failures:
        _say("error", f"the audit could not be written to {where}: {why}")
    raise typer.Exit(2 if outs.failures else outs.summary.exit_code)


def _warned(message: str) -> None:
    _say("warning", message)


class _AuditShown:
    """The audit's progress bar on a terminal (tags resolved; tags judged, with the summary's
    counts per verdict); without one, nothing: the records are the lines."""

    def __init__(self, live: Progress | None, total: int, summary: Summary) -> None:
        self.live = live
        self.summary = summary
        if live is not None:
            self.resolving = live.add_task("tags resolved", total=total)
            self.judging = live.add_task(self._described(), total=total)

    def _described(self) -> str:
        return "tags judged: " + ", ".join(f"{self.summary.tags.get(v, 0)} {v}" for v in VERDICTS)

    def resolved(self, done: int) -> None:
        if self.live is not None:
            self.live.update(self.resolving, completed=done)

    def judged(self, record: AuditRecord) -> None:
        """After the summary has counted `record`."""
        if self.live is not None and record.listed:  # (a repository not listed is no tag)
            self.live.update(self.judging, advance=1, description=self._described())


@contextmanager
def _audit_progress(bar: bool, total: int, summary: Summary) -> Iterator[_AuditShown]:
    if not bar:
        yield _AuditShown(None, total, summary)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=_err(), transient=True
    ) as live:
        yield _AuditShown(live, total, summary)


def _registry_only(texts: list[str], option: str) -> None:
    """A verdict hangs from a registry image: anything else is a usage error, before any check."""
    from . import pipeline

    for text in texts:
        try:
            ref = pipeline.registry_ref(text)
        except OcibootError:
            continue  # reported as that image's error when it is checked
        if ref is None:
            raise typer.BadParameter(
                f"{escape_text(text)} is not a registry image (docker://): verdicts live in a registry",
                param_hint=option,
            )


def _attach_verdicts(texts: list[str], batch: api.Batch, policy: Policy, options: pipeline.Options) -> bool:
    """Attach each fully judged image's verdict; False when one could not be attached."""
    from .verdict.attach import attach_checked

    ok = True
    for text, checked in zip(texts, batch.checked, strict=True):
        if checked.unreadable:
            _say("warning", f"{checked.image}: not fully judged, so no verdict was attached")
            continue
        try:
            result, digest = attach_checked(text, checked, policy, options)
        except OcibootError as exc:
            _say("error", f"{checked.image}: the verdict could not be attached: {exc}")
            ok = False
            continue
        _say("note", f"{checked.image}: verdict {result} attached as {digest}")
    return ok


def _named(u: Unreadable) -> str:
    """The error line names the image, once (most errors already start with the reference)."""
    return u.error if u.error.startswith(u.label) else f"{u.label}: {u.error}"


def _image_list(path: str) -> list[str]:
    from .reflist import reference_lines

    try:
        return [text for _, text in reference_lines(path)]
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8, or over a bound of the list
        raise typer.BadParameter(f"{path}: {exc}", param_hint="--from") from None


_MARKS = {
    "fail": "[bold red]FAIL[/]",
    "error": "[bold magenta]NOT RUN[/]",
    "pass": "[green]ok[/]",
    "skip": "[dim]skip[/]",
}
_SEVERITY = {"error": "[red]error[/]", "warning": "[yellow]warning[/]", "info": "[blue]info[/]"}


def _shown(text: str) -> str:
    """Image text for rich: control characters escaped (textsafe), then rich markup escaped."""
    from rich.markup import escape

    return escape(escape_text(text))


def _print_tables(checked: pipeline.Checked, fatal_warnings: bool, verbose: bool) -> None:
    """A table per image on a terminal; the same content as the plain text renderer."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from .report import index_lines

    out = Console(highlight=False, emoji=False)
    for r in checked.reports:
        bootable = r.bootable(fatal_warnings=fatal_warnings)
        out.print(f"[bold]{_shown(r.image)}[/]  [dim]{_shown(r.digest)}  {_shown(r.platform)}[/]")
        for line in index_lines(r):
            out.print(f"[dim]{_shown(line)}[/]")
        out.print(f"profile [bold]{_shown(r.profile)}[/] [dim]({_shown(r.profile_reason)})[/]")
        table = Table(show_lines=False, expand=False)
        for column in ("", "severity", "rule", "finding"):
            table.add_column(column, overflow="fold")
        for f in r.findings_ordered():
            if f.outcome.value in ("pass", "skip") and not verbose:
                continue
            detail = _shown(f.message)
            for ev in f.evidence:
                detail += f"\n[dim]{_shown(ev)}[/]"
            if f.hint and f.outcome.value in ("fail", "error"):
                detail += f"\n[cyan]fix:[/] {_shown(f.hint)}"
            table.add_row(_MARKS[f.outcome.value], _SEVERITY[f.severity.value], _shown(f.rule), detail)
        out.print(table)
        c = r.counts()
        verdict = "[bold green]BOOTABLE[/]" if bootable else "[bold red]NOT BOOTABLE[/]"
        out.print(
            f"{verdict}: {c['fail']} failed, {c['error']} not run, {c['pass']} passed, {c['skip']} skipped\n"
        )
    for u in checked.unreadable:
        out.print(f"[bold]{escape(u.label)}[/]\n[bold magenta]UNREADABLE[/]: {escape(u.error)}\n")


def _promoting(command: Callable[..., None]) -> Callable[..., None]:
    """`promote`'s options: how images are read, `--authfile` for both registries, and skopeo
    copy's `--src-*`/`--dest-*` for each; it receives `options_src` and `options_dst`."""
    reading = _parameters(_reading("os/arch[/variant]: judge and copy only this platform of an index", True))
    both = _parameters([o for o in _credentials("") if o[0] == "authfile"])
    sides = {side: _parameters(_credentials(side)) for side in _SIDES}
    shared = [*reading, *both, *sides["src"], *sides["dest"]]
    given_here = ("options_src", "options_dst", "quiet")
    params = _own(command, given_here)

    @functools.wraps(command)
    def run(**given: Any) -> None:
        common = {p.name: given.pop(p.name) for p in reading}
        authfile = given.pop("authfile")
        limits = _limits(common.pop("timeout"), common.pop("stall_timeout"))
        made: dict[str, pipeline.Options] = {}
        for side, params in sides.items():
            chosen = {p.name.removeprefix(f"{side}_"): given.pop(p.name) for p in params}
            chosen["authfile"] = chosen["authfile"] or authfile
            source = _source(**chosen, password_stdin=False, limits=limits, side=side)
            # Only the source is read, so only it has a cache and progress bars.
            reads = side == "src"
            made[side] = _pipeline_options(
                common["platform"],
                common["quiet"] or not reads,
                source,
                common["cache_dir"] if reads else None,
                common["use_cache"] and reads,
                common["cache_url"] if reads else None,
            )
        # One client for both: tokens are kept per identity and scope, connections per registry.
        dest = replace(made["dest"], registry_state=made["src"].registry_state)
        command(options_src=made["src"], options_dst=dest, quiet=common["quiet"], **given)

    _declare(run, [*params, *shared])
    return app.command("promote", cls=_ImageCommand)(run)


@_promoting
@_judging
def promote(
    src: Annotated[str, typer.Argument(metavar="SRC", help="the image to check and copy (as for check)")],
    dst: Annotated[str, typer.Argument(metavar="DST", help="docker://HOST/REPO:TAG")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="check, then say what would be copied; write nothing")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="list passed checks and every copy step")
    ] = False,
    attach: Annotated[
        bool,
        typer.Option(
            "--attach/--no-attach",
            help="attach the verdict to the copied digest in DST before its tag is written (an "
            "in-toto statement as an OCI referrer; see `ociboot verdicts`)",
        ),
    ] = True,
    fmt: ReportFormatOpt = CheckFormat.text,
    output: ReportsOpt = None,
    *,
    policy: Policy,
    policy_file: str | None,
    options_src: pipeline.Options,
    options_dst: pipeline.Options,
    quiet: bool,
) -> None:
    """Check SRC by digest and copy exactly that digest to DST only if every platform is bootable.

    Exit 0 promoted, 1 not bootable (nothing written to DST), 2 usage, 3 SRC unreadable or the
    push failed (DST's tag untouched)."""
    from . import outputs
    from .promote import UsageError, destination
    from .promote import promote as run_promotion

    try:
        destination(dst)
    except UsageError as exc:
        raise typer.BadParameter(escape_text(str(exc)), param_hint="DST") from None

    fatal = policy.fatal_warnings
    inputs = [policy_file, *_read_paths(options_src), *_read_paths(options_dst)]
    tables, delivery = _deliver(output, fmt, [src], inputs, fatal, verbose)

    def reported(checked: pipeline.Checked) -> None:
        for u in checked.unreadable:
            _say("error", _named(u))
        if tables:
            _print_tables(checked, fatal, verbose)
        with suppress(outputs.Undelivered):  # said by _delivered, below
            delivery.image_done(checked)
        delivery.finish(api.Batch((checked,), fatal))

    def step(done: Step) -> None:
        if verbose or dry_run:
            _err().print(escape_text(done.describe(dry_run)), markup=False)

    with delivery, _running(options_src):
        promotion = run_promotion(
            src,
            dst,
            policy,
            options_src,
            options_dst,
            dry_run=dry_run,
            attach=attach,
            after_check=reported,
            on_step=step,
        )
    if promotion.error is not None:
        _say(
            "error",
            promotion.error
            if promotion.error.startswith(promotion.source)
            else f"{promotion.source}: {promotion.error}",
        )
    elif promotion.exit_code == 0 and (dry_run or not quiet):
        _err().print(escape_text(_promoted(promotion)), markup=False)
    elif promotion.exit_code == 1:
        _say("error", f"{promotion.source}: not bootable: nothing was written to {promotion.destination}")
    for warning in delivery.warnings:
        _say("warning", warning)
    raise typer.Exit(_delivered(delivery, promotion.exit_code))


def _promoted(promotion: Promotion) -> str:
    """One line: what the promotion did (or would do) to DST."""
    from .copy import Action

    dry = promotion.dry_run
    blobs = [s for s in promotion.steps if s.kind == "blob"]
    said = []
    for action, done, would in (
        (Action.SEND, "sent", "to send"),
        (Action.MOUNT, "mounted", "to mount"),
        (Action.PRESENT, "already present", "already present"),
    ):
        chosen = [b for b in blobs if b.action is action]
        if chosen:
            said.append(f"{len(chosen)} {would if dry else done} ({_human(sum(b.size for b in chosen))})")
    pushed = sum(1 for s in promotion.steps if s.kind == "manifest" and s.action is Action.PUT)
    tagged = any(s.kind == "tag" and s.action is Action.TAG for s in promotion.steps)
    digest = promotion.subject.digest if promotion.subject is not None else "?"
    return (
        f"{'would promote' if dry else 'promoted'} {promotion.source} ({digest}) to {promotion.destination}: "
        f"blobs {', '.join(said) or 'none'}; {pushed} manifests {'to push' if dry else 'pushed'}; "
        + (f"verdict {promotion.verdict}; " if promotion.verdict is not None else "")
        + ("tag to write" if dry and tagged else "tag written" if tagged else "tag already there")
    )


@_reads_images(platform_help="os/arch[/variant]: the verdicts of this platform's manifest", cache=False)
@_taking("policy_file", "fatal_warnings")
def verdicts(
    image: ImageArg,
    fmt: FormatOpt = Format.text,
    *,
    policy_file: str | None,
    fatal_warnings: bool,
    options: pipeline.Options,
) -> None:
    """The verdicts attached to the image's digest (check --attach, promote), verified, newest
    first.  Exit 0 the newest passed, 1 it did not or there is none, 3 they could not be read.

    With --policy FILE only the verdicts made with that policy count (a check's --fatal-warnings
    too: it only makes the policy stricter); with --fatal-warnings a WARNED verdict does not
    pass either."""
    from .boot.profiles import load_policy
    from .verdict.listing import verdicts_of

    try:
        policy = load_policy(policy_file) if policy_file else None
    except OcibootError as exc:
        raise typer.BadParameter(str(exc), param_hint="--policy") from None
    _registry_only([image], "IMAGE")
    with _running(options):
        found = verdicts_of(image, options, policy, fatal_warnings)
    if fmt is Format.json:
        _write(json.dumps(clean(found.to_json()), indent=2, sort_keys=False))
    else:
        _write("\n".join(escape_text(line) for line in found.to_text().splitlines()))
    raise typer.Exit(found.exit_code)


class RulesFormat(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"


def _md_source(source: str) -> str:
    """A rule source (`boot.upstream`: URL, then an optional label) as a markdown link."""
    from .render.markdown import md as _md

    m = SOURCE.fullmatch(source)
    if m is None:
        return _md(source)
    link = f"[{_md(link_text(m['url']))}]({m['url']})"
    return f"{link} {_md(m['label'])}" if m["label"] else link


def _rules_markdown(data: dict[str, Any]) -> str:
    """docs/rules.md: tests/test_docs.py checks that the committed file is this output."""
    from .render.markdown import md as _md

    profiles = [p.value for p in Profile if p is not Profile.AUTO]
    out = [
        "# Rules",
        "",
        "<!-- Generated by `ociboot rules --format markdown > docs/rules.md`; do not edit by hand.",
        "     tests/test_docs.py fails when this file and the rule table differ. -->",
        "",
        "Every rule `ociboot check` runs: what it checks and why, its severity in each profile and",
        "its sources.  A failed **error** makes the image not bootable (exit 1), a **warning** does",
        "so only with `--fatal-warnings`, an **info** never does; — means the rule is not part of",
        "that profile.  `--skip RULE` and a policy's `[severity]` table change this per run.",
        "D1-D13, E1-E17 and K1-K13 in a description name the tool behaviours described in",
        "[tools.md](tools.md); the sources link to the upstream code at the commit that was read.",
        "",
        "| rule | title | " + " | ".join(profiles) + " |",
        "|---|---|" + "---|" * len(profiles),
    ]
    for r in data["rules"]:
        sev = [r["severity"].get(p, "—") for p in profiles]
        out.append(f"| [{r['id']}](#{r['id'].lower()}) | {_md(r['title'])} | " + " | ".join(sev) + " |")
    for r in data["rules"]:
        out += ["", f"## {r['id']}", "", f"**{_md(r['title'])}**", "", _md(r["description"]), ""]
        severities = ", ".join(f"{p} {s}" for p, s in r["severity"].items())
        out += [f"Severity: {severities or 'in no profile'}.", "", "Sources:", ""]
        out += [f"- {_md_source(src)}" for src in r["sources"]]
    return "\n".join(out) + "\n"


@app.command()
def rules(
    profile: Annotated[Profile | None, typer.Option("--profile", help="only this profile's rules")] = None,
    fmt: Annotated[RulesFormat, typer.Option("--format", "-f", help="output format")] = RulesFormat.text,
) -> None:
    """List every rule: id, per-profile severity, title, sources (markdown: docs/rules.md)."""
    from .boot.rules import documented

    data: dict[str, Any] = {**schemas.header("rules"), "rules": documented(profile)}

    def text(data: dict[str, Any]) -> str:
        lines = []
        for r in data["rules"]:
            sev = " ".join(f"{p}={s[0].upper()}" for p, s in r["severity"].items())
            lines.append(f"{r['id']:<8} {r['title']}  [{sev}]")
        return "\n".join(lines)

    if fmt is RulesFormat.markdown:
        _emit(Format.text, data, _rules_markdown)
    else:
        _emit(Format(fmt.value), data, text)


cache_app = typer.Typer(
    help="The cache of layer indexes and verdicts: where it is, what it holds, pruning it.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(cache_app, name="cache")


@cache_app.command("info")
def cache_info(cache_dir: CacheDirOpt = None, fmt: FormatOpt = Format.text) -> None:
    """Location, number of entries and total size of the cache."""
    from .cache import LayerCache, default_cache_dir

    info = LayerCache(cache_dir or default_cache_dir()).info()
    data = {
        **schemas.header("cache-info"),
        "location": str(info.root),
        "entries": info.entries,
        "size": info.size,
        "obsolete": info.obsolete,
        "verdicts": info.verdicts,
    }
    _emit(
        fmt,
        data,
        lambda safe: (
            f"location: {safe['location']}\nentries:  {info.entries} ({info.verdicts} verdicts)"
            f"\nsize:     {_human(info.size)}"
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
        typer.Option(
            "--max-size", metavar="SIZE", help="drop least recently used entries down to SIZE (500M, 2G)"
        ),
    ] = None,
    older_than: Annotated[
        float | None,
        typer.Option("--older-than", min=0, metavar="DAYS", help="drop entries unused for DAYS days"),
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="empty the cache")] = False,
    cache_dir: CacheDirOpt = None,
    fmt: FormatOpt = Format.text,
) -> None:
    """Remove cache entries (always: other format versions and leftovers of interrupted writes)."""
    from .cache import LayerCache, default_cache_dir, parse_size

    try:
        limit = parse_size(max_size) if max_size is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--max-size") from None
    seconds = older_than * 86400 if older_than is not None else None
    done = LayerCache(cache_dir or default_cache_dir()).prune(
        max_size=limit, older_than=seconds, everything=everything
    )
    data = {
        **schemas.header("cache-prune"),
        "removed": done.removed,
        "freed": done.freed,
        "entries": done.entries,
        "size": done.size,
    }
    _emit(
        fmt,
        data,
        lambda _: (
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
        _err().print(f"ociboot: interrupted after {time.monotonic() - started:.1f}s")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)


__all__ = ["app", "main"]
