"""Hostile image structure through the CLI: one line, its exit code, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ociboot import pipeline
from ociboot.cli import app
from ociboot.spec import MAX_DESCRIPTORS
from tests.support.bootimages import bootable, generic
from tests.support.dockerarchive import write_docker_archive
from tests.support.imagebuilder import (
    OCI_INDEX,
    Blob,
    BuiltImage,
    BuiltIndex,
    ImageBuilder,
    LayerBuilder,
    build_index,
    canonical_json,
    write_oci_layout,
)

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def repeated(child: BuiltImage | BuiltIndex, times: int) -> BuiltIndex:
    index = build_index([child])
    obj = json.loads(index.manifest.data)
    obj["manifests"] = obj["manifests"] * times
    return BuiltIndex(Blob(OCI_INDEX, canonical_json(obj)), [child])


def test_index_bomb_is_one_line_and_exit_3(tmp_path: Path) -> None:
    # The layout: the same nested index listed thousands of times at two levels.
    image = ImageBuilder().add_layer(LayerBuilder().file("f", b"x")).build()
    bomb = repeated(repeated(image, MAX_DESCRIPTORS + 1), MAX_DESCRIPTORS + 1)
    layout = write_oci_layout(tmp_path / "bomb", {"v1": bomb})
    code, out, err = run("inspect", f"oci:{layout}:v1", "--no-sizes")
    assert code == 3 and out == ""
    assert err.count("\n") == 1 and f"over the cap of {MAX_DESCRIPTORS}" in err


def test_inspect_shows_an_image_with_an_unknown_layer_type_that_ls_refuses(tmp_path: Path) -> None:
    unknown = "application/vnd.example.blob"
    image = (
        ImageBuilder()
        .add_layer(LayerBuilder().file("etc/os-release", "ID=test\n"))
        .add_layer(LayerBuilder().file("blob", b"x"), media_type=unknown)
        .build()
    )
    ref = f"oci:{write_oci_layout(tmp_path / 'layout', {'v1': image})}:v1"
    code, out, _ = run("inspect", ref, "--format", "json")
    assert code == 0
    assert [layer["mediaType"] for layer in json.loads(out)["layers"]][1] == unknown
    code, out, _ = run("inspect", ref)
    assert code == 0 and unknown in out
    code, out, err = run("ls", ref)
    assert code == 3 and out == ""
    assert err.count("\n") == 1 and f"media type {unknown!r}: not a layer type ociboot reads" in err
    code, _, err = run("check", ref, "--format", "json")
    assert code == 3 and unknown in err  # never a pass for an image with a layer no one read


def test_stat_of_a_hardlink_before_its_target_shows_the_target(tmp_path: Path) -> None:
    layer = LayerBuilder().hardlink("bin/link", "bin/real").file("bin/real", b"0123456789")
    image = ImageBuilder().add_layer(layer).build()
    ref = f"oci:{write_oci_layout(tmp_path / 'layout', {'v1': image})}:v1"
    code, out, _ = run("stat", ref, "/bin/link", "--format", "json")
    assert code == 0
    assert json.loads(out)["size"] == 10
    code, out, _ = run("cat", ref, "/bin/link")
    assert code == 0 and out == "0123456789"


def many_small_layers(layers: int, entries: int) -> ImageBuilder:
    builder = ImageBuilder()
    for k in range(layers):
        layer = LayerBuilder().dir(f"d{k}")
        for i in range(entries):
            layer.file(f"d{k}/f{i}", b"")
        builder.add_layer(layer)
    return builder


def test_entries_are_bounded_per_image_not_only_per_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each layer under the per-layer cap, but memory must not grow with the number of layers:
    past MAX_IMAGE_ENTRIES in all the image is refused (exit 3), naming it."""
    monkeypatch.setattr(pipeline, "MAX_IMAGE_ENTRIES", 100)
    one = write_oci_layout(tmp_path / "one", {"v1": many_small_layers(1, 60).build()})
    assert run("ls", f"oci:{one}:v1", "/d0")[0] == 0
    many = write_oci_layout(tmp_path / "many", {"v1": many_small_layers(3, 60).build()})
    for command in (["ls", f"oci:{many}:v1", "/"], ["check", "-q", f"oci:{many}:v1"]):
        code, _, err = run(*command)
        assert code == 3, err
        assert f"oci:{many}:v1" in err and "more than 100 entries" in err and "Traceback" not in err


@pytest.mark.parametrize("form", ["legacy", "v25"])
def test_a_docker_archive_tag_on_two_images_is_ambiguous_not_the_first(tmp_path: Path, form: str) -> None:
    """`docker load` tags in order, so the last image listed under a tag is what it runs: judging
    the first would pass an archive whose tag loads a broken image.  As for an OCI layout's names."""
    good, broken = bootable("generic").build(), generic().drop("/boot").build()
    path = write_docker_archive(tmp_path / "a.tar", [(good, ["os:x"]), (broken, ["os:x"])], form=form)
    code, _, err = run("check", "-q", f"docker-archive:{path}:os:x")
    assert code == 3 and "os:x" in err and "2 different images" in err
    same = write_docker_archive(tmp_path / "b.tar", [(good, ["os:x"]), (good, ["os:y"])], form=form)
    assert run("check", "-q", f"docker-archive:{same}:os:x")[0] == 0


def test_a_local_image_is_read_within_its_timeout_too(tmp_path: Path) -> None:
    """--timeout bounds every image, not only a registry's: a layer of a few kilobytes can
    inflate for hours, and an image may list thousands of such layers."""
    bomb = LayerBuilder().file("zeros", bytes(32 << 20))  # 32 MiB of zeros: about 1 KiB as zstd
    image = ImageBuilder().add_layer(bomb, "zstd").add_layer(bomb, "zstd").build()
    layout = write_oci_layout(tmp_path / "bomb", {"v1": image})
    for command in ("ls", "check"):
        code, out, err = run(command, f"oci:{layout}:v1", "-q", "--timeout", "1ms")
        assert code == 3 and "Traceback" not in err, (command, err)
        assert "gave up on layer sha256:" in (err if command == "ls" else out + err)
    code, _, err = run("ls", f"oci:{layout}:v1", "-q", "--timeout", "10m")
    assert code == 0, err
