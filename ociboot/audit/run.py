"""The audit itself: every tag resolved to the manifest digest it names now, each distinct digest
judged once (however many tags and repositories name it), a record per tag as soon as its digest
is judged.

The digest is the unit of work, as in the peers that scale (trivy server, Anchore, Clair): a tag
only says which digest to judge.  A digest is judged once for the whole audit even when two
repositories (or registries) hold it: its bytes, and so its manifest, config and layers, are the
same wherever they are stored.  The images are judged through an Executor sharing one
`pipeline.Options`, so one layer cache: each layer is fetched and indexed once for the whole
audit.  Without a cache of the user's (`--cache`, `--cache-dir`) the audit makes a private one
for its own run (`private_cache`), removed at the end, even on Ctrl-C.

`--resume FILE` reads the records of an earlier run (`resumed`): a digest judged there (bootable
true or false) is not judged again, its tags get their record from the stored result; an
unreadable record is retried.  Nothing in FILE is trusted beyond being a record: it is the
user's own earlier output, and what it says becomes that digest's result.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .record import VERDICTS, AuditRecord, NotARecord

if TYPE_CHECKING:
    from ..boot.context import Policy
    from ..pipeline import Checked, Options
    from .executor import Executor
    from .targets import Target

#: on_resolved(tags resolved so far): called as each tag is resolved (the CLI's progress bar).
OnResolved = Callable[[int], None]

#: The error of a tag the executor gave no answer for (it lost one, stopped early, or failed).
NOT_JUDGED = "the executor gave no result for its image: it was not judged"


@dataclass(frozen=True, slots=True)
class Resumed:
    """What an earlier run's records say: the judged result of each digest, and every complete
    line as written (so that an output appended to the same file gets no line twice)."""

    judged: dict[str, AuditRecord] = field(default_factory=dict)
    lines: frozenset[str] = frozenset()


def resumed(lines: Iterable[str]) -> Resumed:
    """The records of an earlier run's jsonl, line by line; NotARecord names the first bad line
    (`line N: why`).  A later record of a digest wins over an earlier one."""
    judged: dict[str, AuditRecord] = {}
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        text = line.rstrip("\n")
        if not text.strip():
            continue
        try:
            record = AuditRecord.parse(text)
        except NotARecord as exc:
            raise NotARecord(f"line {number}: {exc}") from None
        seen.add(text)
        if record.digest is not None and record.bootable is not None:
            judged[record.digest] = record
    return Resumed(judged, frozenset(seen))


def judging_key(policy: Policy, options: Options) -> str:
    """What a verdict depends on besides the image, as one digest: the policy as given (its
    lists' order too, as the verdict cache keys it), --platform, ociboot's version and code.
    Not libmagic's version, which the verdict cache's key has: it changes the descriptions a
    stored report quotes, never a verdict (boot/_sniff.py), and a record keeps only verdicts."""
    from ..cache import build_id
    from ..digest import Digest

    platform = str(options.platform) if options.platform is not None else ""
    parts = [policy.canonical(as_given=True), platform.encode(), build_id().encode()]
    return str(Digest.of(b"\n".join(parts)))


def audit(
    targets: list[Target],
    policy: Policy,
    options: Options,
    executor: Executor,
    *,
    jobs: int,
    earlier: Resumed | None = None,
    on_resolved: OnResolved | None = None,
) -> Iterator[AuditRecord]:
    """A record per target, as each is known.  Judging starts while tags are still being
    resolved: the executor is handed each new digest as soon as a tag names it.  Never raises
    for an image (executors turn every failure into an Unreadable), and every target gets its
    record: one whose image the executor gave no answer for is unreadable (NOT_JUDGED)."""
    from .record import from_checked

    key = judging_key(policy, options)
    # A verdict of another policy, platform or ociboot is no verdict of this audit's.
    stored = {
        d: r for d, r in (earlier.judged if earlier is not None else {}).items() if r.judged_with == key
    }
    handed: dict[str, str] = {}  # reference handed to the executor -> its digest
    waiting: dict[str, list[Target]] = {}  # that digest -> its tags so far
    # A digest judged: one record, not what check found (reports hold whole fact sheets).
    judged: dict[str, AuditRecord] = {}
    ready: deque[tuple[Target, AuditRecord]] = deque()  # known during resolution, yielded between judgments

    def named(record: AuditRecord, target: Target) -> AuditRecord:
        return replace(record, registry=target.registry, repository=target.repository, tag=target.tag)

    def pinned() -> Iterator[str]:
        for target, digest, error in _resolved(targets, options, jobs, on_resolved):
            if digest is None:
                unresolved = AuditRecord(
                    target.registry, target.repository, target.tag, None, None, error=error
                )
                ready.append((target, unresolved))
            elif digest in stored:
                ready.append((target, named(stored[digest], target)))
            elif digest in judged:  # an executor that reads its references lazily
                ready.append((target, named(judged[digest], target)))
            elif digest in waiting:
                waiting[digest].append(target)
            else:
                waiting[digest] = [target]
                # This repository holds the digest: any other holding it gives the same bytes.
                reference = f"docker://{target.registry}/{target.repository}@{digest}"
                handed[reference] = digest
                yield reference

    recorded: set[Target] = set()
    broke: list[str] = []  # why the executor stopped answering, if it failed
    for reference, checked in _answers(executor.checked(pinned()), broke):
        for target, record in _drained(ready):
            recorded.add(target)
            yield record
        digest = handed.get(reference)
        if digest is None or digest not in waiting:
            continue  # not asked for, or answered before: the first answer stands
        first, *others = waiting.pop(digest)
        judged[digest] = one = replace(
            from_checked(
                first.registry,
                first.repository,
                first.tag,
                digest,
                checked,
                fatal_warnings=policy.fatal_warnings,
            ),
            judged_with=key,
        )
        recorded.add(first)
        yield one
        for target in others:
            recorded.add(target)
            yield named(one, target)
    for target, record in _drained(ready):
        recorded.add(target)
        yield record
    # An executor that lost an answer or ended early: what it did not judge is no pass.
    digests = {target: digest for digest, tags in waiting.items() for target in tags}
    for target in dict.fromkeys(targets):
        if target not in recorded:
            yield AuditRecord(
                target.registry,
                target.repository,
                target.tag,
                digests.get(target),
                None,
                error=NOT_JUDGED + (f" ({broke[0]})" if broke else ""),
            )


def _answers(answers: Iterator[tuple[str, Checked]], broke: list[str]) -> Iterator[tuple[str, Checked]]:
    """The executor's answers until it ends or fails (a lost scheduler, a bug): its failure is
    said in `broke` and ends the answers; the tags left are then unreadable, never a crash."""
    try:
        yield from answers
    except Exception as exc:
        from ..pipeline import exception_detail

        broke.append(f"the executor failed: {exception_detail(exc)}")


def _drained(ready: deque[tuple[Target, AuditRecord]]) -> Iterator[tuple[Target, AuditRecord]]:
    while ready:
        yield ready.popleft()


def _resolved(
    targets: list[Target], options: Options, jobs: int, on_resolved: OnResolved | None
) -> Iterator[tuple[Target, str | None, str | None]]:
    """(target, its manifest digest now or None, why not) for each target as it is resolved,
    `jobs` at once: only the tag's manifest is read and verified (image.pin)."""
    if not targets:
        return
    pool = ThreadPoolExecutor(max_workers=max(1, min(jobs, len(targets))), thread_name_prefix="resolve")
    try:
        futures = {pool.submit(_resolve, target, options): target for target in targets}
        for done, future in enumerate(as_completed(futures), 1):
            target = futures[future]
            digest, error = future.result()
            if on_resolved is not None:
                on_resolved(done)
            yield target, digest, error
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # Ctrl-C: the queued tags are not read


def _resolve(target: Target, options: Options) -> tuple[str | None, str | None]:
    from ..image import pin
    from ..pipeline import failure_line, opened

    try:
        with opened(target.reference, options) as source:
            return str(pin(source).digest), None
    except Exception as exc:  # one tag: the audit goes on, and its record says why
        return None, failure_line(exc)


@contextmanager
def private_cache(options: Options, warn: Callable[[str], None] | None = None) -> Iterator[Options]:
    """`options` with a layer cache: the user's, else one made for this audit alone in a new
    directory (mode 0700, tempfile.mkdtemp), removed when the audit ends however it ends."""
    if options.cache is not None:
        yield options
        return
    from ..api import open_cache

    directory = tempfile.mkdtemp(prefix="ociboot-audit-")
    try:
        yield replace(options, cache=open_cache(directory, warn, verdicts=False))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass(slots=True)
class Summary:
    """Counts per verdict (tags, and distinct images), per failing rule and of repositories whose
    tags could not be listed: the text format's closing lines and the exit code."""

    tags: dict[str, int] = field(default_factory=dict)
    images: dict[str, set[str]] = field(default_factory=dict)
    rules: dict[str, int] = field(default_factory=dict)
    unlisted: int = 0

    def add(self, record: AuditRecord) -> None:
        if not record.listed:
            self.unlisted += 1
            return
        self.tags[record.verdict] = self.tags.get(record.verdict, 0) + 1
        if record.digest is not None:
            self.images.setdefault(record.verdict, set()).add(record.digest)
        for rule in record.failed:
            self.rules[rule] = self.rules.get(rule, 0) + 1

    @property
    def exit_code(self) -> int:
        """0 every tag bootable, 1 one is not, 3 one could not be read or a repository's tags
        could not be listed (3 wins); an audit that found no tag judged nothing, which is no
        pass: 3."""
        if self.tags.get("unreadable") or self.unlisted or not self.tags:
            return 3
        return 1 if self.tags.get("not bootable") else 0

    def lines(self) -> list[str]:
        total = sum(self.tags.values())
        images = len(set().union(*self.images.values())) if self.images else 0
        counts = ", ".join(
            f"{self.tags.get(v, 0)} {v} ({_images(len(self.images.get(v, ())))})" for v in VERDICTS
        )
        out = [f"audited {total} tag{'' if total == 1 else 's'}, {_images(images)}: {counts}"]
        if self.unlisted:
            many = self.unlisted != 1
            out.append(f"{self.unlisted} repositor{'ies' if many else 'y'} whose tags could not be listed")
        if self.rules:
            out.append("failing rules (tags):")
            out += [
                f"  {rule}  {count}"
                for rule, count in sorted(self.rules.items(), key=lambda i: (-i[1], i[0]))
            ]
        return out


def _images(count: int) -> str:
    return f"{count} image{'' if count == 1 else 's'}"


__all__ = [
    "NOT_JUDGED",
    "OnResolved",
    "Resumed",
    "Summary",
    "audit",
    "private_cache",
    "resumed",
]
