"""RegistryTarget (blob and manifest upload, cross-repository mount) against the real registry."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import socket
import threading
import time
from typing import Any

import pytest

from ociboot.digest import Digest
from ociboot.errors import AuthenticationError, ImageNotFound, RegistryError
from ociboot.mediatypes import MediaType
from ociboot.ref import ImageRef, Transport
from ociboot.sources import SourceOptions
from ociboot.sources.registry.client import RegistryClient
from ociboot.sources.registry.push import RegistryTarget
from ociboot.sources.registry.source import RegistrySource
from ociboot.sources.registry.token import merged_scopes
from ociboot.sources.registry.transport import CHUNK
from ociboot.spec import Descriptor
from tests.support.imagebuilder import Blob, BuiltImage, ImageBuilder, LayerBuilder
from tests.support.registry_push import Pusher
from tests.support.registry_server import RegistryServer

pytestmark = pytest.mark.registry


def ref(host: str, repo: str, tag: str | None = None) -> ImageRef:
    return ImageRef(Transport.DOCKER, registry=host, repository=repo, tag=tag)


def descriptor(blob: Blob | bytes, size: int | None = None) -> Descriptor:
    data = blob.data if isinstance(blob, Blob) else blob
    digest = Digest.parse("sha256:" + hashlib.sha256(data).hexdigest())
    return Descriptor(media_type=MediaType.OCI_LAYER, digest=digest, size=len(data) if size is None else size)


def noise(size: int) -> bytes:
    out = bytearray()
    block = b"push"
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 8
    return bytes(out[:size])


def _image(payload: bytes) -> BuiltImage:
    layer = LayerBuilder().dir("etc").file("etc/os-release", b"ID=push\n").file("data", payload)
    return ImageBuilder().add_layer(layer, "gzip").build()


def push_image(target: RegistryTarget, image: BuiltImage, tag: str) -> Digest:
    for blob in [*image.layers, image.config]:
        target.upload_blob(descriptor(blob), io.BytesIO(blob.data))
    return target.upload_manifest(image.manifest.data, image.manifest.media_type, tag)


def test_an_image_pushed_blob_by_blob_reads_back_byte_for_byte(registry: RegistryServer) -> None:
    image = _image(b"round trip\n")
    target = RegistryTarget(ref(registry.host, "push/round"), SourceOptions())
    assert str(push_image(target, image, "v1")) == image.digest
    source = RegistrySource(ref(registry.host, "push/round", "v1"), SourceOptions())
    raw = source.get_manifest()
    assert (raw.data, str(raw.digest), raw.media_type) == (
        image.manifest.data,
        image.digest,
        MediaType.OCI_MANIFEST,
    )
    for blob in [*image.layers, image.config]:
        with source.open_blob(descriptor(blob)) as stream:
            assert stream.read() == blob.data
    # Blobs the registry holds are not sent again.
    assert not target.upload_blob(descriptor(image.layers[0]), io.BytesIO(image.layers[0].data))


def test_a_manifest_keeps_its_exact_bytes_and_digest(registry: RegistryServer) -> None:
    # A promotion must keep digests: the manifest goes up as given, not re-serialised.
    image = _image(b"exact\n")
    target = RegistryTarget(ref(registry.host, "push/exact"), SourceOptions())
    push_image(target, image, "canonical")
    spaced = json.dumps(json.loads(image.manifest.data), indent=3).encode() + b"\n"
    digest = target.upload_manifest(spaced, MediaType.OCI_MANIFEST, "spaced")
    assert str(digest) == "sha256:" + hashlib.sha256(spaced).hexdigest() != image.digest
    raw = RegistrySource(ref(registry.host, "push/exact", "spaced"), SourceOptions()).get_manifest()
    assert (raw.data, raw.digest) == (spaced, digest)
    by_digest = RegistrySource(ref(registry.host, "push/exact"), SourceOptions()).get_manifest(digest)
    assert by_digest.data == spaced


class _Recording(io.RawIOBase):
    """A reader that records the size of every read asked of it."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data = io.BytesIO(data)
        self.asked: list[int] = []

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.asked.append(size)
        return self._data.read(size)


def test_a_blob_upload_streams_in_bounded_pieces(registry: RegistryServer) -> None:
    data = noise(3 * CHUNK + 17)
    reader = _Recording(data)
    target = RegistryTarget(ref(registry.host, "push/big"), SourceOptions())
    assert target.upload_blob(descriptor(data), reader)  # type: ignore[arg-type]
    assert len(reader.asked) >= 4 and max(reader.asked) <= CHUNK and -1 not in reader.asked
    with RegistrySource(ref(registry.host, "push/big"), SourceOptions()).open_blob(
        descriptor(data)
    ) as stream:
        assert hashlib.sha256(stream.read()).digest() == hashlib.sha256(data).digest()


def test_a_reader_short_of_the_declared_size_fails_and_stores_nothing(registry: RegistryServer) -> None:
    data = noise(5000)
    target = RegistryTarget(ref(registry.host, "push/short"), SourceOptions())
    declared = descriptor(data, size=6000)
    with pytest.raises(RegistryError, match="reader ended 1000 bytes short of 6000"):
        target.upload_blob(declared, io.BytesIO(data))
    assert not target.blob_exists(declared)


def test_bytes_that_do_not_match_the_digest_are_refused_by_the_registry(registry: RegistryServer) -> None:
    claimed = descriptor(noise(100))
    target = RegistryTarget(ref(registry.host, "push/wrong"), SourceOptions())
    with pytest.raises(RegistryError, match=r"answered 400 for upload of blob sha256:\w+: .*digest") as err:
        target.upload_blob(claimed, io.BytesIO(b"x" * 100))
    assert err.value.status == 400
    assert not target.blob_exists(claimed)


def test_cross_repository_mount(registry: RegistryServer) -> None:
    image = _image(noise(4096))
    Pusher(registry.url).push("mount/from", image, "v1")
    layer = image.layers[0]
    target = RegistryTarget(ref(registry.host, "mount/to"), SourceOptions())
    assert not target.blob_exists(descriptor(layer))
    assert target.mount_blob(descriptor(layer), "mount/from")
    with RegistrySource(ref(registry.host, "mount/to"), SourceOptions()).open_blob(
        descriptor(layer)
    ) as stream:
        assert stream.read() == layer.data
    # A blob the other repository does not hold is not mounted (the upload opened instead is cancelled).
    elsewhere = descriptor(noise(10))
    assert not target.mount_blob(elsewhere, "mount/from")
    assert not target.blob_exists(elsewhere)


def test_a_challenge_naming_our_actions_in_another_order_adds_no_scope() -> None:
    """docker-registry lists a challenge's actions from a Go map: `push,pull` as often as
    `pull,push` (CI saw a third scope and a second token for the same rights)."""
    ours = ("repository:alice/promoted:pull,push", "repository:alice/source:pull")
    assert merged_scopes(ours, ["repository:alice/promoted:push,pull"]) == list(ours)
    assert merged_scopes(ours, ["repository:alice/source:pull,push", "registry:catalog:*"]) == [
        "repository:alice/promoted:pull,push",
        "repository:alice/source:pull,push",
        "registry:catalog:*",
    ]


def test_a_push_asks_for_push_and_mount_scopes_in_one_token(
    token_registry: RegistryServer, tmp_path: object
) -> None:
    tokens = token_registry.tokens
    assert tokens is not None
    image = _image(b"scoped\n")
    Pusher(token_registry.url, "alice", "wonderland").push("alice/source", image, "v1")
    layer = image.layers[0]
    before = len(tokens.issued)
    with RegistryClient() as client:
        target = RegistryTarget(
            ref(token_registry.host, "alice/promoted"),
            SourceOptions(creds="alice:wonderland"),
            client,
            mount_from=("alice/source",),
        )
        assert target.mount_blob(descriptor(layer), "alice/source")
        target.upload_blob(descriptor(image.config), io.BytesIO(image.config.data))
        target.upload_manifest(image.manifest.data, image.manifest.media_type, "v1")
    scopes = {s for user, s in tokens.issued[before:] if user == "alice"}
    assert scopes == {("repository:alice/promoted:pull,push", "repository:alice/source:pull")}
    source = RegistrySource(
        ref(token_registry.host, "alice/promoted", "v1"), SourceOptions(creds="alice:wonderland")
    )
    assert source.get_manifest().data == image.manifest.data


def test_a_user_without_push_rights_gets_an_authentication_error(token_registry: RegistryServer) -> None:
    target = RegistryTarget(ref(token_registry.host, "team/app"), SourceOptions(creds="bob:builder"))
    data = b"not bob's to push\n"
    with pytest.raises(AuthenticationError, match=r"team/app: credentials from --creds were refused or lack"):
        target.upload_blob(descriptor(data), io.BytesIO(data))


class _SlowReader(http.server.BaseHTTPRequestHandler):
    """A registry that takes an upload's body slowly, but never slowly enough to stall: only the
    image's deadline can end an upload from a local stream (an archive) to it."""

    protocol_version = "HTTP/1.1"
    received: list[int] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": "0", "Connection": "close", **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.close_connection = True

    def do_HEAD(self) -> None:
        self._answer(404)

    def do_POST(self) -> None:
        self._answer(202, {"Location": "/v2/prod/slow/blobs/uploads/1"})

    def do_PUT(self) -> None:
        left = int(self.headers.get("Content-Length", "0"))
        while left > 0:
            try:
                chunk = self.rfile.read(min(left, 1 << 16))
            except OSError:
                return
            if not chunk:
                return
            left -= len(chunk)
            self.received.append(len(chunk))
            time.sleep(0.05)
        self._answer(201)


class _SmallWindow(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 14)
        super().server_bind()


def test_an_upload_from_a_local_stream_ends_at_the_image_deadline() -> None:
    server = _SmallWindow(("127.0.0.1", 0), _SlowReader)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    data = noise(48 << 20)  # at the server's pace (about 1.3 MB/s), far longer than the deadline
    target = RegistryTarget(
        ref(f"127.0.0.1:{server.server_address[1]}", "prod/slow"), SourceOptions(timeout=1.0, retries=0)
    )
    try:
        with pytest.raises(RegistryError, match="--timeout"):
            target.upload_blob(descriptor(data), io.BytesIO(data))
    finally:
        target.close()
        server.shutdown()
        server.server_close()
    # Ended at the deadline while sending, not once the whole body had been taken.
    assert 0 < sum(_SlowReader.received) < len(data) // 2


class _EchoingReason(http.server.BaseHTTPRequestHandler):
    """Asks for Basic credentials, then quotes them back in the reason phrase of a 500."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        sent = self.headers.get("Authorization")
        if sent is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="registry"')
        else:
            self.send_response(500, f"you sent {sent} ({base64.b64decode(sent.split()[1]).decode()})")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        sent = self.headers.get("Authorization")
        if sent is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="registry"')
            body = b""
        else:  # not found, with the credentials for an error code
            self.send_response(404)
            codes = ["MANIFEST_UNKNOWN", sent, base64.b64decode(sent.split()[1]).decode()]
            body = json.dumps({"errors": [{"code": c} for c in codes]}).encode()
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_credentials_echoed_in_a_reason_phrase_or_an_error_code_are_not_printed() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoingReason)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target = RegistryTarget(
        ref(f"127.0.0.1:{server.server_address[1]}", "prod/echo"),
        SourceOptions(creds="alice:s3cret-pass", retries=0),
    )
    try:
        with pytest.raises(RegistryError) as reason:
            target.blob_exists(descriptor(b"anything"))
        with pytest.raises(ImageNotFound) as code:
            target.upload_manifest(b"{}", MediaType.OCI_MANIFEST, "1")
    finally:
        target.close()
        server.shutdown()
        server.server_close()
    assert "500" in str(reason.value) and "you sent" in str(reason.value)
    assert "MANIFEST_UNKNOWN" in str(code.value)
    for said in (str(reason.value), str(code.value)):
        assert "s3cret-pass" not in said and base64.b64encode(b"alice:s3cret-pass").decode() not in said
