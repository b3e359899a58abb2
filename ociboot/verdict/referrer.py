"""The OCI 1.1 shapes a verdict travels in: the referrer manifest, and the referrers list.

The referrer is an image manifest (image-spec 1.1 "Guidelines for Artifact Usage") with
`artifactType: application/vnd.in-toto+json`, the empty descriptor as its config, the statement
as its one layer, `subject` = the checked manifest or index, and its creation time.  Registries
with the referrers API list it under `/v2/<name>/referrers/<digest>`; for the others (Debian's
docker-registry 2.8) the client keeps the list itself in an image index tagged `sha256-<hex>`
(distribution-spec "Referrers Tag Schema"), read, appended to and written back.

A referrers list is hostile: it names digests and nothing more is believed from it (its
`artifactType` and annotations are the lister's word, not the referrer's); it is bounded by
MAX_REFERRERS.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from ..digest import Digest
from ..errors import InvalidManifest
from ..mediatypes import MediaType
from ..spec import Descriptor, descriptor_list, load_json
from .statement import PREDICATE_TYPE


def rfc3339(when: dt.datetime) -> str:
    """A time as `org.opencontainers.image.created` holds it (RFC 3339, `Z` for UTC)."""
    return when.isoformat().replace("+00:00", "Z")


#: Referrers one list may hold, read or written: a digest checked this often is not a real
#: case; a list longer than this is refused rather than read in part (the newest verdict could
#: be in the part not read).
MAX_REFERRERS = 1000
CREATED = "org.opencontainers.image.created"
#: BuildKit's annotation naming an in-toto layer's predicate type; copied to the list entry so
#: that other tools can tell a verdict from an SBOM without fetching it.
PREDICATE_ANNOTATION = "in-toto.io/predicate-type"

EMPTY_DATA = b"{}"
EMPTY = Descriptor(MediaType.OCI_EMPTY, Digest.of(EMPTY_DATA), len(EMPTY_DATA))


def tag_for(subject: Digest) -> str:
    """The referrers tag schema's tag: `<alg>-<ref>`, the encoded digest cut to 64 characters."""
    return f"{subject.algorithm}-{subject.hex[:64]}"


def _descriptor(d: Descriptor, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"mediaType": d.media_type, "digest": str(d.digest), "size": d.size}
    return {**out, **extra}


def manifest(statement: Descriptor, subject: Descriptor, created: str) -> bytes:
    """The referrer manifest's bytes for `statement` about `subject`, made at `created` (RFC 3339)."""
    doc = {
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_MANIFEST,
        "artifactType": MediaType.IN_TOTO,
        "config": _descriptor(EMPTY),
        "layers": [_descriptor(statement, annotations={PREDICATE_ANNOTATION: PREDICATE_TYPE})],
        "subject": _descriptor(subject),
        "annotations": {CREATED: created, PREDICATE_ANNOTATION: PREDICATE_TYPE},
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def listed(raw: bytes, what: str) -> tuple[Digest, ...]:
    """The digests a referrers list (an OCI image index) names, each once, in its order."""
    obj = load_json(raw, what)
    shaped = isinstance(obj.get("manifests"), list) and not {"config", "layers"} & obj.keys()
    if obj.get("mediaType", MediaType.OCI_INDEX) != MediaType.OCI_INDEX or not shaped:
        raise InvalidManifest(f"{what} is not an OCI image index")
    entries = descriptor_list(obj, "manifests", what)
    if len(entries) > MAX_REFERRERS:
        raise InvalidManifest(
            f"{what} lists {len(entries)} referrers, more than the {MAX_REFERRERS} ociboot reads"
        )
    seen: dict[Digest, None] = {}
    for i, entry in enumerate(entries):
        seen.setdefault(Descriptor.from_json(entry, f"{what} entry {i}").digest)
    return tuple(seen)


def appended(raw: bytes | None, referrer: Descriptor, annotations: dict[str, str], what: str) -> bytes | None:
    """The tag schema's index with `referrer` added (None: it is listed already).  What others
    listed is kept as they wrote it; a list that is not an index is not overwritten."""
    if raw is None:
        obj: dict[str, Any] = {"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "manifests": []}
    else:
        obj = load_json(raw, what)
        listed(raw, what)  # the same checks as a reader's: an index of valid descriptors, bounded
    entries: list[Any] = obj["manifests"]
    if any(isinstance(e, dict) and e.get("digest") == str(referrer.digest) for e in entries):
        return None
    if len(entries) >= MAX_REFERRERS:
        raise InvalidManifest(
            f"{what} lists {len(entries)} referrers already, the most ociboot keeps ({MAX_REFERRERS}); "
            "remove old ones (untag and delete their manifests) to attach more"
        )
    entries.append(_descriptor(referrer, artifactType=MediaType.IN_TOTO, annotations=annotations))
    return json.dumps(obj, separators=(",", ":")).encode()
