"""A stream read to EOF on its own thread, a few chunks ahead of its consumer.

Inflating and hashing release the GIL, so on two cores the thread overlaps them with the
Python tar walk instead of alternating with it (issue 4).

The switch interval: while any read-ahead runs, the interpreter-wide `sys.setswitchinterval`
is lowered to _SWITCH_INTERVAL.  After each C call the producer needs the GIL back for a few
bytecodes; with the default 5 ms it waits that long behind the walker (the convoy effect),
which undid most of the overlap.  The setting is process-wide, so the read-aheads of all
threads count themselves in and out, and the last one out restores the value the first one
found: code around ociboot sees its own interval again once no layer is being read.
"""

from __future__ import annotations

import queue
import sys
import threading
from typing import Any

#: Bytes per read: oras and isal both do best with large reads (docs/measurements.md).
CHUNK = 1 << 20
# Chunks queued: a few MiB of memory whatever the layer size.
_DEPTH = 4
# Seconds (measured on the 60k-member layer: 5 ms 2.0 s, 0.5 ms 1.97 s, 0.2 ms 1.81 s, 0.1 ms
# 1.70 s median wall for index_layers; 2.33 s without the thread).
_SWITCH_INTERVAL = 0.0001


class ReadAhead:
    """Reads a stream to EOF on its own thread, `depth` chunks ahead of the consumer.

    Memory is bounded by `depth` chunks.  What the producer raises (a DigestMismatch at EOF, a
    corrupt stream) is raised to the consumer at the same point of the stream, after the data
    that preceded it.  `stop()` must run before the stream underneath is touched by anyone else:
    it joins the thread, and counts this read-ahead out of the switch interval (module docstring).
    """

    _users = 0
    _saved_interval = 0.0
    _users_lock = threading.Lock()

    def __init__(self, src: Any, chunk: int = CHUNK, depth: int = _DEPTH) -> None:
        self._src = src
        self._chunk = chunk
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(depth)
        self._stopped = False
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._thread = threading.Thread(target=self._produce, name="ociboot-read-ahead", daemon=True)
        self._thread.start()
        self._switching(+1)

    @classmethod
    def _switching(cls, delta: int) -> None:
        # Counted across threads: layers are indexed concurrently, the last one out restores.
        with cls._users_lock:
            if delta > 0 and cls._users == 0:
                cls._saved_interval = sys.getswitchinterval()
                sys.setswitchinterval(min(cls._saved_interval, _SWITCH_INTERVAL))
            cls._users += delta
            if delta < 0 and cls._users == 0:
                sys.setswitchinterval(cls._saved_interval)

    def _produce(self) -> None:
        put, read, chunk = self._queue.put, self._src.read, self._chunk
        try:
            while not self._stopped:
                data = read(chunk)
                put(data)
                if not data:
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes (a whole chunk without copying when `n` covers it); b"" at EOF."""
        if self._pos >= len(self._buf):
            if self._eof:
                return b""
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._eof = True
                raise item
            if not item:
                self._eof = True
                return b""
            self._buf, self._pos = item, 0
        pos = self._pos
        if pos == 0 and (n < 0 or n >= len(self._buf)):
            self._pos = len(self._buf)
            return self._buf
        end = len(self._buf) if n < 0 else pos + n
        self._pos = min(end, len(self._buf))
        return self._buf[pos:end]

    def drain(self) -> None:
        """Consume to EOF, raising what the producer raised (its digest checks run at EOF)."""
        while self.read(self._chunk):
            pass

    def stop(self) -> None:
        """Stop the producer and wait for it; the stream is the caller's again afterwards."""
        if self._stopped:
            return
        self._stopped = True
        self._switching(-1)
        while self._thread.is_alive():
            try:
                while True:
                    self._queue.get_nowait()  # unblocks a producer waiting to put
            except queue.Empty:
                pass
            self._thread.join(0.01)
