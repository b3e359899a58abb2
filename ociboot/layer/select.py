"""What is asked of a layer while it streams: bytes to keep (CaptureSpec) and members to hand to
an analyzer (AnalyzeSpec), both chosen by fnmatch patterns over normalised paths.

Patterns match paths as the tar walker normalises them (no leading '/'); as in fnmatch, '*' also
matches '/'.  Specs are frozen and hashable values, so a cache can key on what was asked.
"""

from __future__ import annotations

import fnmatch
import glob
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..budget import AnalysisBudget
from ..compression import Readable
from ..fs.node import Entry

#: CaptureSpec.cap() of a path no pattern matches.
NOT_WANTED = -1

#: analyze(entry, reader, budget) -> result: reads a member's bytes from the tar stream as they
#: pass (the reader is a tarwalk.MemberReader), charging its work to the image's budget.
Analyzer = Callable[[Entry, Readable, AnalysisBudget], Any]

_T = TypeVar("_T")


def _clean_pattern(pattern: str) -> str:
    while pattern.startswith(("./", "/")):
        pattern = pattern[2:] if pattern.startswith("./") else pattern[1:]
    return pattern


def literal(path: str) -> str:
    """A pattern that matches exactly `path`, whatever characters it contains."""
    return glob.escape(_clean_pattern(path))


def _ordered(rules: Iterable[tuple[str, _T]]) -> tuple[tuple[str, _T], ...]:
    return tuple(sorted(rules, key=lambda rule: rule[0]))


def _any_of(rules: tuple[tuple[str, Any], ...]) -> re.Pattern[str] | None:
    # One alternation rejects the common case (no pattern matches) in a single regex call.
    return re.compile("|".join(fnmatch.translate(p) for p, _ in rules)) if rules else None


def any_matcher(*specs: _Selector[Any] | None) -> Callable[[str], object] | None:
    """One regex's `match` over the patterns of all `specs` (None if there are none): the tar
    walker rejects the members nobody asked for with one call instead of one per spec."""
    rules = tuple(rule for spec in specs if spec for rule in spec.rules)
    pattern = _any_of(rules)
    return pattern.match if pattern is not None else None


@dataclass(frozen=True, slots=True, init=False)
class _Selector(Generic[_T]):
    """Sorted (pattern, value) rules, with one regex over all patterns as a fast reject."""

    rules: tuple[tuple[str, _T], ...]
    _any: re.Pattern[str] | None = field(compare=False, hash=False, repr=False)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def _matching(self, path: str) -> Iterator[_T]:
        """The values of the rules matching `path`, in pattern order (after `_any` matched it:
        the walker asks for every member, so callers test `_any` inline, without a call)."""
        return (value for pattern, value in self.rules if fnmatch.fnmatchcase(path, pattern))

    def _set_rules(self, rules: tuple[tuple[str, _T], ...]) -> None:
        object.__setattr__(self, "rules", rules)
        object.__setattr__(self, "_any", _any_of(rules))


@dataclass(frozen=True, slots=True, init=False)
class CaptureSpec(_Selector[int | None]):
    """Which members' bytes to keep while streaming: fnmatch patterns -> byte cap (None: all).

    When several patterns match a path, the largest cap wins.
    """

    def __init__(self, rules: Mapping[str, int | None] | Iterable[tuple[str, int | None]] = ()) -> None:
        merged: dict[str, int | None] = {}
        for pattern, cap in rules.items() if isinstance(rules, Mapping) else rules:
            if cap is not None and cap < 0:
                raise ValueError(f"negative capture cap {cap} for {pattern!r}")
            key = _clean_pattern(pattern)
            merged[key] = _larger(merged[key], cap) if key in merged else cap
        self._set_rules(_ordered(merged.items()))

    @classmethod
    def exact(cls, path: str, cap: int | None = None) -> CaptureSpec:
        """Keep exactly one path (for `ociboot cat`), whatever characters it contains."""
        return cls({literal(path): cap})

    def __or__(self, other: CaptureSpec) -> CaptureSpec:
        return CaptureSpec([*self.rules, *other.rules])

    def cap(self, path: str) -> int | None:
        """NOT_WANTED (-1) if no pattern matches `path`, else its byte cap (None: whole file)."""
        if self._any is None or not self._any.match(path):
            return NOT_WANTED
        best: int | None = NOT_WANTED
        for cap in self._matching(path):
            best = cap if best == NOT_WANTED else _larger(best, cap)
        return best


def _larger(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else max(a, b)


@dataclass(frozen=True, slots=True, init=False)
class AnalyzeSpec(_Selector[Analyzer]):
    """Members to hand to an analyzer while the layer streams, instead of keeping their bytes.

    An initrd must be read whole to be judged (decompressed, its cpio walked) but must never be
    held in memory: its analyzer pulls the member's bytes from the tar stream and keeps only its
    findings.  The first pattern (in sorted order) that matches wins.  `budget` is the image's,
    shared by every spec of one check (not part of the spec's identity: it bounds the work, it
    does not change a result).
    """

    budget: AnalysisBudget = field(compare=False, hash=False, repr=False)

    def __init__(
        self,
        rules: Mapping[str, Analyzer] | Iterable[tuple[str, Analyzer]] = (),
        budget: AnalysisBudget | None = None,
    ) -> None:
        merged = dict(
            (_clean_pattern(p), fn) for p, fn in (rules.items() if isinstance(rules, Mapping) else rules)
        )
        self._set_rules(_ordered(merged.items()))
        object.__setattr__(self, "budget", budget or AnalysisBudget())

    @classmethod
    def exact(cls, path: str, analyzer: Analyzer, budget: AnalysisBudget | None = None) -> AnalyzeSpec:
        return cls({literal(path): analyzer}, budget)

    def __or__(self, other: AnalyzeSpec) -> AnalyzeSpec:
        return AnalyzeSpec([*self.rules, *other.rules], self.budget)

    def analyzer(self, path: str) -> Analyzer | None:
        if self._any is None or not self._any.match(path):
            return None
        return next(self._matching(path), None)


@dataclass(frozen=True, slots=True)
class AnalysisFailed:
    """An analyzer raised: kept as its result so a check can say it could not run."""

    # Cache entries tag a result by its class's module and name (cache/codec.py): this is the
    # name entries written before layer/ became a package carry, and the public one.
    __module__ = "ociboot.layer"

    error: str


@dataclass(frozen=True, slots=True)
class OverBudget(AnalysisFailed):
    """An analysis cut (or never started) because the image's budget ran out.  A fact about this
    run, not about the layer: the cache registers no such type, so a layer holding one is never
    stored, and a later run with a larger budget reads the file again."""

    __module__ = "ociboot.layer"
