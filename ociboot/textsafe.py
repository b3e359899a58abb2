r"""Text from an image or a registry made safe to print and to serialize: one escaping for all.

Names in a layer are bytes, decoded with surrogateescape (layer.py), so a byte that is not
UTF-8 is a lone surrogate in our strings; config labels, platforms and registry error bodies
may hold control characters.  Written as they are, surrogates crash a strict UTF-8 writer and
make JSON/SARIF invalid, C0 characters make JUnit not well-formed, and controls drive the
terminal (screen clears, forged lines, title and hyperlink spoofing).

`escape` is the only escaping, used by every renderer and the CLI's error lines, in every
format (README, "Names that are not UTF-8").  Like `ls -b`, in the hex bootc uses, it spells
the bytes of the name:

    \\          a backslash
    \t \n \r    tab, newline, carriage return
    \xNN        every other byte of a C0 control or DEL, of a C1 control, of a Unicode
                bidirectional or line-separator control, and each byte that is not UTF-8
                (a surrogate from a JSON `\ud800` escape, not from a byte: its WTF-8 bytes)

Everything else is left as it is.  `unescape(escape(text)) == raw(text)`, so the raw bytes are
always recoverable; JSON also carries a name's bytes as base64 (`clean`).  stdlib only
(import level 0).
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Mapping
from typing import Any

# What is escaped, as (first, last) code points: backslash, C0 controls, DEL and C1 controls,
# the bidi marks, embeddings, overrides and isolates, the line and paragraph separators, and
# surrogates (undecodable bytes).
_ESCAPED = (
    (0x5C, 0x5C),
    (0x00, 0x1F),
    (0x7F, 0x9F),
    (0x061C, 0x061C),
    (0x200E, 0x200F),
    (0x2028, 0x202E),
    (0x2066, 0x2069),
    (0xD800, 0xDFFF),
)
_UNSAFE = re.compile("[" + "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in _ESCAPED) + "]")
_SHORT = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_ESCAPE = re.compile(r"\\(x[0-9a-f]{2}|[\\tnr])")
_UNSHORT = {"\\": b"\\", "t": b"\t", "n": b"\n", "r": b"\r"}

#: Suffix of the JSON key that carries a name's raw bytes beside its escaped text.
RAW_SUFFIX = "Base64"
#: JSON keys whose values are names from a layer (bytes, maybe not UTF-8): the keys that get a
#: `<key>Base64` sibling when escaped.  Free-form maps (labels, os-release) never do, so that
#: no sibling can collide with one of their own keys.
NAME_KEYS = frozenset({"path", "target", "resolved", "hardlinkOf"})


def raw(text: str) -> bytes:
    """The bytes `text` stands for: UTF-8, with surrogateescape'd bytes restored."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        # A surrogate outside U+DC80..U+DCFF came from a JSON `\\ud800` escape, not from a
        # byte: keep it as its WTF-8 bytes so that nothing is dropped.
        return b"".join(
            c.encode("utf-8", "surrogateescape" if "\udc80" <= c <= "\udcff" else "surrogatepass")
            for c in text
        )


def _spelled(c: str) -> str:
    short = _SHORT.get(c)
    return short if short is not None else "".join(f"\\x{b:02x}" for b in raw(c))


@functools.cache
def _table() -> dict[int, str]:
    """str.translate's map: every character at C speed (a name can be all controls).  Spelling
    its 2,128 entries costs about 7 ms, made on the first name that needs it, not at start-up."""
    return {code: _spelled(chr(code)) for lo, hi in _ESCAPED for code in range(lo, hi + 1)}


def escape(text: str) -> str:
    """`text` with backslashes, control characters and undecodable bytes escaped (see above)."""
    return text if _UNSAFE.search(text) is None else text.translate(_table())


def unescape(text: str) -> bytes:
    """The bytes that `escape` wrote as `text`."""
    out = bytearray()
    at = 0
    for match in _ESCAPE.finditer(text):
        out += text[at : match.start()].encode("utf-8")
        code = match.group(1)
        out += bytes([int(code[1:], 16)]) if code[0] == "x" else _UNSHORT[code]
        at = match.end()
    out += text[at:].encode("utf-8")
    return bytes(out)


def shortened(text: str, limit: int) -> str:
    """`text`, or its first `limit` characters and `…` when it is longer: what a message quotes
    of something it does not control (a registry's error, an exception's text)."""
    return text if len(text) <= limit else text[:limit] + "\u2026"


def clean(data: Any, *, raw_keys: frozenset[str] = NAME_KEYS) -> Any:
    """JSON-ready `data` with every string (keys too) escaped; a value under one of `raw_keys`
    that had to be escaped gets a sibling `<key>Base64` with its raw bytes."""
    if isinstance(data, str):
        return escape(data)
    if isinstance(data, Mapping):
        out: dict[Any, Any] = {}
        for key, value in data.items():
            name = escape(key) if isinstance(key, str) else key
            out[name] = clean(value, raw_keys=raw_keys)
            if key in raw_keys and isinstance(value, str) and out[name] != value:
                out[f"{name}{RAW_SUFFIX}"] = base64.b64encode(raw(value)).decode("ascii")
        return out
    if isinstance(data, list | tuple):
        return [clean(item, raw_keys=raw_keys) for item in data]
    return data


__all__ = ["NAME_KEYS", "RAW_SUFFIX", "clean", "escape", "raw", "shortened", "unescape"]
