"""What `inspect`, `ls`, `stat` and `layers` show: JSON-ready dicts, and their text forms.

The dicts are the documented `--format json` output (README, "JSON output"); the text forms
are derived from the same dicts so both always agree.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .fs.node import Kind, Node
from .fs.overlay import empty_tree, flatten_steps
from .image import ResolvedImage
from .layer import LayerIndex
from .pipeline import ImageTree

SCHEMA_VERSION = 1


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


# --- inspect ---------------------------------------------------------------------------------


def inspect_data(image: ResolvedImage, layers: Sequence[LayerIndex] | None) -> dict[str, Any]:
    cfg = image.config
    rows = []
    for i, ref in enumerate(image.layers):
        d = ref.descriptor
        row: dict[str, Any] = {
            "digest": str(d.digest),
            "mediaType": d.media_type,
            "size": d.size,
            "diffID": str(ref.diff_id),
        }
        if layers is not None:
            row["uncompressedSize"] = layers[i].size
            row["compression"] = str(layers[i].compression)
            row["entries"] = len(layers[i].entries)
            if layers[i].notes:
                row["notes"] = list(layers[i].notes)
        rows.append(row)
    return {
        "schemaVersion": SCHEMA_VERSION,
        "reference": str(image.ref),
        "digest": str(image.manifest_digest),
        "mediaType": image.media_type,
        "index": None
        if image.index_digest is None
        else {
            "digest": str(image.index_digest),
            "platforms": [str(p) for p in image.platforms],
        },
        "platform": str(image.platform),
        "config": {
            "digest": str(image.config_digest),
            "created": cfg.created,
            "labels": dict(cfg.labels),
            "entrypoint": list(cfg.entrypoint),
            "cmd": list(cfg.cmd),
            "env": list(cfg.env),
            "user": cfg.user,
        },
        "layers": rows,
        "size": sum(d.descriptor.size for d in image.layers),
        "uncompressedSize": None if layers is None else sum(layer.size for layer in layers),
    }


def inspect_text(data: dict[str, Any]) -> str:
    lines = [
        f"Reference:  {data['reference']}",
        f"Digest:     {data['digest']}",
        f"MediaType:  {data['mediaType']}",
        f"Platform:   {data['platform']}",
    ]
    if data["index"]:
        lines.append(f"Index:      {data['index']['digest']}")
        lines.append(f"Platforms:  {', '.join(data['index']['platforms'])}")
    cfg = data["config"]
    lines.append(f"Config:     {cfg['digest']}")
    if cfg["created"]:
        lines.append(f"Created:    {cfg['created']}")
    if cfg["entrypoint"] or cfg["cmd"]:
        lines.append(f"Command:    {' '.join(cfg['entrypoint'] + cfg['cmd'])}")
    for key, value in sorted(cfg["labels"].items()):
        lines.append(f"Label:      {key}={value}")
    total = _size(data["size"])
    if data["uncompressedSize"] is not None:
        total += f" compressed, {_size(data['uncompressedSize'])} uncompressed"
    lines.append(f"Layers:     {len(data['layers'])} ({total})")
    for i, row in enumerate(data["layers"], 1):
        unc = f" -> {_size(row['uncompressedSize'])}" if "uncompressedSize" in row else ""
        lines.append(f"  {i:>2}  {row['digest'][:19]}  {_size(row['size']):>10}{unc:>14}  {row['mediaType']}")
        for note in row.get("notes", ()):
            lines.append(f"        note: {note}")
    return "\n".join(lines)


# --- ls / stat -------------------------------------------------------------------------------


def _node_row(tree: Any, path: str, node: Node) -> dict[str, Any]:
    e = node.entry
    row: dict[str, Any] = {
        "path": path,
        "type": str(node.kind if node.hardlink is None else Kind.FILE),
        "mode": f"{e.mode & 0o7777:04o}",
        "uid": e.uid,
        "gid": e.gid,
        "size": e.size if node.kind is Kind.FILE else 0,
        "mtime": e.mtime,
        "layer": node.layer,
    }
    if node.hardlink is not None:
        row["hardlinkOf"] = "/" + e.path
    if node.is_symlink:
        row["target"] = e.linkname
        res = tree.lookup(path)
        row["resolved"] = res.path if res.node is not None and not res.error else None
        if res.error:
            row["error"] = res.error
        row["chain"] = [{"path": p, "target": t} for p, t in res.chain]
    return row


def listing(loaded: ImageTree, path: str, *, recursive: bool) -> dict[str, Any]:
    tree = loaded.tree
    res = tree.lookup(path)
    if res.node is None or not res.ok:
        from .errors import ImageNotFound

        raise ImageNotFound(f"{path}: {res.reason} in {loaded.image.ref}")
    rows: list[dict[str, Any]] = []
    if not res.node.is_dir:
        rows.append(_node_row(tree, res.path, res.node))
    elif recursive:
        for p, node in tree.walk(res.path):
            if p != res.path:
                rows.append(_node_row(tree, p, node))
    else:
        for name, node in tree.listdir(res.path):
            rows.append(_node_row(tree, posixpath.join(res.path, name), node))
    return {
        "schemaVersion": SCHEMA_VERSION,
        "reference": str(loaded.image.ref),
        "digest": str(loaded.image.manifest_digest),
        "path": res.path,
        "entries": rows,
    }


def _mtime(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def _filemode(row: dict[str, Any]) -> str:
    import stat

    kind = {"file": "-", "dir": "d", "symlink": "l", "hardlink": "-", "char": "c", "block": "b", "fifo": "p"}[
        row["type"]
    ]
    return kind + stat.filemode(int(row["mode"], 8) | stat.S_IFREG)[1:]


def listing_text(data: dict[str, Any], *, long: bool) -> str:
    lines = []
    for row in data["entries"]:
        name = row["path"]
        if not long:
            lines.append(name + ("/" if row["type"] == "dir" else ""))
            continue
        suffix = ""
        if row["type"] == "symlink":
            where = row["resolved"] or f"({row.get('error', 'missing')})"
            suffix = f" -> {row['target']}"
            if where != row["target"]:
                suffix += f"  => {where}"
        elif "hardlinkOf" in row:
            suffix = f"  (hardlink of {row['hardlinkOf']})"
        lines.append(
            f"{_filemode(row)} {row['uid']:>5}/{row['gid']:<5} {row['size']:>10} "
            f"{_mtime(row['mtime'])}  {name}{suffix}"
        )
    return "\n".join(lines)


def stat_data(loaded: ImageTree, path: str) -> dict[str, Any]:
    tree = loaded.tree
    res = tree.lookup(path)
    lres = tree.lookup(path, follow=False)
    data: dict[str, Any] = {
        "schemaVersion": SCHEMA_VERSION,
        "reference": str(loaded.image.ref),
        "path": path if path.startswith("/") else "/" + path,
        "exists": lres.node is not None,
        "resolved": res.path if res.node is not None and not res.error else None,
        "chain": [{"path": p, "target": t} for p, t in res.chain],
        "error": res.error,
    }
    node = res.node if res.node is not None and not res.error else lres.node
    if node is not None:
        layer = loaded.layers[node.layer]
        data.update(_node_row(tree, res.path if node is res.node else lres.path, node))
        data["path"] = path if path.startswith("/") else "/" + path
        data["layer"] = {"index": node.layer, "digest": str(layer.digest), "diffID": str(layer.diff_id)}
        if node.entry.xattrs:
            data["xattrs"] = {k: v.hex() for k, v in sorted(node.entry.xattrs.items())}
    return data


def stat_text(data: dict[str, Any]) -> str:
    if not data["exists"]:
        return f"{data['path']}: no such file or directory"
    lines = [f"  Path: {data['path']}"]
    for hop in data["chain"]:
        lines.append(f"  Link: {hop['path']} -> {hop['target']}")
    if data["error"]:
        lines.append(f" Error: {data['error']}")
    elif data["resolved"] and data["resolved"] != data["path"]:
        lines.append(f"  Real: {data['resolved']}")
    if "type" in data:
        lines.append(
            f"  Type: {data['type']}   Mode: {data['mode']} ({_filemode(data)})   "
            f"Owner: {data['uid']}/{data['gid']}"
        )
        lines.append(f"  Size: {data['size']}   Modified: {_mtime(data['mtime'])} UTC")
        layer = data["layer"]
        lines.append(f" Layer: {layer['index'] + 1} {layer['digest']}")
    return "\n".join(lines)


# --- layers ----------------------------------------------------------------------------------


def layers_data(loaded: ImageTree) -> dict[str, Any]:
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
            {
                "index": i,
                "digest": str(layer.digest),
                "diffID": str(layer.diff_id),
                "mediaType": ref.descriptor.media_type,
                "size": ref.descriptor.size,
                "uncompressedSize": layer.size,
                "entries": len(layer.entries),
                "added": sorted(p for p in after if p not in before),
                "changed": sorted(p for p in after if p in before and after[p][1] == i),
                "removed": sorted(p for p in before if p not in after),
            }
        )
        before = after
    return {
        "schemaVersion": SCHEMA_VERSION,
        "reference": str(loaded.image.ref),
        "digest": str(loaded.image.manifest_digest),
        "layers": rows,
    }


def layers_text(data: dict[str, Any], limit: int = 8) -> str:
    lines = []
    for row in data["layers"]:
        lines.append(
            f"Layer {row['index'] + 1}  {row['digest']}  {_size(row['size'])} -> "
            f"{_size(row['uncompressedSize'])}, {row['entries']} entries"
        )
        for label, key in (("+", "added"), ("~", "changed"), ("-", "removed")):
            paths = row[key]
            for p in paths[:limit]:
                lines.append(f"  {label} {p}")
            if len(paths) > limit:
                lines.append(f"  {label} ... and {len(paths) - limit} more {key}")
    return "\n".join(lines)
