"""Rewrite ``from translrec_dist.PKG import NAME`` to the submodule that defines NAME, for the packages whose
``__init__`` imports nothing (an ``__init__`` that re-exports its submodules sits in an import circle with
each of them; tests/test_import_graph.py counts those). Run on a merged tree: ``python .ci/rewrite_package_imports.py``
(idempotent; prints the files it changed)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MOVED = {
    "translrec_dist.config": {
        "translrec_dist.config.loader": ["apply_override", "dump_config", "export_config", "load_config",
                                         "parse_yaml"],
        "translrec_dist.config.schema": ["DataConfig", "EvalConfig", "IndexConfig", "LoraConfig", "ModelConfig",
                                         "RunConfig", "SequenceConfig", "SyntheticConfig", "TinyBertConfig",
                                         "TrainConfig", "higher_is_better"],
    },
    "translrec_dist.data": {"translrec_dist.data.stages": [
        "TextSplits", "read_source_full", "read_source", "load_text_splits", "build_tokenizer", "tokenize_splits"],
        "translrec_dist.data.prepared": ["PreparedSplits", "load_prepared_splits"]},
    "translrec_dist.data.readers": {"translrec_dist.data.readers.source": ["Source", "source_path", "read_source"]},
    "translrec_dist.tasks": {
        "translrec_dist.tasks.base": ["DataContext", "Task", "TaskData", "Scorer", "ExportAdapter", "only_for"],
        "translrec_dist.tasks.registry": ["get_task", "register_task", "task_names", "unregister_task"],
        "translrec_dist.program": ["validate_task"],
    },
    "translrec_dist.serving": {"translrec_dist.serving.recommender": ["Recommender", "read_new_items"]},
}


def where(package: str, name: str) -> str:
    for module, names in MOVED[package].items():
        if name in names:
            return module
    return package  # a submodule (``from translrec_dist.data import readers``) stays as it is


def rewrite(path: Path) -> bool:
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    edits = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in MOVED:
            groups: dict[str, list[str]] = {}
            for alias in node.names:
                name = alias.name + (f" as {alias.asname}" if alias.asname else "")
                groups.setdefault(where(node.module, alias.name), []).append(name)
            if list(groups) == [node.module]:
                continue
            indent = lines[node.lineno - 1][: node.col_offset]
            new = [f"{indent}from {mod} import {', '.join(sorted(names))}" for mod, names in sorted(groups.items())]
            comment = lines[node.end_lineno - 1][node.end_col_offset:].strip()  # e.g. "# noqa: E402"
            new = [line + (f"  {comment}" if comment else "") + "\n" for line in new]
            edits.append((node.lineno - 1, node.end_lineno, new))
    for start, end, new in sorted(edits, reverse=True):
        lines[start:end] = new
    if edits:
        path.write_text("".join(lines))
    return bool(edits)


if __name__ == "__main__":
    roots = [ROOT / p for p in (sys.argv[1:] or ["translrec_dist", "tests", "bench"])]
    for root in roots:
        for path in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            if path.resolve() != Path(__file__).resolve() and rewrite(path):
                print(path.relative_to(ROOT))
