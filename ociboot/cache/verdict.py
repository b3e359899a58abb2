"""Stored verdicts: what a check found for one reference, reused while nothing it depends on changed.

A re-check of an unchanged image is then one manifest read: no config, no layer, no rule.
A verdict is stored under

    verdict format / the top digest / verdict key

where the top digest is the verified digest of the manifest or index the reference named when
it was judged (everything below it, the platforms' manifests, configs and layers, is named by
digest in it), and the key (`verdict_key`) hashes every other input the reports depend on: the
reference as shown and as located (reports name the transport a bare path was sniffed as, and a
path may hold a layout one day and an archive of the same manifest the next), the platform
asked for, the policy as given (`Policy.canonical(as_given=True)`: a report follows the order
of its lists), ociboot's version, the code fingerprint, libmagic's and Python's versions.

The code fingerprint (`code_fingerprint`) hashes every file of the ociboot package, so a rule,
a severity, a profile or any code below them changed without a version bump still misses (it
costs about 3 ms, once per process).  A package whose files cannot be read has no fingerprint:
its verdicts are neither stored nor read.

A verdict for an index is the set of its platforms' reports, stored and returned together (the
verdict `check` gives for an index is about every platform); with `--platform` it is that one
platform's report.  Only a complete verdict is stored: nothing unreadable, no finding NOT RUN
(a budget ran out, a database had an unknown format): those are judged again every time.

File format: entry.py's sealed JSON with its own magic (b"ocibootV") and VERDICT_FORMAT; the
reports in the codec's tagged form (codec.py) decoded only into report.py's types, so a
report round-trips exactly and every output of a cached re-check is the cold check's.  An entry
is at most MAX_VERDICT_BYTES, stored and inflated; trust is the store's, as for layer indexes (store.py).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..digest import Digest
from ..report import Finding, Outcome, Report, RuleInfo, Severity, Skipped
from ..spec import Descriptor
from .codec import AnalysisCodec, Unencodable
from .entry import CorruptEntry, seal, unseal

VERDICT_FORMAT = 1
_MAGIC = b"ocibootV"
#: The JSON of one stored verdict is at most this long (measured: a report is about 60 KiB, so an
#: index of MAX_INDEX_IMAGES platforms fits); a longer verdict is not stored, a longer entry is
#: refused before it is inflated further.
MAX_VERDICT_BYTES = 16 << 20

_PACKAGE = Path(__file__).resolve().parent.parent


@functools.cache
def code_fingerprint() -> str | None:
    """This ociboot's fingerprint, computed once per process."""
    return package_fingerprint(_PACKAGE)


def build_id() -> str:
    """This ociboot: its version and its code.  What made a result must be this for the result
    to count: a cached one (api.open_cache's salt), a Dask worker's verdict (audit/dask.py)."""
    from .. import __version__

    return f"{__version__} {code_fingerprint()}"


def package_fingerprint(package: Path) -> str | None:
    """A digest of every file under `package` (names and bytes, compiled caches aside); None
    if one cannot be read."""
    h = hashlib.sha256()
    count = 0
    try:
        for dirpath, dirnames, filenames in os.walk(package, onerror=_raise):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(filenames):
                path = Path(dirpath) / name
                data = path.read_bytes()
                h.update(f"{path.relative_to(package).as_posix()}\0{len(data)}\0".encode())
                h.update(data)
                count += 1
    except OSError:
        return None
    return h.hexdigest() if count else None


def _raise(exc: OSError) -> None:
    raise exc


def verdict_key(
    digest: Digest,
    *,
    reference: str,
    located: str,
    platform: str | None,
    policy: Digest,
    version: str,
    fingerprint: str,
    libmagic: str,
) -> str:
    """The key of a verdict: every input its reports depend on (see the module docstring)."""
    doc = {
        "format": VERDICT_FORMAT,
        "digest": str(digest),
        "reference": reference,
        "located": located,
        "platform": platform,
        "policy": str(policy),
        "ociboot": version,
        "code": fingerprint,
        "libmagic": libmagic,
        "python": sys.version,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The reports of one judged reference, for the top `digest` under `key`; `subject` is what
    the verdict is about (the index or manifest, or with --platform that one manifest)."""

    digest: Digest
    key: str
    subject: Descriptor
    reports: tuple[Report, ...]


def storable(reports: Iterable[Report]) -> bool:
    """Only a complete verdict is stored: no finding that could not run (see the module docstring)."""
    found = list(reports)
    return bool(found) and not any(f.outcome is Outcome.ERROR for r in found for f in r.findings)


class VerdictCodec:
    def __init__(self, extra_types: Iterable[type] = ()) -> None:
        # Report's field types are all named in its annotations except `profile` (a str the
        # checker passes as its Profile enum): the caller registers that.
        self._codec = AnalysisCodec([Report, Finding, RuleInfo, Skipped, Severity, Outcome, *extra_types])

    def encode(self, verdict: Verdict) -> Any:
        subject = verdict.subject
        return {
            "key": verdict.key,
            "digest": str(verdict.digest),
            "subject": [subject.media_type, str(subject.digest), subject.size],
            "reports": [self._codec.encode(r) for r in verdict.reports],
        }

    def decode(self, data: bytes) -> Verdict:
        """The verdict a cache file holds; CorruptEntry (entry.py) if it is not a valid one."""
        if len(data) > MAX_VERDICT_BYTES:
            raise CorruptEntry(f"{len(data)} bytes, over the {MAX_VERDICT_BYTES} byte cap")
        doc = unseal(data, _MAGIC, VERDICT_FORMAT, MAX_VERDICT_BYTES)
        try:
            media_type, subject_digest, size = doc["subject"]
            reports = tuple(self._codec.decode(r) for r in doc["reports"])
            if not all(isinstance(r, Report) for r in reports):
                raise TypeError("a stored report is not a Report")
            if (
                not isinstance(size, int)
                or not isinstance(media_type, str)
                or not isinstance(doc["key"], str)
            ):
                raise TypeError("malformed subject or key")
            return Verdict(
                Digest.parse(doc["digest"]),
                doc["key"],
                Descriptor(media_type, Digest.parse(subject_digest), size),
                reports,
            )
        except Exception as exc:  # whatever a damaged file makes the decoders raise: it is a miss
            raise CorruptEntry(f"{type(exc).__name__}: {exc}") from exc

    def seal(self, verdict: Verdict) -> bytes:
        """The cache file's bytes; Unencodable if a report holds a type the codec cannot store or
        its JSON is over MAX_VERDICT_BYTES."""
        data = seal(_MAGIC, VERDICT_FORMAT, self.encode(verdict), MAX_VERDICT_BYTES)
        if len(data) > MAX_VERDICT_BYTES:
            raise Unencodable(f"{len(data)} bytes sealed, over the {MAX_VERDICT_BYTES} byte cap")
        return data
