"""Deterministic OCI/Docker image builder for tests, fixtures and benchmarks.

Everything is byte-for-byte reproducible: fixed mtimes, owners, gzip headers without names or
timestamps, sorted JSON.  Layers are described member by member so that tests can write exactly
the tar records a case needs (whiteouts, opaque markers, hardlinks, odd names).

    layer = LayerBuilder().dir("boot").file("boot/vmlinuz-6.1", KERNEL).symlink("boot/vmlinuz", "vmlinuz-6.1")
    image = ImageBuilder(arch="amd64").add_layer(layer, "gzip").build()
    write_oci_layout(tmp_path / "layout", {"v1": image})
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

MTIME = 1700000000  # fixed, so that layers are reproducible

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER_TYPES = {
    ("oci", "none"): "application/vnd.oci.image.layer.v1.tar",
    ("oci", "gzip"): "application/vnd.oci.image.layer.v1.tar+gzip",
    ("oci", "zstd"): "application/vnd.oci.image.layer.v1.tar+zstd",
    ("docker", "none"): "application/vnd.docker.image.rootfs.diff.tar",
    ("docker", "gzip"): "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ("docker", "zstd"): "application/vnd.docker.image.rootfs.diff.tar.zstd",
}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def compress(data: bytes, compression: str, *, frames: int = 1) -> bytes:
    """gzip (no name, mtime 0), zstd (optionally split into several frames), or none."""
    if compression == "none":
        return data
    if compression == "gzip":
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=6, filename="") as gz:
            gz.write(data)
        return buf.getvalue()
    if compression == "zstd":
        cctx = zstandard.ZstdCompressor(level=3)
        if frames <= 1:
            return cctx.compress(data)
        step = max(1, -(-len(data) // frames))
        return b"".join(cctx.compress(data[i : i + step]) for i in range(0, len(data), step))
    raise ValueError(f"unknown compression {compression!r}")


# --- layers ----------------------------------------------------------------------------------


@dataclass
class _Member:
    info: tarfile.TarInfo
    data: bytes | None = None


class LayerBuilder:
    """Collects tar members in order; `tar()` renders them deterministically."""

    def __init__(self, *, prefix: str = "") -> None:
        self.members: list[_Member] = []
        self.prefix = prefix  # e.g. "./" or "/" to write names the way some builders do

    def _info(self, path: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(self.prefix + path if path not in (".", "./", "/") else path)
        info.type = kind
        info.mode = mode
        info.uid, info.gid = uid, gid
        info.uname = "root" if uid == 0 else ""
        info.gname = "root" if gid == 0 else ""
        info.mtime = MTIME
        return info

    def dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> LayerBuilder:
        self.members.append(_Member(self._info(path.rstrip("/") + "/", tarfile.DIRTYPE, mode, uid, gid)))
        return self

    def file(
        self,
        path: str,
        data: bytes | str = b"",
        mode: int = 0o644,
        uid: int = 0,
        gid: int = 0,
        xattrs: dict[str, bytes] | None = None,
    ) -> LayerBuilder:
        raw = data.encode() if isinstance(data, str) else data
        info = self._info(path, tarfile.REGTYPE, mode, uid, gid)
        info.size = len(raw)
        if xattrs:
            # PAX records are str in tarfile; surrogateescape keeps binary values byte-exact.
            info.pax_headers = {
                f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()
            }
        self.members.append(_Member(info, raw))
        return self

    def symlink(self, path: str, target: str) -> LayerBuilder:
        info = self._info(path, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.members.append(_Member(info))
        return self

    def hardlink(self, path: str, target: str) -> LayerBuilder:
        info = self._info(path, tarfile.LNKTYPE, 0o644)
        info.linkname = self.prefix + target
        self.members.append(_Member(info))
        return self

    def whiteout(self, path: str, *, as_hardlink_to: str | None = None) -> LayerBuilder:
        parent, _, name = path.rstrip("/").rpartition("/")
        wh = f"{parent}/.wh.{name}" if parent else f".wh.{name}"
        if as_hardlink_to is not None:
            return self.hardlink(wh, as_hardlink_to)
        return self.file(wh, b"", mode=0o600)

    def opaque(self, directory: str) -> LayerBuilder:
        d = directory.strip("/")
        return self.file(f"{d}/.wh..wh..opq" if d else ".wh..wh..opq", b"", mode=0o600)

    def device(self, path: str, char: bool = True, major: int = 1, minor: int = 3) -> LayerBuilder:
        info = self._info(path, tarfile.CHRTYPE if char else tarfile.BLKTYPE, 0o666)
        info.devmajor, info.devminor = major, minor
        self.members.append(_Member(info))
        return self

    def fifo(self, path: str) -> LayerBuilder:
        self.members.append(_Member(self._info(path, tarfile.FIFOTYPE, 0o644)))
        return self

    def raw(self, info: tarfile.TarInfo, data: bytes | None = None) -> LayerBuilder:
        """A member exactly as given (odd names, types, headers)."""
        self.members.append(_Member(info, data))
        return self

    def tar(self, *, fmt: int = tarfile.PAX_FORMAT, end_blocks: bool = True) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
            for m in self.members:
                tf.addfile(m.info, io.BytesIO(m.data) if m.data is not None else None)
        out = buf.getvalue()
        if not end_blocks:
            # umoci 0.4.7 writes layers without the end-of-archive blocks (docs/measurements.md).
            out = out.rstrip(b"\0")
            out += b"\0" * (-len(out) % 512)
        return out


# --- images ----------------------------------------------------------------------------------


@dataclass
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return sha256(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data), **extra}


@dataclass
class BuiltImage:
    manifest: Blob
    config: Blob
    layers: list[Blob]
    diff_ids: list[str]
    platform: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)  # on its descriptor in an index

    @property
    def blobs(self) -> dict[str, bytes]:
        out = {b.digest: b.data for b in self.layers}
        out[self.config.digest] = self.config.data
        out[self.manifest.digest] = self.manifest.data
        return out

    @property
    def digest(self) -> str:
        return self.manifest.digest

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        if self.annotations:
            extra = {"annotations": self.annotations, **extra}
        return self.manifest.descriptor(platform=self.platform, **extra)


@dataclass
class BuiltIndex:
    manifest: Blob
    children: list[BuiltImage | BuiltIndex]

    @property
    def blobs(self) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for child in self.children:
            out.update(child.blobs)
        out[self.manifest.digest] = self.manifest.data
        return out

    @property
    def digest(self) -> str:
        return self.manifest.digest

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return self.manifest.descriptor(**extra)


@dataclass
class ImageBuilder:
    arch: str = "amd64"
    os: str = "linux"
    variant: str | None = None
    flavour: str = "oci"  # or "docker": media types of manifest, config and layers
    labels: dict[str, str] = field(default_factory=dict)
    created: str | None = "2023-11-14T22:13:20Z"  # the config's `created`; None leaves it out
    env: list[str] = field(default_factory=lambda: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
    _layers: list[Blob] = field(default_factory=list)
    _diff_ids: list[str] = field(default_factory=list)
    _history: list[dict[str, Any]] = field(default_factory=list)

    def add_layer(
        self,
        layer: LayerBuilder | bytes,
        compression: str = "gzip",
        *,
        media_type: str | None = None,
        frames: int = 1,
        end_blocks: bool = True,
        diff_id: str | None = None,
    ) -> ImageBuilder:
        tar = layer if isinstance(layer, bytes) else layer.tar(end_blocks=end_blocks)
        blob = Blob(
            media_type or LAYER_TYPES[(self.flavour, compression)], compress(tar, compression, frames=frames)
        )
        self._layers.append(blob)
        self._diff_ids.append(diff_id or sha256(tar))
        self._history.append({"created": "2023-11-14T22:13:20Z", "created_by": f"layer {len(self._layers)}"})
        return self

    def build(self, *, manifest_extra: dict[str, Any] | None = None) -> BuiltImage:
        platform = {"architecture": self.arch, "os": self.os}
        if self.variant:
            platform["variant"] = self.variant
        config_obj: dict[str, Any] = {
            **platform,
            **({"created": self.created} if self.created is not None else {}),
            "config": {"Env": self.env, "Labels": self.labels or None, "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": list(self._diff_ids)},
            "history": list(self._history),
        }
        docker = self.flavour == "docker"
        config = Blob(DOCKER_CONFIG if docker else OCI_CONFIG, canonical_json(config_obj))
        manifest_obj: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": [b.descriptor() for b in self._layers],
            **(manifest_extra or {}),
        }
        manifest = Blob(manifest_obj["mediaType"], canonical_json(manifest_obj))
        return BuiltImage(manifest, config, list(self._layers), list(self._diff_ids), platform)


def attestation(target: BuiltImage) -> BuiltImage:
    """A BuildKit attestation manifest for `target`, as `docker buildx build --provenance` lists
    it in an index: platform unknown/unknown, an in-toto payload as its one "layer"."""
    payload = Blob(
        "application/vnd.in-toto+json", canonical_json({"_type": "https://in-toto.io/Statement/v0.1"})
    )
    config = Blob(OCI_CONFIG, b"{}")
    obj = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [payload.descriptor()],
    }
    return BuiltImage(
        Blob(OCI_MANIFEST, canonical_json(obj)),
        config,
        [payload],
        [],
        {"architecture": "unknown", "os": "unknown"},
        {"vnd.docker.reference.digest": target.digest, "vnd.docker.reference.type": "attestation-manifest"},
    )


def build_index(children: Iterable[BuiltImage | BuiltIndex], *, docker: bool = False) -> BuiltIndex:
    kids = list(children)
    obj = {
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST if docker else OCI_INDEX,
        "manifests": [c.descriptor() for c in kids],
    }
    return BuiltIndex(Blob(obj["mediaType"], canonical_json(obj)), kids)


# --- writers ---------------------------------------------------------------------------------


def layout_files(tags: dict[str, BuiltImage | BuiltIndex]) -> dict[str, bytes]:
    """The files of an OCI image layout holding `tags` (ref.name -> image), path -> bytes."""
    files: dict[str, bytes] = {"oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"})}
    entries = []
    for tag, image in tags.items():
        for digest, data in image.blobs.items():
            files[f"blobs/sha256/{digest.split(':', 1)[1]}"] = data
        desc = image.manifest.descriptor(annotations={"org.opencontainers.image.ref.name": tag})
        entries.append(desc)
    files["index.json"] = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    return files


def write_oci_layout(directory: Path | str, tags: dict[str, BuiltImage | BuiltIndex]) -> Path:
    root = Path(directory)
    for rel, data in layout_files(tags).items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def write_tar(path: Path | str, files: dict[str, bytes], *, links: dict[str, str] | None = None) -> Path:
    """A deterministic tar of `files` (sorted, fixed mtime), plus symlink members `links`."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:
        dirs: set[str] = set()
        for rel in sorted(files):
            parts = rel.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
                    tf.addfile(info)
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.mtime = len(files[rel]), 0o644, MTIME
            tf.addfile(info, io.BytesIO(files[rel]))
        for rel, target in sorted((links or {}).items()):
            info = tarfile.TarInfo(rel)
            info.type, info.linkname, info.mtime = tarfile.SYMTYPE, target, MTIME
            tf.addfile(info)
    return out


def write_oci_archive(path: Path | str, tags: dict[str, BuiltImage | BuiltIndex]) -> Path:
    return write_tar(path, layout_files(tags))


def tree_files(root: Path | str) -> dict[str, bytes]:
    """Read a directory back into path -> bytes (for committing fixtures)."""
    base = Path(root)
    return {
        str(p.relative_to(base)).replace(os.sep, "/"): p.read_bytes() for p in base.rglob("*") if p.is_file()
    }
