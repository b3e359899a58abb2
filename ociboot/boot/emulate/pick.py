"""The answer of one tool behaviour: what it settles on, how it got there, what it passed over."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pick:
    """What one tool would pick.

    `matched` is the candidate the tool settled on (a glob match, a /boot entry) and `pattern`
    the pattern or prefix it matched by; `path` is what the tool returns for it after following
    the links it follows itself (`hops`), `real` where that is in the image with every link
    followed (None when the tool found no file).  `error` is the tool's own message when it
    fails, even after finding a file (Elemental's E3 refuses a kernel whose path names no
    modules directory).  `candidates` are what it tried, in order; `reasons` evidence lines on
    what it passed over and why; `version` a kernel release it derives (E3, K13)."""

    tool: str
    matched: str | None
    path: str | None
    real: str | None
    pattern: str = ""
    hops: tuple[str, ...] = ()
    candidates: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    error: str | None = None
    version: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.real is not None

    @property
    def chain(self) -> str:
        """`/boot/vmlinuz -> /boot/vmlinuz-6.1.0` as the tool walks it."""
        return " -> ".join(p for p in (self.matched, *self.hops) if p)

    def describe(self) -> str:
        if self.real is None:
            text = f"{self.tool}: nothing ({self.error or 'no match'})"
        else:
            text = f"{self.tool}: {self.matched}" + (f" (= {self.real})" if self.real != self.matched else "")
            text += f"; {self.error}" if self.error else ""
        return text + "".join(f"; {r}" for r in self.reasons)


def nothing(tool: str, error: str, reasons: tuple[str, ...] = (), candidates: tuple[str, ...] = ()) -> Pick:
    """The tool finds nothing: `error` is its own message."""
    return Pick(tool, None, None, None, candidates=candidates, reasons=reasons, error=error)
