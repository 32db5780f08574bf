"""The code base stays formatted and lint-clean (ruff, configured in pyproject.toml)."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions, requires
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff(command):
    assert RUFF is not None, "ruff is in the test extra: pip install -e '.[test]'"
    result = subprocess.run(
        [RUFF, *command, "kadnode", "tests", "bench", "chaos", "bootstrap", ".ci"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# What the test suite runs: the package, the tests, and the tools they drive.
SOURCES = ("kadnode", "tests", "bench", "chaos", "bootstrap")
# Imported only under "except ImportError", each with the extra that brings it.
OPTIONAL = {"uvloop": "fast"}


def third_party_imports() -> dict[str, str]:
    """Top-level module -> the first file importing it, for every module that is neither
    the standard library's nor one of this repository's own."""
    # Helpers beside the tests and tools are imported by their bare names (fakes, workload).
    own = {p.stem for folder in SOURCES[1:] for p in (ROOT / folder).glob("*.py")} | set(SOURCES)
    found: dict[str, str] = {}
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.partition(".")[0]
                    if top not in sys.stdlib_module_names and top not in own:
                        found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def normalized(name: str) -> str:
    """A distribution's name as PEP 503 compares them (prometheus_client is prometheus-client)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: list[str]) -> set[str]:
    return {normalized(re.split(r"[\s<>=!~\[;]", r, maxsplit=1)[0]) for r in requirements}


def test_every_package_the_suite_imports_is_installed_by_the_test_extra():
    """pip install -e '.[test]' must bring whatever the tests (and what they run) import,
    so no test skips for a missing package and none fails for one."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = requirement_names(project["dependencies"] + project["optional-dependencies"]["test"])
    # A declared package's own dependencies come with it (aiodns brings pycares).
    declared |= {
        name for dist in list(declared) for name in requirement_names(requires(dist) or [])
    }
    modules = packages_distributions()
    for module, where in third_party_imports().items():
        if module in OPTIONAL:
            assert OPTIONAL[module] in project["optional-dependencies"], module
            continue
        dists = {normalized(d) for d in modules.get(module, [])}
        assert dists, f"{module} (imported by {where}) is not installed"
        assert dists & declared, f"{module} (imported by {where}) is not in the test extra"
