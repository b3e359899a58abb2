"""The cyclic garbage collector's pace while images are indexed and judged.

A layer of many small files makes a few container objects per member (its Entry, its Node, a
few tuples) and keeps them all: with CPython's default first threshold (700 allocations),
bench:v1's 55,000-member layer made the collector run about 400 young, 36 middle and 3 full
collections, 0.17 s of a 2 s check, and none of them found garbage (an index and a tree hold no
reference cycles).  While any image is read, `fewer_collections` raises the first threshold to
YOUNG_THRESHOLD: cycles are still collected, every YOUNG_THRESHOLD allocations, so memory stays
bounded, but the full collections over an ever larger heap are not run (0.045 s in all).

The threshold is process-wide (like layer.readahead's switch interval), so the scopes of all
threads count themselves in and out, and the last one out restores the thresholds the first
one found.  A collector switched off (threshold 0, `gc.disable()`) or already set higher is
left as it is.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Allocations between two young collections while images are read (CPython's default: 700).
YOUNG_THRESHOLD = 50_000

_lock = threading.Lock()
_users = 0
_saved: tuple[int, ...] | None = None  # the thresholds to restore, if this module changed them


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Collect young objects every YOUNG_THRESHOLD allocations instead of the default (see above)."""
    global _users, _saved
    with _lock:
        if _users == 0:
            found = gc.get_threshold()
            if 0 < found[0] < YOUNG_THRESHOLD:
                _saved = found
                gc.set_threshold(YOUNG_THRESHOLD, *found[1:])
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
