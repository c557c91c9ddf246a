"""No import cycles in the package, counting imports inside functions (they run too, just later).

The graph is built from the source with ``ast``: every ``import``/``from ... import`` anywhere in a module is an
edge, except under ``if TYPE_CHECKING:`` (never executed). Importing ``a.b.c`` also runs ``a/__init__`` and
``a/b/__init__``, so those packages are edges too, also from a module inside them: ``a.b.c`` importing
``a.b.d`` depends on ``a/b/__init__``, so an ``__init__`` that imports ``a.b.c`` closes a circle. A package
``__init__`` therefore imports nothing of its own package (the tree's are docstrings).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = "translrec_dist"


def module_names(root: Path) -> dict[str, Path]:
    names = {}
    for path in (root / PACKAGE).rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every name a module imports at run time (at any depth), as absolute dotted names."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    names = module_names(root)
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        targets = set()
        for dotted in imported(ast.parse(path.read_text()), name, path.name == "__init__.py"):
            parts = dotted.split(".")
            for i in range(1, len(parts) + 1):  # the module and every package above it run
                prefix = ".".join(parts[:i])
                if prefix in names and prefix != name:
                    targets.add(prefix)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycles():
    graph = import_graph(REPO)
    assert len(graph) > 40 and graph["translrec_dist.training.trainer"]  # the walk found the package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checker_sees_imports_inside_functions_and_skips_type_checking(tmp_path):
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from translrec_dist import c\n"
                              "def f():\n    from translrec_dist.b import g\n")
    (pkg / "b.py").write_text("from . import a\ndef g():\n    pass\n")
    (pkg / "c.py").write_text("import translrec_dist.a\n")
    graph = import_graph(tmp_path)
    # the function-level import counts (and, through it, the package above), TYPE_CHECKING does not
    assert graph[f"{PACKAGE}.a"] == {f"{PACKAGE}.b", PACKAGE}
    assert find_cycle(graph) == [f"{PACKAGE}.a", f"{PACKAGE}.b", f"{PACKAGE}.a"]


def test_the_checker_sees_a_package_init_in_a_circle_with_its_submodule(tmp_path):
    """The loop the checker missed before: data/__init__ imports data.prepare, which imports a sibling."""
    pkg = tmp_path / PACKAGE
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("from translrec_dist.data.prepare import prepare\n")
    (pkg / "data" / "prepare.py").write_text("def prepare():\n    from translrec_dist.data.tables import t\n")
    (pkg / "data" / "tables.py").write_text("t = 1\n")
    graph = import_graph(tmp_path)
    assert f"{PACKAGE}.data" in graph[f"{PACKAGE}.data.prepare"]  # the submodule -> parent-package edge
    assert find_cycle(graph) == [f"{PACKAGE}.data", f"{PACKAGE}.data.prepare", f"{PACKAGE}.data"]
    (pkg / "data" / "__init__.py").write_text('"""docstring only"""\n')
    assert find_cycle(import_graph(tmp_path)) is None


def test_light_commands_import_no_torch(tmp_path):
    """``config-get`` and ``run-status`` run on every SLURM job start: they must not pay for torch."""
    import subprocess
    import sys

    from tests.conftest import TINY

    script = ("import sys\nfrom translrec_dist.cli import main\nrc = main(sys.argv[1:])\n"
              "heavy = sorted(m for m in ('torch', 'transformers', 'datasets', 'accelerate') if m in sys.modules)\n"
              "print('HEAVY', heavy, rc)\n")
    for args in (["config-get", str(TINY), "output_dir"], ["run-status", str(tmp_path)]):
        out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=REPO,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        assert "HEAVY [] 0" in out.stdout, (args, out.stdout, out.stderr[-2000:])
