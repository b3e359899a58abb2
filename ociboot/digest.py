"""Content digests (OCI image-spec descriptor.md#digests) and a reader that verifies them.

`VerifyingReader` is the one place bytes become trusted: it hashes what passes through and, at
EOF, compares size and digest, raising DigestMismatch before the caller sees end-of-stream.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import IO, Any, Protocol

from .errors import DigestMismatch, InvalidManifest
from .streams import ReadStream

# descriptor.md: algorithm-component [+._-] separated; encoded portion per algorithm.
_ENCODED = {"sha256": re.compile(r"[a-f0-9]{64}"), "sha512": re.compile(r"[a-f0-9]{128}")}
_GRAMMAR = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")


class Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Strict: registered algorithms only (sha256, sha512), lowercase hex of the right length."""
        if not isinstance(text, str) or not _GRAMMAR.fullmatch(text):
            raise InvalidManifest(f"invalid digest {text!r}")
        algorithm, _, encoded = text.partition(":")
        pattern = _ENCODED.get(algorithm)
        if pattern is None:
            raise InvalidManifest(f"unsupported digest algorithm {algorithm!r} in {text!r}")
        if not pattern.fullmatch(encoded):
            raise InvalidManifest(f"invalid {algorithm} digest {text!r}")
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> Hasher:
        return hashlib.new(self.algorithm)

    @property
    def short(self) -> str:
        return self.hex[:12]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


class VerifyingReader(ReadStream):
    """A read-only binary stream that checks size and digest when the underlying stream ends.

    The check runs at the first read that returns b"" (or when `size` bytes have passed and the
    source has nothing more): a short or long stream, or a wrong hash, raises DigestMismatch.
    `expected=None` only counts and hashes (used for diff_ids computed on the way).
    """

    def __init__(
        self,
        raw: IO[bytes] | Any,
        expected: Digest | None,
        what: str,
        size: int | None = None,
        algorithm: str = "sha256",
    ) -> None:
        self._raw = raw
        self.expected = expected
        self.what = what
        self.size = size
        self._hash = hashlib.new(expected.algorithm if expected else algorithm)
        self.count = 0
        self.verified = False

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            chunks = []
            while chunk := self.read(1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        data = self._raw.read(n)
        if data:
            self._hash.update(data)
            self.count += len(data)
            if self.size is not None and self.count > self.size:
                raise DigestMismatch(f"{self.size} bytes", f"more than {self.size} bytes", self.what)
            return bytes(data)
        self._finish()
        return b""

    def drain(self) -> None:
        """Read to EOF so the check runs even when the consumer stopped early."""
        while self.read(1 << 20):
            pass

    @property
    def digest(self) -> Digest:
        return Digest(
            self._hash.name if self.expected is None else self.expected.algorithm, self._hash.hexdigest()
        )

    def _finish(self) -> None:
        if self.verified:
            return
        if self.size is not None and self.count != self.size:
            raise DigestMismatch(f"{self.size} bytes", f"{self.count} bytes", self.what)
        if self.expected is not None and self._hash.hexdigest() != self.expected.hex:
            raise DigestMismatch(str(self.expected), str(self.digest), self.what)
        self.verified = True

    def close(self) -> None:
        close = getattr(self._raw, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
