"""Every exception ociboot raises on purpose.

    OcibootError                      exit code 3 at the CLI: the image could not be read
    ├── InvalidReference              the text is not a reference (names the bad part)
    ├── SourceError                   reaching or reading the medium failed
    │   ├── ImageNotFound             no such file, layout, tag, digest, blob or repository
    │   ├── AuthenticationError       credentials missing, refused, or a token could not be had
    │   ├── RegistryError             an HTTP/transport failure (status, OCI error codes, temporary)
    │   │   └── InvalidListing        a catalog or tag list answered but not believable (caps, grammar, links)
    │   └── CatalogClosed             the registry refuses to list its repositories (401, 403, 404)
    ├── ContentError                  the bytes are not what they claim to be
    │   ├── DigestMismatch            expected vs actual digest (or size) of a named object
    │   ├── InvalidManifest           malformed JSON / schema violation / cap exceeded / loop
    │   ├── UnsupportedMediaType      schema1, encrypted layers, unknown layer types
    │   └── NoMatchingPlatform        an index has no manifest for the wanted platform
    ├── LayerError                    a layer's tar stream cannot be applied safely
    │   ├── UnsafePath                `..` or other names that would escape the root
    │   ├── InvalidWhiteout           a bare `.wh.` and similar
    │   ├── UnsupportedCompression    magic and media type disagree, or an unknown codec
    │   └── TruncatedLayer            the stream ended early or is not a tar
    ├── ExecutorUnavailable           the audit's executor (a Dask scheduler) could not be reached
    ├── UnsafeCache                   exit code 2: the cache dir or an entry is writable by others
    ├── InvalidTargetList             exit code 2: an audit's --from line is no registry image; too many tags
    ├── CacheUrlError                 exit code 2: --cache-url or OCIBOOT_CACHE_KEY unusable, redis-py missing
    └── AnalysisBudgetExceeded        an image's analysis budget ran out (rules say "not run")

"The image is not bootable" is never an exception: it is a Finding (see report.py).
Foreign exceptions are translated at the module that owns the library, `raise X(...) from exc`.
"""

from __future__ import annotations


class OcibootError(Exception):
    """Root of ociboot's errors; `str(e)` is the one line the CLI prints."""

    exit_code = 3


class InvalidReference(OcibootError, ValueError):
    pass


class SourceError(OcibootError):
    pass


class ImageNotFound(SourceError):
    """`status`: the HTTP status a registry answered (404, or another carrying a not-found error
    code); None when no registry said it."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthenticationError(SourceError):
    pass


class RegistryError(SourceError):
    """An HTTP or transport failure.  `temporary` marks what a retry may cure."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        codes: tuple[str, ...] = (),
        temporary: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.codes = codes
        self.temporary = temporary


class InvalidListing(RegistryError):
    """A catalog or tag list the registry answered that cannot be read: over a cap, a name
    outside the grammar, a next page elsewhere or in a loop.  The registry was reached: for a
    tag list, what is wrong is that repository's (an audit records it and goes on)."""


class CatalogClosed(SourceError):
    """The registry does not list its repositories to us (401, 403 or 404 on /v2/_catalog:
    many registries close it, Docker Hub among them).  Exit code 3 like any registry that could
    not be read; the message tells the user to list the images with --from FILE."""


class ContentError(OcibootError):
    pass


class DigestMismatch(ContentError):
    def __init__(self, expected: str, actual: str, what: str) -> None:
        super().__init__(f"digest mismatch for {what}: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual
        self.what = what


class InvalidManifest(ContentError):
    pass


class UnsupportedMediaType(ContentError):
    pass


class NoMatchingPlatform(ContentError):
    def __init__(self, wanted: str, available: tuple[str, ...], where: str = "") -> None:
        listing = ", ".join(available) if available else "none"
        at = f" in {where}" if where else ""
        super().__init__(f"no manifest for platform {wanted}{at}; available: {listing}")
        self.wanted = wanted
        self.available = available


class LayerError(OcibootError):
    pass


class UnsafePath(LayerError):
    pass


class InvalidWhiteout(LayerError):
    pass


class UnsupportedCompression(LayerError):
    pass


class TruncatedLayer(LayerError):
    pass


class ExecutorUnavailable(OcibootError):
    """`--executor dask://…` names no scheduler that answers: nothing could be judged (exit 3)."""


class UnsafeCache(OcibootError):
    """A cache directory (or entry) that someone other than the user could have written: its
    entries could steer a verdict, so it is not used.  Exit 2: the user's setup, not the image."""

    exit_code = 2


class InvalidTargetList(OcibootError):
    """A line of an audit's --from FILE is not a registry image (or the file cannot be read), or
    the audit would name more tags than it may hold: the user's input or choice of namespace,
    so exit 2 (usage), naming the file and line."""

    exit_code = 2


class CacheUrlError(OcibootError):
    """A shared cache that cannot be set up as asked (--cache-url, OCIBOOT_CACHE_KEY, redis-py
    missing): the user's setup (exit 2).  A server that cannot be reached is only a warning."""

    exit_code = 2


class AnalysisBudgetExceeded(OcibootError):
    """An image's analysis budget (ociboot.budget) ran out: the analysis was cut, not refused.

    Caught where an analyzer runs (layer.py) and kept as that file's result, so the rules that
    need it say "not run"; it never reaches the CLI as "the image could not be read"."""
