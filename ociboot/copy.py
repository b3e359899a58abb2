"""A checked image copied by digest into a registry repository, byte for byte.

    plan_copy(source, subject)    every manifest under the subject, children before parents,
                                  and every blob they list, each once
    copy(plan, source, target)    the blobs, then the manifests by digest, then the tag

Every byte taken from the source is verified against the digest that names it, and a blob's
last bytes are handed to the registry only after the whole blob verified: a blob whose bytes
changed since the check is never completed in the destination (nothing is staged on disk,
no blob is held whole).  Within one registry a blob mounted, or already there, is read and
verified first: the destination then holds the registry's bytes, not ours.  Manifests are
read and verified again when pushed rather than kept, so memory does not grow with the number
of manifests.  Index entries of every kind are copied (attestations, artifacts, nested
indexes): the index is pushed as its exact bytes, so everything it lists must exist in the
destination.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from enum import StrEnum

from .digest import Digest, VerifyingReader
from .errors import AuthenticationError, DigestMismatch, InvalidManifest, UnsupportedMediaType
from .image import MAX_INDEX_DEPTH
from .mediatypes import is_index, is_manifest
from .sources import ImageSource
from .sources.registry.push import RegistryTarget
from .sources.registry.transport import CHUNK
from .spec import MAX_DESCRIPTORS, MAX_MANIFEST_BYTES, Descriptor, Index, Manifest, sniff_manifest_type
from .streams import ReadStream

#: Blobs sent at once when the caller does not say (skopeo copies several layers at a time too).
DEFAULT_COPY_JOBS = 4


class Action(StrEnum):
    SEND = "send"  # streamed from the source, verified on the way
    MOUNT = "mount"  # linked from the source repository of the same registry (verified there)
    PRESENT = "present"  # the destination already holds it: nothing sent
    PUT = "put"  # a manifest pushed by digest
    TAG = "tag"  # the tag pointed at the subject, last


@dataclass(frozen=True, slots=True)
class Step:
    """One thing a promotion did (or, dry, would do) to the destination."""

    action: Action
    kind: str  # blob, manifest or tag
    digest: Digest
    size: int
    media_type: str
    reference: str | None = None  # the tag of a TAG step

    def describe(self, dry_run: bool = False) -> str:
        what = (
            f"tag {self.reference} -> {self.digest}" if self.kind == "tag" else f"{self.kind} {self.digest}"
        )
        done, would = _SAID[self.action]
        return f"{f'would {would}' if dry_run else done}: {what} ({self.size} bytes, {self.media_type})"


_SAID = {
    Action.SEND: ("sent", "send"),
    Action.MOUNT: ("mounted", "mount (or send if the registry will not)"),
    Action.PRESENT: ("already present", "skip (present)"),
    Action.PUT: ("pushed", "push"),
    Action.TAG: ("written", "write"),
}


@dataclass(frozen=True, slots=True)
class Plan:
    subject: Descriptor
    manifests: tuple[Descriptor, ...]  # children before the indexes that list them; subject last
    blobs: tuple[Descriptor, ...]  # configs and layers, each digest once

    @property
    def blob_bytes(self) -> int:
        return sum(b.size for b in self.blobs)


def plan_copy(source: ImageSource, subject: Descriptor) -> Plan:
    """What copying `subject` takes: walked from its verified bytes, bounded as an index walk
    is (MAX_INDEX_DEPTH levels, MAX_DESCRIPTORS descriptors in all, manifests and blobs)."""
    manifests: dict[Digest, Descriptor] = {}
    blobs: dict[Digest, Descriptor] = {}
    listed = 0

    def count(n: int) -> None:
        nonlocal listed
        listed += n
        if listed > MAX_DESCRIPTORS:
            raise InvalidManifest(
                f"{subject.digest} of {source.ref.display} lists more than {MAX_DESCRIPTORS} "
                "manifests and blobs in all: not copied"
            )

    def walk(desc: Descriptor, depth: int, path: frozenset[Digest]) -> None:
        if desc.digest in manifests:
            return
        if desc.digest in path:
            raise InvalidManifest(f"{desc.digest} of {source.ref.display} lists itself")
        if depth > MAX_INDEX_DEPTH:
            raise InvalidManifest(f"{desc.digest}: index nesting deeper than {MAX_INDEX_DEPTH}")
        data, media_type = read_manifest(source, desc)
        what = f"manifest {desc.digest} of {source.ref.display}"
        if is_index(media_type):
            index = Index.from_json(data, what, media_type)
            count(len(index.manifests))
            for child in index.manifests:
                if not (is_index(child.media_type) or is_manifest(child.media_type)):
                    raise UnsupportedMediaType(
                        f"{what} lists {child.digest} of media type {child.media_type!r}, "
                        "which cannot be copied as a manifest"
                    )
                walk(child, depth + 1, path | {desc.digest})
        else:
            manifest = Manifest.from_json(data, what, media_type)
            count(1 + len(manifest.layers))
            for blob in (manifest.config, *manifest.layers):
                blobs.setdefault(blob.digest, blob)
        manifests[desc.digest] = Descriptor(media_type, desc.digest, desc.size)

    walk(subject, 0, frozenset())
    return Plan(manifests[subject.digest], tuple(manifests.values()), tuple(blobs.values()))


def read_manifest(source: ImageSource, desc: Descriptor) -> tuple[bytes, str]:
    """The manifest's bytes as the source holds them, verified against `desc` (size and
    digest), with the media type its body declares."""
    what = f"manifest {desc.digest} of {source.ref.display}"
    if desc.size > MAX_MANIFEST_BYTES:
        raise InvalidManifest(f"{what} is {desc.size} bytes, over the {MAX_MANIFEST_BYTES} byte cap")
    raw = source.get_manifest(desc.digest)
    if len(raw.data) != desc.size:
        raise DigestMismatch(f"{desc.size} bytes", f"{len(raw.data)} bytes", what)
    actual = Digest.of(raw.data, desc.digest.algorithm)
    if actual != desc.digest:
        raise DigestMismatch(str(desc.digest), str(actual), what)
    return raw.data, sniff_manifest_type(raw.data, raw.media_type or desc.media_type, what)


class _Withheld(ReadStream):
    """A blob's bytes for an upload whose last bytes are returned only once the whole blob has
    verified: `reader` checks size and digest at its end, which is read here before those bytes
    are given out, so a registry never receives the complete body of a blob that is wrong."""

    def __init__(self, reader: VerifyingReader, size: int, advance: Callable[[int], None] | None) -> None:
        self._reader = reader
        self._size = size
        self._advance = advance
        if size == 0:
            reader.read(1)  # verified before the upload starts: there is no last byte to hold

    def read(self, n: int = -1) -> bytes:
        data = self._reader.read(n)
        if data and self._reader.count >= self._size:
            self._reader.read(1)  # end of stream: size and digest compared now, or it raises
        if data and self._advance is not None:
            self._advance(len(data))
        return data


def copy_blob(
    source: ImageSource,
    target: RegistryTarget,
    blob: Descriptor,
    mount_from: str | None,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    one_registry: bool = False,
) -> Action:
    """One blob into the destination: nothing if it is there, else mounted from `mount_from`
    (a repository of the same registry), else streamed and verified.

    Within `one_registry` the destination's copy of a digest is the source's: a blob it holds
    already, or one mounted, is the registry's bytes as they are now, which may have changed
    since the check; they are read from the source and verified first (read, not sent)."""
    present = target.blob_exists(blob)
    if present and not one_registry:
        return Action.PRESENT
    if one_registry or mount_from is not None:
        _verify(source, blob, progress)
        if present:
            return Action.PRESENT
    if mount_from is not None:
        try:
            if target.mount_blob(blob, mount_from):
                return Action.MOUNT
        except AuthenticationError:
            pass  # the destination's credentials may not read the source repository: send it
    advance = progress(f"blob {blob.digest.short}", blob.size) if progress is not None else None
    with source.open_blob(blob) as stream:
        reader = VerifyingReader(
            stream, blob.digest, f"blob {blob.digest} of {source.ref.display}", blob.size
        )
        sent = target.upload_blob(blob, _Withheld(reader, blob.size, advance))
    return Action.SEND if sent else Action.PRESENT


def _verify(
    source: ImageSource, blob: Descriptor, progress: Callable[[str, int], Callable[[int], None]] | None
) -> None:
    """Read the blob from the source to its end, checking size and digest; nothing is kept."""
    advance = progress(f"verify {blob.digest.short}", blob.size) if progress is not None else None
    with source.open_blob(blob) as stream:
        reader = VerifyingReader(
            stream, blob.digest, f"blob {blob.digest} of {source.ref.display}", blob.size
        )
        while chunk := reader.read(CHUNK):
            if advance is not None:
                advance(len(chunk))


def copy(
    plan: Plan,
    source: ImageSource,
    target: RegistryTarget,
    tag: str,
    *,
    mount_from: str | None = None,
    one_registry: bool = False,
    jobs: int = 0,
    dry_run: bool = False,
    on_step: Callable[[Step], None] | None = None,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    before_tag: Callable[[], None] | None = None,
) -> list[Step]:
    """Every blob (`jobs` at once), then each manifest by digest, children first, then `tag`.

    The tag is written last and only when everything it reaches is in place: a failure on the
    way leaves the tag as it was and only unreferenced blobs or untagged manifests behind.
    `before_tag` runs once the subject is in place (the verdict is attached to it there, so that
    a verdict that cannot be attached leaves the tag as it was too).  `dry_run` asks the
    destination what it holds and writes nothing."""
    steps: list[Step] = []

    def done(step: Step) -> None:
        steps.append(step)
        if on_step is not None:
            on_step(step)

    def blob_step(blob: Descriptor, action: Action) -> Step:
        return Step(action, "blob", blob.digest, blob.size, blob.media_type)

    if dry_run:
        for blob in plan.blobs:
            present = target.blob_exists(blob)
            action = Action.PRESENT if present else Action.MOUNT if mount_from else Action.SEND
            done(blob_step(blob, action))
    else:
        for blob, action in _concurrently(
            plan.blobs, lambda b: copy_blob(source, target, b, mount_from, progress, one_registry), jobs
        ):
            done(blob_step(blob, action))
    for manifest in plan.manifests:
        present = target.manifest_digest(str(manifest.digest)) == manifest.digest
        if not present and not dry_run:
            data, media_type = read_manifest(source, manifest)
            target.upload_manifest(data, media_type, str(manifest.digest))
        action = Action.PRESENT if present else Action.PUT
        done(Step(action, "manifest", manifest.digest, manifest.size, manifest.media_type))
    subject = plan.subject
    if before_tag is not None and not dry_run:
        before_tag()
    tagged = target.manifest_digest(tag) == subject.digest
    if not tagged and not dry_run:
        data, media_type = read_manifest(source, subject)
        target.upload_manifest(data, media_type, tag)
    action = Action.PRESENT if tagged else Action.TAG
    done(Step(action, "tag", subject.digest, subject.size, subject.media_type, tag))
    return steps


def _concurrently(
    blobs: tuple[Descriptor, ...], one: Callable[[Descriptor], Action], jobs: int
) -> Iterator[tuple[Descriptor, Action]]:
    """(blob, what was done) in plan order; the first failure stops what has not started."""
    workers = jobs or min(DEFAULT_COPY_JOBS, max(1, len(blobs)))
    if workers == 1:
        yield from ((b, one(b)) for b in blobs)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="copy") as pool:
        futures = [pool.submit(one, b) for b in blobs]
        finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in finished:
            if future.exception() is not None:
                pool.shutdown(wait=True, cancel_futures=True)
                raise future.exception()  # type: ignore[misc]
        for blob, future in zip(blobs, futures, strict=True):
            yield blob, future.result()
