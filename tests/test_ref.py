"""Reference grammar: containers-transports(5) with distribution/reference normalisation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ociboot.digest import Digest
from ociboot.errors import InvalidReference
from ociboot.ref import ImageRef, Transport, parse_ref, redact

D = "sha256:" + "ab" * 32
DIGEST = Digest.parse(D)


def docker(registry: str, repository: str, tag: str | None = None, digest: Digest | None = None) -> ImageRef:
    return ImageRef(Transport.DOCKER, registry=registry, repository=repository, tag=tag, digest=digest)


VALID = [
    # bare names: Docker Hub normalisation (distribution/reference normalize.go)
    ("alpine", docker("docker.io", "library/alpine", "latest"), "docker://docker.io/library/alpine:latest"),
    ("alpine:3.19", docker("docker.io", "library/alpine", "3.19"), None),
    ("user/app", docker("docker.io", "user/app", "latest"), None),
    ("docker.io/alpine", docker("docker.io", "library/alpine", "latest"), None),
    ("index.docker.io/alpine", docker("docker.io", "library/alpine", "latest"), None),
    ("registry-1.docker.io/x/y:1", docker("docker.io", "x/y", "1"), None),
    (
        f"alpine@{D}",
        docker("docker.io", "library/alpine", None, DIGEST),
        f"docker://docker.io/library/alpine@{D}",
    ),
    (f"alpine:3@{D}", docker("docker.io", "library/alpine", "3", DIGEST), None),
    # registries: a first component with '.' or ':' or 'localhost'
    ("localhost/foo", docker("localhost", "foo", "latest"), None),
    ("localhost:5000/foo/bar:v1", docker("localhost:5000", "foo/bar", "v1"), None),
    ("quay.io/a/b/c:tag_1.x-y", docker("quay.io", "a/b/c", "tag_1.x-y"), None),
    ("[::1]:5000/img", docker("[::1]:5000", "img", "latest"), "docker://[::1]:5000/img:latest"),
    ("127.0.0.1:5000/a__b/c-d.e", docker("127.0.0.1:5000", "a__b/c-d.e", "latest"), None),
    # a one-component name with a port-looking suffix is a tag, as in distribution
    ("localhost:5000", docker("docker.io", "library/localhost", "5000"), None),
    # docker:// applies the same normalisation (skopeo does)
    ("docker://alpine", docker("docker.io", "library/alpine", "latest"), None),
    ("docker://ghcr.io/o/r:t", docker("ghcr.io", "o/r", "t"), "docker://ghcr.io/o/r:t"),
    # file transports: split at the first ':' like containers/image
    ("oci:/tmp/layout", ImageRef(Transport.OCI, path="/tmp/layout"), "oci:/tmp/layout"),
    ("oci:dir:v1", ImageRef(Transport.OCI, path="dir", name="v1"), "oci:dir:v1"),
    ("oci:dir:example.com/foo:1.0", ImageRef(Transport.OCI, path="dir", name="example.com/foo:1.0"), None),
    ("oci:dir:@2", ImageRef(Transport.OCI, path="dir", index=2), None),
    (f"oci:dir:@{D}", ImageRef(Transport.OCI, path="dir", digest=DIGEST), None),
    ("oci-archive:img.tar", ImageRef(Transport.OCI_ARCHIVE, path="img.tar"), None),
    ("oci-archive:./a b.tar:Tag_1", ImageRef(Transport.OCI_ARCHIVE, path="./a b.tar", name="Tag_1"), None),
    ("docker-archive:s.tar", ImageRef(Transport.DOCKER_ARCHIVE, path="s.tar"), None),
    (
        "docker-archive:s.tar:busybox:1",
        ImageRef(Transport.DOCKER_ARCHIVE, path="s.tar", name="busybox:1"),
        None,
    ),
    ("docker-archive:s.tar:busybox", ImageRef(Transport.DOCKER_ARCHIVE, path="s.tar", name="busybox"), None),
    ("docker-archive:s.tar:@0", ImageRef(Transport.DOCKER_ARCHIVE, path="s.tar", index=0), None),
]


@pytest.mark.parametrize(("text", "expected", "canonical"), VALID)
def test_parse_valid(text: str, expected: ImageRef, canonical: str | None) -> None:
    ref = parse_ref(text)
    assert ref == expected
    if canonical is not None:
        assert str(ref) == canonical
    assert parse_ref(str(ref)) == ref


INVALID = [
    ("docker://Foo/bar", 'invalid reference "docker://Foo/bar": repository "Foo/bar" must be lowercase'),
    ("UPPER", 'repository "UPPER" must be lowercase'),
    ("docker:alpine", 'needs "//" after "docker:"'),
    ("http://x/y", 'unknown transport "http"'),
    ("dir:/tmp/x", 'unsupported transport "dir"'),
    ("containers-storage:alpine", 'unsupported transport "containers-storage"'),
    ("oci:", "empty path"),
    ("oci::v1", "empty path"),
    ("oci-archive:", "empty path"),
    ("docker-archive:", "empty path"),
    ("oci:dir:", 'empty image name after "oci:dir:"'),
    ("oci:dir:-bad", 'image name "-bad" is not a valid OCI ref.name'),
    ("oci:dir:a//b", 'image name "a//b" is not a valid OCI ref.name'),
    ("alpine@sha256:abc", 'digest "sha256:abc" is invalid'),
    ("alpine@md5:" + "a" * 32, 'digest "md5:' + "a" * 32 + '" is invalid'),
    ("alpine@", 'digest "" is invalid'),
    (f"oci:dir:@sha256:{'z' * 64}", "is invalid"),
    ("alpine:", 'tag "" is invalid'),
    ("alpine:-x", 'tag "-x" is invalid'),
    ("alpine:" + "t" * 129, "is invalid"),
    ("docker-archive:s.tar:@x", 'image index "@x" must be a non-negative integer'),
    ("docker-archive:s.tar:@-1", 'image index "@-1" must be a non-negative integer'),
    ("docker-archive:s.tar:Busy:1", 'repository "Busy" must be lowercase'),
    (f"docker-archive:s.tar:busybox@{D}", "must be NAME[:TAG], not a digest"),
    ("bad_host.com:x/repo", 'registry "bad_host.com:x" is not a valid host[:port]'),
    ("[zz]:5000/a", 'registry "[zz]:5000" is not a valid host[:port]'),
    ("a//b", 'repository "a//b" has an invalid component ""'),
    ("a/-b", 'has an invalid component "-b"'),
    ("a_-b", 'has an invalid component "a_-b"'),
    # distribution reads a first component with '.' as a registry, so this is a bad host
    ("0.0_0/0", 'registry "0.0_0" is not a valid host[:port]'),
    ("quay.io/", "empty repository"),
    ("docker://", "empty reference"),
    ("", "empty"),
    ("   ", "empty"),
    ("x.io/" + "a" * 260, "longer than 255"),
]


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_parse_invalid(text: str, message: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_ref(text)
    assert message in str(info.value)
    assert str(info.value).startswith(f'invalid reference "{text}": ')


def test_invalid_reference_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_ref("docker:nope")


def test_with_digest_docker_drops_tag() -> None:
    ref = parse_ref("quay.io/a/b:1").with_digest(DIGEST)
    assert ref == docker("quay.io", "a/b", None, DIGEST)
    assert str(ref) == f"docker://quay.io/a/b@{D}"
    assert parse_ref(str(ref)) == ref


def test_with_digest_file_transport_replaces_name() -> None:
    ref = parse_ref("oci:lay:v1").with_digest(DIGEST)
    assert ref == ImageRef(Transport.OCI, path="lay", digest=DIGEST)
    assert str(ref) == f"oci:lay:@{D}"


def test_display() -> None:
    assert parse_ref("alpine").display == "docker.io/library/alpine:latest"
    assert parse_ref(f"localhost:5000/x@{D}").display == f"localhost:5000/x@{D}"
    assert parse_ref("oci:dir:v1").display == "oci:dir:v1"


def test_api_host() -> None:
    assert parse_ref("alpine").api_host == "registry-1.docker.io"
    assert parse_ref("localhost:5000/x").api_host == "localhost:5000"


# --- round trip over generated references ----------------------------------------------------

_alnum = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6)
_sep = st.sampled_from([".", "_", "__", "-", "--"])
_component = st.builds(
    lambda first, rest: first + "".join(s + a for s, a in rest),
    _alnum,
    st.lists(st.tuples(_sep, _alnum), max_size=2),
)
_repo = st.lists(_component, min_size=1, max_size=3).map("/".join)
_host = st.sampled_from(
    [
        "",
        "docker.io/",
        "index.docker.io/",
        "localhost/",
        "localhost:5000/",
        "[::1]:5000/",
        "Quay.IO/",
        "a-b.c:1/",
    ]
)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_digest = st.from_regex(r"[a-f0-9]{64}", fullmatch=True).map(lambda h: "sha256:" + h)


def _registry_free(host: str, repo: str) -> bool:
    """Without a host, a first component holding '.' would itself be read as a registry."""
    first = repo.split("/")[0]
    return bool(host) or "/" not in repo or ("." not in first and first != "localhost")


_docker_text = (
    st.tuples(st.sampled_from(["", "docker://"]), _host, _repo, st.none() | _tag, st.none() | _digest)
    .filter(lambda parts: _registry_free(parts[1], parts[2]))
    .map(lambda p: f"{p[0]}{p[1]}{p[2]}{':' + p[3] if p[3] else ''}{'@' + p[4] if p[4] else ''}")
)
_path = st.text(
    st.characters(blacklist_characters=":\x00", blacklist_categories=("Cs",)), min_size=1, max_size=12
).filter(lambda p: p.strip() != "")
_ref_name = st.from_regex(r"[A-Za-z0-9]+([-._:@+][A-Za-z0-9]+){0,3}(/[A-Za-z0-9]+){0,2}", fullmatch=True)
_file_text = st.builds(
    lambda transport, path, detail: f"{transport}:{path}{detail}",
    st.sampled_from(["oci", "oci-archive", "docker-archive"]),
    _path,
    st.one_of(
        st.just(""),
        st.integers(0, 999).map(lambda n: f":@{n}"),
        _digest.map(lambda d: f":@{d}"),
    ),
)
_oci_named = st.builds(lambda path, name: f"oci:{path}:{name}", _path, _ref_name)


@given(st.one_of(_docker_text, _file_text, _oci_named))
def test_round_trip(text: str) -> None:
    ref = parse_ref(text)
    assert parse_ref(str(ref)) == ref
    assert str(parse_ref(str(ref))) == str(ref)
    if ref.transport is Transport.DOCKER:
        assert ref.tag is not None or ref.digest is not None
        assert ref.registry != "index.docker.io"
        if ref.registry == "docker.io":
            assert "/" in ref.repository


@given(_docker_text)
def test_bare_and_docker_scheme_agree(text: str) -> None:
    bare = text.removeprefix("docker://")
    assert parse_ref(bare) == parse_ref("docker://" + bare)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("docker://alice:hunter2@quay.example/os/image:v1", "docker://***@quay.example/os/image:v1"),
        ("alice:hunter2@quay.example/os/image", "***@quay.example/os/image"),
        ("https://alice:hunter2@quay.example/v2/", "https://***@quay.example/v2/"),
        ("docker://alice:p@ss/w0rd@quay.example/os", "docker://***@quay.example/os"),
        (f"docker://a:hunter2@quay.example/os@{D}", f"docker://***@quay.example/os@{D}"),
        # Not a userinfo: left as written.
        (f"quay.example/os@{D}", f"quay.example/os@{D}"),
        ("alpine@latest", "alpine@latest"),
        ("oci:/srv/a:b@c/layout:ref", "oci:/srv/a:b@c/layout:ref"),
    ],
)
def test_redact_masks_userinfo(text: str, shown: str) -> None:
    assert redact(text) == shown
    if shown != text:
        with pytest.raises(InvalidReference) as caught:
            parse_ref(text)
        assert "hunter2" not in str(caught.value) and "p@ss" not in str(caught.value)
        assert str(caught.value).startswith(f'invalid reference "{shown}": a reference has no user:password@')
