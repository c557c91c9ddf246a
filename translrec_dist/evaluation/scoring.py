"""Use an export: ``translrec evaluate`` (metrics on a config's split) and ``translrec predict`` (scores).

What evaluating or scoring means is the export's task's business (``Task.evaluate_export``, ``Task.predict``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from translrec_dist.data.tables import read_table
from translrec_dist.errors import ConfigError, DataError
from translrec_dist.evaluation.predict_checks import check_output_file
from translrec_dist.training.distributed import inference_accelerator

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig


def evaluate_export(cfg: RunConfig, export, model_dir: Path, split: str = "test") -> dict:
    """``export``: (model, tokenizer, export config, task), as ``program.read_export`` reads it."""
    model, tokenizer, export_cfg, task = export
    if export_cfg.task != cfg.task:
        raise ConfigError(f"{model_dir} was trained with task={export_cfg.task}, the config ({cfg.source}) has "
                          f"task={cfg.task}; pass the config of that run")
    accelerator = inference_accelerator(cfg.train.precision)
    metrics = task.evaluate_export(cfg, model, tokenizer, split, accelerator)
    return {**metrics, "split": split, "model": str(model_dir)}


def predict_file(read_export, input_path: str, output: str | None, batch_size: int = 64) -> None:
    """``read_export()``: (model, tokenizer, cfg, task) of the export (``program.read_export``), called once
    the output file is known to be writable."""
    check_output_file(output)  # before loading or scoring anything
    model, tokenizer, cfg, task = read_export()
    path = Path(input_path)
    rows = read_table(path, keep_lines=True)
    if rows.empty:
        raise DataError(f"{path}: no rows to score")
    key, scored = task.predict(cfg, model, tokenizer, rows, path, batch_size)
    out = open(output, "w") if output else sys.stdout
    try:
        for i, score in scored:
            record = {k: _plain(v) for k, v in rows.iloc[int(i)].items() if k not in ("text", "text_pair", "_line")}
            out.write(json.dumps({**record, key: float(score)}) + "\n")
    finally:
        if output:
            out.close()


def _plain(v):
    return v.item() if hasattr(v, "item") else v
