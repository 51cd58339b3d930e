"""pyproject.toml declares every third-party package the product imports directly: an undeclared one
works only while another package happens to pull it in (cryptography, anyio and numpy did)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib

from ffwatt.settings import REPO

# What `pip install ffwatt` ships (pyproject's packages); the notebook generator is a dev tool.
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
ROOMS = sorted({package.split(".")[0] for package in PYPROJECT["tool"]["setuptools"]["packages"]})
DEV_TOOLS = (REPO / "analysis" / "notebooks",)


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]).lower()


def imported_modules() -> dict[str, set[str]]:
    """Top-level modules the product's rooms import, each with the files importing it."""
    found: dict[str, set[str]] = {}
    for room in ROOMS:
        for path in (REPO / room).rglob("*.py"):
            if any(tool in path.parents for tool in DEV_TOOLS):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                         else [])
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(REPO)))
    return found


def test_every_third_party_import_of_the_product_is_declared():
    declared = {_name(requirement) for requirement in PYPROJECT["project"]["dependencies"]}
    distributions = importlib.metadata.packages_distributions()
    undeclared = {}
    for module, files in imported_modules().items():
        if module in sys.stdlib_module_names or module in ROOMS or module == "__future__":
            continue
        names = {_name(d) for d in distributions.get(module, [module])}
        if not names & declared:
            undeclared[module] = sorted(files)[:3]
    assert undeclared == {}, "add them to [project] dependencies in pyproject.toml"
