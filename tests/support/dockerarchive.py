"""Deterministic `docker save` archives from imagebuilder images, in both forms.

    write_docker_archive(path, [(image, ["busybox:latest"])])                 # legacy
    write_docker_archive(path, [(image, ["busybox:latest"])], form="v25")     # Docker 25+

legacy (moby/docker-image-spec "Combined Image JSON + Filesystem Changeset Format"): each layer
blob is decompressed to the plain tar whose sha256 is its diff_id and written as
`<v1id>/layer.tar` (+ `VERSION`, `json`); configs as `<hex>.json`; `manifest.json`;
`repositories`.  `compress_layers` writes kaniko-style archives instead: `<hex>.tar.gz` layers and
a config literally named `sha256:<hex>`.  `link_duplicate_layers` writes a later identical
layer.tar as a symlink `../<first>/layer.tar`, as docker save does (go-containerregistry#987).

v25: an OCI layout (oci-layout, index.json with `io.containerd.image.name` and
`org.opencontainers.image.ref.name` annotations, blobs/sha256/*) plus a `manifest.json` whose
paths point into blobs/.  `null_index` writes `"manifests": null` (moby/moby#47210);
`repo_tags_in_manifest=False` writes `"RepoTags": null` (as `docker save IMAGE@DIGEST` does), so
only index.json names the images.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import zstandard

from tests.support.imagebuilder import MTIME, OCI_INDEX, BuiltImage, canonical_json, compress


def plain_tar(blob: bytes) -> bytes:
    """The uncompressed tar of a layer blob (gzip, zstd or already plain)."""
    if blob[:2] == b"\x1f\x8b":
        return gzip.decompress(blob)
    if blob[:4] == b"\x28\xb5\x2f\xfd":
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob)).read()
    return blob


def hub_name(tag: str) -> str:
    """`busybox:latest` -> `docker.io/library/busybox:latest`, as containerd annotates it."""
    name, _, version = tag.rpartition(":") if ":" in tag.rsplit("/", 1)[-1] else (tag, "", "latest")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return f"{name}:{version}"
    return f"docker.io/{name if rest else 'library/' + name}:{version}"


class _Writer:
    def __init__(self, path: Path) -> None:
        self.tf = tarfile.open(path, "w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self.names: set[str] = set()
        self.dirs: set[str] = set()

    def _dirs(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.dirs:
                self.dirs.add(d)
                info = tarfile.TarInfo(d)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
                self.tf.addfile(info)

    def file(self, name: str, data: bytes) -> None:
        if name in self.names:
            return
        self.names.add(name)
        self._dirs(name)
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, MTIME
        self.tf.addfile(info, io.BytesIO(data))

    def symlink(self, name: str, target: str) -> None:
        self.names.add(name)
        self._dirs(name)
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, target, 0o777, MTIME
        self.tf.addfile(info)

    def close(self) -> None:
        self.tf.close()


def write_docker_archive(
    path: Path | str,
    images: list[tuple[BuiltImage, list[str]]],
    *,
    form: str = "legacy",
    link_duplicate_layers: bool = False,
    compress_layers: bool = False,
    null_index: bool = False,
    repo_tags_in_manifest: bool = True,
) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = _Writer(out)
    try:
        if form == "legacy":
            _legacy(writer, images, link_duplicate_layers, compress_layers)
        elif form == "v25":
            _v25(writer, images, null_index, repo_tags_in_manifest)
        else:
            raise ValueError(f"unknown form {form!r}")
    finally:
        writer.close()
    return out


def _legacy(w: _Writer, images: list[tuple[BuiltImage, list[str]]], link: bool, gz: bool) -> None:
    entries: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    first_by_diff: dict[str, str] = {}
    for image, tags in images:
        config_hex = image.config.digest.split(":", 1)[1]
        config_name = f"sha256:{config_hex}" if gz else f"{config_hex}.json"
        w.file(config_name, image.config.data)
        layer_paths, parent = [], ""
        for blob, diff_id in zip(image.layers, image.diff_ids, strict=True):
            tar = plain_tar(blob.data)
            # Docker's v1 ids chain over the parent, and the top layer's id also covers the image
            # config: the same layer on top of one image and under another lands in two folders.
            top = image.config.digest if len(layer_paths) == len(image.layers) - 1 else ""
            v1id = hashlib.sha256(f"{parent}\n{diff_id}\n{top}".encode()).hexdigest()
            if gz:
                data = compress(tar, "gzip")
                name = f"{hashlib.sha256(data).hexdigest()}.tar.gz"
                w.file(name, data)
            else:
                name = f"{v1id}/layer.tar"
                if name not in w.names:
                    if link and diff_id in first_by_diff:
                        w.symlink(name, f"../{first_by_diff[diff_id]}")
                    else:
                        w.file(name, tar)
                        first_by_diff.setdefault(diff_id, name)
                    w.file(f"{v1id}/VERSION", b"1.0")
                    v1 = {"id": v1id, "parent": parent or None, "created": "2023-11-14T22:13:20Z"}
                    w.file(f"{v1id}/json", canonical_json(v1))
            layer_paths.append(name)
            parent = v1id
        for tag in tags:
            repo, _, version = tag.rpartition(":")
            repositories.setdefault(repo, {})[version] = parent
        entries.append({"Config": config_name, "RepoTags": tags or None, "Layers": layer_paths})
    w.file("manifest.json", json.dumps(entries).encode())
    if not gz:
        w.file("repositories", canonical_json(repositories))


def _v25(
    w: _Writer, images: list[tuple[BuiltImage, list[str]]], null_index: bool, tags_in_json: bool
) -> None:
    entries: list[dict[str, Any]] = []
    index: list[dict[str, Any]] = []
    w.file("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
    for image, tags in images:
        for digest, data in sorted(image.blobs.items()):
            w.file(f"blobs/sha256/{digest.split(':', 1)[1]}", data)
        for tag in tags:
            # Docker 25 puts the full name in containerd's annotation and only the tag in ref.name.
            version = hub_name(tag).rpartition(":")[2]
            annotations = {
                "io.containerd.image.name": hub_name(tag),
                "org.opencontainers.image.ref.name": version,
            }
            index.append(image.manifest.descriptor(annotations=annotations))
        if not tags:
            index.append(image.manifest.descriptor())
        entries.append(
            {
                "Config": f"blobs/sha256/{image.config.digest.split(':', 1)[1]}",
                "RepoTags": (tags or None) if tags_in_json else None,
                "Layers": [f"blobs/sha256/{b.digest.split(':', 1)[1]}" for b in image.layers],
            }
        )
    idx = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": None if null_index else index}
    w.file("index.json", canonical_json(idx))
    w.file("manifest.json", json.dumps(entries).encode())
