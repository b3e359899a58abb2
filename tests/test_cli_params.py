"""The CLI converts its options' values itself (cli._Coercion, to keep typer's pydantic out of
start-up): every value must come out as typer's own conversion gives it, refusals included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from typer.core import TyperArgument, TyperOption
from typer.testing import CliRunner

from ociboot.cli import app

runner = CliRunner()

#: Raw values as the parser hands them over (text, repeated text, nothing) and defaults.
RAW: list[Any] = [
    None,
    "",
    "text",
    "json",
    "JSON",
    "sarif",
    "auto",
    "generic",
    "0",
    "1",
    "2",
    "007",
    "-1",
    "+3",
    " 4",
    "1.5",
    "1_000",
    "9" * 30,
    "x",
    (),
    ("a",),
    ("a", "b"),
    ["c"],
]


def _commands(command: Any, path: str = "ociboot") -> Iterator[tuple[str, Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, f"{path} {name}")


def _outcome(convert: Any, value: Any, param: Any, ctx: Any) -> tuple[str, Any]:
    try:
        got = convert.coerce(value, param=param, ctx=ctx)
    except Exception as exc:  # the refusal itself is what is compared
        return type(exc).__name__, exc.format_message() if hasattr(exc, "format_message") else str(exc)
    return type(got).__name__, got


def _cases() -> Iterator[tuple[str, Any, Any, Any]]:
    tree = typer.main.get_command(app)
    for path, command in _commands(tree):
        ctx = command.context_class(command, info_name=path.rsplit(" ", 1)[-1])
        for param in command.get_params(ctx):
            for value in [*RAW, param.default]:
                yield path, value, ctx, param


def test_every_parameter_converts_as_typer_does() -> None:
    compared = kinds = 0
    seen: set[str] = set()
    for path, value, ctx, param in _cases():
        typers = TyperOption if isinstance(param, TyperOption) else TyperArgument
        ours = _outcome(param.get_runtime_param(), value, param, ctx)
        theirs = _outcome(typers.get_runtime_param(param), value, param, ctx)
        assert ours == theirs, f"{path} {param.name} {value!r}"
        compared += 1
        annotation = repr(param.type_descriptor.annotation)
        kinds += annotation not in seen
        seen.add(annotation)
    # The walk reached every kind the CLI declares, with the values above each.
    assert compared > 1000 and {"<class 'str'>", "list[str]", "<class 'int'>"} <= seen and kinds >= 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ls", "-f", "xml", "x"], "'xml' is not one of 'text', 'json'"),
        (["check", "-j", "0", "x"], "Invalid value for '--jobs' / '-j'"),
        (["check", "-j", "two", "x"], "Invalid value for '--jobs' / '-j'"),
        (["cache", "prune", "--older-than", "-1"], "Invalid value for '--older-than'"),
    ],
)
def test_a_refused_value_is_worded_by_typer(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())
