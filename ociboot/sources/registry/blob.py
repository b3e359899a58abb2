"""A blob's bytes from a registry, resumed with `Range` when the connection drops.

distribution-spec: registries SHOULD support Range on blob GETs; a 206 must carry the
Content-Range we asked for, and a 200 means starting over, so what we already have is skipped.
"""

from __future__ import annotations

import io
import re
from typing import Any

from ...errors import RegistryError
from ...spec import Descriptor
from .endpoint import Endpoint
from .transport import CHUNK, Response, metered, read

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
#: Identity encoding: the hash is over the stored bytes, not a re-encoding of them.
_IDENTITY = {"Accept-Encoding": "identity"}


class BlobStream(io.RawIOBase):
    """A blob's wire bytes; a dropped connection resumes with `Range: bytes=N-` (bounded)."""

    def __init__(self, endpoint: Endpoint, descriptor: Descriptor) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._digest = str(descriptor.digest)
        self._size = descriptor.size
        self._url = endpoint.url("blobs", self._digest)
        self._what = f"blob {self._digest}"
        self._offset = 0
        self._resumes = 0
        response, self._transfer = endpoint.request("GET", self._url, _IDENTITY, self._what)
        self._response: Response | None = response

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while True:
            if self._response is None:
                return 0
            try:
                with metered(self._transfer):
                    data = read(self._response, min(len(view), CHUNK), self._what)
            except RegistryError as exc:  # cut, stalled, or out of time
                if not exc.temporary:
                    raise
                self._resume(exc)
                continue
            if not data and self._offset < self._size:
                self._resume(None)  # an early clean EOF is a cut too
                continue
            view[: len(data)] = data
            self._offset += len(data)
            return len(data)

    def _resume(self, cause: BaseException | None) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None
        endpoint = self._endpoint
        if self._resumes >= endpoint.options.retries:
            raise RegistryError(
                f"{self._what} from {endpoint.host}: connection lost at byte {self._offset} "
                f"of {self._size} after {self._resumes} resumes ({cause or 'early end of stream'})",
                temporary=True,
            )
        self._resumes += 1
        headers = {**_IDENTITY, "Range": f"bytes={self._offset}-"}
        response, self._transfer = endpoint.request(
            "GET", self._url, headers, self._what, allow=frozenset({200, 206})
        )
        if response.status_code == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            if match is None or int(match.group(1)) != self._offset:
                response.close()
                raise RegistryError(
                    f"{self._what}: registry answered Range bytes={self._offset}- with Content-Range "
                    f"{response.headers.get('Content-Range')!r}"
                )
        else:
            with metered(self._transfer):
                self._skip(response)  # Range is only a SHOULD: re-read and drop what we have
        self._response = response

    def _skip(self, response: Response) -> None:
        left = self._offset
        while left:
            try:
                data = read(response, min(left, CHUNK), self._what)
            except RegistryError as exc:
                response.close()
                raise RegistryError(f"{self._what}: reading failed on resume: {exc}") from None
            if not data:
                response.close()
                raise RegistryError(f"{self._what}: stream ended before byte {self._offset} on resume")
            left -= len(data)

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None
        super().close()
