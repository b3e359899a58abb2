"""A TCP proxy in front of a REAL registry that injects transport faults on command.

Not a registry mock: every byte a client receives in a successful exchange comes from the real
registry.  Faults are armed one at a time and fire once per arming:

    proxy.cut_next("/blobs/", after=1000)    forward the response head and 1000 body bytes, then drop
    proxy.fail_next(503, retry_after="1")    answer the next matching request itself, never forwarding
    proxy.echo_auth_next("/manifests/")      answer the next matching request that carries
                                             credentials with a 400 quoting its Authorization
    proxy.trickle_next("/blobs/", after=0)   forward `after` response bytes (head included), then
                                             one byte per `interval`: a registry that stalls

`FaultProxy(target, trickle=0.05)` parses nothing: every connection is relayed as it is, the
registry's bytes one per `trickle` seconds (a TLS registry that stalls in its handshake).

Each proxied connection carries one request (the proxy rewrites `Connection: close`), so the
request line tells which exchange a fault belongs to.  `requests` records (method, path, headers).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus


@dataclass
class _Fault:
    path_contains: str
    cut_after: int | None = None
    status: int | None = None
    retry_after: str | None = None
    trickle_after: int | None = None
    echo_auth: bool = False
    interval: float = 0.05


class FaultProxy:
    def __init__(self, target: str, trickle: float | None = None) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.trickle = trickle
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._closed = False
        self._accepting = threading.Thread(target=self._accept, daemon=True, name="faultproxy")
        self._accepting.start()

    # --- arming --------------------------------------------------------------------------------

    def cut_next(self, path_contains: str, after: int) -> None:
        with self._lock:
            self._faults.append(_Fault(path_contains, cut_after=after))

    def echo_auth_next(self, path_contains: str) -> None:
        with self._lock:
            self._faults.append(_Fault(path_contains, status=400, echo_auth=True))

    def trickle_next(self, path_contains: str, after: int = 0, interval: float = 0.05) -> None:
        with self._lock:
            self._faults.append(_Fault(path_contains, trickle_after=after, interval=interval))

    def fail_next(self, status: int, path_contains: str = "/v2/", retry_after: str | None = None) -> None:
        with self._lock:
            self._faults.append(_Fault(path_contains, status=status, retry_after=retry_after))

    def close(self) -> None:
        self._closed = True
        # close() alone leaves a thread blocked in accept() on Linux, listening for ever on a
        # socket whose descriptor number is free for reuse; shutdown() wakes it.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._accepting.join(timeout=5)
        with contextlib.suppress(OSError):
            self._listener.close()

    def _take(self, path: str, headers: dict[str, str]) -> _Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.path_contains in path and (not fault.echo_auth or "Authorization" in headers):
                    return self._faults.pop(i)
        return None

    # --- relaying ------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if self.trickle is not None:
            self._serve_trickling(client, self.trickle)
            return
        with client:
            head, rest = _read_head(client)
            if head is None:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, path = [*lines[0].split(" "), "", ""][:2]
            headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            self.requests.append((method, path, headers))
            fault = self._take(path, headers)
            if fault is not None and fault.status is not None:
                echoed = headers["Authorization"] if fault.echo_auth else None
                client.sendall(_status_response(fault.status, fault.retry_after, echoed))
                return
            kept = [line for line in lines[1:] if line and not line.lower().startswith("connection:")]
            forwarded = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1")
            try:
                upstream = socket.create_connection(self.target, timeout=30)
            except OSError:
                return
            with upstream:
                upstream.sendall(forwarded + rest)
                threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
                if fault is not None and fault.trickle_after is not None:
                    self._trickle(upstream, client, fault.trickle_after, fault.interval)
                else:
                    self._relay_response(upstream, client, fault.cut_after if fault else None)

    def _serve_trickling(self, client: socket.socket, interval: float) -> None:
        with (
            client,
            contextlib.suppress(OSError),
            socket.create_connection(self.target, timeout=30) as upstream,
        ):
            threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
            self._trickle(upstream, client, 0, interval)

    def _trickle(self, upstream: socket.socket, client: socket.socket, after: int, interval: float) -> None:
        """The first `after` bytes of the response at once, then one byte per `interval` until the
        client gives up (or the response ends)."""
        sent = 0
        with contextlib.suppress(OSError):
            while not self._closed and (chunk := upstream.recv(1 << 16)):
                fast = max(after - sent, 0)
                client.sendall(chunk[:fast])
                sent += len(chunk[:fast])
                for i in range(fast, len(chunk)):
                    if self._closed:
                        return
                    time.sleep(interval)
                    client.sendall(chunk[i : i + 1])
                    sent += 1

    def _relay_response(self, upstream: socket.socket, client: socket.socket, cut_after: int | None) -> None:
        seen = b""
        body_sent = -1  # -1 until the response head has passed
        while True:
            try:
                chunk = upstream.recv(1 << 16)
            except OSError:
                return
            if not chunk:
                return
            if cut_after is None:
                client.sendall(chunk)
                continue
            if body_sent < 0:
                seen += chunk
                end = seen.find(b"\r\n\r\n")
                if end < 0:
                    continue
                client.sendall(seen[: end + 4])
                chunk, body_sent = seen[end + 4 :], 0
            room = cut_after - body_sent
            client.sendall(chunk[:room])
            body_sent += min(room, len(chunk))
            if body_sent >= cut_after:
                # An abrupt close mid-body: what a dropped connection looks like to the client.
                with contextlib.suppress(OSError):
                    client.shutdown(socket.SHUT_RDWR)
                return


def _read_head(sock: socket.socket) -> tuple[bytes | None, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(1 << 16)
        except OSError:
            return None, b""
        if not chunk:
            return None, b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Client-to-registry bytes after the head (request bodies of pushes)."""
    with contextlib.suppress(OSError):
        while chunk := source.recv(1 << 16):
            sink.sendall(chunk)


def _status_response(status: int, retry_after: str | None, echoed: str | None = None) -> bytes:
    body = b'{"errors":[{"code":"UNAVAILABLE","message":"injected by faultproxy","detail":null}]}'
    if echoed is not None:  # what a registry that quotes the request back would answer
        message = f"bad request with Authorization: {echoed}"
        body = json.dumps({"errors": [{"code": "DENIED", "message": message}]}).encode()
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if retry_after is not None:
        lines.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
