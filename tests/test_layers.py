"""The import rule of the layered house (HOUSE.md), checked on the source.

- ``kadnode/core`` is pure: no asyncio, socket, time, sqlite3 or other I/O
  modules, no draws from the global ``random`` (only ``random.Random``, passed
  in), and nothing from ``shell``, ``cli`` or ``sim``.
- ``shell`` may import ``core``; ``sim`` imports ``core``, never ``shell``;
  ``cli`` may import ``shell`` and ``core``, and ``sim`` only inside a
  function (``kadnode sim`` loads it when asked). Nothing imports ``cli``.
- The shared top-level modules (``config``, ``errors``, ``inputs``,
  ``stats``) import only each other.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "kadnode"
SHARED = {"config", "errors", "inputs", "stats"}
IO_MODULES = {
    "asyncio",
    "socket",
    "selectors",
    "ssl",
    "time",
    "sqlite3",
    "subprocess",
    "multiprocessing",
    "http",
    "urllib",
    "aiodns",
    "pycares",
    "uvloop",
}
# What each layer may import from inside the package, at module level.
ALLOWED = {
    "shared": SHARED,
    "core": SHARED | {"core"},
    "shell": SHARED | {"core", "shell"},
    "sim": SHARED | {"core", "sim"},
    "cli": SHARED | {"core", "shell", "cli"},
}
# Imported only from inside a function (a lazy import).
LAZY = {"cli": {"sim"}}


@dataclass(frozen=True)
class Import:
    module: str  # dotted, absolute
    line: int
    lazy: bool  # inside a function body


def layer_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    if len(parts) == 1:
        return "root" if parts[0] == "__init__.py" else "shared"
    return parts[0]


def imports_of(source: str) -> list[Import]:
    tree = ast.parse(source)
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend(Import(alias.name, child.lineno, lazy) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    raise AssertionError(f"line {child.lineno}: use absolute kadnode imports")
                module = child.module or ""
                found.append(Import(module, child.lineno, lazy))
                # "from kadnode import shell" names a layer as well.
                found.extend(
                    Import(f"{module}.{alias.name}", child.lineno, lazy) for alias in child.names
                )
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                continue  # annotations only: never imported at run time
            visit(child, inner)

    visit(tree, False)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


def global_random_calls(source: str) -> list[int]:
    """Lines that draw from the process-wide ``random`` (anything but ``random.Random``)."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "random"
        and node.attr != "Random"
    ]


def violations(path: Path, source: str) -> list[str]:
    layer = layer_of(path)
    if layer == "root":
        return []
    out = []
    for imp in imports_of(source):
        top, _, rest = imp.module.partition(".")
        if top != "kadnode":
            if layer in ("core", "shared") and top in IO_MODULES:
                out.append(f"line {imp.line}: {layer} imports {imp.module} (I/O)")
            continue
        if not rest:
            continue
        target = rest.split(".")[0]
        if target == "__version__" or target in ALLOWED[layer]:
            continue
        if imp.lazy and target in LAZY.get(layer, set()):
            continue
        out.append(f"line {imp.line}: {layer} imports kadnode.{rest}")
    if layer == "core":
        out += [f"line {n}: core draws from the global random" for n in global_random_calls(source)]
    return out


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_keeps_the_import_rule(path: Path) -> None:
    problems = violations(path, path.read_text())
    assert not problems, f"{path.relative_to(PACKAGE)}: " + "; ".join(problems)


def test_the_layers_are_folders() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert {"core", "shell", "cli", "sim"} <= folders
    flat = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert flat <= SHARED, f"top-level modules outside the shared ones: {flat - SHARED}"


@pytest.mark.parametrize(
    ("where", "source", "complaint"),
    [
        ("core/x.py", "import asyncio\n", "core imports asyncio (I/O)"),
        ("core/x.py", "import time\n", "core imports time (I/O)"),
        ("core/x.py", "import sqlite3\n", "core imports sqlite3 (I/O)"),
        ("core/x.py", "from socket import socket\n", "core imports socket (I/O)"),
        ("core/x.py", "from kadnode.shell import daemon\n", "core imports kadnode.shell"),
        ("core/x.py", "from kadnode.sim.network import SimNetwork\n", "core imports kadnode.sim"),
        ("core/x.py", "import random\nx = random.random()\n", "core draws from the global"),
        ("sim/x.py", "from kadnode.shell.library import Server\n", "sim imports kadnode.shell"),
        ("shell/x.py", "from kadnode.cli import main\n", "shell imports kadnode.cli"),
        ("cli/x.py", "from kadnode.sim import cli\n", "cli imports kadnode.sim"),
        ("config.py", "from kadnode.core import ids\n", "shared imports kadnode.core"),
    ],
)
def test_the_rule_catches_what_it_forbids(where: str, source: str, complaint: str) -> None:
    problems = violations(PACKAGE / where, source)
    assert any(complaint in p for p in problems), problems


@pytest.mark.parametrize(
    ("where", "source"),
    [
        ("core/x.py", "import random\nrng = random.Random(1)\n"),
        ("core/x.py", "from kadnode.config import K\nfrom kadnode.core.ids import ID_BITS\n"),
        ("cli/x.py", "def run():\n    from kadnode.sim import cli\n"),
        ("shell/x.py", "from kadnode.core.node import NodeCore\n"),
    ],
)
def test_the_rule_allows_what_the_house_allows(where: str, source: str) -> None:
    assert violations(PACKAGE / where, source) == []
