"""The bounds every fuzz test of a parser of untrusted bytes holds its parser to.

A parser fed hostile bytes may answer or refuse (an `OcibootError`); anything else is a bug:
another exception, an example that runs past its time bound, or one that grows past its memory
bound.  Linear time is asserted by comparing the CPU time of one input against the same input
grown FACTOR times (a ratio, never a wall-clock limit): a quadratic parser shows FACTOR² where a
linear one shows FACTOR, so the threshold below sits far from both whatever the machine's speed.
"""

from __future__ import annotations

import gc
import resource
import signal
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TypeVar

from hypothesis import strategies as st

from ociboot.errors import OcibootError

T = TypeVar("T")

#: Per example: a parser given a few kilobytes must answer well inside these.
EXAMPLE_SECONDS = 10.0
EXAMPLE_MEMORY = 512 << 20

#: Linear-time checks grow the input FACTOR times and accept at most SLACK x FACTOR more work.
FACTOR = 8
SLACK = 3.0
MIN_CPU = 0.01
MAX_SIZE = 1 << 24


class ExampleTimeout(BaseException):
    """Raised into the parser when an example overruns; BaseException so no `except Exception`
    in the parser can swallow it."""


@contextmanager
def time_bound(seconds: float = EXAMPLE_SECONDS) -> Iterator[None]:
    """Interrupt the body after `seconds` (main thread only, where pytest runs tests)."""

    def expire(signum: int, frame: object) -> None:
        raise ExampleTimeout(f"example still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _address_space() -> int:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[0])
    return pages * resource.getpagesize()


@contextmanager
def memory_bound(extra: int = EXAMPLE_MEMORY) -> Iterator[None]:
    """Let the body map at most `extra` more bytes of address space: past that, allocations fail
    with MemoryError (which `outcome` reports as a bug) instead of taking the machine down."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (_address_space() + extra, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def outcome(
    parse: Callable[[], T], *, seconds: float = EXAMPLE_SECONDS, memory: int = EXAMPLE_MEMORY
) -> T | OcibootError:
    """`parse()` under both bounds: its result, or the OcibootError it refused the input with.
    Any other exception propagates and fails the test."""
    try:
        with time_bound(seconds), memory_bound(memory):
            return parse()
    except OcibootError as exc:
        return exc


def peak_memory(run: Callable[[], object]) -> int:
    """Bytes allocated by Python at the peak of `run()` (tracemalloc), whatever it returns or raises."""
    tracemalloc.start()
    try:
        with suppress(OcibootError):
            run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def cpu_seconds(run: Callable[[], object], repeat: int = 3) -> float:
    """The least CPU time of `repeat` runs (this thread's, so other threads' work does not count)."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.thread_time()
        with suppress(OcibootError):
            run()
        best = min(best, time.thread_time() - start)
    return best


def assert_linear(make: Callable[[int], Callable[[], object]], size: int, *, what: str) -> None:
    """`make(n)` returns a run over an input of size n; growing n FACTOR times must not cost more
    than SLACK x FACTOR times the CPU.  `size` is doubled until the small run takes MIN_CPU, so
    that the clock's resolution and fixed costs do not decide."""
    small = cpu_seconds(make(size))
    while small < MIN_CPU and size < MAX_SIZE:
        size *= 2
        small = cpu_seconds(make(size))
    large = cpu_seconds(make(size * FACTOR), repeat=2)
    ratio = large / max(small, 1e-4)
    assert ratio < SLACK * FACTOR, (
        f"{what}: {FACTOR}x the input (size {size} -> {size * FACTOR}) took {ratio:.0f}x the CPU "
        f"({small * 1000:.1f} ms -> {large * 1000:.1f} ms); linear work would be about {FACTOR}x"
    )


def assert_memory_linear(run: Callable[[], object], input_size: int, *, multiple: int, what: str) -> None:
    """Peak Python allocations of `run()` stay within `multiple` x the input size (+1 MiB)."""
    peak = peak_memory(run)
    assert peak <= multiple * input_size + (1 << 20), (
        f"{what}: peak {peak} bytes for a {input_size} byte input (bound {multiple}x + 1 MiB)"
    )


# --- mutations of real inputs ---------------------------------------------------------------------

#: Length-like values: the largest unsigned/signed 32-bit numbers, a sign bit, a 16 MiB count.
HUGE = (b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x80", b"\x00\x00\x00\x01")


def edits(extra: tuple[bytes, ...] = ()) -> st.SearchStrategy[list[tuple[str, int, object]]]:
    """Lists of edits for `mutate`: flip, insert (huge lengths, `extra` tokens), overwrite with a
    huge length, delete, repeat a slice (long runs, deep nesting)."""
    one = st.one_of(
        st.tuples(st.just("flip"), st.integers(min_value=0), st.integers(min_value=1, max_value=255)),
        st.tuples(st.just("insert"), st.integers(min_value=0), st.sampled_from(HUGE + extra)),
        st.tuples(st.just("overwrite"), st.integers(min_value=0), st.sampled_from(HUGE)),
        st.tuples(st.just("delete"), st.integers(min_value=0), st.integers(min_value=1, max_value=64)),
        st.tuples(st.just("repeat"), st.integers(min_value=0), st.integers(min_value=2, max_value=400)),
    )
    return st.lists(one, min_size=1, max_size=6)


def mutate(data: bytes, changes: list[tuple[str, int, object]], cut: int | None = None) -> bytes:
    """`data` with `changes` (from `edits()`) applied at positions taken modulo its length, then
    cut at `cut` (modulo the length) if given."""
    out = bytearray(data)
    for kind, where, arg in changes:
        at = where % max(len(out), 1)
        if kind == "flip" and out:
            out[at] ^= arg  # type: ignore[operator]
        elif kind == "insert":
            out[at:at] = arg  # type: ignore[index]
        elif kind == "overwrite":
            out[at : at + 4] = arg  # type: ignore[index]
        elif kind == "delete":
            del out[at : at + arg]  # type: ignore[operator]
        elif kind == "repeat":
            out[at:at] = bytes(out[at : at + 16]) * arg  # type: ignore[operator]
    if cut is not None and out:
        del out[cut % len(out) :]
    return bytes(out)
