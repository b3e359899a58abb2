"""The architecture's rules, enforced: import layering (docs/architecture.md §3) and the pinned public API."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import ociboot
from tests.support.imagebuilder import ImageBuilder, LayerBuilder, write_oci_archive, write_oci_layout

PKG = Path(ociboot.__file__).parent

# Level of each module (lower never imports higher).  Modules not listed fail the test, so a
# new module must be placed on purpose.  Inside `boot` the analyzers (kernel, initrd, pkgdb,
# scan) come first, then what rules read (context, check, facts), then the tool emulations,
# then the rule families, then profile detection and policies, which list the rules.  A layer
# is asked for (layer.select) and read ahead (layer.readahead), then walked (layer.tarwalk) and
# indexed (layer.index); the cache encodes results (cache.codec) in entries (cache.entry) that
# its store (cache.store) keeps.  A package's __init__ sits above its modules: it re-exports them.
LEVELS: dict[str, float] = {
    "errors": 0,
    "budget": 0,
    "collector": 0,
    "digest": 0,
    "streams": 0,
    "mediatypes": 0,
    "report": 0,
    "textsafe": 0,
    "schemas": 0,
    "fs.node": 0,
    "ref": 1,
    "reflist": 1,
    "spec": 1,
    "compression": 1,
    "fs.tree": 1,
    "fs.overlay": 1,
    "fs": 1,
    "render.markdown": 0,
    "render.names": 0,
    "render.junit": 0,
    "render.sarif": 1.5,
    "render": 1.5,
    "sources": 2,
    "sources._store": 2,
    "sources._compressed": 2,
    "sources.layout": 2,
    "sources.docker_archive": 2,
    "sources.registry": 2,
    "sources.auth": 2,
    "image": 3,
    "layer.select": 3,
    "layer.readahead": 3,
    "layer.tarwalk": 3.1,
    "layer.index": 3.2,
    "layer": 3.3,
    "cache.codec": 3.4,
    "cache.entry": 3.5,
    "cache.verdict": 3.55,
    "cache.remote": 3.58,
    "cache.store": 3.6,
    "cache": 3.7,
    "copy": 3.8,
    "boot": 4,
    "boot.context": 4.1,
    "boot.check": 4.1,
    "boot.facts": 4.1,
    "boot.emulate": 4.2,
    "boot.rules": 4.3,
    "boot.profiles": 4.4,
    "pipeline": 5,
    "views": 5,
    "verdict": 5.2,
    "api": 5.5,
    "promolist": 5.5,
    "outputs": 5.7,
    "promote": 5.5,
    "audit.record": 5.1,
    "audit.targets": 5.1,
    "audit.html": 5.1,
    # A Dask worker opens the run's cache as `check` does (api.open_cache); the executor that
    # picks it sits above it.
    "audit.dask": 5.6,
    "audit.executor": 5.65,
    "audit": 5.9,
    "cli": 6,
    "__main__": 6,
    "__init__": 6,
}
# Third-party libraries and the only modules allowed to import them.
OWNERS = {
    # oras-py's public API cannot work within ociboot's bounds (docs/architecture.md, "Registry
    # access and oras-py"): nothing imports it.
    "oras": set(),
    "requests": {"sources.registry.transport"},
    "urllib3": {"sources.registry.transport"},
    "zstandard": {"compression"},
    "isal": {"compression"},
    "zlib_ng": {"compression"},
    "lz4": {"compression"},
    "magic": {"boot._sniff"},
    "typer": {"cli", "__main__"},
    "rich": {"cli", "__main__"},
    # the optional `redis` extra, imported only when a shared cache is asked for (--cache-url)
    "redis": {"cache.remote"},
    # the ociboot[dask] extra, loaded only for `--executor dask://…`
    "distributed": {"audit.dask"},
    "dask": {"audit.dask"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts.pop()
        out[".".join(parts)] = path
    return out


def _level(module: str) -> float:
    probe = module
    while probe:
        if probe in LEVELS:
            return LEVELS[probe]
        probe = probe.rpartition(".")[0]
    raise AssertionError(f"module ociboot.{module} has no level in LEVELS (docs/architecture.md §3)")


def _imports(module: str, path: Path) -> list[tuple[str, bool]]:
    """(imported name, is_ociboot) for every import statement, resolved to absolute names."""
    tree = ast.parse(path.read_text())
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name
                if name.startswith("ociboot."):
                    found.append((name.removeprefix("ociboot."), True))
                else:
                    found.append((name, False))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*anchor, node.module] if node.module else anchor)
                if node.module is None:
                    found.extend((f"{target}.{a.name}".strip("."), True) for a in node.names)
                else:
                    found.append((target, True))
            elif node.module and (node.module == "ociboot" or node.module.startswith("ociboot.")):
                found.append((node.module.removeprefix("ociboot").lstrip("."), True))
            elif node.module:
                found.append((node.module, False))
    return found


def test_every_module_has_a_level() -> None:
    for module in _modules():
        _level(module)


def test_lower_levels_never_import_higher() -> None:
    problems = []
    modules = _modules()
    for module, path in modules.items():
        mine = _level(module)
        for name, internal in _imports(module, path):
            if not internal or not name:
                continue
            target = name
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != module and _level(target) > mine and not module.startswith(target + "."):
                problems.append(
                    f"ociboot.{module} (level {mine}) imports ociboot.{target} (level {_level(target)})"
                )
    assert not problems, "\n".join(problems)


def test_rule_families_never_import_each_other() -> None:
    """A rule family (boot.rules.<name>) imports only from below it: what two families share
    lives in context, check or emulate, so one family cannot change another's answer."""
    problems = []
    for module, path in _modules().items():
        if not module.startswith("boot.rules."):
            continue
        for name, internal in _imports(module, path):
            if internal and name.startswith("boot.rules") and name != module:
                problems.append(f"ociboot.{module} imports ociboot.{name}")
    assert not problems, "\n".join(problems)


#: Each tool's constants, by a literal only its emulation may write (boot.emulate.<tool>).
TOOL_CONSTANTS = {
    "/boot/uImage*": "boot.emulate.elemental_v2",
    "/boot/elemental.initrd*": "boot.emulate.elemental_v2",
    "uImage": "boot.emulate.elemental_v1",
    "/etc/kairos-release": "boot.emulate.kairos",
    "/etc/elemental/bootargs.cfg": "boot.emulate.grub",
}


def test_tool_constants_are_written_once() -> None:
    where: dict[str, set[str]] = {text: set() for text in TOOL_CONSTANTS}
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in where:
                where[node.value].add(module)
    assert where == {text: {owner} for text, owner in TOOL_CONSTANTS.items()}


def test_third_party_libraries_stay_behind_their_module() -> None:
    problems = []
    for module, path in _modules().items():
        for name, internal in _imports(module, path):
            top = name.split(".")[0]
            if not internal and top in OWNERS and module not in OWNERS[top]:
                problems.append(f"ociboot.{module} imports {top}; only {sorted(OWNERS[top])} may")
    assert not problems, "\n".join(problems)


def test_reading_local_images_loads_no_http_code() -> None:
    # pipeline.Options holds the run's RegistryClient; making one must not import the HTTP stack.
    code = (
        "import sys, ociboot.pipeline as p; p.Options(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('requests', 'urllib3', 'oras')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PKG.parent
    )
    assert done.stdout.strip() == "[]"


# --- start-up: a command imports only what it uses --------------------------------------------

REGISTRY = ("requests", "urllib3", "ociboot.sources.registry")
RULES = ("ociboot.boot.rules",)
#: What the rules read a tree with (kernels, initrds, package databases): `check`'s alone.
RULE_READING = ("ociboot.boot.context", "ociboot.boot.facts", "ociboot.boot.scan")
RICH = ("rich",)
#: The optional extras of `audit` (ociboot[dask], the Redis cache): loaded only when asked for.
EXTRAS = ("dask", "distributed", "redis")
REDIS = ("redis", "ociboot.cache.remote")
#: Typer 0.29 builds a pydantic validator per option it converts; ociboot converts its own (cli._Coercion).
PYDANTIC = ("pydantic", "pydantic_core")

#: Runs the CLI in this process as the `ociboot` script does, then writes what was imported.
_RUN_CLI = """
import json, sys
from ociboot.cli import main
out, sys.argv = sys.argv[1], ["ociboot", *sys.argv[2:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
with open(out, "w") as fh:
    json.dump({"code": code, "modules": sorted(sys.modules)}, fh)
"""


def _imported(tmp_path: Path, *args: str) -> tuple[int, str, set[str]]:
    """(exit code, stdout, modules loaded) of `ociboot ARGS` run in a fresh interpreter."""
    record = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", _RUN_CLI, str(record), *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=PKG.parent,
        timeout=120,
    )
    found = json.loads(record.read_text())
    return found["code"], done.stdout, set(found["modules"])


def _loaded(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


@pytest.fixture(scope="module")
def local_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    layer = LayerBuilder().file("etc/os-release", "ID=test\n").file("boot/vmlinuz-6.1", b"kernel")
    image = ImageBuilder().add_layer(layer, "gzip").build()
    root = tmp_path_factory.mktemp("startup")
    return {
        "oci-archive": str(write_oci_archive(root / "image.tar", {"v1": image})),
        "oci": f"oci:{write_oci_layout(root / 'layout', {'v1': image})}:v1",
    }


@pytest.mark.parametrize(
    ("args", "absent", "shown"),
    [
        (["--version"], REGISTRY + RULES + RICH + PYDANTIC, f"ociboot {ociboot.__version__}"),
        (["--help"], REGISTRY + RULES + RICH + PYDANTIC, "Commands:"),
        (["check", "--help"], REGISTRY + RULES + RICH + PYDANTIC, "--promotion-list"),
        (["audit", "--help"], REGISTRY + RULES + RICH + PYDANTIC + EXTRAS, "--resume"),
        (["rules"], REGISTRY + PYDANTIC, "kernel"),
        (["ls", "-q", "{oci-archive}", "/etc"], REGISTRY + RULES + RULE_READING + PYDANTIC, "os-release"),
        (["ls", "-q", "{oci}", "/etc"], REGISTRY + RULES + RULE_READING + PYDANTIC, "os-release"),
        (["inspect", "-q", "-f", "json", "{oci}"], REGISTRY + RULES + RULE_READING + PYDANTIC, '"layers"'),
        # the optional extras only when asked for: a local cache is no shared one
        (["ls", "-q", "--cache", "{oci}", "/etc"], REGISTRY + RULES + REDIS, "os-release"),
    ],
)
def test_a_command_imports_only_what_it_uses(
    tmp_path: Path, local_images: dict[str, str], args: list[str], absent: tuple[str, ...], shown: str
) -> None:
    code, out, modules = _imported(tmp_path, *(a.format_map(local_images) for a in args))
    assert code == 0 and shown in out
    assert _loaded(modules, absent) == []


def test_the_start_up_probe_sees_what_a_command_loads(tmp_path: Path, local_images: dict[str, str]) -> None:
    # The same probe on the command that needs them: rules for a check, the registry for a
    # docker:// image (refused before any connection: a port no one listens on is not reached).
    code, _, modules = _imported(tmp_path, "check", "-q", local_images["oci-archive"])
    assert code in (0, 1) and _loaded(modules, RULES)
    code, _, modules = _imported(tmp_path, "inspect", "-q", "--timeout", "5s", "docker://127.0.0.1:9/none:v1")
    assert code == 3 and _loaded(modules, REGISTRY) and not _loaded(modules, RULE_READING)
    # A check that sets options of every kind (a number, repeated text, an enum) loads no pydantic.
    args = [
        "check",
        "-q",
        "-j",
        "2",
        "--skip",
        "BTC-001",
        "--skip",
        "BTC-002",
        "--profile",
        "generic",
        "-f",
        "json",
    ]
    code, _, modules = _imported(tmp_path, *args, local_images["oci-archive"])
    assert code in (0, 1) and _loaded(modules, RULES + RULE_READING) and not _loaded(modules, PYDANTIC)
    # A value typer refuses is left to typer (and its message), which may load what it needs.
    code, _, modules = _imported(tmp_path, "check", "-q", "-j", "0", local_images["oci-archive"])
    assert code == 2
    # and redis for a shared cache (a port no one listens on: a warning, the run goes on)
    code, _, modules = _imported(
        tmp_path, "ls", "-q", "--cache-url", "redis://127.0.0.1:9/0", local_images["oci"], "/etc"
    )
    assert code == 0 and set(REDIS) <= modules


def test_an_audit_without_dask_or_redis_options_imports_neither(tmp_path: Path) -> None:
    # A real run (the namespace's catalog cannot be read: nothing listens on port 9), so the
    # executor and the cache were opened: threads and a private directory, no extra.
    code, _, modules = _imported(tmp_path, "audit", "-q", "--timeout", "5s", "docker://127.0.0.1:9")
    assert code == 3 and _loaded(modules, REGISTRY)
    assert _loaded(modules, EXTRAS) == []


def test_public_api_is_pinned() -> None:
    assert sorted(ociboot.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert hasattr(ociboot, name), name


PUBLIC = [
    "__version__",
    "parse_ref",
    "ImageRef",
    "Platform",
    "Digest",
    "open_source",
    "SourceOptions",
    "resolve",
    "resolve_all",
    "ResolvedImage",
    "CaptureSpec",
    "index_layer",
    "flatten",
    "FileTree",
    "Options",
    "load_tree",
    "OcibootError",
    "check",
    "Batch",
    "promote",
    "Promotion",
    "Policy",
    "Profile",
    "Report",
    "Finding",
    "Severity",
    "Unreadable",
]
