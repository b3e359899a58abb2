"""Output cannot lie about its own content: hostile names, labels and platforms travel through
the real pipeline (OCI layout -> resolve -> stream -> flatten -> rules -> render) and come out
escaped (textsafe) in every format, parseable by strict parsers, with the raw bytes recoverable."""

from __future__ import annotations

import base64
import http.server
import json
import os
import pty
import re
import select
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes
from xml.dom import minidom
from xml.etree import ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from ociboot.cli import app
from ociboot.textsafe import clean, escape, raw, unescape
from tests.support.bootimages import KVER, bootable
from tests.support.imagebuilder import ImageBuilder, LayerBuilder, build_index, write_oci_layout

REPO = Path(__file__).resolve().parent.parent

#: The bytes of issue 7: a screen clear, a bell, a C1 CSI, DEL and a byte that is not UTF-8.
HOSTILE_BYTES = b"\x1b[2J\x07\x9b\x7f\xff"
#: As a name from a tar (surrogateescape), so \x9b and \xff are undecodable bytes.
HOSTILE = HOSTILE_BYTES.decode("utf-8", "surrogateescape")
SHOWN = r"\x1b[2J\x07\x9b\x7f\xff"
#: In JSON text (a config label) the C1 control is a character: its UTF-8 bytes are shown.
LABEL = "\x1b[2J\x07\x9b\x7f\u202e"
LABEL_SHOWN = r"\x1b[2J\x07\xc2\x9b\x7f\xe2\x80\xae"
#: An OSC title change, as an index's platform architecture.
EVIL_ARCH = "evil\x1b]0;pwned\x07"
EVIL_ARCH_SHOWN = r"evil\x1b]0;pwned\x07"
BAD_FILE = f"/etc/bad{HOSTILE}.conf"
KERNEL_TARGET = f"vmlinuz-{KVER}{HOSTILE}"

# Anything a terminal or a strict consumer could act on: C0 but newline, DEL, C1, surrogates,
# bidi and line-separator controls.
_CONTROLS = "\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE = re.compile(f"[{_CONTROLS}\n]")
# In the CLI's output, also a replacement character: it would hide which byte it was.
_FORBIDDEN = re.compile(f"[{_CONTROLS}\ufffd]")


# --- the escaping itself -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain/name", "plain/name"),
        ("a\\b", "a\\\\b"),
        ("tab\tnl\ncr\r", "tab\\tnl\\ncr\\r"),
        (HOSTILE, SHOWN),
        (LABEL, LABEL_SHOWN),
        ("caf\udce9", "caf\\xe9"),
        ("café ünï 😀", "café ünï 😀"),
        ("\ud800", "\\xed\\xa0\\x80"),  # from a JSON escape: its WTF-8 bytes, nothing dropped
    ],
)
def test_escape_spells_bytes(text: str, shown: str) -> None:
    assert escape(text) == shown
    assert unescape(shown) == raw(text)


_names = st.one_of(
    st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=40),
)


@given(_names)
def test_escape_is_safe_and_reversible(text: str) -> None:
    shown = escape(text)
    assert _UNSAFE.search(shown) is None
    shown.encode("utf-8")  # strict: no surrogate survives
    assert unescape(shown) == raw(text)


def test_the_escape_table_is_spelled_on_first_need_not_at_start_up() -> None:
    # 2,128 spelled characters cost every command about 7 ms before it has a name to escape.
    code = (
        "import ociboot.cli, ociboot.textsafe as t; n = lambda: t._table.cache_info().currsize; "
        "print(n(), t.escape('plain'), n(), t.escape('a\\x1b'), n())"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["0", "plain", "0", "a\\x1b", "1"]


def test_clean_adds_raw_bytes_beside_names_only() -> None:
    data = {"path": BAD_FILE, "labels": {"path": LABEL}, "other": HOSTILE, "list": [HOSTILE]}
    out = clean(data)
    assert out["path"] == f"/etc/bad{SHOWN}.conf"
    assert base64.b64decode(out["pathBase64"]) == raw(BAD_FILE)
    assert out["labels"]["path"] == LABEL_SHOWN and "pathBase64" in out["labels"]
    assert out["other"] == SHOWN and "otherBase64" not in out and out["list"] == [SHOWN]
    assert "pathBase64" not in clean({"path": "/fine"})


# --- through the real pipeline and the CLI -----------------------------------------------------


def _hostile_image() -> Any:
    img = bootable("generic")
    img.labels = {f"key{LABEL}": f"value{LABEL}"}
    img.link("/boot/vmlinuz", KERNEL_TARGET)  # dangling, so the kernel link check fails with it
    img.file(BAD_FILE, "x")  # a LAY-004 finding message holds the name
    return img.build()


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    evil = ImageBuilder(arch=EVIL_ARCH).add_layer(LayerBuilder().file("etc/os-release", "ID=x\n")).build()
    root = tmp_path_factory.mktemp("hostile") / "layout"
    write_oci_layout(root, {"latest": _hostile_image(), "multi": build_index([_hostile_image(), evil])})
    return root


@dataclass
class Ran:
    returncode: int
    stdout: bytes
    stderr: bytes


def _run(*args: str) -> Ran:
    """The CLI in-process; the runner's stdout is strict UTF-8, as under a normal UTF-8 locale."""
    result = CliRunner().invoke(app, [*args, "--quiet"], env={"COLUMNS": "400"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, result.stdout_bytes, result.stderr_bytes)


def _safe_text(data: bytes) -> str:
    """Strict UTF-8 with nothing a terminal or a strict parser would act on."""
    text = data.decode("utf-8")
    bad = _FORBIDDEN.search(text)
    assert bad is None, (
        f"{bad.group()!r} at {bad.start()}: {text[max(0, bad.start() - 60) : bad.end() + 20]!r}"
    )
    return text


def _strict_json(text: str) -> Any:
    doc = json.loads(text)
    json.dumps(doc, ensure_ascii=False).encode("utf-8")  # no lone surrogate anywhere
    return doc


def _check(layout: Path, fmt: str, tmp_path: Path, *images: str) -> str:
    """`check` to stdout and to -o FILE: both complete, identical and safe."""
    refs = [f"oci:{layout}:{name}" for name in images or ("latest",)]
    to_stdout = _run("check", *refs, "--format", fmt)
    out_file = tmp_path / f"report.{fmt}"
    to_file = _run("check", *refs, "--format", fmt, "--output", str(out_file))
    for done in (to_stdout, to_file):
        assert done.returncode == 1, done.stderr  # not bootable: the kernel link dangles
    assert out_file.read_bytes() == to_stdout.stdout
    return _safe_text(to_stdout.stdout)


def test_check_text(layout: Path, tmp_path: Path) -> None:
    out = _check(layout, "text", tmp_path)
    assert f"/boot/vmlinuz -> vmlinuz-{KVER}{SHOWN}" in out
    assert f"/etc/bad{SHOWN}.conf: non-UTF-8 file name" in out
    assert "NOT BOOTABLE" in out


def test_check_json_keeps_raw_bytes(layout: Path, tmp_path: Path) -> None:
    doc = _strict_json(_check(layout, "json", tmp_path))
    findings = doc["reports"][0]["findings"]
    (bad,) = [f for f in findings if f["rule"] == "LAY-004" and "file name" in f["message"]]
    assert bad["path"] == f"/etc/bad{SHOWN}.conf"
    assert base64.b64decode(bad["pathBase64"]) == b"/etc/bad" + HOSTILE_BYTES + b".conf"
    assert unescape(bad["path"]) == b"/etc/bad" + HOSTILE_BYTES + b".conf"
    (link,) = [f for f in findings if f["rule"] == "LNK-001" and f["outcome"] == "fail"]
    assert f"vmlinuz-{KVER}{SHOWN}" in link["message"]


def test_check_sarif(layout: Path, tmp_path: Path) -> None:
    doc = _strict_json(_check(layout, "sarif", tmp_path))
    results = doc["runs"][0]["results"]
    (bad,) = [r for r in results if f"/etc/bad{SHOWN}.conf: non-UTF-8" in r["message"]["text"]]
    uri = bad["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri.isascii() and unquote_to_bytes(uri).endswith(b"/etc/bad" + HOSTILE_BYTES + b".conf")


def test_check_junit_is_well_formed(layout: Path, tmp_path: Path) -> None:
    out = _check(layout, "junit", tmp_path)
    minidom.parseString(out.encode("utf-8"))
    root = ET.fromstring(out)
    names = [case.get("name") for case in root.iter("testcase")]
    assert f"LAY-004 /etc/bad{SHOWN}.conf" in names
    texts = [el.text or "" for el in root.iter() if el.tag in ("failure", "system-out")]
    assert any(f"/boot/vmlinuz -> vmlinuz-{KVER}{SHOWN}" in t for t in texts)


def test_batch_with_hostile_platform_writes_every_report(layout: Path, tmp_path: Path) -> None:
    for fmt in ("text", "json", "junit", "sarif"):
        out = _check(layout, fmt, tmp_path, "latest", "latest")
        unjson = out.replace("\\\\", "\\") if fmt in ("json", "sarif") else out
        assert unjson.count(f"bad{SHOWN}.conf") >= 2, fmt
    done = _run("check", f"oci:{layout}:multi", "--all-platforms", "--format", "json")
    doc = _strict_json(_safe_text(done.stdout))
    assert f"linux/{EVIL_ARCH_SHOWN}" in {r["platform"] for r in doc["reports"]}


@pytest.mark.parametrize(
    "args",
    [
        ["ls", "-R"],
        ["ls", "-l", "/boot"],
        ["ls", "-l", "/etc"],
        ["stat", "/boot/vmlinuz"],
        ["layers"],
        ["inspect"],
    ],
)
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_views(layout: Path, args: list[str], fmt: str) -> None:
    command, *rest = args
    ref = f"oci:{layout}:multi" if command == "inspect" else f"oci:{layout}:latest"
    done = _run(command, ref, *rest, "--format", fmt)
    assert done.returncode == 0, done.stderr
    out = _safe_text(done.stdout)
    if fmt == "text":
        wanted = {
            "ls": f"bad{SHOWN}.conf" if "/boot" not in rest else f"vmlinuz-{KVER}{SHOWN}",
            "stat": f"/boot/vmlinuz -> vmlinuz-{KVER}{SHOWN}",
            "layers": "+ /boot/vmlinuz\n",  # the first 8 names only
            "inspect": f"key{LABEL_SHOWN}=value{LABEL_SHOWN}",
        }[command]
        assert wanted in out
        if command == "inspect":
            assert f"linux/{EVIL_ARCH_SHOWN}" in out
        return
    doc = _strict_json(out)
    if command == "ls":
        rows = {r["path"]: r for r in doc["entries"]}
        if "/boot" in rest:
            link = rows["/boot/vmlinuz"]
            assert link["target"] == f"vmlinuz-{KVER}{SHOWN}"
            assert base64.b64decode(link["targetBase64"]) == f"vmlinuz-{KVER}".encode() + HOSTILE_BYTES
        else:
            row = rows[f"/etc/bad{SHOWN}.conf"]
            assert base64.b64decode(row["pathBase64"]) == b"/etc/bad" + HOSTILE_BYTES + b".conf"
    elif command == "layers":
        assert f"/etc/bad{SHOWN}.conf" in doc["layers"][0]["added"]
    elif command == "inspect":
        assert doc["config"]["labels"] == {f"key{LABEL_SHOWN}": f"value{LABEL_SHOWN}"}


def test_error_line_from_an_image_is_escaped(layout: Path) -> None:
    # A real process: the test runner's stderr would hide a surrogate as \\udcff.
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    cmd = [sys.executable, "-m", "ociboot", "ls", f"oci:{layout}:multi", "--platform", "linux/s390x", "-q"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, check=False)
    assert done.returncode == 3 and done.stdout == b""
    err = _safe_text(done.stderr)
    assert err.count("\n") == 1 and f"linux/{EVIL_ARCH_SHOWN}" in err


def _on_terminal(*args: str) -> bytes:
    """Run the CLI with its stdout and stderr on a pseudo-terminal; return all it drew."""
    primary, secondary = pty.openpty()
    env = {**os.environ, "COLUMNS": "400", "LINES": "50", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ociboot", *args, "--quiet"],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    out = b""
    while True:
        ready, _, _ = select.select([primary], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait()
    os.close(primary)
    return out


def test_rich_tables_on_a_terminal(layout: Path) -> None:
    drawn = _on_terminal("check", f"oci:{layout}:latest")
    text = drawn.decode("utf-8")
    # rich's own colours are the only escape sequences: Select Graphic Rendition, nothing else.
    plain = re.sub("\x1b\\[[0-9;]*m", "", text).replace("\r\n", "\n")
    assert "\x1b" not in plain and _FORBIDDEN.search(plain) is None, repr(plain[:400])
    assert f"/etc/bad{SHOWN}.conf: non-UTF-8 file name" in plain
    assert f"/boot/vmlinuz -> vmlinuz-{KVER}{SHOWN}" in plain
    assert "NOT BOOTABLE" in plain


class _HostileRegistry(http.server.BaseHTTPRequestHandler):
    """Answers every manifest request 400 with an OCI error body full of terminal controls."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/v2/":
            status, body = 200, b"{}"
        else:
            message = f"manifest unknown{LABEL}\n\rociboot: fake line"
            status = 400
            body = json.dumps({"errors": [{"code": "MANIFEST_INVALID", "message": message}]}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET


def test_registry_error_body_is_escaped() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HostileRegistry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ref = f"docker://127.0.0.1:{server.server_address[1]}/os:latest"
        env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
        cmd = [sys.executable, "-m", "ociboot", "inspect", ref, "-q"]
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, check=False, timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 3, done.stderr
    err = _safe_text(done.stderr)
    assert err.count("\n") == 1 and err.startswith("ociboot: error: "), err
    assert f"manifest unknown{LABEL_SHOWN}\\n\\rociboot: fake line" in err
