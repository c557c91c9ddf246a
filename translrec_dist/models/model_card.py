"""The model card (``final/README.md``): what the export is, what it was trained on, how well, how to load it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from translrec_dist.config.loader import export_config
from translrec_dist.config.schema import RunConfig
from translrec_dist.run_dir import RunDir


def base_model(cfg: RunConfig) -> str:
    m = cfg.model
    if m.init_from:
        return f"continued from the translrec export {m.init_from}"
    if m.tiny is not None:
        return (f"tiny BERT, random init ({m.tiny.num_hidden_layers} layers, hidden {m.tiny.hidden_size}), "
                f"WordPiece vocabulary trained on the data")
    return f"{m.name_or_path}{' (architecture only, random init)' if m.random_init else ''}"


def data_fingerprint(cfg: RunConfig) -> dict:
    """sha256 of the data config plus blake2b of every source file (the same inputs ``translrec prepare`` hashes)."""
    from translrec_dist.data.prepare import READ_TIME_KEYS, cache_root, fingerprint, source_files

    data = {k: v for k, v in cfg.data.model_dump().items() if k not in READ_TIME_KEYS}
    memo_path = cache_root(cfg) / "fingerprints.json"  # hashes prepare already computed; read-only here
    memo = json.loads(memo_path.read_text()) if memo_path.is_file() else {}
    try:
        sources = [fingerprint(f, memo) for f in source_files(cfg)]
    except OSError:  # the export outlived its data: the config hash alone
        sources = []
    digest = hashlib.sha256(json.dumps([cfg.task, cfg.seed, data, sources], sort_keys=True, default=str).encode())
    return {"fingerprint": digest.hexdigest()[:16], "format": cfg.data.format, "path": cfg.data.path,
            "sources": sources}


def eval_table(path: Path) -> str:
    if not path.is_file():
        return "No evaluation was written for this run (eval.json missing)."
    results = json.loads(path.read_text())
    rows = {"test": {k: v for k, v in results.items() if not isinstance(v, dict)}}
    rows.update({k: v for k, v in results.items() if isinstance(v, dict)})
    lines = ["| split | metric | value |", "| --- | --- | --- |"]
    for split, metrics in rows.items():
        for k, v in metrics.items():
            lines.append(f"| {split} | {k} | {v:.4f} |" if isinstance(v, float) else f"| {split} | {k} | {v} |")
    return "\n".join(lines)


def write_model_card(out_dir: Path, cfg: RunConfig, usage: list[str]) -> Path:
    """``usage``: the task's "How to load" lines (``Task.usage``)."""
    data = data_fingerprint(cfg)
    config_yaml = yaml.safe_dump(export_config(cfg).to_dict(), sort_keys=False)
    sources = "".join(f"\n  - `{s['path']}` ({s['bytes']} bytes, blake2b `{s['blake2b']}`)" for s in data["sources"])
    text = "\n".join([
        "---", "library_name: translrec-dist", f"tags: [recommendation, translrec, {cfg.task}]", "---", "",
        f"# translrec {cfg.task} model", "",
        f"- base model: {base_model(cfg)}",
        f"- task: `{cfg.task}`",
        f"- data: `{data['format']}` {data['path'] or '(built in)'}, fingerprint `{data['fingerprint']}`{sources}",
        "", "## Evaluation", "", eval_table(RunDir(cfg.output_dir).eval), "",
        "## How to load", "", *usage,
        "## Configuration", "", "```yaml", config_yaml.rstrip(), "```", ""])
    path = Path(out_dir) / "README.md"
    path.write_text(text, encoding="utf-8")
    return path
