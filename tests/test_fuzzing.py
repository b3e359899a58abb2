"""The fuzz bounds themselves catch what they promise to catch (tests/support/fuzzing.py)."""

from __future__ import annotations

import pytest

from ociboot.errors import ContentError
from tests.support.fuzzing import ExampleTimeout, assert_linear, assert_memory_linear, outcome


def _quadratic(n: int) -> object:
    def run() -> None:
        text = b""
        for _ in range(n):
            text = text + b"x" * 64  # copies the whole string each time

    return run


def _linear(n: int) -> object:
    def run() -> None:
        total = 0
        for part in [b"x" * 64] * n:
            total += len(part)

    return run


def test_linear_work_passes() -> None:
    assert_linear(_linear, 10_000, what="join")


def test_quadratic_work_is_caught() -> None:
    with pytest.raises(AssertionError, match="linear work would be"):
        assert_linear(_quadratic, 1_000, what="concatenation")


def test_a_refusal_is_an_outcome() -> None:
    def refuse() -> None:
        raise ContentError("bad")

    assert isinstance(outcome(refuse), ContentError)


def test_an_overrun_is_stopped() -> None:
    with pytest.raises(ExampleTimeout):
        outcome(lambda: [None for _ in iter(int, 1)], seconds=0.2)


def test_a_blow_up_is_stopped() -> None:
    with pytest.raises(MemoryError):
        outcome(lambda: bytearray(1 << 30), memory=64 << 20)


def test_memory_over_a_multiple_of_the_input_is_caught() -> None:
    with pytest.raises(AssertionError, match="peak"):
        assert_memory_linear(lambda: [bytes(100) for _ in range(100_000)], 1000, multiple=4, what="copies")
