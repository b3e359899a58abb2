"""What every read-only byte stream of ociboot has in common.

The verifying, decompressing, metering and member readers are each defined by their `read(n)`;
their consumers (tarfile, zlib/zstd/lzma readers, io.BufferedReader, shutil) also call
`readinto` and `readable`, which follow from `read` the same way for all of them.  stdlib only
(import level 0).
"""

from __future__ import annotations


class ReadStream:
    """Base of a read-only binary stream that implements `read(n)`."""

    __slots__ = ()

    def read(self, n: int = -1) -> bytes:
        raise NotImplementedError

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True
