"""The library's entry point: check images as `ociboot check` does and get one Batch back.

    import ociboot

    batch = ociboot.check(["oci-archive:fixtures/example-cos.tar"])
    print(batch.exit_code, [(r.image, r.bootable()) for r in batch.reports])

`check` judges the images concurrently and never raises for an image: one that cannot be read
is an `Unreadable` in the batch (exit code 3), never a pass.  It raises only for what the
caller gave it (a policy naming unknown rules, no image at all): `PolicyError`, exit code 2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .report import Report, Unreadable, exit_code

if TYPE_CHECKING:
    from .boot.context import Policy
    from .cache import LayerCache
    from .cache.remote import RemoteCache
    from .pipeline import Checked, Options

# The pipeline, rules and cache are imported where they are used: the CLI reads
# DEFAULT_IMAGE_JOBS for its help, and `ociboot --help` loads no rule module.

#: Images checked at once when the caller does not say (each also indexes its layers concurrently).
DEFAULT_IMAGE_JOBS = 4

#: on_result(input position, what was found): called in the calling thread as each image
#: finishes, in the order they finish, so that a slow image holds back no other's report.
OnResult = Callable[[int, "Checked"], None]


@dataclass(frozen=True, slots=True)
class Batch:
    """Everything `check` found, in the order the references were given."""

    checked: tuple[Checked, ...]
    fatal_warnings: bool = False

    @property
    def reports(self) -> tuple[Report, ...]:
        """One report per image platform judged (an index gives one per platform)."""
        return tuple(r for c in self.checked for r in c.reports)

    @property
    def unreadable(self) -> tuple[Unreadable, ...]:
        return tuple(u for c in self.checked for u in c.unreadable)

    @property
    def exit_code(self) -> int:
        """0 every image bootable, 1 one is not, 3 one could not be read (the CLI's exit code)."""
        return exit_code(self.reports, fatal_warnings=self.fatal_warnings, unreadable=self.unreadable)

    @property
    def bootable(self) -> bool:
        return self.exit_code == 0

    def summary(self) -> str:
        reports = self.reports
        good = sum(r.bootable(fatal_warnings=self.fatal_warnings) for r in reports)
        return f"{good} bootable, {len(reports) - good} not bootable, {len(self.unreadable)} unreadable"


def check(
    references: str | Iterable[str],
    policy: Policy | None = None,
    options: Options | None = None,
    *,
    jobs: int | None = None,
    on_result: OnResult | None = None,
) -> Batch:
    """Will these images boot?  `references` is one reference or several (docker://…, oci:…,
    oci-archive:…, docker-archive:…, a path); `jobs` images are checked at once (default
    min(DEFAULT_IMAGE_JOBS, images))."""
    from .boot.context import Policy
    from .boot.profiles import PolicyError, verify_policy
    from .pipeline import Options, check_reference

    texts = [references] if isinstance(references, str) else list(references)
    if not texts:
        raise PolicyError("give at least one image")
    if jobs is not None and jobs < 1:
        raise PolicyError(f"jobs must be at least 1, not {jobs}")
    policy = policy or Policy()
    verify_policy(policy)
    options = options or Options()
    found: dict[int, Checked] = {}

    def one(text: str) -> Checked:
        return check_reference(text, policy, options)

    for i, checked in _finished(texts, one, jobs or min(DEFAULT_IMAGE_JOBS, len(texts))):
        found[i] = checked
        if on_result is not None:
            on_result(i, checked)
    return Batch(tuple(found[i] for i in range(len(texts))), policy.fatal_warnings)


def _finished(texts: list[str], one: Callable[[str], Checked], workers: int) -> Iterator[tuple[int, Checked]]:
    """(input position, result) as each image finishes."""
    if workers == 1:
        yield from ((i, one(text)) for i, text in enumerate(texts))
        return
    # Threads share the options, so the cache (and its per-layer build gate) too.
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="image") as pool:
        futures = {pool.submit(one, text): i for i, text in enumerate(texts)}
        for future in as_completed(futures):
            yield futures[future], future.result()


def open_cache(
    directory: str | Path | None = None,
    warn: Callable[[str], None] | None = None,
    *,
    remote_url: str | None = None,
    remote_key: bytes | None = None,
    verdicts: bool = True,
) -> LayerCache:
    """The cache `check` may reuse (Options(cache=...)): layer indexes, and verdicts of unchanged
    images; in `directory` or the default ($XDG_CACHE_HOME/ociboot).  Its trust checks run now:
    an unsafe cache raises UnsafeCache.

    With `remote_url` (redis://[:PASSWORD@]HOST:PORT[/DB], rediss:// for TLS) the cache is also
    shared through that Redis server (cache/remote.py), its values sealed under `remote_key`
    (default: OCIBOOT_CACHE_KEY, else a random key for this run); then without `directory` only
    the shared cache is used and nothing is written to disk.  `cache.remote.url` and
    `cache.remote.key` open the same shared cache in another process.  `verdicts=False`: a
    cache no later run will see (an audit's private one) stores and looks up no verdict."""
    from .boot.check import Profile
    from .boot.initrd import InitrdInfo
    from .boot.kernel import KernelInfo
    from .boot.scan import PackageDbResult
    from .cache import LayerCache, build_id, default_cache_dir

    remote = None
    if remote_url is not None:
        remote = _open_remote(remote_url, remote_key, warn)
    cache = LayerCache(
        directory or (None if remote is not None else default_cache_dir()),
        # What the check analyzers return (boot/scan.py): the only classes a cache file may name.
        analysis_types=(KernelInfo, InitrdInfo, PackageDbResult),
        # A stored verdict's reports name their profile by this enum.
        report_types=(Profile,),
        # The code too, not only the version: an analyzer edited in place would otherwise serve
        # its old results to the rules, and so to a verdict stored under the new code's key.
        salt=build_id(),
        warn=warn,
        remote=remote,
        verdicts=verdicts,
    )
    cache.verify()
    return cache


def _open_remote(url: str, key: bytes | None, warn: Callable[[str], None] | None) -> RemoteCache:
    """The shared tier; redis-py is imported here only, when a shared cache is asked for."""
    from .errors import CacheUrlError

    try:
        from .cache.remote import RemoteCache, key_from_env
    except ImportError as exc:
        raise CacheUrlError(
            f"a shared cache needs redis-py ({exc.name}): pip install 'ociboot[redis]'"
        ) from None
    return RemoteCache(url, key_from_env() if key is None else key, warn=warn)


__all__ = ["DEFAULT_IMAGE_JOBS", "Batch", "OnResult", "check", "open_cache"]
