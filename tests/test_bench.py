"""bench/ is a package on the tests' helpers: its registry is the tests' registry, its push the
tests' pusher, and no module of the repository edits the import path."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import requests

from bench import audit, images, promote
from bench import registry as bench_registry
from tests.support import registry_server

REPO = Path(__file__).resolve().parent.parent


def _edits_import_path(tree: ast.AST) -> bool:
    return any(
        isinstance(node, ast.Attribute)
        and node.attr == "path"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
        for node in ast.walk(tree)
    )


def test_no_module_edits_the_import_path() -> None:
    found = [
        str(path.relative_to(REPO))
        for folder in ("ociboot", "tests", "fixtures", "bench")
        for path in sorted((REPO / folder).rglob("*.py"))
        if "work" not in path.relative_to(REPO).parts and _edits_import_path(ast.parse(path.read_text()))
    ]
    assert not found, "import packages (python -m ...) instead of editing sys.path: " + ", ".join(found)


def test_the_bench_starts_the_tests_registry() -> None:
    assert bench_registry.start_registry is registry_server.start_registry


@pytest.mark.registry
def test_bench_push_streams_a_layout_and_counts_blob_bytes_fetched_and_mounts(tmp_path: Path) -> None:
    layout = images.one_layer(tmp_path, 64 << 10)
    server = bench_registry.start(tmp_path / "registry")
    try:
        digest = bench_registry.push(server, layout, "bench/one", "v1")
        manifest = requests.get(
            f"{server.url}/v2/bench/one/manifests/v1",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
            timeout=10,
        )
        assert manifest.headers["Docker-Content-Digest"] == digest
        layer = json.loads(manifest.content)["layers"][0]
        offset = bench_registry.log_offset(server)
        assert (
            len(requests.get(f"{server.url}/v2/bench/one/blobs/{layer['digest']}", timeout=10).content)
            == (layer["size"])
        )
        assert bench_registry.blob_bytes_since(server, offset, {layer["digest"]}) == layer["size"]
        assert bench_registry.blob_bytes_since(server, offset, {"sha256:" + "0" * 64}) == 0

        offset = bench_registry.log_offset(server)
        mount = f"{server.url}/v2/prod/os/blobs/uploads/?mount={layer['digest']}&from=bench/one"
        assert requests.post(mount, timeout=10).status_code == 201
        missing = f"{server.url}/v2/prod/os/blobs/uploads/?mount=sha256:{'0' * 64}&from=bench/one"
        assert requests.post(missing, timeout=10).status_code == 202  # no such blob: an upload starts
        assert bench_registry.mounts_since(server, offset) == 1
        assert promote.manifest_digest(server, "bench/one", "v1") == digest
        assert promote.manifest_digest(server, "prod/os", "v1") is None
    finally:
        server.stop()


@pytest.mark.registry
def test_bench_audit_namespace_shares_the_base_layers_and_gives_each_tag_a_layer_of_its_own(
    tmp_path: Path,
) -> None:
    layout = images.one_layer(tmp_path, 64 << 10)
    server = bench_registry.start(tmp_path / "registry")
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    try:
        ns = audit.push_namespace(server, layout, "n7", 7)
        assert len(ns.tags) == 7 and len(set(ns.tags)) == 7
        repos = {t.split("/", 3)[3].rsplit(":", 1)[0] for t in ns.tags}
        assert repos == {f"n7/os-{i}" for i in range(audit.REPOSITORIES)}
        layer_lists = []
        for text in ns.tags:
            repo, tag = text.split("/", 3)[3].rsplit(":", 1)
            got = requests.get(f"{server.url}/v2/{repo}/manifests/{tag}", headers=accept, timeout=10)
            layer_lists.append([d["digest"] for d in json.loads(got.content)["layers"]])
        assert len({tuple(layers[:-1]) for layers in layer_lists}) == 1  # the base, shared
        assert len({layers[-1] for layers in layer_lists}) == 7  # one layer of its own each
    finally:
        server.stop()
