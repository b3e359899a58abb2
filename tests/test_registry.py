"""RegistrySource against real registries (tests/support/registry_server.py), with real faults
(faultproxy)."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ociboot import pipeline
from ociboot.digest import Digest
from ociboot.errors import AuthenticationError, ImageNotFound, RegistryError
from ociboot.mediatypes import MediaType
from ociboot.ref import ImageRef, Transport
from ociboot.sources import SourceOptions
from ociboot.sources.registry.client import RegistryClient
from ociboot.sources.registry.endpoint import is_loopback
from ociboot.sources.registry.source import RegistrySource
from ociboot.spec import Descriptor
from tests.support.faultproxy import FaultProxy
from tests.support.imagebuilder import BuiltImage, BuiltIndex, ImageBuilder, LayerBuilder, build_index
from tests.support.registry_push import Pusher
from tests.support.registry_server import RegistryServer, TokenService, free_port

pytestmark = pytest.mark.registry


def noise(size: int, seed: bytes = b"ociboot") -> bytes:
    """Incompressible, deterministic bytes (a chained sha256 stream)."""
    out = bytearray()
    block = seed
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 8
    return bytes(out[:size])


@dataclass
class Images:
    oci: BuiltImage
    docker: BuiltImage
    index: BuiltIndex
    manifest_list: BuiltIndex
    big: BuiltImage


def _image(flavour: str, arch: str = "amd64", payload: bytes = b"hello\n") -> BuiltImage:
    layer = LayerBuilder().dir("etc").file("etc/os-release", b"ID=test\n").file("data", payload)
    return ImageBuilder(arch=arch, flavour=flavour).add_layer(layer, "gzip").build()


@pytest.fixture(scope="module")
def images(registry: RegistryServer) -> Images:
    big_layer = LayerBuilder().file("big.bin", noise(3 << 20))
    built = Images(
        oci=_image("oci"),
        docker=_image("docker"),
        index=build_index([_image("oci", "amd64"), _image("oci", "arm64")]),
        manifest_list=build_index([_image("docker", "amd64"), _image("docker", "arm64")], docker=True),
        big=ImageBuilder().add_layer(big_layer, "none").build(),
    )
    pusher = Pusher(registry.url)
    pusher.push("x/oci", built.oci, "t")
    pusher.push("x/docker", built.docker, "t")
    pusher.push("x/index", built.index, "t")
    pusher.push("x/list", built.manifest_list, "t")
    pusher.push("x/big", built.big, "t")
    return built


def ref_for(host: str, repo: str, tag: str | None = "t", digest: str | None = None) -> ImageRef:
    return ImageRef(
        Transport.DOCKER,
        registry=host,
        repository=repo,
        tag=tag,
        digest=Digest.parse(digest) if digest else None,
    )


def open_source(
    host: str, repo: str, tag: str | None = "t", client: RegistryClient | None = None, **options: object
) -> RegistrySource:
    """A source with its own registry state (nothing cached by an earlier test), or `client`'s."""
    return RegistrySource(ref_for(host, repo, tag), SourceOptions(**options), client)  # type: ignore[arg-type]


def descriptor(blob_digest: str, size: int) -> Descriptor:
    return Descriptor(media_type=MediaType.OCI_LAYER, digest=Digest.parse(blob_digest), size=size)


def read_all(stream: object, chunk: int = 1 << 20) -> bytes:
    out = bytearray()
    while data := stream.read(chunk):  # type: ignore[attr-defined]
        out += data
    return bytes(out)


# --- manifests -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("repo", "attr", "media_type"),
    [
        ("x/oci", "oci", MediaType.OCI_MANIFEST),
        ("x/docker", "docker", MediaType.DOCKER_MANIFEST),  # not down-converted to schema1
        ("x/index", "index", MediaType.OCI_INDEX),
        ("x/list", "manifest_list", MediaType.DOCKER_MANIFEST_LIST),
    ],
)
def test_manifest_by_tag_keeps_raw_bytes_and_type(
    registry: RegistryServer, images: Images, repo: str, attr: str, media_type: str
) -> None:
    expected = getattr(images, attr)
    source = open_source(registry.host, repo)
    raw = source.get_manifest()
    assert raw.data == expected.manifest.data
    assert raw.media_type == media_type
    # No digest in the reference: the claim comes from Docker-Content-Digest.
    assert str(raw.digest) == expected.digest
    source.close()


def test_manifest_by_digest_reference_and_child(registry: RegistryServer, images: Images) -> None:
    source = RegistrySource(ref_for(registry.host, "x/index", None, images.index.digest), SourceOptions())
    top = source.get_manifest()
    assert top.data == images.index.manifest.data
    assert str(top.digest) == images.index.digest
    child = images.index.children[1]
    raw = source.get_manifest(Digest.parse(child.digest))
    assert raw.data == child.manifest.data
    assert raw.media_type == MediaType.OCI_MANIFEST
    assert str(raw.digest) == child.digest
    assert json.loads(raw.data)["config"]["digest"] == child.config.digest  # type: ignore[union-attr]


def test_blob_streams_exact_bytes(registry: RegistryServer, images: Images) -> None:
    source = open_source(registry.host, "x/big")
    layer = images.big.layers[0]
    with source.open_blob(descriptor(layer.digest, len(layer.data))) as stream:
        head = stream.read(1000)
        rest = read_all(stream, 300_000)
    assert head + rest == layer.data
    config = images.big.config
    with source.open_blob(descriptor(config.digest, len(config.data))) as stream:
        assert stream.read() == config.data


def test_blobs_read_from_threads_at_once(registry: RegistryServer, images: Images) -> None:
    source = open_source(registry.host, "x/big")
    blobs = [images.big.layers[0], images.big.config] * 3
    results: dict[int, bytes] = {}

    def fetch(i: int) -> None:
        with source.open_blob(descriptor(blobs[i].digest, len(blobs[i].data))) as stream:
            results[i] = read_all(stream, 65536)

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(len(blobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [results.get(i) == b.data for i, b in enumerate(blobs)] == [True] * len(blobs)
    source.close()


# --- not found -------------------------------------------------------------------------------


def test_missing_repository_tag_and_blob(registry: RegistryServer, images: Images) -> None:
    with pytest.raises(ImageNotFound, match="x/nothing-here:t"):
        open_source(registry.host, "x/nothing-here").get_manifest()
    with pytest.raises(ImageNotFound, match="MANIFEST_UNKNOWN"):
        open_source(registry.host, "x/oci", "no-such-tag").get_manifest()
    missing = "sha256:" + "0" * 64
    with pytest.raises(ImageNotFound, match=missing):
        open_source(registry.host, "x/oci").open_blob(descriptor(missing, 1))


# --- basic auth ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def basic_image(basic_registry: RegistryServer) -> BuiltImage:
    image = _image("oci", payload=b"basic\n")
    Pusher(basic_registry.url, "alice", "wonderland").push("team/basic", image, "t")
    return image


def test_basic_auth_with_right_credentials(basic_registry: RegistryServer, basic_image: BuiltImage) -> None:
    source = open_source(basic_registry.host, "team/basic", creds="bob:builder")
    assert source.get_manifest().data == basic_image.manifest.data
    layer = basic_image.layers[0]
    with source.open_blob(descriptor(layer.digest, len(layer.data))) as stream:
        assert stream.read() == layer.data


def test_basic_auth_wrong_password_fails_fast(
    basic_registry: RegistryServer, basic_image: BuiltImage
) -> None:
    started = time.monotonic()
    with pytest.raises(AuthenticationError, match=rf"401 .*{basic_registry.host}.*team/basic.*--creds"):
        open_source(basic_registry.host, "team/basic", creds="bob:wrong").get_manifest()
    assert time.monotonic() - started < 10


def test_basic_auth_missing_credentials(
    basic_registry: RegistryServer, basic_image: BuiltImage, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(AuthenticationError, match="no credentials found"):
        open_source(basic_registry.host, "team/basic").get_manifest()


# --- token auth ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_images(token_registry: RegistryServer) -> dict[str, BuiltImage]:
    pusher = Pusher(token_registry.url, "alice", "wonderland")
    out = {}
    for i, repo in enumerate(["public/open", "team/app", "team/lib", "private/x", "alice/expiry"]):
        out[repo] = _image("oci", payload=f"{repo} {i}\n".encode())
        pusher.push(repo, out[repo], "t")
    return out


@pytest.fixture
def no_auth_files(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)


def test_token_anonymous_pull_where_allowed_and_denied_elsewhere(
    token_registry: RegistryServer, token_images: dict[str, BuiltImage], no_auth_files: None
) -> None:
    public = open_source(token_registry.host, "public/open")
    assert public.get_manifest().data == token_images["public/open"].manifest.data
    started = time.monotonic()
    with pytest.raises(AuthenticationError, match=r"401 .*private/x: no credentials found"):
        open_source(token_registry.host, "private/x").get_manifest()
    assert time.monotonic() - started < 10


def test_token_with_credentials_and_per_scope_cache(
    token_registry: RegistryServer, token_images: dict[str, BuiltImage]
) -> None:
    tokens = token_registry.tokens
    assert tokens is not None
    before = len(tokens.issued)
    client = RegistryClient()  # one run's
    for repo in ("team/app", "team/lib"):
        source = open_source(token_registry.host, repo, client=client, creds="bob:builder")
        assert source.get_manifest().data == token_images[repo].manifest.data
        layer = token_images[repo].layers[0]
        with source.open_blob(descriptor(layer.digest, len(layer.data))) as stream:
            assert stream.read() == layer.data
    scopes = [scopes for user, scopes in tokens.issued[before:] if user == "bob"]
    assert scopes == [("repository:team/app:pull",), ("repository:team/lib:pull",)]
    # A new source for a scope already held reuses the cached token: no new request to the service.
    again = open_source(token_registry.host, "team/app", client=client, creds="bob:builder")
    assert again.get_manifest().data == token_images["team/app"].manifest.data
    assert len(tokens.issued) == before + 2


def test_one_run_shares_its_tokens_and_another_run_does_not(
    token_registry: RegistryServer, token_images: dict[str, BuiltImage]
) -> None:
    # The state is pipeline.Options.registry: a batch (one Options) asks for a scope's token once;
    # a second run in the same process starts from nothing.
    tokens = token_registry.tokens
    assert tokens is not None
    before = len(tokens.issued)
    text = f"docker://{token_registry.host}/team/app:t"
    run = pipeline.Options(source=SourceOptions(creds="bob:builder"))
    for _ in range(2):
        with pipeline.opened(text, run) as source:
            assert source.get_manifest().data == token_images["team/app"].manifest.data
    assert len(tokens.issued) == before + 1
    with pipeline.opened(text, pipeline.Options(source=SourceOptions(creds="bob:builder"))) as source:
        assert source.get_manifest().data == token_images["team/app"].manifest.data
    assert len(tokens.issued) == before + 2


def test_token_scope_not_granted(token_registry: RegistryServer, token_images: dict[str, BuiltImage]) -> None:
    with pytest.raises(AuthenticationError, match=r"private/x: credentials from --creds were refused"):
        open_source(token_registry.host, "private/x", creds="bob:builder").get_manifest()


def test_token_wrong_password_fails_fast(
    token_registry: RegistryServer, token_images: dict[str, BuiltImage]
) -> None:
    started = time.monotonic()
    with pytest.raises(AuthenticationError, match="token service"):
        open_source(token_registry.host, "team/app", creds="bob:nope").get_manifest()
    assert time.monotonic() - started < 10


def test_expired_token_is_refreshed(
    token_registry: RegistryServer, token_images: dict[str, BuiltImage]
) -> None:
    tokens = token_registry.tokens
    assert tokens is not None
    before = len(tokens.issued)
    tokens.expire_next = 1
    source = open_source(token_registry.host, "alice/expiry", creds="alice:wonderland")
    assert source.get_manifest().data == token_images["alice/expiry"].manifest.data
    assert tokens.expire_next == 0
    assert [s for _, s in tokens.issued[before:]] == [("repository:alice/expiry:pull",)] * 2


def test_identity_token_uses_oauth2_refresh_grant(
    token_registry: RegistryServer, token_images: dict[str, BuiltImage], tmp_path: object
) -> None:
    authfile = f"{tmp_path}/auth.json"
    with open(authfile, "w") as out:
        json.dump({"auths": {token_registry.host: {"identitytoken": "refresh-for-bob"}}}, out)
    source = open_source(token_registry.host, "team/lib", authfile=authfile)
    assert source.get_manifest().data == token_images["team/lib"].manifest.data


# --- transport -------------------------------------------------------------------------------


def test_nothing_listening_fails_at_once() -> None:
    host = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(RegistryError, match=f"cannot connect to {host}: connection refused"):
        open_source(host, "x/y").get_manifest()
    assert time.monotonic() - started < 5


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1:5000")
    assert is_loopback("127.3.4.5")
    assert is_loopback("localhost:5000")
    assert is_loopback("[::1]:5000")
    assert not is_loopback("quay.example:5000")
    assert not is_loopback("10.0.0.1:5000")
    remote = RegistrySource(ref_for("registry.example", "x/y"), SourceOptions())
    assert remote.scheme == "https"
    assert RegistrySource(ref_for("registry.example", "x/y"), SourceOptions(plain_http=True)).scheme == "http"


@pytest.fixture
def proxy(registry: RegistryServer) -> Iterator[FaultProxy]:
    fault = FaultProxy(registry.host)
    yield fault
    fault.close()


def test_cut_blob_resumes_with_range(proxy: FaultProxy, images: Images) -> None:
    layer = images.big.layers[0]
    proxy.cut_next("/blobs/", after=1_000_000)
    source = open_source(proxy.host, "x/big")
    with source.open_blob(descriptor(layer.digest, len(layer.data))) as stream:
        data = read_all(stream)
    assert data == layer.data
    ranges = [h.get("Range") for method, path, h in proxy.requests if "/blobs/" in path]
    assert ranges == [None, "bytes=1000000-"]


def test_cut_blob_gives_up_after_bounded_resumes(proxy: FaultProxy, images: Images) -> None:
    layer = images.big.layers[0]
    for _ in range(3):
        proxy.cut_next("/blobs/", after=100_000)
    source = open_source(proxy.host, "x/big", retries=2)
    stream = source.open_blob(descriptor(layer.digest, len(layer.data)))
    with pytest.raises(RegistryError, match="connection lost at byte 300000 of 3153920 after 2 resumes"):
        read_all(stream)
    stream.close()


def test_503_then_success(proxy: FaultProxy, images: Images) -> None:
    proxy.fail_next(503, "/manifests/")
    raw = open_source(proxy.host, "x/oci").get_manifest()
    assert raw.data == images.oci.manifest.data
    assert [p for _, p, _ in proxy.requests].count("/v2/x/oci/manifests/t") == 2


def test_manifest_cut_mid_body_is_fetched_again(proxy: FaultProxy, images: Images) -> None:
    proxy.cut_next("/manifests/", after=10)
    raw = open_source(proxy.host, "x/oci").get_manifest()
    assert raw.data == images.oci.manifest.data
    assert [p for _, p, _ in proxy.requests].count("/v2/x/oci/manifests/t") == 2


def test_basic_credentials_are_sent_pre_emptively_once_known(
    basic_registry: RegistryServer, basic_image: BuiltImage
) -> None:
    front = FaultProxy(basic_registry.host)
    try:
        source = open_source(front.host, "team/basic", creds="alice:wonderland")
        assert source.get_manifest().data == basic_image.manifest.data
        layer = basic_image.layers[0]
        with source.open_blob(descriptor(layer.digest, len(layer.data))) as stream:
            assert stream.read() == layer.data
        sent = [(p.split("/")[4], "Authorization" in h) for _, p, h in front.requests]
        # One 401 to learn the scheme, then Basic on every request without waiting to be asked.
        assert sent == [("manifests", False), ("manifests", True), ("blobs", True)]
    finally:
        front.close()


def test_429_retry_after_is_honoured(proxy: FaultProxy, images: Images) -> None:
    proxy.fail_next(429, "/blobs/", retry_after="1")
    layer = images.oci.layers[0]
    started = time.monotonic()
    with open_source(proxy.host, "x/oci").open_blob(descriptor(layer.digest, len(layer.data))) as stream:
        assert stream.read() == layer.data
    assert time.monotonic() - started >= 1.0


def test_persistent_503_is_a_temporary_registry_error(proxy: FaultProxy, images: Images) -> None:
    for _ in range(3):
        proxy.fail_next(503, "/manifests/", retry_after="0")
    with pytest.raises(RegistryError, match="503") as caught:
        open_source(proxy.host, "x/oci", retries=2).get_manifest()
    assert caught.value.status == 503
    assert caught.value.temporary
    assert caught.value.codes == ("UNAVAILABLE",)


# --- TLS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_image(tls_registry: RegistryServer) -> BuiltImage:
    image = _image("oci", payload=b"tls\n")
    Pusher(tls_registry.url, verify=str(tls_registry.ca_file)).push("x/tls", image, "t")
    return image


def test_tls_with_cert_dir(tls_registry: RegistryServer, tls_image: BuiltImage) -> None:
    source = open_source(tls_registry.host, "x/tls", plain_http=False, cert_dir=str(tls_registry.cert_dir))
    assert source.scheme == "https"
    assert source.get_manifest().data == tls_image.manifest.data


def test_tls_unknown_ca_is_a_clear_error(tls_registry: RegistryServer, tls_image: BuiltImage) -> None:
    with pytest.raises(RegistryError, match=r"TLS error talking to 127\.0\.0\.1:\d+: .*--cert-dir"):
        open_source(tls_registry.host, "x/tls", plain_http=False).get_manifest()


def test_tls_verify_off(tls_registry: RegistryServer, tls_image: BuiltImage) -> None:
    source = open_source(tls_registry.host, "x/tls", plain_http=False, tls_verify=False)
    assert source.get_manifest().data == tls_image.manifest.data


def test_tls_verify_off_leaves_the_process_warning_filters_alone(
    tls_registry: RegistryServer, tls_image: BuiltImage
) -> None:
    # The user's --no-tls-verify quiets urllib3's warning for our requests only: a library user's
    # own unverified requests elsewhere in the process still warn.
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        filters = list(warnings.filters)
        source = open_source(tls_registry.host, "x/tls", plain_http=False, tls_verify=False)
        assert source.get_manifest().data == tls_image.manifest.data
        assert warnings.filters == filters
    assert not [w for w in seen if "Unverified HTTPS" in str(w.message)]


def test_sources_of_one_thread_share_their_connection_pool_per_registry(registry: RegistryServer) -> None:
    # A batch of checks against one registry reuses its connections (issue 4: shared connections);
    # a requests session is not promised to be thread-safe, so another thread gets its own.
    def ref(repo: str) -> ImageRef:
        return ImageRef(Transport.DOCKER, registry=registry.host, repository=repo, tag="v1")

    image = ImageBuilder().add_layer(LayerBuilder().file("a", "x")).build()
    for repo in ("share/one", "share/two"):
        Pusher(registry.url).push(repo, image, tag="v1")
    client = RegistryClient()  # one run's
    first, second = (
        RegistrySource(ref("share/one"), SourceOptions(), client),
        RegistrySource(ref("share/two"), SourceOptions(), client),
    )
    assert first.get_manifest().data == second.get_manifest().data == image.manifest.data
    first.close()
    assert second.session() is first.session()  # closing one source keeps it open
    assert second.get_manifest().data == image.manifest.data
    other: list[object] = []
    thread = threading.Thread(
        target=lambda: other.append(RegistrySource(ref("share/one"), SourceOptions(), client).session())
    )
    thread.start()
    thread.join()
    assert other[0] is not first.session()
    strict = RegistrySource(ref("share/one"), SourceOptions(tls_verify=False), client)
    assert strict.session() is not first.session()  # other transport settings, other pool
    # Another run (another client) shares nothing with this one.
    assert (
        RegistrySource(ref("share/one"), SourceOptions(), RegistryClient()).session() is not first.session()
    )


# --- stalls and the per-image deadline -------------------------------------------------------

#: Small bounds so that a trickling server (one byte per 0.05 s) stalls in half a second.
STALL = {"stall_seconds": 0.5, "stall_bytes": 1024}


def test_a_stalled_manifest_is_retried_once_then_given_up_on(proxy: FaultProxy, images: Images) -> None:
    proxy.trickle_next("/manifests/")  # the response head itself trickles
    assert open_source(proxy.host, "x/oci", **STALL).get_manifest().data == images.oci.manifest.data
    for _ in range(2):
        proxy.trickle_next("/manifests/")
    with pytest.raises(
        RegistryError, match=rf"^{proxy.host}/x/oci:t: manifest t .* stalled: \d+ bytes"
    ) as caught:
        open_source(proxy.host, "x/oci", **STALL).get_manifest()
    assert not caught.value.temporary
    # One stall retried, the second given up on: not `retries` (3) more windows.
    assert [p for _, p, _ in proxy.requests].count("/v2/x/oci/manifests/t") == 2 + 2


def test_a_blob_stalled_mid_body_resumes_once_then_is_given_up_on(proxy: FaultProxy, images: Images) -> None:
    layer = images.big.layers[0]
    proxy.trickle_next("/blobs/", after=100_000)
    source = open_source(proxy.host, "x/big", **STALL)
    with source.open_blob(descriptor(layer.digest, len(layer.data))) as stream:
        assert read_all(stream) == layer.data
    ranges = [h.get("Range") for _, path, h in proxy.requests if "/blobs/" in path]
    assert len(ranges) == 2 and ranges[0] is None and ranges[1].startswith("bytes=")  # one resume
    for _ in range(2):
        proxy.trickle_next("/blobs/", after=100_000)
    stream = open_source(proxy.host, "x/big", **STALL).open_blob(descriptor(layer.digest, len(layer.data)))
    with pytest.raises(RegistryError, match=rf"x/big:t: blob {layer.digest} from .* stalled"):
        read_all(stream)
    stream.close()


def test_a_trickle_fast_enough_for_the_stall_floor_meets_the_image_deadline(
    proxy: FaultProxy, images: Images
) -> None:
    layer = images.big.layers[0]
    proxy.trickle_next("/blobs/", after=100_000)  # 20 bytes/s: above a 1-byte floor, for ever
    source = open_source(proxy.host, "x/big", timeout=1.5, stall_seconds=0.5, stall_bytes=1)
    stream = source.open_blob(descriptor(layer.digest, len(layer.data)))
    with pytest.raises(RegistryError, match=r"x/big:t: gave up on blob .* within --timeout 1\.5 s"):
        read_all(stream)
    stream.close()
    # The deadline covers every read of the image: its next request fails at once, unsent.
    sent = len(proxy.requests)
    with pytest.raises(RegistryError, match=r"--timeout 1\.5 s"):
        source.get_manifest()
    assert len(proxy.requests) == sent


def test_a_stalled_token_service_is_given_up_on(
    token_registry: RegistryServer, token_images: dict[str, BuiltImage]
) -> None:
    tokens = token_registry.tokens
    assert tokens is not None
    tokens.trickle_next = True
    source = open_source(token_registry.host, "team/app", creds="bob:builder", **STALL)
    with pytest.raises(RegistryError, match=rf"team/app:t: token from {tokens.realm} stalled"):
        source.get_manifest()


def test_default_bounds_give_up_on_a_stalled_registry_within_two_minutes() -> None:
    # The documented promise, as arithmetic on the one place the bounds live: a stall and its
    # single retry, with the longest backoff between them.
    from ociboot.sources.registry.transport import STALL_RETRIES

    assert (STALL_RETRIES + 1) * SourceOptions().stall_seconds + 2.0 < 120


# --- where credentials may go ----------------------------------------------------------------


def _refresh_token_authfile(tmp_path: Path, host: str, token: str) -> str:
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"auths": {host: {"identitytoken": token}}}))
    return str(authfile)


def test_token_redirect_to_another_host_is_not_followed(
    token_registry: RegistryServer,
    token_images: dict[str, BuiltImage],
    tmp_path: Path,
) -> None:
    tokens = token_registry.tokens
    assert tokens is not None
    tokens.refresh_tokens["refresh-token-redirected"] = "bob"
    elsewhere = TokenService(tmp_path)  # another origin (port) that records what reaches it
    try:
        tokens.redirect_next = f"{elsewhere.realm}?stolen"
        authfile = _refresh_token_authfile(tmp_path, token_registry.host, "refresh-token-redirected")
        with pytest.raises(AuthenticationError, match=rf"redirected to http://127\.0\.0\.1:{elsewhere.port}"):
            open_source(token_registry.host, "team/app", authfile=authfile).get_manifest()
        assert elsewhere.seen == []  # the refresh token was not re-POSTed there
    finally:
        elsewhere.stop()


def test_token_redirect_within_the_realm_origin_is_followed(
    token_registry: RegistryServer,
    token_images: dict[str, BuiltImage],
    tmp_path: Path,
) -> None:
    tokens = token_registry.tokens
    assert tokens is not None
    tokens.refresh_tokens["refresh-token-moved"] = "bob"
    tokens.redirect_next = f"{tokens.realm}/moved"
    before = len(tokens.seen)
    authfile = _refresh_token_authfile(tmp_path, token_registry.host, "refresh-token-moved")
    source = open_source(token_registry.host, "team/lib", authfile=authfile)
    assert source.get_manifest().data == token_images["team/lib"].manifest.data
    assert tokens.seen[before:] == [("POST", "/token"), ("POST", "/token/moved")]


def test_https_registry_naming_a_plain_http_realm_gets_no_credentials(
    tls_token_registry: RegistryServer,
) -> None:
    tokens = tls_token_registry.tokens
    assert tokens is not None and tokens.realm.startswith("http://")
    source = open_source(
        tls_token_registry.host,
        "team/app",
        creds="alice:wonderland",
        plain_http=False,
        cert_dir=str(tls_token_registry.cert_dir),
    )
    with pytest.raises(AuthenticationError, match=r"plain-HTTP token realm http://.*clear text"):
        source.get_manifest()
    assert tokens.seen == []


def test_a_registry_quoting_our_credentials_back_does_not_get_them_printed(
    basic_registry: RegistryServer, basic_image: BuiltImage
) -> None:
    front = FaultProxy(basic_registry.host)
    try:
        front.echo_auth_next("/manifests/")
        with pytest.raises(RegistryError, match=r"answered 400 .*Authorization: Basic \*\*\*") as caught:
            open_source(front.host, "team/basic", creds="alice:wonderland").get_manifest()
        assert "wonderland" not in str(caught.value)
        assert base64.b64encode(b"alice:wonderland").decode() not in str(caught.value)
    finally:
        front.close()


def test_a_tls_handshake_trickled_byte_by_byte_is_a_stall(tls_registry: RegistryServer) -> None:
    # Each handshake read gets a byte before any socket timeout; the handshake as a whole may not.
    slow = FaultProxy(tls_registry.host, trickle=0.05)  # the certificate alone takes a minute
    try:
        source = open_source(
            slow.host, "x/tls", plain_http=False, cert_dir=str(tls_registry.cert_dir), **STALL
        )
        with pytest.raises(RegistryError, match=rf"x/tls:t: {slow.host} did not answer in 0\.5 s"):
            source.get_manifest()
    finally:
        slow.close()


def test_a_stall_behind_an_http_proxy_is_caught_too(
    proxy: FaultProxy, images: Images, registry: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The proxy relays absolute-form requests to the registry, which serves them: a forward proxy.
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://{proxy.host}")
    for _ in range(2):
        proxy.trickle_next("/manifests/")
    with pytest.raises(RegistryError, match=rf"{registry.host}/x/oci:t: manifest t .* stalled"):
        open_source(registry.host, "x/oci", **STALL).get_manifest()
    assert [p for _, p, _ in proxy.requests] == [f"http://{registry.host}/v2/x/oci/manifests/t"] * 2
