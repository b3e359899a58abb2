"""Attach a verdict to the image it is about: statement blob, referrer manifest, referrers list.

`attach` is what `check --attach` runs for each registry image, and what a promotion runs after
its copy (target = the destination).  Order matters to readers: the blobs, then the referrer
manifest (by digest), then, on a registry without the referrers API, the tag schema's index;
a failure at any step leaves at most an unlisted referrer, never a listed one that is missing.

The tag schema's index is updated by read-modify-write; two writers racing can lose one
entry (the registry has no conditional PUT): the lost verdict stays pushed, unlisted.
"""

from __future__ import annotations

import datetime as dt
import io

from .. import __version__
from ..boot.context import Policy
from ..digest import Digest
from ..mediatypes import MediaType
from ..pipeline import Checked, Options, locate
from ..sources.registry.push import RegistryTarget
from ..sources.registry.referrers import Referrers
from ..spec import Descriptor, load_json
from . import referrer, statement


def created_now() -> str:
    """RFC 3339, UTC, whole seconds (what `org.opencontainers.image.created` holds)."""
    return referrer.rfc3339(dt.datetime.now(dt.UTC).replace(microsecond=0))


def uses_tag_schema(api_answer: bytes | None) -> bool:
    """distribution-spec: a registry answering the referrers API with an index keeps the list
    itself; a 404 (None) means the client must keep it in the tag schema."""
    return api_answer is None


def attach(
    target: RegistryTarget,
    subject: Descriptor,
    checked: Checked,
    policy: Policy,
    *,
    created: str | None = None,
) -> Digest:
    """Push the verdict on `checked` as a referrer of `subject` in `target`'s repository;
    the referrer manifest's digest.  `checked` must have judged every image it names."""
    if checked.unreadable or not checked.reports:
        raise ValueError(f"{checked.image} was not fully judged: there is no verdict to attach")
    lister = Referrers.of(target)
    ref = lister.ref
    tests = statement.Tally.of(checked.reports, policy.fatal_warnings)
    data = statement.make(f"{ref.registry}/{ref.repository}", subject.digest, tests, policy, __version__)
    blob = Descriptor(MediaType.IN_TOTO, Digest.of(data), len(data))
    when = created or created_now()
    manifest = referrer.manifest(blob, subject, when)
    api = lister.api(subject.digest)
    target.upload_blob(referrer.EMPTY, io.BytesIO(referrer.EMPTY_DATA))
    target.upload_blob(blob, io.BytesIO(data))
    digest = target.upload_manifest(manifest, MediaType.OCI_MANIFEST)
    if uses_tag_schema(api):
        tag = referrer.tag_for(subject.digest)
        what = f"referrers index {tag} of {ref.registry}/{ref.repository}"
        listed = Descriptor(MediaType.OCI_MANIFEST, digest, len(manifest))
        annotations = dict(load_json(manifest, "referrer")["annotations"])
        updated = referrer.appended(lister.tagged(tag), listed, annotations, what)
        if updated is not None:
            target.upload_manifest(updated, MediaType.OCI_INDEX, tag)
    return digest


def attach_checked(text: str, checked: Checked, policy: Policy, options: Options) -> tuple[str, Digest]:
    """`check --attach` for one registry reference that was fully judged: the verdict's result
    and the referrer's digest.  Pushes with the check's credentials (push scope on its repository)."""
    if checked.subject is None:
        raise ValueError(f"{checked.image} did not resolve: there is no verdict to attach")
    target = RegistryTarget(locate(text), options.source, options.registry)
    try:
        digest = attach(target, checked.subject, checked, policy)
    finally:
        target.close()
    return str(statement.Tally.of(checked.reports, policy.fatal_warnings).result), digest
