"""What `inspect`, `ls`, `stat` and `layers` show: typed views, their JSON and their text.

Each view is a frozen dataclass; `to_json()` is the documented `--format json` output (README,
"JSON output") and `to_text()` the text form, built from the same fields.  Both hold names as
the image has them: the JSON is escaped by the caller (textsafe.clean), and every text line is
escaped here (textsafe.escape, per character, so a whole line at once).
"""

from __future__ import annotations

import posixpath
import stat as stat_module
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from . import schemas
from .errors import ImageNotFound
from .fs.node import Kind, Node
from .fs.overlay import empty_tree, flatten_steps
from .fs.tree import FileTree
from .image import ResolvedImage
from .layer import LayerIndex
from .pipeline import ImageTree
from .textsafe import escape

#: `--format json` of a view: a JSON object (escaped by textsafe.clean before it is written).
Json = dict[str, Any]


class View(Protocol):
    def to_json(self) -> Json: ...

    def to_text(self) -> str: ...


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _text(lines: Iterable[str]) -> str:
    return "\n".join(escape(line) for line in lines)


# --- inspect ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LayerRow:
    digest: str
    media_type: str
    size: int
    diff_id: str
    #: from streaming the layer (`inspect --sizes`); None when it was not streamed
    uncompressed_size: int | None = None
    compression: str | None = None
    entries: int | None = None
    notes: tuple[str, ...] = ()

    def to_json(self) -> Json:
        row: Json = {
            "digest": self.digest,
            "mediaType": self.media_type,
            "size": self.size,
            "diffID": self.diff_id,
        }
        if self.entries is not None:
            row["uncompressedSize"] = self.uncompressed_size
            row["compression"] = self.compression
            row["entries"] = self.entries
            if self.notes:
                row["notes"] = list(self.notes)
        return row


@dataclass(frozen=True, slots=True)
class ConfigSummary:
    digest: str
    created: str | None
    labels: Mapping[str, str]
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: tuple[str, ...]
    user: str | None

    def to_json(self) -> Json:
        return {
            "digest": self.digest,
            "created": self.created,
            "labels": dict(self.labels),
            "entrypoint": list(self.entrypoint),
            "cmd": list(self.cmd),
            "env": list(self.env),
            "user": self.user,
        }


@dataclass(frozen=True, slots=True)
class IndexSummary:
    digest: str
    platforms: tuple[str, ...]

    def to_json(self) -> Json:
        return {"digest": self.digest, "platforms": list(self.platforms)}


@dataclass(frozen=True, slots=True)
class InspectView:
    reference: str
    digest: str
    media_type: str
    index: IndexSummary | None
    platform: str
    config: ConfigSummary
    layers: tuple[LayerRow, ...]
    size: int
    uncompressed_size: int | None

    def to_json(self) -> Json:
        return {
            **schemas.header("inspect"),
            "reference": self.reference,
            "digest": self.digest,
            "mediaType": self.media_type,
            "index": None if self.index is None else self.index.to_json(),
            "platform": self.platform,
            "config": self.config.to_json(),
            "layers": [row.to_json() for row in self.layers],
            "size": self.size,
            "uncompressedSize": self.uncompressed_size,
        }

    def to_text(self) -> str:
        lines = [
            f"Reference:  {self.reference}",
            f"Digest:     {self.digest}",
            f"MediaType:  {self.media_type}",
            f"Platform:   {self.platform}",
        ]
        if self.index is not None:
            lines.append(f"Index:      {self.index.digest}")
            lines.append(f"Platforms:  {', '.join(self.index.platforms)}")
        cfg = self.config
        lines.append(f"Config:     {cfg.digest}")
        if cfg.created:
            lines.append(f"Created:    {cfg.created}")
        if cfg.entrypoint or cfg.cmd:
            lines.append(f"Command:    {' '.join(cfg.entrypoint + cfg.cmd)}")
        # In the order of the names as shown (escaped), as the JSON's reader sees them.
        for key, value in sorted(cfg.labels.items(), key=lambda item: escape(item[0])):
            lines.append(f"Label:      {key}={value}")
        total = _size(self.size)
        if self.uncompressed_size is not None:
            total += f" compressed, {_size(self.uncompressed_size)} uncompressed"
        lines.append(f"Layers:     {len(self.layers)} ({total})")
        for i, row in enumerate(self.layers, 1):
            unc = f" -> {_size(row.uncompressed_size)}" if row.entries is not None else ""
            lines.append(f"  {i:>2}  {row.digest[:19]}  {_size(row.size):>10}{unc:>14}  {row.media_type}")
            for note in row.notes:
                lines.append(f"        note: {note}")
        return _text(lines)


def inspect_data(image: ResolvedImage, layers: Sequence[LayerIndex] | None) -> InspectView:
    cfg = image.config
    rows = []
    for i, ref in enumerate(image.layers):
        d = ref.descriptor
        row = LayerRow(str(d.digest), d.media_type, d.size, str(ref.diff_id))
        if layers is not None:
            row = LayerRow(
                row.digest,
                row.media_type,
                row.size,
                row.diff_id,
                uncompressed_size=layers[i].size,
                compression=str(layers[i].compression),
                entries=len(layers[i].entries),
                notes=tuple(layers[i].notes),
            )
        rows.append(row)
    return InspectView(
        reference=str(image.ref),
        digest=str(image.manifest_digest),
        media_type=image.media_type,
        index=None
        if image.index_digest is None
        else IndexSummary(str(image.index_digest), tuple(str(p) for p in image.platforms)),
        platform=str(image.platform),
        config=ConfigSummary(
            digest=str(image.config_digest),
            created=cfg.created,
            labels=dict(cfg.labels),
            entrypoint=tuple(cfg.entrypoint),
            cmd=tuple(cfg.cmd),
            env=tuple(cfg.env),
            user=cfg.user,
        ),
        layers=tuple(rows),
        size=sum(d.descriptor.size for d in image.layers),
        uncompressed_size=None if layers is None else sum(layer.size for layer in layers),
    )


def inspect_text(view: InspectView) -> str:
    return view.to_text()


# --- ls / stat -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkHop:
    path: str
    target: str

    def to_json(self) -> Json:
        return {"path": self.path, "target": self.target}


def _hops(chain: Iterable[tuple[str, str]]) -> tuple[LinkHop, ...]:
    return tuple(LinkHop(p, t) for p, t in chain)


@dataclass(frozen=True, slots=True)
class Symlink:
    target: str
    resolved: str | None  # None: the link does not resolve (`error` says why)
    error: str | None
    chain: tuple[LinkHop, ...]


@dataclass(frozen=True, slots=True)
class EntryView:
    """One path of the final filesystem, as `ls` and `stat` show it."""

    path: str
    type: str
    mode: int  # permission bits
    uid: int
    gid: int
    size: int
    mtime: int
    layer: int
    hardlink_of: str | None = None
    symlink: Symlink | None = None

    def to_json(self) -> Json:
        row: Json = {
            "path": self.path,
            "type": self.type,
            "mode": f"{self.mode:04o}",
            "uid": self.uid,
            "gid": self.gid,
            "size": self.size,
            "mtime": self.mtime,
            "layer": self.layer,
        }
        if self.hardlink_of is not None:
            row["hardlinkOf"] = self.hardlink_of
        if self.symlink is not None:
            row["target"] = self.symlink.target
            row["resolved"] = self.symlink.resolved
            if self.symlink.error:
                row["error"] = self.symlink.error
            row["chain"] = [hop.to_json() for hop in self.symlink.chain]
        return row

    @property
    def filemode(self) -> str:
        """`ls -l`'s mode column."""
        return Kind(self.type).ls_char + stat_module.filemode(self.mode | stat_module.S_IFREG)[1:]

    def long_line(self) -> str:
        suffix = ""
        if self.type == "symlink" and self.symlink is not None:
            link = self.symlink
            where = link.resolved or f"({link.error or 'missing'})"
            suffix = f" -> {link.target}"
            if where != link.target:
                suffix += f"  => {where}"
        elif self.hardlink_of is not None:
            suffix = f"  (hardlink of {self.hardlink_of})"
        return (
            f"{self.filemode} {self.uid:>5}/{self.gid:<5} {self.size:>10} "
            f"{_mtime(self.mtime)}  {self.path}{suffix}"
        )


def _entry(tree: FileTree, path: str, node: Node) -> EntryView:
    e = node.entry
    symlink = None
    if node.is_symlink:
        res = tree.lookup(path)
        symlink = Symlink(
            target=e.linkname,
            resolved=res.path if res.node is not None and not res.error else None,
            error=str(res.error) if res.error else None,
            chain=_hops(res.chain),
        )
    return EntryView(
        path=path,
        type=str(node.kind if node.hardlink is None else Kind.FILE),
        mode=e.mode & 0o7777,
        uid=e.uid,
        gid=e.gid,
        size=e.size if node.kind is Kind.FILE else 0,
        mtime=e.mtime,
        layer=node.layer,
        hardlink_of="/" + e.path if node.hardlink is not None else None,
        symlink=symlink,
    )


@dataclass(frozen=True, slots=True)
class Listing:
    reference: str
    digest: str
    path: str
    entries: tuple[EntryView, ...]

    def to_json(self) -> Json:
        return {
            **schemas.header("ls"),
            "reference": self.reference,
            "digest": self.digest,
            "path": self.path,
            "entries": [entry.to_json() for entry in self.entries],
        }

    def to_text(self, *, long: bool = False) -> str:
        if long:
            return _text(entry.long_line() for entry in self.entries)
        return _text(entry.path + ("/" if entry.type == "dir" else "") for entry in self.entries)


def listing(loaded: ImageTree, path: str, *, recursive: bool) -> Listing:
    tree = loaded.tree
    res = tree.lookup(path)
    if res.node is None or not res.ok:
        raise ImageNotFound(f"{path}: {res.reason} in {loaded.image.ref}")
    rows: list[EntryView] = []
    if not res.node.is_dir:
        rows.append(_entry(tree, res.path, res.node))
    elif recursive:
        for p, node in tree.walk(res.path):
            if p != res.path:
                rows.append(_entry(tree, p, node))
    else:
        for name, node in tree.listdir(res.path):
            rows.append(_entry(tree, posixpath.join(res.path, name), node))
    return Listing(str(loaded.image.ref), str(loaded.image.manifest_digest), res.path, tuple(rows))


def listing_text(view: Listing, *, long: bool) -> str:
    return view.to_text(long=long)


def _mtime(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True, slots=True)
class LayerRef:
    index: int
    digest: str
    diff_id: str

    def to_json(self) -> Json:
        return {"index": self.index, "digest": self.digest, "diffID": self.diff_id}


@dataclass(frozen=True, slots=True)
class StatView:
    reference: str
    path: str  # as asked, made absolute
    exists: bool
    resolved: str | None
    chain: tuple[LinkHop, ...]
    error: str | None
    #: the node shown (the link's target, or the link itself when it does not resolve)
    entry: EntryView | None = None
    layer: LayerRef | None = None
    xattrs: Mapping[str, str] | None = None  # name -> value in hex

    def to_json(self) -> Json:
        data: Json = {
            **schemas.header("stat"),
            "reference": self.reference,
            "path": self.path,
            "exists": self.exists,
            "resolved": self.resolved,
            "chain": [hop.to_json() for hop in self.chain],
            "error": self.error,
        }
        if self.entry is not None and self.layer is not None:
            data.update(self.entry.to_json())
            data["path"] = self.path
            data["layer"] = self.layer.to_json()
            if self.xattrs:
                data["xattrs"] = dict(self.xattrs)
        return data

    def to_text(self) -> str:
        if not self.exists:
            return _text([f"{self.path}: no such file or directory"])
        chain, resolved, error = self.chain, self.resolved, self.error
        link = self.entry.symlink if self.entry is not None else None
        if link is not None:  # the link itself is shown: what it says of itself
            chain, resolved, error = link.chain, link.resolved, link.error or error
        lines = [f"  Path: {self.path}"]
        for hop in chain:
            lines.append(f"  Link: {hop.path} -> {hop.target}")
        if error:
            lines.append(f" Error: {error}")
        elif resolved and resolved != self.path:
            lines.append(f"  Real: {resolved}")
        if self.entry is not None and self.layer is not None:
            e = self.entry
            lines.append(f"  Type: {e.type}   Mode: {e.mode:04o} ({e.filemode})   Owner: {e.uid}/{e.gid}")
            lines.append(f"  Size: {e.size}   Modified: {_mtime(e.mtime)} UTC")
            lines.append(f" Layer: {self.layer.index + 1} {self.layer.digest}")
        return _text(lines)


def stat_data(loaded: ImageTree, path: str) -> StatView:
    tree = loaded.tree
    res = tree.lookup(path)
    lres = tree.lookup(path, follow=False)
    absolute = path if path.startswith("/") else "/" + path
    view = StatView(
        reference=str(loaded.image.ref),
        path=absolute,
        exists=lres.node is not None,
        resolved=res.path if res.node is not None and not res.error else None,
        chain=_hops(res.chain),
        error=str(res.error) if res.error is not None else None,
    )
    node = res.node if res.node is not None and not res.error else lres.node
    if node is None:
        return view
    layer = loaded.layers[node.layer]
    xattrs = node.entry.xattrs
    return StatView(
        view.reference,
        view.path,
        view.exists,
        view.resolved,
        view.chain,
        view.error,
        entry=_entry(tree, res.path if node is res.node else lres.path, node),
        layer=LayerRef(node.layer, str(layer.digest), str(layer.diff_id)),
        xattrs={k: v.hex() for k, v in sorted(xattrs.items())} if xattrs else None,
    )


def stat_text(view: StatView) -> str:
    return view.to_text()


# --- layers ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LayerChanges:
    index: int
    digest: str
    diff_id: str
    media_type: str
    size: int
    uncompressed_size: int
    entries: int
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]

    def to_json(self) -> Json:
        return {
            "index": self.index,
            "digest": self.digest,
            "diffID": self.diff_id,
            "mediaType": self.media_type,
            "size": self.size,
            "uncompressedSize": self.uncompressed_size,
            "entries": self.entries,
            "added": list(self.added),
            "changed": list(self.changed),
            "removed": list(self.removed),
        }


#: Paths `layers` lists per kind of change and layer before "... and N more".
LAYERS_TEXT_LIMIT = 8


@dataclass(frozen=True, slots=True)
class LayersView:
    reference: str
    digest: str
    layers: tuple[LayerChanges, ...]

    def to_json(self) -> Json:
        return {
            **schemas.header("layers"),
            "reference": self.reference,
            "digest": self.digest,
            "layers": [row.to_json() for row in self.layers],
        }

    def to_text(self, limit: int = LAYERS_TEXT_LIMIT) -> str:
        lines = []
        for row in self.layers:
            lines.append(
                f"Layer {row.index + 1}  {row.digest}  {_size(row.size)} -> "
                f"{_size(row.uncompressed_size)}, {row.entries} entries"
            )
            for label, key, paths in (
                ("+", "added", row.added),
                ("~", "changed", row.changed),
                ("-", "removed", row.removed),
            ):
                for p in paths[:limit]:
                    lines.append(f"  {label} {p}")
                if len(paths) > limit:
                    lines.append(f"  {label} ... and {len(paths) - limit} more {key}")
        return _text(lines)


def layers_data(loaded: ImageTree) -> LayersView:
    """Per layer, the paths it adds, changes and removes: the tree is rebuilt once, layer by
    layer, and each intermediate filesystem compared with the one before."""
    rows = []
    before: dict[str, tuple[str, int]] = {}
    tree = empty_tree(loaded.layers)
    for i in flatten_steps(tree):
        layer = loaded.layers[i]
        after = {p: (str(n.kind), n.layer) for p, n in tree.walk("/")}
        ref = loaded.image.layers[i]
        rows.append(
            LayerChanges(
                index=i,
                digest=str(layer.digest),
                diff_id=str(layer.diff_id),
                media_type=ref.descriptor.media_type,
                size=ref.descriptor.size,
                uncompressed_size=layer.size,
                entries=len(layer.entries),
                added=tuple(sorted(p for p in after if p not in before)),
                changed=tuple(sorted(p for p in after if p in before and after[p][1] == i)),
                removed=tuple(sorted(p for p in before if p not in after)),
            )
        )
        before = after
    return LayersView(str(loaded.image.ref), str(loaded.image.manifest_digest), tuple(rows))


def layers_text(view: LayersView, limit: int = LAYERS_TEXT_LIMIT) -> str:
    return view.to_text(limit)
