"""`ociboot promote`: check an image by digest, and copy exactly that digest only if it is bootable.

    SRC --(read the top manifest once, verify)--> digest D
        --(check_reference on SRC pinned to D: every platform of an index)--> verdict
        --(bootable only)--> copy D to DST: blobs, manifests by digest, the verdict attached
                             to D (an OCI referrer), the tag last

The check and the copy read the same bytes: both go by D, and every manifest and blob the copy
takes is verified against its digest again, so a tag moved or a blob altered after the check
cannot slip through (time-of-check/time-of-use).  Exit codes as `check`'s: 0 promoted, 1 not
bootable (nothing written to DST), 3 unreadable or the push failed (DST's tag untouched),
2 usage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from . import __version__
from . import copy as copying
from .boot.context import Policy
from .boot.profiles import PolicyError, verify_policy
from .digest import Digest
from .errors import InvalidReference
from .image import pin
from .pipeline import Checked, Options, check_reference, failure_line, opened
from .ref import ImageRef, Transport, parse_ref, redact
from .report import exit_code
from .sources import SourceOptions
from .sources.registry.push import RegistryTarget
from .spec import Descriptor
from .verdict.attach import attach as attach_to
from .verdict.listing import verdicts_of
from .verdict.statement import Tally

AfterCheck = Callable[[Checked], None]


class UsageError(PolicyError):
    """The promotion was asked wrongly (DST not docker://HOST/REPO:TAG): exit code 2."""


@dataclass(frozen=True, slots=True)
class Promotion:
    """What a promotion found and did.  `steps` is what was written to DST (dry: what would be)."""

    source: str
    destination: str
    exit_code: int
    checked: Checked | None = None
    subject: Descriptor | None = None
    steps: tuple[copying.Step, ...] = ()
    dry_run: bool = False
    #: Why the image was not promoted when it was not for its verdict: unreadable, or the push failed.
    error: str | None = None
    #: The referrer manifest holding the verdict attached in DST (None: not attached).
    verdict: Digest | None = None

    @property
    def promoted(self) -> bool:
        return self.exit_code == 0 and not self.dry_run


def destination(text: str) -> ImageRef:
    """DST: `docker://HOST/REPO:TAG`, with the tag written out (a promotion names what it moves)."""
    if not text.startswith("docker://"):
        raise UsageError(f"{redact(text)}: the destination must be docker://HOST/REPO:TAG")
    try:
        ref = parse_ref(text)
    except InvalidReference as exc:
        raise UsageError(str(exc)) from None
    name = text.removeprefix("docker://")
    if ref.digest is not None or ":" not in name.rpartition("/")[2]:
        raise UsageError(f"{redact(text)}: the destination must name a tag (docker://HOST/REPO:TAG)")
    return ref


def promote(
    src_text: str,
    dst_text: str,
    policy: Policy | None = None,
    options_src: Options | None = None,
    options_dst: Options | None = None,
    *,
    dry_run: bool = False,
    after_check: AfterCheck | None = None,
    attach: bool = True,
    on_step: Callable[[copying.Step], None] | None = None,
) -> Promotion:
    """Check SRC by digest and, when every platform is bootable, copy that digest to DST and
    (with `attach`) attach the verdict to it there before the tag is written.

    Raises only for what the caller gave (UsageError, PolicyError: exit code 2); an image that
    cannot be read or a push that fails is a Promotion with exit code 3 and `error`."""
    dst = destination(dst_text)
    policy = policy or Policy()
    verify_policy(policy)
    options_src = options_src or Options()
    options_dst = options_dst or replace(options_src, source=SourceOptions())
    shown, dst_shown = redact(src_text), redact(dst_text)

    def failed(error: str, **found: object) -> Promotion:
        return Promotion(shown, dst_shown, 3, error=error, dry_run=dry_run, **found)  # type: ignore[arg-type]

    try:
        with opened(src_text, options_src) as source:
            ref = source.ref
            subject = pin(source).descriptor
    except Exception as exc:  # unreadable: named below as the check names it
        return failed(failure_line(exc))
    pinned = _pinned(ref, subject)
    checked = check_reference(str(pinned), policy, options_src)
    if after_check is not None:
        after_check(checked)
    verdict = exit_code(checked.reports, fatal_warnings=policy.fatal_warnings, unreadable=checked.unreadable)
    judged = checked.subject
    # What was judged is what is copied: the pinned digest, or with --platform the one manifest
    # of it that was judged (read by digest from the pinned index).
    elsewhere = judged is not None and options_src.platform is None and judged.digest != subject.digest
    if judged is None or elsewhere or not checked.reports:
        verdict = 3
    if judged is None or verdict != 0:
        return Promotion(shown, dst_shown, verdict, checked, subject, dry_run=dry_run)
    subject = judged

    same_registry = ref.transport is Transport.DOCKER and ref.api_host == dst.api_host
    mount_from = ref.repository if same_registry and ref.repository != dst.repository else None
    steps: list[copying.Step] = []
    verdict_digest: Digest | None = None

    def record(step: copying.Step) -> None:
        steps.append(step)
        if on_step is not None:
            on_step(step)

    try:
        with opened(str(pinned), options_src) as source:
            plan = copying.plan_copy(source, subject)
            target = RegistryTarget(
                dst, options_dst.source, options_dst.registry, mount_from=(mount_from,) if mount_from else ()
            )
            try:

                def attach_verdict() -> None:
                    nonlocal verdict_digest
                    verdict_digest = _attached(dst, plan.subject, checked, policy, options_dst) or attach_to(
                        target, plan.subject, checked, policy
                    )

                copying.copy(
                    plan,
                    source,
                    target,
                    dst.tag or "",
                    mount_from=mount_from,
                    one_registry=same_registry,
                    jobs=options_dst.jobs,
                    dry_run=dry_run,
                    on_step=record,
                    progress=options_src.progress,
                    before_tag=attach_verdict if attach else None,
                )
            finally:
                target.close()
    except Exception as exc:
        return failed(
            f"promoting to {dst_shown}: {failure_line(exc)}",
            checked=checked,
            subject=subject,
            steps=tuple(steps),
        )
    return Promotion(shown, dst_shown, 0, checked, subject, tuple(steps), dry_run, verdict=verdict_digest)


def _attached(
    dst: ImageRef, subject: Descriptor, checked: Checked, policy: Policy, options: Options
) -> Digest | None:
    """The verdict DST already holds for this digest that says what this check says (same
    tests, policy and ociboot version): re-running a promotion then writes nothing."""
    text = str(dst.with_digest(subject.digest))
    found = verdicts_of(text, replace(options, platform=None), policy, policy.fatal_warnings)
    tally = Tally.of(checked.reports, policy.fatal_warnings)
    for verdict in found.deciding():
        said = verdict.statement
        same = said is not None and said.policy == policy.digest and said.tests == tally
        if same and said is not None and said.version == __version__:
            return verdict.referrer
    return None


def _pinned(ref: ImageRef, subject: Descriptor) -> ImageRef:
    """SRC by digest; a registry reference keeps its tag for the report (`repo:tag@digest` is
    read by the digest)."""
    if ref.transport is Transport.DOCKER:
        return replace(ref, digest=subject.digest)
    return ref.with_digest(subject.digest)


__all__ = ["AfterCheck", "Promotion", "UsageError", "destination", "promote"]
