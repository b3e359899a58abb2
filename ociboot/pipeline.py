"""The only place the stages are wired:

    text -> ImageRef -> ImageSource -> ResolvedImage -> LayerIndex per layer -> FileTree

Layers are indexed concurrently (inflate and hashing release the GIL) and flattened base to top.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from . import __version__
from .boot import _sniff
from .boot.check import Profile
from .budget import AnalysisBudget
from .cache import LayerCache, Verdict, code_fingerprint, storable, verdict_key
from .collector import fewer_collections
from .digest import Digest
from .errors import (
    ContentError,
    ImageNotFound,
    InvalidManifest,
    LayerError,
    NoMatchingPlatform,
    OcibootError,
)
from .fs.node import Kind
from .fs.overlay import apply_layer, empty_tree
from .fs.tree import FileTree
from .image import (
    EntryKind,
    Fetched,
    IndexListing,
    ResolvedImage,
    pin,
    resolve,
    resolve_all,
    resolve_index,
)
from .layer import AnalyzeSpec, CaptureSpec, LayerIndex, index_layer
from .ref import ImageRef, Transport, parse_ref, redact
from .report import Report, Severity, Skipped, Unreadable
from .sources import ImageSource, SourceOptions, deadline_of, open_source
from .sources._store import sniff_path
from .spec import Descriptor, Platform

if TYPE_CHECKING:
    from .boot.context import Analysis, Policy
    from .sources.registry.client import RegistryClient

#: progress(name, total_bytes) -> advance(n_bytes); the CLI draws bars, tests pass None.
ProgressFactory = Callable[[str, int], Callable[[int], None]]

_PREFIXES = tuple(f"{t.value}:" for t in Transport)


def locate(text: str, deadline: float = math.inf) -> ImageRef:
    """Parse a reference; an existing path without a transport prefix is sniffed (a compressed
    archive is decompressed for it, by `deadline`)."""
    if not text.startswith(_PREFIXES) and os.path.exists(text):
        transport = sniff_path(text, deadline)
        if transport is None:
            raise ImageNotFound(f"{text}: not an OCI layout, oci-archive or docker-archive")
        # Built directly: the path may contain ':' which the transport grammar would split at.
        return ImageRef(transport, path=text)
    if not text.startswith(_PREFIXES) and _looks_like_a_path(text):
        # A mistyped file name would otherwise be asked of Docker Hub as `library/<name>`.
        shown = redact(text)
        raise ImageNotFound(
            f"{shown}: no such file or directory (for a registry image, write docker://{shown})"
        )
    return parse_ref(text)


def registry_ref(text: str) -> ImageRef | None:
    """The registry image `text` names, or None for a local one (a path, oci:, an archive),
    decided without reading anything: what is known of a reference before the run reads it
    (sniffing a compressed archive decompresses it: that happens once, under the deadline)."""
    if not text.startswith(_PREFIXES) and os.path.exists(text):
        return None
    ref = locate(text)  # parsing only: there is no existing path to sniff
    return ref if ref.transport is Transport.DOCKER else None


def local_path(text: str) -> str | None:
    """The file or directory a local reference names, without reading it; None for a registry
    image or a reference that does not parse (reported when it is checked)."""
    if not text.startswith(_PREFIXES) and os.path.exists(text):
        return text
    try:
        return locate(text).path
    except OcibootError:
        return None


def _looks_like_a_path(text: str) -> bool:
    return text.startswith(("/", "./", "../", "~")) or text.endswith(_ARCHIVE_SUFFIXES)


_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.zst", ".oci")


class RegistryState:
    """What the registry sources of a run share (tokens, connections), made on first use:
    reading a local image loads no registry module."""

    __slots__ = ("_client", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: RegistryClient | None = None

    def client(self) -> RegistryClient:
        with self._lock:
            if self._client is None:
                from .sources.registry.client import RegistryClient

                self._client = RegistryClient()
            return self._client


@dataclass(frozen=True, slots=True)
class Options:
    source: SourceOptions = field(default_factory=SourceOptions)
    platform: Platform | None = None
    jobs: int = 0  # 0: one thread per layer, at most 4
    progress: ProgressFactory | None = None
    cache: LayerCache | None = None  # None: every layer is streamed
    #: One per Options, so the images of a batch checked with the same Options reuse it
    #: (`replace(options, registry_state=other.registry_state)` shares it between two).
    registry_state: RegistryState = field(default_factory=RegistryState)

    @property
    def registry(self) -> RegistryClient:
        """The run's registry client: tokens per identity and scope, connections per registry."""
        return self.registry_state.client()


@contextmanager
def opened(text: str, options: Options) -> Iterator[ImageSource]:
    ref = locate(text, deadline_of(options.source))
    # Only a registry image makes the run's registry client (a local one loads no registry code).
    registry = options.registry if ref.transport is Transport.DOCKER else None
    source = open_source(ref, options.source, registry)
    try:
        yield source
    finally:
        source.close()


def open_image(source: ImageSource, options: Options, top: Fetched | None = None) -> ResolvedImage:
    return resolve(source, options.platform, top)


def open_all(source: ImageSource) -> list[ResolvedImage]:
    return resolve_all(source)


@dataclass(frozen=True, slots=True)
class ImageTree:
    image: ResolvedImage
    layers: tuple[LayerIndex, ...]
    tree: FileTree


def index_layers(
    image: ResolvedImage,
    capture: CaptureSpec | None,
    options: Options,
    only: Sequence[int] | None = None,
    analyze: AnalyzeSpec | None = None,
) -> list[LayerIndex]:
    """Index the image's layers (or the positions in `only`), concurrently, in base-to-top order."""
    return list(index_layers_iter(image, capture, options, only, analyze))


#: Entries of all the layers of one image together.  Each layer's index is capped too
#: (layer.MAX_INDEX_BYTES), but a hostile image can stack many layers each just under that cap:
#: the indexes and the tree hold about 1 KiB per entry (measured: 200,000 entries, 200 MB RSS),
#: so without this bound memory grows with the number of layers.  Real images list a few
#: hundred thousand entries.
MAX_IMAGE_ENTRIES = 2_000_000


def index_layers_iter(
    image: ResolvedImage,
    capture: CaptureSpec | None,
    options: Options,
    only: Sequence[int] | None = None,
    analyze: AnalyzeSpec | None = None,
) -> Iterator[LayerIndex]:
    positions = list(range(len(image.layers))) if only is None else list(only)

    def one(i: int) -> LayerIndex:
        ref = image.layers[i]
        advance = None
        if options.progress is not None:
            advance = options.progress(
                f"layer {i + 1}/{len(image.layers)} {ref.descriptor.digest.short}", ref.descriptor.size
            )

        def build() -> LayerIndex:
            return index_layer(
                image.source, ref.descriptor, ref.diff_id, capture, analyze=analyze, progress=advance
            )

        if options.cache is None:
            return build()
        # Keyed by the verified manifest's descriptor; the cache checks the config's diff_id.
        return options.cache.layer(ref.descriptor, ref.diff_id, capture, analyze, build)

    held = 0
    for done, layer in enumerate(_indexed(positions, one, options), 1):
        held += len(layer.entries)
        if held > MAX_IMAGE_ENTRIES:
            raise LayerError(
                f"{image.ref}: its layers list more than {MAX_IMAGE_ENTRIES} entries in all "
                f"(at layer {done} of {len(positions)}); refused as hostile"
            )
        yield layer


def _indexed(
    positions: list[int], one: Callable[[int], LayerIndex], options: Options
) -> Iterator[LayerIndex]:
    """Layers in base-to-top order as each is ready, indexed concurrently (inflate and hashing
    release the GIL)."""
    workers = options.jobs or min(4, max(1, len(positions)))
    if workers == 1 or len(positions) <= 1:
        yield from (one(i) for i in positions)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="layer") as pool:
        yield from pool.map(one, positions)


@fewer_collections()
def load_tree(
    image: ResolvedImage, capture: CaptureSpec | None, options: Options, analyze: AnalyzeSpec | None = None
) -> ImageTree:
    """Index every layer and flatten them; each layer is applied as soon as it and the ones below
    it are indexed, so the base layer's overlay work overlaps the upper layers' streaming."""
    layers: list[LayerIndex] = []
    tree = empty_tree(layers)
    for layer in index_layers_iter(image, capture, options, analyze=analyze):
        layers.append(layer)
        apply_layer(tree, len(layers) - 1)
    return ImageTree(image, tuple(layers), tree)


#: `cat` keeps a file in memory until its layer has verified (bytes are never shown before):
#: the first pass keeps small files outright; a file is refused above the second cap.
CAT_FIRST_PASS_CAP = 64 << 20
CAT_MAX_BYTES = 1 << 30


def read_file(loaded: ImageTree, path: str, options: Options) -> tuple[str, bytes]:
    """The bytes of the regular file at `path` (links followed), read from the layer holding them.

    Only that one layer is streamed again, with only that member captured; the bytes are
    returned after the layer's digests verified, never before, so the file is held in memory:
    files over CAT_MAX_BYTES are refused.
    """
    res = loaded.tree.lookup(path)
    if res.node is None or not res.ok:
        raise ImageNotFound(f"{path}: {res.reason} in {loaded.image.ref}")
    node = res.node
    if node.is_dir:
        raise ContentError(f"{res.path}: is a directory in {loaded.image.ref}")
    if node.kind is not Kind.FILE:
        # A device, a fifo or a dangling hardlink has no bytes: say so instead of streaming its
        # layer again only to find nothing captured.
        raise ContentError(f"{res.path}: is a {node.kind}, not a regular file, in {loaded.image.ref}")
    member = node.entry.path
    if member in loaded.layers[node.layer].complete:
        return res.path, loaded.layers[node.layer].captured[member]
    if node.entry.size > CAT_MAX_BYTES:
        raise ContentError(
            f"{res.path} is {node.entry.size} bytes, over the {CAT_MAX_BYTES} byte limit of cat "
            "(a file is held in memory until its layer's digests verify)"
        )
    (layer,) = index_layers(loaded.image, CaptureSpec.exact(member), options, only=[node.layer])
    data = layer.captured.get(member)
    if data is None or member not in layer.complete:
        raise ContentError(f"{res.path}: member {member} not found again in layer {layer.digest}")
    return res.path, data


# --- the boot verdict ----------------------------------------------------------------------------


#: Image manifests of one index judged by `check` (each streams its layers; real multi-arch
#: indexes list about ten).  Over it the reference is unreadable; `--platform` judges one.
MAX_INDEX_IMAGES = 64


@dataclass(frozen=True, slots=True)
class Checked:
    """What `check` found for one reference: a report per image platform judged, and what could
    not be read (the whole reference, or one platform of its index)."""

    image: str
    reports: tuple[Report, ...]
    unreadable: tuple[Unreadable, ...]
    #: What the verdict is about, verified: the index or manifest the reference resolved to when
    #: every platform was judged, the one platform's manifest with `--platform`; None when the
    #: reference could not be resolved.  A promotion copies exactly this digest.
    subject: Descriptor | None = None


def check_reference(text: str, policy: Policy, options: Options) -> Checked:
    """Judge every image platform `text` names, or only `options.platform` when one is given.

    A promotion copies a whole index, so a verdict on one platform of it would vouch for the
    others unseen.  Nothing raises out of here: an error, and anything unexpected (a bug,
    MemoryError, RecursionError), becomes an Unreadable naming the image, so one image never
    takes down a batch and is never counted as a pass.

    With a cache, a verdict stored for what the reference names now is returned without reading
    a config or a layer (cache/verdict.py); on a miss, what is judged (and stored) is that same
    manifest, read once.
    """
    shown = redact(text)  # a reference may carry user:pass@; it is never written out
    try:
        with opened(text, options) as source:
            stored = _stored_verdict(source, shown, policy, options)
            if isinstance(stored, Verdict):
                return Checked(shown, stored.reports, (), stored.subject)
            if stored is None:
                return _judge(source, shown, policy, options)
            top, key = stored
            checked = _judge(source, shown, policy, options, top)
            _store_verdict(options.cache, checked, top.digest, key)
            return checked
    except Exception as exc:
        return Checked(shown, (), (Unreadable(shown, failure_line(exc)),))


def _stored_verdict(
    source: ImageSource, shown: str, policy: Policy, options: Options
) -> Verdict | tuple[Fetched, str] | None:
    """With a cache: the verdict stored for what the reference names now (its manifest read and
    verified again), else (that manifest, the key to store the verdict under); None without one."""
    cache = options.cache
    if cache is None or not cache.keeps_verdicts:
        return None  # reading every file of the package for a key nobody asks for is waste
    fingerprint = code_fingerprint()
    if fingerprint is None:
        return None
    top = pin(source)
    key = verdict_key(
        top.digest,
        reference=shown,
        located=str(source.ref),
        platform=str(options.platform) if options.platform is not None else None,
        policy=Digest.of(policy.canonical(as_given=True)),
        version=__version__,
        fingerprint=fingerprint,
        libmagic=_sniff.library_version(),
    )
    return cache.verdict(top.digest, key) or (top, key)


def _store_verdict(cache: LayerCache | None, checked: Checked, top: Digest, key: str) -> None:
    """`checked` judged `top` itself (the resolution started from it), whatever the tag does."""
    if cache is None or checked.unreadable or checked.subject is None or not storable(checked.reports):
        return
    cache.store_verdict(Verdict(top, key, checked.subject, checked.reports))


def _judge(
    source: ImageSource, shown: str, policy: Policy, options: Options, top: Fetched | None = None
) -> Checked:
    skipped: tuple[Skipped, ...] = ()
    if options.platform is not None:
        images = [open_image(source, options, top)]
        one = images[0]
        subject = Descriptor(one.media_type, one.manifest_digest, len(one.manifest_raw))
    else:
        listing, images = resolve_index(source, MAX_INDEX_IMAGES, top)
        skipped = _not_images(listing)
        subject = Descriptor(listing.media_type, listing.digest, len(listing.raw))
    reports: list[Report] = []
    unreadable: list[Unreadable] = []
    for image in images:
        if image.index_digest is None:
            _require_platform(image, options.platform, shown)
            reports.append(check_image(image, policy, options))
            continue
        try:
            _require_platform(image, options.platform, shown)
            reports.append(replace(check_image(image, policy, options), skipped=skipped))
        except Exception as exc:  # one platform of an index: the others are still judged
            unreadable.append(Unreadable(shown, failure_line(exc), str(image.declared or image.platform)))
    return Checked(shown, tuple(reports), tuple(unreadable), subject)


def _require_platform(image: ResolvedImage, wanted: Platform | None, shown: str) -> None:
    """The verdict is about the machines that would be served the image: those of the platform
    its index entry declares (or `wanted`), which must be the platform its config describes.

    A lone manifest is resolved whatever its platform (as skopeo does, for reading it), and an
    index entry is chosen by what it declares: neither may pass for another platform."""
    declared = image.declared
    if declared is not None and declared.machine() != image.platform.machine():
        raise InvalidManifest(
            f"index {image.index_digest} of {shown} lists {image.manifest_digest} as {declared}, "
            f"but its config says {image.platform}: {declared} machines would be served that image"
        )
    if wanted is not None and image.index_digest is None and not wanted.matches(image.platform):
        raise NoMatchingPlatform(str(wanted), (str(image.platform),), f"the single-platform image {shown}")


def _not_images(listing: IndexListing) -> tuple[Skipped, ...]:
    return tuple(
        Skipped(str(e.descriptor.digest), e.kind.value, str(e.platform) if e.platform else None)
        for e in listing.entries
        if e.kind not in (EntryKind.IMAGE, EntryKind.INDEX)
    )


#: An unexpected exception's text is shown up to this length (it may quote the image's bytes).
_DETAIL_CHARS = 200


def failure_line(exc: Exception) -> str:
    """What an image's error line says of `exc`: ours as written, anything else as an internal
    error, cut short (promote says its failures the same way)."""
    if isinstance(exc, OcibootError):
        return str(exc)
    return (
        f"internal error ({exception_detail(exc)}); the image was not judged (please report this ociboot bug)"
    )


def exception_detail(exc: BaseException) -> str:
    """`Type: text` of a foreign exception, its text cut short."""
    from .textsafe import shortened

    text = shortened(str(exc), _DETAIL_CHARS)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@fewer_collections()  # the rules' whole-tree walks too: the tree is at its largest then
def check_image(image: ResolvedImage, policy: Policy, options: Options) -> Report:
    """One pass over the layers capturing what the rules want, then the rules of the profile.

    Every analysis of the image, in that pass and in the rules' second reads (`fetch`), spends
    from one budget."""
    # Here, not at the top: reading an image (ls, cat, inspect) loads no rule module, nor what
    # the rules read the tree with (boot.context: kernels, initrds, package databases).
    from .boot import facts, profiles, rules, scan
    from .boot.check import run_checks
    from .boot.context import CheckContext

    capture = CaptureSpec(scan.capture_globs(rules.CAPTURE))
    budget = AnalysisBudget(policy.analysis_budget)
    analyze = AnalyzeSpec(
        scan.analyze_globs(
            [policy.kernel] if policy.kernel else [], [policy.initrd] if policy.initrd else []
        ),
        budget,
    )
    loaded = load_tree(image, capture, options, analyze)

    def fetch(layer: int, member: str, as_initrd: bool) -> Analysis:
        analyzer = scan.analyze_initrd if as_initrd else scan.analyze_kernel_file
        (again,) = index_layers(
            image, None, options, only=[layer], analyze=AnalyzeSpec.exact(member, analyzer, budget)
        )
        return again.analyses.get(member)

    if policy.profile == Profile.AUTO:
        profile, reason = profiles.detect_profile(loaded.tree, image.config)
    else:
        profile, reason = Profile(policy.profile), "chosen with --profile"
    ctx = CheckContext(
        loaded.tree,
        image.config,
        profile=profile,
        profile_reason=reason,
        policy=policy,
        compressed_size=sum(ref.descriptor.size for ref in image.layers),
        fetch=fetch,
    )
    overrides = {rule_id: Severity(level) for rule_id, level in policy.severity.items()}
    findings = run_checks(ctx, rules.rules_for(profile), skip=policy.skip, overrides=overrides)
    return Report(
        image=str(image.ref),
        digest=str(image.manifest_digest),
        index_digest=str(image.index_digest) if image.index_digest is not None else None,
        platform=str(image.platform),
        profile=profile,
        profile_reason=reason,
        findings=tuple(findings),
        rules={r.id: r.info(profile) for r in rules.rules_for(profile)},
        facts=facts.collect(ctx, loaded.layers),
    )
