"""Fuzzing the JSON an image is described by: manifests, indexes, configs (spec.py), their
resolution (image.py) and a docker-archive's manifest.json (sources/docker_archive.py).

Seeds are real documents from the repo's ImageBuilder.  Hypothesis mutates them twice over: as
JSON (a value swapped for another JSON value of any shape, a key dropped, deep nesting, huge
numbers and strings) and as bytes (flip, insert, delete, truncate).  Every outcome must be a
parsed value or an OcibootError, within the bounds of tests/support/fuzzing.py; parsing and index
walking are linear in the number of descriptors.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ociboot.errors import InvalidManifest
from ociboot.image import describe_index, resolve, resolve_all
from ociboot.sources.docker_archive import parse_manifest_json
from ociboot.spec import MAX_DESCRIPTORS, ImageConfig, Index, Manifest, Platform, sniff_manifest_type
from tests.support.fuzzing import assert_linear, outcome
from tests.support.imagebuilder import (
    OCI_INDEX,
    ImageBuilder,
    LayerBuilder,
    build_index,
    canonical_json,
    sha256,
)
from tests.test_image import DictSource

FUZZ = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

AMD = (
    ImageBuilder().add_layer(LayerBuilder().file("f", b"x")).add_layer(LayerBuilder().file("g", b"y")).build()
)
DOCKER = ImageBuilder(arch="arm64", flavour="docker").add_layer(LayerBuilder().file("f", b"z")).build()
INDEX = build_index([AMD, build_index([DOCKER])])
BLOBS = INDEX.blobs
ARCHIVE_MANIFEST = canonical_json(
    [{"Config": "c.json", "RepoTags": ["a:b"], "Layers": ["l1/layer.tar", "l2/layer.tar"]}]
)
SEEDS = {
    "manifest": AMD.manifest.data,
    "docker-manifest": DOCKER.manifest.data,
    "config": AMD.config.data,
    "index": INDEX.manifest.data,
    "manifest.json": ARCHIVE_MANIFEST,
}

JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False),
        st.text(max_size=20),
        st.sampled_from([OCI_INDEX, "sha256:" + "0" * 64, "sha256:zz", "linux", "amd64", "layers", "", "2"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place inside a JSON value: dict keys and list positions."""
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out += _paths(child, (*prefix, i))
    return out


def _replace(value: Any, path: tuple[Any, ...], new: Any, *, delete: bool = False) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy = dict(value) if isinstance(value, dict) else list(value)
    if delete and not rest:
        del copy[head]
    else:
        copy[head] = _replace(copy[head], rest, new, delete=delete)
    return copy


_NEST = "\u0000nested\u0000"


@st.composite
def mutated(draw: Any, seed: str) -> bytes:
    doc = json.loads(SEEDS[seed])
    nest = 0
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(doc)))
        op = draw(st.sampled_from(["value", "delete", "nest", "grow"]))
        if op == "delete" and path:
            doc = _replace(doc, path, None, delete=True)
        elif op == "nest":
            # Spliced in as text below: building it as a value would recurse here too.
            nest = draw(st.sampled_from([10, 1000, 100_000]))
            doc = _replace(doc, path, _NEST)
        elif op == "grow" and path:
            parent = _replace(doc, (), doc)
            for key in path[:-1]:
                parent = parent[key]
            target = parent[path[-1]]
            grown = target * draw(st.integers(2, 50)) if isinstance(target, (list, str)) else target
            doc = _replace(doc, path, grown)
        else:
            doc = _replace(doc, path, draw(JSON_VALUES))
    data = bytearray(canonical_json(doc))
    marker = json.dumps(_NEST).encode()
    if marker in data:
        data = data.replace(marker, b"[" * nest + b"{}" + b"]" * nest)
    for _ in range(draw(st.integers(0, 2))):
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        else:
            del data[pos:]
    return bytes(data)


@FUZZ
@given(mutated("manifest") | mutated("docker-manifest"))
def test_mutated_manifests(raw: bytes) -> None:
    outcome(lambda: Manifest.from_json(raw, "fuzz manifest"))
    outcome(lambda: sniff_manifest_type(raw, None, "fuzz manifest"))
    # The same bytes as an image reached by reference: resolution through config and diff_ids.
    outcome(lambda: resolve(DictSource(raw, BLOBS), Platform("linux", "amd64")))


@FUZZ
@given(mutated("index"))
def test_mutated_indexes(raw: bytes) -> None:
    outcome(lambda: Index.from_json(raw, "fuzz index"))
    outcome(lambda: describe_index(DictSource(raw, BLOBS)))
    outcome(lambda: resolve_all(DictSource(raw, BLOBS)))


@FUZZ
@given(mutated("config"))
def test_mutated_configs(raw: bytes) -> None:
    outcome(lambda: ImageConfig.from_json(raw, "fuzz config"))
    # Reached through a manifest that names it, with its digest and size.
    manifest = json.loads(AMD.manifest.data)
    manifest["config"] = {**manifest["config"], "digest": sha256(raw), "size": len(raw)}
    top = canonical_json(manifest)
    outcome(lambda: resolve(DictSource(top, {**BLOBS, sha256(raw): raw})))


@FUZZ
@given(mutated("manifest.json"))
def test_mutated_docker_archive_manifest_json(raw: bytes) -> None:
    outcome(lambda: parse_manifest_json(raw, "fuzz.tar"))


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes(raw: bytes) -> None:
    for parse in (Manifest.from_json, Index.from_json, ImageConfig.from_json):
        outcome(lambda parse=parse: parse(raw, "fuzz"))  # type: ignore[misc]
    outcome(lambda: parse_manifest_json(raw, "fuzz.tar"))
    outcome(lambda: describe_index(DictSource(raw, BLOBS)))


# --- linear time ---------------------------------------------------------------------------------


def _index_of(n: int) -> bytes:
    entries = [
        {"mediaType": "application/x-unknown", "digest": sha256(b"%d" % i), "size": i}
        for i in range(min(n, MAX_DESCRIPTORS))
    ]
    return canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})


def test_index_parsing_is_linear_in_descriptors() -> None:
    def make(n: int) -> Any:
        raw = _index_of(n)
        return lambda: Index.from_json(raw)

    assert_linear(make, 200, what="index descriptors")


def test_index_walking_is_linear_in_descriptors() -> None:
    def make(n: int) -> Any:
        raw = _index_of(n)
        return lambda: describe_index(DictSource(raw, {}))

    assert_linear(make, 200, what="index walk")


def test_config_parsing_is_linear_in_diff_ids() -> None:
    def make(n: int) -> Any:
        config = json.loads(AMD.config.data)
        config["rootfs"]["diff_ids"] = [sha256(b"%d" % i) for i in range(min(n, MAX_DESCRIPTORS))]
        config["history"] = [{"created_by": "x" * (i % 50)} for i in range(n)]
        raw = canonical_json(config)
        return lambda: ImageConfig.from_json(raw)

    assert_linear(make, 200, what="config diff_ids and history")


# --- what the fuzzing found ----------------------------------------------------------------------


def test_a_media_type_that_is_not_a_string_is_invalid() -> None:
    # An index whose mediaType was a list raised TypeError (unhashable) out of the schema check.
    raw = canonical_json({"schemaVersion": 2, "mediaType": [[{}]], "manifests": []})
    with pytest.raises(InvalidManifest, match="'mediaType' has the wrong type"):
        Index.from_json(raw, "index")
