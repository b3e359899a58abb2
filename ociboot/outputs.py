"""Where a check's reports go: several reports from one read of the images (`-o FORMAT=FILE`).

An output is a format and a destination, a file or standard output (`-`).  Every destination is
opened before any image is read, so that a report that cannot be written fails the run before the
check (exit 2), and none is truncated until all of them could be opened.  A report that could not
be delivered is no verdict: `Delivery.failures` makes the run exit 2, never 0 or 1, whatever the
images were (a gate reading a missing or cut-short report must not see a pass).
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TextIO

from . import __version__, pipeline
from .api import Batch
from .promolist import ListError, ListFormat, Lists
from .render import render_junit, render_sarif
from .render.sarif import CATEGORY_PREFIX, GITHUB_MAX_RUNS, run_count
from .report import ReportFormat, render_json, render_text
from .sources import SourceOptions
from .textsafe import escape

#: The destination that is standard output, as in `-o json=-`.
STDOUT = "-"

#: What `FORMAT=` may be: a word.  `./a=b` is a file named `a=b`; `sraif=x` is a typo, not a file.
_FORMAT_NAME = re.compile(r"[a-z]+")


class OutputError(ValueError):
    """An output cannot be honoured (a usage error, exit 2); `str()` is the one line to print."""


class Undelivered(Exception):
    """Every output failed while the images were being checked: checking the rest is for nobody."""


@dataclass(frozen=True, slots=True)
class Output:
    format: ReportFormat | ListFormat  # a report, or a promotion list for a registry copier
    path: str  # STDOUT or a file name

    @property
    def where(self) -> str:
        return "standard output" if self.path == STDOUT else self.path


def parse(specs: Iterable[str], default: ReportFormat) -> list[Output]:
    """The outputs the `-o` values ask for: `FORMAT=FILE`, or a plain FILE in `default` (`--format`).

    Standard output gets a report in `default` too, unless a value names it (`FORMAT=-`) or a
    plain FILE takes its place (`--output FILE` before outputs could repeat wrote only FILE)."""
    outputs: list[Output] = []
    plain = False
    for spec in specs:
        name, eq, path = spec.partition("=")
        if eq and _FORMAT_NAME.fullmatch(name):
            try:
                fmt = ReportFormat(name)
            except ValueError:
                known = ", ".join(ReportFormat)
                raise OutputError(
                    f"{escape(spec)}: no format {escape(name)!r} ({known}); "
                    f"a file so named is ./{escape(spec)}"
                ) from None
            if not path:
                raise OutputError(f"{escape(spec)}: no file after '=' (standard output is {name}=-)")
            outputs.append(Output(fmt, path))
        elif not spec:
            raise OutputError("an empty file name")
        else:
            plain = True
            outputs.append(Output(default, spec))
    if not plain and all(o.path != STDOUT for o in outputs):
        outputs.insert(0, Output(default, STDOUT))
    return outputs


def lists(requests: Sequence[str], target: str | None, images: Sequence[str]) -> tuple[Lists, list[Output]]:
    """The `--promotion-list FORMAT=FILE` outputs: files like the reports' (refused and opened
    with them), written from the batch's verdicts at the end."""
    try:
        wanted = Lists.of(requests, target, images)
    except ListError as exc:
        raise OutputError(escape(str(exc))) from None
    return wanted, [Output(fmt, path) for fmt, path in wanted.wanted]


def refuse(outputs: Sequence[Output], images: Iterable[str], inputs: Iterable[str | None] = ()) -> None:
    """Raise OutputError for two outputs into one file, or an output that is what the run reads
    (`inputs`: files and directories; the images' files): opening a report truncates it, and
    `check image.tar -o image.tar` would empty the image."""
    if sys.stdout is None and any(o.path == STDOUT for o in outputs):  # `>&-`
        raise OutputError("standard output is closed: a report for it has nowhere to go (name a file)")
    seen: dict[object, Output] = {}
    for o in outputs:
        other = seen.setdefault(_identity(o.path), o)
        if other is not o:
            raise OutputError(
                f"{escape(o.where)}: two outputs ({other.format}, {o.format}) would be written into one file"
            )
    files = [o for o in outputs if o.path != STDOUT]
    read = [(path, "is read by this run") for path in inputs if path]
    for text in images:
        if (path := pipeline.local_path(text)) is not None:
            read.append((path, f"is the image {escape(text)}"))
    for o in files:
        for path, what in read:
            if _writes_into(o.path, path):
                raise OutputError(f"{escape(o.path)} {what}: writing a report would destroy it")


def _writes_into(target: str, read: str) -> bool:
    """Whether writing `target` changes `read` or a file under it: one name once symlinks are
    resolved, a name inside it, or another name of one of its files (a hard link)."""
    where, source = Path(target).resolve(), Path(read).resolve()
    if where == source or source in where.parents:
        return True
    try:
        st, top = os.stat(target), os.stat(source)
    except OSError:
        return False  # a file that does not exist yet has no other name
    if not stat.S_ISREG(st.st_mode):
        return False
    if stat.S_ISREG(top.st_mode) or st.st_nlink < 2 or not stat.S_ISDIR(top.st_mode):
        return os.path.samestat(st, top)
    # Walked only for a file with several names: a layout or a cache holds many files.
    for root, _, names in os.walk(source):
        for name in names:
            with suppress(OSError):
                if os.path.samestat(st, os.stat(os.path.join(root, name))):
                    return True
    return False


def _identity(path: str) -> object:
    """Two names of one file are one destination: a file by its inode (`/dev/stdout` and `-` when
    stdout is redirected there), a character device (`/dev/null`, a terminal) by its name."""
    try:
        st = os.fstat(sys.stdout.fileno()) if path == STDOUT else os.stat(path)
    except (OSError, ValueError, AttributeError):  # no such file yet; a stdout that is no file
        st = None
    if st is None or stat.S_ISCHR(st.st_mode):
        return path if path == STDOUT else str(Path(path).resolve())
    return (st.st_dev, st.st_ino)


def render(batch: Batch, fmt: ReportFormat, sarif_category: str = CATEGORY_PREFIX) -> str:
    """One document for a machine format; an unreadable image is a failure in each of them."""
    reports, unreadable, fatal = batch.reports, batch.unreadable, batch.fatal_warnings
    if fmt is ReportFormat.json:
        return render_json(reports, fatal_warnings=fatal, unreadable=unreadable)
    if fmt is ReportFormat.sarif:
        return render_sarif(
            reports, tool_version=__version__, unreadable=unreadable, category_prefix=sarif_category
        )
    if fmt is ReportFormat.junit:
        return render_junit(reports, fatal_warnings=fatal, unreadable=unreadable)
    raise ValueError(f"{fmt} is written image by image (Delivery.image_done), not as one document")


class Writer:
    """One text output, open.  `file` None is standard output, looked up at each write: while
    progress bars are drawn, rich redirects it so that lines appear above the bars.  A write that
    fails is remembered (`failure`) and the output is given up: the run goes on, and its exit
    code says a report was not delivered."""

    def __init__(self, where: str, file: TextIO | None) -> None:
        self.where = where
        self.file = file
        self.failure: str | None = None

    def write(self, text: str) -> None:
        if self.failure is not None or not text:
            return
        out = self.file or sys.stdout
        try:
            out.write(text)
            out.flush()
        except OSError as exc:
            self.failure = exc.strerror or str(exc)

    def close(self) -> None:
        if self.file is None:
            return
        try:
            self.file.close()
        except OSError as exc:
            self.failure = self.failure or exc.strerror or str(exc)


class _Sink(Writer):
    """One output of a check, open."""

    def __init__(self, output: Output, file: TextIO | None) -> None:
        super().__init__(output.where, file)
        self.output = output
        self.shown = 0

    def discard(self) -> None:
        """Empty what was written: a copier must not act on part of a list."""
        if self.file is not None:
            with suppress(OSError, ValueError):
                self.file.truncate(0)


class Delivery:
    """The open outputs of one run: a text report as each image finishes (a slow image holds back
    no other's), the machine documents at the end, in input order.  A context manager."""

    def __init__(
        self,
        sinks: list[_Sink],
        *,
        fatal_warnings: bool,
        verbose: bool,
        lists: Lists | None = None,
        source: SourceOptions | None = None,
        sarif_category: str = CATEGORY_PREFIX,
    ) -> None:
        self._sinks = sinks
        self._sarif_category = sarif_category
        self._fatal = fatal_warnings
        self._verbose = verbose
        self._lists = lists
        self._source = source or SourceOptions()
        #: Lines for the user about what the documents cannot carry (set by `finish`).
        self.warnings: list[str] = []

    def image_done(self, checked: pipeline.Checked) -> None:
        """api.check's on_result: write this image's text report to every text output."""
        text = None
        for sink in self._sinks:
            if sink.output.format is ReportFormat.text:
                text = text or render_text(
                    checked.reports,
                    fatal_warnings=self._fatal,
                    verbose=self._verbose,
                    unreadable=checked.unreadable,
                )
                sink.write(("\n" if sink.shown else "") + text)
                sink.shown += 1
        if self._sinks and all(s.failure is not None for s in self._sinks):
            raise Undelivered

    def finish(self, batch: Batch) -> None:
        """The batch's summary on every text output, and every machine document."""
        summary = batch.summary() if len(batch.checked) > 1 else ""
        found = None
        if self._lists is not None and self._lists.wanted:
            found, self.warnings = self._lists.promoted(batch.checked, batch.fatal_warnings)
        for sink in self._sinks:
            fmt = sink.output.format
            if isinstance(fmt, ListFormat):
                assert self._lists is not None and found is not None
                sink.write(self._lists.render(fmt, found, self._source))
                if sink.failure is not None:
                    sink.discard()  # a half list would promote some images silently
            elif fmt is ReportFormat.text:
                sink.write(f"\n{summary}\n" if summary else "")
            else:
                if (
                    fmt is ReportFormat.sarif
                    and (runs := run_count(batch.reports, batch.unreadable)) > GITHUB_MAX_RUNS
                ):
                    self.warnings.append(
                        f"the SARIF report has {runs} runs, one per image platform; GitHub code scanning "
                        f"accepts at most {GITHUB_MAX_RUNS} per upload: check the images in smaller batches"
                    )
                sink.write(render(batch, fmt, self._sarif_category))

    @property
    def failures(self) -> list[tuple[Output, str]]:
        """Each output that could not be written, with the reason as strerror says it."""
        return [(s.output, s.failure) for s in self._sinks if s.failure is not None]

    def close(self) -> None:
        for sink in self._sinks:
            sink.close()

    def __enter__(self) -> Delivery:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_all(
    outputs: Sequence[Output],
    *,
    fatal_warnings: bool,
    verbose: bool,
    lists: Lists | None = None,
    source: SourceOptions | None = None,
    sarif_category: str = CATEGORY_PREFIX,
) -> Delivery:
    """Open every output (call `refuse` first).  Files are truncated only once all of them are
    open: a run refused for one unwritable output leaves the others as they were."""
    fds = iter(open_untruncated([o.path for o in outputs if o.path != STDOUT]))
    sinks = []
    for o in outputs:
        file = None
        if o.path != STDOUT:
            fd = next(fds)
            truncate(fd)
            file = open(fd, "w", encoding="utf-8")  # noqa: SIM115 (closed by Delivery.close)
        sinks.append(_Sink(o, file))
    return Delivery(
        sinks,
        fatal_warnings=fatal_warnings,
        verbose=verbose,
        lists=lists,
        source=source,
        sarif_category=sarif_category,
    )


def open_untruncated(paths: Sequence[str]) -> list[int]:
    """Each file opened for writing, none truncated yet (`truncate` them once all are open): a
    run refused for one unwritable output leaves the others as they were, and removes the ones
    this call created."""
    opened: list[tuple[str, int, bool]] = []  # (path, fd, created by this call)
    try:
        for path in paths:
            opened.append((path, *_open(path)))
    except OutputError:
        for path, fd, created in opened:
            os.close(fd)
            if created:
                os.unlink(path)
        raise
    return [fd for _, fd, _ in opened]


def truncate(fd: int) -> None:
    """Empty an output opened by `open_untruncated`: a regular file (not a pipe or a device)."""
    if stat.S_ISREG(os.fstat(fd).st_mode):
        os.ftruncate(fd, 0)


def _open(path: str) -> tuple[int, bool]:
    """A file opened for writing and not truncated yet, and whether this call created it."""
    flags = os.O_WRONLY | os.O_CLOEXEC
    try:
        try:
            return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o666), True
        except FileExistsError:
            return os.open(path, flags), False
    except OSError as exc:
        raise OutputError(f"{escape(path)}: {exc.strerror or exc}") from None


__all__ = [
    "STDOUT",
    "Delivery",
    "Output",
    "OutputError",
    "ReportFormat",
    "Undelivered",
    "lists",
    "open_all",
    "open_untruncated",
    "parse",
    "refuse",
    "render",
    "truncate",
]
