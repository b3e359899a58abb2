"""What an audit audits (ociboot.audit.targets, ociboot.sources.registry.catalog): a real
registry's catalog and tag lists, page by page; --from files; a hostile registry refused."""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ociboot import pipeline
from ociboot.audit.targets import (
    READ_JOBS,
    Filters,
    Namespace,
    Target,
    enumerate_targets,
    parse_namespace,
    targets_from_file,
)
from ociboot.cli import app
from ociboot.errors import CatalogClosed, InvalidReference, InvalidTargetList, RegistryError
from ociboot.reflist import MAX_LINE_BYTES, MAX_LIST_BYTES
from ociboot.sources import SourceOptions
from ociboot.sources.registry import catalog
from ociboot.spec import MAX_MANIFEST_BYTES
from tests.support.faultproxy import FaultProxy
from tests.support.imagebuilder import BuiltImage, ImageBuilder, LayerBuilder, build_index
from tests.support.registry_push import Pusher
from tests.support.registry_server import RegistryServer, start_registry

pytestmark = pytest.mark.registry

BASE = LayerBuilder().dir("etc").file("etc/os-release", b"ID=test\n")


def image(created: str | None, marker: str, arch: str = "amd64") -> BuiltImage:
    """A small image sharing the base layer; `marker` makes its own layer (and digest) unique."""
    builder = ImageBuilder(arch=arch, created=created).add_layer(BASE)
    return builder.add_layer(LayerBuilder().file("marker", marker.encode())).build()


# repository -> tag -> created; "os" and "osx" tell a prefix from a string prefix.
LAYOUT: dict[str, dict[str, str | None]] = {
    "apps/web": {"1.0": "2024-01-01T00:00:00Z", "1.1": "2024-02-01T00:00:00Z", "2.0": "2024-03-01T00:00:00Z"},
    "os/alpine": {"3.18": "2023-05-09T00:00:00Z", "3.19": "2023-12-07T00:00:00Z", "edge": None},
    "os/debian": {
        "11": "2021-08-14T00:00:00Z",
        "12": "2023-06-10T00:00:00Z",
        "13": "2025-08-09T00:00:00.123456789Z",
        "testing": "2025-08-09T00:00:00.123456789Z",  # a tie with 13: the greater name is newer
        "sid": "not a time",
    },
    "os/fedora": {"39": "2023-11-07T00:00:00+01:00", "40": "2024-04-23T00:00:00Z"},
    "os/fedora/coreos": {"stable": "2024-05-01T00:00:00Z"},
    "osx": {"14": "2023-09-26T00:00:00Z", "15": "2024-09-16T00:00:00Z"},
}


@pytest.fixture(scope="module")
def namespace_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    # The registry's own page size is 3: an audit that asks for no page size still gets pages.
    server = start_registry(
        "namespace_registry", tmp_path_factory.mktemp("namespace"), http_extra=("catalog:", "  maxentries: 3")
    )
    pusher = Pusher(server.url)
    for repository, tags in LAYOUT.items():
        for tag, created in tags.items():
            pusher.push(repository, image(created, f"{repository}:{tag}"), tag)
    # An index whose newest image is newer than every other tag of os/fedora.
    index = build_index(
        [image("2023-01-01T00:00:00Z", "old", "amd64"), image("2024-06-01T00:00:00Z", "new", "arm64")]
    )
    pusher.push("os/fedora", index, "multi")
    yield server
    server.stop()


def options(**source: Any) -> pipeline.Options:
    return pipeline.Options(source=SourceOptions(**source))


def every_listed(*args: Any, **kwargs: Any) -> list[Target]:
    """enumerate_targets' targets, where every repository's tags could be listed."""
    found = enumerate_targets(*args, **kwargs)
    assert found.unlisted == []
    return found.targets


def listed(targets: list[Target]) -> list[str]:
    return [f"{t.repository}:{t.tag}" for t in targets]


def every_tag(*repositories: str) -> list[str]:
    tags = {r: sorted(LAYOUT[r]) for r in repositories}
    if "os/fedora" in tags:
        tags["os/fedora"] = sorted([*tags["os/fedora"], "multi"])
    return [f"{r}:{t}" for r in sorted(tags) for t in tags[r]]


def requests_logged(server: RegistryServer, path: str) -> list[str]:
    """The request URIs of GETs to `path` in the registry's own access log."""
    return re.findall(rf'"GET ({re.escape(path)}(?:\?[^ ]*)?) HTTP', server.log.read_text(errors="replace"))


# --- a real registry -------------------------------------------------------------------------


def test_page_size_two_follows_every_page_of_the_catalog(namespace_registry: RegistryServer) -> None:
    before = len(requests_logged(namespace_registry, "/v2/_catalog"))
    namespace = parse_namespace(f"docker://{namespace_registry.host}")
    targets = every_listed(namespace, options(), Filters(), page_size=2)
    assert listed(targets) == every_tag(*LAYOUT)
    assert all(t.registry == namespace_registry.host for t in targets)
    assert targets[0].reference == f"docker://{namespace_registry.host}/apps/web:1.0"
    asked = requests_logged(namespace_registry, "/v2/_catalog")[before:]
    # Six repositories two a page: the first page, then the continuations the registry named.
    assert asked == [
        "/v2/_catalog?n=2",
        "/v2/_catalog?last=os%2Falpine&n=2",
        "/v2/_catalog?last=os%2Ffedora&n=2",
    ]


def test_without_a_page_size_the_registrys_own_pages_are_followed(namespace_registry: RegistryServer) -> None:
    before = len(requests_logged(namespace_registry, "/v2/_catalog"))
    repositories = catalog.repositories(
        options().registry, namespace_registry.host, SourceOptions(), page_size=None
    )
    assert repositories == sorted(LAYOUT)
    asked = requests_logged(namespace_registry, "/v2/_catalog")[before:]
    assert asked[0] == "/v2/_catalog" and len(asked) >= 2  # maxentries 3 of 6 repositories


def test_tags_list_of_distribution_2_8_is_one_page(namespace_registry: RegistryServer) -> None:
    # Found by trying: docker-registry 2.8 ignores n on tags/list and sends every tag at once.
    before = len(requests_logged(namespace_registry, "/v2/os/debian/tags/list"))
    tags = catalog.tags(
        options().registry, namespace_registry.host, "os/debian", SourceOptions(), page_size=2
    )
    assert tags == sorted(LAYOUT["os/debian"])
    assert requests_logged(namespace_registry, "/v2/os/debian/tags/list")[before:] == [
        "/v2/os/debian/tags/list?n=2"
    ]


def test_a_listing_page_cut_mid_body_is_asked_again(namespace_registry: RegistryServer) -> None:
    # A dropped connection is no refusal: the GET is idempotent, as for a manifest.
    proxy = FaultProxy(namespace_registry.host)
    try:
        proxy.cut_next("/v2/_catalog", after=5)
        proxy.cut_next("/v2/os/debian/tags/list", after=5)
        found = every_listed(Namespace(proxy.host, "os/debian"), options(), Filters())
        asked = [path for _, path, _ in proxy.requests]
    finally:
        proxy.close()
    assert [t.tag for t in found] == sorted(LAYOUT["os/debian"])
    assert sum(p.startswith("/v2/os/debian/tags/list") for p in asked) == 2


def test_a_repository_the_registry_does_not_know_has_no_tags(namespace_registry: RegistryServer) -> None:
    assert catalog.tags(options().registry, namespace_registry.host, "no/such", SourceOptions()) == []


def test_a_prefix_selects_the_repositories_under_it_not_those_that_start_alike(
    namespace_registry: RegistryServer,
) -> None:
    namespace = parse_namespace(f"docker://{namespace_registry.host}/os")
    assert namespace == Namespace(namespace_registry.host, "os")
    targets = every_listed(namespace, options(), Filters(), page_size=2)
    assert listed(targets) == every_tag("os/alpine", "os/debian", "os/fedora", "os/fedora/coreos")
    exact = every_listed(
        parse_namespace(f"docker://{namespace_registry.host}/os/fedora/"), options(), Filters()
    )
    assert listed(exact) == every_tag("os/fedora", "os/fedora/coreos")


def test_repo_and_tag_filters_are_searched_not_matched_whole(namespace_registry: RegistryServer) -> None:
    namespace = parse_namespace(f"docker://{namespace_registry.host}")
    filters = Filters(repo=re.compile("fedora"), tag=re.compile(r"^\d+$"))
    assert listed(every_listed(namespace, options(), filters)) == ["os/fedora:39", "os/fedora:40"]
    filters = Filters(repo=re.compile(r"^os/(alpine|debian)$"), tag=re.compile(r"\."))
    assert listed(every_listed(namespace, options(), filters)) == ["os/alpine:3.18", "os/alpine:3.19"]


def test_newest_keeps_the_newest_tags_by_created(namespace_registry: RegistryServer) -> None:
    namespace = parse_namespace(f"docker://{namespace_registry.host}/os")
    targets = every_listed(namespace, options(), Filters(newest=2))
    assert listed(targets) == [
        # edge has no created: oldest.
        "os/alpine:3.18",
        "os/alpine:3.19",
        # 13 and testing tie to the nanosecond: by name; sid's time is not RFC 3339: oldest.
        "os/debian:13",
        "os/debian:testing",
        # The index counts as its newest image (2024-06-01); 39 is 2023-11-06T23:00Z.
        "os/fedora:40",
        "os/fedora:multi",
        "os/fedora/coreos:stable",
    ]
    one = every_listed(namespace, options(), Filters(repo=re.compile("debian"), newest=1))
    assert listed(one) == ["os/debian:testing"]
    with pytest.raises(ValueError, match="at least one"):
        Filters(newest=0)


def test_newest_counts_an_unreadable_tag_as_oldest(
    namespace_registry: RegistryServer, tmp_path: Path
) -> None:
    host = namespace_registry.host
    listing = tmp_path / "list"
    listing.write_text(f"{host}/apps/web:1.0\n{host}/apps/web:2.0\n{host}/apps/web:gone\n")
    targets = targets_from_file(str(listing), Filters(newest=2), options())
    assert listed(targets) == ["apps/web:1.0", "apps/web:2.0"]


def test_newest_counts_a_tag_whose_reading_failed_unexpectedly_as_oldest(
    namespace_registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bug or a MemoryError while reading one tag's config (here: 2.0's resolution raises what
    # no ociboot error is) makes its time unknown, as `check` makes such an image unreadable:
    # never a traceback that ends the whole audit.
    from ociboot import image as image_module

    real = image_module.resolve_index

    def failing(source, limit, top=None):  # type: ignore[no-untyped-def]
        if "2.0" in str(source.ref):
            raise RuntimeError("a bug")
        return real(source, limit, top)

    monkeypatch.setattr(image_module, "resolve_index", failing)
    host = namespace_registry.host
    listing = tmp_path / "list"
    listing.write_text(f"{host}/apps/web:1.0\n{host}/apps/web:2.0\n")
    targets = targets_from_file(str(listing), Filters(newest=1), options())
    assert listed(targets) == ["apps/web:1.0"]


def test_newest_counts_a_time_past_the_calendar_as_unknown(tmp_path: Path) -> None:
    # RFC 3339 times whose UTC instant falls outside years 1-9999: a registry's image may say
    # so, and --newest must sort them (as unknown, oldest), not fail the whole audit.
    server = start_registry("newest_overflow", tmp_path)
    try:
        pusher = Pusher(server.url)
        for tag, created in (
            ("dated", "2024-01-01T00:00:00Z"),
            ("after", "9999-12-31T23:59:59-01:00"),
            ("before", "0001-01-01T00:00:00+01:00"),
        ):
            pusher.push("os/time", image(created, f"time:{tag}"), tag)
        namespace = parse_namespace(f"docker://{server.host}")
        assert listed(every_listed(namespace, options(), Filters(newest=1))) == ["os/time:dated"]
    finally:
        server.stop()


def test_the_catalog_scope_is_asked_of_a_token_registry(
    token_registry: RegistryServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    tokens = token_registry.tokens
    assert tokens is not None
    Pusher(token_registry.url, "alice", "wonderland").push("audit/listed", image(None, "token"), "v1")
    namespace = parse_namespace(f"docker://{token_registry.host}/audit")
    before = len(tokens.issued)
    targets = every_listed(namespace, options(creds="alice:wonderland"), Filters(), page_size=2)
    assert listed(targets) == ["audit/listed:v1"]
    scopes = [scope for user, asked in tokens.issued[before:] if user == "alice" for scope in asked]
    assert "registry:catalog:*" in scopes
    assert "repository:audit/listed:pull" in scopes
    # bob may pull team/app but not list the catalog; nobody may anonymously.
    for creds in ("bob:builder", None):
        with pytest.raises(CatalogClosed) as closed:
            enumerate_targets(namespace, options(creds=creds), Filters())
        message = str(closed.value)
        assert "the catalog is closed; give --from FILE" in message and token_registry.host in message
        assert "\n" not in message and "builder" not in message
        assert closed.value.exit_code == 3


# --- --from FILE -------------------------------------------------------------------------------


def test_a_reference_file_lists_registry_images(tmp_path: Path) -> None:
    digest = "sha256:" + "a" * 64
    listing = tmp_path / "images"
    listing.write_text(
        "# the release\n"
        "\n"
        "  docker://registry.example:5000/os/debian:12  \n"
        "registry.example:5000/os/debian:12\n"  # the same tag again: once
        "registry.example:5000/os/alpine\n"  # no tag: latest
        f"registry.example:5000/os/alpine@{digest}\n"
        f"localhost/tools/box:1@{digest}\n"
        "other.example/os/fedora:40\n"
    )
    targets = targets_from_file(str(listing), Filters(), options())
    assert [(t.registry, t.repository, t.tag) for t in targets] == [
        ("localhost", "tools/box", f"1@{digest}"),
        ("other.example", "os/fedora", "40"),
        ("registry.example:5000", "os/alpine", "latest"),
        ("registry.example:5000", "os/alpine", digest),
        ("registry.example:5000", "os/debian", "12"),
    ]
    assert [t.reference for t in targets] == [
        f"docker://localhost/tools/box:1@{digest}",
        "docker://other.example/os/fedora:40",
        "docker://registry.example:5000/os/alpine:latest",
        f"docker://registry.example:5000/os/alpine@{digest}",
        "docker://registry.example:5000/os/debian:12",
    ]
    filtered = targets_from_file(
        str(listing), Filters(repo=re.compile("^os/"), tag=re.compile("^4|^12")), options()
    )
    assert listed(filtered) == ["os/fedora:40", "os/debian:12"]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("oci:/srv/layout:1", "not a registry image"),
        ("debian:12", "names no registry host"),
        ("registry.example/Upper:1", "must be lowercase"),
        ("registry.example/x:bad tag", "invalid"),
    ],
)
def test_a_line_that_is_no_registry_image_is_named_by_number(tmp_path: Path, line: str, why: str) -> None:
    listing = tmp_path / "images"
    listing.write_text(f"# header\nregistry.example/ok:1\n\n{line}\n")
    with pytest.raises(InvalidTargetList) as refused:
        targets_from_file(str(listing), Filters(), options())
    message = str(refused.value)
    assert message.startswith(f"--from {listing} line 4: ") and why in message
    assert refused.value.exit_code == 2


def test_a_missing_reference_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidTargetList, match="No such file"):
        targets_from_file(str(tmp_path / "absent"), Filters(), options())


def test_a_reference_file_of_no_end_is_refused_at_its_bounds_not_held(tmp_path: Path) -> None:
    listing = tmp_path / "list"
    listing.write_text("# a list\n" + "x" * (3 * MAX_LINE_BYTES))
    with pytest.raises(InvalidTargetList, match=f"line 2: over {MAX_LINE_BYTES} bytes"):
        targets_from_file(str(listing), Filters(), options())
    # Lines within their bound, but more of them than a list holds.
    comment = "#" * (MAX_LINE_BYTES - 1) + "\n"
    listing.write_text(comment * (MAX_LIST_BYTES // len(comment) + 1))
    with pytest.raises(InvalidTargetList, match=f"over {MAX_LIST_BYTES} bytes"):
        targets_from_file(str(listing), Filters(), options())
    # check --from reads its list the same way: a usage error.
    result = CliRunner().invoke(app, ["check", "--from", str(listing)])
    assert result.exit_code == 2 and f"over {MAX_LIST_BYTES} bytes" in " ".join(result.stderr.split())


@pytest.mark.parametrize(
    "text",
    [
        "registry.example/os",
        "docker://registry.example/os:1",
        "docker://debian",
        "docker://host/Os",
        "docker://",
    ],
)
def test_a_namespace_is_a_host_and_a_prefix(text: str) -> None:
    with pytest.raises(InvalidReference, match="docker://HOST\\[/PREFIX\\]"):
        parse_namespace(text)


def test_namespaces_parse() -> None:
    assert parse_namespace("docker://localhost:5000") == Namespace("localhost:5000", "")
    assert parse_namespace("docker://r.example/a/b/") == Namespace("r.example", "a/b")
    assert str(parse_namespace("docker://r.example/a")) == "docker://r.example/a"


# --- a hostile registry ------------------------------------------------------------------------


@dataclass
class Hostile:
    """A registry that answers /v2/_catalog (and /v2/x/tags/list) as `answer` says: given the
    request path, (status, headers, body or a body writer, or None to close without answering)."""

    answer: Callable[[str], tuple[int, dict[str, str], bytes | Callable[[Any], None]]]
    seen: list[str] = field(default_factory=list)
    host: str = ""

    def __post_init__(self) -> None:
        hostile = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                hostile.seen.append(self.path)
                if self.path == "/v2/":
                    status, headers, body = 200, {}, b"{}"
                else:
                    status, headers, body = hostile.answer(self.path)
                if body is None:  # no answer: the connection closed without a response
                    self.close_connection = True
                    return
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if isinstance(body, bytes):
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_header("Connection", "close")
                self.end_headers()
                with contextlib.suppress(OSError):
                    body(self.wfile)
                self.close_connection = True

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def hostile() -> Iterator[Callable[..., Hostile]]:
    started: list[Hostile] = []

    def start(answer: Callable[[str], tuple[int, dict[str, str], Any]]) -> Hostile:
        server = Hostile(answer)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def page(
    names: list[Any], link: str | None = None, key: str = "repositories"
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json"}
    if link is not None:
        headers["Link"] = f'<{link}>; rel="next"'
    return 200, headers, json.dumps({key: names}).encode()


def refusal(server: Hostile, **source: Any) -> str:
    namespace = Namespace(server.host, "")
    with pytest.raises(RegistryError) as refused:
        enumerate_targets(namespace, options(timeout=30, stall_seconds=5, **source), Filters(), page_size=2)
    message = str(refused.value)
    assert "\n" not in message and server.host in message
    return message


def test_a_link_loop_is_refused(hostile: Callable[..., Hostile]) -> None:
    links = {"/v2/_catalog?n=2": "/v2/_catalog?last=b&n=2", "/v2/_catalog?last=b&n=2": "/v2/_catalog?n=2"}
    server = hostile(lambda path: page(["a", "b"], links[path]))
    assert "loops" in refusal(server)
    assert len(server.seen) <= 1 + 2 + 1  # /v2/ (maybe), two pages, nothing after the loop


def test_a_next_page_on_another_host_or_scheme_is_not_followed(hostile: Callable[..., Hostile]) -> None:
    elsewhere: list[str] = []
    for target in ("http://localhost:{port}/v2/_catalog?last=b", "https://{host}/v2/_catalog?last=b"):
        server = hostile(lambda path, t=target: page(["a"], t.format(port=0, host="x")))
        port = server.host.rpartition(":")[2]
        server.answer = lambda path, t=target, p=port, s=server: page(["a"], t.format(port=p, host=s.host))
        message = refusal(server)
        assert "refusing to follow it" in message
        assert not any("last=" in path for path in server.seen)
        elsewhere += server.seen
    assert elsewhere


def test_a_next_page_of_another_api_is_not_followed(hostile: Callable[..., Hostile]) -> None:
    server = hostile(lambda path: page(["a"], "/v2/a/blobs/sha256:" + "0" * 64))
    assert "another API" in refusal(server)


def test_an_endless_page_is_cut_at_the_page_cap(hostile: Callable[..., Hostile]) -> None:
    sent = [0]

    def endless(out: Any) -> None:
        out.write(b'{"repositories": ["a"')
        chunk = b', "a"' * 20000
        while sent[0] < 64 * MAX_MANIFEST_BYTES:  # far past the cap: the reader must stop first
            out.write(chunk)
            sent[0] += len(chunk)

    server = hostile(lambda path: (200, {"Content-Type": "application/json"}, endless))
    assert f"over the {MAX_MANIFEST_BYTES} byte cap" in refusal(server)
    # What the server managed to write is the cap plus what the sockets buffer.
    assert sent[0] < 8 * MAX_MANIFEST_BYTES


def test_endless_pages_are_cut_at_the_page_count(
    hostile: Callable[..., Hostile], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog, "MAX_PAGES", 5)
    count = iter(range(1_000_000))
    server = hostile(lambda path: page([], f"/v2/_catalog?last=a{next(count)}&n=2"))
    assert "over 5 pages" in refusal(server)
    assert len([p for p in server.seen if p.startswith("/v2/_catalog")]) == 5


def test_too_many_names_are_refused_not_cut(
    hostile: Callable[..., Hostile], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog, "MAX_REPOSITORIES", 3)
    server = hostile(
        lambda path: page(["a", "b"], "/v2/_catalog?last=b&n=2") if "last" not in path else page(["c", "d"])
    )
    assert "over 3 repositories" in refusal(server)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<html>not json</html>", "is not valid JSON"),
        (b"[" * 100_000, "nested too deeply"),
        (b'["a"]', "is not a JSON object"),
        (b'{"repositories": "a"}', "not a list"),
        (b'{"repositories": [1]}', "lists 1, not a valid repository name"),
        (b'{"repositories": ["../etc"]}', "not a valid repository name"),
        (b'{"repositories": ["Upper"]}', "not a valid repository name"),
        (b'{"repositories": ["a\\u001b[31mred"]}', "not a valid repository name"),
    ],
)
def test_hostile_catalog_json_is_a_one_line_error(
    hostile: Callable[..., Hostile], body: bytes, why: str
) -> None:
    server = hostile(lambda path: (200, {"Content-Type": "application/json"}, body))
    message = refusal(server)
    assert why in message and "\x1b" not in message


@pytest.mark.parametrize(
    ("tags", "why"),
    [
        ({"name": "other", "tags": ["1"]}, "is for 'other', not 'a'"),
        ({"name": "a", "tags": ["-bad"]}, "not a valid tag name"),
        ({"name": "a", "tags": ["a" * 129]}, "not a valid tag name"),
    ],
)
def test_a_hostile_tag_list_is_its_repositorys_failure_and_the_others_are_listed(
    hostile: Callable[..., Hostile], tags: dict[str, Any], why: str
) -> None:
    def answer(path: str) -> tuple[int, dict[str, str], bytes]:
        if path.startswith("/v2/_catalog"):
            return page(["a", "b"])
        if path.startswith("/v2/a/"):
            return 200, {}, json.dumps(tags).encode()
        return page(["1"], key="tags")

    server = hostile(answer)
    found = enumerate_targets(Namespace(server.host, ""), options(), Filters())
    assert found.targets == [Target(server.host, "b", "1")]
    [unlisted] = found.unlisted
    assert (unlisted.registry, unlisted.repository) == (server.host, "a")
    assert why in unlisted.error and server.host in unlisted.error and "\n" not in unlisted.error


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, "DENIED"), (403, "DENIED"), (400, "DENIED"), (500, "NAME_UNKNOWN"), (400, "MANIFEST_UNKNOWN")],
)
def test_a_refused_tag_list_is_its_repositorys_failure(
    hostile: Callable[..., Hostile], status: int, code: str
) -> None:
    # A not-found code under another status than 404 is no "this repository has no tags": the
    # repository would vanish from the audit, which could then pass without having seen it.
    long = "x" * 100_000  # a registry's message is quoted, not whole

    def answer(path: str) -> tuple[int, dict[str, str], bytes]:
        if path.startswith("/v2/_catalog"):
            return page(["a", "b", "c"])
        if path.startswith("/v2/b/"):
            body = {"errors": [{"code": code, "message": long}]}
            return status, {"Content-Type": "application/json"}, json.dumps(body).encode()
        return page(["1"], key="tags")

    server = hostile(answer)
    found = enumerate_targets(Namespace(server.host, ""), options(), Filters())
    assert [t.repository for t in found.targets] == ["a", "c"]
    assert [u.repository for u in found.unlisted] == ["b"]
    assert len(found.unlisted[0].error) < 1000


def test_only_a_404_is_a_repository_without_tags(hostile: Callable[..., Hostile]) -> None:
    def answer(path: str) -> tuple[int, dict[str, str], bytes]:
        if path.startswith("/v2/_catalog"):
            return page(["a", "b"])
        if path.startswith("/v2/b/"):
            return 404, {"Content-Type": "application/json"}, b'{"errors": [{"code": "NAME_UNKNOWN"}]}'
        return page(["1"], key="tags")

    server = hostile(answer)
    found = enumerate_targets(Namespace(server.host, ""), options(), Filters())
    assert (found.targets, found.unlisted) == ([Target(server.host, "a", "1")], [])


def test_a_next_page_that_is_no_url_is_refused_not_a_crash(hostile: Callable[..., Hostile]) -> None:
    broken = "http://[::1/v2/a/tags/list?n=2"  # an unclosed IPv6 bracket: urljoin raises ValueError

    def answer(path: str) -> tuple[int, dict[str, str], bytes]:
        if path.startswith("/v2/_catalog"):
            return page(["a", "b"])
        if path.startswith("/v2/a/"):
            return page(["1"], broken, key="tags")
        return page(["1"], key="tags")

    server = hostile(answer)
    found = enumerate_targets(Namespace(server.host, ""), options(), Filters())
    assert found.targets == [Target(server.host, "b", "1")]
    [unlisted] = found.unlisted
    assert unlisted.repository == "a" and "next page is no URL" in unlisted.error
    catalog_server = hostile(lambda path: page(["a"], broken))
    assert "next page is no URL" in refusal(catalog_server)


def test_a_registry_that_says_try_later_past_the_retries_ends_the_listing(
    hostile: Callable[..., Hostile],
) -> None:
    # 503 on every tag list: the registry's trouble, not each repository's, so the listing stops
    # rather than waiting out the retries once per repository.
    def answer(path: str) -> tuple[int, dict[str, str], bytes]:
        if path.startswith("/v2/_catalog"):
            return page([f"r{i}" for i in range(20)])
        return 503, {"Content-Type": "application/json"}, b'{"errors": [{"code": "UNAVAILABLE"}]}'

    server = hostile(answer)
    with pytest.raises(RegistryError) as stopped:
        enumerate_targets(Namespace(server.host, ""), options(retries=1), Filters())
    assert stopped.value.status == 503
    assert sum("/tags/list" in p for p in server.seen) <= 2 * READ_JOBS


def test_find_document_is_none_only_for_a_404(hostile: Callable[..., Hostile]) -> None:
    # What the referrers readers ask: a 404 alone says "no referrers API"; a not-found code
    # under another status is an error, never "absent" (verdicts would fall back to the tag).
    from ociboot.errors import ImageNotFound
    from ociboot.ref import ImageRef, Transport
    from ociboot.sources.registry.endpoint import Endpoint

    status = {"now": 404}
    server = hostile(lambda path: (status["now"], {}, b'{"errors": [{"code": "MANIFEST_UNKNOWN"}]}'))
    ref = ImageRef(Transport.DOCKER, registry=server.host, repository="a")
    endpoint = Endpoint(options().registry, ref, SourceOptions(timeout=30))
    url = endpoint.url("referrers", "sha256:" + "0" * 64)
    assert endpoint.find_document(url, "application/json", "referrers") is None
    status["now"] = 400
    with pytest.raises(ImageNotFound):
        endpoint.find_document(url, "application/json", "referrers")


def test_a_registry_that_stops_answering_ends_the_listing(hostile: Callable[..., Hostile]) -> None:
    # No answer at all is the registry's failure, not one repository's: every other repository
    # would wait out the same silence, so the listing stops with it.
    def answer(path: str) -> tuple[int, dict[str, str], bytes | None]:
        return page(["a", "b"]) if path.startswith("/v2/_catalog") else (0, {}, None)

    server = hostile(answer)
    with pytest.raises(RegistryError) as stopped:
        enumerate_targets(Namespace(server.host, ""), options(timeout=30, stall_seconds=5), Filters())
    assert stopped.value.status is None and server.host in str(stopped.value)


def test_a_closed_catalog_is_its_own_error(hostile: Callable[..., Hostile]) -> None:
    for status in (401, 403, 404):
        server = hostile(lambda path, s=status: (s, {}, b'{"errors": [{"code": "UNAUTHORIZED"}]}'))
        with pytest.raises(CatalogClosed, match="the catalog is closed; give --from FILE"):
            enumerate_targets(Namespace(server.host, ""), options(), Filters())


def test_link_headers_parse() -> None:
    assert catalog.next_link('</v2/_catalog?last=b&n=2>; rel="next"') == "/v2/_catalog?last=b&n=2"
    assert catalog.next_link('<http://a/1>; rel="prev", <http://a/3>; rel="next"') == "http://a/3"
    assert catalog.next_link("<http://a/3>; REL=next; title=x") == "http://a/3"
    assert catalog.next_link('<http://a/1>; rel="prev"') is None
    assert catalog.next_link("") is None
