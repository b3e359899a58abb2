"""Where an audit's results go: its records (jsonl or text) on standard output or `-o FILE`, and
`--html FILE`, all opened before any image is read (a report that cannot be written is a usage
error then, exit 2, not after an hour of audit).

Records are written one a line as each finishes and flushed, so an interrupted audit leaves
complete lines: `--resume FILE` with `--format jsonl -o FILE` appends to FILE the records it does
not already hold, and the resumed run finishes the file.  A record cut short by the interruption
(an unterminated last line that is no record) is dropped from FILE, with a warning.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from .. import outputs
from ..report import ReportFormat
from ..textsafe import escape
from .record import MAX_RECORD_BYTES, AuditFormat, AuditRecord, NotARecord
from .run import Resumed, Summary, resumed

#: A --resume file is read into memory as records (about 1 KiB each, held): one over this is
#: not an audit's (its records are about 300 bytes a tag: some 200,000 tags).
MAX_RESUME_BYTES = 64 << 20

#: How the shared refusal of outputs (ociboot.outputs.refuse) names each of ours.
_AS_REPORT = {AuditFormat.text: ReportFormat.text, AuditFormat.jsonl: ReportFormat.json}


@dataclass(frozen=True, slots=True)
class ResumeFile:
    """A --resume file read: its records, and how many of its bytes are complete lines."""

    path: str
    earlier: Resumed
    complete: int
    cut_short: bool  # an unterminated last line that is no record (dropped)
    #: The last complete line is a record without its newline: one is written before appending.
    unterminated: bool = False


def read_resume(path: str) -> ResumeFile:
    """NotARecord (naming the line) for a line that is not a record, or a file over
    MAX_RESUME_BYTES; OSError if unreadable.  Read a line at a time, each at most
    MAX_RECORD_BYTES: what is held is the records of at most the file's bound of lines (a
    Python string per name: a file of short names only takes about 12 times its size)."""
    state = {"complete": 0, "cut_short": False, "unterminated": False}

    def lines(fh: BinaryIO) -> Iterator[str]:
        for number in itertools.count(1):
            raw = fh.readline(MAX_RECORD_BYTES + 2)
            if not raw:
                return
            if state["complete"] + len(raw) > MAX_RESUME_BYTES:
                raise NotARecord(f"line {number}: the file is over {MAX_RESUME_BYTES} bytes")
            text = raw.decode("utf-8", "surrogateescape")
            if not raw.endswith(b"\n"):
                if len(raw) > MAX_RECORD_BYTES:
                    raise NotARecord(f"line {number}: over {MAX_RECORD_BYTES} bytes")
                try:
                    AuditRecord.parse(text)
                except NotARecord:
                    state["cut_short"] = True  # the last record, cut short by an interruption
                    return
                state["unterminated"] = True
            state["complete"] += len(raw)
            yield text

    with open(path, "rb") as fh:
        earlier = resumed(lines(fh))
    return ResumeFile(
        path, earlier, int(state["complete"]), bool(state["cut_short"]), bool(state["unterminated"])
    )


@dataclass(slots=True)
class AuditOutputs:
    """The open outputs of one audit; a context manager."""

    fmt: AuditFormat
    records: outputs.Writer
    html: outputs.Writer | None
    title: str
    #: Lines already in the file the records are appended to (a resumed run writes them not again).
    present: frozenset[str] = frozenset()
    written: list[AuditRecord] = field(default_factory=list)
    summary: Summary = field(default_factory=Summary)

    def record(self, record: AuditRecord) -> None:
        self.summary.add(record)
        if self.html is not None:
            self.written.append(record)
        if self.fmt is AuditFormat.jsonl:
            line = record.line()
            if line not in self.present:
                self.records.write(line + "\n")
        else:
            self.records.write(text_line(record) + "\n")

    def finish(self) -> None:
        """The summary after a text format's records, and the HTML report."""
        if self.fmt is AuditFormat.text:
            self.records.write("\n" + "\n".join(escape(line) for line in self.summary.lines()) + "\n")
        if self.html is not None:
            from .html import render  # only for --html: it loads the rule table

            self.html.write(render(self.written, title=self.title))

    @property
    def failures(self) -> list[tuple[str, str]]:
        """(where, why) of each output that could not be written: no verdict was delivered there."""
        sinks = [self.records, *([self.html] if self.html is not None else [])]
        return [(s.where, s.failure) for s in sinks if s.failure is not None]

    def __enter__(self) -> AuditOutputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.records.close()
        if self.html is not None:
            self.html.close()


def text_line(record: AuditRecord) -> str:
    """The text format's line of one tag (escaped: names and errors come from the registry)."""
    line = f"{record.verdict.upper():<12}  {record.name}  {record.digest or '-'}"
    if record.error is not None:
        line += f"  error: {record.error}"
    elif record.failed:
        line += f"  failed: {', '.join(record.failed)}"
    return escape(line)


def open_outputs(
    fmt: AuditFormat,
    output: str | None,
    html: str | None,
    resume: ResumeFile | None,
    inputs: list[str | None],
    title: str,
) -> AuditOutputs:
    """Every output opened now, none truncated until all could be; outputs.OutputError for one
    that cannot be written or would be written over what the audit reads."""
    appending = (
        resume is not None
        and output is not None
        and fmt is AuditFormat.jsonl
        and os.path.exists(output)
        and os.path.samefile(output, resume.path)
    )
    wanted = [outputs.Output(_AS_REPORT[fmt], output or outputs.STDOUT)]
    if html is not None:
        wanted.append(outputs.Output(ReportFormat.text, html))
    read = [*inputs, None if appending or resume is None else resume.path]
    outputs.refuse(wanted, [], read)
    files = [o.path for o in wanted if o.path != outputs.STDOUT]
    fds = iter(outputs.open_untruncated(files))
    writers: list[outputs.Writer] = []
    for out in wanted:
        if out.path == outputs.STDOUT:
            writers.append(outputs.Writer(out.where, None))
            continue
        fd = next(fds)
        if appending and out is wanted[0]:
            assert resume is not None
            os.ftruncate(fd, resume.complete)  # a record cut short is no record
            os.lseek(fd, 0, os.SEEK_END)
            if resume.unterminated:  # the next record starts a line of its own
                try:
                    os.write(fd, b"\n")
                except OSError as exc:
                    raise outputs.OutputError(f"{escape(out.path)}: {exc.strerror or exc}") from None
        else:
            outputs.truncate(fd)
        writers.append(outputs.Writer(out.where, open(fd, "w", encoding="utf-8")))  # noqa: SIM115
    present = resume.earlier.lines if appending and resume is not None else frozenset()
    return AuditOutputs(fmt, writers[0], writers[1] if html is not None else None, title, present)


__all__ = [
    "MAX_RESUME_BYTES",
    "AuditFormat",
    "AuditOutputs",
    "ResumeFile",
    "open_outputs",
    "read_resume",
    "text_line",
]
