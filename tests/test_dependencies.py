"""Every third-party package the code imports is declared in pyproject.toml (a dependency or an extra): one
that only arrives through another package (pydantic through DeepSpeed) breaks when that package changes."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions

import tomllib

from tests.conftest import REPO


def imported_top_level_modules() -> set[str]:
    names = set()
    for path in (REPO / "translrec_dist").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"translrec_dist", "__future__"}


def declared_distributions() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"]) + [s for extra in project["optional-dependencies"].values() for s in extra]
    return {normalize(re.split(r"[<>=!~\[; ]", s, maxsplit=1)[0]) for s in specs}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_package_is_declared():
    dists = packages_distributions()
    declared = declared_distributions()
    missing = {}
    for module in sorted(imported_top_level_modules()):
        providers = {normalize(d) for d in dists.get(module, [])}
        assert providers, f"{module} is imported but no installed distribution provides it"
        if not providers & declared:
            missing[module] = sorted(providers)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_the_check_sees_direct_imports():
    modules = imported_top_level_modules()
    assert {"pydantic", "pydantic_core", "annotated_types", "huggingface_hub", "torch", "yaml"} <= modules
